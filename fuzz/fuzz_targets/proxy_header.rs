//! Feeds arbitrary bytes to the PROXY header reader in chunks whose sizes
//! the input chooses, and checks that the outcome does not depend on the
//! chunking, that a header is never longer than the protocol allows, and
//! that every call after the verdict says `AfterVerdict`.
#![no_main]

use flashpolicy_proto::proxy::{HeaderReader, Invalid, Step, V1_MAX_LEN};
use libfuzzer_sys::fuzz_target;

/// The longest v2 header: the fixed part and a 16-bit length.
const V2_MAX_LEN: usize = 16 + u16::MAX as usize;

/// Feeds `stream` in chunks; the verdict with its offset counted from the
/// stream's start, or `None` if more bytes are needed.
fn run(stream: &[u8], pattern: u8) -> (Option<Step>, HeaderReader) {
    let mut r = HeaderReader::new();
    let mut offset = 0;
    let mut chunk = 0u32;
    while offset < stream.len() {
        let size = if pattern == 0 {
            stream.len()
        } else {
            1 + (usize::from(pattern.rotate_left(chunk % 8)) % 61)
        };
        let piece = &stream[offset..stream.len().min(offset + size)];
        match r.feed(piece) {
            Step::NeedMore => {}
            Step::Header { client, consumed } => {
                assert!(consumed <= piece.len());
                return (
                    Some(Step::Header {
                        client,
                        consumed: offset + consumed,
                    }),
                    r,
                );
            }
            invalid => return (Some(invalid), r),
        }
        offset += piece.len();
        chunk += 1;
    }
    (None, r)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pattern, stream)) = data.split_first() else {
        return;
    };
    let (whole, _) = run(stream, 0);
    let (chunked, mut r) = run(stream, pattern);
    assert_eq!(chunked, whole, "chunking changed the outcome");
    match chunked {
        Some(Step::Header { consumed, .. }) => {
            let max = if stream[0] == b'P' { V1_MAX_LEN } else { V2_MAX_LEN };
            assert!(consumed <= max);
            assert_eq!(r.feed(b"x"), Step::Invalid(Invalid::AfterVerdict));
        }
        Some(Step::Invalid(_)) => {
            assert_eq!(r.feed(b"x"), Step::Invalid(Invalid::AfterVerdict));
        }
        Some(Step::NeedMore) => panic!("NeedMore returned as a verdict"),
        None => {
            // Still incomplete: within the longest header.
            assert!(stream.len() < V2_MAX_LEN);
            assert!(matches!(r.eof(), Step::Invalid(Invalid::Truncated { .. })));
        }
    }
});
