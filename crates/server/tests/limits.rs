//! Limits, for every backend: running out of file descriptors neither kills
//! the server nor makes it spin, and `--max-connections` caps open
//! connections without failing the clients that wait.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Descriptors the server may hold: enough to start (stdio, epoll or a
/// ring, eventfds, the signal pipe, a listener, the spare) with room for a
/// few dozen connections.
const NOFILE: u64 = 64;

/// Idle connections opened against it: well over what it can hold, so some
/// stay queued in the kernel while the server is out of descriptors.
const IDLE: usize = 200;

#[test]
fn fd_exhaustion_sheds_without_spinning_and_recovers() {
    for backend in backends() {
        let mut server = Server::builder(backend)
            .args(&["--threads", "1", "--timeout", "60s"])
            .nofile(NOFILE)
            .start();
        let addr = server.addr();
        let expected = default_reply();
        assert_served(addr, &[REQUEST], &expected, &format!("[{backend}] before"));

        let idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(addr)).collect();
        assert!(
            server.wait_for_log("shedding", Duration::from_secs(5)),
            "[{backend}] no warning about running out of descriptors; log:\n{}",
            server.log_text()
        );

        // Out of descriptors, with connections still queued: it must wait,
        // not spin. Measure its CPU time over a second.
        let cpu_before = server.cpu_time();
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        let cpu = server.cpu_time().saturating_sub(cpu_before);
        let wall = started.elapsed();
        assert!(
            cpu < wall / 2,
            "[{backend}] used {cpu:?} of CPU in {wall:?} while out of descriptors"
        );
        assert!(
            server.is_running(),
            "[{backend}] server died: {}",
            server.log_text()
        );

        // Some queued clients were shed: closed without a reply, never served
        // a partial policy. Read what each idle client got so far.
        let mut closed = 0;
        for mut s in idle.iter() {
            s.set_read_timeout(Some(Duration::from_millis(1)))
                .expect("timeout");
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(0) => closed += 1,
                Ok(n) => panic!("[{backend}] an idle client got {n} bytes"),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => closed += 1,
                Err(e) => panic!("[{backend}] idle client: {e}"),
            }
        }
        assert!(closed > 0, "[{backend}] nothing was shed");

        // Once the idle clients go away the server recovers by itself.
        drop(idle);
        assert!(
            served_within(addr, &expected, Duration::from_secs(5)),
            "[{backend}] not serving again after descriptors freed up; log:\n{}",
            server.log_text()
        );
        for i in 0..20 {
            assert_served(
                addr,
                &[REQUEST],
                &expected,
                &format!("[{backend}] after recovery #{i}"),
            );
        }
        assert!(server.is_running());
    }
}

#[test]
fn max_connections_makes_new_clients_wait_for_a_free_slot() {
    for backend in backends() {
        let server = Server::start(
            backend,
            &[
                "--threads",
                "1",
                "--max-connections",
                "2",
                "--timeout",
                "30s",
            ],
        );
        let addr = server.addr();
        let expected = default_reply();
        let before = settled_fds(server.pid());
        let first = connect(addr);
        let second = connect(addr);
        // Wait until the server has taken both into its two slots: two more
        // descriptors open in the process.
        let deadline = Instant::now() + Duration::from_secs(5);
        while open_fds(server.pid()) < before + 2 {
            assert!(
                Instant::now() < deadline,
                "[{backend}] the server did not accept two clients: {} descriptors, {before} before",
                open_fds(server.pid())
            );
            std::thread::sleep(Duration::from_millis(10));
        }

        let mut third = connect(addr);
        third.write_all(REQUEST).expect("write");
        third
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        match third.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("[{backend}] a third connection was handled at the cap: {other:?}"),
        }
        assert!(
            server.wait_for_log("--max-connections", Duration::from_secs(1)),
            "[{backend}] no warning about the cap; log:\n{}",
            server.log_text()
        );

        // A slot frees: the waiting client is served, promptly.
        drop(first);
        third.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let started = Instant::now();
        let got = read_to_close(&mut third, 1 << 20);
        assert_eq!(
            got.as_deref().map_err(|(e, _)| e.kind()),
            Ok(expected.as_slice()),
            "[{backend}] the waiting client"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(second);
        assert_served(addr, &[REQUEST], &expected, &format!("[{backend}] after"));
    }
}
