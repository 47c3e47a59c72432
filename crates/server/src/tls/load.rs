//! `--tls-cert FILE --tls-key FILE` read into a [`rustls::ServerConfig`].

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{InconsistentKeys, ServerConfig};

use super::TlsError;

/// The longest certificate or key file read: a chain of a few certificates
/// is a few kilobytes; anything near this is not a PEM file.
pub const MAX_PEM_FILE_LEN: u64 = 1024 * 1024;

/// The one application protocol offered: a WebSocket upgrade is HTTP/1.1,
/// and a browser that offers `h2` too must not pick it here.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Reads the PEM certificate chain in `cert` (the server's certificate
/// first, then its intermediates) and the PEM private key in `key` (PKCS#8,
/// PKCS#1 or SEC1; they may be the same file), and makes the server config:
/// TLS 1.3 and 1.2, rustls's default cipher suites (ring), no client
/// certificates, ALPN `http/1.1`.
///
/// Fails, naming the file, when a file cannot be read or is not PEM, holds
/// no certificate or no key, the key cannot be used, or the key does not
/// belong to the first certificate.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read_pem_file("--tls-cert", cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            option: "--tls-cert",
            path: cert.to_path_buf(),
            error,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }

    let key_pem = read_pem_file("--tls-key", key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: key.to_path_buf(),
        },
        error => TlsError::Pem {
            option: "--tls-key",
            path: key.to_path_buf(),
            error,
        },
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = certified_key(&provider, chain, key_der, cert, key)?;
    let rejected = |error| TlsError::Rejected {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        error,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(rejected)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// The chain with its signing key, once the key is known to be usable and
/// to be the first certificate's.
fn certified_key(
    provider: &CryptoProvider,
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, TlsError> {
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|error| TlsError::UnusableKey {
            path: key.to_path_buf(),
            error,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // A key that cannot tell its public half is taken, as rustls does.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            })
        }
        Err(error) => Err(TlsError::Rejected {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            error,
        }),
    }
}

/// The whole file, at most [`MAX_PEM_FILE_LEN`] bytes.
fn read_pem_file(option: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let unreadable = |error| TlsError::Unreadable {
        option,
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_PEM_FILE_LEN {
        return Err(TlsError::TooLarge {
            option,
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}
