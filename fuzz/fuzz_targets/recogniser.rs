//! Feeds arbitrary bytes to the request recogniser in chunks whose sizes the
//! input chooses, and checks that the verdict does not depend on the chunking,
//! that nothing is ever decided past `MAX_REQUEST_LEN` bytes, and that every
//! call after the verdict says `AfterVerdict`.
#![no_main]

use flashpolicy_proto::request::{recognise, Recogniser, Reject, Verdict, MAX_REQUEST_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: the chunking pattern; the rest: what the client sent.
    let Some((&pattern, stream)) = data.split_first() else {
        return;
    };
    let whole = recognise(stream);

    let mut r = Recogniser::new();
    let mut offset = 0;
    let mut decided = None;
    let mut chunk = 0u32;
    while offset < stream.len() {
        let size = 1 + (usize::from(pattern.rotate_left(chunk % 8)) % 7);
        let piece = &stream[offset..stream.len().min(offset + size)];
        let verdict = r.feed(piece);
        match (decided, verdict) {
            (Some(_), v) => assert_eq!(v, Verdict::Reject(Reject::AfterVerdict)),
            (None, Verdict::NeedMore) => {}
            (None, Verdict::Request { consumed }) => {
                assert!(consumed <= piece.len());
                decided = Some(Verdict::Request {
                    consumed: offset + consumed,
                });
            }
            (None, v) => decided = Some(v),
        }
        offset += piece.len();
        chunk += 1;
    }
    let chunked = match decided {
        Some(v) => v,
        None => r.eof(),
    };
    assert_eq!(chunked, whole, "chunking changed the verdict");
    match whole {
        Verdict::Request { consumed } => assert!(consumed <= MAX_REQUEST_LEN),
        Verdict::Reject(Reject::UnexpectedByte { offset, .. }) => {
            assert!(offset < MAX_REQUEST_LEN)
        }
        Verdict::Reject(Reject::Truncated { received }) => assert!(received <= MAX_REQUEST_LEN),
        Verdict::Reject(Reject::AfterVerdict) | Verdict::NeedMore => {
            panic!("impossible verdict for a whole stream: {whole:?}")
        }
    }
    assert_eq!(r.eof(), Verdict::Reject(Reject::AfterVerdict));
});
