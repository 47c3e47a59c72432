//! A throw-away self-signed certificate for 127.0.0.1, made with the
//! `openssl` command into temporary files (removed when dropped). The page
//! is served over https with it and the wss:// bridge presents it; the
//! browser is told to accept it.

use std::process::Command;

use crate::common::TempFile;
use crate::tools::{run_to_success, Tools};

/// A PEM certificate and its unencrypted PEM key.
pub struct Cert {
    pub cert: TempFile,
    pub key: TempFile,
}

impl Cert {
    /// A fresh P-256 certificate for `127.0.0.1`, valid for a day. `tag`
    /// keeps the files of tests in one binary apart.
    pub fn new(tools: &Tools, tag: &str) -> Cert {
        let cert = TempFile::new(&format!("ruffle-{tag}-cert.pem"), b"");
        let key = TempFile::new(&format!("ruffle-{tag}-key.pem"), b"");
        let mut openssl = Command::new(&tools.openssl);
        openssl
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .args(["-keyout", key.path(), "-out", cert.path()]);
        run_to_success(&mut openssl);
        Cert { cert, key }
    }
}
