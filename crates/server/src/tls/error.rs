//! Why a certificate and key cannot be served: [`TlsError`], naming the
//! file and what is wrong with it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why `--tls-cert` / `--tls-key` cannot be served. Each message starts
/// with the option and the file it is about.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The file cannot be opened or read.
    Unreadable {
        /// `--tls-cert` or `--tls-key`.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The file is longer than [`super::MAX_PEM_FILE_LEN`]: not a PEM
    /// certificate or key.
    TooLarge {
        /// `--tls-cert` or `--tls-key`.
        option: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid PEM (a section without its END line, bad
    /// base64, ...).
    Pem {
        /// `--tls-cert` or `--tls-key`.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser found.
        error: rustls::pki_types::pem::Error,
    },
    /// The `--tls-cert` file holds no `CERTIFICATE` section.
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The `--tls-key` file holds no private key section (`PRIVATE KEY`,
    /// `RSA PRIVATE KEY` or `EC PRIVATE KEY`).
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not one rustls can sign with (an unsupported
    /// algorithm or curve, or damaged key bytes).
    UnusableKey {
        /// The key file.
        path: PathBuf,
        /// rustls's reason.
        error: rustls::Error,
    },
    /// The private key is not the key of the first certificate in the
    /// chain.
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the certificate and key for another reason (e.g. the
    /// first certificate cannot be parsed).
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        error: rustls::Error,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Unreadable {
                option,
                path,
                error,
            } => write!(f, "{option} {}: cannot read: {error}", path.display()),
            TlsError::TooLarge { option, path } => write!(
                f,
                "{option} {}: too large for a PEM file (the most is {} bytes)",
                path.display(),
                super::MAX_PEM_FILE_LEN
            ),
            TlsError::Pem {
                option,
                path,
                error,
            } => write!(f, "{option} {}: not valid PEM: {error}", path.display()),
            TlsError::NoCertificate { path } => write!(
                f,
                "--tls-cert {}: no certificate in it (expected a PEM \
                 \"-----BEGIN CERTIFICATE-----\" section)",
                path.display()
            ),
            TlsError::NoPrivateKey { path } => write!(
                f,
                "--tls-key {}: no private key in it (expected a PEM \"PRIVATE KEY\", \
                 \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" section)",
                path.display()
            ),
            TlsError::UnusableKey { path, error } => write!(
                f,
                "--tls-key {}: the private key cannot be used: {error}",
                path.display()
            ),
            TlsError::KeyMismatch { cert, key } => write!(
                f,
                "--tls-key {}: the private key does not match the certificate in --tls-cert {}",
                key.display(),
                cert.display()
            ),
            TlsError::Rejected { cert, key, error } => write!(
                f,
                "--tls-cert {} with --tls-key {}: refused: {error}",
                cert.display(),
                key.display()
            ),
        }
    }
}

// The message names the file and includes the underlying error, so that
// error is not also the source (as in the rest of the server).
impl std::error::Error for TlsError {}
