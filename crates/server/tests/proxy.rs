//! `--proxy-protocol` end to end, on both engines: v1 and v2 headers in any
//! split, LOCAL, TLVs, bad and untrusted headers, the timeout, the totals
//! line, descriptors, and the configuration errors.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use flashpolicy_proto::serve::End;

fn v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 843\r\n").into_bytes()
}

fn v2(cmd: u8, client: [u8; 4], port: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut rest = client.to_vec();
    rest.extend_from_slice(&[127, 0, 0, 1]);
    rest.extend_from_slice(&port.to_be_bytes());
    rest.extend_from_slice(&843u16.to_be_bytes());
    rest.extend_from_slice(tlvs);
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | cmd);
    h.push(0x11);
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.extend_from_slice(&rest);
    h
}

fn stop(mut server: Server) -> (String, flashpolicy_proto::serve::Tally) {
    server.signal(libc::SIGTERM);
    let log = server.expect_exit(0, "SIGTERM");
    let totals = expect_totals(&log, "totals");
    (log, totals)
}

#[test]
fn valid_headers_in_any_split_are_served_with_the_client_address() {
    let reply = default_reply();
    let mut tlvs = vec![0x04, 0x01, 0x00];
    tlvs.resize(3 + 256, 0xab); // a 256-byte NOOP TLV
    tlvs.extend_from_slice(&[0x05, 0x00, 0x02, 1, 2]); // a unique ID
    let headers: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("v1", v1("192.0.2.1", 5001), Some("192.0.2.1:5001")),
        (
            "v2",
            v2(1, [192, 0, 2, 2], 5002, &[]),
            Some("192.0.2.2:5002"),
        ),
        (
            "v2 TLVs",
            v2(1, [192, 0, 2, 3], 5003, &tlvs),
            Some("192.0.2.3:5003"),
        ),
        ("v2 LOCAL", v2(0, [192, 0, 2, 4], 5004, &[]), None),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec(), None),
    ];
    for backend in backends() {
        let server = Server::start(backend, &["--proxy-protocol", "--log", "debug"]);
        let mut served = 0;
        for (what, header, _) in &headers {
            // Every split of the header; the request follows in the
            // header's last piece (one segment, as a balancer sends it).
            let step = if header.len() > 64 { 7 } else { 1 };
            for at in (0..header.len()).step_by(step) {
                let mut rest = header[at..].to_vec();
                rest.extend_from_slice(REQUEST);
                let got = exchange(
                    server.addr(),
                    &[&header[..at], &rest],
                    Duration::from_millis(2),
                    false,
                );
                assert_eq!(
                    got.as_deref().map_err(|(e, _)| e.kind()),
                    Ok(&reply[..]),
                    "[{backend}] {what} split at {at}"
                );
                served += 1;
            }
        }
        // The client addresses appear in the debug log; LOCAL and UNKNOWN
        // name the real peer.
        for (what, _, client) in &headers {
            if let Some(client) = client {
                assert!(
                    server.wait_for_log(&format!("client {client} via 127.0.0.1:"), IO_TIMEOUT),
                    "[{backend}] {what}: {client} not in the debug log"
                );
            }
        }
        let (log, totals) = stop(server);
        assert!(
            log.contains("client 127.0.0.1:"),
            "[{backend}] LOCAL/UNKNOWN"
        );
        assert!(
            log.contains("any peer may send a PROXY header"),
            "[{backend}] warning"
        );
        assert_eq!(totals.get(End::Served), served, "[{backend}] {totals:?}");
        assert_eq!(totals.accepted, served, "[{backend}] {totals:?}");
    }
}

#[test]
fn bad_headers_get_no_reply_and_count_as_proxy_invalid() {
    for backend in backends() {
        let server = Server::start(
            backend,
            &["--proxy-protocol", "--timeout", "30s", "--threads", "1"],
        );
        let pid = server.pid();
        let mut good = v1("192.0.2.9", 9);
        good.extend_from_slice(REQUEST);
        // Served first: the worker is up and has opened its descriptors.
        assert_served(server.addr(), &[&good], &default_reply(), backend);
        let before = settled_fds(pid);
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(120, b'a');
        long.extend_from_slice(b"\r\n");
        let mut bad_v2 = v2(1, [1, 2, 3, 4], 1, &[]);
        bad_v2[12] = 0x23; // command 3
        let cases: [(&str, &[u8], bool); 5] = [
            ("a plain request", REQUEST, false),
            ("v1 over 107 bytes", &long, false),
            (
                "a malformed v1",
                b"PROXY TCP4 300.1.1.1 127.0.0.1 1 2\r\n",
                false,
            ),
            ("a bad v2 command", &bad_v2, false),
            (
                "a truncated header, then a half-close",
                b"PROXY TCP4 192.0.2.1 ",
                true,
            ),
        ];
        for (what, bytes, half_close) in cases {
            let mut stream = connect(server.addr());
            stream.write_all(bytes).expect("write");
            if half_close {
                stream
                    .shutdown(std::net::Shutdown::Write)
                    .expect("shutdown");
            }
            assert_closed_without_reply(stream, &format!("[{backend}] {what}"));
        }
        // Nothing leaked: the descriptors go back to where they were.
        let deadline = Instant::now() + IO_TIMEOUT;
        while open_fds(pid) > before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(open_fds(pid), before, "[{backend}] descriptors leaked");
        // A good client is still served.
        assert_served(server.addr(), &[&good], &default_reply(), backend);
        let (_, totals) = stop(server);
        assert_eq!(totals.get(End::ProxyInvalid), 5, "[{backend}] {totals:?}");
        assert_eq!(totals.get(End::Served), 2, "[{backend}] {totals:?}");
    }
}

#[test]
fn peers_outside_proxy_from_are_closed_at_once() {
    let mut header = v1("192.0.2.1", 1);
    header.extend_from_slice(REQUEST);
    for backend in backends() {
        let server = Server::start(
            backend,
            &[
                "--proxy-protocol",
                "--proxy-from",
                "127.0.0.1/32",
                "--timeout",
                "30s",
            ],
        );
        // From 127.0.0.2: closed without a reply, long before --timeout.
        let mut stream = connect_from("127.0.0.2", server.addr());
        stream.write_all(&header).expect("write");
        let started = Instant::now();
        assert_closed_without_reply(stream, &format!("[{backend}] untrusted"));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "[{backend}] not at once"
        );
        // From 127.0.0.1: served.
        let mut stream = connect_from("127.0.0.1", server.addr());
        stream.write_all(&header).expect("write");
        let got = read_to_close(&mut stream, 1 << 20).expect("served");
        assert_eq!(got, default_reply(), "[{backend}] trusted");
        let (log, totals) = stop(server);
        assert!(!log.contains("any peer may send"), "[{backend}] no warning");
        assert_eq!(totals.get(End::ProxyInvalid), 1, "[{backend}] {totals:?}");
        assert_eq!(totals.get(End::Served), 1, "[{backend}] {totals:?}");
    }
}

#[test]
fn a_header_that_never_completes_times_out() {
    for backend in backends() {
        let server = Server::start(backend, &["--proxy-protocol", "--timeout", "300ms"]);
        let started = Instant::now();
        let mut stream = connect(server.addr());
        stream.write_all(b"PROXY TCP4 192.0.2.1").expect("write");
        let got = read_to_close(&mut stream, 1 << 20);
        assert_eq!(
            got.as_deref().map_err(|(e, _)| e.kind()),
            Ok(&b""[..]),
            "[{backend}] closed with nothing sent"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "[{backend}] closed before --timeout"
        );
        let (_, totals) = stop(server);
        assert_eq!(totals.get(End::TimedOut), 1, "[{backend}] {totals:?}");
    }
}

#[test]
fn proxy_config_errors_name_the_option() {
    for (args, needle) in [
        (&["--proxy-from", "127.0.0.1/32"][..], "--proxy-from"),
        (
            &["--proxy-protocol", "--proxy-from", "10.0.0.0/33"],
            "--proxy-from",
        ),
        (
            &["--proxy-protocol", "--proxy-from", "bogus"],
            "--proxy-from",
        ),
        (
            &["--proxy-protocol", "--proxy-from", "10.0.0.1/8"],
            "10.0.0.0/8",
        ),
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let (status, text) = run_to_exit(&all, PROCESS_TIMEOUT);
        let code = status.and_then(|s| s.code());
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert!(text.contains(needle), "{args:?}: {text}");
        assert!(!text.contains("listening on"), "{args:?}: {text}");
    }
}
