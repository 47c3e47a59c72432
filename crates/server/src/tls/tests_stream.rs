//! `TlsStream` against a real rustls client over loopback: handshake, data
//! both ways (1 MiB through `WouldBlock`), the ways a session ends, and
//! clients that send garbage or stop half-way.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ProtocolVersion, ServerConfig};

use super::test_files::TempDir;
use super::test_pki::TestCa;
use super::test_pump::{pattern, Pair};
use super::{load, ALPN_HTTP_1_1};

const MIB: usize = 1024 * 1024;

/// How long a stalled client is watched.
const STALL: Duration = Duration::from_millis(200);

struct Setup {
    _dir: TempDir,
    ca: TestCa,
    server: Arc<ServerConfig>,
}

fn setup() -> Setup {
    let dir = TempDir::new();
    let ca = TestCa::new("stream CA");
    let leaf = ca.leaf(&["localhost"]);
    let cert = dir.write("cert.pem", &leaf.cert_pem);
    let key = dir.write("key.pem", &leaf.key_pem);
    let server = load(&cert, &key).expect("test certificate loads");
    Setup {
        _dir: dir,
        ca,
        server,
    }
}

/// A pair whose client offers `h2` and `http/1.1`, as browsers do.
fn pair(s: &Setup) -> Pair {
    let client = s.ca.client_config(&[b"h2", ALPN_HTTP_1_1]);
    Pair::new(Arc::clone(&s.server), client)
}

/// [`pair`] with small socket buffers.
fn small_pair(s: &Setup) -> Pair {
    let client = s.ca.client_config(&[b"h2", ALPN_HTTP_1_1]);
    Pair::new_small(Arc::clone(&s.server), client)
}

fn handshaken(mut p: Pair) -> Pair {
    p.pump_until("handshake", Pair::handshake_done);
    p
}

#[test]
fn the_handshake_picks_http_1_1_and_reads_the_server_name() {
    let s = setup();
    let mut p = handshaken(pair(&s));
    assert_eq!(p.server.session().alpn_protocol(), Some(ALPN_HTTP_1_1));
    assert_eq!(p.client().alpn_protocol(), Some(ALPN_HTTP_1_1));
    assert_eq!(p.server.server_name(), Some("localhost"));
    assert!(p.server_end.is_none() && p.server_got.is_empty());
}

#[test]
fn tls_1_2_and_1_3_are_both_served() {
    let s = setup();
    for (version, expected) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let client = s.ca.client_config_with(&[version], &[ALPN_HTTP_1_1]);
        let mut p = Pair::new(Arc::clone(&s.server), client);
        p.pump_until("handshake", Pair::handshake_done);
        assert_eq!(p.server.session().protocol_version(), Some(expected));
        p.client_outbox = b"ping".to_vec();
        p.echo = true;
        p.pump_until("echo", |p| p.client_got == b"ping");
    }
}

#[test]
fn data_goes_both_ways() {
    let s = setup();
    let mut p = handshaken(pair(&s));
    p.echo = true;
    p.client_outbox = b"hello over tls".to_vec();
    p.pump_until("echo", |p| p.client_got == b"hello over tls");
    assert_eq!(p.server_got, b"hello over tls");

    p.echo = false;
    p.server_outbox = b"the server speaks".to_vec();
    p.pump_until("server to client", |p| p.client_got.ends_with(b"speaks"));
    assert_eq!(p.client_got, b"hello over tlsthe server speaks");
}

#[test]
fn what_the_server_writes_during_the_handshake_follows_it() {
    let s = setup();
    let mut p = pair(&s);
    p.server_outbox = b"welcome".to_vec();
    p.pump_until("greeting", |p| p.client_got == b"welcome");
}

#[test]
fn a_mebibyte_to_a_slow_client_goes_through_would_block_and_flush() {
    let s = setup();
    let mut p = handshaken(small_pair(&s));
    // The client reads nothing until the server has been held up.
    p.client_reads = false;
    let data = pattern(MIB);
    p.server_outbox = data.clone();
    p.pump_until("server held up", |p| p.server_blocked_writes > 0);
    assert!(p.server.wants_write() || !p.server_outbox.is_empty());
    assert!(
        p.server_outbox.len() > MIB / 2,
        "the stream took {} bytes past a full socket",
        MIB - p.server_outbox.len()
    );
    p.client_reads = true;
    p.pump_until("1 MiB delivered", |p| p.client_got.len() >= MIB);
    assert!(p.client_got == data, "the 1 MiB arrived changed");
    p.pump_until("all flushed", |p| !p.server.wants_write());
}

#[test]
fn a_mebibyte_echoes_back_whole() {
    let s = setup();
    let mut p = handshaken(small_pair(&s));
    p.echo = true;
    let data = pattern(MIB);
    p.client_outbox = data.clone();
    p.pump_until("1 MiB echoed", |p| p.client_got.len() >= MIB);
    assert!(p.server_got == data, "the server read something else");
    assert!(p.client_got == data, "the echo differs");
}

#[test]
fn close_notify_reads_as_the_end_and_shutdown_write_sends_one() {
    let s = setup();
    let mut p = handshaken(pair(&s));
    p.client_outbox = b"last words".to_vec();
    p.pump_until("data", |p| p.server_got == b"last words");
    p.client().send_close_notify();
    p.pump_until("the end", |p| p.server_end.is_some());
    assert!(matches!(p.server_end, Some(Ok(()))), "{:?}", p.server_end);
    let mut buf = [0u8; 64];
    assert_eq!(p.server.read(&mut buf).expect("still the end"), 0);

    // Our side: close_notify, then FIN; writing afterwards is refused.
    p.server.shutdown_write().expect("shutdown_write");
    p.pump_until("client sees the end", |p| p.client_eof);
    assert_eq!(
        p.client().reader().read(&mut buf).expect("a clean close"),
        0,
        "close_notify arrived before FIN"
    );
    assert!(!p.server.wants_write());
    let e = p.server.write(b"more").expect_err("written after shutdown");
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
}

#[test]
fn tcp_eof_without_close_notify_reads_as_the_end() {
    let s = setup();
    let mut p = handshaken(pair(&s));
    p.client_tcp
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    p.pump_until("the end", |p| p.server_end.is_some());
    assert!(matches!(p.server_end, Some(Ok(()))), "{:?}", p.server_end);
}

fn assert_invalid_data(p: &mut Pair, what: &str) {
    p.pump_until(what, |p| p.server_end.is_some());
    match &p.server_end {
        Some(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}"),
        other => panic!("{what}: {other:?}"),
    }
    // And it stays failed, for reading and writing.
    let mut buf = [0u8; 16];
    let e = p.server.read(&mut buf).expect_err("read after failure");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}");
    let e = p.server.write(b"x").expect_err("write after failure");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}");
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let s = setup();
    let garbage: [&[u8]; 3] = [
        // Plain HTTP on the TLS port.
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        // A handshake record longer than TLS allows.
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3],
        // A handshake record whose message is nonsense.
        &[0x16, 0x03, 0x01, 0x00, 0x04, 0xff, 0x00, 0x00, 0x00],
    ];
    for bytes in garbage {
        let mut p = Pair::raw(Arc::clone(&s.server));
        p.client_tcp.write_all(bytes).expect("raw write");
        assert_invalid_data(&mut p, &format!("{bytes:?}"));
    }
}

#[test]
fn garbage_after_the_handshake_is_an_error() {
    let s = setup();
    let mut p = handshaken(pair(&s));
    // An application-data record that does not decrypt.
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    record.extend(0u8..0x20);
    p.client_tcp.write_all(&record).expect("raw write");
    assert_invalid_data(&mut p, "a forged record");
}

#[test]
fn a_client_that_stops_mid_handshake_only_blocks() {
    let s = setup();
    // A real ClientHello, of which only the first half is sent.
    let mut hello = Vec::new();
    let name = ServerName::try_from("localhost").expect("name");
    let mut client =
        ClientConnection::new(s.ca.client_config(&[ALPN_HTTP_1_1]), name).expect("client");
    client.write_tls(&mut hello).expect("client hello");
    assert!(hello.len() > 10);

    let mut silent = Pair::raw(Arc::clone(&s.server));
    let mut half = Pair::raw(Arc::clone(&s.server));
    half.client_tcp
        .write_all(&hello[..hello.len() / 2])
        .expect("half a hello");
    for p in [&mut silent, &mut half] {
        p.pump_for(STALL);
        assert!(p.server_end.is_none(), "{:?}", p.server_end);
        assert!(p.server_got.is_empty());
        assert!(p.server.is_handshaking());
        assert!(!p.server.wants_write(), "nothing to answer yet");
        let mut buf = [0u8; 16];
        let e = p.server.read(&mut buf).expect_err("nothing to read");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
