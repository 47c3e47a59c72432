//! The accepted side of a gateway thread's connection: plain TCP, or TLS
//! (`--websocket` with `--tls-cert`: `wss://`). Reads and writes go
//! through it the same way; the splice relay and socket options use the
//! TCP socket underneath.

use std::io::{self, Read, Write};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::tls::TlsStream;

/// A client connection.
#[derive(Debug)]
pub(super) enum Client {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Client {
    /// The TCP socket underneath.
    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Client::Plain(s) => s,
            Client::Tls(t) => t.tcp(),
        }
    }

    /// The plain TCP socket, if this is one.
    pub(super) fn into_plain(self) -> Option<TcpStream> {
        match self {
            Client::Plain(s) => Some(s),
            Client::Tls(_) => None,
        }
    }
}

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Client::Plain(s) => s.read(buf),
            Client::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Client::Plain(s) => s.write(buf),
            Client::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Client::Plain(s) => s.flush(),
            Client::Tls(t) => t.flush(),
        }
    }
}

impl Source for Client {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Client::Plain(s) => s.register(r, t, i),
            Client::Tls(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Client::Plain(s) => s.reregister(r, t, i),
            Client::Tls(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Client::Plain(s) => s.deregister(r),
            Client::Tls(s) => s.deregister(r),
        }
    }
}
