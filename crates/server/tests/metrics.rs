//! `--metrics ADDR`: the real server's `/metrics`, checked by the real
//! `promtool`, against the real load generator's counts, across reloads,
//! and with bad HTTP clients that must not disturb scrapes or serving.
//! Every test runs on both engines.
//!
//! `promtool` (Debian package `prometheus`) and the `flashpolicy-loadgen`
//! binary (built by `cargo nextest run --workspace`) are needed; a test
//! without one skips, saying so, unless `FLASHPOLICYD_REQUIRE_TOOLS=1`,
//! where it fails.

mod common;
#[path = "common/scrape.rs"]
mod scrape;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use flashpolicy_proto::serve::End;
use scrape::*;

#[test]
fn promtool_accepts_the_metrics() {
    let Some(promtool) = promtool() else { return };
    for backend in backends() {
        let (server, metrics) = start(backend, &["--threads", "2"]);
        assert_served(server.addr(), &[REQUEST], &default_reply(), backend);
        exchange(
            server.addr(),
            &[b"GET / HTTP/1.0\r\n\r\n"],
            Duration::ZERO,
            false,
        )
        .ok();
        promtool_check(&promtool, &scrape(metrics), backend);
        let body = scrape(metrics);
        for kind in ["retry", "out_of_resources", "refused", "other"] {
            let series = format!(r#"flashpolicyd_accept_errors_total{{kind="{kind}"}}"#);
            assert_eq!(value(&body, &series), Some(0), "[{backend}] {series}");
        }
        let info = format!(
            r#"flashpolicyd_build_info{{version="{}",engine="{backend}"}}"#,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&body, &info), Some(1), "[{backend}]\n{body}");
        let bytes = default_reply().len() as u64;
        assert_eq!(value(&body, "flashpolicyd_policy_bytes"), Some(bytes));
    }
}

#[test]
fn the_counters_equal_what_the_load_generator_counted() {
    let Some(loadgen) = loadgen() else { return };
    for backend in backends() {
        let (mut server, metrics) = start(backend, &["--threads", "2"]);
        let dir = TempFile::new(&format!("loadgen-{backend}.json"), b"");
        let out = Command::new(&loadgen)
            .args(["-c", "16", "--count", "2000", "--threads", "1", "-q"])
            .arg("--json")
            .arg(dir.path())
            .arg(server.addr().to_string())
            .stdin(Stdio::null())
            .output()
            .expect("run flashpolicy-loadgen");
        assert!(
            out.status.success(),
            "[{backend}] loadgen: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path()).expect("json"))
                .expect("valid JSON");
        let ok = json["ok"].as_u64().expect("ok");
        let errors: u64 = json["errors"]
            .as_object()
            .expect("errors")
            .values()
            .map(|v| v.as_u64().expect("a count"))
            .sum();
        assert_eq!(errors, 0, "[{backend}] loadgen errors: {}", json["errors"]);
        assert!(ok >= 2000, "[{backend}] ok {ok}");

        let body = scrape_until(metrics, "served never reached the loadgen's ok", |b| {
            (0..2).filter_map(|w| ended(b, End::Served, w)).sum::<u64>() >= ok
        });
        let served: Vec<u64> = (0..2)
            .map(|w| ended(&body, End::Served, w).expect("a served series per worker"))
            .collect();
        let total_served: u64 = served.iter().sum();
        assert_eq!(total_served, ok, "[{backend}] served by worker {served:?}");
        assert!(
            served.iter().all(|&s| s > 0),
            "[{backend}] SO_REUSEPORT gave one worker nothing of {ok}: {served:?}"
        );
        let total_accepted: u64 = (0..2).map(|w| accepted(&body, w).expect("accepted")).sum();
        assert_eq!(total_accepted, ok, "[{backend}]\n{body}");
        for end in End::ALL.into_iter().filter(|&e| e != End::Served) {
            for w in 0..2 {
                assert_eq!(
                    ended(&body, end, w),
                    Some(0),
                    "[{backend}] {end} worker {w}"
                );
            }
        }
        for w in 0..2 {
            let open = format!(r#"flashpolicyd_connections_open{{worker="{w}"}}"#);
            assert_eq!(value(&body, &open), Some(0), "[{backend}] {open}");
        }

        // The totals line comes from the same counters.
        server.signal(libc::SIGTERM);
        let log = server.expect_exit(0, backend);
        let totals = expect_totals(&log, backend);
        assert_eq!(totals.accepted, total_accepted, "[{backend}]");
        assert_eq!(totals.served, total_served, "[{backend}]");
        assert_eq!(totals.ended_total(), totals.served, "[{backend}]");
    }
}

fn policy(domain: &str) -> Vec<u8> {
    format!(
        "<cross-domain-policy>\n  \
         <allow-access-from domain=\"{domain}\" to-ports=\"843\" />\n\
         </cross-domain-policy>\n"
    )
    .into_bytes()
}

#[test]
fn reloads_are_counted_and_change_the_policy_size() {
    for backend in backends() {
        let file = TempFile::new(&format!("policy-{backend}.xml"), &policy("a.example.com"));
        let (server, metrics) = start(backend, &["--policy", file.path(), "--threads", "2"]);
        let reloads = |b: &str, result: &str| {
            value(
                b,
                &format!(r#"flashpolicyd_policy_reloads_total{{result="{result}"}}"#),
            )
        };
        let body = scrape(metrics);
        let first = policy("a.example.com").len() as u64 + 1;
        assert_eq!(value(&body, "flashpolicyd_policy_bytes"), Some(first));
        assert_eq!(reloads(&body, "ok"), Some(0));
        assert_eq!(reloads(&body, "error"), Some(0));

        let longer = policy("a-much-longer-name.example.com");
        file.write(&longer);
        server.signal(libc::SIGHUP);
        let body = scrape_until(metrics, "no successful reload counted", |b| {
            reloads(b, "ok") == Some(1)
        });
        let second = longer.len() as u64 + 1;
        assert_eq!(value(&body, "flashpolicyd_policy_bytes"), Some(second));
        assert_eq!(reloads(&body, "error"), Some(0));
        let mut reply = longer.clone();
        reply.push(0);
        assert_served(server.addr(), &[REQUEST], &reply, backend);

        file.write(b"<cross-domain-policy><allow-access-from domain=\"*\"/></cross-domain-policy>");
        server.signal(libc::SIGHUP);
        let body = scrape_until(metrics, "no failed reload counted", |b| {
            reloads(b, "error") == Some(1)
        });
        assert_eq!(reloads(&body, "ok"), Some(1));
        assert_eq!(value(&body, "flashpolicyd_policy_bytes"), Some(second));
        assert_served(server.addr(), &[REQUEST], &reply, backend);
    }
}

#[test]
fn bad_http_clients_hurt_neither_scrapes_nor_serving() {
    for backend in backends() {
        let (server, metrics) = start(backend, &["--threads", "1"]);
        let reply = default_reply();
        let serve = |what: &str| assert_served(server.addr(), &[REQUEST], &reply, what);

        assert_eq!(status_of(metrics, b"GET /other HTTP/1.1\r\n\r\n"), Ok(404));
        assert_eq!(status_of(metrics, b"GET / HTTP/1.1\r\n\r\n"), Ok(404));
        assert_eq!(
            status_of(metrics, b"DELETE /metrics HTTP/1.1\r\n\r\n"),
            Ok(405)
        );
        assert_eq!(
            status_of(metrics, b"\x16\x03\x01\x02\x00garbage\r\n\r\n"),
            Ok(400)
        );
        serve("after 404, 405 and 400");

        // Exactly the request buffer's worth, never complete: 431, then a
        // clean close (nothing left unread, so no reset).
        let mut long = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
        long.resize(8192, b'a');
        assert_eq!(status_of(metrics, &long), Ok(431), "[{backend}]");
        // A flood far past it: answered and closed, whatever the client
        // sees after.
        let mut flood = connect(metrics);
        let chunk = vec![b'b'; 64 * 1024];
        let _ = flood.write_all(b"GET /metrics HTTP/1.1\r\nX-Flood: ");
        for _ in 0..16 {
            if flood.write_all(&chunk).is_err() {
                break;
            }
        }
        drop(flood);
        serve("after the oversized requests");

        // Silent clients, more than the endpoint holds at once: a scrape
        // still answers at once, and so does the policy.
        let silent: Vec<TcpStream> = (0..20).map(|_| connect(metrics)).collect();
        std::thread::sleep(Duration::from_millis(100));
        let body = scrape(metrics);
        assert!(
            value(&body, "flashpolicyd_policy_bytes").is_some(),
            "{body}"
        );
        serve("with silent metrics clients connected");
        // The client may see the reply's FIN before the worker counts it:
        // the count follows within moments.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut body = scrape(metrics);
        while !ended(&body, End::Served, 0).is_some_and(|n| n >= 3)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
            body = scrape(metrics);
        }
        assert!(
            ended(&body, End::Served, 0).is_some_and(|n| n >= 3),
            "{body}"
        );
        drop(silent);

        // One client that sends half a request and stops.
        let mut half = connect(metrics);
        half.write_all(b"GET /metr").expect("send half");
        let _ = scrape(metrics);
        let mut buf = [0u8; 16];
        half.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        assert!(
            matches!(half.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut),
            "[{backend}] a half request is waited for, not answered"
        );
        serve("at the end");
    }
}

/// Names of the threads of process `pid`, less io_uring's kernel workers
/// (`iou-wrk-*`, `iou-sqp-*`), which the kernel starts as it likes.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.starts_with("iou-"))
        .collect()
}

/// The thread names of `pid` once every thread has named itself (a new
/// thread sets its name when it starts running): bounded by [`SETTLE`].
fn settled_thread_names(pid: u32, threads: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let names = thread_names(pid);
        let unnamed = names.iter().filter(|n| *n == "flashpolicyd").count();
        // The main thread keeps the process's name; every other is named.
        if (names.len() == threads && unnamed == 1) || std::time::Instant::now() >= deadline {
            return names;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn no_metrics_thread_without_the_option_and_the_totals_still_count() {
    for backend in backends() {
        // main, signals, reload, worker-0; and metrics with --metrics.
        let mut plain = Server::start(backend, &["--threads", "1"]);
        assert_served(plain.addr(), &[REQUEST], &default_reply(), backend);
        let names = settled_thread_names(plain.pid(), 4);
        assert_eq!(names.len(), 4, "[{backend}] {names:?}");
        assert!(names.iter().any(|n| n == "worker-0"), "{names:?}");
        assert!(
            !names.iter().any(|n| n == "metrics"),
            "[{backend}] {names:?}"
        );
        plain.signal(libc::SIGTERM);
        let totals = expect_totals(&plain.expect_exit(0, backend), backend);
        assert_eq!((totals.accepted, totals.served), (1, 1), "[{backend}]");

        let (with, _) = start(backend, &["--threads", "1"]);
        let names = settled_thread_names(with.pid(), 5);
        assert!(
            names.iter().any(|n| n == "metrics"),
            "[{backend}] {names:?}"
        );
    }
}

#[test]
fn a_taken_metrics_port_stops_start_up() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    for backend in backends() {
        let (status, log) = run_to_exit(
            &[
                "--backend",
                backend,
                "--listen",
                "127.0.0.1:0",
                "--metrics",
                &addr,
            ],
            PROCESS_TIMEOUT,
        );
        assert_eq!(status.and_then(|s| s.code()), Some(1), "[{backend}] {log}");
        assert!(
            log.contains(&format!("--metrics {addr}: cannot listen")),
            "[{backend}] {log}"
        );
        assert!(!log.contains("listening on"), "[{backend}] served: {log}");
    }
}
