//! The browser's side of the bridge, for clients that test one
//! (`flashpolicy-loadgen --websocket`): the upgrade request, the check of
//! the server's answer, and the masked frames a client sends.
//!
//! The answer must be `101` with `Upgrade: websocket`, a `Connection` that
//! lists `upgrade` and the `Sec-WebSocket-Accept` derived from the client's
//! key; a subprotocol or an extension the client did not ask for is an
//! error too (RFC 6455 §4.1). The server's frames are decoded by
//! [`Inbound::from_server`](super::Inbound::from_server).
//!
//! The key and the masks are the caller's: this module draws no random
//! numbers.

use std::fmt;

use tungstenite::protocol::frame::coding::{Control as Ctl, Data, OpCode};

use super::outbound::header;
use super::upgrade::{lists, trim, MAX_UPGRADE_LEN};

/// The longest header of a client frame: 2 bytes, an 8-byte length and the
/// 4-byte mask.
pub const MAX_CLIENT_HEADER: usize = 14;

/// The most header fields an answer may have.
const MAX_HEADERS: usize = 32;

/// The upgrade request for `path` on `host` (as `HOST:PORT`), with `key`
/// (16 bytes in base64) and, when given, the page's `origin`.
pub fn upgrade_request(host: &str, path: &str, origin: Option<&str>, key: &str) -> Vec<u8> {
    let mut r = Vec::with_capacity(160 + host.len() + path.len());
    for part in [
        "GET ",
        path,
        " HTTP/1.1\r\nHost: ",
        host,
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
        key,
        "\r\n",
    ] {
        r.extend_from_slice(part.as_bytes());
    }
    if let Some(o) = origin {
        r.extend_from_slice(b"Origin: ");
        r.extend_from_slice(o.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// Why the server's answer to the upgrade is not a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The answer's head did not end within 4 KiB.
    TooLong,
    /// Not an HTTP/1.1 response.
    Malformed,
    /// A status other than 101 (a refusal: 403 for the origin, 502 for a
    /// game server that is down, …).
    Status(u16),
    /// No `Upgrade: websocket`, or `Connection` does not list `upgrade`.
    NotUpgrade,
    /// `Sec-WebSocket-Accept` is missing or not derived from the key.
    BadAccept,
    /// A subprotocol or an extension that was not asked for.
    Unrequested,
    /// The server closed before its answer ended.
    Closed,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::TooLong => f.write_str("upgrade answer longer than 4 KiB"),
            HandshakeError::Malformed => f.write_str("upgrade answer is not HTTP/1.1"),
            HandshakeError::Status(s) => write!(f, "upgrade refused with HTTP {s}"),
            HandshakeError::NotUpgrade => {
                f.write_str("upgrade answer lacks Upgrade: websocket or Connection: upgrade")
            }
            HandshakeError::BadAccept => f.write_str("wrong or missing Sec-WebSocket-Accept"),
            HandshakeError::Unrequested => {
                f.write_str("upgrade answer names a subprotocol or extension not asked for")
            }
            HandshakeError::Closed => f.write_str("closed before the upgrade answer ended"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Reads the server's answer to one upgrade request, a chunk at a time.
#[derive(Debug, Clone)]
pub struct AnswerReader {
    held: Vec<u8>,
    accept: String,
}

impl AnswerReader {
    /// Waits for the answer to a request sent with `key`.
    pub fn new(key: &str) -> AnswerReader {
        AnswerReader {
            held: Vec::new(),
            accept: tungstenite::handshake::derive_accept_key(key.as_bytes()),
        }
    }

    /// Takes the next bytes from the server. `Ok(None)`: the head is not
    /// complete yet. `Ok(Some(n))`: the WebSocket is open, and `bytes[n..]`
    /// are already its frames.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, HandshakeError> {
        let before = self.held.len();
        let take = bytes.len().min(MAX_UPGRADE_LEN + 1 - before);
        self.held.extend_from_slice(&bytes[..take]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&self.held) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if self.held.len() > MAX_UPGRADE_LEN => {
                return Err(HandshakeError::TooLong)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(HandshakeError::Malformed),
        };
        if resp.version != Some(1) {
            return Err(HandshakeError::Malformed);
        }
        match resp.code {
            Some(101) => {}
            Some(code) => return Err(HandshakeError::Status(code)),
            None => return Err(HandshakeError::Malformed),
        }
        let (mut upgrade, mut connection, mut accepted) = (false, false, false);
        for h in resp.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("upgrade") {
                upgrade |= lists(h.value, "websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                connection |= lists(h.value, "upgrade");
            } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
                accepted = trim(h.value) == self.accept.as_bytes();
            } else if name.eq_ignore_ascii_case("sec-websocket-protocol")
                || name.eq_ignore_ascii_case("sec-websocket-extensions")
            {
                return Err(HandshakeError::Unrequested);
            }
        }
        if !upgrade || !connection {
            return Err(HandshakeError::NotUpgrade);
        }
        if !accepted {
            return Err(HandshakeError::BadAccept);
        }
        self.held = Vec::new();
        // The head ends in this chunk: nothing held before completed it.
        Ok(Some(len.saturating_sub(before)))
    }
}

/// Writes the header of a final binary frame of `len` payload bytes masked
/// with `mask` at the end of `out`, and returns where it starts.
pub fn client_binary_header(len: usize, mask: [u8; 4], out: &mut [u8; MAX_CLIENT_HEADER]) -> usize {
    header(OpCode::Data(Data::Binary), len, Some(mask), out)
}

/// Writes a close frame with no status code, as Ruffle's `Socket.close()`
/// sends (an empty payload: the mask covers nothing), at the end of `out`,
/// and returns where it starts.
pub fn client_close(mask: [u8; 4], out: &mut [u8; MAX_CLIENT_HEADER]) -> usize {
    header(OpCode::Control(Ctl::Close), 0, Some(mask), out)
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
