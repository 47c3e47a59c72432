//! The load generator against a real `flashpolicyd` (epoll engine, one
//! thread): closed and open loop must give successes only, and sane
//! histograms. Skipped, with a note, when the server binary is not built
//! (`cargo nextest run --workspace` builds it).

mod common;

use common::*;
use serde_json::Value;

fn server() -> Option<Server> {
    match Server::binary() {
        Some(bin) => Some(Server::start(&bin, &[])),
        None => {
            eprintln!("SKIPPED: flashpolicyd is not built next to flashpolicy-loadgen; build the workspace");
            None
        }
    }
}

/// Percentiles never fall as the percentile rises, nothing is zero-sized
/// nonsense, and nothing is absurdly slow for loopback.
fn assert_sane(j: &Value, what: &str) {
    for h in ["connect", "first_byte", "total"] {
        let p = |k: &str| u(j, &["latency_us", h, k]);
        let (p50, p90, p99, p999, max) = (p("p50"), p("p90"), p("p99"), p("p99_9"), p("max"));
        assert!(
            p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
            "{what} {h}: {p50} {p90} {p99} {p999} {max}"
        );
        assert!(max < 5_000_000, "{what} {h}: max {max} µs");
    }
    assert!(
        u(j, &["latency_us", "total", "p50"]) > 0,
        "{what}: zero total latency"
    );
    assert!(
        u(j, &["latency_us", "connect", "p50"]) <= u(j, &["latency_us", "total", "p50"]),
        "{what}: connect above total"
    );
}

#[test]
fn closed_loop_against_flashpolicyd() {
    let Some(server) = server() else { return };
    let dir = TempDir::new("real-closed");
    let run = run_loadgen(
        &dir,
        "closed",
        &[
            "-c",
            "20",
            "--count",
            "3000",
            "--threads",
            "1",
            &server.addr.to_string(),
        ],
    );
    let j = &run.json;
    assert_eq!(j["mode"], "closed");
    assert_eq!(u(j, &["ok"]), 3000, "{}", run.stdout);
    assert_eq!(errors_total(j), 0, "{}", run.stdout);
    assert_eq!(u(j, &["latency_us", "total", "count"]), 3000);
    assert!(j["throughput_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(j["generator_cpu_us_per_conn"].as_f64().unwrap_or(0.0) > 0.0);
    assert_sane(j, "closed");
}

#[test]
fn open_loop_against_flashpolicyd() {
    let Some(server) = server() else { return };
    let dir = TempDir::new("real-open");
    let run = run_loadgen(
        &dir,
        "open",
        &[
            "--rate",
            "500",
            "--duration",
            "2s",
            "--warmup",
            "200ms",
            "--ramp",
            "200ms",
            &server.addr.to_string(),
        ],
    );
    let j = &run.json;
    assert_eq!(j["mode"], "open");
    let ok = u(j, &["ok"]);
    // 2 s at 500/s after the warm-up (which absorbs the ramp).
    assert!((950..=1050).contains(&ok), "ok {ok}\n{}", run.stdout);
    assert_eq!(errors_total(j), 0, "{}", run.stdout);
    assert_sane(j, "open");
    let tput = j["throughput_per_sec"].as_f64().unwrap_or(0.0);
    assert!((450.0..=550.0).contains(&tput), "throughput {tput}");
}

#[test]
fn expect_matches_the_policy_file_served() {
    let Some(bin) = Server::binary() else {
        eprintln!("SKIPPED: flashpolicyd is not built");
        return;
    };
    let dir = TempDir::new("real-expect");
    let policy = dir.expect_file();
    let policy = policy.to_str().expect("utf-8");
    let server = Server::start(&bin, &["--policy", policy]);
    let run = run_loadgen(
        &dir,
        "expect",
        &[
            "-c",
            "4",
            "--count",
            "200",
            "--expect",
            policy,
            &server.addr.to_string(),
        ],
    );
    assert_eq!(u(&run.json, &["ok"]), 200, "{}", run.stdout);
    assert_eq!(errors_total(&run.json), 0);
}

#[test]
fn one_process_holds_ten_thousand_connections() {
    let Some(bin) = Server::binary() else {
        eprintln!("SKIPPED: flashpolicyd is not built");
        return;
    };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_max < 10_200 || lim.rlim_cur < 10_200 {
        eprintln!(
            "SKIPPED: descriptor limit {}/{} is below what 10,000 connections on each side need",
            lim.rlim_cur, lim.rlim_max
        );
        return;
    }
    // The server closes idle connections after 1 s; 10,000 idle clients
    // all connect at once and are all held until then.
    let server = Server::start(&bin, &["--timeout", "1s"]);
    let dir = TempDir::new("real-10k");
    let run = run_loadgen(
        &dir,
        "10k",
        &[
            "--scenario",
            "idle",
            "-c",
            "10000",
            "--count",
            "10000",
            "--timeout",
            "10s",
            &server.addr.to_string(),
        ],
    );
    let idle = &run.json["by_scenario"]["idle"];
    assert_eq!(u(idle, &["started"]), 10_000, "{}", run.stdout);
    assert_eq!(
        u(idle, &["ok"]),
        10_000,
        "closed by the server\n{}",
        run.stdout
    );
    let p50 = u(idle, &["latency_us", "total", "p50"]);
    assert!(
        p50 >= 900_000,
        "held until the server's 1 s timeout: p50 {p50} µs"
    );
}

#[test]
fn proxy_headers_against_flashpolicyd_with_proxy_protocol() {
    let Some(bin) = Server::binary() else {
        eprintln!("SKIPPED: flashpolicyd is not built");
        return;
    };
    let server = Server::start(&bin, &["--proxy-protocol"]);
    for (version, extra) in [
        ("v1", &[][..]),
        ("v2", &["--proxy-source", "198.51.100.0/24"][..]),
        ("v1", &["--scenario", "slow", "--slow-interval", "1ms"][..]),
    ] {
        let dir = TempDir::new(&format!("real-proxy-{version}"));
        let mut args = vec!["-c", "4", "--count", "200", "--threads", "1"];
        args.extend_from_slice(&["--proxy-protocol", version]);
        args.extend_from_slice(extra);
        let addr = server.addr.to_string();
        args.push(&addr);
        let run = run_loadgen(&dir, "proxy", &args);
        let j = &run.json;
        assert_eq!(j["proxy_protocol"], version, "{}", run.stdout);
        // Every request got the policy: the server parsed every header
        // (a bad one gets no reply, a bad response here).
        let ok = if extra.first() == Some(&"--scenario") {
            u(j, &["by_scenario", "slow", "ok"])
        } else {
            u(j, &["ok"])
        };
        assert_eq!(ok, 200, "{version} {extra:?}: {}", run.stdout);
        assert_eq!(errors_total(j), 0, "{version} {extra:?}: {}", run.stdout);
    }
}
