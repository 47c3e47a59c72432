//! `--gateway`: on a game's own port, policy or relay, decided with no I/O.
//!
//! Flash Player asks the game's port for the policy when port 843 does not
//! answer. A [`Sniff`] watches a gateway connection's first bytes:
//!
//! * while they are a prefix of `<policy-file-request/>\0` it waits (the
//!   engine's `--timeout` deadline applies: [`Sniff::on_deadline`]);
//! * if they complete the request (the same terminators as on port 843:
//!   `\0`, `\n`, `\r\n`, or the tag then end-of-stream) the connection gets
//!   the policy and a clean close, as on 843: [`Step::Policy`];
//! * at the first byte that cannot continue the request the connection is
//!   relayed to the game server: [`Step::Relay`], with the bytes already
//!   received ([`Already`] and the slice just fed) sent first. An XML game
//!   protocol (`<msg t='sys'>…`) diverges at its second byte and relays;
//! * end-of-stream after a bare prefix (say `<` and a half-close) relays
//!   what was received and passes the half-close on ([`Step::Relay`] with
//!   `eof`): a game server sees exactly what the client sent, which is what
//!   it would have seen without the gateway in front;
//! * a client that has sent nothing for `--gateway-wait`
//!   ([`Sniff::on_silence`]) is relayed too, so a game whose server speaks
//!   first gets its banner through. A client that sent part of a request
//!   and then stalls is not: it waits for its deadline like any partial
//!   request.
//!
//! Memory: a `Sniff` is the two-byte request recogniser; the bytes received
//! before the verdict are a prefix of the request (a `&'static` slice, see
//! [`Already::prefix`]) and the last slice read, so an engine that reads at
//! most its fixed buffer while sniffing needs no more than that buffer and
//! [`MAX_REQUEST_LEN`] bytes to replay them.

use std::time::Duration;

use crate::request::{Recogniser, Verdict, MAX_REQUEST_LEN, TAG};

/// `--gateway-wait` when not given: how long a client that has sent nothing
/// waits before it is relayed (its server speaks first). Flash Player sends
/// its policy request at once, so this delays only server-first games, and
/// only their first bytes.
pub const DEFAULT_GATEWAY_WAIT: Duration = Duration::from_secs(1);

/// The tag and the `\r` of a `\r\n` terminator: the longest prefix a
/// connection can have sent before its verdict.
const TAG_CR: &[u8] = b"<policy-file-request/>\r";

/// What a gateway connection's bytes so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A prefix of the request (or nothing yet): read more.
    Wait,
    /// A complete request: send the policy and close cleanly.
    Policy,
    /// Not a policy request: connect to the upstream and relay, first the
    /// bytes already received ([`Already::prefix`], then the whole slice
    /// just fed, if any), then both directions.
    Relay {
        /// The part of the request matched before the slice just fed.
        already: Already,
        /// The client has half-closed: pass it on once `already` is out.
        eof: bool,
    },
    /// `--timeout` passed with a partial request: close.
    TimedOut,
}

/// The bytes of a relayed connection received before its verdict, less the
/// slice fed last: always a prefix of the request, so no copy is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Already {
    prefix: &'static [u8],
}

impl Already {
    /// The request's first bytes the client sent before the slice that
    /// decided the relay; send them upstream first.
    pub const fn prefix(&self) -> &'static [u8] {
        self.prefix
    }
}

/// One gateway connection's first bytes; see the module doc.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sniff {
    recogniser: Recogniser,
    /// Any byte has arrived.
    heard: bool,
    /// A verdict has been given.
    decided: bool,
}

impl Sniff {
    /// A connection that has sent nothing yet.
    pub const fn new() -> Sniff {
        Sniff {
            recogniser: Recogniser::new(),
            heard: false,
            decided: false,
        }
    }

    /// A read returned `bytes`. On [`Step::Relay`] all of `bytes` follows
    /// [`Already::prefix`] to the upstream (bytes after a complete request
    /// are not relayed: that connection is answered and closed).
    pub fn on_bytes(&mut self, bytes: &[u8]) -> Step {
        if self.decided {
            return Step::Wait;
        }
        if bytes.is_empty() {
            return Step::Wait;
        }
        self.heard = true;
        let already = self.already();
        match self.recogniser.feed(bytes) {
            Verdict::NeedMore => Step::Wait,
            Verdict::Request { .. } => self.decide(Step::Policy),
            Verdict::Reject(_) => self.decide(Step::Relay {
                already,
                eof: false,
            }),
        }
    }

    /// A read returned end-of-stream: the policy after a whole tag, else a
    /// relay of what came (possibly nothing) and the half-close.
    pub fn on_eof(&mut self) -> Step {
        if self.decided {
            return Step::Wait;
        }
        let already = self.already();
        match self.recogniser.eof() {
            Verdict::Request { .. } => self.decide(Step::Policy),
            _ => self.decide(Step::Relay { already, eof: true }),
        }
    }

    /// `--gateway-wait` passed: a client that has sent nothing is relayed
    /// (its server speaks first); one that sent part of a request waits on.
    pub fn on_silence(&mut self) -> Step {
        if self.decided || self.heard {
            return Step::Wait;
        }
        let already = self.already();
        self.decide(Step::Relay {
            already,
            eof: false,
        })
    }

    /// `--timeout` passed before a verdict.
    pub fn on_deadline(&mut self) -> Step {
        if self.decided {
            return Step::Wait;
        }
        self.decide(Step::TimedOut)
    }

    /// Whether any byte has arrived.
    pub const fn heard(&self) -> bool {
        self.heard
    }

    /// Whether a verdict other than [`Step::Wait`] has been given.
    pub const fn decided(&self) -> bool {
        self.decided
    }

    fn decide(&mut self, step: Step) -> Step {
        self.decided = true;
        step
    }

    fn already(&self) -> Already {
        let matched = self.recogniser.matched().min(MAX_REQUEST_LEN);
        let prefix = if matched <= TAG.len() {
            &TAG[..matched]
        } else {
            TAG_CR
        };
        Already { prefix }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::POLICY_REQUEST;

    #[test]
    fn the_whole_request_gets_the_policy() {
        assert_eq!(Sniff::new().on_bytes(POLICY_REQUEST), Step::Policy);
    }

    #[test]
    fn an_xml_game_protocol_relays_from_its_first_byte() {
        let mut s = Sniff::new();
        let msg = b"<msg t='sys'><body action='verChk'/></msg>\0";
        match s.on_bytes(msg) {
            Step::Relay { already, eof } => {
                assert_eq!(already.prefix(), b"");
                assert!(!eof);
            }
            other => panic!("{other:?}"),
        }
        assert!(s.decided());
    }

    #[test]
    fn a_prefix_then_other_bytes_relays_the_prefix_first() {
        let mut s = Sniff::new();
        assert_eq!(s.on_bytes(b"<pol"), Step::Wait);
        assert_eq!(
            s.on_bytes(b"ka"),
            Step::Relay {
                already: Already { prefix: b"<pol" },
                eof: false
            }
        );
    }

    #[test]
    fn a_carriage_return_then_a_wrong_byte_relays_it_too() {
        let mut s = Sniff::new();
        assert_eq!(s.on_bytes(b"<policy-file-request/>\r"), Step::Wait);
        match s.on_bytes(b"x") {
            Step::Relay { already, .. } => assert_eq!(already.prefix(), TAG_CR),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_prefix_then_end_of_stream_relays_and_half_closes() {
        let mut s = Sniff::new();
        assert_eq!(s.on_bytes(b"<"), Step::Wait);
        assert_eq!(
            s.on_eof(),
            Step::Relay {
                already: Already { prefix: b"<" },
                eof: true
            }
        );
    }

    #[test]
    fn the_tag_then_end_of_stream_is_a_request() {
        let mut s = Sniff::new();
        assert_eq!(s.on_bytes(TAG), Step::Wait);
        assert_eq!(s.on_eof(), Step::Policy);
    }

    #[test]
    fn silence_relays_only_a_client_that_sent_nothing() {
        let mut quiet = Sniff::new();
        assert!(matches!(quiet.on_silence(), Step::Relay { eof: false, .. }));
        let mut partial = Sniff::new();
        assert_eq!(partial.on_bytes(b"<policy"), Step::Wait);
        assert_eq!(partial.on_silence(), Step::Wait);
        assert_eq!(partial.on_deadline(), Step::TimedOut);
    }

    #[test]
    fn after_a_verdict_nothing_changes() {
        let mut s = Sniff::new();
        assert_eq!(s.on_bytes(POLICY_REQUEST), Step::Policy);
        assert_eq!(s.on_bytes(b"x"), Step::Wait);
        assert_eq!(s.on_eof(), Step::Wait);
        assert_eq!(s.on_silence(), Step::Wait);
        assert_eq!(s.on_deadline(), Step::Wait);
    }

    #[test]
    fn a_sniff_is_small() {
        assert!(std::mem::size_of::<Sniff>() <= 4);
    }
}
