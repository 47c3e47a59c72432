//! [`ClientStream`]: what a plain socket and a TLS stream have in common,
//! so that one event loop serves both.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

use super::TlsStream;

/// A client connection an edge-triggered mio loop drives the same way
/// whether it is plain TCP or TLS:
///
/// * register it (it is a [`mio::event::Source`]) for READABLE, plus
///   WRITABLE while [`ClientStream::wants_write`] (or always:
///   edge-triggered, it only fires when the socket becomes writable);
/// * on READABLE, `read` until `WouldBlock`; `Ok(0)` is the end of the
///   client's stream (FIN, or TLS `close_notify`);
/// * `write` what is to be sent; `WouldBlock` means wait for WRITABLE;
/// * on WRITABLE, `flush` while `wants_write` (for TLS: the records not yet
///   sent; for TCP: nothing), then write more;
/// * after a `read`, check `wants_write` too: TLS answers the handshake
///   from inside `read`, and may leave part of it for WRITABLE;
/// * [`ClientStream::shutdown_write`] ends our direction (FIN, after TLS
///   `close_notify`).
pub trait ClientStream: Read + Write + mio::event::Source {
    /// Bytes are waiting for the socket (always false for plain TCP).
    fn wants_write(&self) -> bool;

    /// Ends our direction: TCP FIN, after `close_notify` for TLS (sent
    /// once everything before it is, through `flush` while `wants_write`).
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// The socket underneath (peer address, socket options).
    fn tcp(&self) -> &TcpStream;
}

impl ClientStream for TcpStream {
    fn wants_write(&self) -> bool {
        false
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl ClientStream for TlsStream {
    fn wants_write(&self) -> bool {
        TlsStream::wants_write(self)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        TlsStream::shutdown_write(self)
    }

    fn tcp(&self) -> &TcpStream {
        TlsStream::tcp(self)
    }
}
