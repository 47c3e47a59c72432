//! `--payload`: the echo test. A client sends its payload (after the PROXY
//! header, if any), half-closes its side, and reads until the server closes;
//! what comes back must be exactly the payload. With `--no-half-close` it
//! does not half-close, and closes itself once the whole payload is back.
//!
//! The payload is a pattern of the client's own (a function of a per-client
//! seed and the byte's offset), generated on the fly into the thread's send
//! buffer and compared on the fly as it comes back, so memory per connection
//! is a few words whatever the payload's size, and a byte that comes back
//! wrong, or from another connection, is caught at its offset.

use std::fmt;
use std::io::{self, Write};
use std::net::Shutdown;
use std::time::Instant;

use super::classify::classify_io;
use super::client::Phase;
use super::event_loop::Worker;
use super::outcome::Outcome;

/// Size of the per-thread buffer the pattern is generated into.
pub(super) const SEND_CHUNK: usize = 64 * 1024;

/// One client's progress through its echo.
#[derive(Debug, Clone, Copy)]
pub(super) struct Echo {
    /// Picks the client's pattern.
    pub(super) seed: u32,
    /// Payload bytes to send and to get back.
    pub(super) len: u64,
    /// Payload bytes sent so far.
    pub(super) sent: u64,
    /// Bytes received (and checked) so far.
    pub(super) received: u64,
}

/// Why an echo is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BadEcho {
    /// The byte at `offset` is not the one sent there.
    Differs {
        /// Offset in the payload.
        offset: u64,
        /// What came back.
        got: u8,
        /// What was sent.
        want: u8,
    },
    /// The server closed after `got` of `want` bytes.
    Short {
        /// Bytes received.
        got: u64,
        /// Payload size.
        want: u64,
    },
    /// More bytes came back than were sent.
    Long {
        /// Payload size.
        want: u64,
    },
}

impl fmt::Display for BadEcho {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadEcho::Differs { offset, got, want } => write!(
                f,
                "echo differs at byte {offset}: got 0x{got:02x}, sent 0x{want:02x}"
            ),
            BadEcho::Short { got, want } => write!(
                f,
                "short echo: the server closed after {got} of {want} bytes \
                 (first missing byte {got})"
            ),
            BadEcho::Long { want } => {
                write!(f, "echo longer than the {want} bytes sent (at byte {want})")
            }
        }
    }
}

/// The byte a client with `seed` sends at `offset`: every client's
/// sequence differs, and it does not repeat within 4 GiB.
pub(super) fn pattern_byte(seed: u32, offset: u64) -> u8 {
    // Truncation intended: the pattern's period is 2^32 bytes.
    let x = (offset as u32) ^ seed.wrapping_mul(0x85EB_CA6B);
    (x.wrapping_mul(0x9E37_79B1) >> 24) as u8
}

/// Fills `buf` with the pattern from `offset` on; returns how many bytes
/// (at most `left`).
pub(super) fn fill(buf: &mut [u8], seed: u32, offset: u64, left: u64) -> usize {
    let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
    for (i, b) in buf[..n].iter_mut().enumerate() {
        *b = pattern_byte(seed, offset + i as u64);
    }
    n
}

impl Echo {
    /// Checks the next received bytes.
    pub(super) fn check(&mut self, bytes: &[u8]) -> Result<(), BadEcho> {
        for &got in bytes {
            if self.received >= self.len {
                return Err(BadEcho::Long { want: self.len });
            }
            let want = pattern_byte(self.seed, self.received);
            if got != want {
                return Err(BadEcho::Differs {
                    offset: self.received,
                    got,
                    want,
                });
            }
            self.received += 1;
        }
        Ok(())
    }

    /// Whether every byte has come back.
    pub(super) fn complete(&self) -> bool {
        self.received >= self.len
    }

    /// The server closed: was everything echoed?
    pub(super) fn finish(&self) -> Result<(), BadEcho> {
        if self.received < self.len {
            return Err(BadEcho::Short {
                got: self.received,
                want: self.len,
            });
        }
        Ok(())
    }
}

impl Worker {
    /// Writes the first chunk of the payload right after `connect` (when
    /// there is no PROXY header to write first). A connection still
    /// handshaking answers EAGAIN.
    pub(super) fn echo_write_early(&mut self, key: usize) -> io::Result<usize> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(0);
        };
        let Some(echo) = &mut conn.echo else {
            return Ok(0);
        };
        let n = fill(
            &mut self.send_buf,
            echo.seed,
            echo.sent,
            echo.len - echo.sent,
        );
        let written = conn.stream.write(&self.send_buf[..n])?;
        echo.sent += written as u64;
        if conn.recorded {
            self.stats.bytes_sent += written as u64;
        }
        Ok(written)
    }

    /// Sends what is left of the payload, then half-closes. Returns false
    /// when the connection is gone.
    pub(super) fn send_echo(&mut self, key: usize, now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let Some(echo) = &mut conn.echo else {
            return true;
        };
        while echo.sent < echo.len {
            let n = fill(
                &mut self.send_buf,
                echo.seed,
                echo.sent,
                echo.len - echo.sent,
            );
            match conn.stream.write(&self.send_buf[..n]) {
                Ok(0) => break,
                Ok(k) => {
                    echo.sent += k as u64;
                    if conn.recorded {
                        self.stats.bytes_sent += k as u64;
                    }
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
        // Everything sent: the server sees EOF once it has read it all
        // (with --no-half-close, the client closes once the echo is back).
        if self.plan.config.no_half_close {
            conn.phase = Phase::Receiving;
            return true;
        }
        if let Err(e) = conn.stream.shutdown(Shutdown::Write) {
            self.conclude(key, Outcome::Failed(classify_io(&e), &e), now);
            return false;
        }
        conn.phase = Phase::Receiving;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_differ_between_clients_and_offsets() {
        let a: Vec<u8> = (0..4096).map(|i| pattern_byte(1, i)).collect();
        let b: Vec<u8> = (0..4096).map(|i| pattern_byte(2, i)).collect();
        assert_ne!(a, b);
        // Not a short cycle: a shifted copy does not match.
        assert_ne!(a[..2048], a[1..2049]);
        let mut buf = [0u8; 100];
        assert_eq!(fill(&mut buf, 1, 10, 1000), 100);
        assert_eq!(buf[..], a[10..110]);
        assert_eq!(fill(&mut buf, 1, 10, 7), 7);
    }

    #[test]
    fn echo_checks() {
        let mut e = Echo {
            seed: 9,
            len: 10,
            sent: 10,
            received: 0,
        };
        let mut want = [0u8; 10];
        fill(&mut want, 9, 0, 10);
        assert_eq!(e.check(&want[..4]), Ok(()));
        assert_eq!(e.finish(), Err(BadEcho::Short { got: 4, want: 10 }));
        let mut bad = want;
        bad[6] ^= 1;
        assert_eq!(
            e.check(&bad[4..]),
            Err(BadEcho::Differs {
                offset: 6,
                got: bad[6],
                want: want[6]
            })
        );
        let mut e = Echo { received: 0, ..e };
        assert_eq!(e.check(&want), Ok(()));
        assert_eq!(e.finish(), Ok(()));
        assert_eq!(e.check(&[0]), Err(BadEcho::Long { want: 10 }));
        let msg = BadEcho::Differs {
            offset: 6,
            got: 1,
            want: 2,
        }
        .to_string();
        assert!(msg.contains("at byte 6"), "{msg}");
    }
}
