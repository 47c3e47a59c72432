//! Reading a PROXY protocol header, v1 (text) or v2 (binary), one slice at
//! a time.
//!
//! The version is told by the first bytes: `PROXY ` starts a v1 line, the
//! 12-byte [`V2_SIGNATURE`] a v2 header; anything else is
//! [`Invalid::Signature`] at once.
//!
//! Memory is bounded whatever a client sends: the reader holds at most
//! [`MAX_BUFFERED`] bytes (a whole v1 line of at most [`V1_MAX_LEN`]
//! bytes, or v2's 16-byte fixed part and an address block of at most 36
//! bytes). The v2 bytes after the addresses (TLVs, or an AF_UNIX address
//! block, which is not used) are *skipped by counting*, never stored; a v2
//! header may so be as long as its 16-bit length field says (65,551 bytes),
//! and `--timeout` bounds how long it may take to arrive.
//!
//! v1 lines are parsed with the `ppp` crate; the v2 fixed part and address
//! block are decoded here, since `ppp` needs the whole header (TLVs too) in
//! one buffer.
//!
//! What a header yields is the client's address, or `None` where the real
//! connection endpoints are to be used: v2 `LOCAL` (a balancer's health
//! check), v1 `UNKNOWN`, and v2 unspecified or AF_UNIX families.

use std::fmt;
use std::net::SocketAddr;

use decode::{decode_v2, parse_v1, proxy_block};

/// How a v1 header starts.
pub const V1_PREFIX: &[u8] = b"PROXY ";

/// The longest v1 header, `\r\n` included (the spec's 107 bytes).
pub const V1_MAX_LEN: usize = 107;

/// How a v2 header starts.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The v2 fixed part: signature, version and command, family and
/// transport, and the 16-bit length of what follows.
pub const V2_FIXED_LEN: usize = 16;

/// The v2 address block of TCP over IPv4 and over IPv6.
pub(crate) const V2_INET_LEN: usize = 12;
pub(crate) const V2_INET6_LEN: usize = 36;
/// The v2 AF_UNIX address block (two 108-byte paths): skipped, not stored.
pub(crate) const V2_UNIX_LEN: usize = 216;

/// The most bytes a [`HeaderReader`] holds.
pub const MAX_BUFFERED: usize = V1_MAX_LEN;
const _: () = assert!(V2_FIXED_LEN + V2_INET6_LEN <= MAX_BUFFERED);

/// What the bytes fed so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A prefix of a valid header: read more.
    NeedMore,
    /// A complete, valid header.
    Header {
        /// The client's address; `None`: use the connection's real
        /// endpoints (v2 `LOCAL`, v1 `UNKNOWN`, v2 unspecified or AF_UNIX).
        client: Option<SocketAddr>,
        /// How many bytes of the slice just fed belong to the header; the
        /// rest is the start of the request.
        consumed: usize,
    },
    /// Not a valid header: send nothing and close.
    Invalid(Invalid),
}

/// Why the bytes are not a valid PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Neither `PROXY ` nor the v2 signature.
    Signature,
    /// No `\n` within [`V1_MAX_LEN`] bytes.
    V1TooLong,
    /// A v1 line that is not `PROXY TCP4|TCP6|UNKNOWN ...\r\n` with valid
    /// addresses and ports.
    V1Malformed,
    /// A v2 version other than 2.
    V2Version(u8),
    /// A v2 command other than `LOCAL` (0) or `PROXY` (1).
    V2Command(u8),
    /// A v2 `PROXY` with an unknown family or transport, or a datagram one.
    V2Family(u8),
    /// A v2 length shorter than its family's address block.
    V2Length {
        /// The length field.
        len: u16,
        /// The address block's size.
        need: u16,
    },
    /// The connection ended before the header was complete.
    Truncated {
        /// Header bytes received.
        received: usize,
    },
    /// Bytes fed after the header was complete or found invalid.
    AfterVerdict,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Signature => f.write_str("no PROXY protocol signature"),
            Invalid::V1TooLong => write!(f, "v1 header longer than {V1_MAX_LEN} bytes"),
            Invalid::V1Malformed => f.write_str("malformed v1 header"),
            Invalid::V2Version(v) => write!(f, "v2 header with version {v}"),
            Invalid::V2Command(c) => write!(f, "v2 header with command {c}"),
            Invalid::V2Family(b) => write!(f, "v2 header with family/transport {b:#04x}"),
            Invalid::V2Length { len, need } => {
                write!(
                    f,
                    "v2 length {len} is shorter than its {need}-byte addresses"
                )
            }
            Invalid::Truncated { received } => {
                write!(f, "connection closed after {received} header bytes")
            }
            Invalid::AfterVerdict => f.write_str("bytes fed after the verdict was given"),
        }
    }
}

impl std::error::Error for Invalid {}

/// Incremental PROXY header reader: feed it every slice a read returns
/// until it answers `Header` or `Invalid`.
///
/// ```
/// use flashpolicy_proto::proxy::{HeaderReader, Step};
/// let mut r = HeaderReader::new();
/// assert_eq!(r.feed(b"PROXY TCP4 192.0.2.1 "), Step::NeedMore);
/// let Step::Header { client, consumed } = r.feed(b"198.51.100.1 5000 843\r\n<pol") else {
///     panic!()
/// };
/// assert_eq!(client, Some("192.0.2.1:5000".parse().unwrap()));
/// assert_eq!(consumed, 23);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderReader {
    buf: [u8; MAX_BUFFERED],
    /// Bytes in `buf`.
    len: u8,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Filling `buf`: the v1 line, or the v2 fixed part and addresses.
    Collecting,
    /// v2: `left` bytes after the addresses still to skip.
    Skipping {
        left: u16,
        client: Option<SocketAddr>,
    },
    /// A verdict was given.
    Done,
}

/// What the bytes in `buf` amount to so far.
enum Progress {
    More,
    Invalid(Invalid),
    Complete {
        client: Option<SocketAddr>,
        skip: u16,
    },
}

impl Default for HeaderReader {
    fn default() -> Self {
        HeaderReader::new()
    }
}

impl HeaderReader {
    /// A reader that has seen nothing yet.
    pub const fn new() -> HeaderReader {
        HeaderReader {
            buf: [0; MAX_BUFFERED],
            len: 0,
            phase: Phase::Collecting,
        }
    }

    /// Header bytes taken so far (buffered or skipped).
    pub fn received(&self) -> usize {
        let skipped = match self.phase {
            Phase::Skipping { left, .. } => self
                .v2_len()
                .saturating_sub(self.v2_buffered_addrs())
                .saturating_sub(usize::from(left)),
            _ => 0,
        };
        usize::from(self.len) + skipped
    }

    /// Feeds the next bytes of the connection.
    pub fn feed(&mut self, bytes: &[u8]) -> Step {
        let mut i = 0;
        if self.phase == Phase::Collecting {
            while i < bytes.len() {
                self.buf[usize::from(self.len)] = bytes[i];
                self.len += 1;
                i += 1;
                match self.check() {
                    Progress::More => {}
                    Progress::Invalid(why) => {
                        self.phase = Phase::Done;
                        return Step::Invalid(why);
                    }
                    Progress::Complete { client, skip } => {
                        self.phase = Phase::Skipping { left: skip, client };
                        break;
                    }
                }
            }
        }
        match &mut self.phase {
            Phase::Collecting => Step::NeedMore,
            Phase::Skipping { left, client } => {
                let take = usize::from(*left).min(bytes.len() - i);
                // `take` is at most `*left`, a u16.
                *left -= take as u16;
                i += take;
                if *left > 0 {
                    return Step::NeedMore;
                }
                let client = *client;
                self.phase = Phase::Done;
                Step::Header {
                    client,
                    consumed: i,
                }
            }
            Phase::Done => Step::Invalid(Invalid::AfterVerdict),
        }
    }

    /// The connection ended: a header still incomplete is truncated.
    pub fn eof(&mut self) -> Step {
        let received = self.received();
        if self.phase == Phase::Done {
            return Step::Invalid(Invalid::AfterVerdict);
        }
        self.phase = Phase::Done;
        Step::Invalid(Invalid::Truncated { received })
    }

    /// Looks at `buf` after one more byte came in.
    fn check(&self) -> Progress {
        let n = usize::from(self.len);
        let b = &self.buf[..n];
        match b[0] {
            b'P' => self.check_v1(b),
            b'\r' => self.check_v2(b),
            _ => Progress::Invalid(Invalid::Signature),
        }
    }

    fn check_v1(&self, b: &[u8]) -> Progress {
        let n = b.len();
        if n <= V1_PREFIX.len() && b != &V1_PREFIX[..n] {
            return Progress::Invalid(Invalid::Signature);
        }
        if b[n - 1] != b'\n' {
            return if n >= V1_MAX_LEN {
                Progress::Invalid(Invalid::V1TooLong)
            } else {
                Progress::More
            };
        }
        match parse_v1(b) {
            Some(client) => Progress::Complete { client, skip: 0 },
            None => Progress::Invalid(Invalid::V1Malformed),
        }
    }

    fn check_v2(&self, b: &[u8]) -> Progress {
        let n = b.len();
        if n <= V2_SIGNATURE.len() {
            return if b == &V2_SIGNATURE[..n] {
                Progress::More
            } else {
                Progress::Invalid(Invalid::Signature)
            };
        }
        let ver_cmd = b[12];
        if n == 13 {
            if ver_cmd >> 4 != 2 {
                return Progress::Invalid(Invalid::V2Version(ver_cmd >> 4));
            }
            if ver_cmd & 0x0f > 1 {
                return Progress::Invalid(Invalid::V2Command(ver_cmd & 0x0f));
            }
            return Progress::More;
        }
        let local = ver_cmd & 0x0f == 0;
        let fam = b[13];
        // LOCAL: the receiver ignores the protocol block, family included.
        let block = if local { Some(0) } else { proxy_block(fam) };
        let Some(block) = block else {
            return Progress::Invalid(Invalid::V2Family(fam));
        };
        if n < V2_FIXED_LEN {
            return Progress::More;
        }
        let len = self.v2_len();
        if n == V2_FIXED_LEN && len < usize::from(block) {
            return Progress::Invalid(Invalid::V2Length {
                len: len as u16,
                need: block,
            });
        }
        let want = self.v2_buffered_addrs();
        if n < V2_FIXED_LEN + want {
            return Progress::More;
        }
        let client = decode_v2(fam, &b[V2_FIXED_LEN..]);
        Progress::Complete {
            client,
            skip: (len - want) as u16,
        }
    }

    /// The v2 length field (0 before it has arrived).
    fn v2_len(&self) -> usize {
        if self.buf[0] != b'\r' || usize::from(self.len) < V2_FIXED_LEN {
            return 0;
        }
        usize::from(u16::from_be_bytes([self.buf[14], self.buf[15]]))
    }

    /// How many address bytes after the v2 fixed part are buffered: the
    /// IPv4 or IPv6 block of a `PROXY` over TCP, nothing otherwise.
    fn v2_buffered_addrs(&self) -> usize {
        if self.buf[0] != b'\r' || usize::from(self.len) < V2_FIXED_LEN || self.buf[12] & 0x0f == 0
        {
            return 0;
        }
        match self.buf[13] {
            0x11 => V2_INET_LEN,
            0x21 => V2_INET6_LEN,
            _ => 0,
        }
    }
}

mod decode;

#[cfg(test)]
mod tests;
