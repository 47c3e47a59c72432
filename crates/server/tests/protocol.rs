//! Protocol behaviour over real sockets, for every backend: the exact reply
//! and a graceful close, split requests, the lenient terminators, bad input,
//! timeouts and a burst of concurrent clients.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn reply_is_the_policy_with_one_nul_then_fin() {
    for backend in backends() {
        let mut builder = Server::builder(backend).listen("127.0.0.1:0");
        let v6 = ipv6_loopback_available();
        if v6 {
            builder = builder.listen("[::1]:0");
        } else {
            eprintln!("skipping [::1]: IPv6 loopback is unavailable here");
        }
        let server = builder.args(&["--threads", "2"]).start();
        let expected = default_reply();
        assert!(
            expected.len() > 1,
            "the default policy renders to something"
        );
        for addr in &server.addrs {
            for i in 0..20 {
                assert_served(
                    *addr,
                    &[REQUEST],
                    &expected,
                    &format!("[{backend}] {addr} #{i}"),
                );
            }
        }
        if v6 {
            assert!(
                server.addrs[1].is_ipv6(),
                "[{backend}] second address is ::1"
            );
        }
    }
}

#[test]
fn split_request_at_every_byte_boundary() {
    for backend in backends() {
        let server = Server::start(backend, &["--threads", "2"]);
        let addr = server.addr();
        let expected = default_reply();
        // Every way to cut the request into three non-empty pieces (231
        // connections), sent as separate segments with a pause between, from
        // a few threads at once.
        let mut cuts = Vec::new();
        for i in 1..REQUEST.len() - 1 {
            for j in i + 1..REQUEST.len() {
                cuts.push((i, j));
            }
        }
        let threads: Vec<_> = cuts
            .chunks(cuts.len().div_ceil(8))
            .map(|part| {
                let part = part.to_vec();
                let expected = expected.clone();
                std::thread::spawn(move || {
                    for (i, j) in part {
                        let pieces = [&REQUEST[..i], &REQUEST[i..j], &REQUEST[j..]];
                        let got = exchange(addr, &pieces, Duration::from_millis(2), false);
                        assert_eq!(
                            got.as_deref().map_err(|(e, _)| e.kind()),
                            Ok(expected.as_slice()),
                            "[{backend}] request cut at {i} and {j}"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("split-request client thread");
        }
        // And one byte per segment.
        let bytes: Vec<&[u8]> = REQUEST.chunks(1).collect();
        assert_served(
            addr,
            &bytes,
            &expected,
            &format!("[{backend}] byte by byte"),
        );
    }
}

#[test]
fn newline_and_crlf_terminators() {
    for backend in backends() {
        let server = Server::start(backend, &[]);
        let expected = default_reply();
        for (name, request) in [
            ("\\n", &b"<policy-file-request/>\n"[..]),
            ("\\r\\n", &b"<policy-file-request/>\r\n"[..]),
        ] {
            assert_served(
                server.addr(),
                &[request],
                &expected,
                &format!("[{backend}] tag + {name}"),
            );
        }
        assert_served(
            server.addr(),
            &[b"<policy-file-request/>\r", b"\n"],
            &expected,
            &format!("[{backend}] \\r and \\n in two segments"),
        );
    }
}

#[test]
fn half_close_after_the_tag_is_a_request() {
    for backend in backends() {
        let server = Server::start(backend, &[]);
        let expected = default_reply();
        for tail in [&b""[..], b"\r"] {
            let mut stream = connect(server.addr());
            stream.write_all(TAG).expect("write");
            stream.write_all(tail).expect("write");
            stream.shutdown(Shutdown::Write).expect("half-close");
            let got = read_to_close(&mut stream, 1 << 20);
            assert_eq!(
                got.as_deref().map_err(|(e, _)| e.kind()),
                Ok(expected.as_slice()),
                "[{backend}] tag + {tail:?} + half-close"
            );
        }
        // A half-close before the tag is complete is not a request.
        let got = exchange(server.addr(), &[b"<policy-file-req"], Duration::ZERO, true);
        assert_eq!(
            got.as_deref().map_err(|(e, _)| e.kind()),
            Ok(&b""[..]),
            "[{backend}] truncated tag + half-close gets nothing"
        );
    }
}

/// Sends `bytes` and expects the server to close quickly with nothing sent.
fn assert_refused(addr: SocketAddr, bytes: &[u8], what: &str) {
    let mut stream = connect(addr);
    let started = Instant::now();
    // The server may close (even reset) while we are still writing.
    let _ = stream.write_all(bytes);
    let got = read_to_close(&mut stream, 1 << 20);
    let elapsed = started.elapsed();
    match got {
        Ok(bytes) => assert!(bytes.is_empty(), "{what}: got {bytes:?}"),
        Err((e, bytes)) => {
            assert!(
                matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                "{what}: read failed with {e} (a timeout means the server did not close)"
            );
            assert!(bytes.is_empty(), "{what}: got {bytes:?}");
        }
    }
    assert!(
        elapsed < Duration::from_secs(3),
        "{what}: closed only after {elapsed:?}"
    );
}

#[test]
fn anything_else_gets_nothing_and_is_closed_at_once() {
    for backend in backends() {
        // A long timeout, so a close here is a rejection, not a timeout.
        let server = Server::start(backend, &["--timeout", "30s"]);
        let addr = server.addr();
        let garbage: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
        let cases: [(&str, &[u8]); 6] = [
            (
                "HTTP request",
                b"GET /crossdomain.xml HTTP/1.1\r\nHost: x\r\n\r\n",
            ),
            ("wrong tag", b"<policy-file-request>\0"),
            ("other tag", b"<cross-domain-request/>\0"),
            ("binary garbage", &garbage),
            ("NUL first", b"\0<policy-file-request/>\0"),
            ("tag + junk", b"<policy-file-request/>x"),
        ];
        for (what, bytes) in cases {
            assert_refused(addr, bytes, &format!("[{backend}] {what}"));
        }
        // A flood: far more than any buffer the server could hold.
        let flood = vec![b'A'; 8 << 20];
        assert_refused(addr, &flood, &format!("[{backend}] 8 MB flood"));
        // Still fine.
        assert_served(
            addr,
            &[REQUEST],
            &default_reply(),
            &format!("[{backend}] after bad input"),
        );
    }
}

#[test]
fn idle_clients_are_timed_out_with_nothing_sent() {
    for backend in backends() {
        let server = Server::start(backend, &["--timeout", "300ms"]);
        for (what, bytes) in [("idle", &b""[..]), ("half a request", b"<policy-fi")] {
            // The deadline is armed at accept, which follows the start of
            // connect: from here, the close cannot come before 300 ms.
            let started = Instant::now();
            let mut stream = connect(server.addr());
            stream.write_all(bytes).expect("write");
            let got = read_to_close(&mut stream, 1 << 20);
            let elapsed = started.elapsed();
            assert_eq!(
                got.as_deref().map_err(|(e, _)| e.kind()),
                Ok(&b""[..]),
                "[{backend}] {what}: closed with nothing sent"
            );
            assert!(
                elapsed >= Duration::from_millis(300),
                "[{backend}] {what}: closed after {elapsed:?}, before the timeout"
            );
            assert!(
                elapsed < Duration::from_secs(3),
                "[{backend}] {what}: closed only after {elapsed:?}"
            );
        }
        // An idle client does not hold up anybody else: with a 30 s timeout
        // beside it, a generous 2 s bound still tells serving from waiting.
        let server = Server::start(backend, &["--timeout", "30s", "--threads", "1"]);
        let _idle = connect(server.addr());
        let started = Instant::now();
        assert_served(
            server.addr(),
            &[REQUEST],
            &default_reply(),
            &format!("[{backend}] beside an idle client"),
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "[{backend}] beside an idle client: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_burst_of_concurrent_clients_is_all_served() {
    const CLIENTS: usize = 400;
    for backend in backends() {
        let server = Server::start(backend, &["--threads", "2"]);
        let expected = default_reply();
        // Open every connection first, so they are all in flight together.
        let mut streams: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(server.addr())).collect();
        for s in &mut streams {
            s.write_all(REQUEST).expect("write");
        }
        for (i, s) in streams.iter_mut().enumerate() {
            let mut received = Vec::new();
            s.read_to_end(&mut received)
                .unwrap_or_else(|e| panic!("[{backend}] client {i}: {e}"));
            assert_eq!(received, expected, "[{backend}] client {i}");
        }
    }
}
