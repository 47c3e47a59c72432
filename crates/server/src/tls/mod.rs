//! TLS for the listeners that need it (`wss://` for the WebSocket bridge):
//! `--tls-cert FILE --tls-key FILE`, PEM, reloaded on SIGHUP.
//!
//! Nothing here runs on the plain listeners (port 843, `--gateway`): only
//! a listener that was given a [`TlsCell`] ever makes a [`TlsStream`].
//!
//! * [`load()`] reads the certificate chain and key into a
//!   [`rustls::ServerConfig`] with modern defaults (TLS 1.2 and 1.3,
//!   rustls's default cipher suites, ALPN `http/1.1`), or says which file is
//!   wrong and how ([`TlsError`]).
//! * [`TlsCell`] holds the config in force, shared by every worker, and
//!   swaps it on [`TlsCell::reload`]; a worker's [`TlsAcceptor`] looks at it
//!   once per accepted connection (one atomic load while nothing changed).
//! * [`TlsStream`] is a non-blocking TLS server stream over a
//!   [`mio::net::TcpStream`]: `Read`/`Write` of plaintext with the same
//!   `WouldBlock` rules as the socket itself.
//! * [`ClientStream`] is what a TcpStream and a TlsStream have in common,
//!   so that one event loop drives both.

mod acceptor;
mod cell;
mod client_stream;
mod error;
mod load;
mod stream;

#[cfg(test)]
mod test_files;
#[cfg(test)]
#[path = "../../tests/common/pki.rs"]
mod test_pki;
#[cfg(test)]
mod test_pump;
#[cfg(test)]
mod tests_cell;
#[cfg(test)]
mod tests_load;
#[cfg(test)]
mod tests_stream;

pub use acceptor::TlsAcceptor;
pub use cell::TlsCell;
pub use client_stream::ClientStream;
pub use error::TlsError;
pub use load::{load, ALPN_HTTP_1_1, MAX_PEM_FILE_LEN};
pub use stream::{TlsStream, MAX_BUFFERED_TLS};
