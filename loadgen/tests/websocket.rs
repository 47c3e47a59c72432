//! `--websocket`: the echo through a WebSocket bridge, against the real
//! ones: `flashpolicyd --websocket` (skipped, with a note, when the server
//! is not built beside the load generator) and Debian's websockify
//! (skipped when it is not installed, a failure then under
//! `FLASHPOLICYD_REQUIRE_TOOLS=1`), each in front of `flashpolicy-echo`.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `flashpolicyd` with a bridge on a fresh port to `echo`; the bridge's
/// address.
fn bridge(echo: SocketAddr, extra: &[&str]) -> Option<(Server, String)> {
    let Some(bin) = Server::binary() else {
        eprintln!(
            "SKIPPED: flashpolicyd is not built next to flashpolicy-loadgen; build the workspace"
        );
        return None;
    };
    let ws = format!("127.0.0.1:{}", unclaimed_port());
    let spec = format!("{ws}={echo}");
    let mut args = vec!["--websocket", &spec];
    args.extend_from_slice(extra);
    let server = Server::start(&bin, &args);
    wait_listening(&ws);
    Some((server, ws))
}

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn echo_run(dir: &TempDir, name: &str, target: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "-c",
        "3",
        "--count",
        "30",
        "--websocket",
        "--payload",
        "100KiB",
    ];
    args.extend_from_slice(extra);
    args.push(target);
    run_loadgen(dir, name, &args)
}

fn assert_all_echoed(run: &Run, what: &str) {
    let j = &run.json;
    assert_eq!(u(j, &["ok"]), 30, "{what}: {}", run.stdout);
    assert_eq!(errors_total(j), 0, "{what}: {}", run.stdout);
    assert_eq!(u(j, &["bytes_sent"]), 30 * 102_400, "{what}");
    assert_eq!(u(j, &["bytes_received"]), 30 * 102_400, "{what}");
    assert_eq!(j["websocket"], true, "{what}");
}

#[test]
fn echoes_through_flashpolicyds_bridge_with_and_without_half_close() {
    let dir = TempDir::new("ws-bridge");
    let echo = Server::echo(&[]);
    let Some((_server, ws)) = bridge(echo.addr, &[]) else {
        return;
    };
    assert_all_echoed(&echo_run(&dir, "half", &ws, &[]), "close after the payload");
    assert_all_echoed(
        &echo_run(&dir, "whole", &ws, &["--no-half-close"]),
        "close after the echo",
    );
    // Open loop too.
    let run = run_loadgen(
        &dir,
        "open",
        &[
            "--rate",
            "200",
            "--count",
            "20",
            "--websocket",
            "--payload",
            "4KiB",
            &ws,
        ],
    );
    assert_eq!(u(&run.json, &["ok"]), 20, "{}", run.stdout);
}

#[test]
fn the_origin_is_sent_and_a_refusal_is_an_error_naming_its_status() {
    let dir = TempDir::new("ws-origin");
    let echo = Server::echo(&[]);
    let page = "https://game.example.com";
    let Some((_server, ws)) = bridge(echo.addr, &["--ws-origin", page]) else {
        return;
    };
    assert_all_echoed(
        &echo_run(&dir, "allowed", &ws, &["--ws-origin", page]),
        "allowed",
    );
    for (name, extra) in [
        ("other", &["--ws-origin", "https://other.example"][..]),
        ("none", &[][..]),
    ] {
        let run = echo_run(&dir, name, &ws, extra);
        assert_eq!(u(&run.json, &["ok"]), 0, "{name}: {}", run.stdout);
        assert_eq!(u(&run.json, &["errors", "bad_response"]), 30, "{name}");
        assert_eq!(u(&run.json, &["bytes_sent"]), 0, "{name}");
        assert!(run.stdout.contains("HTTP 403"), "{name}: {}", run.stdout);
    }
}

#[test]
fn a_plain_echo_server_is_not_a_websocket() {
    let dir = TempDir::new("ws-plain");
    let echo = Server::echo(&[]);
    let run = echo_run(&dir, "plain", &echo.addr.to_string(), &[]);
    assert_eq!(u(&run.json, &["ok"]), 0, "{}", run.stdout);
    assert_eq!(
        u(&run.json, &["errors", "bad_response"]),
        30,
        "{}",
        run.stdout
    );
}

/// websockify, killed on drop.
struct Websockify(Child);

impl Drop for Websockify {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn websockify(echo: SocketAddr) -> Option<(Websockify, String)> {
    let bin = Path::new("/usr/bin/websockify");
    if !bin.exists() {
        let msg = "websockify is not installed (apt-get install websockify)";
        if std::env::var_os("FLASHPOLICYD_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
            panic!("FLASHPOLICYD_REQUIRE_TOOLS=1, but {msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    let ws = format!("127.0.0.1:{}", unclaimed_port());
    let child = Command::new(bin)
        .args([&ws, &echo.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start websockify");
    let guard = Websockify(child);
    wait_listening(&ws);
    Some((guard, ws))
}

#[test]
fn echoes_through_websockify() {
    let dir = TempDir::new("ws-websockify");
    let echo = Server::echo(&[]);
    let Some((_w, ws)) = websockify(echo.addr) else {
        return;
    };
    // websockify drops what the game still sends once the browser's close
    // arrives, so the client closes after the whole echo.
    assert_all_echoed(
        &echo_run(&dir, "websockify", &ws, &["--no-half-close"]),
        "websockify",
    );
}

#[test]
fn ws_origin_needs_websocket_and_websocket_a_payload() {
    for args in [
        &["--ws-origin", "https://a.example", "127.0.0.1:1"][..],
        &["--websocket", "127.0.0.1:1"][..],
    ] {
        let out = run_plain(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
