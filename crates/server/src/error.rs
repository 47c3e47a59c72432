//! Why `flashpolicyd` did not start, or stopped with a failure: one
//! [`StartError`], whose variant decides the exit status.

use std::fmt;
use std::io;

use crate::activation::ActivationError;
use crate::config::ConfigError;
use crate::engine::uring::UringUnavailable;
use crate::listener::BindError;
use crate::privileges::PrivilegeError;

/// Why the server could not start, or did not end cleanly.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The command line or the policy cannot be served; nothing was bound.
    Config(ConfigError),
    /// `--backend uring` on a kernel that refuses io_uring.
    Engine(UringUnavailable),
    /// A listening socket could not be opened.
    Bind(BindError),
    /// The sockets passed by the service manager cannot be served.
    Activation(ActivationError),
    /// `--user` names no such user or group, or the switch failed.
    Privileges(PrivilegeError),
    /// `--metrics ADDR` could not be bound.
    Metrics {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        error: io::Error,
    },
    /// Something the server needs before any worker runs (the signal
    /// handlers, an eventfd, a thread) could not be made.
    Io {
        /// What could not be made, e.g. `cannot create a worker's eventfd`.
        what: &'static str,
        /// The OS error.
        error: io::Error,
    },
    /// Workers failed (returned an error or panicked; each was logged) and
    /// the others were stopped.
    WorkerFailed {
        /// How many failed.
        count: usize,
    },
}

impl StartError {
    /// The process exit status for this error: 2 for a usage or
    /// configuration error (nothing was served), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 2,
            _ => 1,
        }
    }

    /// An [`StartError::Io`] for `what`, for `map_err`.
    pub(crate) fn io(what: &'static str) -> impl Fn(io::Error) -> StartError + Copy {
        move |error| StartError::Io { what, error }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => fmt::Display::fmt(e, f),
            StartError::Engine(why) => write!(
                f,
                "--backend uring: io_uring is not available: {why} (use --backend epoll or auto)"
            ),
            StartError::Bind(e) => fmt::Display::fmt(e, f),
            StartError::Activation(e) => fmt::Display::fmt(e, f),
            StartError::Privileges(e) => fmt::Display::fmt(e, f),
            StartError::Metrics { addr, error } => {
                write!(f, "--metrics {addr}: cannot listen: {error}")
            }
            StartError::Io { what, error } => write!(f, "{what}: {error}"),
            StartError::WorkerFailed { count: 1 } => f.write_str("a worker failed"),
            StartError::WorkerFailed { count } => write!(f, "{count} workers failed"),
        }
    }
}

// Each variant's message already contains its inner error's, so none is
// also given as the source (a reporter walking the chain would repeat it).
impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> StartError {
        StartError::Config(e)
    }
}

impl From<UringUnavailable> for StartError {
    fn from(e: UringUnavailable) -> StartError {
        StartError::Engine(e)
    }
}

impl From<ActivationError> for StartError {
    fn from(e: ActivationError) -> StartError {
        StartError::Activation(e)
    }
}

impl From<PrivilegeError> for StartError {
    fn from(e: PrivilegeError) -> StartError {
        StartError::Privileges(e)
    }
}

impl From<BindError> for StartError {
    fn from(e: BindError) -> StartError {
        StartError::Bind(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_exit_codes() {
        let engine = StartError::Engine(UringUnavailable::DisabledBySysctl);
        assert_eq!(
            engine.to_string(),
            "--backend uring: io_uring is not available: disabled by the \
             kernel.io_uring_disabled sysctl (2) (use --backend epoll or auto)"
        );
        assert_eq!(engine.exit_code(), 1);
        let config = StartError::Config(ConfigError::ZeroMaxConnections);
        assert_eq!(config.to_string(), "--max-connections must be at least 1");
        assert_eq!(config.exit_code(), 2);
        let one = StartError::WorkerFailed { count: 1 };
        assert_eq!(one.to_string(), "a worker failed");
        assert_eq!(
            StartError::WorkerFailed { count: 3 }.to_string(),
            "3 workers failed"
        );
        let io = StartError::io("cannot create a worker's eventfd")(io::Error::from_raw_os_error(
            libc::EMFILE,
        ));
        assert!(
            io.to_string()
                .starts_with("cannot create a worker's eventfd: "),
            "{io}"
        );
        assert_eq!(io.exit_code(), 1);
        let metrics = StartError::Metrics {
            addr: "127.0.0.1:9843".parse().expect("an address"),
            error: io::Error::from_raw_os_error(libc::EADDRINUSE),
        };
        assert!(
            metrics
                .to_string()
                .starts_with("--metrics 127.0.0.1:9843: cannot listen: "),
            "{metrics}"
        );
        assert_eq!(metrics.exit_code(), 1);
    }
}
