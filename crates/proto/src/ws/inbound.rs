//! Frames from the browser (RFC 6455 §5), decoded as a byte stream.
//!
//! The bridge carries one TCP stream, so a binary message is not collected:
//! each frame's payload is unmasked as it arrives and handed on, and the
//! frames of a fragmented message simply follow each other. That keeps a
//! connection's memory at its fixed buffers whatever the frame sizes;
//! [`MAX_FRAME`] still bounds a frame, as a sanity limit (close code 1009).
//!
//! Control frames (close, ping, pong) are at most 125 bytes and unfragmented;
//! their payload is kept in the decoder ([`Control`]) and the decoder stops
//! after each, so the engine can answer (a pong) before going on.
//!
//! A client that breaks the protocol gets a [`Violation`], whose
//! [`Violation::close_code`] the bridge sends in its close frame: an
//! unmasked frame, reserved bits or opcodes (no extension is agreed), a
//! continuation with no message open or a new message inside one, a long
//! or fragmented control frame, a bad close payload, a text frame (1003:
//! the bridge carries bytes; Ruffle sends binary frames only), or a frame
//! over [`MAX_FRAME`].

use std::fmt;
use std::io::Cursor;

use tungstenite::protocol::frame::coding::{Control as Ctl, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The largest data frame accepted (1 MiB). Ruffle sends one frame per
/// `Socket.flush()`, which games keep to a message.
pub const MAX_FRAME: u64 = 1 << 20;

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// A control frame's payload (at most 125 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    bytes: [u8; 125],
    len: u8,
}

impl Payload {
    /// The payload.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({:?})", self.as_slice())
    }
}

/// A complete control frame from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Answer with a pong carrying the same payload.
    Ping(Payload),
    /// Nothing to do.
    Pong,
    /// The client closes; its status code, if it sent one.
    Close(Option<u16>),
}

/// How a client broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A frame header that cannot be parsed.
    BadHeader,
    /// A client frame without a mask.
    Unmasked,
    /// A server frame with a mask ([`Inbound::from_server`]).
    Masked,
    /// RSV1–3 set: no extension was agreed.
    ReservedBits,
    /// A reserved opcode.
    ReservedOpcode,
    /// A control frame over 125 bytes, or fragmented.
    BadControl,
    /// A continuation with no message open, or a new message inside one.
    BadFragment,
    /// A close payload of 1 byte, a code that may not be sent, or a
    /// reason that is not UTF-8.
    BadClose,
    /// A text frame: the bridge carries bytes.
    Text,
    /// A data frame over [`MAX_FRAME`].
    TooBig,
}

impl Violation {
    /// The status code of the close frame that answers it.
    pub const fn close_code(self) -> u16 {
        match self {
            Violation::Text => 1003,
            Violation::TooBig => 1009,
            _ => 1002,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Violation::BadHeader => "bad frame header",
            Violation::Unmasked => "unmasked client frame",
            Violation::Masked => "masked server frame",
            Violation::ReservedBits => "reserved bits set",
            Violation::ReservedOpcode => "reserved opcode",
            Violation::BadControl => "control frame too long or fragmented",
            Violation::BadFragment => "continuation out of place",
            Violation::BadClose => "bad close frame",
            Violation::Text => "text frame (binary only)",
            Violation::TooBig => "frame over the size limit",
        })
    }
}

impl std::error::Error for Violation {}

/// What one [`Inbound::decode`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Input bytes used (the rest is for the next call).
    pub consumed: usize,
    /// Payload bytes written to the output.
    pub written: usize,
    /// A control frame that ended in this call (decoding stopped after it).
    pub control: Option<Control>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Collecting a header.
    Header,
    /// A data frame's payload.
    Data { left: u64, mask: [u8; 4], at: usize },
    /// A control frame's payload.
    Control { op: Ctl, left: usize, mask: [u8; 4] },
    /// A violation or a close frame ended the stream from the client.
    Done,
}

/// The decoder of one peer's frames: a client's (the bridge's side), or a
/// server's ([`Inbound::from_server`], a tester's side).
#[derive(Debug, Clone)]
pub struct Inbound {
    state: State,
    /// Frames come from a client, so they must be masked (else: must not).
    from_client: bool,
    header: [u8; MAX_HEADER],
    have: usize,
    /// A fragmented data message is open.
    in_message: bool,
    control: Payload,
}

impl Default for Inbound {
    fn default() -> Inbound {
        Inbound::new()
    }
}

impl Inbound {
    /// Nothing decoded yet of a client's frames.
    pub const fn new() -> Inbound {
        Inbound {
            state: State::Header,
            from_client: true,
            header: [0; MAX_HEADER],
            have: 0,
            in_message: false,
            control: Payload {
                bytes: [0; 125],
                len: 0,
            },
        }
    }

    /// Nothing decoded yet of a server's frames, which are not masked: the
    /// same rules otherwise (binary only, [`MAX_FRAME`], control frames).
    pub const fn from_server() -> Inbound {
        Inbound {
            from_client: false,
            ..Inbound::new()
        }
    }

    /// A close frame or a violation ended the client's stream: nothing more
    /// is decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Decodes `input`, writing unmasked payload bytes to `out` until the
    /// input is used up, `out` is full, or a control frame ends.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<Decoded, Violation> {
        let mut d = Decoded {
            consumed: 0,
            written: 0,
            control: None,
        };
        loop {
            let rest = &input[d.consumed..];
            match self.state {
                State::Done => return Ok(d),
                State::Header => {
                    if rest.is_empty() {
                        return Ok(d);
                    }
                    d.consumed += self.header_bytes(rest).inspect_err(|_| {
                        self.state = State::Done;
                    })?;
                }
                State::Data { left, mask, at } => {
                    let room = &mut out[d.written..];
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(rest.len())
                        .min(room.len());
                    if n == 0 && left > 0 {
                        return Ok(d);
                    }
                    room[..n].copy_from_slice(&rest[..n]);
                    unmask(&mut room[..n], mask, at);
                    d.consumed += n;
                    d.written += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Data {
                            left,
                            mask,
                            at: at + n,
                        }
                    };
                }
                State::Control { op, left, mask } => {
                    let n = left.min(rest.len());
                    let start = usize::from(self.control.len);
                    let dst = &mut self.control.bytes[start..start + n];
                    dst.copy_from_slice(&rest[..n]);
                    unmask(dst, mask, start);
                    self.control.len += n as u8;
                    d.consumed += n;
                    if n < left {
                        self.state = State::Control {
                            op,
                            left: left - n,
                            mask,
                        };
                        return Ok(d);
                    }
                    let control = self.end_control(op).inspect_err(|_| {
                        self.state = State::Done;
                    })?;
                    d.control = Some(control);
                    return Ok(d);
                }
            }
        }
    }

    /// Takes header bytes from `rest`; on a complete header, moves to its
    /// payload. Returns the bytes taken.
    fn header_bytes(&mut self, rest: &[u8]) -> Result<usize, Violation> {
        let take = (MAX_HEADER - self.have).min(rest.len());
        self.header[self.have..self.have + take].copy_from_slice(&rest[..take]);
        let held = self.have + take;
        let mut cursor = Cursor::new(&self.header[..held]);
        let parsed = FrameHeader::parse(&mut cursor).map_err(|_| {
            // tungstenite refuses reserved opcodes itself.
            match self.header[0] & 0x0f {
                0x3..=0x7 | 0xb..=0xf => Violation::ReservedOpcode,
                _ => Violation::BadHeader,
            }
        })?;
        let Some((header, len)) = parsed else {
            self.have = held;
            return Ok(take);
        };
        // What of `rest` belonged to this header.
        let used = usize::try_from(cursor.position()).unwrap_or(held) - self.have;
        self.have = 0;
        self.start_frame(&header, len)?;
        Ok(used)
    }

    fn start_frame(&mut self, h: &FrameHeader, len: u64) -> Result<(), Violation> {
        if h.rsv1 || h.rsv2 || h.rsv3 {
            return Err(Violation::ReservedBits);
        }
        // A server's frames are unmasked: a zero mask leaves them as they are.
        let mask = match (h.mask, self.from_client) {
            (Some(m), true) => m,
            (None, false) => [0; 4],
            (None, true) => return Err(Violation::Unmasked),
            (Some(_), false) => return Err(Violation::Masked),
        };
        match h.opcode {
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Ctl::Reserved(_)) => {
                Err(Violation::ReservedOpcode)
            }
            OpCode::Data(Data::Text) if !self.in_message => Err(Violation::Text),
            OpCode::Data(data) => {
                let continuation = matches!(data, Data::Continue);
                if continuation != self.in_message {
                    return Err(Violation::BadFragment);
                }
                if len > MAX_FRAME {
                    return Err(Violation::TooBig);
                }
                self.in_message = !h.is_final;
                self.state = if len == 0 {
                    State::Header
                } else {
                    State::Data {
                        left: len,
                        mask,
                        at: 0,
                    }
                };
                Ok(())
            }
            OpCode::Control(op) => {
                if !h.is_final || len > 125 {
                    return Err(Violation::BadControl);
                }
                self.control.len = 0;
                self.state = State::Control {
                    op,
                    left: len as usize,
                    mask,
                };
                Ok(())
            }
        }
    }

    fn end_control(&mut self, op: Ctl) -> Result<Control, Violation> {
        self.state = State::Header;
        match op {
            Ctl::Ping => Ok(Control::Ping(self.control)),
            Ctl::Pong => Ok(Control::Pong),
            Ctl::Close => {
                self.state = State::Done;
                close_code(self.control.as_slice()).map(Control::Close)
            }
            Ctl::Reserved(_) => Err(Violation::ReservedOpcode),
        }
    }
}

/// A close frame's payload: nothing, or a code that may be sent and a
/// UTF-8 reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(Violation::BadClose),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            let sendable = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !sendable || std::str::from_utf8(reason).is_err() {
                return Err(Violation::BadClose);
            }
            Ok(Some(code))
        }
    }
}

/// XORs `buf` with `mask`, `buf[0]` being byte `at` of the payload (masking
/// and unmasking are the same operation).
pub fn unmask(buf: &mut [u8], mask: [u8; 4], at: usize) {
    if mask == [0; 4] {
        return;
    }
    let m = [
        mask[at % 4],
        mask[(at + 1) % 4],
        mask[(at + 2) % 4],
        mask[(at + 3) % 4],
    ];
    let mut chunks = buf.chunks_exact_mut(4);
    for c in &mut chunks {
        c[0] ^= m[0];
        c[1] ^= m[1];
        c[2] ^= m[2];
        c[3] ^= m[3];
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(m) {
        *b ^= k;
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
