//! `--gateway` end to end on loopback, with the policy workers on both
//! engines: the policy on the game port, relays of XML and binary
//! protocols, 1 MiB each way, half-close and reset propagation, an
//! upstream that is down, a server that speaks first, PROXY v2 toward the
//! upstream, 1,000 concurrent relays, and no descriptor left behind.

mod common;
#[path = "common/gateway.rs"]
mod gw;
#[path = "common/scrape.rs"]
#[allow(dead_code)] // shared with metrics.rs, which uses all of it
mod scrape;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use flashpolicy_proto::proxy::{HeaderReader, Step};
use gw::*;

#[test]
fn the_policy_is_served_on_the_game_port_in_any_split() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = gateway(backend, up, &[]);
        let reply = default_reply();
        assert_served(addr, &[REQUEST], &reply, backend);
        for cut in 1..REQUEST.len() {
            let (a, b) = REQUEST.split_at(cut);
            assert_served(
                addr,
                &[a, b],
                &reply,
                &format!("[{backend}] split at {cut}"),
            );
        }
        let totals = stop(server, backend);
        assert_eq!(totals.served, REQUEST.len() as u64, "[{backend}]");
        assert_eq!(totals.relayed, 0, "[{backend}]");
    }
}

#[test]
fn game_protocols_are_relayed_byte_for_byte() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = gateway(backend, up, &[]);
        let xml = b"<msg t='sys'><body action='verChk' r='0'><ver v='161' /></body></msg>\0";
        assert_eq!(round_trip(addr, xml), xml, "[{backend}] xml");
        let binary: Vec<u8> = (0..=255u8).rev().cycle().take(3000).collect();
        assert_eq!(round_trip(addr, &binary), binary, "[{backend}] binary");
        // A prefix of the request and then other bytes: all of them.
        let mut prefixed = b"<policy-file-req".to_vec();
        prefixed.extend_from_slice(b"uest/>X and more");
        assert_eq!(round_trip(addr, &prefixed), prefixed, "[{backend}] prefix");
        // A bare prefix then the half-close: relayed, half-close passed on.
        assert_eq!(
            round_trip(addr, b"<pol"),
            b"<pol",
            "[{backend}] bare prefix"
        );
        let totals = stop(server, backend);
        assert_eq!(totals.relayed, 4, "[{backend}]");
    }
}

#[test]
fn a_mebibyte_each_way_arrives_intact() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = gateway(backend, up, &[]);
        let data: Vec<u8> = (0..(1u32 << 20))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let got = round_trip(addr, &data);
        assert!(got == data, "[{backend}] {} bytes back", got.len());
        stop(server, backend);
    }
}

#[test]
fn a_half_close_leaves_the_other_direction_open() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = gateway(backend, up, &[]);
        let mut s = connect(addr);
        s.write_all(b"first").expect("send");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("echoed");
        assert_eq!(&buf, b"first");
        s.write_all(b" second").expect("send");
        s.shutdown(Shutdown::Write).expect("half-close");
        // The upstream saw the half-close (it half-closes back after
        // echoing what came before it).
        let got = read_to_close(&mut s, 1024).expect("the rest, then a FIN");
        assert_eq!(got, b" second", "[{backend}]");
        stop(server, backend);
    }
}

#[test]
fn a_reset_upstream_resets_the_client() {
    let up = upstream(Upstream::Reset);
    for backend in backends() {
        let (server, addr) = gateway(backend, up, &[]);
        let mut s = connect(addr);
        s.write_all(b"hello").expect("send");
        match read_to_close(&mut s, 1024) {
            Err((e, _)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "[{backend}]"),
            Ok(got) => panic!(
                "[{backend}] a clean close after {} bytes, not a reset",
                got.len()
            ),
        }
        stop(server, backend);
    }
}

/// What a reporting upstream saw on one connection: the bytes, and the
/// error kind that ended the read (`None`: end-of-stream).
type Report = (Vec<u8>, Option<io::ErrorKind>);

/// A game server that reports how each connection's read side ended, and,
/// on `progress`, how many bytes each connection has received so far.
struct Reporting {
    addr: SocketAddr,
    reports: Receiver<Report>,
    progress: Receiver<usize>,
}

fn reporting_upstream() -> Reporting {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let (tx, reports) = mpsc::channel();
    let (seen, progress) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (tx, seen) = (tx.clone(), seen.clone());
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let end = loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break None,
                        Ok(n) => {
                            got.extend_from_slice(&buf[..n]);
                            let _ = seen.send(got.len());
                        }
                        Err(e) => break Some(e.kind()),
                    }
                };
                let _ = tx.send((got, end));
            });
        }
    });
    Reporting {
        addr,
        reports,
        progress,
    }
}

#[test]
fn a_reset_client_resets_the_upstream() {
    let up = reporting_upstream();
    for backend in backends() {
        let (server, addr) = gateway(backend, up.addr, &[]);
        let s = connect(addr);
        (&s).write_all(b"<msg/>").expect("send");
        // Reset only once the relay is up and has passed the bytes on.
        let deadline = Instant::now() + IO_TIMEOUT;
        while up.progress.recv_timeout(IO_TIMEOUT).expect("bytes relayed") < 6 {
            assert!(Instant::now() < deadline, "[{backend}] relayed too little");
        }
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(s);
        let (got, end) = up.reports.recv_timeout(IO_TIMEOUT).expect("a report");
        assert_eq!(got, b"<msg/>", "[{backend}]");
        assert_eq!(end, Some(io::ErrorKind::ConnectionReset), "[{backend}]");
        stop(server, backend);
    }
}

#[test]
fn a_flooding_client_and_a_stalled_upstream_do_not_grow_the_gateway() {
    let up = upstream(Upstream::Stall);
    for backend in backends() {
        // The stalled relay never finishes on its own: the drain at stop
        // closes it.
        let (server, addr) = gateway(backend, up, &["--drain-timeout", "500ms"]);
        let pid = server.pid();
        let mut s = connect(addr);
        s.write_all(b"<flood/>").expect("send");
        thread::sleep(Duration::from_millis(100));
        let before = rss_kb(pid);
        let chunk = vec![0x5au8; 64 * 1024];
        let written = flood_until_blocked(&mut s, &chunk);
        assert!(written < FLOOD_LIMIT, "[{backend}] the gateway took it all");
        let after = rss_kb(pid);
        assert!(
            after < before + 8 * 1024,
            "[{backend}] RSS {before} kB -> {after} kB after {written} bytes in"
        );
        drop(s);
        stop(server, backend);
    }
}

#[test]
fn an_upstream_that_is_down_closes_the_client_and_is_counted() {
    let down = closed_port();
    for backend in backends() {
        let (server, addr) = gateway(backend, down, &[]);
        for _ in 0..3 {
            let mut s = connect(addr);
            s.write_all(b"<msg/>").expect("send");
            let _ = read_to_close(&mut s, 1024);
        }
        assert!(
            server.wait_for_log(&format!("upstream {down} failed"), IO_TIMEOUT),
            "[{backend}] the log names the upstream:\n{}",
            server.log_text()
        );
        let totals = stop(server, backend);
        assert_eq!(totals.upstream_failed, 3, "[{backend}]");
        assert_eq!(
            totals.ended_total(),
            totals.accepted,
            "[{backend}] every connection counted once"
        );
    }
}

#[test]
fn a_server_that_speaks_first_gets_through_after_the_gateway_wait() {
    let up = upstream(Upstream::Banner);
    for backend in backends() {
        let (server, addr) = gateway(backend, up, &["--gateway-wait", "200ms"]);
        let mut s = connect(addr);
        let mut banner = vec![0u8; BANNER.len()];
        s.read_exact(&mut banner).expect("the banner");
        assert_eq!(banner, BANNER, "[{backend}]");
        s.write_all(b"reply").expect("send");
        s.shutdown(Shutdown::Write).expect("half-close");
        let got = read_to_close(&mut s, 1024).expect("echo");
        assert_eq!(got, b"reply", "[{backend}]");
        stop(server, backend);
    }
}

#[test]
fn proxy_v2_toward_the_upstream_names_the_client() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = gateway(backend, up, &["--upstream-proxy-protocol", "v2"]);
        let mut s = connect_from("127.0.0.9", addr);
        s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let me = s.local_addr().expect("local");
        s.write_all(b"<msg/>").expect("send");
        s.shutdown(Shutdown::Write).expect("half-close");
        // The echo server sends back the header it got, then the bytes.
        let got = read_to_close(&mut s, 1024).expect("echo");
        let mut reader = HeaderReader::default();
        match reader.feed(&got) {
            Step::Header {
                client, consumed, ..
            } => {
                assert_eq!(client, Some(me), "[{backend}]");
                assert_eq!(&got[consumed..], b"<msg/>", "[{backend}]");
            }
            other => panic!("[{backend}] not a PROXY header: {other:?} in {got:?}"),
        }
        stop(server, backend);
    }
}

#[test]
fn behind_a_balancer_the_players_address_goes_on_upstream() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = gateway(
            backend,
            up,
            &[
                "--proxy-protocol",
                "--proxy-from",
                "127.0.0.1/32",
                "--upstream-proxy-protocol",
                "v1",
            ],
        );
        let incoming = b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 9339\r\n";
        // A header, then the policy request: the policy.
        let mut request = incoming.to_vec();
        request.extend_from_slice(REQUEST);
        for cut in [1, incoming.len(), incoming.len() + 3] {
            let (a, b) = request.split_at(cut);
            assert_served(
                addr,
                &[a, b],
                &default_reply(),
                &format!("[{backend}] cut {cut}"),
            );
        }
        // A header, then a game: the game server hears of 192.0.2.9:5555.
        let mut game = incoming.to_vec();
        game.extend_from_slice(b"<msg/>");
        let got = round_trip(addr, &game);
        match HeaderReader::default().feed(&got) {
            Step::Header { client, consumed } => {
                assert_eq!(client, Some("192.0.2.9:5555".parse().expect("addr")));
                assert_eq!(&got[consumed..], b"<msg/>", "[{backend}]");
            }
            other => panic!("[{backend}] not a PROXY header: {other:?} in {got:?}"),
        }
        // A peer outside --proxy-from: closed, nothing relayed.
        let stranger = connect_from("127.0.0.2", addr);
        assert_closed_without_reply(stranger, backend);
        let totals = stop(server, backend);
        assert_eq!(totals.proxy_invalid, 1, "[{backend}]");
        assert_eq!(totals.relayed, 1, "[{backend}]");
        assert_eq!(totals.served, 3, "[{backend}]");
    }
}

#[test]
fn max_per_ip_counts_gateway_connections() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = gateway(backend, up, &["--max-per-ip", "1"]);
        let mut first = connect_from("127.0.0.3", addr);
        first.write_all(b"<msg/>").expect("send");
        let mut echo = [0u8; 6];
        first.read_exact(&mut echo).expect("relayed");
        let second = connect_from("127.0.0.3", addr);
        assert_closed_without_reply(second, backend);
        // Another address is not held back.
        assert_eq!(round_trip(addr, b"<other/>"), b"<other/>", "[{backend}]");
        drop(first);
        let totals = stop(server, backend);
        assert_eq!(totals.over_ip_limit, 1, "[{backend}]");
    }
}

#[test]
fn sighup_reloads_the_policy_on_the_game_port_too() {
    let up = upstream(Upstream::Echo);
    let policy = |domain: &str| {
        format!(
            "<?xml version=\"1.0\"?>\n<cross-domain-policy>\n  \
             <allow-access-from domain=\"{domain}\" to-ports=\"9339\" />\n\
             </cross-domain-policy>\n"
        )
        .into_bytes()
    };
    let with_nul = |mut v: Vec<u8>| {
        v.push(0);
        v
    };
    for backend in backends() {
        let file = TempFile::new(&format!("gateway-{backend}.xml"), &policy("a.example.com"));
        let (server, addr) = gateway(backend, up, &["--policy", file.path()]);
        assert_served(
            addr,
            &[REQUEST],
            &with_nul(policy("a.example.com")),
            backend,
        );
        file.write(&policy("b.example.com"));
        server.signal(libc::SIGHUP);
        assert!(
            served_within(addr, &with_nul(policy("b.example.com")), IO_TIMEOUT),
            "[{backend}] the game port still serves the old policy:\n{}",
            server.log_text()
        );
        stop(server, backend);
    }
}

#[test]
fn a_thousand_relays_at_once_and_no_descriptor_left() {
    const RELAYS: usize = 1000;
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = gateway(backend, up, &[]);
        let pid = server.pid();
        // Settle: one relay, so everything lazily opened is open.
        assert_eq!(round_trip(addr, b"<m/>"), b"<m/>");
        let idle = settled_fds(pid);
        let mut clients: Vec<TcpStream> = (0..RELAYS).map(|_| connect(addr)).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(format!("<msg n='{i}'/>").as_bytes())
                .expect("send");
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let want = format!("<msg n='{i}'/>");
            let mut buf = vec![0u8; want.len()];
            c.read_exact(&mut buf).expect("echo");
            assert_eq!(buf, want.as_bytes(), "[{backend}] relay {i}");
        }
        drop(clients);
        wait_for_fds(pid, idle, &format!("[{backend}] after {RELAYS} relays"));
        let totals = stop(server, backend);
        assert_eq!(totals.relayed, RELAYS as u64 + 1, "[{backend}]");
    }
}

#[test]
fn relays_and_their_bytes_show_in_the_metrics() {
    let up = upstream(Upstream::Echo);
    for backend in backends() {
        let (server, addr) = gateway(backend, up, &["--metrics", "127.0.0.1:0"]);
        let metrics = server
            .log_text()
            .lines()
            .find_map(|l| {
                let rest = &l[l.find("metrics at http://")? + "metrics at http://".len()..];
                rest.strip_suffix("/metrics")?.parse::<SocketAddr>().ok()
            })
            .unwrap_or_else(|| panic!("[{backend}] no metrics line:\n{}", server.log_text()));
        let data = vec![7u8; 1000];
        assert_eq!(round_trip(addr, &data), data, "[{backend}]");
        let relayed = |body: &str| -> u64 {
            (0..4)
                .filter_map(|w| scrape::ended(body, flashpolicy_proto::serve::End::Relayed, w))
                .sum()
        };
        // The relay is counted once the gateway has seen both closes.
        let body = scrape::scrape_until(metrics, backend, |body| relayed(body) == 1);
        assert_eq!(
            scrape::value(&body, r#"flashpolicyd_relayed_bytes_total{direction="up"}"#),
            Some(1000),
            "[{backend}]\n{body}"
        );
        assert_eq!(
            scrape::value(
                &body,
                r#"flashpolicyd_relayed_bytes_total{direction="down"}"#
            ),
            Some(1000),
            "[{backend}]\n{body}"
        );
        if let Some(promtool) = scrape::promtool() {
            scrape::promtool_check(&promtool, &body, backend);
        }
        stop(server, backend);
    }
}

#[test]
fn a_game_port_above_1024_warns_about_grants_below_1024() {
    let (status, log) = run_to_exit(
        &[
            "--check",
            "--listen",
            "127.0.0.1:843",
            "--allow",
            "*:80",
            "--gateway",
            "127.0.0.1:9339=127.0.0.1:9340",
        ],
        PROCESS_TIMEOUT,
    );
    assert!(status.expect("exits").success(), "{log}");
    assert!(
        log.contains("127.0.0.1:9339, a port of 1024 or above"),
        "{log}"
    );
    let (_, without) = run_to_exit(
        &["--check", "--listen", "127.0.0.1:843", "--allow", "*:80"],
        PROCESS_TIMEOUT,
    );
    assert!(!without.contains("a port of 1024 or above"), "{without}");
}

#[test]
fn bad_gateway_options_are_refused_naming_the_option() {
    for (args, needle) in [
        (&["--gateway", "127.0.0.1:9339"][..], "--gateway"),
        (&["--gateway", "127.0.0.1:0=127.0.0.1:0"][..], "--gateway"),
        (
            &[
                "--gateway",
                "127.0.0.1:0=127.0.0.1:9",
                "--gateway-wait",
                "10s",
            ][..],
            "--gateway-wait",
        ),
        (
            &["--upstream-proxy-protocol", "v2"][..],
            "--upstream-proxy-protocol",
        ),
        (
            &[
                "--gateway",
                "127.0.0.1:0=127.0.0.1:9",
                "--upstream-proxy-protocol",
                "v3",
            ][..],
            "--upstream-proxy-protocol",
        ),
    ] {
        let mut full = vec!["--listen", "127.0.0.1:0"];
        full.extend_from_slice(args);
        let (status, log) = run_to_exit(&full, PROCESS_TIMEOUT);
        let status = status.expect("exits");
        assert!(!status.success(), "{args:?}: {log}");
        assert!(log.contains(needle), "{args:?}: {log}");
    }
}
