//! What a kernel error number means for a connection or for accepting.
//!
//! Both engines get errno values, from `accept(2)` and `read`/`send` (epoll)
//! or in completions (io_uring); both classify them here, so they cannot
//! drift apart on how they treat the same kernel answer.

use super::session::IoFailure;

/// What an error from `accept` (or a multishot accept's last completion)
/// means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptErrorKind {
    /// Nothing (more) is queued.
    Empty,
    /// This one connection failed (a client that gave up, or a network
    /// error already pending on it); try the next.
    Retry,
    /// Out of descriptors or memory: shed one queued connection and back
    /// off.
    OutOfResources,
    /// The listener itself is unusable (`EINVAL`, `EBADF`, `ENOTSOCK`):
    /// trying again would fail again at once.
    Refused,
    /// Anything else: back off rather than spin.
    Other,
}

impl AcceptErrorKind {
    /// The kinds that are errors: all but [`AcceptErrorKind::Empty`]
    /// (`EAGAIN`, the normal end of every accept loop).
    pub const ERRORS: [AcceptErrorKind; 4] = [
        AcceptErrorKind::Retry,
        AcceptErrorKind::OutOfResources,
        AcceptErrorKind::Refused,
        AcceptErrorKind::Other,
    ];

    /// The kind's name in metrics and logs: `empty`, `retry`,
    /// `out_of_resources`, `refused`, `other`.
    pub const fn name(self) -> &'static str {
        match self {
            AcceptErrorKind::Empty => "empty",
            AcceptErrorKind::Retry => "retry",
            AcceptErrorKind::OutOfResources => "out_of_resources",
            AcceptErrorKind::Refused => "refused",
            AcceptErrorKind::Other => "other",
        }
    }
}

/// Classifies an error number from `accept`.
pub fn classify_accept_errno(errno: i32) -> AcceptErrorKind {
    match errno {
        libc::EAGAIN => AcceptErrorKind::Empty,
        libc::EINTR => AcceptErrorKind::Retry,
        // accept(2): errors already pending on the new socket, to be
        // treated like EAGAIN by retrying; ECONNABORTED is a client that
        // gave up.
        libc::ECONNABORTED
        | libc::EPROTO
        | libc::EPERM
        | libc::ENETDOWN
        | libc::ENOPROTOOPT
        | libc::EHOSTDOWN
        | libc::ENONET
        | libc::EHOSTUNREACH
        | libc::EOPNOTSUPP
        | libc::ENETUNREACH
        | libc::ETIMEDOUT => AcceptErrorKind::Retry,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
            AcceptErrorKind::OutOfResources
        }
        libc::EINVAL | libc::EBADF | libc::ENOTSOCK => AcceptErrorKind::Refused,
        _ => AcceptErrorKind::Other,
    }
}

/// Classifies an error number from a read or send on a connection.
pub fn classify_io_errno(errno: i32) -> IoFailure {
    match errno {
        libc::EINTR | libc::EAGAIN | libc::ENOBUFS | libc::ENOMEM => IoFailure::Transient,
        _ => IoFailure::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors() {
        assert_eq!(classify_accept_errno(libc::EAGAIN), AcceptErrorKind::Empty);
        for e in [
            libc::EINTR,
            libc::ECONNABORTED,
            libc::EPROTO,
            libc::ETIMEDOUT,
        ] {
            assert_eq!(classify_accept_errno(e), AcceptErrorKind::Retry, "{e}");
        }
        for e in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(
                classify_accept_errno(e),
                AcceptErrorKind::OutOfResources,
                "{e}"
            );
        }
        for e in [libc::EINVAL, libc::EBADF, libc::ENOTSOCK] {
            assert_eq!(classify_accept_errno(e), AcceptErrorKind::Refused, "{e}");
        }
        assert_eq!(classify_accept_errno(libc::EIO), AcceptErrorKind::Other);
    }

    #[test]
    fn io_errors() {
        for e in [libc::EINTR, libc::EAGAIN, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(classify_io_errno(e), IoFailure::Transient, "{e}");
        }
        for e in [libc::ECONNRESET, libc::EPIPE, libc::EIO] {
            assert_eq!(classify_io_errno(e), IoFailure::Fatal, "{e}");
        }
    }
}
