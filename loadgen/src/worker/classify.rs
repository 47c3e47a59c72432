//! Which [`ErrorKind`] an OS error is, and the messages a failed
//! connection is reported with.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::stats::ErrorKind;

/// Why a client timed out: no complete reply within its time limit.
pub(super) struct NoPolicyWithin(pub(super) Duration);

impl fmt::Display for NoPolicyWithin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no complete reply within {:?}", self.0)
    }
}

/// A failure to open a connection to an address, with a hint when the
/// generator, not the server, is to blame.
pub(super) struct ConnectError(pub(super) SocketAddr, pub(super) io::Error);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connect to {}: {}", self.0, self.1)?;
        match classify_connect(&self.1) {
            ErrorKind::PortsExhausted => f.write_str(
                " (the load generator ran out of local ports: spread connections \
                 with --source 127.0.0.2-127.0.0.254 or lower the load)",
            )?,
            ErrorKind::LocalLimit => f.write_str(
                " (the generator's own descriptor or memory limit, not the server's: \
                 raise ulimit -Hn, lower --connections/--max-inflight, or free memory)",
            )?,
            _ => {}
        }
        Ok(())
    }
}

/// Errors that are the generator's own descriptor or memory limits.
fn is_local_limit(code: i32) -> bool {
    matches!(
        code,
        libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS
    )
}

/// Errors by which the peer ended the connection.
fn is_reset(code: i32) -> bool {
    matches!(code, libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED)
}

/// Classifies a failure to open a connection (or to send on one that was
/// still being opened).
pub fn classify_connect(e: &io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => ErrorKind::PortsExhausted,
        Some(c) if is_local_limit(c) => ErrorKind::LocalLimit,
        Some(c) if is_reset(c) => ErrorKind::Reset,
        _ => ErrorKind::Connect,
    }
}

/// Classifies a failure on an open connection. Only the peer's reset is a
/// `reset`; what is neither a reset, a refusal nor a local limit is `io`.
pub fn classify_io(e: &io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(c) if is_reset(c) => ErrorKind::Reset,
        Some(libc::ETIMEDOUT) => ErrorKind::Timeout,
        Some(libc::ECONNREFUSED | libc::ENETUNREACH | libc::EHOSTUNREACH) => ErrorKind::Connect,
        Some(c) if is_local_limit(c) => ErrorKind::LocalLimit,
        _ => ErrorKind::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(classify_connect(&e(libc::ECONNREFUSED)), ErrorKind::Connect);
        assert_eq!(classify_connect(&e(libc::ENETUNREACH)), ErrorKind::Connect);
        assert_eq!(
            classify_connect(&e(libc::EADDRNOTAVAIL)),
            ErrorKind::PortsExhausted
        );
        assert_eq!(
            classify_connect(&e(libc::EADDRINUSE)),
            ErrorKind::PortsExhausted
        );
        // Descriptor and memory limits are the generator's own, not ports.
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            assert_eq!(classify_connect(&e(code)), ErrorKind::LocalLimit, "{code}");
            assert_eq!(classify_io(&e(code)), ErrorKind::LocalLimit, "{code}");
        }
        assert_eq!(classify_connect(&e(libc::ECONNRESET)), ErrorKind::Reset);
        assert_eq!(classify_connect(&e(libc::EPIPE)), ErrorKind::Reset);
        assert_eq!(classify_io(&e(libc::ECONNRESET)), ErrorKind::Reset);
        assert_eq!(classify_io(&e(libc::EPIPE)), ErrorKind::Reset);
        assert_eq!(classify_io(&e(libc::ECONNABORTED)), ErrorKind::Reset);
        assert_eq!(classify_io(&e(libc::ETIMEDOUT)), ErrorKind::Timeout);
        // Anything else is not blamed on the server as a reset.
        for code in [libc::EIO, libc::EBADF, libc::EINVAL, libc::EFAULT] {
            assert_eq!(classify_io(&e(code)), ErrorKind::Io, "{code}");
        }
        // The message names the generator as the culprit.
        let msg = ConnectError(
            "127.0.0.1:843".parse().expect("addr"),
            e(libc::EADDRNOTAVAIL),
        )
        .to_string();
        assert!(msg.contains("load generator ran out"), "{msg}");
        let msg = ConnectError("127.0.0.1:843".parse().expect("addr"), e(libc::EMFILE)).to_string();
        assert!(msg.contains("generator's own"), "{msg}");
        assert!(!msg.contains("ports"), "{msg}");
    }
}
