//! Many relays ending every way at once, on both engines (and on the ring
//! with so few buffers that most receives wait for one): players who finish
//! cleanly get every byte back intact while others reset mid-stream, close
//! with the echo unread, close after part of the policy request (relayed as
//! it came), or get the policy. Afterwards every descriptor is closed again
//! and every connection is counted once.

mod common;
#[path = "common/gateway.rs"]
#[allow(dead_code)] // shared with gateway.rs, which uses all of it
mod gw;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use gw::*;

/// Players of each kind.
const EACH: usize = 40;
/// Bytes a player that finishes sends (and gets back).
const BYTES: usize = 96 << 10;

/// How a player ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Sends its bytes, half-closes, reads the echo to the end.
    Clean,
    /// Sends part of its bytes, then resets (`SO_LINGER` 0).
    Reset,
    /// Sends a message and closes with the echo unread (its kernel resets).
    Unread,
    /// Sends part of the policy request and closes: the game server gets
    /// what came, and the end.
    Abandoned,
    /// Asks for the policy and reads it to the close.
    Policy,
}

const ENDINGS: [Ending; 5] = [
    Ending::Clean,
    Ending::Reset,
    Ending::Unread,
    Ending::Abandoned,
    Ending::Policy,
];

fn player(addr: SocketAddr, ending: Ending, n: usize, ready: &Barrier) {
    let data: Vec<u8> = (0..BYTES).map(|i| (i * 13 + n * 5) as u8).collect();
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    // All connected before any acts, so that the endings overlap.
    ready.wait();
    match ending {
        Ending::Clean => {
            read_slowly(&s);
            let got = send_and_read_back(&mut s, &data);
            assert!(got == data, "player {n}: {} of {BYTES} bytes", got.len());
        }
        Ending::Reset => {
            s.write_all(&data[..BYTES / 3]).expect("send");
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .expect("linger");
        }
        Ending::Unread => {
            s.write_all(b"<msg t='sys'><body action='verChk'/></msg>\0")
                .expect("send");
            // Wait for some of the echo, so that it is there unread.
            let mut one = [0u8; 1];
            s.read_exact(&mut one).expect("echo begins");
        }
        Ending::Abandoned => {
            s.write_all(&REQUEST[..9]).expect("send");
        }
        Ending::Policy => {
            s.write_all(REQUEST).expect("send");
            let got = read_to_close(&mut s, 64 << 10).expect("the policy");
            assert_eq!(got, default_reply(), "player {n}");
        }
    }
}

/// Runs the players against a gateway on `backend` with `env`; the log.
fn churn(backend: &'static str, env: &[(&str, &str)]) -> String {
    let up = upstream(Upstream::Echo);
    let spec = format!("127.0.0.1:0={up}");
    let mut builder =
        Server::builder(backend).args(&["--gateway", &spec, "--threads", "2", "--log", "debug"]);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let mut server = builder.start();
    let addr = announced(&server, "gateway on ");
    assert_relay_engine(&server, backend);
    let pid = server.pid();
    assert_eq!(round_trip(addr, b"<m/>"), b"<m/>");
    let idle = settled_fds(pid);
    let count = EACH * ENDINGS.len();
    let ready = Arc::new(Barrier::new(count));
    let players: Vec<_> = (0..count)
        .map(|n| {
            let ending = ENDINGS[n % ENDINGS.len()];
            let ready = Arc::clone(&ready);
            thread::Builder::new()
                .name(format!("{ending:?} {n}"))
                .spawn(move || player(addr, ending, n, &ready))
                .expect("spawn")
        })
        .collect();
    for p in players {
        p.join().expect("a player failed");
    }
    let context = format!("[{backend} {env:?}]");
    wait_for_fds(pid, idle, &context);
    server.signal(libc::SIGTERM);
    let log = server.expect_exit(0, &context);
    let totals = expect_totals(&log, &context);
    // The warm-up, and every kind but the one that asked for the policy.
    assert_eq!(totals.relayed, 1 + 4 * EACH as u64, "{context} {totals:?}");
    assert_eq!(totals.served, EACH as u64, "{context} {totals:?}");
    assert_eq!(
        totals.ended_total(),
        totals.accepted,
        "{context} every connection counted once: {totals:?}"
    );
    assert_eq!(totals.accepted, 1 + 5 * EACH as u64, "{context} {totals:?}");
    log
}

#[test]
fn relays_ending_every_way_at_once_leave_nothing_behind() {
    for backend in backends() {
        let _ = churn(backend, &[]);
    }
}

#[test]
fn on_the_ring_with_four_buffers_too() {
    let Some(backend) = backends().into_iter().find(|b| *b == "uring") else {
        return;
    };
    let log = churn(backend, &[("FLASHPOLICYD_URING_RELAY_BUFFERS", "4")]);
    // The test is of ends that come while receives wait for a buffer.
    let waits = ring_waits(&log).unwrap_or_else(|| panic!("no count of waits:\n{log}"));
    assert!(waits > 0, "no receive waited for a buffer:\n{log}");
}
