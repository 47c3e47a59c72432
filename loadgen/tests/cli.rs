//! Command-line behaviour: usage errors, progress lines, Ctrl-C.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn usage_errors_exit_2_with_a_message() {
    for args in [
        &["--rate", "0", "127.0.0.1:1"][..],
        &["--connections", "0", "127.0.0.1:1"],
        &["--mix", "good=1,evil=2", "127.0.0.1:1"],
        &["--duration", "5 parsecs", "127.0.0.1:1"],
        &["--source", "127.0.0.9-127.0.0.2", "127.0.0.1:1"],
        &["--rate", "10", "--connections", "3", "127.0.0.1:1"],
        &["--proxy-protocol", "v3", "127.0.0.1:1"],
        &["--proxy-source", "198.51.100.0/24", "127.0.0.1:1"],
        &[
            "--proxy-protocol",
            "v1",
            "--proxy-source",
            "2001:db8::/64",
            "127.0.0.1:1",
        ],
        &[
            "--proxy-protocol",
            "v1",
            "--proxy-source",
            "198.51.100.1/24",
            "127.0.0.1:1",
        ],
        &["not-an-address"],
        &[],
    ] {
        let out = run_plain(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}

#[test]
fn progress_lines_only_when_asked_off_a_terminal() {
    let fake = Fake::good(Duration::ZERO);
    let quiet = run_plain(&["--rate", "200", "--duration", "1200ms", &fake.target()]);
    assert!(quiet.status.success());
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    let loud = run_plain(&[
        "--rate",
        "200",
        "--duration",
        "1200ms",
        "--progress",
        &fake.target(),
    ]);
    assert!(loud.status.success());
    let err = String::from_utf8_lossy(&loud.stderr);
    assert!(err.contains("[   1 s]") && err.contains("ok/s"), "{err}");
}

#[test]
fn ctrl_c_stops_early_and_still_reports() {
    let fake = Fake::good(Duration::ZERO);
    let dir = TempDir::new("sigint");
    let json = dir.path("run.json");
    let child = Command::new(loadgen_bin())
        .args(["--rate", "200", "--duration", "60s", "--json"])
        .arg(&json)
        .arg(fake.target())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    // Interrupt a second after the run got going, however long the start
    // took on a loaded machine.
    let going = Instant::now() + Duration::from_secs(20);
    while fake.accepted.load(Ordering::SeqCst) < 10 {
        assert!(Instant::now() < going, "the run never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: sends SIGINT to the child this test started and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid");
    let ok = u(&j, &["ok"]);
    // 200/s for a second and a bit; at most 3 s of it.
    assert!((100..=600).contains(&ok), "ok {ok}");
    let d = j["duration_s"].as_f64().unwrap_or(0.0);
    assert!(
        (0.8..3.0).contains(&d),
        "duration_s {d} should be the time actually run"
    );
}
