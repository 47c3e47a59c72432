use super::*;
use proptest::prelude::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(&MASK);
    let mut p = payload.to_vec();
    unmask(&mut p, MASK, 0);
    f.extend_from_slice(&p);
    f
}

const BIN: u8 = 0x82;
const BIN_MORE: u8 = 0x02;
const CONT: u8 = 0x00;
const CONT_END: u8 = 0x80;

/// Decodes everything, `chunk` input bytes at a time into `room`-byte
/// outputs: the stream, the controls, and the violation if any.
fn run(input: &[u8], chunk: usize, room: usize) -> (Vec<u8>, Vec<Control>, Option<Violation>) {
    let mut d = Inbound::new();
    let (mut data, mut controls) = (Vec::new(), Vec::new());
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut out = vec![0u8; room];
    loop {
        if pending.is_empty() && fed < input.len() {
            let end = (fed + chunk).min(input.len());
            pending.extend_from_slice(&input[fed..end]);
            fed = end;
        }
        match d.decode(&pending, &mut out) {
            Ok(r) => {
                data.extend_from_slice(&out[..r.written]);
                controls.extend(r.control);
                pending.drain(..r.consumed);
                if d.is_done() || (pending.is_empty() && fed == input.len()) {
                    return (data, controls, None);
                }
                if r.consumed == 0 && r.written == 0 && r.control.is_none() {
                    // Needs more input than is left.
                    if fed == input.len() {
                        return (data, controls, None);
                    }
                    let end = (fed + chunk).min(input.len());
                    pending.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
            Err(v) => return (data, controls, Some(v)),
        }
    }
}

#[test]
fn binary_frames_become_the_stream() {
    let mut input = frame(BIN, b"hello ");
    input.extend(frame(BIN, &[]));
    input.extend(frame(BIN, &vec![b'x'; 300]));
    let (data, controls, v) = run(&input, input.len(), 4096);
    let mut want = b"hello ".to_vec();
    want.extend(vec![b'x'; 300]);
    assert_eq!((data, controls, v), (want, vec![], None));
}

#[test]
fn fragments_are_reassembled_around_control_frames() {
    let mut input = frame(BIN_MORE, b"ab");
    input.extend(frame(0x89, b"p1")); // a ping between fragments
    input.extend(frame(CONT, b"cd"));
    input.extend(frame(0x8a, b"")); // a pong
    input.extend(frame(CONT_END, b"ef"));
    input.extend(frame(0x88, &[0x03, 0xe8, b'o', b'k']));
    let (data, controls, v) = run(&input, 3, 5);
    assert_eq!(data, b"abcdef");
    let mut ping = Payload {
        bytes: [0; 125],
        len: 2,
    };
    ping.bytes[..2].copy_from_slice(b"p1");
    assert_eq!(
        controls,
        vec![
            Control::Ping(ping),
            Control::Pong,
            Control::Close(Some(1000))
        ]
    );
    assert_eq!(v, None);
}

#[test]
fn a_close_without_a_code_is_a_close() {
    let (_, controls, v) = run(&frame(0x88, &[]), 100, 100);
    assert_eq!((controls, v), (vec![Control::Close(None)], None));
}

#[test]
fn violations_and_their_codes() {
    let mut unmasked = frame(BIN, b"abc");
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    let cases: Vec<(Vec<u8>, Violation, u16)> = vec![
        (unmasked, Violation::Unmasked, 1002),
        (frame(0x81, b"text"), Violation::Text, 1003),
        (frame(0xc2, b"rsv1"), Violation::ReservedBits, 1002),
        (frame(0x83, b""), Violation::ReservedOpcode, 1002),
        (frame(0x8b, b""), Violation::ReservedOpcode, 1002),
        (frame(CONT_END, b"x"), Violation::BadFragment, 1002),
        (
            [frame(BIN_MORE, b"a"), frame(BIN, b"b")].concat(),
            Violation::BadFragment,
            1002,
        ),
        (
            [frame(BIN_MORE, b"a"), frame(0x81, b"b")].concat(),
            Violation::BadFragment,
            1002,
        ),
        (frame(0x89, &[0u8; 126]), Violation::BadControl, 1002),
        (frame(0x09, b"x"), Violation::BadControl, 1002),
        (frame(0x88, &[3]), Violation::BadClose, 1002),
        (frame(0x88, &[0x03, 0xed]), Violation::BadClose, 1002), // 1005 may not be sent
        (frame(0x88, &[0x03, 0xe8, 0xff]), Violation::BadClose, 1002),
    ];
    for (input, want, code) in cases {
        let (_, _, v) = run(&input, input.len(), 64);
        assert_eq!(v, Some(want), "{input:02x?}");
        assert_eq!(want.close_code(), code);
    }
    // Over the limit: refused at the header, before any payload arrives.
    let mut big = vec![BIN, 0x80 | 127];
    big.extend_from_slice(&(MAX_FRAME + 1).to_be_bytes());
    big.extend_from_slice(&MASK);
    assert_eq!(run(&big, big.len(), 64).2, Some(Violation::TooBig));
    assert_eq!(Violation::TooBig.close_code(), 1009);
}

#[test]
fn nothing_is_decoded_after_a_close_or_a_violation() {
    let input = [frame(0x88, &[]), frame(BIN, b"after")].concat();
    let mut d = Inbound::new();
    let mut out = [0u8; 64];
    let r = d.decode(&input, &mut out).expect("close");
    assert_eq!(r.control, Some(Control::Close(None)));
    assert!(d.is_done());
    let again = d.decode(&input[r.consumed..], &mut out).expect("done");
    assert_eq!((again.consumed, again.written), (0, 0));
}

#[test]
fn unmask_at_any_offset_matches_a_whole_unmask() {
    let data: Vec<u8> = (0..=255u8).collect();
    let mut whole = data.clone();
    unmask(&mut whole, MASK, 0);
    for cut in 0..data.len() {
        let mut parts = data.clone();
        let (a, b) = parts.split_at_mut(cut);
        unmask(a, MASK, 0);
        unmask(b, MASK, cut);
        assert_eq!(parts, whole, "{cut}");
    }
}

proptest! {
    #[test]
    fn any_frames_in_any_chunks_give_the_same_stream(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6),
        chunk in 1usize..64,
        room in 1usize..64,
    ) {
        let mut input = Vec::new();
        let last = payloads.len() - 1;
        for (i, p) in payloads.iter().enumerate() {
            // One fragmented message: first BIN_MORE, then CONT, last final.
            let first = match (i == 0, i == last) {
                (true, true) => BIN,
                (true, false) => BIN_MORE,
                (false, true) => CONT_END,
                (false, false) => CONT,
            };
            input.extend(frame(first, p));
        }
        let (data, controls, v) = run(&input, chunk, room);
        prop_assert_eq!(data, payloads.concat());
        prop_assert!(controls.is_empty());
        prop_assert_eq!(v, None);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), room in 1usize..32) {
        let _ = run(&bytes, 7, room);
    }
}
