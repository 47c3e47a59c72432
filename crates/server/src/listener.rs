//! Listening sockets: one per worker and address, all sharing the port
//! through SO_REUSEPORT so the kernel spreads new connections over workers.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Listen;

/// The `TCP_DEFER_ACCEPT` value, in seconds: the kernel hands over a
/// connection as soon as its first bytes arrive, and a silent one after one
/// SYN-ACK retransmission, about [`DEFER_ACCEPT_HOLD`] after it connected
/// (larger values hold silent clients for 1 + 2 + 4 + … s).
pub const DEFER_ACCEPT_SECS: u32 = 1;

/// How long the kernel holds a silent client with [`DEFER_ACCEPT_SECS`]
/// (one initial retransmission timeout).
pub const DEFER_ACCEPT_HOLD: std::time::Duration = std::time::Duration::from_secs(1);

/// Options applied to every listening socket.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// `listen(2)` backlog.
    pub backlog: u32,
    /// Seconds for TCP_DEFER_ACCEPT, or `None` to leave it off.
    pub defer_accept_secs: Option<u32>,
}

/// A bind failure, with the address and a hint for the usual causes.
#[derive(Debug)]
pub struct BindError {
    /// The address that could not be bound.
    pub addr: SocketAddr,
    /// The OS error.
    pub error: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.error)?;
        match self.error.kind() {
            io::ErrorKind::PermissionDenied if self.addr.port() < 1024 => write!(
                f,
                " (ports below 1024 need privilege: run as root, grant it with \
                 `sudo setcap cap_net_bind_service=+ep $(which flashpolicyd)`, or use a port \
                 of 1024 or more, e.g. --listen 0.0.0.0:8843)"
            ),
            io::ErrorKind::AddrInUse => write!(f, " (another process is listening there)"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for BindError {}

/// Opens one non-blocking SO_REUSEPORT listener on `addr`.
///
/// An IPv6 wildcard address is made dual-stack (IPV6_V6ONLY off).
pub fn bind_one(addr: SocketAddr, opts: ListenOptions) -> Result<TcpListener, BindError> {
    let err = |error| BindError { addr, error };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    if let SocketAddr::V6(v6) = addr {
        socket.set_only_v6(!v6.ip().is_unspecified()).map_err(err)?;
    }
    if let Some(secs) = opts.defer_accept_secs {
        set_defer_accept(&socket, secs).map_err(err)?;
    }
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(err)?;
    Ok(socket.into())
}

/// Binds `per_address` listeners on each address of `listen`.
///
/// Returns `sockets[worker][address]`. A port of 0 is resolved by the first
/// socket and reused by the others so they all share one port. The default
/// `[::]:843` falls back to `0.0.0.0:843` where IPv6 is unavailable.
pub fn bind_all(
    listen: &Listen,
    per_address: usize,
    opts: ListenOptions,
) -> Result<Vec<Vec<TcpListener>>, BindError> {
    let addrs = match listen {
        Listen::Addrs(addrs) => addrs.clone(),
        Listen::Default => {
            let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 843));
            match probe_free(v6) {
                Ok(()) => vec![v6],
                Err(e) if ipv6_absent(&e.error) => {
                    vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 843))]
                }
                Err(e) => return Err(e),
            }
        }
    };
    let mut workers: Vec<Vec<TcpListener>> = (0..per_address).map(|_| Vec::new()).collect();
    for addr in addrs {
        if addr.port() != 0 {
            probe_free(addr)?;
        }
        let mut addr = addr;
        for sockets in workers.iter_mut() {
            let listener = bind_one(addr, opts)?;
            if addr.port() == 0 {
                addr = listener
                    .local_addr()
                    .map_err(|error| BindError { addr, error })?;
            }
            sockets.push(listener);
        }
    }
    Ok(workers)
}

/// Fails with `EADDRINUSE` if something already listens on `addr`.
///
/// SO_REUSEPORT lets any socket of the same user join an existing group, so
/// without this check a second `flashpolicyd` on the same port would start
/// "successfully" and silently take half of the other one's clients. The
/// probe binds without SO_REUSEPORT (with SO_REUSEADDR, so connections in
/// TIME_WAIT do not count), which conflicts with any listener there.
pub fn probe_free(addr: SocketAddr) -> Result<(), BindError> {
    let err = |error| BindError { addr, error };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if let SocketAddr::V6(v6) = addr {
        socket.set_only_v6(!v6.ip().is_unspecified()).map_err(err)?;
    }
    socket.bind(&addr.into()).map_err(err)
}

pub(crate) fn set_defer_accept(socket: &Socket, secs: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: passes a pointer to a live c_int and its exact size to a
    // socket we own; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn ipv6_absent(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) | Some(libc::EPROTONOSUPPORT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ListenOptions {
        ListenOptions {
            backlog: 16,
            defer_accept_secs: None,
        }
    }

    #[test]
    fn privilege_error_names_the_fixes() {
        let e = BindError {
            addr: "0.0.0.0:843".parse().expect("addr"),
            error: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let text = e.to_string();
        assert!(text.contains("cannot listen on 0.0.0.0:843"), "{text}");
        assert!(text.contains("setcap cap_net_bind_service"), "{text}");
        assert!(text.contains("1024"), "{text}");
    }

    #[test]
    fn port_zero_is_resolved_once_and_shared() {
        let listen = Listen::Addrs(vec!["127.0.0.1:0".parse().expect("addr")]);
        let sockets = bind_all(&listen, 3, opts()).expect("bind");
        assert_eq!(sockets.len(), 3);
        let ports: Vec<u16> = sockets
            .iter()
            .map(|w| w[0].local_addr().expect("addr").port())
            .collect();
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
    }

    #[test]
    fn a_port_already_listened_on_is_refused_even_with_reuseport() {
        let listen = Listen::Addrs(vec!["127.0.0.1:0".parse().expect("addr")]);
        let first = bind_all(&listen, 1, opts()).expect("bind");
        let taken = first[0][0].local_addr().expect("addr");
        let again = bind_all(&Listen::Addrs(vec![taken]), 1, opts());
        let err = again.expect_err("the port is taken");
        assert_eq!(err.error.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("another process"), "{err}");
        drop(first);
        // Free again: binding works.
        assert!(bind_all(&Listen::Addrs(vec![taken]), 2, opts()).is_ok());
    }
}
