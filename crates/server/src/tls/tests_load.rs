//! `load()`: what it makes of good files, and which error (naming which
//! file) for each kind of bad one.

use std::path::Path;

use super::test_files::TempDir;
use super::test_pki::TestCa;
use super::{load, TlsError, ALPN_HTTP_1_1, MAX_PEM_FILE_LEN};

fn load_err(cert: &Path, key: &Path) -> TlsError {
    match load(cert, key) {
        Ok(_) => panic!("{} / {} loaded", cert.display(), key.display()),
        Err(e) => e,
    }
}

#[test]
fn a_chain_and_its_key_load_with_modern_defaults() {
    let dir = TempDir::new();
    let ca = TestCa::new("load CA");
    let leaf = ca.leaf(&["localhost"]);
    // The chain: the leaf, then the CA (as an intermediate would be).
    let cert = dir.write("cert.pem", format!("{}{}", leaf.cert_pem, ca.cert_pem()));
    let key = dir.write("key.pem", &leaf.key_pem);
    let config = load(&cert, &key).expect("loads");
    assert_eq!(config.alpn_protocols, vec![ALPN_HTTP_1_1.to_vec()]);
}

#[test]
fn one_file_may_hold_both() {
    let dir = TempDir::new();
    let leaf = TestCa::new("combined CA").leaf(&["localhost"]);
    let both = dir.write("both.pem", format!("{}{}", leaf.key_pem, leaf.cert_pem));
    load(&both, &both).expect("a combined file loads");
}

#[test]
fn a_missing_file_is_unreadable_and_named() {
    let dir = TempDir::new();
    let leaf = TestCa::new("missing CA").leaf(&["localhost"]);
    let key = dir.write("key.pem", &leaf.key_pem);
    let missing = dir.path("nope.pem");
    let e = load_err(&missing, &key);
    assert!(
        matches!(
            e,
            TlsError::Unreadable {
                option: "--tls-cert",
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.starts_with("--tls-cert "), "{text}");
    assert!(text.contains("nope.pem"), "{text}");
    assert!(text.contains("cannot read"), "{text}");

    let cert = dir.write("cert.pem", &leaf.cert_pem);
    let e = load_err(&cert, dir.dir());
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
}

#[test]
fn a_file_without_a_certificate_says_so() {
    let dir = TempDir::new();
    let leaf = TestCa::new("no-cert CA").leaf(&["localhost"]);
    let key = dir.write("key.pem", &leaf.key_pem);
    for (name, contents) in [
        ("empty.pem", String::new()),
        ("key-only.pem", leaf.key_pem.clone()),
    ] {
        let cert = dir.write(name, &contents);
        let e = load_err(&cert, &key);
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{name}: {e:?}");
        let text = e.to_string();
        assert!(
            text.contains(name) && text.contains("no certificate"),
            "{text}"
        );
    }
}

#[test]
fn a_file_without_a_key_says_so() {
    let dir = TempDir::new();
    let leaf = TestCa::new("no-key CA").leaf(&["localhost"]);
    let cert = dir.write("cert.pem", &leaf.cert_pem);
    let e = load_err(&cert, &cert);
    assert!(matches!(e, TlsError::NoPrivateKey { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with("--tls-key ") && text.contains("no private key"),
        "{text}"
    );
}

#[test]
fn broken_pem_is_named() {
    let dir = TempDir::new();
    let leaf = TestCa::new("pem CA").leaf(&["localhost"]);
    let key = dir.write("key.pem", &leaf.key_pem);
    // The END line cut off.
    let cut = &leaf.cert_pem[..leaf.cert_pem.len() - 30];
    let cert = dir.write("cut.pem", cut);
    let e = load_err(&cert, &key);
    assert!(
        matches!(
            e,
            TlsError::Pem {
                option: "--tls-cert",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("cut.pem: not valid PEM"), "{e}");
}

#[test]
fn a_key_of_another_certificate_does_not_match() {
    let dir = TempDir::new();
    let ca = TestCa::new("mismatch CA");
    let (one, other) = (ca.leaf(&["localhost"]), ca.leaf(&["localhost"]));
    let cert = dir.write("cert.pem", &one.cert_pem);
    let key = dir.write("other-key.pem", &other.key_pem);
    let e = load_err(&cert, &key);
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("other-key.pem")
            && text.contains("cert.pem")
            && text.contains("does not match"),
        "{text}"
    );
}

#[test]
fn key_bytes_that_are_no_key_are_unusable() {
    let dir = TempDir::new();
    let leaf = TestCa::new("unusable CA").leaf(&["localhost"]);
    let cert = dir.write("cert.pem", &leaf.cert_pem);
    // Valid PEM and base64, but not a PKCS#8 key.
    let key = dir.write(
        "junk-key.pem",
        "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQoLDA0ODw==\n-----END PRIVATE KEY-----\n",
    );
    let e = load_err(&cert, &key);
    assert!(matches!(e, TlsError::UnusableKey { .. }), "{e:?}");
    assert!(e.to_string().contains("junk-key.pem"), "{e}");
}

#[test]
fn a_huge_file_is_refused_unread() {
    let dir = TempDir::new();
    let leaf = TestCa::new("huge CA").leaf(&["localhost"]);
    let key = dir.write("key.pem", &leaf.key_pem);
    let len = usize::try_from(MAX_PEM_FILE_LEN).expect("fits") + 1;
    let cert = dir.write("huge.pem", vec![b'A'; len]);
    let e = load_err(&cert, &key);
    assert!(
        matches!(
            e,
            TlsError::TooLarge {
                option: "--tls-cert",
                ..
            }
        ),
        "{e:?}"
    );
}
