//! `--defer-accept` (`TCP_DEFER_ACCEPT`): the kernel hands a connection over
//! once its request has arrived, and `--timeout` keeps its meaning as a
//! client sees it: one that sends nothing is closed about `--timeout` after
//! it connected (the kernel's hold of about 1 s comes off the server's own
//! deadline), not twice that.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

/// How long after connecting a client that sends nothing is closed, and
/// whether it got a clean end-of-stream with nothing sent.
fn silent_client_lifetime(addr: std::net::SocketAddr) -> (Duration, Result<usize, String>) {
    let start = Instant::now();
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let got = s.read(&mut buf).map_err(|e| e.to_string());
    (start.elapsed(), got)
}

#[test]
fn a_silent_client_is_closed_about_timeout_after_connecting() {
    for backend in backends() {
        let server = Server::start(backend, &["--timeout", "2s", "--defer-accept"]);
        assert!(
            server.wait_for_log("defer-accept on", Duration::from_secs(2)),
            "[{backend}] log:\n{}",
            server.log_text()
        );
        let (lifetime, got) = silent_client_lifetime(server.addr());
        assert_eq!(got, Ok(0), "[{backend}] a clean close with nothing sent");
        // 1 s in the kernel, then 1 s in the server. Before the hold came
        // off the server's deadline (and with a hold of --timeout seconds)
        // it was 3 s + 2 s.
        assert!(
            lifetime >= Duration::from_millis(1800),
            "[{backend}] closed after {lifetime:?}, before --timeout"
        );
        assert!(
            lifetime < Duration::from_millis(4500),
            "[{backend}] closed after {lifetime:?}, long past --timeout 2s"
        );
    }
}

#[test]
fn the_kernel_holds_a_silent_client_and_hands_over_one_that_sends() {
    for backend in backends() {
        let server = Server::start(
            backend,
            &["--timeout", "5s", "--threads", "1", "--defer-accept"],
        );
        let pid = server.pid();
        // Let the workers finish opening their descriptors.
        let before = settled_fds(pid);
        let _silent = connect(server.addr());
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            open_fds(pid),
            before,
            "[{backend}] the server accepted a client that has sent nothing"
        );
        // One that sends is served at once, beside it.
        assert_served(server.addr(), &[REQUEST], &default_reply(), backend);
        wait_for_fds(pid, before, &format!("[{backend}] after serving"));
        // A partial request is handed over too (and held by the server).
        let mut partial = connect(server.addr());
        partial.write_all(b"<policy").expect("write");
        let deadline = Instant::now() + Duration::from_secs(2);
        while open_fds(pid) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            open_fds(pid),
            before + 1,
            "[{backend}] a client that sent bytes was not handed over"
        );
    }
}

#[test]
fn off_by_default_and_the_last_flag_wins() {
    for (args, on) in [
        (&["--timeout", "2s"][..], false),
        (&["--defer-accept", "--no-defer-accept"][..], false),
        (&["--timeout", "1s", "--defer-accept"][..], true),
        (&["--no-defer-accept", "--defer-accept"][..], true),
    ] {
        let server = Server::start("epoll", args);
        let want = if on {
            "defer-accept on"
        } else {
            "defer-accept off"
        };
        let found = server.wait_for_log(want, Duration::from_secs(2));
        let log = server.log_text();
        assert!(found, "{args:?}: log:\n{log}");
        if args.contains(&"1s") && on {
            assert!(
                log.contains("holds a client that sends nothing"),
                "{args:?}: {log}"
            );
        }
        if !on {
            // Off: a silent client is accepted (and held) at once.
            let pid = server.pid();
            std::thread::sleep(Duration::from_millis(200));
            let before = open_fds(pid);
            let _silent = connect(server.addr());
            let deadline = Instant::now() + Duration::from_secs(2);
            while open_fds(pid) == before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(open_fds(pid), before + 1, "{args:?}: not accepted at once");
        }
    }
}
