//! What only the relay on the io_uring engine has: relays that find every
//! provided buffer in use wait for one and arrive intact; a relay holds its
//! two sockets and no pipe (two descriptors, where the epoll relay's splice
//! needs six); and a ring that cannot be set up falls back to the epoll
//! relay, saying so; a relay left with nothing in flight (both ways
//! waiting for a buffer) is still closed and counted when the drain ends.
//! The behaviour both relays share is tested on both
//! engines in `gateway.rs`.

mod common;
#[path = "common/gateway.rs"]
#[allow(dead_code)] // shared with gateway.rs, which uses all of it
mod gw;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use gw::*;

/// The uring backend, or `None` (said why) where io_uring cannot run here.
fn uring() -> Option<&'static str> {
    backends().into_iter().find(|b| *b == "uring")
}

#[test]
fn relays_that_find_no_free_buffer_wait_for_one() {
    const CLIENTS: usize = 8;
    const BYTES: usize = 192 << 10;
    let Some(backend) = uring() else { return };
    let up = upstream(Upstream::Echo);
    let spec = format!("127.0.0.1:0={up}");
    // Two buffers for the thread: 8 relays × 2 directions want 16.
    let server = Server::builder(backend)
        .env("FLASHPOLICYD_URING_RELAY_BUFFERS", "2")
        .args(&["--gateway", &spec, "--threads", "1", "--log", "debug"])
        .start();
    let addr = announced(&server, "gateway on ");
    assert!(
        server.log_text().contains("2 provided buffers of 64 KiB"),
        "the test hook took:\n{}",
        server.log_text()
    );
    // Every relay is up before any of them sends in bulk, so that they
    // overlap; each client reads slowly, so that the sends toward it hold
    // their buffers.
    let ready = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let ready = Arc::clone(&ready);
            thread::spawn(move || {
                let data: Vec<u8> = (0..BYTES).map(|i| (i * 31 + n * 7) as u8).collect();
                let mut s = connect(addr);
                s.set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                read_slowly(&s);
                s.write_all(b"<hi/>").expect("hello");
                let mut hello = [0u8; 5];
                s.read_exact(&mut hello).expect("hello back");
                ready.wait();
                let got = send_and_read_back(&mut s, &data);
                assert!(
                    got == data,
                    "client {n}: {} of {BYTES} bytes back",
                    got.len()
                );
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let mut server = server;
    server.signal(libc::SIGTERM);
    let log = server.expect_exit(0, backend);
    let totals = expect_totals(&log, backend);
    assert_eq!(totals.relayed, CLIENTS as u64);
    // The test is of the wait: it must have happened.
    let waits = ring_waits(&log).unwrap_or_else(|| panic!("no count of waits:\n{log}"));
    assert!(waits > 0, "no receive waited for a buffer:\n{log}");
    assert_eq!(
        totals.ended_total(),
        totals.accepted,
        "every connection counted once"
    );
}

#[test]
fn a_relay_on_the_ring_holds_two_descriptors() {
    const RELAYS: usize = 200;
    let Some(backend) = uring() else { return };
    let up = upstream(Upstream::Echo);
    let (server, addr) = gateway(backend, up, &[]);
    let pid = server.pid();
    assert_eq!(round_trip(addr, b"<m/>"), b"<m/>");
    let idle = settled_fds(pid);
    let mut clients: Vec<TcpStream> = (0..RELAYS).map(|_| connect(addr)).collect();
    for c in &mut clients {
        c.write_all(b"<m/>").expect("send");
    }
    for c in &mut clients {
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).expect("echo");
    }
    let open = open_fds(pid) - idle;
    assert!(
        open <= 2 * RELAYS + 8,
        "{open} descriptors for {RELAYS} relays (two each, and no pipes, expected)"
    );
    assert!(open >= 2 * RELAYS, "{open} descriptors for {RELAYS} relays");
    drop(clients);
    wait_for_fds(pid, idle, "after the relays");
    let totals = stop(server, backend);
    assert_eq!(totals.relayed, RELAYS as u64 + 1);
}

#[test]
fn a_ring_that_cannot_be_set_up_falls_back_to_the_epoll_relay() {
    let Some(backend) = uring() else { return };
    let up = upstream(Upstream::Echo);
    let spec = format!("127.0.0.1:0={up}");
    // Not a power of two: the buffer ring refuses it.
    let server = Server::builder(backend)
        .env("FLASHPOLICYD_URING_RELAY_BUFFERS", "3")
        .args(&["--gateway", &spec, "--threads", "1"])
        .start();
    let addr = announced(&server, "gateway on ");
    let log = server.log_text();
    assert!(
        log.contains("no io_uring relay here") && log.contains("relaying with splice on epoll"),
        "the fallback is said:\n{log}"
    );
    assert!(!log.contains("relays on io_uring"), "{log}");
    assert_eq!(round_trip(addr, b"<msg t='sys'/>"), b"<msg t='sys'/>");
    let totals = stop(server, backend);
    assert_eq!(totals.relayed, 1);
}

#[test]
fn a_relay_waiting_for_buffers_both_ways_is_closed_and_counted_when_the_drain_ends() {
    let Some(backend) = uring() else { return };
    let up = upstream(Upstream::Echo);
    let spec = format!("127.0.0.1:0={up}");
    let mut server = Server::builder(backend)
        .env("FLASHPOLICYD_URING_RELAY_BUFFERS", "2")
        .args(&[
            "--gateway",
            &spec,
            "--threads",
            "1",
            "--log",
            "debug",
            "--drain-timeout",
            "300ms",
        ])
        .start();
    let addr = announced(&server, "gateway on ");
    // A player that floods and never reads: both of the thread's buffers
    // end up in sends that cannot finish, one each way.
    let mut hog = connect(addr);
    read_slowly(&hog);
    let written = flood_until_blocked(&mut hog, &vec![0x5au8; 64 << 10]);
    assert!(written < FLOOD_LIMIT, "the gateway took it all");
    // A second player: its message finds no buffer, and neither does the
    // receive from its game server, so nothing of it is in flight.
    let mut waiting = connect(addr);
    waiting.write_all(b"<hi/>").expect("send");
    thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGTERM);
    // The drain ends: the open relays close. Each has bytes from its
    // player that nothing read, so the kernel resets rather than FINs.
    for s in [&mut hog, &mut waiting] {
        s.set_nonblocking(false).expect("blocking");
        let mut sink = [0u8; 64 << 10];
        loop {
            match s.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("a relay was not closed at the drain's end: {e}"),
            }
        }
    }
    let log = server.expect_exit(0, backend);
    let totals = expect_totals(&log, backend);
    let waits = ring_waits(&log).unwrap_or_else(|| panic!("no count of waits:\n{log}"));
    assert!(
        waits >= 2,
        "the second relay never waited both ways:\n{log}"
    );
    assert_eq!(totals.relayed, 2, "{totals:?}\n{log}");
    assert_eq!(totals.ended_total(), totals.accepted, "{totals:?}");
}
