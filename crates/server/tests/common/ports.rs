//! Loopback ports for tests, shared by the workspace's test suites (the
//! checker's and the load generator's include this file by path).
//!
//! Nextest runs every test in its own process, in parallel, so a port that
//! a test frees and hands to a program can be taken in between by another
//! test's `connect` (an ephemeral source port) or bind to port 0. These
//! helpers close that window.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicU32, Ordering};

/// A loopback port nothing listens on. A socket holds it bound, never
/// listening, until the test process exits: connecting is refused, and no
/// other test's bind to port 0 can be given it meanwhile.
pub fn closed_port() -> SocketAddr {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let addr = s.local_addr().expect("addr").as_socket().expect("inet");
    // Kept open on purpose: one descriptor per call, for the process' life.
    let _held = s.into_raw_fd();
    addr
}

/// The lowest port the kernel hands out by itself
/// (`net.ipv4.ip_local_port_range`).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A loopback port for a program that binds it itself (HAProxy,
/// `systemd-socket-activate`, a listener given by address): free now, and
/// below the kernel's ephemeral range, so no `connect` or bind to port 0
/// elsewhere can be handed it before the program binds it. Each process
/// starts at its own place in the range and never hands out a port twice.
pub fn unclaimed_port() -> u16 {
    const LOW: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let high = ephemeral_low();
    if high <= LOW + 1_000 {
        // No room below the ephemeral range: the best left is a port that
        // was free a moment ago.
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        return l.local_addr().expect("addr").port();
    }
    let span = high - LOW;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start + n * 97) % span;
        let port = u16::try_from(port).expect("below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {high}");
}
