//! The relay: a connected pair of sockets whose bytes move both ways with
//! `splice(2)` through a pipe per direction ([`pipe`]), until both sides
//! have closed. Reusable by anything that hands it two connected,
//! non-blocking, edge-triggered sockets (`--gateway` today).
//!
//! * Zero copy: bytes go socket → pipe → socket inside the kernel.
//! * Bounded memory: a direction holds at most its pipe's capacity (64 KiB
//!   by default); when the pipe is full the relay stops reading that side,
//!   so TCP's window pushes back on the sender. Nothing is buffered in user
//!   space beyond the few bytes handed to [`Relay::new`].
//! * Half-close: end-of-stream from one side becomes `shutdown(Write)` on
//!   the other once its pipe has drained; the other direction goes on.
//! * Reset: an error on either side (a reset, `EPIPE`) aborts the pair: the
//!   other side is closed with `SO_LINGER` 0, so it sees a reset too.
//!
//! The sockets are registered edge-triggered for both readable and
//! writable once; [`Relay::pump`] moves everything that can move at each
//! event, so no readiness is lost and no interest needs toggling: a side
//! whose pipe is full is simply not read until the pipe drains, which
//! `pump` notices on the writable edge of the other side.

use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;

use mio::net::TcpStream;

pub(crate) mod pipe;
pub(crate) mod proxy_header;
pub(crate) mod uring;

use pipe::{Moved, Pipe};

/// One direction: from a socket, through a pipe, to the other.
#[derive(Debug)]
struct Direction {
    pipe: Pipe,
    /// Bytes to write before anything from the pipe (what was read while
    /// deciding to relay, a PROXY header): at most a few hundred.
    first: Vec<u8>,
    /// The source reached end-of-stream.
    eof: bool,
    /// The destination's write side has been shut.
    shut: bool,
}

/// Where a relay stands after a pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Still relaying: wait for the next event.
    Open,
    /// Both directions reached end-of-stream and were passed on: close.
    Closed,
    /// One side failed (reset): the other has been set to reset on close.
    Aborted,
}

/// Bytes moved by a relay, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Moved2 {
    /// From the client (the accepted side) to the upstream.
    pub up: u64,
    /// From the upstream to the client.
    pub down: u64,
}

/// The state of a relayed pair of connected sockets (the sockets stay
/// with their owner and are passed to [`Relay::pump`]).
#[derive(Debug)]
pub(crate) struct Relay {
    up: Direction,
    down: Direction,
    moved: Moved2,
}

impl Relay {
    /// Starts relaying: `first` is written to the upstream before anything
    /// read from the client; `client_eof` says the client has already
    /// half-closed.
    pub(crate) fn new(first: Vec<u8>, client_eof: bool) -> io::Result<Relay> {
        Ok(Relay {
            up: Direction {
                pipe: Pipe::new()?,
                first,
                eof: client_eof,
                shut: false,
            },
            down: Direction {
                pipe: Pipe::new()?,
                first: Vec::new(),
                eof: false,
                shut: false,
            },
            moved: Moved2::default(),
        })
    }

    /// Bytes moved so far.
    pub(crate) fn moved(&self) -> Moved2 {
        self.moved
    }

    /// Moves everything that can move now, both ways, between `client`
    /// (the accepted side) and `upstream`.
    pub(crate) fn pump(&mut self, client: &TcpStream, upstream: &TcpStream) -> Progress {
        let up = pump_one(&mut self.up, client, upstream, &mut self.moved.up);
        let down = pump_one(&mut self.down, upstream, client, &mut self.moved.down);
        match (up, down) {
            (Err(_), _) | (_, Err(_)) => {
                // Both: the side that failed may have failed on a write
                // (the peer reset it), and a reset it would send anyway.
                linger_zero(client);
                linger_zero(upstream);
                Progress::Aborted
            }
            _ if self.up.shut && self.down.shut => Progress::Closed,
            _ => Progress::Open,
        }
    }
}

/// Moves `from` → pipe → `to` until neither can go on.
fn pump_one(
    dir: &mut Direction,
    from: &TcpStream,
    to: &TcpStream,
    counted: &mut u64,
) -> io::Result<()> {
    while !dir.first.is_empty() {
        match (&*to).write(&dir.first) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                dir.first.drain(..n);
                *counted += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    dir.first = Vec::new();
    loop {
        let mut progress = false;
        if !dir.eof && dir.pipe.has_room() {
            match dir.pipe.fill_from(from.as_raw_fd())? {
                Moved::Bytes(_) => progress = true,
                Moved::Eof => {
                    dir.eof = true;
                    progress = true;
                }
                Moved::Blocked => {}
            }
        }
        if dir.pipe.held() > 0 {
            if let Moved::Bytes(n) = dir.pipe.drain_into(to.as_raw_fd())? {
                *counted += n as u64;
                progress = true;
            }
        }
        if dir.eof && dir.pipe.held() == 0 && !dir.shut {
            dir.shut = true;
            // The peer may already be gone; its reset shows on the next
            // read of the other direction.
            let _ = to.shutdown(Shutdown::Write);
        }
        if !progress {
            return Ok(());
        }
    }
}

/// `SO_LINGER` 0: closing the socket sends a reset.
pub(crate) fn linger_zero(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open (borrowed from `stream`); the option
    // value points at a live `linger` of the size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
