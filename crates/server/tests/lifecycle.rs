//! Start-up and shutdown: policy options, configuration errors and their
//! exit statuses, bind failures, IPv6 literals, and SIGTERM draining.

mod common;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;

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
        // Past the clock's range once added to now: refused, naming the limit.
        (&["--timeout", "500000000000y"][..], "the most is 1h"),
        (&["--timeout", "61m"][..], "the most is 1h"),
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
        // Only the address asked for: nothing of ours answers on IPv4 at
        // that port. Refused is the norm; should an unrelated program hold
        // the same port on 127.0.0.1, it must at least not serve our policy.
        let v4 = SocketAddr::from(([127, 0, 0, 1], addr.port()));
        match TcpStream::connect_timeout(&v4, Duration::from_secs(1)) {
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "[{backend}] {v4}"),
            Ok(mut stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .expect("timeout");
                let _ = stream.write_all(REQUEST);
                let got = read_to_close(&mut stream, 1 << 20);
                assert_ne!(
                    got.ok(),
                    Some(default_reply()),
                    "[{backend}] served on {v4} too"
                );
            }
        }
    }
}

#[test]
fn sigterm_finishes_in_flight_clients_then_exits_0_with_totals() {
    for backend in backends() {
        // The in-flight client must finish within the server's deadline
        // (here 5 s after it connected) however late this thread runs.
        let mut server = Server::start(backend, &["--threads", "2", "--timeout", "6s"]);
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
        let log = server.expect_exit(0, &format!("[{backend}]"));
        let totals = expect_totals(&log, &format!("[{backend}]"));
        assert_eq!(totals.served, 2, "[{backend}] log:\n{log}");
        assert_eq!(totals.timed_out, 1, "[{backend}] log:\n{log}");
        assert_eq!(
            totals.accepted,
            totals.ended_total(),
            "[{backend}] log:\n{log}"
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
        let log = server.expect_exit(0, &format!("[{backend}]"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "[{backend}] took {:?} to stop with no clients",
            started.elapsed()
        );
        let totals = expect_totals(&log, &format!("[{backend}]"));
        assert_eq!(totals, Default::default(), "[{backend}] log:\n{log}");
    }
}

#[test]
fn the_totals_line_is_parsed_strictly() {
    let log =
        "x INFO stopped: served 20, rejected 0, timed out 1, failed 0, shed 0 (accepted 21)\n\
               flashpolicyd: totals accepted=21 served=20 rejected=0 timed_out=1 failed=0 shed=0 proxy_invalid=0 over_ip_limit=0 relayed=0 upstream_failed=0 origin_refused=0";
    let totals = parse_totals(log).expect("parsed");
    assert_eq!(
        (totals.accepted, totals.served, totals.timed_out),
        (21, 20, 1)
    );
    assert_eq!(totals.ended_total(), 21);
    for bad in [
        "flashpolicyd: totals accepted=1 served=1 rejected=0 timed_out=0 failed=0",
        "flashpolicyd: totals accepted=1 served=1 rejected=0 timed_out=0 failed=0 shed=0 proxy_invalid=0 over_ip_limit=0 relayed=0 upstream_failed=0 origin_refused=0 extra=1",
        "flashpolicyd: totals accepted=1 served=1 served=1 timed_out=0 failed=0 shed=0 proxy_invalid=0 over_ip_limit=0 relayed=0 upstream_failed=0 origin_refused=0",
        "flashpolicyd: totals accepted=x served=1 rejected=0 timed_out=0 failed=0 shed=0 proxy_invalid=0 over_ip_limit=0 relayed=0 upstream_failed=0 origin_refused=0",
        "x INFO stopped: served 20, rejected 0, timed out 1, failed 0, shed 0 (accepted 21)",
    ] {
        assert_eq!(parse_totals(bad), None, "{bad}");
    }
}

#[test]
fn a_second_signal_during_the_drain_exits_at_once() {
    for backend in backends() {
        let mut server = Server::start(backend, &["--timeout", "1h"]);
        // An idle client keeps the drain going for the whole --timeout.
        let _idle = connect(server.addr());
        assert!(
            server.wait_for_log("listening on", Duration::from_secs(1)),
            "[{backend}] not up"
        );
        std::thread::sleep(Duration::from_millis(100));
        server.signal(libc::SIGTERM);
        assert!(
            server.wait_for_log("no longer accepting", Duration::from_secs(2)),
            "[{backend}] no shutdown log; log:\n{}",
            server.log_text()
        );
        assert!(
            server.is_running(),
            "[{backend}] did not wait for the idle client"
        );
        server.signal(libc::SIGINT);
        let log = server.expect_exit(128 + libc::SIGINT, &format!("[{backend}]"));
        assert!(log.contains("again"), "[{backend}] log:\n{log}");
    }
}

#[test]
fn a_panicking_worker_stops_the_server_with_status_1() {
    // Debug builds only (tests run them): the hook panics worker 1 at start.
    let mut server = Server::builder("epoll")
        .args(&["--threads", "2", "--timeout", "1h"])
        .env("FLASHPOLICYD_TEST_PANIC_WORKER", "1")
        .start();
    let log = server.expect_exit(1, "");
    assert!(log.contains("worker 1 failed"), "log:\n{log}");
}

#[test]
fn an_oversize_policy_file_is_refused_without_reading_it_all() {
    let max = flashpolicy_proto::policy::MAX_POLICY_LEN;
    let mut big = VALID_POLICY.to_vec();
    let pad = max + 1 - big.len();
    // Padding as an XML comment after the root, so only the size is wrong.
    big.extend_from_slice(b"<!--");
    big.extend(std::iter::repeat(b'x').take(pad));
    big.extend_from_slice(b"-->");
    let file = TempFile::new("big.xml", &big);
    for path in [file.path(), "/dev/zero"] {
        let started = Instant::now();
        let (status, stderr) = run_to_exit(
            &["--listen", "127.0.0.1:0", "--policy", path],
            PROCESS_TIMEOUT,
        );
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{path}; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains(path)
                && stderr.contains(&format!("the most a socket policy may have is {max}")),
            "{path}; stderr:\n{stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path}: took {:?}",
            started.elapsed()
        );
    }
    // A regular file's message gives its real size.
    let (_, stderr) = run_to_exit(
        &["--listen", "127.0.0.1:0", "--policy", file.path()],
        PROCESS_TIMEOUT,
    );
    assert!(
        stderr.contains(&format!("the policy is {} bytes", big.len())),
        "stderr:\n{stderr}"
    );
}

/// `n` distinct `--allow` rules, each rendering to about 80 bytes.
fn many_allow_args(n: usize) -> Vec<String> {
    (0..n)
        .flat_map(|i| {
            [
                "--allow".to_string(),
                format!("host-{i:04}.some-long-subdomain.example.com:843"),
            ]
        })
        .collect()
}

#[test]
fn generated_policies_are_validated_too() {
    // Past 1,400 bytes: served, with the size warning.
    let args = many_allow_args(30);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start("epoll", &args);
    assert!(
        server.wait_for_log("may not fit in one segment", Duration::from_secs(2)),
        "no size warning; log:\n{}",
        server.log_text()
    );
    assert!(
        server.log_text().contains("--allow:"),
        "{}",
        server.log_text()
    );
    drop(server);

    // Past 10 KB: refused.
    let args = many_allow_args(200);
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend(args.iter().map(String::as_str));
    let (status, stderr) = run_to_exit(&all, PROCESS_TIMEOUT);
    assert_eq!(status.and_then(|s| s.code()), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("--allow:") && stderr.contains("the most a socket policy may have"),
        "stderr:\n{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn check_prints_the_policy_and_binds_nothing() {
    let document = b"<?xml version=\"1.0\"?>\n<cross-domain-policy>\n  <allow-access-from domain=\"*.example.com\" to-ports=\"80,443\" />\n</cross-domain-policy>\n";
    let file = TempFile::new("check.xml", document);
    // A port that is certainly taken: --check must not try to bind it.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let output = std::process::Command::new(BIN)
        .args(["--check", "--policy", file.path(), "--listen", &addr])
        .output()
        .expect("run flashpolicyd --check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stdout.starts_with(&format!("policy {}", file.path())),
        "{stdout}"
    );
    assert!(
        output.stdout.ends_with(document),
        "the document as served:\n{stdout}"
    );
    // Served from a port >= 1024, the grant of ports 80 and 443 is in vain.
    assert!(
        stderr.contains("warning:") && stderr.contains("below 1024"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn check_refuses_an_invalid_policy_with_status_2() {
    let file = TempFile::new(
        "check-invalid.xml",
        b"<cross-domain-policy>\n  <allow-access-from to-ports=\"*\" />\n</cross-domain-policy>\n",
    );
    let output = std::process::Command::new(BIN)
        .args(["--check", "--policy", file.path()])
        .output()
        .expect("run flashpolicyd --check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains(&format!("{}:2:", file.path())), "{stderr}");
    assert!(output.stdout.is_empty());
}
