//! How `--backend` chooses an engine: `auto` is the default and picks
//! io_uring where the kernel allows it, falls back to epoll where it is
//! refused, and `--backend uring` on a refusing kernel is a clear error.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `FLASHPOLICYD_FORCE_NO_URING=1` makes the io_uring probe fail.
const FORCE_NO_URING: &str = "FLASHPOLICYD_FORCE_NO_URING";

#[test]
fn auto_is_the_default_and_picks_uring_where_available() {
    // `auto` is the default.
    let help = Command::new(BIN)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .expect("flashpolicyd --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[default: auto]"), "--help:\n{help}");
    let server = Server::start("auto", &["--threads", "1"]);
    let log = server.log_text();
    match uring_unavailable() {
        None => assert!(
            log.contains("engine uring: auto: io_uring available"),
            "auto did not pick uring:\n{log}"
        ),
        Some(why) => {
            skip_uring("auto picks uring", &why);
            eprintln!("io_uring unavailable ({why}): auto must fall back");
            assert!(
                log.contains("engine epoll: auto: io_uring unavailable"),
                "{log}"
            );
        }
    }
    assert_served(server.addr(), &[REQUEST], &default_reply(), "auto");
}

#[test]
fn auto_falls_back_to_epoll_when_io_uring_is_refused() {
    let mut server = Server::builder("auto")
        .env(FORCE_NO_URING, "1")
        .args(&["--threads", "1"])
        .start();
    let log = server.log_text();
    assert!(
        log.contains("engine epoll: auto: io_uring unavailable")
            && log.contains("FLASHPOLICYD_FORCE_NO_URING=1 is set"),
        "no fallback log line:\n{log}"
    );
    assert_served(server.addr(), &[REQUEST], &default_reply(), "fallback");
    server.signal(libc::SIGTERM);
    server.expect_exit(0, "fallback");
}

#[test]
fn backend_uring_on_a_refusing_kernel_is_a_clear_error() {
    let mut child = Command::new(BIN)
        .args(["--backend", "uring", "--listen", "127.0.0.1:0"])
        .env(FORCE_NO_URING, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("--backend uring did not exit on a refusing kernel");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(1), "exit status; stderr:\n{stderr}");
    assert!(
        stderr.contains("--backend uring: io_uring is not available"),
        "no clear message:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains("listening on"),
        "it must not start:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Robustness
