//! The HTTP/1.1 upgrade request that opens a WebSocket (RFC 6455 §4.2),
//! read incrementally with a fixed bound, and the answer to it.
//!
//! [`UpgradeReader`] keeps the bytes of the request head (at most
//! [`MAX_UPGRADE_LEN`]) and parses them with `httparse` each time more
//! arrive. A complete head is checked in full: `GET`, HTTP/1.1, `Host`,
//! `Upgrade: websocket`, a `Connection` that lists `upgrade`,
//! `Sec-WebSocket-Version: 13`, a `Sec-WebSocket-Key` of 16 bytes in
//! base64, and (with `--ws-origin`) an allowed `Origin`. The answer is
//! `101 Switching Protocols` with the accept key and nothing else: no
//! subprotocol (Ruffle asks for none) and no extension (a client's
//! `permessage-deflate` offer is declined by not answering it). Anything
//! else gets an HTTP error with a short text body and `Connection: close`
//! ([`Refusal`]).

use std::fmt;

use super::origin::Origins;

/// The longest request head read: a browser's upgrade request is well under
/// 1 KiB, cookies included for a small site.
pub const MAX_UPGRADE_LEN: usize = 4096;

/// The answer to a valid upgrade whose game server cannot be reached
/// (sent instead of the 101).
pub const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 34\r\nConnection: close\r\n\r\nthe game server cannot be reached\n";

/// The most header fields a request may have.
const MAX_HEADERS: usize = 32;

/// Why an upgrade request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The head did not end within [`MAX_UPGRADE_LEN`] bytes (431).
    TooLarge,
    /// Not parseable as HTTP/1.x (400).
    Malformed,
    /// A method other than `GET` (405).
    NotGet,
    /// HTTP/1.0 (400): WebSocket needs 1.1.
    NotHttp11,
    /// No `Host` header (400).
    NoHost,
    /// Not a WebSocket request: no `Upgrade: websocket` (426).
    NotWebSocket,
    /// `Connection` does not list `upgrade` (400).
    NoConnectionUpgrade,
    /// A `Sec-WebSocket-Version` other than 13 (426, naming 13).
    BadVersion,
    /// No `Sec-WebSocket-Key`, or not 16 bytes in base64 (400).
    BadKey,
    /// `--ws-origin` is set and the `Origin` is not one of them (403).
    Origin,
    /// The client closed before the head was complete (no answer).
    Closed,
}

impl Refusal {
    /// The HTTP status code sent.
    pub const fn status(self) -> u16 {
        match self {
            Refusal::TooLarge => 431,
            Refusal::NotGet => 405,
            Refusal::NotWebSocket | Refusal::BadVersion => 426,
            Refusal::Origin => 403,
            Refusal::Malformed
            | Refusal::NotHttp11
            | Refusal::NoHost
            | Refusal::NoConnectionUpgrade
            | Refusal::BadKey
            | Refusal::Closed => 400,
        }
    }

    /// The whole HTTP response sent before the close (empty for
    /// [`Refusal::Closed`]: nobody is left to read it).
    pub const fn response(self) -> &'static [u8] {
        match self {
            Refusal::TooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 32\r\nConnection: close\r\n\r\nthe upgrade request is too long\n",
            Refusal::Malformed => b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 28\r\nConnection: close\r\n\r\nnot an HTTP/1.1 GET request\n",
            Refusal::NotGet => b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Type: text/plain\r\nContent-Length: 38\r\nConnection: close\r\n\r\na WebSocket is opened with a GET only\n",
            Refusal::NotHttp11 => b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 27\r\nConnection: close\r\n\r\na WebSocket needs HTTP/1.1\n",
            Refusal::NoHost => b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nConnection: close\r\n\r\nno Host in the request\n",
            Refusal::NotWebSocket => b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Version: 13\r\nContent-Type: text/plain\r\nContent-Length: 60\r\n\r\nthis port is a WebSocket bridge: ask for Upgrade: websocket\n",
            Refusal::NoConnectionUpgrade => b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 29\r\nConnection: close\r\n\r\nConnection must list upgrade\n",
            Refusal::BadVersion => b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Version: 13\r\nContent-Type: text/plain\r\nContent-Length: 36\r\n\r\nonly WebSocket version 13 is spoken\n",
            Refusal::BadKey => b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 45\r\nConnection: close\r\n\r\nSec-WebSocket-Key must be 16 bytes in base64\n",
            Refusal::Origin => b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 35\r\nConnection: close\r\n\r\nthis page's origin may not connect\n",
            Refusal::Closed => b"",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::TooLarge => "upgrade request too long",
            Refusal::Malformed => "not an HTTP request",
            Refusal::NotGet => "not a GET",
            Refusal::NotHttp11 => "not HTTP/1.1",
            Refusal::NoHost => "no Host",
            Refusal::NotWebSocket => "no Upgrade: websocket",
            Refusal::NoConnectionUpgrade => "Connection does not list upgrade",
            Refusal::BadVersion => "Sec-WebSocket-Version is not 13",
            Refusal::BadKey => "bad Sec-WebSocket-Key",
            Refusal::Origin => "origin not allowed",
            Refusal::Closed => "closed before the request ended",
        })
    }
}

impl std::error::Error for Refusal {}

/// A valid upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The `101 Switching Protocols` response to send.
    pub response: Vec<u8>,
    /// The request's path and query, as sent (for logs).
    pub path: String,
    /// The `Origin` header, if any (for logs).
    pub origin: Option<String>,
    /// Bytes after the head that came with it: the client's first frames.
    pub early: Vec<u8>,
}

/// What the bytes so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeStep {
    /// The head is not complete: read more.
    NeedMore,
    /// A valid request: connect the upstream, then send the response.
    Accept(Box<Accepted>),
    /// Send [`Refusal::response`] and close.
    Refuse(Refusal),
}

/// One connection's upgrade request, read as it arrives.
#[derive(Debug, Default)]
pub struct UpgradeReader {
    head: Vec<u8>,
    done: bool,
}

impl UpgradeReader {
    /// Nothing read yet.
    pub fn new() -> UpgradeReader {
        UpgradeReader::default()
    }

    /// Bytes held (at most [`MAX_UPGRADE_LEN`]).
    pub fn held(&self) -> usize {
        self.head.len()
    }

    /// A read returned `bytes`; `origins` is `--ws-origin`.
    pub fn feed(&mut self, bytes: &[u8], origins: &Origins) -> UpgradeStep {
        if self.done || bytes.is_empty() {
            return UpgradeStep::NeedMore;
        }
        let room = MAX_UPGRADE_LEN - self.head.len();
        let take = bytes.len().min(room);
        let scan_from = self.head.len().saturating_sub(3);
        self.head.extend_from_slice(&bytes[..take]);
        // Parse only once the blank line that ends a head has arrived.
        let Some(end) = find_head_end(&self.head, scan_from) else {
            if self.head.len() >= MAX_UPGRADE_LEN {
                return self.finish(UpgradeStep::Refuse(Refusal::TooLarge));
            }
            return UpgradeStep::NeedMore;
        };
        let step = match check(&self.head[..end], origins) {
            Ok((mut accepted, _)) => {
                let mut early = self.head.split_off(end);
                early.extend_from_slice(&bytes[take..]);
                accepted.early = early;
                UpgradeStep::Accept(Box::new(accepted))
            }
            Err(refusal) => UpgradeStep::Refuse(refusal),
        };
        self.finish(step)
    }

    /// The client half-closed before the head was complete.
    pub fn on_eof(&mut self) -> UpgradeStep {
        if self.done {
            return UpgradeStep::NeedMore;
        }
        self.finish(UpgradeStep::Refuse(Refusal::Closed))
    }

    fn finish(&mut self, step: UpgradeStep) -> UpgradeStep {
        self.done = true;
        self.head = Vec::new();
        step
    }
}

/// The index just past the `\r\n\r\n` (or bare `\n\n`) ending the head.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    tail.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4)
        .or_else(|| {
            tail.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| from + i + 2)
        })
}

/// Checks a complete head.
fn check(head: &[u8], origins: &Origins) -> Result<(Accepted, usize), Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) | Err(_) => return Err(Refusal::Malformed),
    };
    if req.method != Some("GET") {
        return Err(Refusal::NotGet);
    }
    if req.version != Some(1) {
        return Err(Refusal::NotHttp11);
    }
    let path = req.path.unwrap_or("/").to_string();
    let mut host = false;
    let mut upgrade = false;
    let mut connection = false;
    let mut version = None;
    let mut key = None;
    let mut origin = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host = !h.value.is_empty();
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= lists(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= lists(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = Some(h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(h.value);
        } else if name.eq_ignore_ascii_case("origin") {
            origin = std::str::from_utf8(h.value).ok().map(str::to_string);
        }
    }
    if !host {
        return Err(Refusal::NoHost);
    }
    if !upgrade {
        return Err(Refusal::NotWebSocket);
    }
    if !connection {
        return Err(Refusal::NoConnectionUpgrade);
    }
    if version.map(trim) != Some(b"13".as_slice()) {
        return Err(Refusal::BadVersion);
    }
    let key = key.map(trim).filter(|k| is_key(k)).ok_or(Refusal::BadKey)?;
    if !origins.allows(origin.as_deref()) {
        return Err(Refusal::Origin);
    }
    let accept = tungstenite::handshake::derive_accept_key(key);
    let mut response = Vec::with_capacity(129);
    response.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    response.extend_from_slice(accept.as_bytes());
    response.extend_from_slice(b"\r\n\r\n");
    Ok((
        Accepted {
            response,
            path,
            origin,
            early: Vec::new(),
        },
        len,
    ))
}

/// A comma-separated header value lists `token` (ASCII case-insensitive).
pub(crate) fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or(&[])
}

/// 16 bytes in base64: 22 characters of the alphabet, then `==`.
fn is_key(k: &[u8]) -> bool {
    k.len() == 24
        && k.ends_with(b"==")
        && k[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
#[path = "upgrade_tests.rs"]
mod tests;
