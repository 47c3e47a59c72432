//! Socket activation: the listening sockets a service manager (systemd, or
//! `systemd-socket-activate`) passes as descriptors 3, 4, … with
//! `LISTEN_FDS`, `LISTEN_PID` and optionally `LISTEN_FDNAMES`.
//!
//! [`take`] runs once, first thing in `main` (while the process has one
//! thread, since it unsets the variables so that nothing started later
//! inherits them). Each passed descriptor must be a listening TCP socket;
//! anything else stops the start-up with an error naming the descriptor.
//! Passed sockets replace `--listen` (which is then ignored, with a
//! warning). Every worker gets its own duplicate of each passed socket
//! ([`PassedSockets::per_worker`]): the workers share one accept queue per
//! address, and one worker closing its duplicate at shutdown never closes
//! the socket under the others.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockRef, Type};

use crate::listener::ListenOptions;

/// One socket passed by the service manager.
#[derive(Debug)]
pub struct Passed {
    /// The descriptor number it was passed as (3, 4, …).
    pub fd: RawFd,
    /// Its name from `LISTEN_FDNAMES` (`FileDescriptorName=`), if given.
    pub name: Option<String>,
    /// The address it listens on.
    pub addr: SocketAddr,
    listener: TcpListener,
}

/// Every socket passed by the service manager, in descriptor order.
#[derive(Debug)]
pub struct PassedSockets {
    /// The sockets.
    pub sockets: Vec<Passed>,
}

/// Why the passed sockets cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum ActivationError {
    /// `LISTEN_PID`, `LISTEN_FDS` or `LISTEN_FDNAMES` is malformed, or a
    /// descriptor it announces is not open.
    Environment(io::Error),
    /// A passed descriptor is not a listening TCP socket.
    NotATcpListener {
        /// The descriptor.
        fd: RawFd,
        /// What it is instead.
        why: String,
    },
    /// A passed socket could not be inspected or prepared.
    Socket {
        /// The descriptor.
        fd: RawFd,
        /// The OS error.
        error: io::Error,
    },
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::Environment(e) => {
                write!(f, "socket activation (LISTEN_FDS, LISTEN_PID): {e}")
            }
            ActivationError::NotATcpListener { fd, why } => write!(
                f,
                "socket activation: passed descriptor {fd} is not a listening TCP socket: {why} \
                 (use ListenStream= in the .socket unit)"
            ),
            ActivationError::Socket { fd, error } => {
                write!(f, "socket activation: passed descriptor {fd}: {error}")
            }
        }
    }
}

impl std::error::Error for ActivationError {}

/// Takes the sockets passed to this process, if `LISTEN_PID` is ours and
/// `LISTEN_FDS` is set; unsets `LISTEN_PID`, `LISTEN_FDS` and
/// `LISTEN_FDNAMES` either way. Call it while the process has one thread.
pub fn take() -> Result<Option<PassedSockets>, ActivationError> {
    let names = std::env::var("LISTEN_FDNAMES").ok();
    // Unsets LISTEN_PID and LISTEN_FDS and marks the descriptors
    // close-on-exec; an announced descriptor that is not open is an error.
    let fds = sd_notify::listen_fds().map_err(ActivationError::Environment);
    std::env::remove_var("LISTEN_FDNAMES");
    let fds: Vec<RawFd> = fds?.collect();
    if fds.is_empty() {
        return Ok(None);
    }
    let names: Vec<Option<String>> = match names {
        Some(names) => {
            let names: Vec<Option<String>> = names
                .split(':')
                .map(|n| Some(n.to_string()).filter(|n| !n.is_empty()))
                .collect();
            if names.len() != fds.len() {
                return Err(ActivationError::Environment(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "LISTEN_FDNAMES names {} descriptors, LISTEN_FDS {}",
                        names.len(),
                        fds.len()
                    ),
                )));
            }
            names
        }
        None => vec![None; fds.len()],
    };
    let mut sockets = Vec::with_capacity(fds.len());
    for (fd, name) in fds.into_iter().zip(names) {
        // SAFETY: the service manager passed us descriptors 3..3+LISTEN_FDS
        // for this process (LISTEN_PID is ours), `listen_fds` checked that
        // each is open, and nothing else in the process owns them: this runs
        // once, before anything else opens a file.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let listener = TcpListener::from(owned);
        let addr = validate(fd, &listener)?;
        sockets.push(Passed {
            fd,
            name,
            addr,
            listener,
        });
    }
    Ok(Some(PassedSockets { sockets }))
}

/// Checks that `listener` (descriptor `fd`) is a listening TCP socket, and
/// returns its address.
fn validate(fd: RawFd, listener: &TcpListener) -> Result<SocketAddr, ActivationError> {
    let bad = |why: String| ActivationError::NotATcpListener { fd, why };
    let sock = SockRef::from(listener);
    let kind = match sock.r#type() {
        Ok(kind) => kind,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            return Err(bad("it is not a socket".into()))
        }
        Err(error) => return Err(ActivationError::Socket { fd, error }),
    };
    if kind != Type::STREAM {
        let what = if kind == Type::DGRAM {
            "a datagram (UDP?) socket".to_string()
        } else {
            format!("a socket of type {kind:?}")
        };
        return Err(bad(format!("it is {what}")));
    }
    let socket = |error| ActivationError::Socket { fd, error };
    let domain = sock.domain().map_err(socket)?;
    if domain != Domain::IPV4 && domain != Domain::IPV6 {
        return Err(bad(format!("it is a {domain:?} stream socket, not TCP")));
    }
    if sock.protocol().map_err(socket)? != Some(Protocol::TCP) {
        return Err(bad("its protocol is not TCP".into()));
    }
    if !sock.is_listener().map_err(socket)? {
        return Err(bad("it is not listening (no listen(2) was called)".into()));
    }
    listener.local_addr().map_err(socket)
}

impl PassedSockets {
    /// The addresses, in descriptor order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|s| s.addr).collect()
    }

    /// Makes the sockets non-blocking (and sets `TCP_DEFER_ACCEPT` with
    /// `--defer-accept`; the backlog is the socket unit's `Backlog=`), then
    /// returns `sockets[worker][address]`: each worker gets its own
    /// duplicate of every passed socket, so that they share its accept
    /// queue and none closes it under the others.
    pub fn per_worker(
        self,
        workers: usize,
        opts: ListenOptions,
    ) -> Result<Vec<Vec<TcpListener>>, ActivationError> {
        let mut out: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
        for passed in self.sockets {
            let fd = passed.fd;
            let err = |error| ActivationError::Socket { fd, error };
            // O_NONBLOCK belongs to the open file, so every duplicate has it.
            passed.listener.set_nonblocking(true).map_err(err)?;
            if let Some(secs) = opts.defer_accept_secs {
                crate::listener::set_defer_accept(&SockRef::from(&passed.listener), secs)
                    .map_err(err)?;
            }
            for sockets in out.iter_mut().skip(1) {
                sockets.push(passed.listener.try_clone().map_err(err)?);
            }
            if let Some(first) = out.first_mut() {
                first.push(passed.listener);
            }
        }
        Ok(out)
    }
}

/// How a passed socket is described in the "listening on" line.
impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (passed descriptor {}", self.addr, self.fd)?;
        if let Some(name) = &self.name {
            write!(f, ", {name:?}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_tcp_socket_passes_and_others_are_named() {
        use std::os::fd::AsRawFd;
        let good = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = validate(good.as_raw_fd(), &good).expect("a TCP listener");
        assert_eq!(addr, good.local_addr().expect("addr"));

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let udp = TcpListener::from(OwnedFd::from(udp));
        let e = validate(7, &udp).expect_err("UDP is refused").to_string();
        assert!(e.contains("descriptor 7") && e.contains("datagram"), "{e}");

        let unbound = socket2::Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let unbound = TcpListener::from(OwnedFd::from(unbound));
        let e = validate(8, &unbound)
            .expect_err("not listening")
            .to_string();
        assert!(e.contains("not listening"), "{e}");

        let file = std::fs::File::open("/dev/null").expect("file");
        let file = TcpListener::from(OwnedFd::from(file));
        let e = validate(9, &file).expect_err("not a socket").to_string();
        assert!(e.contains("not a socket"), "{e}");
    }

    #[test]
    fn every_worker_gets_a_duplicate_of_each_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let passed = PassedSockets {
            sockets: vec![Passed {
                fd: 3,
                name: None,
                addr,
                listener,
            }],
        };
        let opts = ListenOptions {
            backlog: 16,
            defer_accept_secs: None,
        };
        let mut workers = passed.per_worker(3, opts).expect("dup");
        assert_eq!(workers.len(), 3);
        let fds: std::collections::HashSet<RawFd> = workers
            .iter()
            .map(|w| {
                use std::os::fd::AsRawFd;
                w[0].as_raw_fd()
            })
            .collect();
        assert_eq!(fds.len(), 3, "one descriptor per worker");
        // The first worker closes its copy; the others still accept.
        drop(workers.remove(0));
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        workers[1][0].set_nonblocking(false).expect("blocking");
        let (_conn, _) = workers[1][0].accept().expect("accepted by another worker");
    }
}
