//! `--websocket`: the echo test through a WebSocket bridge, as Ruffle
//! reaches a game. A client sends the upgrade request (the connection's
//! `payload`, after a PROXY header if any), waits for a `101` with the
//! right accept key, then sends its echo pattern in masked binary frames
//! and checks what the server's binary frames bring back, exactly as
//! `--payload` checks a plain echo. It then sends a close frame with no
//! status code (as Ruffle's `Socket.close()` does): right after the
//! payload (the bridge half-closes toward the game, which echoes the rest
//! and closes), or with `--no-half-close` once the whole echo is back. The
//! server's close frame ends the client: it must come after the whole echo
//! (any close does then, even one with websockify's code 1005, which the
//! RFC does not allow on the wire: the test is of the relay).
//!
//! Every frame is re-encoded into the thread's send buffer before each
//! write (its header, the pattern, the mask), so a connection holds only
//! its frame's position, whatever the payload's size. The masks are a
//! function of the client's seed and the frame's offset: a load generator
//! needs no unpredictable masks (RFC 6455 §5.3 asks them of browsers,
//! against proxies that cache). Server pings are not answered (neither
//! `flashpolicyd` nor websockify sends any).

use std::io::{self, Read, Write};
use std::time::Instant;

use flashpolicy_proto::ws::inbound::unmask;
use flashpolicy_proto::ws::{
    client_binary_header, client_close, upgrade_request, AnswerReader, Control, Inbound, Violation,
    MAX_CLIENT_HEADER,
};

use super::classify::classify_io;
use super::client::Phase;
use super::echo::{fill, SEND_CHUNK};
use super::event_loop::Worker;
use super::outcome::Outcome;
use crate::stats::ErrorKind;

/// Payload bytes per frame: a frame fills the send buffer.
const FRAME_PAYLOAD: usize = SEND_CHUNK - MAX_CLIENT_HEADER;

/// The frame being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// Nothing is being written.
    None,
    /// A binary frame of the payload bytes `start..start + len`, of which
    /// `written` encoded bytes (header included) are out.
    Data {
        start: u64,
        len: usize,
        written: usize,
    },
    /// The close frame, `written` of its bytes out.
    Close { written: usize },
}

/// One client's WebSocket.
#[derive(Debug)]
pub(super) struct Ws {
    /// Waiting for the server's `101` (`None` once the WebSocket is open).
    answer: Option<Box<AnswerReader>>,
    inbound: Inbound,
    frame: Frame,
    close_sent: bool,
}

/// The request a `--websocket` client sends, and its WebSocket state.
pub(super) fn open(host: &str, origin: Option<&str>) -> (Vec<u8>, Ws) {
    let key = tungstenite::handshake::client::generate_key();
    let request = upgrade_request(host, "/", origin, &key);
    let ws = Ws {
        answer: Some(Box::new(AnswerReader::new(&key))),
        inbound: Inbound::from_server(),
        frame: Frame::None,
        close_sent: false,
    };
    (request, ws)
}

impl Ws {
    /// Whether the `101` has come.
    pub(super) fn is_open(&self) -> bool {
        self.answer.is_none()
    }
}

/// A frame's mask, from the client's seed and the frame's offset.
fn mask_of(seed: u32, start: u64) -> [u8; 4] {
    let x = seed.wrapping_mul(0x9E37_79B1) ^ (start as u32).wrapping_mul(0x85EB_CA6B) ^ 0x5BD1_E995;
    x.to_le_bytes()
}

/// Encodes what is left to write of `frame` (its bytes from `written` on)
/// into `buf` and returns its length: a frame the socket took in part is
/// not generated again from its start.
fn encode(frame: Frame, seed: u32, buf: &mut [u8]) -> usize {
    let mut h = [0u8; MAX_CLIENT_HEADER];
    match frame {
        Frame::None => 0,
        Frame::Data {
            start,
            len,
            written,
        } => {
            let mask = mask_of(seed, start);
            let at = client_binary_header(len, mask, &mut h);
            // The header's unwritten bytes, then the payload's from `skip`.
            let head = h.get(at + written..).unwrap_or(&[]);
            let skip = (written + at).saturating_sub(MAX_CLIENT_HEADER);
            buf[..head.len()].copy_from_slice(head);
            let body = &mut buf[head.len()..head.len() + (len - skip)];
            let n = fill(body, seed, start + skip as u64, (len - skip) as u64);
            unmask(&mut body[..n], mask, skip);
            head.len() + n
        }
        Frame::Close { written } => {
            let at = client_close(mask_of(seed, u64::MAX), &mut h);
            let rest = h.get(at + written..).unwrap_or(&[]);
            buf[..rest.len()].copy_from_slice(rest);
            rest.len()
        }
    }
}

impl Worker {
    /// Writes frames until the payload (and, when due, the close) is out or
    /// the socket is full. Returns false when the connection is gone.
    pub(super) fn ws_send(&mut self, key: usize, now: Instant) -> bool {
        let no_half_close = self.plan.config.no_half_close;
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let (Some(ws), Some(echo)) = (&mut conn.ws, &mut conn.echo) else {
            return true;
        };
        loop {
            if ws.frame == Frame::None {
                ws.frame = if echo.sent < echo.len {
                    let len = usize::try_from(echo.len - echo.sent)
                        .map_or(FRAME_PAYLOAD, |l| l.min(FRAME_PAYLOAD));
                    Frame::Data {
                        start: echo.sent,
                        len,
                        written: 0,
                    }
                } else if !ws.close_sent && (!no_half_close || echo.complete()) {
                    Frame::Close { written: 0 }
                } else {
                    conn.phase = Phase::Receiving;
                    return true;
                };
            }
            let left = encode(ws.frame, echo.seed, &mut self.send_buf);
            let (Frame::Data { written, .. } | Frame::Close { written }) = &mut ws.frame else {
                continue;
            };
            match conn.stream.write(&self.send_buf[..left]) {
                Ok(0) => return true,
                Ok(n) => {
                    *written += n;
                    if n < left {
                        continue;
                    }
                    match ws.frame {
                        Frame::Data { len, .. } => {
                            echo.sent += len as u64;
                            if conn.recorded {
                                self.stats.bytes_sent += len as u64;
                            }
                        }
                        Frame::Close { .. } => ws.close_sent = true,
                        Frame::None => {}
                    }
                    ws.frame = Frame::None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.phase = Phase::Sending;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.conclude(key, Outcome::Failed(classify_io(&e), &e), now);
                    return false;
                }
            }
        }
    }

    /// Reads the server's answer, then its frames, until the socket is
    /// empty or the client is done.
    pub(super) fn ws_receive(&mut self, key: usize, now: Instant) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let n = match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    let why = if conn.ws.as_ref().is_some_and(Ws::is_open) {
                        "the server closed without a close frame".to_string()
                    } else {
                        "the server closed before its upgrade answer ended".to_string()
                    };
                    self.conclude(key, Outcome::Failed(ErrorKind::BadResponse, &why), now);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.conclude(key, Outcome::Failed(classify_io(&e), &e), now);
                    return;
                }
            };
            if conn.first_byte_at.is_none() {
                conn.first_byte_at = Some(now);
            }
            let Some(ws) = &mut conn.ws else {
                return;
            };
            let mut at = 0;
            if let Some(answer) = &mut ws.answer {
                match answer.feed(&self.scratch[..n]) {
                    Ok(None) => continue,
                    Ok(Some(used)) => {
                        ws.answer = None;
                        at = used;
                        // Open: the frames go out now.
                        if !self.ws_send(key, now) {
                            return;
                        }
                    }
                    Err(e) => {
                        self.conclude(key, Outcome::Failed(ErrorKind::BadResponse, &e), now);
                        return;
                    }
                }
            }
            if !self.ws_frames(key, at, n, now) {
                return;
            }
        }
    }

    /// Decodes `scratch[at..end]`. Returns false when the client is done.
    fn ws_frames(&mut self, key: usize, mut at: usize, end: usize, now: Instant) -> bool {
        let no_half_close = self.plan.config.no_half_close;
        while at < end {
            let Some(conn) = self.conns.get_mut(key) else {
                return false;
            };
            let (Some(ws), Some(echo)) = (&mut conn.ws, &mut conn.echo) else {
                return false;
            };
            let decoded = match ws.inbound.decode(&self.scratch[at..end], &mut self.decoded) {
                Ok(d) => d,
                // websockify closes with code 1005, which may not be sent
                // (RFC 6455 §7.4.1): after a whole echo, a close is a close.
                Err(Violation::BadClose) if echo.complete() => {
                    self.conclude(key, Outcome::Ok, now);
                    return false;
                }
                Err(v) => {
                    let why = format!("server frame: {v}");
                    self.conclude(key, Outcome::Failed(ErrorKind::BadResponse, &why), now);
                    return false;
                }
            };
            if decoded.consumed == 0 && decoded.control.is_none() {
                // Nothing more can be decoded (the decoder is done).
                return true;
            }
            at += decoded.consumed;
            if conn.recorded {
                self.stats.bytes_received += decoded.written as u64;
            }
            let was_complete = echo.complete();
            if let Err(bad) = echo.check(&self.decoded[..decoded.written]) {
                self.conclude(key, Outcome::Failed(ErrorKind::BadResponse, &bad), now);
                return false;
            }
            if let Some(Control::Close(_)) = decoded.control {
                match echo.finish() {
                    Ok(()) => self.conclude(key, Outcome::Ok, now),
                    Err(bad) => {
                        self.conclude(key, Outcome::Failed(ErrorKind::BadResponse, &bad), now)
                    }
                }
                return false;
            }
            if no_half_close && !was_complete && echo.complete() && !self.ws_send(key, now) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashpolicy_proto::ws::inbound::Inbound;

    #[test]
    fn frames_decode_on_a_bridge_to_the_pattern() {
        let mut buf = vec![0u8; SEND_CHUNK];
        let frame = Frame::Data {
            start: 1000,
            len: 5000,
            written: 0,
        };
        let n = encode(frame, 7, &mut buf);
        assert_eq!(n, 4 + 4 + 5000);
        let mut out = vec![0u8; 5000];
        let mut bridge = Inbound::new();
        let d = bridge.decode(&buf[..n], &mut out).expect("valid frame");
        assert_eq!(d.written, 5000);
        let mut want = vec![0u8; 5000];
        fill(&mut want, 7, 1000, 5000);
        assert_eq!(out, want);
        let n = encode(Frame::Close { written: 0 }, 7, &mut buf);
        let d = bridge.decode(&buf[..n], &mut out).expect("valid close");
        assert_eq!(d.control, Some(Control::Close(None)));
    }

    #[test]
    fn a_frame_taken_in_part_resumes_where_it_stopped() {
        let mut buf = vec![0u8; SEND_CHUNK];
        for len in [0, 3, 200] {
            let frame = |written| Frame::Data {
                start: 77,
                len,
                written,
            };
            let n = encode(frame(0), 5, &mut buf);
            let whole = buf[..n].to_vec();
            for k in 0..whole.len() {
                let n = encode(frame(k), 5, &mut buf);
                assert_eq!(buf[..n], whole[k..], "len {len}, {k} written");
            }
            let n = encode(Frame::Close { written: 0 }, 5, &mut buf);
            let close = buf[..n].to_vec();
            for k in 0..close.len() {
                let n = encode(Frame::Close { written: k }, 5, &mut buf);
                assert_eq!(buf[..n], close[k..], "close, {k} written");
            }
        }
    }
}
