//! Checking replies as they arrive, without a buffer per connection.
//!
//! A reply is compared chunk by chunk against a reference: the `--expect`
//! bytes, or else the first reply this thread validated from the same
//! target (the main port or the `--flash-fallback` port; nearly every server
//! sends the same bytes to everyone). The reference a connection is compared
//! against is fixed for that connection: a target's reference is learned once
//! and never replaced, and a connection whose first byte arrived before it
//! was learned is checked in full on its own. Only a reply that differs from
//! the reference is gathered into a buffer of its own and checked in full:
//! by [`flashpolicy_proto::reply::check_received`], the check
//! `flashpolicy-check` uses too: exactly one NUL, at the end, and a valid
//! policy before it.

use std::fmt;
use std::sync::Arc;

use flashpolicy_proto::reply;

/// Replies longer than this are refused outright (Flash clients read at most
/// a few KB in one read; the proto crate refuses policies over 10 KB).
pub const MAX_REPLY: usize = 64 * 1024;

/// Targets a thread learns a reference for: the main port and the
/// `--flash-fallback` port.
pub const TARGETS: usize = 2;

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

impl From<reply::BadReceived> for BadReply {
    fn from(e: reply::BadReceived) -> BadReply {
        match e {
            reply::BadReceived::Terminator(e) => BadReply::Terminator(e),
            reply::BadReceived::Policy(e) => BadReply::InvalidPolicy(e.to_string()),
        }
    }
}

/// Per-connection progress through a reply: a few words, plus a buffer only
/// for a reply that left the reference's path.
#[derive(Debug, Default)]
pub struct ReplyState {
    len: usize,
    /// Which target's learned reference applies (below [`TARGETS`]).
    target: usize,
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
    /// A reply from target `target` (0: the main port, 1: the fallback port).
    pub fn for_target(target: usize) -> ReplyState {
        ReplyState {
            target: target.min(TARGETS - 1),
            ..ReplyState::default()
        }
    }

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
    /// The first reply validated from each target; empty until then, and
    /// never replaced afterwards, so a connection's reference cannot change
    /// under it.
    learned: [Vec<u8>; TARGETS],
}

impl Checker {
    /// With `expect`, replies must equal it byte for byte; otherwise they
    /// must be a valid policy and one NUL.
    pub fn new(expect: Option<Arc<[u8]>>) -> Checker {
        Checker {
            expect,
            learned: Default::default(),
        }
    }

    fn reference(&self, target: usize) -> &[u8] {
        match &self.expect {
            Some(e) => e,
            None => &self.learned[target],
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
        // Not diverged means every byte so far matched this reference (a
        // learned one is never replaced, and one learned after this reply's
        // first byte is never used for it: that reply diverged at byte 0).
        let reference = self.reference(st.target);
        let rest = reference.get(start..).unwrap_or_default();
        let have = rest.len().min(chunk.len());
        let mismatch = rest[..have].iter().zip(chunk).position(|(a, b)| a != b);
        let diverged = match mismatch {
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
                // Gather this reply to check it in full at the end: the bytes
                // before this chunk are the reference's, which they matched.
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
            reply::check_received(&spill).map_err(BadReply::from)?;
            let learned = &mut self.learned[st.target];
            if learned.is_empty() {
                *learned = spill;
            }
            return Ok(());
        }
        let reference_len = self.reference(st.target).len();
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
                // A prefix of the learned reply: check it as it is, which
                // names the real fault (usually the missing NUL).
                None => {
                    let got = &self.learned[st.target][..st.len];
                    reply::check_received(got).map_err(BadReply::from)?;
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
        c.learned[0] = b"<doc/>\0".to_vec();
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

#[cfg(test)]
mod interleaving {
    use super::*;

    const A: &[u8] = b"<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"843\"/></cross-domain-policy>\0";
    const B: &[u8] = b"<?xml version=\"1.0\"?><cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\"/></cross-domain-policy>\0";

    #[test]
    fn a_reply_in_pieces_keeps_its_reference_while_another_is_validated() {
        let mut c = Checker::new(None);
        let mut first = ReplyState::default();
        c.feed(&mut first, A);
        assert_eq!(c.finish(&mut first), Ok(()));
        // X has the start of A; Y then brings a different valid policy.
        let mut x = ReplyState::default();
        c.feed(&mut x, &A[..10]);
        let mut y = ReplyState::default();
        c.feed(&mut y, B);
        assert_eq!(c.finish(&mut y), Ok(()));
        c.feed(&mut x, &A[10..]);
        assert_eq!(c.finish(&mut x), Ok(()));
        // The first validated reply stays the reference: A takes the fast path.
        let mut z = ReplyState::default();
        c.feed(&mut z, A);
        assert!(z.spill.is_none() && z.diverged.is_none());
        assert_eq!(c.finish(&mut z), Ok(()));
    }

    #[test]
    fn each_target_learns_its_own_reference_once() {
        let mut c = Checker::new(None);
        for _ in 0..3 {
            for (target, body) in [(0, A), (1, B)] {
                let mut st = ReplyState::for_target(target);
                for piece in body.chunks(9) {
                    c.feed(&mut st, piece);
                }
                assert_eq!(c.finish(&mut st), Ok(()));
            }
        }
        assert_eq!(c.learned[0], A);
        assert_eq!(c.learned[1], B);
        // Once learned, neither port's reply leaves the fast path (no
        // buffer, no full validation).
        for (target, body) in [(0, A), (1, B)] {
            let mut st = ReplyState::for_target(target);
            for piece in body.chunks(5) {
                c.feed(&mut st, piece);
            }
            assert!(st.spill.is_none(), "target {target} spilled");
            assert_eq!(c.finish(&mut st), Ok(()));
        }
    }

    #[test]
    fn a_longer_reply_than_the_reference_in_pieces_is_checked_whole() {
        let mut c = Checker::new(None);
        let mut st = ReplyState::default();
        c.feed(&mut st, A);
        assert_eq!(c.finish(&mut st), Ok(()));
        // B is longer than A and differs from byte 1 on.
        let mut st = ReplyState::default();
        for piece in B.chunks(7) {
            c.feed(&mut st, piece);
        }
        assert_eq!(c.finish(&mut st), Ok(()));
        // A corrupted copy of A of the same length is bad, in any pieces.
        let mut bad = A.to_vec();
        bad[A.len() - 3] = b'x';
        let mut st = ReplyState::default();
        for piece in bad.chunks(4) {
            c.feed(&mut st, piece);
        }
        assert!(c.finish(&mut st).is_err());
    }
}
