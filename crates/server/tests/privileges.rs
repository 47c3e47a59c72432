//! `--user`: after start-up every thread of the server runs as the target
//! user and group (real and effective ids, supplementary groups), and it
//! still serves on both engines; an unknown user stops the start-up.

mod common;

use std::time::Duration;

use common::{assert_served, backends, default_reply, run_to_exit, Server, REQUEST};

/// Whether this test process is root; the privileged tests skip otherwise,
/// unless `FLASHPOLICYD_REQUIRE_TOOLS=1`, where they fail.
fn root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("FLASHPOLICYD_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("FLASHPOLICYD_REQUIRE_TOOLS=1 but the tests do not run as root: --user needs it");
    }
    eprintln!("skipped: not running as root, so --user cannot switch identity");
    false
}

/// The ids of user `name` and of its primary group, from the databases.
fn ids_of(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .unwrap_or_else(|| panic!("no user {name}"));
    let fields: Vec<&str> = line.split(':').collect();
    (
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
    )
}

/// `Uid:`, `Gid:` and `Groups:` of every thread of `pid`.
fn thread_ids(pid: u32) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let task = task.expect("task");
        let status = std::fs::read_to_string(task.path().join("status")).expect("status");
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        out.push((
            task.file_name().to_string_lossy().into_owned(),
            field("Uid:"),
            field("Gid:"),
            field("Groups:"),
        ));
    }
    out
}

#[test]
fn every_thread_runs_as_nobody_and_still_serves() {
    if !root() {
        return;
    }
    let (uid, gid) = ids_of("nobody");
    for backend in backends() {
        let server = Server::start(backend, &["--threads", "2", "--user", "nobody"]);
        let log = server.log_text();
        assert!(log.contains("running as nobody"), "[{backend}] {log}");
        assert!(!log.contains("running as root"), "[{backend}] {log}");
        let threads = thread_ids(server.pid());
        // main, signals, reload and two workers at least.
        assert!(threads.len() >= 5, "[{backend}] {threads:?}");
        for (tid, uids, gids, groups) in &threads {
            // real, effective, saved, filesystem
            assert_eq!(
                uids,
                &format!("{uid} {uid} {uid} {uid}"),
                "[{backend}] thread {tid}"
            );
            assert_eq!(
                gids,
                &format!("{gid} {gid} {gid} {gid}"),
                "[{backend}] thread {tid}"
            );
            assert_eq!(groups, &gid.to_string(), "[{backend}] thread {tid}");
        }
        for i in 0..5 {
            assert_served(
                server.addr(),
                &[REQUEST],
                &default_reply(),
                &format!("[{backend}] client {i} after the drop"),
            );
        }
    }
}

#[test]
fn running_as_root_without_user_is_warned_about() {
    if !root() {
        return;
    }
    let server = Server::start("epoll", &["--threads", "1"]);
    assert!(
        server.wait_for_log("running as root", Duration::from_secs(2)),
        "{}",
        server.log_text()
    );
}

#[test]
fn an_unknown_user_or_group_stops_the_start_up() {
    for (spec, reason) in [
        ("no-such-user-fpd", "--user: no such user: no-such-user-fpd"),
        (
            "root:no-such-group-fpd",
            "--user: no such group: no-such-group-fpd",
        ),
    ] {
        let (status, log) = run_to_exit(
            &["--listen", "127.0.0.1:0", "--user", spec],
            Duration::from_secs(10),
        );
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{spec}: {log}");
        assert!(log.contains(reason), "{spec}: {log}");
        assert!(!log.contains("listening on"), "{spec}: {log}");
    }
    let (status, log) = run_to_exit(&["--user", "a:"], Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
}
