//! Property tests of `--gateway`'s decision: every split of the request
//! gets the policy; any other bytes are relayed whole and in order.

use flashpolicy_proto::request::{MAX_REQUEST_LEN, POLICY_REQUEST};
use flashpolicy_proto::serve::{Sniff, Step};
use proptest::prelude::*;

/// Feeds `bytes` in the pieces `cuts` makes; returns the verdict and, for a
/// relay, the bytes the engine would send upstream first.
fn feed_split(bytes: &[u8], cuts: &[usize], eof: bool) -> (Step, Vec<u8>) {
    let mut sniff = Sniff::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    for w in cuts.windows(2) {
        let slice = &bytes[w[0]..w[1]];
        match sniff.on_bytes(slice) {
            Step::Wait => {}
            Step::Relay { already, eof } => {
                assert!(!eof);
                assert!(already.prefix().len() <= MAX_REQUEST_LEN);
                let mut sent = already.prefix().to_vec();
                // The engine relays the rest of the slice, then the stream.
                sent.extend_from_slice(&bytes[w[0]..]);
                return (Step::Relay { already, eof }, sent);
            }
            other => return (other, Vec::new()),
        }
    }
    if eof {
        match sniff.on_eof() {
            Step::Relay { already, eof } => {
                (Step::Relay { already, eof }, already.prefix().to_vec())
            }
            other => (other, Vec::new()),
        }
    } else {
        (Step::Wait, Vec::new())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// However the request is cut into reads, it gets the policy.
    #[test]
    fn every_split_of_the_request_gets_the_policy(
        cuts in proptest::collection::vec(0usize..64, 0..24),
    ) {
        prop_assert_eq!(feed_split(POLICY_REQUEST, &cuts, false).0, Step::Policy);
    }

    /// Bytes that are not a prefix of the request are relayed: all of
    /// them, in order, however they were cut.
    #[test]
    fn anything_else_relays_every_byte_in_order(
        bytes in proptest::collection::vec(any::<u8>(), 1..200),
        cuts in proptest::collection::vec(0usize..256, 0..16),
    ) {
        prop_assume!(!POLICY_REQUEST.starts_with(&bytes));
        prop_assume!(!bytes.starts_with(b"<policy-file-request/>"));
        let (step, sent) = feed_split(&bytes, &cuts, true);
        prop_assert!(matches!(step, Step::Relay { .. }), "{:?}", step);
        prop_assert_eq!(sent, bytes);
    }

    /// A prefix of the request then other bytes: the prefix goes first.
    #[test]
    fn a_prefix_then_other_bytes_relays_them_all(
        len in 0usize..POLICY_REQUEST.len() - 1,
        tail in proptest::collection::vec(any::<u8>(), 1..64),
        cuts in proptest::collection::vec(0usize..128, 0..8),
    ) {
        let mut bytes = POLICY_REQUEST[..len].to_vec();
        bytes.extend_from_slice(&tail);
        prop_assume!(!bytes.starts_with(b"<policy-file-request/>"));
        prop_assume!(!POLICY_REQUEST.starts_with(&bytes));
        let (step, sent) = feed_split(&bytes, &cuts, true);
        prop_assert!(matches!(step, Step::Relay { .. }), "{:?}", step);
        prop_assert_eq!(sent, bytes);
    }

    /// A bare prefix then end-of-stream relays the prefix and the half-close.
    #[test]
    fn a_bare_prefix_then_eof_relays_it(len in 0usize..POLICY_REQUEST.len() - 1) {
        let mut sniff = Sniff::new();
        let prefix = &POLICY_REQUEST[..len];
        prop_assert_eq!(sniff.on_bytes(prefix), Step::Wait);
        match sniff.on_eof() {
            Step::Relay { already, eof } => {
                prop_assert!(eof);
                prop_assert_eq!(already.prefix(), prefix);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
