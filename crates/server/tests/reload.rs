//! SIGHUP: the policy is loaded again and served by every worker; a policy
//! that fails is logged and the old one kept; shutdown still works after
//! reloads, and a SIGHUP during the drain neither reloads nor stops it.

mod common;

use std::time::Duration;

use common::*;

/// How long a reload may take to be logged.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

fn policy(domain: &str, ports: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\"?>\n\
         <cross-domain-policy>\n  \
         <allow-access-from domain=\"{domain}\" to-ports=\"{ports}\" />\n\
         </cross-domain-policy>\n"
    )
    .into_bytes()
}

/// `to-ports` is missing on line 3, column 3.
const INVALID: &[u8] = b"<?xml version=\"1.0\"?>\n<cross-domain-policy>\n  <allow-access-from domain=\"*\" />\n</cross-domain-policy>\n";

fn with_nul(document: &[u8]) -> Vec<u8> {
    let mut reply = document.to_vec();
    reply.push(0);
    reply
}

/// Waits until `needle` occurs at least `n` times in the log.
fn wait_for_count(server: &Server, needle: &str, n: usize, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if server.log_text().matches(needle).count() >= n {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Several clients, so that with two workers both are very likely asked.
fn assert_serves(server: &Server, expected: &[u8], what: &str) {
    for i in 0..8 {
        assert_served(server.addr(), &[REQUEST], expected, &format!("{what} #{i}"));
    }
}

fn sighup_and_wait(server: &Server, needle: &str, n: usize, what: &str) {
    server.signal(libc::SIGHUP);
    assert!(
        wait_for_count(server, needle, n, RELOAD_TIMEOUT),
        "{what}: no {needle:?} (#{n}) in the log:\n{}",
        server.log_text()
    );
}

#[test]
fn sighup_reloads_the_policy_file_and_keeps_the_old_one_when_the_new_one_fails() {
    for backend in backends() {
        let a = policy("a.example.com", "843");
        let b = policy("b.example.com", "1024-2048");
        let file = TempFile::new(&format!("file-{backend}.xml"), &a);
        let mut server = Server::start(backend, &["--policy", file.path(), "--threads", "2"]);
        assert_serves(&server, &with_nul(&a), &format!("[{backend}] A"));

        file.write(&b);
        let reloaded = format!(
            "reloaded policy: {} (1 rules, {} bytes)",
            file.path(),
            b.len()
        );
        sighup_and_wait(&server, &reloaded, 1, &format!("[{backend}] B"));
        assert_serves(&server, &with_nul(&b), &format!("[{backend}] B"));

        // A broken file: logged with file:line:column and the rule; B stays.
        file.write(INVALID);
        sighup_and_wait(
            &server,
            "cannot reload the policy",
            1,
            &format!("[{backend}] invalid"),
        );
        let log = server.log_text();
        let located = format!(
            "{}:3:3: <allow-access-from> must have a `to-ports`",
            file.path()
        );
        assert!(
            log.contains(&located),
            "[{backend}] no {located:?} in:\n{log}"
        );
        assert!(log.contains(" ERROR "), "[{backend}] not an error:\n{log}");
        assert_serves(
            &server,
            &with_nul(&b),
            &format!("[{backend}] B after invalid"),
        );

        // A file that is gone: the same.
        std::fs::remove_file(&file.path).expect("remove");
        sighup_and_wait(
            &server,
            "cannot reload the policy",
            2,
            &format!("[{backend}] missing"),
        );
        let log = server.log_text();
        let unreadable = format!("{}: cannot read policy file", file.path());
        assert!(
            log.contains(&unreadable),
            "[{backend}] no {unreadable:?} in:\n{log}"
        );
        assert_serves(
            &server,
            &with_nul(&b),
            &format!("[{backend}] B after missing"),
        );
        assert_eq!(
            log.matches("reloaded policy:").count(),
            1,
            "[{backend}] only one reload succeeded:\n{log}"
        );

        server.signal(libc::SIGTERM);
        server.expect_exit(0, &format!("[{backend}]"));
    }
}

#[test]
fn many_reloads_then_sigterm_still_stops_the_server() {
    for backend in backends() {
        let policies = [
            policy("one.example.com", "843"),
            policy("two.example.com", "8000-9000"),
        ];
        let file = TempFile::new(&format!("many-{backend}.xml"), &policies[0]);
        let mut server = Server::start(backend, &["--policy", file.path(), "--threads", "2"]);
        for round in 1..=6 {
            let next = &policies[round % 2];
            file.write(next);
            sighup_and_wait(
                &server,
                "reloaded policy:",
                round,
                &format!("[{backend}] round {round}"),
            );
            assert_serves(
                &server,
                &with_nul(next),
                &format!("[{backend}] round {round}"),
            );
        }
        let log = server.log_text();
        assert!(
            !log.contains("have not taken it"),
            "[{backend}] a worker missed a reload:\n{log}"
        );
        server.signal(libc::SIGTERM);
        let log = server.expect_exit(0, &format!("[{backend}]"));
        let totals = expect_totals(&log, &format!("[{backend}]"));
        assert_eq!(totals.served, 48, "[{backend}] log:\n{log}");
    }
}

#[test]
fn sighup_with_allow_renders_the_same_policy_again() {
    for backend in backends() {
        let server = Server::start(backend, &["--allow", "*.example.com:843"]);
        let before = exchange(server.addr(), &[REQUEST], Duration::ZERO, false)
            .unwrap_or_else(|(e, _)| panic!("[{backend}] {e}"));
        sighup_and_wait(
            &server,
            "reloaded policy: generated (1 rules,",
            1,
            &format!("[{backend}] --allow"),
        );
        let log = server.log_text();
        assert!(log.contains("(unchanged)"), "[{backend}] log:\n{log}");
        assert_serves(
            &server,
            &before,
            &format!("[{backend}] --allow after SIGHUP"),
        );
    }
}

#[test]
fn sighup_during_the_drain_neither_reloads_nor_stops_it() {
    for backend in backends() {
        let a = policy("a.example.com", "843");
        let file = TempFile::new(&format!("drain-{backend}.xml"), &a);
        let mut server = Server::start(backend, &["--policy", file.path(), "--timeout", "1h"]);
        // An idle client keeps the drain going until it leaves.
        let idle = connect(server.addr());
        std::thread::sleep(Duration::from_millis(100));
        server.signal(libc::SIGTERM);
        assert!(
            server.wait_for_log("no longer accepting", RELOAD_TIMEOUT),
            "[{backend}] no shutdown log; log:\n{}",
            server.log_text()
        );
        file.write(&policy("b.example.com", "843"));
        sighup_and_wait(
            &server,
            "the policy is not reloaded",
            1,
            &format!("[{backend}] drain"),
        );
        assert!(
            server.is_running(),
            "[{backend}] SIGHUP cut the drain short; log:\n{}",
            server.log_text()
        );
        drop(idle);
        let log = server.expect_exit(0, &format!("[{backend}]"));
        assert!(!log.contains("reloaded policy:"), "[{backend}] log:\n{log}");
    }
}

#[test]
fn sighup_reloads_with_send_zc_too() {
    if let Some(why) = uring_unavailable() {
        skip_uring("sighup_reloads_with_send_zc_too", &why);
        return;
    }
    let a = policy("a.example.com", "843");
    let b = policy("b.example.com", "843,8000");
    let file = TempFile::new("zc-uring.xml", &a);
    let mut server = Server::start("uring", &["--policy", file.path(), "--send-zc"]);
    assert_serves(&server, &with_nul(&a), "[uring --send-zc] A");
    file.write(&b);
    sighup_and_wait(&server, "reloaded policy:", 1, "[uring --send-zc] B");
    assert_serves(&server, &with_nul(&b), "[uring --send-zc] B");
    server.signal(libc::SIGTERM);
    let log = server.expect_exit(0, "");
    assert_eq!(expect_totals(&log, "").served, 16, "log:\n{log}");
}

#[test]
fn a_reload_blocked_on_a_fifo_does_not_stop_sigterm() {
    for backend in backends() {
        let first = policy("fifo.example.com", "843");
        let file = TempFile::new(&format!("fifo-{backend}.xml"), &first);
        let mut server = Server::start(backend, &["--policy", file.path()]);
        assert_serves(&server, &with_nul(&first), &format!("[{backend}] first"));
        // Replace the file by a FIFO nobody writes to: opening it for reading
        // blocks until a writer comes, which never happens.
        std::fs::remove_file(&file.path).expect("remove policy file");
        let c_path = std::ffi::CString::new(file.path()).expect("no NUL in path");
        // SAFETY: `c_path` is a live NUL-terminated string; mkfifo only reads it.
        let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
        server.signal(libc::SIGHUP);
        // Give the reload time to get stuck, then make sure the old policy is
        // still served and SIGTERM still stops the server.
        std::thread::sleep(Duration::from_millis(200));
        assert_serves(
            &server,
            &with_nul(&first),
            &format!("[{backend}] stuck reload"),
        );
        server.signal(libc::SIGTERM);
        server.expect_exit(0, &format!("[{backend}] SIGTERM during a blocked reload:"));
    }
}
