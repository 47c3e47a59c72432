//! Start-up and shutdown: policy options, configuration errors and their
//! exit statuses, bind failures, IPv6 literals, and SIGTERM draining.

mod common;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

/// A file in a fresh per-test directory (removed when dropped).
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let dir =
            std::env::temp_dir().join(format!("flashpolicyd-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        TempFile { dir, path }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const VALID_POLICY: &[u8] = b"<?xml version=\"1.0\"?>\n\
<!DOCTYPE cross-domain-policy SYSTEM \"/xml/dtds/cross-domain-policy.dtd\">\n\
<cross-domain-policy>\n\
  <site-control permitted-cross-domain-policies=\"master-only\"/>\n\
  <allow-access-from domain=\"*.example.com\" to-ports=\"843,1024-2048\" />\n\
</cross-domain-policy>\n";

#[test]
fn policy_file_is_served_byte_for_byte_plus_one_nul() {
    for backend in backends() {
        let file = TempFile::new("valid.xml", VALID_POLICY);
        let server = Server::start(backend, &["--policy", file.path()]);
        let mut expected = VALID_POLICY.to_vec();
        expected.push(0);
        assert_served(
            server.addr(),
            &[REQUEST],
            &expected,
            &format!("[{backend}] --policy"),
        );
    }
}

#[test]
fn allow_options_generate_the_policy() {
    for backend in backends() {
        let server = Server::start(
            backend,
            &[
                "--allow",
                "*.example.com:443,8000-8100",
                "--allow",
                "10.0.0.1:843",
            ],
        );
        let got = exchange(server.addr(), &[REQUEST], Duration::ZERO, false)
            .unwrap_or_else(|(e, _)| panic!("[{backend}] {e}"));
        let (&nul, document) = got.split_last().expect("a reply");
        assert_eq!(nul, 0, "[{backend}] ends with NUL");
        assert!(!document.contains(&0), "[{backend}] exactly one NUL");
        let text = String::from_utf8_lossy(document);
        for needle in [
            "<cross-domain-policy>",
            "domain=\"*.example.com\"",
            "to-ports=\"443,8000-8100\"",
            "domain=\"10.0.0.1\"",
            "to-ports=\"843\"",
        ] {
            assert!(text.contains(needle), "[{backend}] no {needle} in:\n{text}");
        }
    }
}

#[test]
fn invalid_policy_file_exits_2_naming_file_line_and_column() {
    // `to-ports` is missing on line 3.
    let file = TempFile::new(
        "invalid.xml",
        b"<?xml version=\"1.0\"?>\n<cross-domain-policy>\n  <allow-access-from domain=\"*\" />\n</cross-domain-policy>\n",
    );
    let (status, stderr) = run_to_exit(
        &["--listen", "127.0.0.1:0", "--policy", file.path()],
        PROCESS_TIMEOUT,
    );
    assert_eq!(status.and_then(|s| s.code()), Some(2), "stderr:\n{stderr}");
    let located = format!("{}:3:", file.path());
    assert!(
        stderr.contains(&located),
        "stderr does not name {located}COLUMN:\n{stderr}"
    );
    assert!(
        !stderr.contains("listening on"),
        "nothing is served:\n{stderr}"
    );
}

#[test]
fn unreadable_policy_file_exits_2() {
    let (status, stderr) = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--policy",
            "/nonexistent/flashpolicyd/policy.xml",
        ],
        PROCESS_TIMEOUT,
    );
    assert_eq!(status.and_then(|s| s.code()), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("/nonexistent/flashpolicyd/policy.xml"),
        "{stderr}"
    );
}

#[test]
fn policy_and_allow_together_is_a_usage_error() {
    let file = TempFile::new("both.xml", VALID_POLICY);
    let (status, stderr) = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--policy",
            file.path(),
            "--allow",
            "*:843",
        ],
        PROCESS_TIMEOUT,
    );
    assert_eq!(status.and_then(|s| s.code()), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("--allow") && stderr.contains("--policy"),
        "{stderr}"
    );
}

#[test]
fn malformed_allow_is_a_usage_error() {
    let (status, stderr) = run_to_exit(
        &["--listen", "127.0.0.1:0", "--allow", "*.example.com:70000"],
        PROCESS_TIMEOUT,
    );
    assert_eq!(status.and_then(|s| s.code()), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("70000"), "{stderr}");
}

#[test]
fn bad_numbers_and_durations_are_usage_errors() {
    for (args, needle) in [
        (&["--timeout", "5"][..], "unit"),
        (&["--timeout", "0s"][..], "--timeout"),
        (&["--threads", "0"][..], "--threads"),
        (&["--max-connections", "0"][..], "--max-connections"),
        (&["--listen", "127.0.0.1"][..], "--listen"),
        (&["--backend", "kqueue"][..], "--backend"),
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let (status, stderr) = run_to_exit(&all, PROCESS_TIMEOUT);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{args:?}; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains(needle),
            "{args:?}: no {needle} in:\n{stderr}"
        );
    }
}

#[test]
fn help_lists_the_options_scripts_rely_on() {
    let output = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--listen <ADDR>",
        "--policy <FILE>",
        "--allow <DOMAIN:PORTS>",
        "--backend <BACKEND>",
        "--threads <N>",
        "--timeout <DURATION>",
        "--max-connections <N>",
    ] {
        assert!(help.contains(option), "--help lacks {option}:\n{help}");
    }
}

#[test]
fn port_in_use_exits_1_with_a_clear_message() {
    // Held by an ordinary socket...
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = holder.local_addr().expect("addr").to_string();
    let (status, stderr) = run_to_exit(&["--listen", &addr], PROCESS_TIMEOUT);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("in use"),
        "{stderr}"
    );
    drop(holder);

    // ...and by another flashpolicyd, whose SO_REUSEPORT group a second
    // server must not silently join.
    for backend in backends() {
        let first = Server::start(backend, &[]);
        let addr = first.addr().to_string();
        let (status, stderr) =
            run_to_exit(&["--backend", backend, "--listen", &addr], PROCESS_TIMEOUT);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(1),
            "[{backend}] second server on {addr}; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("cannot listen on {addr}")),
            "{stderr}"
        );
    }
}

#[test]
fn ipv6_literal_listen_address() {
    if !ipv6_loopback_available() {
        eprintln!("skipping: IPv6 loopback is unavailable here");
        return;
    }
    for backend in backends() {
        let server = Server::builder(backend).listen("[::1]:0").start();
        let addr = server.addr();
        assert_eq!(addr.ip(), "::1".parse::<std::net::IpAddr>().expect("ip"));
        assert_served(
            addr,
            &[REQUEST],
            &default_reply(),
            &format!("[{backend}] {addr}"),
        );
        // Not dual-stack: a specific IPv6 address does not take IPv4.
        let v4 = SocketAddr::from(([127, 0, 0, 1], addr.port()));
        if let Ok(stream) = TcpStream::connect_timeout(&v4, Duration::from_secs(1)) {
            drop(stream);
            // Something else may hold that port on IPv4; only a reply
            // would be wrong, and it is not ours to check further.
        }
    }
}

#[test]
fn sigterm_finishes_in_flight_clients_then_exits_0_with_totals() {
    for backend in backends() {
        let mut server = Server::start(backend, &["--threads", "2", "--timeout", "2s"]);
        let addr = server.addr();
        let expected = default_reply();
        assert_served(addr, &[REQUEST], &expected, &format!("[{backend}] before"));

        // One client half-way through its request, one that never sends.
        let mut in_flight = connect(addr);
        in_flight.write_all(&REQUEST[..10]).expect("write");
        let idle = connect(addr);
        std::thread::sleep(Duration::from_millis(100));

        server.signal(libc::SIGTERM);
        assert!(
            server.wait_for_log("no longer accepting", Duration::from_secs(2)),
            "[{backend}] no shutdown log; log:\n{}",
            server.log_text()
        );
        // Listeners close promptly; the process stays up for the clients.
        let refused_by = Instant::now() + Duration::from_secs(2);
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
                _ if Instant::now() >= refused_by => {
                    panic!("[{backend}] still accepting after SIGTERM")
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        assert!(
            server.is_running(),
            "[{backend}] exited with a client in flight"
        );

        // The in-flight client finishes and gets the whole policy.
        in_flight.write_all(&REQUEST[10..]).expect("write");
        let got = read_to_close(&mut in_flight, 1 << 20);
        assert_eq!(
            got.as_deref().map_err(|(e, _)| e.kind()),
            Ok(expected.as_slice()),
            "[{backend}] in-flight client"
        );

        // The idle one is bounded by the timeout, then the server exits 0.
        let status = server.wait_exit(PROCESS_TIMEOUT);
        let log = server.log_text();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "[{backend}] log:\n{log}"
        );
        assert!(
            log.contains("served 2") && log.contains("timed out 1"),
            "[{backend}] totals; log:\n{log}"
        );
        drop(idle);
    }
}

#[test]
fn sigint_with_nothing_in_flight_exits_at_once() {
    for backend in backends() {
        let mut server = Server::start(backend, &["--timeout", "30s"]);
        let started = Instant::now();
        server.signal(libc::SIGINT);
        let status = server.wait_exit(PROCESS_TIMEOUT);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "[{backend}] log:\n{}",
            server.log_text()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "[{backend}] took {:?} to stop with no clients",
            started.elapsed()
        );
        assert!(server.log_text().contains("stopped: served 0"));
    }
}
