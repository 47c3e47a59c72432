//! Property tests of the request recogniser against a plain reference
//! (an oracle written from the protocol's definition, not from the state
//! machine): every split of every valid request is recognised exactly once,
//! every other byte string is rejected within `MAX_REQUEST_LEN` bytes at the
//! first byte that cannot continue a request, and nothing ever panics.

use flashpolicy_proto::request::{Recogniser, Reject, Verdict, MAX_REQUEST_LEN, TAG};
use proptest::prelude::*;

/// The byte-terminated requests (the half-close form is tested apart).
fn requests() -> Vec<Vec<u8>> {
    [&b"\0"[..], b"\n", b"\r\n"]
        .iter()
        .map(|t| [TAG, t].concat())
        .collect()
}

/// What the whole stream `s` amounts to, by definition.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    /// A request ends at this offset.
    Request(usize),
    /// The byte at this offset cannot continue any request.
    Reject(usize),
    /// `s` is a proper prefix of a request.
    Incomplete,
}

fn oracle(s: &[u8]) -> Expected {
    let all = requests();
    if let Some(r) = all.iter().find(|r| s.starts_with(r)) {
        return Expected::Request(r.len());
    }
    let common = all
        .iter()
        .map(|r| r.iter().zip(s).take_while(|(a, b)| a == b).count())
        .max()
        .unwrap_or(0);
    if common < s.len() {
        Expected::Reject(common)
    } else {
        Expected::Incomplete
    }
}

/// Feeds `s` cut at `cuts` (offsets, any order, duplicates allowed) and
/// returns the first verdict with its absolute offset, checking that every
/// slice fed after it gets `AfterVerdict`. `None`: every slice said NeedMore.
fn feed_split(s: &[u8], cuts: &[usize]) -> (Recogniser, Option<(usize, Verdict)>) {
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(s.len())).collect();
    bounds.push(0);
    bounds.push(s.len());
    bounds.sort_unstable();
    let mut r = Recogniser::new();
    let mut first = None;
    for pair in bounds.windows(2) {
        let piece = &s[pair[0]..pair[1]];
        let verdict = r.feed(piece);
        match first {
            None if verdict == Verdict::NeedMore => {}
            None => first = Some((pair[0], verdict)),
            Some(_) => assert_eq!(verdict, Verdict::Reject(Reject::AfterVerdict)),
        }
    }
    (r, first)
}

/// Checks the recogniser on `s` split at `cuts` against the oracle.
fn check(s: &[u8], cuts: &[usize]) {
    let (mut r, first) = feed_split(s, cuts);
    match (oracle(s), first) {
        (Expected::Request(end), Some((start, Verdict::Request { consumed }))) => {
            assert_eq!(
                start + consumed,
                end,
                "request end for {s:?} cut at {cuts:?}"
            );
            assert!(end <= MAX_REQUEST_LEN);
        }
        (
            Expected::Reject(at),
            Some((_, Verdict::Reject(Reject::UnexpectedByte { offset, byte }))),
        ) => {
            assert_eq!(offset, at, "reject offset for {s:?} cut at {cuts:?}");
            assert_eq!(byte, s[at]);
            assert!(offset < MAX_REQUEST_LEN);
        }
        (Expected::Incomplete, None) => {
            let after_eof = r.eof();
            if s == TAG || s == [TAG, b"\r"].concat() {
                assert_eq!(after_eof, Verdict::Request { consumed: 0 });
            } else {
                assert_eq!(
                    after_eof,
                    Verdict::Reject(Reject::Truncated { received: s.len() })
                );
            }
        }
        (expected, got) => panic!("{s:?} cut at {cuts:?}: expected {expected:?}, got {got:?}"),
    }
}

#[test]
fn every_split_into_up_to_three_pieces_of_every_request() {
    let mut streams = requests();
    streams.extend(
        requests()
            .into_iter()
            .map(|r| [r, b"trailing".to_vec()].concat()),
    );
    for s in &streams {
        for a in 0..=s.len() {
            for b in a..=s.len() {
                check(s, &[a, b]);
            }
        }
    }
}

#[test]
fn byte_by_byte_with_every_terminator() {
    for s in requests() {
        let cuts: Vec<usize> = (0..=s.len()).collect();
        check(&s, &cuts);
    }
    // Half-close right after the tag, fed byte by byte.
    let mut r = Recogniser::new();
    for &b in TAG {
        assert_eq!(r.feed(&[b]), Verdict::NeedMore);
    }
    assert_eq!(r.eof(), Verdict::Request { consumed: 0 });
}

#[test]
fn every_single_byte_change_of_the_request_is_rejected_there() {
    for s in requests() {
        for at in 0..s.len() {
            for byte in 0..=255u8 {
                let mut changed = s.clone();
                changed[at] = byte;
                check(&changed, &[]);
                check(&changed, &[at]);
            }
        }
    }
}

/// Byte strings near the request: a valid prefix, then often a wrong byte,
/// then anything. Plain random bytes almost never get past the first byte.
fn near_request() -> impl Strategy<Value = Vec<u8>> {
    let all = requests();
    (
        0..all.len(),
        0..=MAX_REQUEST_LEN,
        proptest::option::weighted(0.8, any::<u8>()),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(move |(which, keep, wrong, tail)| {
            let r = &all[which];
            let mut s = r[..keep.min(r.len())].to_vec();
            s.extend(wrong);
            s.extend(tail);
            s
        })
}

fn any_stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        near_request(),
        proptest::collection::vec(any::<u8>(), 0..64),
        requests_with_tail(),
    ]
}

fn requests_with_tail() -> impl Strategy<Value = Vec<u8>> {
    let all = requests();
    (0..all.len(), proptest::collection::vec(any::<u8>(), 0..16))
        .prop_map(move |(which, tail)| [all[which].clone(), tail].concat())
}

/// An operation on a recogniser, for the no-panic property.
#[derive(Debug, Clone)]
enum Op {
    Feed(Vec<u8>),
    Eof,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_split_of_a_valid_request_yields_exactly_one_request(
        s in requests_with_tail(),
        cuts in proptest::collection::vec(0..64usize, 0..30),
    ) {
        check(&s, &cuts);
    }

    #[test]
    fn anything_else_is_rejected_at_its_first_wrong_byte(
        s in any_stream(),
        cuts in proptest::collection::vec(0..64usize, 0..10),
    ) {
        check(&s, &cuts);
    }

    #[test]
    fn a_verdict_never_needs_more_than_max_request_len_bytes(s in any_stream()) {
        let head = &s[..s.len().min(MAX_REQUEST_LEN)];
        let verdict = Recogniser::new().feed(head);
        if head.len() == MAX_REQUEST_LEN {
            prop_assert_ne!(verdict, Verdict::NeedMore);
        }
        if let Verdict::Request { consumed } = verdict {
            prop_assert!(consumed <= head.len());
        }
    }

    #[test]
    fn never_panics_on_any_sequence_of_feeds_and_eofs(
        ops in proptest::collection::vec(
            prop_oneof![
                4 => proptest::collection::vec(any::<u8>(), 0..32).prop_map(Op::Feed),
                4 => near_request().prop_map(Op::Feed),
                1 => Just(Op::Eof),
            ],
            0..12,
        )
    ) {
        let mut r = Recogniser::new();
        let mut decided = false;
        for op in ops {
            let verdict = match op {
                Op::Feed(bytes) => {
                    let v = r.feed(&bytes);
                    if let Verdict::Request { consumed } = v {
                        prop_assert!(consumed <= bytes.len());
                    }
                    v
                }
                Op::Eof => r.eof(),
            };
            if decided {
                prop_assert_eq!(verdict, Verdict::Reject(Reject::AfterVerdict));
            }
            decided |= verdict != Verdict::NeedMore;
            prop_assert!(r.matched() <= MAX_REQUEST_LEN);
        }
    }
}
