//! A real HAProxy in front of two `flashpolicyd` with `--proxy-protocol`,
//! one fed v1 headers, one v2, each health-checked: clients from several
//! loopback addresses are all served, both instances serve, and their
//! debug logs name the clients' real addresses, not HAProxy's.
//!
//! HAProxy runs with the shipped `contrib/haproxy.cfg`, its addresses set
//! through the environment. Skipped only where haproxy is not installed and
//! `FLASHPOLICYD_REQUIRE_TOOLS` is not `1`.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use flashpolicy_proto::serve::End;
use socket2::{Domain, Socket, Type};

/// Set to `1` to make a missing tool fail the test instead of skipping it.
const REQUIRE_TOOLS_ENV: &str = "FLASHPOLICYD_REQUIRE_TOOLS";

/// Client source addresses (all loopback).
const SOURCES: [&str; 4] = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];

/// Connections per source address.
const PER_SOURCE: usize = 10;

fn haproxy_path() -> Option<PathBuf> {
    let found = [
        "/usr/sbin/haproxy",
        "/usr/local/sbin/haproxy",
        "/usr/bin/haproxy",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    if found.is_none() {
        let why = "haproxy is not installed";
        if std::env::var_os(REQUIRE_TOOLS_ENV).is_some_and(|v| v == "1") {
            panic!("{REQUIRE_TOOLS_ENV}=1, but {why}");
        }
        eprintln!("haproxy test: skipped: {why}");
    }
    found
}

/// HAProxy, killed when dropped.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_haproxy(bin: &Path, frontend: SocketAddr, v1: SocketAddr, v2: SocketAddr) -> Haproxy {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/haproxy.cfg");
    let child = Command::new(bin)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .env("FLASHPOLICY_FRONTEND", frontend.to_string())
        .env("FLASHPOLICY_BACKEND_V1", v1.to_string())
        .env("FLASHPOLICY_BACKEND_V2", v2.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    Haproxy(child)
}

fn client_from(source: &str, addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let from: SocketAddr = format!("{source}:0").parse().expect("source");
    socket.bind(&from.into())?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(REQUEST)?;
    read_to_close(&mut stream, 1 << 20).map_err(|(e, _)| e)
}

#[test]
fn haproxy_v1_and_v2_in_front_of_two_servers() {
    let Some(bin) = haproxy_path() else { return };
    let reply = default_reply();
    for backend in backends() {
        let args = [
            "--proxy-protocol",
            "--proxy-from",
            "127.0.0.1/32",
            "--log",
            "debug",
            "--threads",
            "1",
        ];
        let s1 = Server::start(backend, &args);
        let s2 = Server::start(backend, &args);
        let frontend: SocketAddr = format!("127.0.0.1:{}", unclaimed_port())
            .parse()
            .expect("valid");
        let _haproxy = start_haproxy(&bin, frontend, s1.addr(), s2.addr());

        // Wait until HAProxy serves, and its health checks have found both
        // servers up (each has answered a check).
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            let up = client_from("127.0.0.2", frontend).is_ok_and(|got| got == reply)
                && s1.log_text().contains("served")
                && s2.log_text().contains("served");
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "[{backend}] HAProxy never served"
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        let mut errors = Vec::new();
        for source in SOURCES {
            for _ in 0..PER_SOURCE {
                match client_from(source, frontend) {
                    Ok(got) if got == reply => {}
                    Ok(got) => errors.push(format!("{source}: {} wrong bytes", got.len())),
                    Err(e) => errors.push(format!("{source}: {e}")),
                }
            }
        }
        assert!(errors.is_empty(), "[{backend}] errors: {errors:?}");

        // Both servers saw the clients' own addresses (round robin), via
        // HAProxy at 127.0.0.1.
        // (A connection's debug line is written as it closes, after the
        // client has its reply: wait for each, bounded.)
        for (name, server) in [("v1", &s1), ("v2", &s2)] {
            let missing: Vec<&str> = SOURCES
                .iter()
                .copied()
                .filter(|s| !server.wait_for_log(&format!("client {s}:"), IO_TIMEOUT))
                .collect();
            assert!(
                missing.is_empty(),
                "[{backend}] {name}: {missing:?} not in the log:\n{}",
                server.log_text()
            );
            assert!(
                server.log_text().contains(" via 127.0.0.1:"),
                "[{backend}] {name}"
            );
        }
        drop(_haproxy);
        for (name, mut server) in [("v1", s1), ("v2", s2)] {
            server.signal(libc::SIGTERM);
            let log = server.expect_exit(0, "SIGTERM");
            let totals = expect_totals(&log, name);
            assert!(
                totals.get(End::Served) >= (SOURCES.len() * PER_SOURCE / 2) as u64,
                "[{backend}] {name}: {totals:?}"
            );
            // Health checks are served too: nothing invalid, rejected or
            // failed.
            for end in [End::ProxyInvalid, End::Rejected, End::Failed] {
                assert_eq!(totals.get(end), 0, "[{backend}] {name} {end}: {totals:?}");
            }
        }
    }
}
