//! `--payload --flash-gateway`: Flash Player's sequence against a gateway on
//! the game's port (loopback, an in-test gateway): the policy request on a
//! first connection, then the echo on a second one.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// A gateway in miniature: the policy (`reply`) for the policy request,
/// everything else echoed from its first byte on. Counts both kinds.
fn gateway(reply: Vec<u8>, policies: Arc<AtomicU64>, relays: Arc<AtomicU64>) -> Fake {
    Fake::start(false, move |mut s, _| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut head = [0u8; 23];
        if s.read_exact(&mut head).is_err() {
            return;
        }
        if head[..] == *REQUEST {
            policies.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(&reply);
            return;
        }
        relays.fetch_add(1, Ordering::SeqCst);
        if s.write_all(&head).is_err() {
            return;
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = s.shutdown(Shutdown::Write);
    })
}

fn counters() -> (Arc<AtomicU64>, Arc<AtomicU64>) {
    (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)))
}

#[test]
fn policy_first_then_the_echo_on_a_second_connection() {
    let dir = TempDir::new("flash-gateway");
    let (policies, relays) = counters();
    let fake = gateway(reply(), Arc::clone(&policies), Arc::clone(&relays));
    let target = fake.target();
    for (name, load) in [("closed", ["-c", "3"]), ("open", ["--rate", "150"])] {
        policies.store(0, Ordering::SeqCst);
        relays.store(0, Ordering::SeqCst);
        let mut args = load.to_vec();
        args.extend_from_slice(&[
            "--count",
            "30",
            "--payload",
            "8KiB",
            "--flash-gateway",
            &target,
        ]);
        let run = run_loadgen(&dir, name, &args);
        let j = &run.json;
        assert_eq!(u(j, &["ok"]), 30, "{name}: {}", run.stdout);
        assert_eq!(errors_total(j), 0, "{name}: {}", run.stdout);
        assert_eq!(u(j, &["bytes_received"]), 30 * 8192, "{name}");
        assert_eq!(j["flash_gateway"], true, "{name}");
        assert_eq!(policies.load(Ordering::SeqCst), 30, "{name}");
        assert_eq!(relays.load(Ordering::SeqCst), 30, "{name}");
    }
}

#[test]
fn no_valid_policy_means_no_game_connection() {
    let dir = TempDir::new("flash-gateway-bad");
    let (policies, relays) = counters();
    // A policy without its NUL.
    let fake = gateway(POLICY.to_vec(), Arc::clone(&policies), Arc::clone(&relays));
    let run = run_loadgen(
        &dir,
        "bad",
        &[
            "-c",
            "2",
            "--count",
            "10",
            "--payload",
            "1KiB",
            "--flash-gateway",
            &fake.target(),
        ],
    );
    let j = &run.json;
    assert_eq!(u(j, &["ok"]), 0, "{}", run.stdout);
    assert_eq!(u(j, &["errors", "bad_response"]), 10, "{}", run.stdout);
    assert_eq!(u(j, &["bytes_sent"]), 0);
    assert_eq!(policies.load(Ordering::SeqCst), 10);
    assert_eq!(relays.load(Ordering::SeqCst), 0);
}

#[test]
fn flash_gateway_needs_a_payload() {
    let out = run_plain(&["--flash-gateway", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("--payload"), "{msg}");
}
