//! `--max-per-ip` end to end, on both engines: one address holds at most N
//! connections across every worker, the next is closed at once without a
//! byte, other addresses are served, a closed connection frees its share,
//! and with `--proxy-protocol` the header's source is what is counted.

mod common;
#[path = "common/scrape.rs"]
#[allow(dead_code)] // the metrics tests use the rest
mod scrape;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use flashpolicy_proto::serve::End;

/// Waits (bounded) until the server has accepted `accepted` connections
/// and closed `over` of them as over the limit, summed over its workers.
fn wait_decided(metrics: SocketAddr, workers: usize, accepted: u64, over: u64, what: &str) {
    scrape::scrape_until(metrics, what, |body| {
        let sum = |f: &dyn Fn(usize) -> Option<u64>| (0..workers).filter_map(f).sum::<u64>();
        sum(&|w| scrape::accepted(body, w)) == accepted
            && sum(&|w| scrape::ended(body, End::OverIpLimit, w)) == over
    });
}

fn stop(mut server: Server) -> flashpolicy_proto::serve::Tally {
    server.signal(libc::SIGTERM);
    let log = server.expect_exit(0, "SIGTERM");
    expect_totals(&log, "totals")
}

/// Splits `clients` into those the server has closed (end-of-stream is
/// waiting) and those it holds open. Called once the server's descriptor
/// count shows it has decided every one of them.
fn closed_and_open(clients: Vec<TcpStream>) -> (usize, Vec<TcpStream>) {
    let mut closed = 0;
    let mut open = Vec::new();
    for mut c in clients {
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        match c.read(&mut buf) {
            Ok(0) => closed += 1,
            Ok(n) => panic!("a held or refused client got {n} bytes"),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                c.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                open.push(c);
            }
            Err(e) => panic!("a held or refused client: {e}"),
        }
    }
    (closed, open)
}

fn served(mut stream: TcpStream, reply: &[u8], what: &str) {
    stream.write_all(REQUEST).expect("send");
    assert_eq!(
        read_to_close(&mut stream, 1 << 16).map_err(|(e, _)| e.kind()),
        Ok(reply.to_vec()),
        "{what}"
    );
}

#[test]
fn one_address_holds_at_most_n_across_workers_and_others_are_served() {
    let reply = default_reply();
    for backend in backends() {
        let (server, metrics) = scrape::start(
            backend,
            &["--max-per-ip", "3", "--threads", "2", "--timeout", "30s"],
        );
        let pid = server.pid();
        let base = settled_fds(pid);
        // Eight silent clients from one address: SO_REUSEPORT spreads them
        // over both workers, yet only three are held (counted per worker,
        // up to six would be) and five are closed without a byte.
        let clients: Vec<_> = (0..8)
            .map(|_| connect_from("127.0.0.2", server.addr()))
            .collect();
        wait_decided(metrics, 2, 8, 5, &format!("[{backend}] eight decided"));
        wait_for_fds(pid, base + 3, &format!("[{backend}] three held of eight"));
        let (closed, mut held) = closed_and_open(clients);
        assert_eq!((closed, held.len()), (5, 3), "[{backend}]");
        // One more from that address, with a request, gets nothing.
        let mut over = connect_from("127.0.0.2", server.addr());
        let _ = over.write_all(REQUEST);
        assert_closed_without_reply(over, &format!("[{backend}] over the limit"));
        // Another address is served at once.
        let other = connect_from("127.0.0.3", server.addr());
        served(other, &reply, &format!("[{backend}] 127.0.0.3"));
        // A held connection that closes frees its share.
        drop(held.pop());
        wait_for_fds(pid, base + 2, &format!("[{backend}] one closed"));
        let again = connect_from("127.0.0.2", server.addr());
        served(again, &reply, &format!("[{backend}] 127.0.0.2 again"));
        drop(held);
        wait_for_fds(pid, base, &format!("[{backend}] all closed"));
        let totals = stop(server);
        assert_eq!(totals.get(End::OverIpLimit), 6, "[{backend}] {totals:?}");
        assert_eq!(totals.get(End::Served), 2, "[{backend}] {totals:?}");
        assert_eq!(
            totals.ended_total(),
            totals.accepted,
            "[{backend}] {totals:?}"
        );
    }
}

#[test]
fn behind_proxy_protocol_the_headers_source_is_counted() {
    let reply = default_reply();
    let header = |src: &str| format!("PROXY TCP4 {src} 127.0.0.1 5000 843\r\n").into_bytes();
    for backend in backends() {
        let (server, metrics) = scrape::start(
            backend,
            &[
                "--proxy-protocol",
                "--proxy-from",
                "127.0.0.1/32",
                "--max-per-ip",
                "1",
                "--threads",
                "2",
                "--timeout",
                "30s",
            ],
        );
        let pid = server.pid();
        let base = settled_fds(pid);
        // Every connection comes from the "balancer" 127.0.0.1. Three claim
        // 198.51.100.7 and send only the header: one is held, two closed.
        let clients: Vec<_> = (0..3)
            .map(|_| {
                let mut c = connect_from("127.0.0.1", server.addr());
                c.write_all(&header("198.51.100.7")).expect("send");
                c
            })
            .collect();
        wait_decided(metrics, 2, 3, 2, &format!("[{backend}] three decided"));
        wait_for_fds(pid, base + 1, &format!("[{backend}] one held of three"));
        let (closed, mut held) = closed_and_open(clients);
        assert_eq!((closed, held.len()), (2, 1), "[{backend}]");
        // The same client again, with a complete request: nothing.
        let mut same = connect_from("127.0.0.1", server.addr());
        let mut bytes = header("198.51.100.7");
        bytes.extend_from_slice(REQUEST);
        same.write_all(&bytes).expect("send");
        assert_closed_without_reply(same, &format!("[{backend}] same client"));
        // Another client through the same balancer is served.
        let mut other = connect_from("127.0.0.1", server.addr());
        other.write_all(&header("198.51.100.8")).expect("send");
        served(other, &reply, &format!("[{backend}] another client"));
        // The held one finishes its request and is served.
        let first = held.pop().expect("held");
        served(first, &reply, &format!("[{backend}] the held client"));
        let totals = stop(server);
        assert_eq!(totals.get(End::OverIpLimit), 3, "[{backend}] {totals:?}");
        assert_eq!(totals.get(End::Served), 2, "[{backend}] {totals:?}");
    }
}

#[test]
fn a_zero_limit_is_a_usage_error() {
    let (status, text) = run_to_exit(
        &["--max-per-ip", "0", "--listen", "127.0.0.1:0"],
        Duration::from_secs(10),
    );
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{text}");
    assert!(text.contains("--max-per-ip"), "{text}");
}
