//! Property tests of the serving core: any order of events a socket can
//! produce leaves a `Session` and an `Admission` consistent.

use flashpolicy_proto::request::POLICY_REQUEST;
use flashpolicy_proto::serve::{
    Action, Admission, Admit, End, Freed, IoFailure, OnAcceptError, Serving, Session, MAX_RETRIES,
};
use proptest::prelude::*;
use std::time::Instant;

static REPLY: &[u8] = b"<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\"/></cross-domain-policy>\0";
static OTHER: &[u8] = b"<cross-domain-policy/>\0";

#[derive(Debug, Clone)]
enum Event {
    Bytes(Vec<u8>),
    Eof,
    Sent(usize),
    Error(IoFailure),
    Deadline,
    /// A reload: later requests get the other reply.
    Reload,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        // Pieces of the request, mostly, and some garbage.
        (0usize..POLICY_REQUEST.len(), 1usize..POLICY_REQUEST.len()).prop_map(|(at, n)| {
            Event::Bytes(POLICY_REQUEST[at..(at + n).min(POLICY_REQUEST.len())].to_vec())
        }),
        proptest::collection::vec(any::<u8>(), 1..8).prop_map(Event::Bytes),
        Just(Event::Eof),
        (0usize..200).prop_map(Event::Sent),
        prop_oneof![Just(IoFailure::Transient), Just(IoFailure::Fatal)].prop_map(Event::Error),
        Just(Event::Deadline),
        Just(Event::Reload),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever happens: a session ends at most once and then answers the
    /// same `Close` forever; it only sends suffixes of the one reply it
    /// chose; it is served only when all of that reply went out; and
    /// transient failures alone never hold it open past `MAX_RETRIES`.
    #[test]
    fn sessions_stay_consistent(events in proptest::collection::vec(event(), 0..40)) {
        let mut s = Session::new();
        let mut current: &'static [u8] = REPLY;
        let mut chosen: Option<&'static [u8]> = None;
        let mut sent_total = 0usize;
        let mut ended: Option<End> = None;
        let mut transient_in_a_row = 0u32;
        let mut last = s.on_accepted(&Serving::plain(current), None);
        prop_assert_eq!(last, Action::Recv);
        for e in events {
            let action = match e {
                Event::Bytes(b) => { transient_in_a_row = 0; s.on_bytes(&b, &Serving::plain(current)) }
                Event::Eof => s.on_eof(&Serving::plain(current)),
                Event::Sent(n) => {
                    // An engine reports at most what it was asked to send.
                    let n = match last { Action::Send(b) => n.min(b.len()), _ => n };
                    if matches!(last, Action::Send(_)) { sent_total += n; }
                    if n > 0 { transient_in_a_row = 0; }
                    s.on_sent(n)
                }
                Event::Error(f) => {
                    if f == IoFailure::Transient { transient_in_a_row += 1; }
                    s.on_error(f)
                }
                Event::Deadline => s.on_deadline(),
                Event::Reload => { current = if current == REPLY { OTHER } else { REPLY }; s.resume() }
            };
            if let Some(end) = ended {
                prop_assert_eq!(action, Action::Close(end), "an ended session changed its answer");
            }
            match action {
                Action::Send(bytes) => {
                    if chosen.is_none() {
                        // The reply is the one current when the request completed.
                        prop_assert_eq!(bytes, current);
                    }
                    let reply = *chosen.get_or_insert(current);
                    prop_assert!(reply.ends_with(bytes), "sends a suffix of its reply");
                    prop_assert_eq!(reply.len() - bytes.len(), sent_total.min(reply.len()));
                }
                Action::Close(end) => {
                    if end == End::Served {
                        let reply = chosen.expect("served without sending");
                        prop_assert_eq!(sent_total, reply.len());
                    }
                    ended = Some(end);
                }
                Action::Recv => prop_assert!(chosen.is_none(), "reads again after the request"),
            }
            prop_assert_eq!(s.resume(), action);
            prop_assert_eq!(s.end(), ended);
            prop_assert!(transient_in_a_row <= u32::from(MAX_RETRIES) || ended.is_some());
            last = action;
        }
    }

    /// A deadline always ends a session that has not ended.
    #[test]
    fn a_deadline_always_ends_it(prefix in proptest::collection::vec(any::<u8>(), 0..30)) {
        let mut s = Session::new();
        s.on_bytes(&prefix, &Serving::plain(REPLY));
        prop_assert!(matches!(s.on_deadline(), Action::Close(_)));
    }
}

#[derive(Debug, Clone, Copy)]
enum AdmissionEvent {
    Accepted,
    Freed,
    AcceptError(i32),
    Shed(bool),
    BackoffOver,
    Drain,
}

fn admission_event() -> impl Strategy<Value = AdmissionEvent> {
    prop_oneof![
        4 => Just(AdmissionEvent::Accepted),
        4 => Just(AdmissionEvent::Freed),
        1 => prop_oneof![
            Just(libc::EAGAIN), Just(libc::EMFILE), Just(libc::ECONNABORTED), Just(libc::EIO)
        ].prop_map(AdmissionEvent::AcceptError),
        1 => any::<bool>().prop_map(AdmissionEvent::Shed),
        1 => Just(AdmissionEvent::BackoffOver),
        1 => Just(AdmissionEvent::Drain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The admission counts match a model of the slots; the limit holds;
    /// parking is bounded outside the drain; a paused worker resumes once
    /// the open count reaches the low-water mark; and nothing parked waits
    /// while a slot is free.
    #[test]
    fn admission_keeps_its_limits(
        max in 1usize..40,
        max_parked in 0usize..5,
        events in proptest::collection::vec(admission_event(), 0..200),
    ) {
        let now = Instant::now();
        let mut a = Admission::new(max, max_parked);
        let resume_at = max - (max / 16).max(1);
        let (mut open, mut parked) = (0usize, 0usize);
        let mut draining = false;
        let mut expect_shed_followup = false;
        for e in events {
            match e {
                AdmissionEvent::Accepted => {
                    // Even while `may_accept` is false, io_uring accept
                    // completions already on their way arrive: they are
                    // parked or shed.
                    let got = a.on_accepted(now);
                    match got.admit {
                        Admit::Start => open += 1,
                        Admit::Park => parked += 1,
                        Admit::Shed => prop_assert!(!draining, "the drain sheds nobody it accepted"),
                    }
                    if got.pause { prop_assert!(a.paused()); }
                }
                AdmissionEvent::Freed => {
                    if open == 0 { continue; }
                    open -= 1;
                    let was_paused = a.paused();
                    match a.on_freed() {
                        Freed::StartParked => { prop_assert!(parked > 0); parked -= 1; open += 1; }
                        Freed::Resume => {
                            prop_assert!(was_paused && open <= resume_at && !draining);
                        }
                        Freed::Nothing => prop_assert!(parked == 0),
                    }
                    if was_paused && parked == 0 && open <= resume_at {
                        prop_assert!(!a.paused(), "did not resume at the low-water mark");
                    }
                }
                AdmissionEvent::AcceptError(errno) => {
                    let plan = a.on_accept_error(errno, now);
                    expect_shed_followup = plan.then == OnAcceptError::Shed;
                    if plan.then == OnAcceptError::BackOff { prop_assert!(!a.may_accept()); }
                }
                AdmissionEvent::Shed(ok) => {
                    if !expect_shed_followup { continue; }
                    expect_shed_followup = false;
                    match a.after_shed(ok) {
                        OnAcceptError::BackOff => prop_assert!(!draining && a.backing_off()),
                        OnAcceptError::Next => prop_assert!(draining && ok),
                        OnAcceptError::Stop => prop_assert!(draining && !ok),
                        other => prop_assert!(false, "after a shed: {other:?}"),
                    }
                }
                AdmissionEvent::BackoffOver => a.on_backoff_over(),
                AdmissionEvent::Drain => { draining = true; a.begin_drain(); }
            }
            prop_assert_eq!(a.open(), open);
            prop_assert_eq!(a.parked(), parked);
            prop_assert!(open <= max, "more open than the limit");
            prop_assert!(draining || parked <= max_parked, "parked past the bound");
            prop_assert!(parked == 0 || open == max, "a connection is parked while a slot is free");
            prop_assert_eq!(a.is_idle(), open == 0 && parked == 0);
        }
    }
}
