//! `--websocket` end to end over raw sockets on loopback, with the policy
//! workers on both engines: the upgrade and its refusals, binary frames
//! both ways, fragments, ping/pong, the closing handshake both ways, every
//! kind of protocol violation, a client that never finishes the upgrade,
//! a game server that is down, and 1 MiB each way.

mod common;
#[path = "common/gateway.rs"]
#[allow(dead_code)] // shared with gateway.rs, which uses all of it
mod gw;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use common::*;
use gw::{announced, flood_until_blocked, rss_kb, stop, upstream, Upstream, FLOOD_LIMIT};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const PAGE: &str = "https://game.example.com";

fn bridge(backend: &'static str, up: SocketAddr, args: &[&str]) -> (Server, SocketAddr) {
    let spec = format!("127.0.0.1:0={up}");
    let server = Server::builder(backend)
        .args(&["--websocket", &spec, "--threads", "2", "--log", "debug"])
        .args(args)
        .start();
    let addr = announced(&server, "websocket on ");
    (server, addr)
}

fn request(origin: &str) -> String {
    format!(
        "GET /game HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Origin: {origin}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )
}

/// Reads an HTTP response head (and nothing after it).
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn open(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(request(PAGE).as_bytes()).expect("upgrade");
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
        "{head}"
    );
    assert!(!head.contains("Sec-WebSocket-Extensions"), "{head}");
    assert!(!head.contains("Sec-WebSocket-Protocol"), "{head}");
    s
}

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0xa1u8, 0x07, 0x5c, 0xe2];
    let mut f = vec![first];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads one server frame: (first byte, payload). Server frames are unmasked.
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    assert_eq!(h[1] & 0x80, 0, "a server frame is never masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).expect("len16");
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).expect("len64");
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).expect("payload");
    (h[0], p)
}

/// Reads binary frames until `n` payload bytes came.
fn read_binary(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let (first, p) = read_frame(s);
        assert_eq!(first, 0x82, "only final binary frames toward the browser");
        got.extend(p);
    }
    got
}

fn expect_close(s: &mut TcpStream, code: u16) {
    let (first, p) = read_frame(s);
    assert_eq!(first, 0x88, "a close frame");
    assert_eq!(p, code.to_be_bytes(), "close code");
    assert_eq!(read_to_close(s, 64).expect("then the TCP close"), b"");
}

#[test]
fn binary_frames_both_ways_and_the_browser_closes_first() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = bridge(backend, up, &["--ws-origin", PAGE]);
        let mut s = open(addr);
        s.write_all(&frame(0x82, b"hello game\n")).expect("send");
        assert_eq!(read_binary(&mut s, 11), b"hello game\n", "[{backend}]");
        // A fragmented message with a ping between its fragments.
        s.write_all(&frame(0x02, b"frag")).expect("send");
        s.write_all(&frame(0x89, b"are you there")).expect("ping");
        s.write_all(&frame(0x80, b"ments")).expect("send");
        // The bridge streams each fragment to the game as it comes, so the
        // echo of "frag" may reach the browser before or after the pong:
        // both orders are right, but the pong must come once and the bytes
        // in order.
        let (mut pongs, mut got) = (Vec::new(), Vec::new());
        while pongs.is_empty() || got.len() < 9 {
            match read_frame(&mut s) {
                (0x8a, p) => pongs.push(p),
                (0x82, p) => got.extend(p),
                (first, p) => panic!("[{backend}] unexpected frame {first:#x} {p:?}"),
            }
        }
        assert_eq!(pongs, [b"are you there".to_vec()], "[{backend}] one pong");
        assert_eq!(got, b"fragments", "[{backend}]");
        // Ruffle's Socket.close(): a close frame without a code. The game
        // gets a FIN, closes, and the bridge answers 1000.
        s.write_all(&frame(0x88, b"")).expect("close");
        expect_close(&mut s, 1000);
        let t = stop(server, backend);
        assert_eq!((t.relayed, t.failed), (1, 0), "[{backend}]");
    }
}

#[test]
fn the_game_closing_first_sends_1000_and_waits_for_the_browser() {
    // A game that sends a banner and closes at once.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(b"bye");
        }
    });
    for backend in backends() {
        let (server, addr) = bridge(backend, up, &[]);
        let mut s = open(addr);
        assert_eq!(read_binary(&mut s, 3), b"bye", "[{backend}]");
        let (first, p) = read_frame(&mut s);
        assert_eq!(
            (first, p),
            (0x88, 1000u16.to_be_bytes().to_vec()),
            "[{backend}]"
        );
        s.write_all(&frame(0x88, &1000u16.to_be_bytes()))
            .expect("close back");
        assert_eq!(
            read_to_close(&mut s, 64).expect("closed"),
            b"",
            "[{backend}]"
        );
        assert_eq!(stop(server, backend).relayed, 1, "[{backend}]");
    }
}

#[test]
fn a_mebibyte_each_way_arrives_intact() {
    let up = upstream(Upstream::Echo);
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    for backend in backends() {
        let (server, addr) = bridge(backend, up, &[]);
        let mut s = open(addr);
        let mut w = s.try_clone().expect("clone");
        let sent = data.clone();
        let writer = thread::spawn(move || {
            for chunk in sent.chunks(60_000) {
                w.write_all(&frame(0x82, chunk)).expect("send");
            }
        });
        let got = read_binary(&mut s, data.len());
        writer.join().expect("writer");
        assert!(got == data, "[{backend}] the stream differs");
        s.write_all(&frame(0x88, b"")).expect("close");
        expect_close(&mut s, 1000);
        stop(server, backend);
    }
}

#[test]
fn protocol_violations_get_their_close_codes() {
    let up = upstream(Upstream::Echo);
    let mut unmasked = vec![0x82u8, 3];
    unmasked.extend_from_slice(b"abc");
    let mut too_big = vec![0x82u8, 0x80 | 127];
    too_big.extend_from_slice(&((1u64 << 20) + 1).to_be_bytes());
    too_big.extend_from_slice(&[1, 2, 3, 4]);
    let cases: [(&str, Vec<u8>, u16); 5] = [
        ("text frame", frame(0x81, b"text"), 1003),
        ("unmasked frame", unmasked, 1002),
        ("oversized frame", too_big, 1009),
        ("reserved opcode", frame(0x83, b""), 1002),
        ("lone continuation", frame(0x80, b"x"), 1002),
    ];
    for backend in backends() {
        let (server, addr) = bridge(backend, up, &[]);
        for (what, bytes, code) in &cases {
            let mut s = open(addr);
            s.write_all(bytes).expect("send");
            let (first, p) = read_frame(&mut s);
            assert_eq!(
                (first, p),
                (0x88, code.to_be_bytes().to_vec()),
                "[{backend}] {what}"
            );
            assert_eq!(
                read_to_close(&mut s, 64).expect("closed"),
                b"",
                "[{backend}] {what}"
            );
        }
        stop(server, backend);
    }
}

#[test]
fn bad_upgrades_get_an_http_error_and_a_close() {
    let up = upstream(Upstream::Echo);
    let long = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(5000)
    );
    let cases: [(&str, String, &str); 5] = [
        (
            "wrong origin",
            request("https://evil.example.com"),
            "HTTP/1.1 403 ",
        ),
        (
            "plain GET",
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            "HTTP/1.1 426 ",
        ),
        (
            "POST",
            request(PAGE).replacen("GET", "POST", 1),
            "HTTP/1.1 405 ",
        ),
        (
            "version 8",
            request(PAGE).replace("Version: 13", "Version: 8"),
            "HTTP/1.1 426 ",
        ),
        ("oversized", long, "HTTP/1.1 431 "),
    ];
    for backend in backends() {
        let (server, addr) = bridge(backend, up, &["--ws-origin", PAGE]);
        for (what, req, status) in &cases {
            let mut s = connect(addr);
            // The server may answer (and close) before all of it is sent.
            let _ = s.write_all(req.as_bytes());
            let head = read_head(&mut s);
            assert!(head.starts_with(status), "[{backend}] {what}: {head}");
            let _ = read_to_close(&mut s, 1 << 16);
        }
        let t = stop(server, backend);
        assert_eq!((t.origin_refused, t.rejected), (1, 4), "[{backend}]");
    }
}

#[test]
fn a_client_that_never_finishes_the_upgrade_is_closed_at_the_timeout() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = bridge(backend, up, &["--timeout", "300ms"]);
        let mut s = connect(addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .expect("half a request");
        assert_eq!(
            read_to_close(&mut s, 64).expect("closed"),
            b"",
            "[{backend}]"
        );
        assert_eq!(stop(server, backend).timed_out, 1, "[{backend}]");
    }
}

#[test]
fn a_game_server_that_is_down_gets_the_browser_a_502() {
    let down = closed_port();
    for backend in backends() {
        let (server, addr) = bridge(backend, down, &[]);
        let mut s = connect(addr);
        s.write_all(request(PAGE).as_bytes()).expect("upgrade");
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 502 "), "[{backend}] {head}");
        let _ = read_to_close(&mut s, 256);
        assert_eq!(stop(server, backend).upstream_failed, 1, "[{backend}]");
    }
}

#[test]
fn a_page_from_anywhere_draws_a_start_up_warning_without_ws_origin() {
    let up = upstream(Upstream::Echo);
    let (server, _) = bridge("epoll", up, &[]);
    assert!(
        server.log_text().contains("without --ws-origin"),
        "{}",
        server.log_text()
    );
    stop(server, "epoll");
    let (status, log) = run_to_exit(
        &["--ws-origin", "https://game.example.com/"],
        PROCESS_TIMEOUT,
    );
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
    assert!(log.contains("trailing /"), "{log}");
}

#[test]
fn proxy_v2_toward_the_game_names_the_browser() {
    use flashpolicy_proto::proxy::{HeaderReader, Step};
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = bridge(backend, up, &["--upstream-proxy-protocol", "v2"]);
        let mut s = connect_from("127.0.0.9", addr);
        let me = s.local_addr().expect("local");
        s.write_all(request(PAGE).as_bytes()).expect("upgrade");
        assert!(
            read_head(&mut s).starts_with("HTTP/1.1 101 "),
            "[{backend}]"
        );
        s.write_all(&frame(0x82, b"<msg/>")).expect("send");
        // The echo server sends back the header it got, then the bytes; a
        // v2 header for IPv4 is 28 bytes.
        let got = read_binary(&mut s, 28 + 6);
        match HeaderReader::default().feed(&got) {
            Step::Header {
                client, consumed, ..
            } => {
                assert_eq!(client, Some(me), "[{backend}]");
                assert_eq!(&got[consumed..], b"<msg/>", "[{backend}]");
            }
            other => panic!("[{backend}] not a PROXY header: {other:?} in {got:?}"),
        }
        s.write_all(&frame(0x88, b"")).expect("close");
        expect_close(&mut s, 1000);
        stop(server, backend);
    }
}

#[test]
fn a_flooding_browser_and_a_stalled_game_do_not_grow_the_bridge() {
    let up = upstream(Upstream::Stall);
    let chunk = frame(0x82, &vec![0x5au8; 60_000]);
    for backend in backends() {
        let (server, addr) = bridge(backend, up, &["--drain-timeout", "300ms"]);
        let rss = || rss_kb(server.pid());
        let mut s = open(addr);
        let before = rss();
        let written = flood_until_blocked(&mut s, &chunk);
        assert!(written < FLOOD_LIMIT, "[{backend}] the bridge took it all");
        let after = rss();
        assert!(
            after < before + 8 * 1024,
            "[{backend}] RSS {before} kB -> {after} kB after {written} bytes in"
        );
        drop(s);
        stop(server, backend);
    }
}
