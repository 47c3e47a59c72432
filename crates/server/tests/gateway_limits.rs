//! `--gateway` out of descriptors: queued players are shed (closed at once,
//! counted) instead of waiting in the kernel for an edge that may not come,
//! and the game port serves again once descriptors free up.

mod common;
#[path = "common/gateway.rs"]
#[allow(dead_code)] // shared with gateway.rs, which uses all of it
mod gw;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use gw::{announced, upstream, Upstream};

#[test]
fn out_of_descriptors_the_game_port_sheds_and_recovers() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let spec = format!("127.0.0.1:0={up}");
        // Silent players stay in the sniff (one descriptor each) for a while.
        let mut server = Server::builder(backend)
            .args(&["--gateway", &spec, "--threads", "1", "--timeout", "60s"])
            .args(&["--gateway-wait", "30s"])
            .nofile(64)
            .start();
        let addr = announced(&server, "gateway on ");
        let idle: Vec<TcpStream> = (0..200).map(|_| connect(addr)).collect();
        assert!(
            server.wait_for_log("shedding queued connections", Duration::from_secs(5)),
            "[{backend}] {}",
            server.log_text()
        );
        let mut closed = 0;
        for mut s in idle.iter() {
            s.set_read_timeout(Some(Duration::from_millis(1)))
                .expect("timeout");
            match s.read(&mut [0u8; 64]) {
                Ok(0) => closed += 1,
                Ok(n) => panic!("[{backend}] an idle player got {n} bytes"),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => closed += 1,
                Err(e) => panic!("[{backend}] idle player: {e}"),
            }
        }
        assert!(closed > 0, "[{backend}] nothing was shed");
        drop(idle);
        assert!(
            served_within(addr, &default_reply(), Duration::from_secs(5)),
            "[{backend}] the game port does not serve again: {}",
            server.log_text()
        );
        server.signal(libc::SIGTERM);
        let log = server.expect_exit(0, backend);
        assert!(expect_totals(&log, backend).shed > 0, "[{backend}]");
    }
}
