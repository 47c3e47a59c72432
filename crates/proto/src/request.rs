//! Recognising `<policy-file-request/>` one byte slice at a time.
//!
//! The recogniser is a tiny state machine (two bytes of state) fed with
//! whatever each `read` returned. It never buffers, so per-connection memory
//! does not depend on what a client sends, and it gives its verdict as soon as
//! the bytes seen so far settle it: a wrong byte is rejected at once.
//!
//! Accepted terminators after the tag, for Flash Player and for people
//! debugging with netcat or telnet:
//! * `\0` (what Flash Player and Unity send),
//! * `\n` or `\r\n`,
//! * the client half-closing its side right after the tag (reported through
//!   [`Recogniser::eof`]).

use std::fmt;

/// The exact request Flash Player sends: the tag and one NUL byte (23 bytes).
pub const POLICY_REQUEST: &[u8] = b"<policy-file-request/>\0";

/// The tag without its terminator.
pub const TAG: &[u8] = b"<policy-file-request/>";

/// The most bytes a request can take, terminator included (`tag` + `\r\n`).
/// A reader never needs a buffer larger than this to see a whole request.
pub const MAX_REQUEST_LEN: usize = TAG.len() + 2;

/// What the bytes seen so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A prefix of a valid request: read more.
    NeedMore,
    /// A complete request. `consumed` is how many bytes of the slice just fed
    /// belong to it; bytes after that were sent after the terminator.
    Request {
        /// Bytes of the last slice that belong to the request.
        consumed: usize,
    },
    /// Not a policy request: answer nothing and close.
    Reject(Reject),
}

/// Why a connection's bytes are not a policy request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The byte at `offset` (counted from the connection's first byte) cannot
    /// continue a request.
    UnexpectedByte {
        /// Position of the offending byte in the stream.
        offset: usize,
        /// The offending byte.
        byte: u8,
    },
    /// The client closed its side before the tag was complete.
    Truncated {
        /// How many bytes of the tag had arrived.
        received: usize,
    },
    /// Bytes were fed after a verdict had already been given.
    AfterVerdict,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::UnexpectedByte { offset, byte } => write!(
                f,
                "byte {byte:#04x} at offset {offset} is not part of <policy-file-request/>"
            ),
            Reject::Truncated { received } => write!(
                f,
                "connection closed after {received} of {} request bytes",
                TAG.len()
            ),
            Reject::AfterVerdict => f.write_str("bytes fed after the verdict was given"),
        }
    }
}

impl std::error::Error for Reject {}

/// Incremental request recogniser: feed it every slice a read returns.
///
/// ```
/// use flashpolicy_proto::request::{Recogniser, Verdict};
/// let mut r = Recogniser::new();
/// assert_eq!(r.feed(b"<policy-file-"), Verdict::NeedMore);
/// assert_eq!(r.feed(b"request/>\0"), Verdict::Request { consumed: 10 });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recogniser {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `n` bytes of the tag matched so far (`Tag(0)`: nothing seen yet).
    Tag(u8),
    /// The tag and a `\r` have been seen; only `\n` (or EOF) may follow.
    CarriageReturn,
    /// A verdict has been given.
    Done,
}

impl Default for State {
    fn default() -> Self {
        State::Tag(0)
    }
}

impl Recogniser {
    /// A recogniser that has seen nothing yet.
    pub const fn new() -> Self {
        Recogniser {
            state: State::Tag(0),
        }
    }

    /// Number of request bytes accepted so far.
    pub fn matched(&self) -> usize {
        match self.state {
            State::Tag(n) => n as usize,
            State::CarriageReturn => TAG.len() + 1,
            State::Done => 0,
        }
    }

    /// Feeds the next bytes the client sent.
    ///
    /// Once a verdict has been given, every later call (even with an empty
    /// slice) returns [`Reject::AfterVerdict`].
    pub fn feed(&mut self, bytes: &[u8]) -> Verdict {
        let matched = self.matched();
        let mut i = 0;
        match self.state {
            State::Done => return Verdict::Reject(Reject::AfterVerdict),
            State::Tag(_) if matched < TAG.len() => {
                // Compare the rest of the tag in one go; find the wrong byte
                // only when there is one.
                let rest = &TAG[matched..];
                i = rest.len().min(bytes.len());
                if bytes[..i] != rest[..i] {
                    let j = bytes.iter().zip(rest).take_while(|(a, b)| a == b).count();
                    return self.reject(matched + j, bytes[j]);
                }
                // `matched + i` is at most `TAG.len()`, which fits in a `u8`.
                self.state = State::Tag((matched + i) as u8);
            }
            _ => {}
        }
        // The whole tag has arrived (or the slice ended): at most two
        // terminator bytes are left to decide on.
        for (k, &byte) in bytes[i..].iter().enumerate() {
            let offset = matched + i + k;
            let consumed = i + k + 1;
            match (self.state, byte) {
                (State::CarriageReturn, b'\n') | (State::Tag(_), b'\0' | b'\n') => {
                    self.state = State::Done;
                    return Verdict::Request { consumed };
                }
                (State::Tag(_), b'\r') => self.state = State::CarriageReturn,
                _ => return self.reject(offset, byte),
            }
        }
        Verdict::NeedMore
    }

    /// The client half-closed its side (a read returned 0 bytes).
    ///
    /// A complete tag followed by end of stream counts as a request, so that
    /// `printf '<policy-file-request/>' | nc -N host 843` works.
    pub fn eof(&mut self) -> Verdict {
        let matched = self.matched();
        match self.state {
            State::Done => Verdict::Reject(Reject::AfterVerdict),
            _ if matched >= TAG.len() => {
                self.state = State::Done;
                Verdict::Request { consumed: 0 }
            }
            _ => {
                self.state = State::Done;
                Verdict::Reject(Reject::Truncated { received: matched })
            }
        }
    }

    fn reject(&mut self, offset: usize, byte: u8) -> Verdict {
        self.state = State::Done;
        Verdict::Reject(Reject::UnexpectedByte { offset, byte })
    }
}

/// Recognises a request delivered whole (the client then half-closed or
/// stopped sending). Convenience for tests and tools.
pub fn recognise(bytes: &[u8]) -> Verdict {
    let mut r = Recogniser::new();
    match r.feed(bytes) {
        Verdict::NeedMore => r.eof(),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_request_in_one_read() {
        assert_eq!(
            Recogniser::new().feed(POLICY_REQUEST),
            Verdict::Request { consumed: 23 }
        );
    }

    #[test]
    fn newline_and_crlf_terminators() {
        assert_eq!(
            recognise(b"<policy-file-request/>\n"),
            Verdict::Request { consumed: 23 }
        );
        assert_eq!(
            recognise(b"<policy-file-request/>\r\n"),
            Verdict::Request { consumed: 24 }
        );
        let mut r = Recogniser::new();
        assert_eq!(r.feed(b"<policy-file-request/>\r"), Verdict::NeedMore);
        assert_eq!(r.feed(b"\n"), Verdict::Request { consumed: 1 });
    }

    #[test]
    fn half_close_after_tag() {
        assert_eq!(recognise(TAG), Verdict::Request { consumed: 0 });
        assert_eq!(
            recognise(b"<policy-file-request/>\r"),
            Verdict::Request { consumed: 0 }
        );
    }

    #[test]
    fn rejects_at_the_first_wrong_byte() {
        assert_eq!(
            Recogniser::new().feed(b"GET / HTTP/1.1\r\n"),
            Verdict::Reject(Reject::UnexpectedByte {
                offset: 0,
                byte: b'G'
            })
        );
        let mut r = Recogniser::new();
        assert_eq!(r.feed(b"<policy"), Verdict::NeedMore);
        assert_eq!(
            r.feed(b"-file-reqX"),
            Verdict::Reject(Reject::UnexpectedByte {
                offset: 16,
                byte: b'X'
            })
        );
        assert_eq!(
            recognise(b"<policy-file-request/>x"),
            Verdict::Reject(Reject::UnexpectedByte {
                offset: 22,
                byte: b'x'
            })
        );
        assert_eq!(
            recognise(b"<policy-file-request/>\rx"),
            Verdict::Reject(Reject::UnexpectedByte {
                offset: 23,
                byte: b'x'
            })
        );
    }

    #[test]
    fn truncated_and_empty() {
        assert_eq!(
            recognise(b"<policy"),
            Verdict::Reject(Reject::Truncated { received: 7 })
        );
        assert_eq!(
            recognise(b""),
            Verdict::Reject(Reject::Truncated { received: 0 })
        );
    }

    #[test]
    fn bytes_after_terminator_are_reported_not_consumed() {
        assert_eq!(
            Recogniser::new().feed(b"<policy-file-request/>\0extra"),
            Verdict::Request { consumed: 23 }
        );
    }

    #[test]
    fn nothing_after_a_verdict() {
        let mut r = Recogniser::new();
        assert_eq!(
            r.feed(b"x"),
            Verdict::Reject(Reject::UnexpectedByte {
                offset: 0,
                byte: b'x'
            })
        );
        assert_eq!(
            r.feed(POLICY_REQUEST),
            Verdict::Reject(Reject::AfterVerdict)
        );
        assert_eq!(r.eof(), Verdict::Reject(Reject::AfterVerdict));
        assert_eq!(r.feed(b""), Verdict::Reject(Reject::AfterVerdict));
    }

    #[test]
    fn state_is_tiny() {
        assert!(std::mem::size_of::<Recogniser>() <= 2);
    }
}
