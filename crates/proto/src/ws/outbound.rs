//! Frames to the browser: unmasked, binary for data (Ruffle drops text
//! frames), and the control frames the bridge sends (pong, close).

use tungstenite::protocol::frame::coding::{Control as Ctl, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The longest header of a server frame: 2 bytes and an 8-byte length.
pub const MAX_SERVER_HEADER: usize = 10;

/// The most bytes one control frame from the bridge takes (header and a
/// 125-byte payload).
pub const MAX_CONTROL_FRAME: usize = 2 + 125;

/// Writes the header of a final binary frame of `len` payload bytes at the
/// end of `out` and returns where it starts: a payload read into the bytes
/// right after `out` then follows it with no copy.
pub fn binary_header(len: usize, out: &mut [u8; MAX_SERVER_HEADER]) -> usize {
    header(OpCode::Data(Data::Binary), len, None, out)
}

/// Writes the header of a final frame at the end of `out` and returns where
/// it starts (`N` is room for the longest header: 10 bytes, 14 masked).
pub(crate) fn header<const N: usize>(
    opcode: OpCode,
    len: usize,
    mask: Option<[u8; 4]>,
    out: &mut [u8; N],
) -> usize {
    let h = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
    };
    let n = h.len(len as u64);
    let Some(start) = N.checked_sub(n) else {
        return N;
    };
    // A header of `n` bytes fits the last `n` bytes of the array exactly.
    let mut dst = &mut out[start..];
    if h.format(len as u64, &mut dst).is_err() {
        return N;
    }
    start
}

/// Appends a pong answering a ping with `payload` (at most 125 bytes).
pub fn push_pong(payload: &[u8], out: &mut Vec<u8>) {
    let payload = &payload[..payload.len().min(125)];
    let mut h = [0u8; MAX_SERVER_HEADER];
    let start = header(OpCode::Control(Ctl::Pong), payload.len(), None, &mut h);
    out.extend_from_slice(&h[start..]);
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` (and no reason).
pub fn push_close(code: u16, out: &mut Vec<u8>) {
    let mut h = [0u8; MAX_SERVER_HEADER];
    let start = header(OpCode::Control(Ctl::Close), 2, None, &mut h);
    out.extend_from_slice(&h[start..]);
    out.extend_from_slice(&code.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_headers_use_the_shortest_length() {
        let mut h = [0u8; MAX_SERVER_HEADER];
        let s = binary_header(5, &mut h);
        assert_eq!(&h[s..], &[0x82, 5]);
        let s = binary_header(126, &mut h);
        assert_eq!(&h[s..], &[0x82, 126, 0, 126]);
        let s = binary_header(70_000, &mut h);
        assert_eq!(&h[s..], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        let s = binary_header(0, &mut h);
        assert_eq!(&h[s..], &[0x82, 0]);
    }

    #[test]
    fn control_frames() {
        let mut out = Vec::new();
        push_pong(b"hi", &mut out);
        push_close(1000, &mut out);
        assert_eq!(out, [0x8a, 2, b'h', b'i', 0x88, 2, 0x03, 0xe8]);
        let mut out = Vec::new();
        push_pong(&[7u8; 125], &mut out);
        assert_eq!(out.len(), MAX_CONTROL_FRAME);
    }
}
