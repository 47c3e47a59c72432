//! The one response buffer: a policy document followed by exactly one NUL.
//!
//! Built once when a policy is loaded (at start-up, and again for each
//! SIGHUP reload that changes it) and shared read-only by every worker, so
//! answering a connection never copies or allocates: each engine sends this
//! same slice.

use std::fmt;

/// The bytes sent to every client that asks for the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    bytes: Box<[u8]>,
}

/// Why a byte string cannot be (or is not) a policy reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// The document itself contains a NUL byte at `offset`; a client would
    /// stop reading there.
    NulInDocument {
        /// Position of the NUL in the document.
        offset: usize,
    },
    /// A received reply does not end with the NUL terminator.
    MissingTerminator,
    /// A received reply is empty.
    Empty,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::NulInDocument { offset } => {
                write!(f, "the policy contains a NUL byte at offset {offset}")
            }
            ReplyError::MissingTerminator => f.write_str("the reply does not end with a NUL byte"),
            ReplyError::Empty => f.write_str("the reply is empty"),
        }
    }
}

impl std::error::Error for ReplyError {}

impl Reply {
    /// Builds the reply for `document`: its bytes as given, then one NUL.
    pub fn new(document: &[u8]) -> Result<Reply, ReplyError> {
        if let Some(offset) = document.iter().position(|&b| b == 0) {
            return Err(ReplyError::NulInDocument { offset });
        }
        let mut bytes = Vec::with_capacity(document.len() + 1);
        bytes.extend_from_slice(document);
        bytes.push(0);
        Ok(Reply {
            bytes: bytes.into_boxed_slice(),
        })
    }

    /// Everything that goes on the wire, NUL included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The policy document without its terminator.
    pub fn document(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - 1]
    }

    /// Gives the buffer a `'static` lifetime so every worker thread (and every
    /// in-flight io_uring submission) can point at it for the life of the
    /// process. Called once per distinct policy served: at start-up, and for
    /// each reload that brings a policy not served before (the server keeps
    /// one buffer per distinct reply; sends in flight may still point at an
    /// old one, so none is ever freed).
    pub fn leak(self) -> &'static [u8] {
        Box::leak(self.bytes)
    }
}

/// Checks a reply as a client received it (everything until the server
/// closed): exactly one NUL, at the end. Returns the document before it.
pub fn split_received(received: &[u8]) -> Result<&[u8], ReplyError> {
    let (&last, document) = received.split_last().ok_or(ReplyError::Empty)?;
    if last != 0 {
        return Err(ReplyError::MissingTerminator);
    }
    match document.iter().position(|&b| b == 0) {
        Some(offset) => Err(ReplyError::NulInDocument { offset }),
        None => Ok(document),
    }
}

/// Why a received reply is not a good policy reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadReceived {
    /// Not exactly one NUL, at the end.
    Terminator(ReplyError),
    /// The document before the NUL is not a valid policy.
    Policy(crate::policy::PolicyError),
}

impl fmt::Display for BadReceived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReceived::Terminator(e) => write!(f, "bad terminator: {e}"),
            BadReceived::Policy(e) => write!(f, "invalid policy: {e}"),
        }
    }
}

impl std::error::Error for BadReceived {}

/// The check every consumer of replies shares (the load generator, the
/// checker): exactly one NUL, at the end ([`split_received`]), and a valid
/// policy before it ([`crate::policy::validate`]).
pub fn check_received(received: &[u8]) -> Result<crate::policy::Validated, BadReceived> {
    let document = split_received(received).map_err(BadReceived::Terminator)?;
    crate::policy::validate(document).map_err(BadReceived::Policy)
}

/// How many NUL bytes `received` holds, and whether the last byte is one:
/// the terminator defects a checker reports ("no NUL", "2 NULs", "bytes
/// after the NUL").
pub fn nul_count(received: &[u8]) -> (usize, bool) {
    let count = received.iter().filter(|&&b| b == 0).count();
    (count, received.last() == Some(&0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_received_names_the_fault() {
        let good = b"<cross-domain-policy/>\0";
        assert!(check_received(good).is_ok());
        assert!(matches!(
            check_received(b"<cross-domain-policy/>"),
            Err(BadReceived::Terminator(ReplyError::MissingTerminator))
        ));
        assert!(matches!(
            check_received(b"<a/>\0"),
            Err(BadReceived::Policy(_))
        ));
        assert_eq!(nul_count(b"a\0b\0"), (2, true));
        assert_eq!(nul_count(b"a\0b"), (1, false));
    }

    #[test]
    fn appends_exactly_one_nul() {
        let r = Reply::new(b"<cross-domain-policy/>").expect("no NUL");
        assert_eq!(r.as_bytes(), b"<cross-domain-policy/>\0");
        assert_eq!(r.document(), b"<cross-domain-policy/>");
        assert_eq!(split_received(r.as_bytes()), Ok(r.document()));
    }

    #[test]
    fn refuses_nul_inside() {
        assert_eq!(
            Reply::new(b"ab\0c"),
            Err(ReplyError::NulInDocument { offset: 2 })
        );
    }

    #[test]
    fn received_checks() {
        assert_eq!(split_received(b""), Err(ReplyError::Empty));
        assert_eq!(split_received(b"abc"), Err(ReplyError::MissingTerminator));
        assert_eq!(
            split_received(b"a\0\0"),
            Err(ReplyError::NulInDocument { offset: 1 })
        );
    }
}
