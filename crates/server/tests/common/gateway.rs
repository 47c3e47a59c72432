//! Helpers of the `--gateway` tests (gateway.rs, gateway_drain.rs): game
//! servers to put behind a gateway, and a server with one gateway.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::common::*;

/// What the in-test game server does with each connection.
#[derive(Clone, Copy)]
pub enum Upstream {
    /// Echoes everything; on end-of-stream, half-closes too.
    Echo,
    /// Sends a banner first, then echoes.
    Banner,
    /// Reads one byte, then resets the connection.
    Reset,
    /// Reads nothing, and holds the connection open for a while.
    Stall,
}

pub const BANNER: &[u8] = b"<cross-domain-hello/>\0";

/// Starts a game server on a loopback port; it serves until the test
/// process ends (each connection on a thread of its own).
pub fn upstream(mode: Upstream) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
    let addr = listener.local_addr().expect("upstream addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                match mode {
                    Upstream::Echo => echo(&mut stream),
                    Upstream::Banner => {
                        let _ = stream.write_all(BANNER);
                        echo(&mut stream);
                    }
                    Upstream::Stall => thread::sleep(Duration::from_secs(20)),
                    Upstream::Reset => {
                        let mut one = [0u8; 1];
                        let _ = stream.read(&mut one);
                        let s = socket2::SockRef::from(&stream);
                        let _ = s.set_linger(Some(Duration::ZERO));
                    }
                }
            });
        }
    });
    addr
}

pub fn echo(stream: &mut TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// A server with one policy listener and one gateway in front of `up`.
pub fn gateway(backend: &'static str, up: SocketAddr, args: &[&str]) -> (Server, SocketAddr) {
    let spec = format!("127.0.0.1:0={up}");
    let server = Server::builder(backend)
        .args(&["--gateway", &spec, "--threads", "2", "--log", "debug"])
        .args(args)
        .start();
    let addr = announced(&server, "gateway on ");
    assert_relay_engine(&server, backend);
    (server, addr)
}

/// On the uring backend the relays must be on the ring (not a silent
/// fallback to epoll), so that every test run with it tests that relay;
/// on epoll, never.
pub fn assert_relay_engine(server: &Server, backend: &str) {
    let log = server.log_text();
    let on_ring = log.contains("relays on io_uring");
    assert_eq!(
        on_ring,
        backend == "uring",
        "[{backend}] relays on the ring: {on_ring}:\n{log}"
    );
}

/// The address a server's start-up line `<label>ADDR ...` names (`gateway
/// on `, `websocket on `), waited for at most [`PROCESS_TIMEOUT`].
pub fn announced(server: &Server, label: &str) -> SocketAddr {
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    loop {
        let log = server.log_text();
        if let Some(addr) = log.lines().find_map(|l| {
            let rest = &l[l.find(label)? + label.len()..];
            rest.split_whitespace().next()?.parse().ok()
        }) {
            return addr;
        }
        assert!(Instant::now() < deadline, "no {label:?} line:\n{log}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The resident memory of a process, in kB.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Sends `bytes`, half-closes, and reads everything back until the close.
pub fn round_trip(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    send_and_read_back(&mut connect(addr), bytes)
}

/// On `s`, sends `bytes` and half-closes (from a thread of its own, so
/// that neither direction waits for the other) while reading everything
/// that comes back until the close.
pub fn send_and_read_back(s: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let writer = {
        let mut w = s.try_clone().expect("clone");
        let bytes = bytes.to_vec();
        thread::spawn(move || {
            w.write_all(&bytes).expect("send");
            w.shutdown(Shutdown::Write).expect("half-close");
        })
    };
    let got = read_to_close(s, 4 << 20).expect("read to the close");
    writer.join().expect("writer");
    got
}

pub fn stop(mut server: Server, context: &str) -> flashpolicy_proto::serve::Tally {
    server.signal(libc::SIGTERM);
    let log = server.expect_exit(0, context);
    expect_totals(&log, context)
}

/// Writes `chunk` over and over into non-blocking `s` until the peer stops
/// taking bytes for half a second, or 256 MiB went in (which only an
/// unbounded buffer would take); returns the bytes written. A chunk that
/// is a whole frame stays aligned: each write resumes where the last ended.
pub fn flood_until_blocked(s: &mut TcpStream, chunk: &[u8]) -> usize {
    s.set_nonblocking(true).expect("nonblocking");
    let (mut written, mut blocked_since) = (0usize, None::<Instant>);
    while written < FLOOD_LIMIT {
        match s.write(&chunk[written % chunk.len()..]) {
            Ok(n) => {
                written += n;
                blocked_since = None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    written
}

/// What [`flood_until_blocked`] stops at.
pub const FLOOD_LIMIT: usize = 256 << 20;

/// How many receives on the relay ring waited for a free buffer, from the
/// count a uring server logs at exit with `--log debug`.
#[allow(dead_code)] // only the ring's tests read it
pub fn ring_waits(log: &str) -> Option<u64> {
    log.lines().find_map(|l| {
        let rest = &l[l.find("relay ring: ")? + "relay ring: ".len()..];
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Makes `s` a slow reader: with a receive buffer this small, a relay's
/// sends toward it stay in flight (holding their buffer) far longer.
#[allow(dead_code)] // only the ring's tests need it
pub fn read_slowly(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_recv_buffer_size(4096)
        .expect("SO_RCVBUF");
}
