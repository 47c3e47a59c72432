//! One connection of the policy service, from accept to close, as a state
//! machine fed with plain events.
//!
//! The engines tell a [`Session`] what happened on its socket and do what
//! it answers:
//!
//! | event | when |
//! |---|---|
//! | [`Session::on_accepted`] | the connection has a slot |
//! | [`Session::on_bytes`] | a read returned bytes |
//! | [`Session::on_eof`] | a read returned end-of-stream |
//! | [`Session::on_sent`] | a send of the bytes last asked for wrote `n` of them |
//! | [`Session::on_error`] | a read or send failed |
//! | [`Session::on_deadline`] | `--timeout` passed |
//!
//! Every event answers with one [`Action`]: read more, send these bytes, or
//! close because the connection ended this way ([`End`]). Once a session has
//! ended, every later event answers the same `Close`: an engine whose
//! operation was still in flight (io_uring) can close when it completes.

use std::fmt;

use crate::request::{Recogniser, Verdict};

/// Times in a row a read or send may fail with a transient error
/// ([`IoFailure::Transient`]) before the connection is given up.
pub const MAX_RETRIES: u8 = 8;

/// What to do next with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read from the socket (again).
    Recv,
    /// Send these bytes, the reply or what is left of it, then report how
    /// many went out with [`Session::on_sent`].
    Send(&'static [u8]),
    /// Close the socket: the connection ended this way.
    Close(End),
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// The whole reply was sent.
    Served,
    /// The client's bytes were not a policy request.
    Rejected,
    /// No complete request within `--timeout`.
    TimedOut,
    /// An I/O error, or the peer went away while the reply was being sent.
    Failed,
    /// Closed at once because a limit (connections, descriptors) was reached.
    Shed,
    /// `--proxy-protocol`: the PROXY header was malformed, oversized or
    /// came from a peer not listed by `--proxy-from`; nothing was sent.
    ProxyInvalid,
    /// `--max-per-ip`: the client's address already held its share of
    /// connections; closed at once, nothing was sent.
    OverIpLimit,
}

impl End {
    /// Every end, in the order reports list them.
    pub const ALL: [End; 7] = [
        End::Served,
        End::Rejected,
        End::TimedOut,
        End::Failed,
        End::Shed,
        End::ProxyInvalid,
        End::OverIpLimit,
    ];

    /// The name used in logs, the totals line and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            End::Served => "served",
            End::Rejected => "rejected",
            End::TimedOut => "timed_out",
            End::Failed => "failed",
            End::Shed => "shed",
            End::ProxyInvalid => "proxy_invalid",
            End::OverIpLimit => "over_ip_limit",
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of I/O failure an engine saw (it classifies the errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoFailure {
    /// Worth trying the same operation again (`EINTR`, `EAGAIN` from an
    /// operation that should have waited, `ENOBUFS`, `ENOMEM`).
    Transient,
    /// The connection is broken (reset, `EPIPE`, anything else).
    Fatal,
}

/// One connection's state: a two-byte recogniser while reading, the reply
/// and an offset while sending. Nothing in it grows with what a client
/// sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    state: State,
    /// Transient failures in a row (reset by progress).
    retries: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) the request.
    Reading(Recogniser),
    /// The request is complete; `sent` bytes of `reply` are out. The reply
    /// is the one current when the request completed, so a reload never
    /// changes a reply half-way.
    Sending { reply: &'static [u8], sent: usize },
    /// Over; every event answers `Close(end)`.
    Ended(End),
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    /// A connection that has sent nothing yet.
    pub const fn new() -> Session {
        Session {
            state: State::Reading(Recogniser::new()),
            retries: 0,
        }
    }

    /// The connection has a slot: read its request.
    pub fn on_accepted(&mut self) -> Action {
        self.resume()
    }

    /// A read returned `bytes` (not empty). `reply` is the reply being
    /// served now; it is sent if these bytes complete the request.
    pub fn on_bytes(&mut self, bytes: &[u8], reply: &'static [u8]) -> Action {
        let State::Reading(recogniser) = &mut self.state else {
            return self.after_unexpected_read();
        };
        self.retries = 0;
        let verdict = recogniser.feed(bytes);
        self.on_verdict(verdict, reply)
    }

    /// A read returned end-of-stream. A bare tag followed by a half-close
    /// still counts as a request (see [`Recogniser::eof`]).
    pub fn on_eof(&mut self, reply: &'static [u8]) -> Action {
        let State::Reading(recogniser) = &mut self.state else {
            return self.after_unexpected_read();
        };
        let verdict = recogniser.eof();
        self.on_verdict(verdict, reply)
    }

    /// A send of the bytes last asked for wrote `n` of them.
    pub fn on_sent(&mut self, n: usize) -> Action {
        if let State::Sending { reply, sent } = &mut self.state {
            if n > 0 {
                self.retries = 0;
                *sent = sent.saturating_add(n).min(reply.len());
                if *sent == reply.len() {
                    // Served: no later event (an error or a deadline
                    // racing the last send) may change that.
                    self.state = State::Ended(End::Served);
                }
            } else {
                // A send that wrote nothing and reported no error: the
                // socket is unusable.
                self.state = State::Ended(End::Failed);
            }
        }
        self.resume()
    }

    /// A read or send failed.
    pub fn on_error(&mut self, failure: IoFailure) -> Action {
        if matches!(self.state, State::Ended(_)) {
            return self.resume();
        }
        if failure == IoFailure::Transient && self.retries < MAX_RETRIES {
            self.retries += 1;
        } else {
            self.state = State::Ended(End::Failed);
        }
        self.resume()
    }

    /// `--timeout` passed: a connection still waiting for its request timed
    /// out; one still sending failed (its client does not read).
    pub fn on_deadline(&mut self) -> Action {
        match self.state {
            State::Reading(_) => self.state = State::Ended(End::TimedOut),
            State::Sending { .. } => self.state = State::Ended(End::Failed),
            State::Ended(_) => {}
        }
        self.resume()
    }

    /// What the session waits for now: the action its last event answered.
    pub fn resume(&self) -> Action {
        match self.state {
            State::Reading(_) => Action::Recv,
            State::Sending { reply, sent } => Action::Send(&reply[sent..]),
            State::Ended(end) => Action::Close(end),
        }
    }

    /// How it ended, once it has (`Close` was answered).
    pub fn end(&self) -> Option<End> {
        match self.resume() {
            Action::Close(end) => Some(end),
            _ => None,
        }
    }

    /// Whether the request is complete and the reply being sent.
    pub fn is_sending(&self) -> bool {
        matches!(self.state, State::Sending { .. })
    }

    fn on_verdict(&mut self, verdict: Verdict, reply: &'static [u8]) -> Action {
        match verdict {
            Verdict::NeedMore => {}
            // (An empty reply is never built; it would be served at once.)
            Verdict::Request { .. } if reply.is_empty() => self.state = State::Ended(End::Served),
            Verdict::Request { .. } => self.state = State::Sending { reply, sent: 0 },
            Verdict::Reject(_) => self.state = State::Ended(End::Rejected),
        }
        self.resume()
    }

    /// Bytes or end-of-stream while not reading: after the verdict there is
    /// nothing to read (an engine that read anyway is told what it waits
    /// for already).
    fn after_unexpected_read(&self) -> Action {
        self.resume()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::POLICY_REQUEST;

    const REPLY: &[u8] = b"<cross-domain-policy/>\0";

    #[test]
    fn a_request_in_one_read_is_answered_and_served() {
        let mut s = Session::new();
        assert_eq!(s.on_accepted(), Action::Recv);
        assert_eq!(s.on_bytes(POLICY_REQUEST, REPLY), Action::Send(REPLY));
        assert_eq!(s.on_sent(REPLY.len()), Action::Close(End::Served));
        assert_eq!(s.end(), Some(End::Served));
    }

    #[test]
    fn a_split_request_and_a_short_send() {
        let mut s = Session::new();
        assert_eq!(s.on_bytes(&POLICY_REQUEST[..5], REPLY), Action::Recv);
        assert_eq!(s.on_bytes(&POLICY_REQUEST[5..], REPLY), Action::Send(REPLY));
        assert_eq!(s.on_sent(4), Action::Send(&REPLY[4..]));
        assert_eq!(s.on_sent(REPLY.len() - 4), Action::Close(End::Served));
    }

    #[test]
    fn the_reply_is_the_one_current_when_the_request_completed() {
        static OLD: &[u8] = b"old\0";
        static NEW: &[u8] = b"new!\0";
        let mut s = Session::new();
        assert_eq!(s.on_bytes(&POLICY_REQUEST[..3], NEW), Action::Recv);
        assert_eq!(s.on_bytes(&POLICY_REQUEST[3..], OLD), Action::Send(OLD));
        // Bytes that come later (with another current reply) change nothing.
        assert_eq!(s.on_bytes(b"x", NEW), Action::Send(OLD));
        assert_eq!(s.on_sent(1), Action::Send(&OLD[1..]));
    }

    #[test]
    fn garbage_is_rejected_and_a_half_close_after_the_tag_is_a_request() {
        let mut s = Session::new();
        assert_eq!(
            s.on_bytes(b"GET / HTTP/1.1\r\n", REPLY),
            Action::Close(End::Rejected)
        );
        let mut s = Session::new();
        assert_eq!(s.on_bytes(b"<policy-file-request/>", REPLY), Action::Recv);
        assert_eq!(s.on_eof(REPLY), Action::Send(REPLY));
        let mut s = Session::new();
        assert_eq!(s.on_bytes(b"<pol", REPLY), Action::Recv);
        assert_eq!(s.on_eof(REPLY), Action::Close(End::Rejected));
    }

    #[test]
    fn deadlines_time_out_readers_and_fail_senders() {
        let mut s = Session::new();
        assert_eq!(s.on_deadline(), Action::Close(End::TimedOut));
        // An engine whose recv was in flight learns the same when it lands.
        assert_eq!(
            s.on_bytes(POLICY_REQUEST, REPLY),
            Action::Close(End::TimedOut)
        );
        assert_eq!(s.on_eof(REPLY), Action::Close(End::TimedOut));
        let mut s = Session::new();
        s.on_bytes(POLICY_REQUEST, REPLY);
        assert_eq!(s.on_deadline(), Action::Close(End::Failed));
    }

    #[test]
    fn transient_failures_are_retried_a_bounded_number_of_times() {
        let mut s = Session::new();
        for _ in 0..MAX_RETRIES {
            assert_eq!(s.on_error(IoFailure::Transient), Action::Recv);
        }
        assert_eq!(s.on_error(IoFailure::Transient), Action::Close(End::Failed));
        // Progress resets the count.
        let mut s = Session::new();
        for _ in 0..MAX_RETRIES {
            s.on_error(IoFailure::Transient);
        }
        assert_eq!(s.on_bytes(b"<", REPLY), Action::Recv);
        assert_eq!(s.on_error(IoFailure::Transient), Action::Recv);
        assert_eq!(s.on_error(IoFailure::Fatal), Action::Close(End::Failed));
    }

    #[test]
    fn a_send_that_writes_nothing_fails() {
        let mut s = Session::new();
        s.on_bytes(POLICY_REQUEST, REPLY);
        assert_eq!(s.on_sent(0), Action::Close(End::Failed));
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = End::ALL.iter().map(|e| e.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), End::ALL.len());
    }
}
