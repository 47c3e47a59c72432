//! `--gateway` at shutdown: SIGTERM closes the game port's listeners,
//! open relays go on until they end or `--drain-timeout` passes.

mod common;
#[path = "common/gateway.rs"]
#[allow(dead_code)] // shared with gateway.rs, which uses all of it
mod gw;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use gw::*;
#[test]
fn at_sigterm_open_relays_go_on_and_new_players_are_refused() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (mut server, addr) = gateway(backend, up, &[]);
        let mut s = connect(addr);
        s.write_all(b"before").expect("send");
        let mut buf = [0u8; 6];
        s.read_exact(&mut buf).expect("echoed");
        server.signal(libc::SIGTERM);
        assert!(
            server.wait_for_log("listeners closed", PROCESS_TIMEOUT),
            "[{backend}] no drain:\n{}",
            server.log_text()
        );
        // Both gateway threads have closed their listeners once each logged.
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        while server.log_text().matches("listeners closed").count() < 4 {
            assert!(
                Instant::now() < deadline,
                "[{backend}] {}",
                server.log_text()
            );
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            TcpStream::connect(addr).is_err(),
            "[{backend}] a new player got in during the drain"
        );
        // The open session still relays both ways, then ends normally.
        s.write_all(b" after").expect("send during the drain");
        s.read_exact(&mut buf).expect("echoed during the drain");
        assert_eq!(&buf, b" after", "[{backend}]");
        assert!(server.is_running(), "[{backend}] exited with a relay open");
        s.shutdown(Shutdown::Write).expect("half-close");
        assert_eq!(
            read_to_close(&mut s, 64).expect("close"),
            b"",
            "[{backend}]"
        );
        let log = server.expect_exit(0, backend);
        assert_eq!(expect_totals(&log, backend).relayed, 1, "[{backend}]");
    }
}

#[test]
fn a_relay_still_open_when_the_drain_ends_is_closed() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (mut server, addr) = gateway(backend, up, &["--drain-timeout", "300ms"]);
        let mut s = connect(addr);
        s.write_all(b"held").expect("send");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).expect("echoed");
        server.signal(libc::SIGTERM);
        // The player sees the close (nothing was in flight: a FIN).
        assert_eq!(
            read_to_close(&mut s, 64).expect("closed"),
            b"",
            "[{backend}]"
        );
        let log = server.expect_exit(0, backend);
        assert_eq!(expect_totals(&log, backend).relayed, 1, "[{backend}]");
    }
}
