//! Memory stays bounded by the connections open, not by the connections
//! served: with one idle client held (and `--timeout 1h`, so its deadline
//! stays first in the queue), serving tens of thousands of clients must not
//! grow the server's resident memory. Before the deadline queue compacted
//! finished entries, the io_uring engine grew by about 32 bytes per served
//! connection here.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// Connections served before the first measurement, so that allocator
/// arenas and buffers have settled.
const WARM_UP: usize = 5_000;
/// Connections served between the two measurements.
const SERVED: usize = 60_000;
/// Client threads.
const CLIENTS: usize = 4;
/// The growth allowed. Without compaction: SERVED * 32 bytes (1.9 MB),
/// plus the queue's doubling.
const MAX_GROWTH_KB: u64 = 768;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn serve_many(addr: SocketAddr, total: usize, expected: &[u8]) {
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                let mut buf = Vec::with_capacity(expected.len());
                for _ in 0..total / CLIENTS {
                    let mut s = connect(addr);
                    s.write_all(REQUEST).expect("request");
                    buf.clear();
                    s.read_to_end(&mut buf).expect("reply");
                    assert_eq!(buf, expected, "a whole reply every time");
                }
            });
        }
    });
}

#[test]
fn an_idle_client_does_not_make_served_ones_cost_memory() {
    let expected = default_reply();
    for backend in backends() {
        let server = Server::start(backend, &["--threads", "1", "--timeout", "1h"]);
        let addr = server.addr();
        let mut idle: TcpStream = connect(addr);
        idle.write_all(b"<policy").expect("a partial request");
        serve_many(addr, WARM_UP, &expected);
        let before = rss_kb(server.pid());
        serve_many(addr, SERVED, &expected);
        let after = rss_kb(server.pid());
        let growth = after.saturating_sub(before);
        assert!(
            growth <= MAX_GROWTH_KB,
            "[{backend}] resident memory grew by {growth} kB ({before} -> {after} kB) \
             over {SERVED} served connections with one idle client held"
        );
        // The idle client is still held: it was never timed out or reset.
        idle.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        let err = idle.read(&mut byte).expect_err("nothing was sent to it");
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "[{backend}] the idle client: {err}"
        );
        eprintln!("[{backend}] RSS {before} -> {after} kB over {SERVED} connections");
    }
}
