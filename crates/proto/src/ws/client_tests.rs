use super::*;
use crate::ws::inbound::{unmask, Control, Inbound, Violation};
use crate::ws::origin::{Origin, Origins};
use crate::ws::outbound::{binary_header, push_close, MAX_SERVER_HEADER};
use crate::ws::upgrade::{Refusal, UpgradeReader, UpgradeStep, BAD_GATEWAY};

/// The key from RFC 6455 §1.3, and its accept key.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ANSWER: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

fn answer(bytes: &[u8]) -> Result<Option<usize>, HandshakeError> {
    AnswerReader::new(KEY).feed(bytes)
}

fn with(replace: &str, by: &str) -> Vec<u8> {
    let s = std::str::from_utf8(ANSWER).expect("ascii");
    assert!(s.contains(replace), "{replace}");
    s.replacen(replace, by, 1).into_bytes()
}

#[test]
fn the_request_is_one_the_bridge_accepts_and_its_answer_opens() {
    let origin = "https://game.example.com";
    let req = upgrade_request("127.0.0.1:8443", "/game", Some(origin), KEY);
    let only = Origins::only(vec![origin.parse::<Origin>().expect("origin")]);
    let UpgradeStep::Accept(a) = UpgradeReader::new().feed(&req, &only) else {
        panic!("refused")
    };
    assert_eq!(a.path, "/game");
    assert_eq!(a.origin.as_deref(), Some(origin));
    assert_eq!(answer(&a.response), Ok(Some(a.response.len())));
    // Another page's origin is refused, and the refusal is reported.
    let other = Origins::only(vec!["https://x.example".parse::<Origin>().expect("origin")]);
    let UpgradeStep::Refuse(r) = UpgradeReader::new().feed(&req, &other) else {
        panic!("accepted")
    };
    assert_eq!(answer(r.response()), Err(HandshakeError::Status(403)));
}

#[test]
fn every_split_of_the_answer_opens_and_frames_after_it_are_left() {
    let mut bytes = ANSWER.to_vec();
    bytes.extend_from_slice(&[0x82, 1, b'x']);
    for cut in 1..ANSWER.len() {
        let mut r = AnswerReader::new(KEY);
        assert_eq!(r.feed(&bytes[..cut]), Ok(None), "{cut}");
        assert_eq!(r.feed(&bytes[cut..]), Ok(Some(ANSWER.len() - cut)), "{cut}");
    }
}

#[test]
fn refusals_and_bad_answers_are_told_apart() {
    for r in [
        Refusal::TooLarge,
        Refusal::NotGet,
        Refusal::BadVersion,
        Refusal::Origin,
    ] {
        assert_eq!(
            answer(r.response()),
            Err(HandshakeError::Status(r.status()))
        );
    }
    assert_eq!(answer(BAD_GATEWAY), Err(HandshakeError::Status(502)));
    let wrong = with(
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    assert_eq!(answer(&wrong), Err(HandshakeError::BadAccept));
    let none = with("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", "");
    assert_eq!(answer(&none), Err(HandshakeError::BadAccept));
    let no_upgrade = with("Upgrade: websocket\r\n", "");
    assert_eq!(answer(&no_upgrade), Err(HandshakeError::NotUpgrade));
    let proto = with("\r\n\r\n", "\r\nSec-WebSocket-Protocol: binary\r\n\r\n");
    assert_eq!(answer(&proto), Err(HandshakeError::Unrequested));
    let deflate = with(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    );
    assert_eq!(answer(&deflate), Err(HandshakeError::Unrequested));
    assert_eq!(answer(b"SSH-2.0-x\r\n\r\n"), Err(HandshakeError::Malformed));
    let http10 = with("HTTP/1.1", "HTTP/1.0");
    assert_eq!(answer(&http10), Err(HandshakeError::Malformed));
    let long = with("\r\n\r\n", &format!("\r\nX: {}\r\n\r\n", "a".repeat(5000)));
    assert_eq!(answer(&long), Err(HandshakeError::TooLong));
    let mut r = AnswerReader::new(KEY);
    assert_eq!(r.feed(&[b'H'; 4096]), Err(HandshakeError::Malformed));
}

#[test]
fn masked_client_frames_decode_on_the_bridge() {
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let mask = [9, 8, 7, 6];
    let mut h = [0u8; MAX_CLIENT_HEADER];
    let start = client_binary_header(payload.len(), mask, &mut h);
    let mut frame = h[start..].to_vec();
    let mut body = payload.clone();
    unmask(&mut body, mask, 0);
    frame.extend_from_slice(&body);
    let mut close = [0u8; MAX_CLIENT_HEADER];
    let start = client_close(mask, &mut close);
    frame.extend_from_slice(&close[start..]);
    let mut inbound = Inbound::new();
    let mut out = vec![0u8; payload.len()];
    let d = inbound.decode(&frame, &mut out).expect("valid");
    assert_eq!(d.written, payload.len());
    assert_eq!(out, payload);
    assert_eq!(d.control, Some(Control::Close(None)));
    assert_eq!(d.consumed, frame.len());
}

#[test]
fn server_frames_must_be_unmasked() {
    let mut h = [0u8; MAX_SERVER_HEADER];
    let start = binary_header(3, &mut h);
    let mut frame = h[start..].to_vec();
    frame.extend_from_slice(b"abc");
    push_close(1000, &mut frame);
    let mut inbound = Inbound::from_server();
    let mut out = [0u8; 8];
    let d = inbound.decode(&frame, &mut out).expect("valid");
    assert_eq!(&out[..d.written], b"abc");
    assert_eq!(d.control, Some(Control::Close(Some(1000))));
    // A client's (masked) frame is a violation from a server.
    let mut masked = [0u8; MAX_CLIENT_HEADER];
    let start = client_binary_header(0, [1, 2, 3, 4], &mut masked);
    assert_eq!(
        Inbound::from_server().decode(&masked[start..], &mut out),
        Err(Violation::Masked)
    );
}
