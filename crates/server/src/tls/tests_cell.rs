//! `TlsCell::reload` and `TlsAcceptor`: a new certificate serves the next
//! handshake; a broken one leaves the old in force.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use super::test_files::TempDir;
use super::test_pki::{Leaf, TestCa};
use super::test_pump::Pair;
use super::{TlsAcceptor, TlsCell, TlsError, ALPN_HTTP_1_1};

struct Files {
    dir: TempDir,
    ca: TestCa,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: TempDir::new(),
            ca: TestCa::new("reload CA"),
        }
    }

    fn install(&self, leaf: &Leaf) {
        self.dir.write("cert.pem", &leaf.cert_pem);
        self.dir.write("key.pem", &leaf.key_pem);
    }

    fn cell(&self) -> Arc<TlsCell> {
        let cell = TlsCell::load(self.dir.path("cert.pem"), self.dir.path("key.pem"))
            .expect("the cell loads");
        Arc::new(cell)
    }

    /// The certificate a fresh client is shown by a connection accepted
    /// now through `acceptor`.
    fn served(&self, acceptor: &mut TlsAcceptor) -> CertificateDer<'static> {
        let client = self.ca.client_config(&[ALPN_HTTP_1_1]);
        let mut p = Pair::new(Arc::clone(acceptor.config()), client);
        p.pump_until("handshake", Pair::handshake_done);
        let certs = p.client().peer_certificates().expect("a certificate");
        certs[0].clone()
    }
}

#[test]
fn a_new_certificate_serves_the_next_handshake() {
    let files = Files::new();
    let (first, second) = (files.ca.leaf(&["localhost"]), files.ca.leaf(&["localhost"]));
    files.install(&first);
    let cell = files.cell();
    let mut acceptor = TlsAcceptor::new(Arc::clone(&cell));
    assert_eq!(files.served(&mut acceptor), first.der);
    assert_eq!(cell.generation(), 0);

    // A session that is open across the reload keeps going.
    let client = files.ca.client_config(&[ALPN_HTTP_1_1]);
    let mut open = Pair::new(Arc::clone(acceptor.config()), client);
    open.pump_until("handshake", Pair::handshake_done);

    files.install(&second);
    cell.reload().expect("the new files load");
    assert_eq!(cell.generation(), 1);
    assert_eq!(files.served(&mut acceptor), second.der);

    open.echo = true;
    open.client_outbox = b"still here".to_vec();
    open.pump_until("echo", |p| p.client_got == b"still here");
}

#[test]
fn a_broken_file_keeps_the_old_certificate() {
    let files = Files::new();
    let first = files.ca.leaf(&["localhost"]);
    files.install(&first);
    let cell = files.cell();
    let mut acceptor = TlsAcceptor::new(Arc::clone(&cell));
    let before = cell.current();

    // Not a certificate at all.
    files.dir.write("cert.pem", "not a certificate\n");
    let e = cell.reload().expect_err("a broken certificate file");
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
    assert!(e.to_string().contains("cert.pem"), "{e}");

    // Half a rotation: a new certificate beside the old key.
    let other = files.ca.leaf(&["localhost"]);
    files.dir.write("cert.pem", &other.cert_pem);
    let e = cell.reload().expect_err("a certificate without its key");
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");

    // The key gone.
    std::fs::remove_file(files.dir.path("key.pem")).expect("remove the key");
    let e = cell.reload().expect_err("a missing key");
    assert!(
        matches!(
            e,
            TlsError::Unreadable {
                option: "--tls-key",
                ..
            }
        ),
        "{e:?}"
    );

    assert_eq!(cell.generation(), 0);
    assert!(
        Arc::ptr_eq(&cell.current(), &before),
        "the old config stays"
    );
    assert_eq!(files.served(&mut acceptor), first.der);
}

#[test]
fn the_acceptor_starts_sessions_with_the_config_in_force() {
    let files = Files::new();
    files.install(&files.ca.leaf(&["localhost"]));
    let cell = files.cell();
    let mut acceptor = TlsAcceptor::new(Arc::clone(&cell));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let _client =
        std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (tcp, _) = listener.accept().expect("accept");
    tcp.set_nonblocking(true).expect("non-blocking");
    let stream = acceptor
        .accept(mio::net::TcpStream::from_std(tcp))
        .expect("a session");
    assert!(stream.is_handshaking());
    assert!(!stream.wants_write());
}
