//! [`TlsAcceptor`]: one worker's way into the shared [`TlsCell`].

use std::io;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::ServerConfig;

use super::{TlsCell, TlsStream};

/// One worker's handle on the shared [`TlsCell`]: keeps the config it last
/// saw and looks at the cell's generation (one atomic load) per accepted
/// connection, taking the lock only after a reload.
#[derive(Debug, Clone)]
pub struct TlsAcceptor {
    cell: Arc<TlsCell>,
    seen: u64,
    config: Arc<ServerConfig>,
}

impl TlsAcceptor {
    /// A handle on `cell`, starting with its config in force.
    pub fn new(cell: Arc<TlsCell>) -> TlsAcceptor {
        let (seen, config) = cell.snapshot();
        TlsAcceptor { cell, seen, config }
    }

    /// The config in force now (refreshed if the cell was reloaded).
    pub fn config(&mut self) -> &Arc<ServerConfig> {
        if self.cell.generation() != self.seen {
            (self.seen, self.config) = self.cell.snapshot();
        }
        &self.config
    }

    /// Starts a TLS session on an accepted, non-blocking socket, with the
    /// config in force now. The handshake happens in the stream's `read`.
    pub fn accept(&mut self, tcp: TcpStream) -> io::Result<TlsStream> {
        let config = Arc::clone(self.config());
        TlsStream::new(config, tcp)
    }
}
