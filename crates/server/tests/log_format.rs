//! `--log-format json`: every line on stderr is one JSON object, and the
//! totals at exit are one object whose counters match what was served.

mod common;

use std::net::TcpStream;

use common::{assert_served, backends, default_reply, run_to_exit, Server, REQUEST};
use flashpolicy_proto::serve::End;

#[test]
fn every_line_is_json_and_the_totals_match() {
    for backend in backends() {
        let mut server = Server::start(backend, &["--threads", "2", "--log-format", "json"]);
        for i in 0..4 {
            assert_served(
                server.addr(),
                &[REQUEST],
                &default_reply(),
                &format!("[{backend}] client {i}"),
            );
        }
        // Two rejected: an HTTP request, and a client that sends nothing
        // before closing.
        let rejected = common::exchange(
            server.addr(),
            &[b"GET / HTTP/1.0\r\n\r\n"],
            Default::default(),
            false,
        );
        assert!(rejected.is_ok_and(|r| r.is_empty()), "[{backend}]");
        drop(TcpStream::connect(server.addr()));
        server.signal(libc::SIGTERM);
        let log = server.expect_exit(0, &format!("[{backend}]"));
        let mut totals = None;
        for line in log.lines() {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("[{backend}] not JSON ({e}): {line}\n{log}"));
            if let Some(t) = value.get("totals") {
                totals = Some(t.clone());
            } else {
                assert!(value.get("message").is_some(), "[{backend}] {line}");
                assert!(value.get("level").is_some(), "[{backend}] {line}");
            }
        }
        let totals = totals.unwrap_or_else(|| panic!("[{backend}] no totals object:\n{log}"));
        let get = |k: &str| totals.get(k).and_then(serde_json::Value::as_u64);
        assert_eq!(get("served"), Some(4), "[{backend}] {totals}");
        assert_eq!(get("rejected"), Some(2), "[{backend}] {totals}");
        let ended: u64 = End::ALL
            .iter()
            .map(|e| get(e.name()).expect("every end named"))
            .sum();
        assert_eq!(get("accepted"), Some(ended), "[{backend}] {totals}");
        assert_eq!(
            totals.as_object().map(|o| o.len()),
            Some(End::ALL.len() + 1),
            "[{backend}] {totals}"
        );
        assert!(!log.contains("flashpolicyd: totals"), "[{backend}] {log}");
    }
}

#[test]
fn a_config_error_is_json_too() {
    let (status, log) = run_to_exit(
        &[
            "--log-format",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--timeout",
            "0s",
        ],
        std::time::Duration::from_secs(10),
    );
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
    let value: serde_json::Value = serde_json::from_str(log.trim()).expect("one JSON line");
    assert!(
        value["message"]
            .as_str()
            .is_some_and(|m| m.contains("--timeout")),
        "{value}"
    );
}
