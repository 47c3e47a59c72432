use super::*;
use crate::ws::origin::Origin;

/// Ruffle 0.6 in Chromium, as a bridge sees it (the key from RFC 6455 §1.3).
const RUFFLE: &[u8] = b"GET /game?room=1 HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nConnection: Upgrade\r\nPragma: no-cache\r\nUpgrade: websocket\r\nOrigin: https://game.example.com\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

fn feed_all(bytes: &[u8], origins: &Origins) -> UpgradeStep {
    UpgradeReader::new().feed(bytes, origins)
}

fn refused(bytes: &[u8]) -> Refusal {
    match feed_all(bytes, &Origins::any()) {
        UpgradeStep::Refuse(r) => r,
        other => panic!("not refused: {other:?}"),
    }
}

fn with(replace: &str, by: &str) -> Vec<u8> {
    let s = std::str::from_utf8(RUFFLE).expect("ascii");
    assert!(s.contains(replace), "{replace}");
    s.replacen(replace, by, 1).into_bytes()
}

#[test]
fn ruffles_request_is_accepted_with_the_rfc_accept_key_and_no_extension() {
    let UpgradeStep::Accept(a) = feed_all(RUFFLE, &Origins::any()) else {
        panic!("refused")
    };
    assert_eq!(
        a.response,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    assert_eq!(a.path, "/game?room=1");
    assert_eq!(a.origin.as_deref(), Some("https://game.example.com"));
    assert!(a.early.is_empty());
}

#[test]
fn every_split_of_the_request_gives_the_same_answer() {
    let whole = feed_all(RUFFLE, &Origins::any());
    for cut in 1..RUFFLE.len() {
        let mut r = UpgradeReader::new();
        assert_eq!(
            r.feed(&RUFFLE[..cut], &Origins::any()),
            UpgradeStep::NeedMore,
            "{cut}"
        );
        assert_eq!(r.feed(&RUFFLE[cut..], &Origins::any()), whole, "{cut}");
    }
}

#[test]
fn bytes_after_the_head_are_the_first_frames() {
    let mut bytes = RUFFLE.to_vec();
    bytes.extend_from_slice(&[0x82, 0x80, 1, 2, 3, 4]);
    let mut r = UpgradeReader::new();
    let (a, b) = bytes.split_at(RUFFLE.len() - 2);
    assert_eq!(r.feed(a, &Origins::any()), UpgradeStep::NeedMore);
    let UpgradeStep::Accept(acc) = r.feed(b, &Origins::any()) else {
        panic!("refused")
    };
    assert_eq!(acc.early, [0x82, 0x80, 1, 2, 3, 4]);
}

#[test]
fn the_origin_list_is_exact() {
    let only = |o: &str| Origins::only(vec![o.parse::<Origin>().expect("origin")]);
    assert!(matches!(
        feed_all(RUFFLE, &only("https://game.example.com")),
        UpgradeStep::Accept(_)
    ));
    assert_eq!(
        feed_all(RUFFLE, &only("https://other.example.com")),
        UpgradeStep::Refuse(Refusal::Origin)
    );
    let no_origin = with("Origin: https://game.example.com\r\n", "");
    assert_eq!(
        feed_all(&no_origin, &only("https://game.example.com")),
        UpgradeStep::Refuse(Refusal::Origin)
    );
}

#[test]
fn bad_requests_are_refused_with_the_right_status() {
    let cases: &[(Vec<u8>, Refusal)] = &[
        (with("GET", "POST"), Refusal::NotGet),
        (with("HTTP/1.1", "HTTP/1.0"), Refusal::NotHttp11),
        (with("Host: 127.0.0.1:8443\r\n", ""), Refusal::NoHost),
        (with("Upgrade: websocket\r\n", ""), Refusal::NotWebSocket),
        (
            with("Upgrade: websocket", "Upgrade: h2c"),
            Refusal::NotWebSocket,
        ),
        (
            with("Connection: Upgrade", "Connection: keep-alive"),
            Refusal::NoConnectionUpgrade,
        ),
        (with("Version: 13", "Version: 8"), Refusal::BadVersion),
        (
            with("Sec-WebSocket-Version: 13\r\n", ""),
            Refusal::BadVersion,
        ),
        (with("dGhlIHNhbXBsZSBub25jZQ==", "short=="), Refusal::BadKey),
        (
            with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ!="),
            Refusal::BadKey,
        ),
        (
            with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            Refusal::BadKey,
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            Refusal::Malformed,
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            refused(bytes),
            *want,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Header names and tokens are case-insensitive; lists are split.
    let relaxed = with("Connection: Upgrade", "connection: keep-alive, UPGRADE");
    assert!(matches!(
        feed_all(&relaxed, &Origins::any()),
        UpgradeStep::Accept(_)
    ));
}

#[test]
fn a_head_that_never_ends_is_refused_at_the_bound() {
    let mut r = UpgradeReader::new();
    let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut fed = 0;
    let step = loop {
        match r.feed(line, &Origins::any()) {
            UpgradeStep::NeedMore => fed += line.len(),
            other => break other,
        }
        assert!(r.held() <= MAX_UPGRADE_LEN);
    };
    assert_eq!(step, UpgradeStep::Refuse(Refusal::TooLarge));
    assert!(fed < MAX_UPGRADE_LEN);
    assert_eq!(r.held(), 0, "the buffer is given back");
}

#[test]
fn end_of_stream_before_the_head_ends_is_a_silent_close() {
    let mut r = UpgradeReader::new();
    assert_eq!(
        r.feed(b"GET / HTTP/1.1\r\n", &Origins::any()),
        UpgradeStep::NeedMore
    );
    assert_eq!(r.on_eof(), UpgradeStep::Refuse(Refusal::Closed));
    assert!(Refusal::Closed.response().is_empty());
}

#[test]
fn every_refusal_is_a_well_formed_response_with_its_status() {
    for r in [
        Refusal::TooLarge,
        Refusal::Malformed,
        Refusal::NotGet,
        Refusal::NotHttp11,
        Refusal::NoHost,
        Refusal::NotWebSocket,
        Refusal::NoConnectionUpgrade,
        Refusal::BadVersion,
        Refusal::BadKey,
        Refusal::Origin,
    ] {
        well_formed(r.response(), r.status(), &format!("{r:?}"));
    }
    well_formed(BAD_GATEWAY, 502, "BAD_GATEWAY");
}

fn well_formed(bytes: &[u8], status: u16, r: &str) {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = resp.parse(bytes) else {
        panic!("{r}: not a response")
    };
    assert_eq!(resp.code, Some(status), "{r}");
    let len: usize = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
        .expect("content-length");
    assert_eq!(bytes.len() - head, len, "{r}");
    assert!(
        resp.headers
            .iter()
            .any(|h| h.name == "Connection" && lists(h.value, "close")),
        "{r}"
    );
}
