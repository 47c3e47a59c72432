//! What the metrics tests share: finding `promtool` and the load
//! generator (the skip rule), starting a server with `--metrics`, and a
//! minimal HTTP client for `/metrics` with helpers to read series.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flashpolicy_proto::serve::End;

use crate::common::*;

/// Set to `1` to make a missing tool fail the tests instead of skipping.
pub const REQUIRE_TOOLS_ENV: &str = "FLASHPOLICYD_REQUIRE_TOOLS";

/// How long the counters may take to show what clients already saw.
pub const SETTLE: Duration = Duration::from_secs(5);

/// `tool` at `path` or on `PATH`, or `None` after saying why the test
/// skips (a failure under `FLASHPOLICYD_REQUIRE_TOOLS=1`).
pub fn tool(name: &str, candidates: &[PathBuf], what: &str) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    if let Some(found) = candidates.iter().chain(&on_path).find(|p| p.is_file()) {
        return Some(found.clone());
    }
    if std::env::var_os(REQUIRE_TOOLS_ENV).is_some_and(|v| v == "1") {
        panic!("{REQUIRE_TOOLS_ENV}=1, but {name} is not installed: {what}");
    }
    eprintln!("SKIPPED: {name} is not installed: {what}");
    None
}

pub fn promtool() -> Option<PathBuf> {
    tool(
        "promtool",
        &[PathBuf::from("/usr/bin/promtool")],
        "apt-get install prometheus",
    )
}

/// The load generator built beside the server (cargo puts a workspace's
/// binaries in one directory).
pub fn loadgen() -> Option<PathBuf> {
    let beside = Path::new(BIN).with_file_name("flashpolicy-loadgen");
    tool(
        "flashpolicy-loadgen",
        &[beside],
        "build the workspace (cargo build --workspace)",
    )
}

/// A server on `backend` with `--metrics 127.0.0.1:0` and `args`, and the
/// metrics address from its log.
pub fn start(backend: &'static str, args: &[&str]) -> (Server, SocketAddr) {
    let server = Server::builder(backend)
        .args(&["--metrics", "127.0.0.1:0"])
        .args(args)
        .start();
    let addr = server
        .log_text()
        .lines()
        .find_map(|l| {
            let rest = &l[l.find("metrics at http://")? + "metrics at http://".len()..];
            rest.strip_suffix("/metrics")?.parse().ok()
        })
        .unwrap_or_else(|| panic!("[{backend}] no metrics line:\n{}", server.log_text()));
    (server, addr)
}

/// One HTTP exchange: the status code, the headers and the body.
pub fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut stream = connect(addr);
    stream.write_all(request).expect("send the request");
    let bytes = read_to_close(&mut stream, 1 << 20)
        .unwrap_or_else(|(e, got)| panic!("read ended with {e} after {} bytes", got.len()));
    let text = String::from_utf8(bytes).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    (status, head.to_string(), body.to_string())
}

/// `GET /metrics`, which must answer 200: the body.
pub fn scrape(addr: SocketAddr) -> String {
    let (status, head, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body
}

/// The value of one series (`name{labels}` exactly as written).
pub fn value(body: &str, series: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub fn ended(body: &str, end: End, worker: usize) -> Option<u64> {
    value(
        body,
        &format!(
            r#"flashpolicyd_connections_total{{end="{}",worker="{worker}"}}"#,
            end.name()
        ),
    )
}

pub fn accepted(body: &str, worker: usize) -> Option<u64> {
    value(
        body,
        &format!(r#"flashpolicyd_connections_accepted_total{{worker="{worker}"}}"#),
    )
}

/// Scrapes until `ok` says the body is as wanted (bounded by [`SETTLE`]).
pub fn scrape_until(addr: SocketAddr, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let body = scrape(addr);
        if ok(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}; last scrape:\n{body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pipes `body` to `promtool check metrics`: it must exit 0 and print
/// nothing (a lint warning is a failure too).
pub fn promtool_check(promtool: &Path, body: &str, what: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{what}: promtool check metrics: {} {said}\nbody:\n{body}",
        out.status
    );
}

/// A status, or how the connection ended without one.
pub fn status_of(addr: SocketAddr, request: &[u8]) -> Result<u16, String> {
    let mut stream = connect(addr);
    stream
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    let got = read_to_close(&mut stream, 1 << 20).map_err(|(e, _)| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&got);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))
}
