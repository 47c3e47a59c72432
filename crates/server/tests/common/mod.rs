//! Shared harness for the integration tests: starts the real `flashpolicyd`,
//! finds its ports in the "listening on ADDR" log lines, drives it over real
//! loopback sockets, and kills it when the test ends.
//!
//! Every wait here is bounded, so a broken server fails a test instead of
//! hanging it.
#![allow(dead_code)] // each test binary uses a different part of this

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashpolicy_proto::serve::{End, Tally};
use flashpolicy_proto::Policy;

mod fds;
mod ports;
mod tcp_info;
#[allow(unused_imports)] // each test binary uses a different part of this
pub use fds::{open_fds, settled_fds, wait_for_fds};
#[allow(unused_imports)] // each test binary uses a different part of this
pub use ports::{closed_port, unclaimed_port};
#[allow(unused_imports)] // each test binary uses a different part of this
pub use tcp_info::tcp_info;

/// The server binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_flashpolicyd");

/// The longest any single client read or write may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a server may take to start or to exit.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Set to `1` (CI does) to make a refused io_uring fail the tests that need
/// it instead of skipping them.
pub const REQUIRE_URING_ENV: &str = "FLASHPOLICYD_REQUIRE_URING";

/// The engines every behaviour test runs against: epoll always, uring where
/// this kernel lets the server use io_uring (otherwise skipped, with the
/// reason printed, or a failure under `FLASHPOLICYD_REQUIRE_URING=1`).
pub fn backends() -> Vec<&'static str> {
    let mut backends = vec!["epoll"];
    match uring_unavailable() {
        None => backends.push("uring"),
        Some(why) => skip_uring("the uring backend", &why),
    }
    backends
}

/// Says why a test skips io_uring, or panics if io_uring is required.
pub fn skip_uring(what: &str, why: &str) {
    if std::env::var_os(REQUIRE_URING_ENV).is_some_and(|v| v == "1") {
        panic!("{REQUIRE_URING_ENV}=1, but io_uring is unavailable here: {why}");
    }
    eprintln!("{what}: skipped: io_uring is unavailable here: {why}");
}

/// Why `flashpolicyd --backend uring` cannot run here, or `None` if it can.
/// Asks the binary itself (it exits 1 with the reason when io_uring is
/// refused), once per test process.
pub fn uring_unavailable() -> Option<String> {
    static ANSWER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ANSWER
        .get_or_init(|| {
            let mut child = match Command::new(BIN)
                .args([
                    "--backend",
                    "uring",
                    "--listen",
                    "127.0.0.1:0",
                    "--threads",
                    "1",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
            {
                Ok(child) => child,
                Err(e) => return Some(format!("cannot start {BIN}: {e}")),
            };
            let stderr = child.stderr.take().expect("stderr is piped");
            let mut text = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                text.push_str(&line);
                text.push('\n');
            }
            let _ = child.kill();
            let _ = child.wait();
            // The reason is on the error line; the rest is start-up noise.
            let reason = text
                .lines()
                .find(|l| l.contains("io_uring is not available"))
                .unwrap_or(text.trim());
            Some(reason.to_string())
        })
        .clone()
}

/// The request Flash Player sends.
pub const REQUEST: &[u8] = b"<policy-file-request/>\0";

/// The request tag without its terminator.
pub const TAG: &[u8] = b"<policy-file-request/>";

/// What a client must receive when no policy option is given: the rendered
/// allow-all policy and exactly one NUL.
pub fn default_reply() -> Vec<u8> {
    let mut reply = Policy::allow_all().render().into_bytes();
    reply.push(0);
    reply
}

/// Whether this machine can bind `::1`.
pub fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// A running `flashpolicyd`, killed (and reaped) when dropped.
pub struct Server {
    child: Option<Child>,
    /// The addresses from the "listening on" lines, in order.
    pub addrs: Vec<SocketAddr>,
    /// The backend it was started with.
    pub backend: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    lines: Receiver<String>,
}

/// How to start a server.
pub struct ServerBuilder {
    backend: &'static str,
    listen: Vec<String>,
    args: Vec<String>,
    nofile: Option<u64>,
    env: Vec<(String, String)>,
}

impl ServerBuilder {
    /// Adds a `--listen ADDR` (default: `127.0.0.1:0` when none is added).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen.push(addr.to_string());
        self
    }

    /// Adds more command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Sets an environment variable for the server.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs the server with RLIMIT_NOFILE set to `limit`.
    pub fn nofile(mut self, limit: u64) -> Self {
        self.nofile = Some(limit);
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--backend").arg(self.backend);
        let listen: Vec<String> = if self.listen.is_empty() {
            vec!["127.0.0.1:0".to_string()]
        } else {
            self.listen.clone()
        };
        for l in &listen {
            cmd.arg("--listen").arg(l);
        }
        cmd.args(&self.args);
        cmd.env("RUST_BACKTRACE", "1");
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(limit) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the child between fork and exec and
            // only calls setrlimit, which is async-signal-safe; it touches no
            // lock, allocates nothing and reads only the copied `limit`.
            unsafe {
                cmd.pre_exec(move || {
                    let rl = libc::rlimit {
                        rlim_cur: limit as libc::rlim_t,
                        rlim_max: limit as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Starts the server and waits for one "listening on" line per address.
    pub fn start(self) -> Server {
        let expected = self.listen.len().max(1);
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().expect("log lock").push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut server = Server {
            child: Some(child),
            addrs: Vec::new(),
            backend: self.backend,
            log,
            lines,
        };
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        while server.addrs.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match server.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = parse_listening(&line) {
                        server.addrs.push(addr);
                    }
                }
                Err(_) => panic!(
                    "[{}] server did not report {expected} listening addresses; stderr:\n{}",
                    server.backend,
                    server.log_text()
                ),
            }
        }
        server
    }
}

/// The address in a "listening on ADDR" log line.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    // In `--log-format json` the address is followed by `"}`.
    let token = rest.split_whitespace().next()?;
    token.trim_end_matches(['"', '}']).parse().ok()
}

impl Server {
    /// A server on `backend`, to be configured and started.
    pub fn builder(backend: &'static str) -> ServerBuilder {
        ServerBuilder {
            backend,
            listen: Vec::new(),
            args: Vec::new(),
            nofile: None,
            env: Vec::new(),
        }
    }

    /// A server on `backend` listening on 127.0.0.1 with `args`.
    pub fn start(backend: &'static str, args: &[&str]) -> Server {
        Server::builder(backend).args(args).start()
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything the server has logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Waits until a log line contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits");
        // SAFETY: kill takes no pointers; `pid` is our own child, not yet
        // reaped (we hold its Child), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(
            self.child.as_mut().expect("not reaped").try_wait(),
            Ok(None)
        )
    }

    /// Waits for the server to exit by itself; `None` after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("not reaped");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.drain_log(deadline.max(Instant::now() + PROCESS_TIMEOUT));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the stderr reader has taken the last line and ended (its
    /// channel disconnects at the end of the exited server's stderr), so the
    /// log holds everything, however late that thread runs; gives up at
    /// `deadline`.
    fn drain_log(&self, deadline: Instant) {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => continue,
                Err(_) => return,
            }
        }
    }

    /// Waits (up to [`PROCESS_TIMEOUT`]) for the server to exit, asserts its
    /// exit code, and returns its log. `context` prefixes the failure message.
    pub fn expect_exit(&mut self, code: i32, context: &str) -> String {
        let status = self.wait_exit(PROCESS_TIMEOUT);
        let log = self.log_text();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(code),
            "{context} exit status; log:\n{log}"
        );
        log
    }

    /// User + system CPU time the server has used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// User + system CPU time of process `pid`, from `/proc/PID/stat`.
pub fn cpu_time_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // The command name (field 2) may contain spaces; fields after it are
    // counted from the closing parenthesis. utime and stime are fields 14, 15.
    let after = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    Duration::from_millis(ticks * 1000 / hz)
}

/// Runs the binary to completion (bounded): its exit status (`None` if it
/// had to be killed after `timeout`) and its stderr.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> (Option<ExitStatus>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = reader.join().unwrap_or_default();
    (status, text)
}

/// The totals a server printed at exit, from its structured line
/// `flashpolicyd: totals accepted=N served=N rejected=N timed_out=N
/// failed=N shed=N proxy_invalid=N over_ip_limit=N relayed=N upstream_failed=N origin_refused=N` (README, "Command line"): `None` if there is no such
/// line, or it lacks a counter, repeats one, or has one more.
pub fn parse_totals(log: &str) -> Option<Tally> {
    const PREFIX: &str = "flashpolicyd: totals ";
    let line = log.lines().find_map(|l| l.strip_prefix(PREFIX))?;
    let mut totals = Tally::default();
    let mut seen = Vec::new();
    for pair in line.split(' ') {
        let (key, value) = pair.split_once('=')?;
        let value: u64 = value.parse().ok()?;
        if seen.contains(&key) {
            return None;
        }
        seen.push(key);
        if key == "accepted" {
            totals.accepted = value;
        } else {
            let end = End::ALL.into_iter().find(|e| e.name() == key)?;
            totals.add(end, value);
        }
    }
    (seen.len() == End::ALL.len() + 1).then_some(totals)
}

/// [`parse_totals`], or a panic showing `log` and `context`.
pub fn expect_totals(log: &str, context: &str) -> Tally {
    parse_totals(log).unwrap_or_else(|| panic!("{context}: no totals line; log:\n{log}"))
}

/// Connects with bounded reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads until the server closes: the bytes, or the error (a reset, or a
/// read timeout) that ended the read. At most `limit` bytes are kept.
pub fn read_to_close(
    stream: &mut TcpStream,
    limit: usize,
) -> Result<Vec<u8>, (io::Error, Vec<u8>)> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(received),
            Ok(n) => {
                if received.len() + n > limit {
                    return Err((
                        io::Error::other(format!("more than {limit} bytes")),
                        received,
                    ));
                }
                received.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((e, received)),
        }
    }
}

/// The kernel's TCP state of `stream` (`libc::TCP_*` numbering in
/// `linux/tcp_states.h`: 7 CLOSE, 8 CLOSE_WAIT).
pub fn tcp_state(stream: &TcpStream) -> u8 {
    tcp_info(stream).tcpi_state
}

/// TCP_CLOSE_WAIT: the peer closed gracefully (FIN), we have not.
pub const TCP_CLOSE_WAIT: u8 = 8;

/// Sends `chunks` (pausing `gap` between them), optionally half-closes, and
/// reads until the server closes.
pub fn exchange(
    addr: SocketAddr,
    chunks: &[&[u8]],
    gap: Duration,
    half_close: bool,
) -> Result<Vec<u8>, (io::Error, Vec<u8>)> {
    let mut stream = connect(addr);
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 && !gap.is_zero() {
            std::thread::sleep(gap);
        }
        if let Err(e) = stream.write_all(chunk) {
            return Err((e, Vec::new()));
        }
    }
    if half_close {
        stream.shutdown(Shutdown::Write).expect("half-close");
    }
    read_to_close(&mut stream, 1 << 20)
}

/// Asserts that a well-behaved client on `addr` gets exactly `expected`,
/// ended by a graceful close (FIN, never RST).
pub fn assert_served(addr: SocketAddr, chunks: &[&[u8]], expected: &[u8], what: &str) {
    let mut stream = connect(addr);
    for chunk in chunks {
        stream
            .write_all(chunk)
            .unwrap_or_else(|e| panic!("{what}: write: {e}"));
    }
    let received = read_to_close(&mut stream, 1 << 20)
        .unwrap_or_else(|(e, got)| panic!("{what}: read ended with {e} after {} bytes", got.len()));
    assert_eq!(
        received,
        expected,
        "{what}: wrong reply:\n{}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(
        received.iter().filter(|&&b| b == 0).count(),
        1,
        "{what}: exactly one NUL"
    );
    assert_eq!(
        tcp_state(&stream),
        TCP_CLOSE_WAIT,
        "{what}: the server must close with FIN, not RST"
    );
    assert!(
        stream.take_error().expect("SO_ERROR").is_none(),
        "{what}: socket error"
    );
}

/// Retries a good request until it is served or `timeout` passes.
pub fn served_within(addr: SocketAddr, expected: &[u8], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = (|| {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            stream.write_all(REQUEST).ok()?;
            read_to_close(&mut stream, 1 << 20).ok()
        })();
        if ok.as_deref() == Some(expected) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A file in a fresh per-test directory, removed (with the directory) when
/// dropped. `name` must be unique within one test binary.
pub struct TempFile {
    dir: std::path::PathBuf,
    /// The file.
    pub path: std::path::PathBuf,
}

impl TempFile {
    /// Creates `name` holding `contents`.
    pub fn new(name: &str, contents: &[u8]) -> TempFile {
        let dir =
            std::env::temp_dir().join(format!("flashpolicyd-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = TempFile {
            path: dir.join(name),
            dir,
        };
        file.write(contents);
        file
    }

    /// Replaces the file's contents.
    pub fn write(&self, contents: &[u8]) {
        std::fs::write(&self.path, contents).expect("write temp file");
    }

    /// The path, as a command-line argument.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Connects to `addr` from `source` (a loopback address, any port).
pub fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let from: SocketAddr = format!("{source}:0").parse().expect("source");
    socket.bind(&from.into()).expect("bind the client");
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// The server closed `stream` without sending a byte (a FIN, or a reset
/// where it left the client's bytes unread).
pub fn assert_closed_without_reply(mut stream: TcpStream, what: &str) {
    match read_to_close(&mut stream, 1 << 20) {
        Ok(got) => assert!(got.is_empty(), "{what}: got {} bytes", got.len()),
        Err((e, got)) => {
            assert!(got.is_empty(), "{what}: got {} bytes", got.len());
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{what}: {e}");
        }
    }
}
