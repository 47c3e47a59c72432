use super::*;
use crate::proxy::ProxySettings;
use crate::request::POLICY_REQUEST;
use crate::serve::AddressLimit;
use std::net::SocketAddr;

const REPLY: &[u8] = b"<cross-domain-policy/>\0";

#[test]
fn a_request_in_one_read_is_answered_and_served() {
    let mut s = Session::new();
    assert_eq!(s.on_accepted(&Serving::plain(REPLY), None), Action::Recv);
    assert_eq!(
        s.on_bytes(POLICY_REQUEST, &Serving::plain(REPLY)),
        Action::Send(REPLY)
    );
    assert_eq!(s.on_sent(REPLY.len()), Action::Close(End::Served));
    assert_eq!(s.end(), Some(End::Served));
}

#[test]
fn a_split_request_and_a_short_send() {
    let mut s = Session::new();
    assert_eq!(
        s.on_bytes(&POLICY_REQUEST[..5], &Serving::plain(REPLY)),
        Action::Recv
    );
    assert_eq!(
        s.on_bytes(&POLICY_REQUEST[5..], &Serving::plain(REPLY)),
        Action::Send(REPLY)
    );
    assert_eq!(s.on_sent(4), Action::Send(&REPLY[4..]));
    assert_eq!(s.on_sent(REPLY.len() - 4), Action::Close(End::Served));
}

#[test]
fn the_reply_is_the_one_current_when_the_request_completed() {
    static OLD: &[u8] = b"old\0";
    static NEW: &[u8] = b"new!\0";
    let mut s = Session::new();
    assert_eq!(
        s.on_bytes(&POLICY_REQUEST[..3], &Serving::plain(NEW)),
        Action::Recv
    );
    assert_eq!(
        s.on_bytes(&POLICY_REQUEST[3..], &Serving::plain(OLD)),
        Action::Send(OLD)
    );
    // Bytes that come later (with another current reply) change nothing.
    assert_eq!(s.on_bytes(b"x", &Serving::plain(NEW)), Action::Send(OLD));
    assert_eq!(s.on_sent(1), Action::Send(&OLD[1..]));
}

#[test]
fn garbage_is_rejected_and_a_half_close_after_the_tag_is_a_request() {
    let mut s = Session::new();
    assert_eq!(
        s.on_bytes(b"GET / HTTP/1.1\r\n", &Serving::plain(REPLY)),
        Action::Close(End::Rejected)
    );
    let mut s = Session::new();
    assert_eq!(
        s.on_bytes(b"<policy-file-request/>", &Serving::plain(REPLY)),
        Action::Recv
    );
    assert_eq!(s.on_eof(&Serving::plain(REPLY)), Action::Send(REPLY));
    let mut s = Session::new();
    assert_eq!(s.on_bytes(b"<pol", &Serving::plain(REPLY)), Action::Recv);
    assert_eq!(
        s.on_eof(&Serving::plain(REPLY)),
        Action::Close(End::Rejected)
    );
}

#[test]
fn deadlines_time_out_readers_and_fail_senders() {
    let mut s = Session::new();
    assert_eq!(s.on_deadline(), Action::Close(End::TimedOut));
    // An engine whose recv was in flight learns the same when it lands.
    assert_eq!(
        s.on_bytes(POLICY_REQUEST, &Serving::plain(REPLY)),
        Action::Close(End::TimedOut)
    );
    assert_eq!(
        s.on_eof(&Serving::plain(REPLY)),
        Action::Close(End::TimedOut)
    );
    let mut s = Session::new();
    s.on_bytes(POLICY_REQUEST, &Serving::plain(REPLY));
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
    assert_eq!(s.on_bytes(b"<", &Serving::plain(REPLY)), Action::Recv);
    assert_eq!(s.on_error(IoFailure::Transient), Action::Recv);
    assert_eq!(s.on_error(IoFailure::Fatal), Action::Close(End::Failed));
}

#[test]
fn a_send_that_writes_nothing_fails() {
    let mut s = Session::new();
    s.on_bytes(POLICY_REQUEST, &Serving::plain(REPLY));
    assert_eq!(s.on_sent(0), Action::Close(End::Failed));
}

#[test]
fn names_are_unique() {
    let mut names: Vec<_> = End::ALL.iter().map(|e| e.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), End::ALL.len());
}

fn peer() -> Option<SocketAddr> {
    Some("127.0.0.1:40000".parse().expect("valid"))
}

#[test]
fn a_proxy_header_then_a_request_in_one_read() {
    let settings = crate::proxy::ProxySettings::default();
    let ctx = Serving::new(REPLY, Some(&settings));
    let mut s = Session::new();
    assert_eq!(s.on_accepted(&ctx, peer()), Action::Recv);
    assert_eq!(s.client(), None, "not known before the header");
    let mut bytes = b"PROXY TCP4 192.0.2.1 127.0.0.1 5000 843\r\n".to_vec();
    bytes.extend_from_slice(POLICY_REQUEST);
    assert_eq!(s.on_bytes(&bytes, &ctx), Action::Send(REPLY));
    assert_eq!(s.client(), Some("192.0.2.1:5000".parse().expect("valid")));
    assert_eq!(s.peer(), peer());
}

#[test]
fn unknown_uses_the_peer_and_bad_headers_end_proxy_invalid() {
    let settings = crate::proxy::ProxySettings::default();
    let ctx = Serving::new(REPLY, Some(&settings));
    let mut s = Session::new();
    s.on_accepted(&ctx, peer());
    assert_eq!(s.on_bytes(b"PROXY UNKNOWN\r\n", &ctx), Action::Recv);
    assert_eq!(s.client(), peer());
    // A plain request where a header is expected.
    let mut s = Session::new();
    s.on_accepted(&ctx, peer());
    assert_eq!(
        s.on_bytes(POLICY_REQUEST, &ctx),
        Action::Close(End::ProxyInvalid)
    );
    // Cut short.
    let mut s = Session::new();
    s.on_accepted(&ctx, peer());
    assert_eq!(s.on_bytes(b"PROXY TCP4 1.2", &ctx), Action::Recv);
    assert_eq!(s.on_eof(&ctx), Action::Close(End::ProxyInvalid));
    // Never complete: the deadline.
    let mut s = Session::new();
    s.on_accepted(&ctx, peer());
    assert_eq!(s.on_bytes(b"PROXY ", &ctx), Action::Recv);
    assert_eq!(s.on_deadline(), Action::Close(End::TimedOut));
}

#[test]
fn untrusted_or_unknown_peers_end_at_once() {
    let settings = crate::proxy::ProxySettings::new(vec!["127.0.0.2/32".parse().expect("valid")]);
    let ctx = Serving::new(REPLY, Some(&settings));
    let mut s = Session::new();
    assert_eq!(
        s.on_accepted(&ctx, peer()),
        Action::Close(End::ProxyInvalid)
    );
    let mut s = Session::new();
    assert_eq!(s.on_accepted(&ctx, None), Action::Close(End::Failed));
}

#[test]
fn without_proxy_the_peer_is_the_client() {
    let ctx = Serving::plain(REPLY);
    let mut s = Session::new();
    s.on_accepted(&ctx, peer());
    assert_eq!(s.client(), peer());
    let mut s = Session::new();
    s.on_accepted(&ctx, None);
    assert_eq!(s.client(), None);
}

#[test]
fn the_session_stays_small() {
    // 40 bytes before PROXY; the header reader and the addresses are boxed
    // (and only there when used), the send offset is a u32.
    assert!(
        std::mem::size_of::<Session>() <= 40,
        "{}",
        std::mem::size_of::<Session>()
    );
}

fn at(ip: [u8; 4], port: u16) -> Option<SocketAddr> {
    Some(SocketAddr::from((ip, port)))
}

fn limit(cap: u32) -> &'static AddressLimit {
    AddressLimit::with_salt(std::num::NonZeroU32::new(cap).expect("cap"), 1 << 12, 3).leak()
}

#[test]
fn max_per_ip_ends_the_address_over_its_share_and_a_dropped_session_gives_it_back() {
    let ctx = Serving::plain(REPLY).with_limit(Some(limit(2)));
    assert!(ctx.needs_peer());
    let mut a = Session::new();
    let mut b = Session::new();
    let mut c = Session::new();
    assert_eq!(a.on_accepted(&ctx, at([127, 0, 0, 2], 1000)), Action::Recv);
    assert_eq!(b.on_accepted(&ctx, at([127, 0, 0, 2], 1001)), Action::Recv);
    assert_eq!(
        c.on_accepted(&ctx, at([127, 0, 0, 2], 1002)),
        Action::Close(End::OverIpLimit)
    );
    // Another address is not affected.
    let mut other = Session::new();
    assert_eq!(
        other.on_accepted(&ctx, at([127, 0, 0, 3], 1000)),
        Action::Recv
    );
    // However the first ended, dropping it frees its share.
    assert_eq!(a.on_deadline(), Action::Close(End::TimedOut));
    drop(a);
    let mut d = Session::new();
    assert_eq!(d.on_accepted(&ctx, at([127, 0, 0, 2], 1003)), Action::Recv);
    assert_eq!(d.on_bytes(POLICY_REQUEST, &ctx), Action::Send(REPLY));
    // No peer to count under a limit: the client is gone.
    let mut gone = Session::new();
    assert_eq!(gone.on_accepted(&ctx, None), Action::Close(End::Failed));
}

#[test]
fn with_proxy_the_headers_source_is_what_max_per_ip_counts() {
    let settings = ProxySettings::new(Vec::new());
    let ctx = Serving::new(REPLY, Some(&settings)).with_limit(Some(limit(1)));
    let balancer = at([127, 0, 0, 1], 40000);
    let header = |src: &str| format!("PROXY TCP4 {src} 127.0.0.1 5000 843\r\n").into_bytes();
    let mut first = Session::new();
    assert_eq!(first.on_accepted(&ctx, balancer), Action::Recv);
    let mut bytes = header("192.0.2.1");
    bytes.extend_from_slice(POLICY_REQUEST);
    assert_eq!(first.on_bytes(&bytes, &ctx), Action::Send(REPLY));
    // The same balancer, another client: not limited by the first.
    let mut second = Session::new();
    assert_eq!(second.on_accepted(&ctx, balancer), Action::Recv);
    assert_eq!(second.on_bytes(&header("192.0.2.2"), &ctx), Action::Recv);
    // The first client again, while its first connection is open: over,
    // before any byte of its request is looked at.
    let mut again = Session::new();
    assert_eq!(again.on_accepted(&ctx, balancer), Action::Recv);
    assert_eq!(
        again.on_bytes(&bytes, &ctx),
        Action::Close(End::OverIpLimit)
    );
    assert_eq!(again.client(), at([192, 0, 2, 1], 5000));
}
