//! systemd integration, with the real `systemd-socket-activate`: the server
//! serves through the passed socket on both engines with two workers
//! sharing it, tells a test-owned `NOTIFY_SOCKET` READY/RELOADING/STOPPING
//! and pings its watchdog; a passed descriptor that is not a listening TCP
//! socket stops the start-up with its number and the reason.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    backends, default_reply, expect_totals, read_to_close, unclaimed_port, TempFile, BIN,
    IO_TIMEOUT, PROCESS_TIMEOUT, REQUEST,
};

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// Whether the tool is here; without it the test skips, unless
/// `FLASHPOLICYD_REQUIRE_TOOLS=1`, where it fails.
fn have_activate() -> bool {
    if std::path::Path::new(ACTIVATE).exists() {
        return true;
    }
    if std::env::var_os("FLASHPOLICYD_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("FLASHPOLICYD_REQUIRE_TOOLS=1 but {ACTIVATE} is missing (Debian package systemd)");
    }
    eprintln!("skipped: {ACTIVATE} is not installed (Debian package systemd)");
    false
}

/// A started process whose stderr is collected; killed when dropped.
struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
    /// Disconnects when the stderr reader has ended.
    done: mpsc::Receiver<()>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let (ended, done) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let _ended = ended;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().expect("lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        Proc { child, log, done }
    }

    fn log(&self) -> String {
        self.log.lock().expect("lock").clone()
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill takes no pointers; the child is ours and not reaped.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// The exit code, waiting at most [`PROCESS_TIMEOUT`].
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // The reader ends at the end of stderr, its sender with it.
                let _ = self.done.recv_timeout(PROCESS_TIMEOUT);
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's end of `NOTIFY_SOCKET`: a bound Unix datagram socket.
struct Notify {
    _dir: TempFile,
    path: String,
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notify {
    fn new(name: &str) -> Notify {
        let dir = TempFile::new(name, b"");
        let path = dir.path.with_extension("sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        Notify {
            path: path.to_str().expect("utf-8").to_string(),
            _dir: dir,
            socket,
            seen: Vec::new(),
        }
    }

    /// Waits until a datagram has a line `state`; returns the datagram.
    /// The datagrams read on the way are kept in `seen`.
    fn wait_for(&mut self, state: &str, log: &dyn Fn() -> String) -> String {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(|l| l == state) {
                    return msg;
                }
            }
        }
        panic!(
            "no {state} on NOTIFY_SOCKET; got {:?}; log:\n{}",
            self.seen,
            log()
        );
    }
}

fn assert_served(addr: SocketAddr, what: &str) {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(REQUEST).expect("write");
    let got = read_to_close(&mut s, 1 << 20).map_err(|(e, _)| e.to_string());
    assert_eq!(got, Ok(default_reply()), "{what}");
}

#[test]
fn a_passed_socket_is_served_by_every_worker_with_notify_and_watchdog() {
    if !have_activate() {
        return;
    }
    for backend in backends() {
        let mut notify = Notify::new(&format!("notify-{backend}"));
        let port = unclaimed_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut server = Proc::spawn(
            Command::new(ACTIVATE)
                .arg("-l")
                .arg(addr.to_string())
                .arg("--fdname=policy")
                .arg("-E")
                .arg(format!("NOTIFY_SOCKET={}", notify.path))
                .arg("-E")
                .arg("WATCHDOG_USEC=200000")
                .arg(BIN)
                .args(["--backend", backend, "--threads", "2", "--timeout", "2s"])
                // Ignored, with a warning: the passed socket wins.
                .args(["--listen", "127.0.0.1:1"]),
        );
        let log = |p: &Proc| p.log();
        // systemd-socket-activate starts the server on the first connection.
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let mut first = loop {
            match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("[{backend}] connect: {e}; log:\n{}", server.log()),
            }
        };
        first.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        first.write_all(REQUEST).expect("write");
        assert_eq!(
            read_to_close(&mut first, 1 << 20).map_err(|(e, _)| e.to_string()),
            Ok(default_reply()),
            "[{backend}] the connection that started it"
        );
        let ready = notify.wait_for("READY=1", &|| log(&server));
        assert!(ready.contains("READY=1"));
        let listening = format!("listening on {addr} (passed descriptor 3, \"policy\")");
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        while !server.log().contains(&listening) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = server.log();
        assert!(text.contains(&listening), "[{backend}] {text}");
        assert!(text.contains("--listen is ignored"), "[{backend}] {text}");
        for i in 0..20 {
            assert_served(addr, &format!("[{backend}] client {i}"));
        }
        // WATCHDOG_USEC=200000: a ping every 100 ms while the workers answer.
        for _ in 0..3 {
            notify.wait_for("WATCHDOG=1", &|| log(&server));
        }

        server.signal(libc::SIGHUP);
        let reloading = notify.wait_for("RELOADING=1", &|| log(&server));
        assert!(
            reloading.lines().any(|l| l
                .strip_prefix("MONOTONIC_USEC=")
                .is_some_and(|v| v.parse::<u64>().is_ok())),
            "[{backend}] {reloading:?}"
        );
        notify.wait_for("READY=1", &|| log(&server));
        assert_served(addr, &format!("[{backend}] after the reload"));

        // A client half-way through its request when SIGTERM comes is
        // still served: the drain works on the shared socket.
        let mut in_flight = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        in_flight
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("timeout");
        in_flight.write_all(&REQUEST[..10]).expect("write");
        std::thread::sleep(Duration::from_millis(100));
        server.signal(libc::SIGTERM);
        notify.wait_for("STOPPING=1", &|| log(&server));
        in_flight.write_all(&REQUEST[10..]).expect("write");
        assert_eq!(
            read_to_close(&mut in_flight, 1 << 20).map_err(|(e, _)| e.to_string()),
            Ok(default_reply()),
            "[{backend}] in flight at SIGTERM"
        );
        assert_eq!(server.exit_code(), Some(0), "[{backend}] {}", server.log());
        let text = server.log();
        let totals = expect_totals(&text, backend);
        assert_eq!(totals.served, 23, "[{backend}] {text}");
        assert_eq!(totals.accepted, totals.ended_total(), "[{backend}] {text}");
        // Both workers took part: the shared socket is not one worker's.
        assert!(!text.contains("worker 1 failed"), "[{backend}] {text}");
    }
}

#[test]
fn a_passed_udp_socket_is_refused_naming_the_descriptor() {
    if !have_activate() {
        return;
    }
    let port = unclaimed_port();
    let mut server = Proc::spawn(
        Command::new(ACTIVATE)
            .args(["--datagram", "-l", &format!("127.0.0.1:{port}")])
            .arg(BIN)
            .args(["--backend", "epoll"]),
    );
    // The first datagram makes systemd-socket-activate start the server.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    while Instant::now() < deadline && !server.log().contains("descriptor 3") {
        let _ = udp.send_to(b"x", ("127.0.0.1", port));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.exit_code(), Some(1), "{}", server.log());
    let log = server.log();
    assert!(
        log.contains("passed descriptor 3 is not a listening TCP socket")
            && log.contains("datagram"),
        "{log}"
    );
    assert!(!log.contains("listening on"), "{log}");
}

/// `sh` passes descriptor 3 (a file, not a socket) with LISTEN_FDS=1 and
/// LISTEN_PID set to the pid the server will have after `exec`.
fn with_fd3_file(listen_pid: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!(
            "exec 3</dev/null; export LISTEN_FDS=1 LISTEN_PID={listen_pid}; exec \"$0\" \"$@\""
        ))
        .arg(BIN)
        .args(["--backend", "epoll", "--listen", "127.0.0.1:0"]);
    cmd
}

#[test]
fn a_passed_file_is_refused_and_another_process_s_fds_are_ignored() {
    let mut server = Proc::spawn(&mut with_fd3_file("$$"));
    assert_eq!(server.exit_code(), Some(1), "{}", server.log());
    let log = server.log();
    assert!(
        log.contains("passed descriptor 3 is not a listening TCP socket: it is not a socket"),
        "{log}"
    );

    // LISTEN_PID of another process: not for us, --listen is served.
    let server = Proc::spawn(&mut with_fd3_file("1"));
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let addr = loop {
        if let Some(addr) = server.log().lines().find_map(common::parse_listening) {
            break addr;
        }
        assert!(Instant::now() < deadline, "not started: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_served(addr, "LISTEN_PID not ours");
}
