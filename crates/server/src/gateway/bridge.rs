//! `--websocket`: one bridged connection's bytes, moved between a browser's
//! WebSocket and its TCP connection to the game. Every decision (frames,
//! violations, the closing handshake) is `flashpolicy_proto::ws`'s; this
//! file only reads, writes and keeps the buffers.
//!
//! Memory is fixed per connection: [`BUF`] bytes of raw frames from the
//! browser, [`BUF`] of unmasked payload toward the game, one frame of at
//! most [`BUF`] toward the browser, and control frames (pongs, the close)
//! held to [`CTRL_MAX`]. A full buffer stops the read that fills it, so
//! TCP's window pushes back on whoever sends too fast; nothing grows with
//! what a client sends or holds. The sockets are registered edge-triggered
//! for both directions once, and [`Bridge::pump`] moves everything that
//! can move, as the splice relay does.
//!
//! The bridge copies (unmasking and framing need the bytes in user space):
//! unlike `--gateway` there is no zero-copy path for a WebSocket.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use flashpolicy_proto::ws::{
    binary_header, push_close, push_pong, Act, Closing, Control, Inbound, MAX_SERVER_HEADER,
};
use mio::net::TcpStream;

use crate::relay::{linger_zero, Moved2, Progress};

/// Each buffer's size.
pub(crate) const BUF: usize = 16 * 1024;

/// The most control-frame bytes held for the browser; past it the
/// browser's frames are not decoded (its pings wait) until they drain.
const CTRL_MAX: usize = 1024;

/// One bridged connection's buffers and state.
#[derive(Debug)]
pub(crate) struct Bridge {
    /// Raw bytes from the browser, not yet decoded.
    inbuf: Box<[u8]>,
    in_len: usize,
    /// Unmasked payload for the game: `up[up_pos..up_len]` is left to write.
    up: Box<[u8]>,
    up_pos: usize,
    up_len: usize,
    /// Written to the game before any payload (a PROXY header).
    first_up: Vec<u8>,
    /// One frame for the browser: `down[down_pos..down_end]` is left.
    down: Box<[u8]>,
    down_pos: usize,
    down_end: usize,
    /// The payload bytes of the frame in `down`.
    down_payload: usize,
    /// Some of the frame in `down` has been written.
    down_started: bool,
    /// The 101 response, pongs and the close frame, ahead of `down`.
    ctrl: Vec<u8>,
    ctrl_pos: usize,
    /// The end of the close frame in `ctrl`, once queued.
    close_at: Option<usize>,
    decoder: Inbound,
    closing: Closing,
    /// The game is to get a FIN once `up` is written.
    shut_up: bool,
    upstream_shut: bool,
    upstream_failed: bool,
    finished: bool,
    /// The close-wait deadline is armed (see [`Bridge::awaits_client`]).
    pub(crate) armed: bool,
    moved: Moved2,
}

impl Bridge {
    /// A bridge that sends `response` (the 101) first, `first_up` to the
    /// game first, and decodes `early` (frames that came with the upgrade).
    pub(crate) fn new(response: Vec<u8>, first_up: Vec<u8>, early: &[u8]) -> Bridge {
        let mut inbuf = vec![0u8; BUF].into_boxed_slice();
        let n = early.len().min(BUF);
        inbuf[..n].copy_from_slice(&early[..n]);
        Bridge {
            inbuf,
            in_len: n,
            up: vec![0u8; BUF].into_boxed_slice(),
            up_pos: 0,
            up_len: 0,
            first_up,
            down: vec![0u8; MAX_SERVER_HEADER + BUF].into_boxed_slice(),
            down_pos: 0,
            down_end: 0,
            down_payload: 0,
            down_started: false,
            ctrl: response,
            ctrl_pos: 0,
            close_at: None,
            decoder: Inbound::new(),
            closing: Closing::new(),
            shut_up: false,
            upstream_shut: false,
            upstream_failed: false,
            finished: false,
            armed: false,
            moved: Moved2::default(),
        }
    }

    /// Payload bytes moved each way.
    pub(crate) fn moved(&self) -> Moved2 {
        self.moved
    }

    /// The bridge's close frame is out and the browser's is awaited.
    pub(crate) fn awaits_client(&self) -> bool {
        self.closing.awaits_client()
    }

    fn act(&mut self, act: Act) {
        match act {
            Act::Go => {}
            Act::ShutUpstream => self.shut_up = true,
            Act::SendClose(code) => {
                if !self.down_started {
                    // A frame not started yet is dropped: nothing follows a close.
                    self.down_pos = 0;
                    self.down_end = 0;
                }
                push_close(code, &mut self.ctrl);
                self.close_at = Some(self.ctrl.len());
            }
            Act::Finish => self.finished = true,
        }
    }

    /// Moves everything that can move now.
    pub(crate) fn pump<C: Read + Write>(
        &mut self,
        client: &mut C,
        upstream: &TcpStream,
    ) -> Progress {
        match self.pump_inner(client, upstream) {
            Ok(()) if self.finished => Progress::Closed,
            Ok(()) => Progress::Open,
            Err(_) => {
                // The browser's side failed (reset, broken pipe): the game
                // sees a reset too.
                linger_zero(upstream);
                Progress::Aborted
            }
        }
    }

    fn pump_inner<C: Read + Write>(
        &mut self,
        client: &mut C,
        upstream: &TcpStream,
    ) -> io::Result<()> {
        loop {
            let mut progress = false;
            progress |= self.read_client(client)?;
            progress |= self.decode();
            progress |= self.write_upstream(upstream);
            progress |= self.read_upstream(upstream);
            progress |= self.write_client(client)?;
            if self.finished || !progress {
                return Ok(());
            }
        }
    }

    fn read_client<C: Read>(&mut self, client: &mut C) -> io::Result<bool> {
        if !self.closing.reads_client() || self.in_len == BUF {
            return Ok(false);
        }
        match client.read(&mut self.inbuf[self.in_len..]) {
            Ok(0) => {
                // End-of-stream without a close frame: the same for the game.
                let act = self.closing.on_client_close();
                self.act(act);
                Ok(true)
            }
            Ok(n) => {
                self.in_len += n;
                Ok(true)
            }
            Err(e) if would_block(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn decode(&mut self) -> bool {
        if self.in_len == 0
            || self.up_pos < self.up_len
            || self.decoder.is_done()
            || self.ctrl.len() - self.ctrl_pos > CTRL_MAX
        {
            return false;
        }
        self.up_pos = 0;
        self.up_len = 0;
        match self
            .decoder
            .decode(&self.inbuf[..self.in_len], &mut self.up)
        {
            Ok(d) => {
                self.inbuf.copy_within(d.consumed..self.in_len, 0);
                self.in_len -= d.consumed;
                self.up_len = d.written;
                match d.control {
                    Some(Control::Ping(p)) if self.close_at.is_none() => {
                        push_pong(p.as_slice(), &mut self.ctrl);
                    }
                    Some(Control::Close(_)) => {
                        let act = self.closing.on_client_close();
                        self.act(act);
                    }
                    _ => {}
                }
                d.consumed > 0 || d.written > 0 || d.control.is_some()
            }
            Err(v) => {
                tracing::debug!("websocket: {v}; closing with {}", v.close_code());
                self.in_len = 0;
                let act = self.closing.on_violation(v.close_code());
                self.act(act);
                true
            }
        }
    }

    fn write_upstream(&mut self, upstream: &TcpStream) -> bool {
        if self.upstream_failed {
            return false;
        }
        let mut progress = false;
        while !self.first_up.is_empty() {
            match (&*upstream).write(&self.first_up) {
                Ok(n) => {
                    self.first_up.drain(..n);
                    progress = true;
                }
                Err(e) if would_block(&e) => return progress,
                Err(_) => return self.fail_upstream(),
            }
        }
        while self.up_pos < self.up_len {
            match (&*upstream).write(&self.up[self.up_pos..self.up_len]) {
                Ok(n) => {
                    self.up_pos += n;
                    self.moved.up += n as u64;
                    progress = true;
                }
                Err(e) if would_block(&e) => return progress,
                Err(_) => return self.fail_upstream(),
            }
        }
        if self.shut_up && !self.upstream_shut && self.decoder_drained() {
            self.upstream_shut = true;
            let _ = upstream.shutdown(Shutdown::Write);
            progress = true;
        }
        progress
    }

    /// Everything the browser sent before its end has gone up.
    fn decoder_drained(&self) -> bool {
        self.up_pos == self.up_len && (self.in_len == 0 || self.decoder.is_done())
    }

    fn fail_upstream(&mut self) -> bool {
        self.upstream_failed = true;
        let act = self.closing.on_upstream_error();
        self.act(act);
        true
    }

    fn read_upstream(&mut self, upstream: &TcpStream) -> bool {
        if self.upstream_failed || !self.closing.reads_upstream() || self.down_end != 0 {
            return false;
        }
        match (&*upstream).read(&mut self.down[MAX_SERVER_HEADER..]) {
            Ok(0) => {
                let act = self.closing.on_upstream_eof();
                self.act(act);
                true
            }
            Ok(n) => {
                let mut h = [0u8; MAX_SERVER_HEADER];
                let start = binary_header(n, &mut h);
                self.down[start..MAX_SERVER_HEADER].copy_from_slice(&h[start..]);
                self.down_pos = start;
                self.down_end = MAX_SERVER_HEADER + n;
                self.down_payload = n;
                true
            }
            Err(e) if would_block(&e) => false,
            Err(_) => self.fail_upstream(),
        }
    }

    fn write_client<C: Write>(&mut self, client: &mut C) -> io::Result<bool> {
        let mut progress = false;
        if !self.down_started {
            progress |= self.write_ctrl(client)?;
            if self.ctrl_pos < self.ctrl.len() || self.close_at.is_some() {
                // Control bytes first; nothing after a close.
                flush(client)?;
                return Ok(progress);
            }
        }
        while self.down_pos < self.down_end {
            match client.write(&self.down[self.down_pos..self.down_end]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.down_pos += n;
                    self.down_started = true;
                    progress = true;
                }
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e),
            }
        }
        if self.down_end != 0 && self.down_pos == self.down_end {
            self.moved.down += self.down_payload as u64;
            self.down_pos = 0;
            self.down_end = 0;
            self.down_payload = 0;
            self.down_started = false;
            progress = true;
        }
        flush(client)?;
        Ok(progress)
    }

    fn write_ctrl<C: Write>(&mut self, client: &mut C) -> io::Result<bool> {
        let mut progress = false;
        while self.ctrl_pos < self.ctrl.len() {
            match client.write(&self.ctrl[self.ctrl_pos..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.ctrl_pos += n;
                    progress = true;
                }
                Err(e) if would_block(&e) => return Ok(progress),
                Err(e) => return Err(e),
            }
        }
        if self.close_at.is_none() {
            self.ctrl.clear();
            self.ctrl_pos = 0;
        } else if self.close_at.is_some_and(|at| self.ctrl_pos >= at) && !self.finished {
            self.close_at = Some(usize::MAX);
            let act = self.closing.on_close_sent();
            self.act(act);
            progress = true;
        }
        Ok(progress)
    }
}

/// Pushes out what a TLS client holds; what the socket does not take now
/// goes on its writable edge.
fn flush<C: Write>(client: &mut C) -> io::Result<()> {
    match client.flush() {
        Err(e) if !would_block(&e) => Err(e),
        _ => Ok(()),
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
