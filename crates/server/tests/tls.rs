//! `--tls-cert`/`--tls-key`: a `wss://` bridge through the real binary,
//! seen by a rustls client; bad files refused before anything is served,
//! naming the file; SIGHUP takes a new certificate for the next handshake
//! and keeps the old one when the new files are broken.

mod common;
#[path = "common/gateway.rs"]
#[allow(dead_code)] // shared with gateway.rs, which uses all of it
mod gw;
#[path = "common/pki.rs"]
mod pki;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use gw::{announced, upstream, Upstream};
use pki::TestCa;
use rustls::pki_types::{CertificateDer, ServerName};

fn start(cert: &TempFile, key: &TempFile, up: SocketAddr) -> (Server, SocketAddr) {
    let spec = format!("127.0.0.1:0={up}");
    let server = Server::builder("epoll")
        .args(&[
            "--websocket",
            &spec,
            "--tls-cert",
            cert.path(),
            "--tls-key",
            key.path(),
        ])
        .start();
    let addr = announced(&server, "websocket on ");
    (server, addr)
}

/// Opens a wss:// bridge, checks one echo, and returns the certificate the
/// server presented.
fn wss_echo(ca: &TestCa, addr: SocketAddr) -> CertificateDer<'static> {
    let config: Arc<rustls::ClientConfig> = ca.client_config(&[b"http/1.1"]);
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(config, name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, connect(addr));
    tls.write_all(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .expect("upgrade");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut b).expect("response");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // One masked binary frame ("ping" under a zero mask), echoed unmasked.
    tls.write_all(&[0x82, 0x84, 0, 0, 0, 0, b'p', b'i', b'n', b'g'])
        .expect("frame");
    let mut echo = [0u8; 6];
    tls.read_exact(&mut echo).expect("echo");
    assert_eq!(echo, [0x82, 4, b'p', b'i', b'n', b'g']);
    tls.conn
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .expect("a certificate")
}

#[test]
fn wss_serves_and_sighup_swaps_the_certificate_or_keeps_it() {
    let ca = TestCa::new("flashpolicy test CA");
    let first = ca.leaf(&["127.0.0.1"]);
    let cert = TempFile::new("tls-reload-cert.pem", first.cert_pem.as_bytes());
    let key = TempFile::new("tls-reload-key.pem", first.key_pem.as_bytes());
    let (mut server, addr) = start(&cert, &key, upstream(Upstream::Echo));
    assert_eq!(wss_echo(&ca, addr), first.der);

    let second = ca.leaf(&["127.0.0.1"]);
    cert.write(second.cert_pem.as_bytes());
    key.write(second.key_pem.as_bytes());
    server.signal(libc::SIGHUP);
    assert!(
        server.wait_for_log("certificate reloaded", PROCESS_TIMEOUT),
        "{}",
        server.log_text()
    );
    assert_eq!(
        wss_echo(&ca, addr),
        second.der,
        "the new certificate serves"
    );

    cert.write(b"not a certificate");
    server.signal(libc::SIGHUP);
    assert!(
        server.wait_for_log("cannot reload the certificate", PROCESS_TIMEOUT),
        "{}",
        server.log_text()
    );
    assert!(
        server.log_text().contains(cert.path()),
        "{}",
        server.log_text()
    );
    assert_eq!(wss_echo(&ca, addr), second.der, "the previous one goes on");
    server.signal(libc::SIGTERM);
    server.expect_exit(0, "tls");
}

#[test]
fn unusable_tls_options_are_refused_before_serving() {
    let ca = TestCa::new("flashpolicy test CA");
    let (a, b) = (ca.leaf(&["127.0.0.1"]), ca.leaf(&["127.0.0.1"]));
    let cert = TempFile::new("tls-bad-cert.pem", a.cert_pem.as_bytes());
    let other_key = TempFile::new("tls-bad-key.pem", b.key_pem.as_bytes());
    let ws = "127.0.0.1:0=127.0.0.1:9";
    let missing = "/nonexistent/flashpolicy-cert.pem";
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec![
                "--websocket",
                ws,
                "--tls-cert",
                missing,
                "--tls-key",
                other_key.path(),
            ],
            missing,
        ),
        (
            vec![
                "--websocket",
                ws,
                "--tls-cert",
                cert.path(),
                "--tls-key",
                other_key.path(),
            ],
            other_key.path(),
        ),
        (
            vec!["--tls-cert", cert.path(), "--tls-key", other_key.path()],
            "only applies with --websocket",
        ),
        (
            vec!["--websocket", ws, "--tls-cert", cert.path()],
            "--tls-key",
        ),
    ];
    for (args, needle) in cases {
        let (status, log) = run_to_exit(&args, PROCESS_TIMEOUT);
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{args:?}: {log}");
        assert!(log.contains(needle), "{args:?}: {log}");
        assert!(!log.contains("websocket on"), "{args:?} served: {log}");
    }
}
