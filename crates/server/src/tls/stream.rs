//! [`TlsStream`]: a non-blocking TLS server stream over a mio socket, read
//! and written like the socket itself.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

/// The most bytes a [`TlsStream`] keeps waiting for the socket: plaintext
/// written before the handshake ends, and TLS records not yet sent. A
/// `write` past it returns `WouldBlock` until [`TlsStream::flush`] (or the
/// next `write`) has sent some. Received plaintext is bounded by rustls
/// itself (16 KiB), and a record being read by its maximum size.
pub const MAX_BUFFERED_TLS: usize = 64 * 1024;

/// Where closing our side stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteSide {
    /// Plaintext may still be written.
    Open,
    /// `close_notify` is queued; the TCP write side is shut once it (and
    /// everything before it) is sent.
    Closing,
    /// The TCP write side is shut.
    Closed,
}

/// A TLS server connection over a non-blocking [`TcpStream`], with the
/// socket's own non-blocking rules, so that an event loop uses it where it
/// would use the socket (edge-triggered: read until `WouldBlock`):
///
/// * [`Read::read`] pulls TLS records from the socket, processes them and
///   returns plaintext; `WouldBlock` only once the socket itself would block
///   (mid-handshake too: the handshake moves on inside `read`, which also
///   sends what the handshake answers); `Ok(0)` once the peer has sent
///   `close_notify` or closed TCP; a TLS error is
///   [`io::ErrorKind::InvalidData`], and so is every read after it.
/// * [`Write::write`] takes plaintext while fewer than
///   [`MAX_BUFFERED_TLS`] bytes wait for the socket (else `WouldBlock`),
///   and sends what it can at once.
/// * [`Write::flush`] sends the waiting TLS records: `Ok` once all are sent,
///   `WouldBlock` while some are left.
/// * [`TlsStream::wants_write`]: bytes are waiting for the socket; add
///   WRITABLE interest and call `flush` when it fires.
/// * [`TlsStream::shutdown_write`] sends `close_notify`, then shuts the TCP
///   write side once everything is sent.
///
/// Register it with mio like the socket (it is a [`mio::event::Source`]).
#[derive(Debug)]
pub struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    write_side: WriteSide,
    /// A TLS error was seen: the session is over.
    failed: bool,
}

impl TlsStream {
    /// A server session with `config` on an accepted, non-blocking socket.
    /// Nothing is read or sent yet: the handshake happens in `read`.
    ///
    /// Fails only if rustls cannot start a session with `config` (not for
    /// anything the client does).
    pub fn new(config: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<TlsStream> {
        let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(MAX_BUFFERED_TLS));
        Ok(TlsStream {
            tcp,
            tls,
            write_side: WriteSide::Open,
            failed: false,
        })
    }

    /// The socket underneath (for `peer_addr`, socket options, ...). Read
    /// or write it only through the stream.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The socket underneath, mutably (for mio registration by hand).
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// The rustls session (negotiated version, cipher suite, ...).
    pub fn session(&self) -> &ServerConnection {
        &self.tls
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// The host name the client asked for (SNI), once its hello is read.
    pub fn server_name(&self) -> Option<&str> {
        self.tls.server_name()
    }

    /// Bytes are waiting for the socket to take them (TLS records, or the
    /// TCP shutdown after `close_notify`): the loop should watch for
    /// WRITABLE and call `flush` then.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write() || self.write_side == WriteSide::Closing
    }

    /// Sends `close_notify` (once), then shuts the TCP write side as soon as
    /// everything before it is sent: now, or in a later `flush` while
    /// [`TlsStream::wants_write`] says so. Writes after it fail with
    /// `BrokenPipe`; reading goes on.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if self.write_side == WriteSide::Open {
            // After a TLS error rustls has sent its alert instead.
            if !self.failed {
                self.tls.send_close_notify();
            }
            self.write_side = WriteSide::Closing;
        }
        self.send_pending().map(|_| ())
    }

    /// Writes waiting TLS records until none is left (then performs a
    /// pending TCP shutdown) or the socket would block. `Ok(true)` when
    /// nothing is left.
    fn send_pending(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.write_side == WriteSide::Closing {
            self.tcp.shutdown(Shutdown::Write)?;
            self.write_side = WriteSide::Closed;
        }
        Ok(true)
    }

    /// The error every read and write returns once the session failed.
    fn failed_error() -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, "the TLS session has failed")
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.failed {
            return Err(TlsStream::failed_error());
        }
        loop {
            match self.tls.reader().read(buf) {
                // 0: the peer sent close_notify.
                Ok(n) => return Ok(n),
                // TCP EOF without close_notify: the end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // No plaintext yet (and the plaintext buffer is empty, so
            // rustls takes more): pull records from the socket.
            match self.tls.read_tls(&mut self.tcp) {
                // Ok(0) is TCP EOF: rustls notes it, and the reader above
                // reports it on the next turn.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.tls.process_new_packets() {
                self.failed = true;
                // Best effort: the alert rustls queued for the peer. The
                // session is over either way.
                let _ = self.send_pending();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // What the records called for (the handshake's next flight,
            // session tickets, a key update) goes out now. A write error
            // shows in the next write or flush; reading goes on.
            let _ = self.send_pending();
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.failed {
            return Err(TlsStream::failed_error());
        }
        if self.write_side != WriteSide::Open {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        // Make room first, then take what fits under the bound.
        self.send_pending()?;
        let taken = self.tls.writer().write(buf)?;
        if taken == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send_pending()?;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.send_pending()? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

impl mio::event::Source for TlsStream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tcp.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tcp.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.tcp.deregister(registry)
    }
}
