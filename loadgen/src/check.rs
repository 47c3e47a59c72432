//! Checking replies as they arrive, without a buffer per connection.
//!
//! A reply is compared chunk by chunk against a reference: the `--expect`
//! bytes, or else the last reply this thread saw validated (nearly every
//! server sends the same bytes to everyone). Only a reply that differs from
//! the known-good one is gathered into a buffer of its own and checked in
//! full: exactly one NUL, at the end ([`flashpolicy_proto::reply::split_received`]),
//! and a valid policy before it ([`flashpolicy_proto::policy::validate`]).

use std::fmt;
use std::sync::Arc;

use flashpolicy_proto::{policy, reply};

/// Replies longer than this are refused outright (Flash clients read at most
/// a few KB in one read; the proto crate refuses policies over 10 KB).
pub const MAX_REPLY: usize = 64 * 1024;

/// Why a reply is not a good one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadReply {
    /// The server closed before sending anything.
    Empty,
    /// Fewer bytes than `--expect` (which the reply matched so far).
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// More bytes than `--expect`, or more than [`MAX_REPLY`].
    TooLong {
        /// Bytes allowed.
        limit: usize,
    },
    /// Differs from `--expect` at this offset.
    Differs {
        /// First differing byte.
        offset: usize,
    },
    /// Not exactly one NUL at the end.
    Terminator(reply::ReplyError),
    /// The document before the NUL is not a valid policy.
    InvalidPolicy(String),
}

impl fmt::Display for BadReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReply::Empty => f.write_str("the server closed without replying"),
            BadReply::Truncated { got, want } => {
                write!(f, "truncated reply: {got} of {want} expected bytes")
            }
            BadReply::TooLong { limit } => write!(f, "reply longer than {limit} bytes"),
            BadReply::Differs { offset } => {
                write!(f, "reply differs from --expect at byte {offset}")
            }
            BadReply::Terminator(e) => write!(f, "bad terminator: {e}"),
            BadReply::InvalidPolicy(e) => write!(f, "invalid policy: {e}"),
        }
    }
}

/// Per-connection progress through a reply: a few words, plus a buffer only
/// for a reply that left the known-good path.
#[derive(Debug, Default)]
pub struct ReplyState {
    len: usize,
    /// The reply no longer matches the reference (with `--expect`: it is bad).
    diverged: Option<DivergedAt>,
    spill: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
enum DivergedAt {
    Offset(usize),
    TooLong,
}

impl ReplyState {
    /// Bytes received so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been received.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Counts `n` bytes that are not checked (clients that asked for nothing).
    pub fn count(&mut self, n: usize) {
        self.len += n;
    }
}

/// One thread's reply checker.
#[derive(Debug)]
pub struct Checker {
    expect: Option<Arc<[u8]>>,
    known_good: Vec<u8>,
}

impl Checker {
    /// With `expect`, replies must equal it byte for byte; otherwise they
    /// must be a valid policy and one NUL.
    pub fn new(expect: Option<Arc<[u8]>>) -> Checker {
        Checker {
            expect,
            known_good: Vec::new(),
        }
    }

    fn reference(&self) -> &[u8] {
        match &self.expect {
            Some(e) => e,
            None => &self.known_good,
        }
    }

    /// Takes the next chunk of a reply.
    pub fn feed(&self, st: &mut ReplyState, chunk: &[u8]) {
        let start = st.len;
        st.len += chunk.len();
        if let Some(spill) = &mut st.spill {
            if spill.len() + chunk.len() > MAX_REPLY {
                st.diverged = Some(DivergedAt::TooLong);
                st.spill = None;
            } else {
                spill.extend_from_slice(chunk);
            }
            return;
        }
        if st.diverged.is_some() {
            return;
        }
        let reference = self.reference();
        let have = reference.len().saturating_sub(start).min(chunk.len());
        let matching = reference[start..start + have]
            .iter()
            .zip(chunk)
            .position(|(a, b)| a != b);
        let diverged = match matching {
            Some(i) => Some(DivergedAt::Offset(start + i)),
            None if have < chunk.len() => {
                if reference.is_empty() {
                    Some(DivergedAt::Offset(0))
                } else {
                    Some(DivergedAt::TooLong)
                }
            }
            None => None,
        };
        if let Some(d) = diverged {
            st.diverged = Some(d);
            if self.expect.is_none() {
                // Gather this reply to check it in full at the end.
                let mut spill = Vec::with_capacity(start + chunk.len());
                spill.extend_from_slice(&reference[..start]);
                spill.extend_from_slice(chunk);
                if spill.len() > MAX_REPLY {
                    st.diverged = Some(DivergedAt::TooLong);
                } else {
                    st.spill = Some(spill);
                }
            }
        }
    }

    /// The server closed: is the reply good?
    pub fn finish(&mut self, st: &mut ReplyState) -> Result<(), BadReply> {
        if st.len == 0 {
            return Err(BadReply::Empty);
        }
        if let Some(spill) = st.spill.take() {
            let document = reply::split_received(&spill).map_err(BadReply::Terminator)?;
            policy::validate(document).map_err(|e| BadReply::InvalidPolicy(e.to_string()))?;
            self.known_good = spill;
            return Ok(());
        }
        let reference_len = self.reference().len();
        match st.diverged {
            Some(DivergedAt::TooLong) => Err(BadReply::TooLong {
                limit: if self.expect.is_some() {
                    reference_len
                } else {
                    MAX_REPLY
                },
            }),
            Some(DivergedAt::Offset(offset)) => Err(BadReply::Differs { offset }),
            None if st.len < reference_len => match &self.expect {
                Some(_) => Err(BadReply::Truncated {
                    got: st.len,
                    want: reference_len,
                }),
                // A prefix of the known-good reply: check it as it is, which
                // names the real fault (usually the missing NUL).
                None => {
                    let got = &self.known_good[..st.len];
                    let document = reply::split_received(got).map_err(BadReply::Terminator)?;
                    policy::validate(document)
                        .map_err(|e| BadReply::InvalidPolicy(e.to_string()))?;
                    Ok(())
                }
            },
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: &mut Checker, chunks: &[&[u8]]) -> Result<(), BadReply> {
        let mut st = ReplyState::default();
        for ch in chunks {
            c.feed(&mut st, ch);
        }
        c.finish(&mut st)
    }

    #[test]
    fn expect_byte_for_byte() {
        let mut c = Checker::new(Some(Arc::from(&b"<p/>\0"[..])));
        assert_eq!(run(&mut c, &[b"<p", b"/>\0"]), Ok(()));
        assert_eq!(
            run(&mut c, &[b"<p/>"]),
            Err(BadReply::Truncated { got: 4, want: 5 })
        );
        assert_eq!(
            run(&mut c, &[b"<p/>\0\0"]),
            Err(BadReply::TooLong { limit: 5 })
        );
        assert_eq!(
            run(&mut c, &[b"<p", b"x>\0"]),
            Err(BadReply::Differs { offset: 2 })
        );
        assert_eq!(run(&mut c, &[]), Err(BadReply::Empty));
    }

    #[test]
    fn without_expect_checks_terminator() {
        let mut c = Checker::new(None);
        assert!(matches!(
            run(&mut c, &[b"<cross-domain-policy/>"]),
            Err(BadReply::Terminator(_))
        ));
        assert!(matches!(
            run(&mut c, &[b"<a/>\0\0"]),
            Err(BadReply::Terminator(_))
        ));
        assert_eq!(run(&mut c, &[]), Err(BadReply::Empty));
    }

    #[test]
    fn known_good_fast_path() {
        // Pretend a reply was validated already.
        let mut c = Checker::new(None);
        c.known_good = b"<doc/>\0".to_vec();
        assert_eq!(run(&mut c, &[b"<do", b"c/>\0"]), Ok(()));
        // A truncated copy of the known-good reply is checked as it is.
        assert!(matches!(
            run(&mut c, &[b"<doc/>"]),
            Err(BadReply::Terminator(_))
        ));
        // An extra byte leaves the fast path and fails the full check.
        assert!(matches!(
            run(&mut c, &[b"<doc/>\0x"]),
            Err(BadReply::Terminator(_))
        ));
    }
}
