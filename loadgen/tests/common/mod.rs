//! Helpers for the loadgen integration tests: run the binary, read its JSON,
//! small fake policy servers on 127.0.0.1:0, and a real `flashpolicyd`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashpolicy_loadgen::stats::ErrorKind;
use serde_json::Value;

#[path = "../../../crates/server/tests/common/ports.rs"]
mod ports;
#[path = "../../../crates/server/tests/common/tcp_info.rs"]
mod tcp_info;
#[allow(unused_imports)] // each test binary uses a different part of this
pub use ports::{closed_port, unclaimed_port};
#[allow(unused_imports)] // only the send-delay test reads it
pub use tcp_info::tcp_info;

/// A valid socket policy (what every "good" fake server sends, plus a NUL).
pub const POLICY: &[u8] =
    b"<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\"/></cross-domain-policy>";
/// The request.
pub const REQUEST: &[u8] = b"<policy-file-request/>\0";

/// The policy followed by its NUL.
pub fn reply() -> Vec<u8> {
    let mut r = POLICY.to_vec();
    r.push(0);
    r
}

/// A per-test scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "flashpolicy-loadgen-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
    /// Writes the policy (no NUL) for `--expect`.
    pub fn expect_file(&self) -> PathBuf {
        let p = self.path("expect.xml");
        std::fs::write(&p, POLICY).expect("write expect file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The loadgen binary.
pub fn loadgen_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flashpolicy-loadgen"))
}

/// What one run of the binary produced.
pub struct Run {
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the load generator with `args` and `--json`, which must succeed.
pub fn run_loadgen(dir: &TempDir, name: &str, args: &[&str]) -> Run {
    let json_path = dir.path(&format!("{name}.json"));
    let out = Command::new(loadgen_bin())
        .args(args)
        .arg("--json")
        .arg(&json_path)
        .stdin(Stdio::null())
        .output()
        .expect("run flashpolicy-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "flashpolicy-loadgen {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&json_path).expect("the --json file");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    Run {
        json,
        stdout,
        stderr,
    }
}

/// Runs the binary with `args` as given (no --json), returning its output.
pub fn run_plain(args: &[&str]) -> std::process::Output {
    Command::new(loadgen_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run flashpolicy-loadgen")
}

pub fn u(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not an unsigned integer in {v:#}"))
}

pub fn errors_total(v: &Value) -> u64 {
    ErrorKind::ALL
        .iter()
        .map(|k| u(v, &["errors", k.name()]))
        .sum()
}

/// Reads one policy request (up to 23 bytes or until EOF/timeout).
pub fn read_request(s: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    let _ = s.set_read_timeout(Some(timeout));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64];
    while buf.len() < REQUEST.len() {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

/// Writes `bytes` in pieces of `piece` bytes with `pause` after each, one
/// segment each (TCP_NODELAY), so the reader gets them in several reads.
pub fn write_in_pieces(s: &mut TcpStream, bytes: &[u8], piece: usize, pause: Duration) {
    let _ = s.set_nodelay(true);
    for chunk in bytes.chunks(piece.max(1)) {
        if s.write_all(chunk).is_err() {
            return;
        }
        std::thread::sleep(pause);
    }
}

/// A fake server: a listener on 127.0.0.1:0 and a thread that accepts
/// connections and hands each to `serve` (on the accept thread when
/// `sequential`, else on a thread of its own). Lives as long as the test.
pub struct Fake {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    pub peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Fake {
    pub fn start<F>(sequential: bool, serve: F) -> Fake
    where
        F: Fn(TcpStream, u64) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake server");
        Fake::start_on(listener, sequential, serve)
    }

    pub fn start_on<F>(listener: TcpListener, sequential: bool, serve: F) -> Fake
    where
        F: Fn(TcpStream, u64) + Send + Sync + 'static,
    {
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let serve = Arc::new(serve);
        {
            let accepted = Arc::clone(&accepted);
            let peers = Arc::clone(&peers);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let n = accepted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(p) = conn.peer_addr() {
                        if let Ok(mut v) = peers.lock() {
                            v.push(p);
                        }
                    }
                    if sequential {
                        serve(conn, n);
                    } else {
                        let serve = Arc::clone(&serve);
                        std::thread::spawn(move || serve(conn, n));
                    }
                }
            });
        }
        Fake {
            addr,
            accepted,
            peers,
        }
    }

    /// Reads the request (waiting up to `wait`) and, when it is the policy
    /// request, hands the connection and its number to `answer`.
    pub fn answering<F>(sequential: bool, wait: Duration, answer: F) -> Fake
    where
        F: Fn(&mut TcpStream, u64) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake server");
        Fake::answering_on(listener, sequential, wait, answer)
    }

    /// [`Fake::answering`] on a listener of the caller's.
    pub fn answering_on<F>(
        listener: TcpListener,
        sequential: bool,
        wait: Duration,
        answer: F,
    ) -> Fake
    where
        F: Fn(&mut TcpStream, u64) + Send + Sync + 'static,
    {
        Fake::start_on(listener, sequential, move |mut s, n| {
            if read_request(&mut s, wait) == REQUEST {
                answer(&mut s, n);
            }
        })
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Reads the request, waits `delay`, sends a good reply, closes.
    pub fn good(delay: Duration) -> Fake {
        Fake::answering(false, Duration::from_secs(2), move |s, _| {
            std::thread::sleep(delay);
            let _ = s.write_all(&reply());
        })
    }
}

/// A `flashpolicyd` started for one test, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// The server binary beside ours (cargo puts every binary of the
    /// workspace in one directory when the workspace is built), if built.
    pub fn binary() -> Option<PathBuf> {
        let dir = loadgen_bin().parent()?.to_path_buf();
        let p = dir.join("flashpolicyd");
        p.exists().then_some(p)
    }

    /// Starts it on 127.0.0.1:0 and waits for its "listening on" line.
    pub fn start(bin: &Path, extra: &[&str]) -> Server {
        let mut cmd = Command::new(bin);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "epoll",
            "--threads",
            "1",
        ])
        .args(extra);
        Server::spawn(cmd)
    }

    /// Starts `flashpolicy-echo` (this crate's echo server) on 127.0.0.1:0.
    pub fn echo(extra: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flashpolicy-echo"));
        cmd.args(extra);
        Server::spawn(cmd)
    }

    /// Runs `cmd` and waits for its "listening on ADDR" line on stderr.
    pub fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(addr) = listening_addr(&line) {
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = loop {
            if let Ok(a) = rx.recv_timeout(Duration::from_millis(100)) {
                break a;
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!("{cmd:?} did not log \"listening on ADDR\"");
            }
        };
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds ADDR in a log line containing "listening on ADDR" (ANSI colours
/// stripped).
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let rest = plain.split("listening on ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}
