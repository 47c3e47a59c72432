//! One direction of an io_uring relay as plain state: what to submit next,
//! and what each completion means. No descriptors and no ring: the owner
//! turns each [`Action`] into a submission and each completion into a call
//! here, so every decision is tested with plain values below.
//!
//! A direction has at most one operation in flight, so it holds at most one
//! buffer: that is the relay's memory bound and its backpressure. A slow destination keeps its direction sending;
//! the source is not read meanwhile, and TCP's window pushes back.

/// Errno values a completion carries (negated in `res`).
const EAGAIN: i32 = libc::EAGAIN;
const EINTR: i32 = libc::EINTR;
const ENOBUFS: i32 = libc::ENOBUFS;

/// What the direction wants submitted next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing now: an operation is in flight, the direction waits for a
    /// free buffer, or it is done.
    Idle,
    /// Send `first()` (bytes read before relaying, a PROXY header).
    SendFirst,
    /// Receive from the source.
    Recv,
    /// Send `len` bytes of buffer `buf`, starting `offset` bytes in.
    Send { buf: u16, offset: u32, len: u32 },
    /// The source ended and everything it sent has gone out: shut the
    /// destination's write side (done at once, not as an operation).
    Shut,
}

/// The direction cannot go on: the relay is aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed(pub(crate) i32);

/// Bytes received and not yet all sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    /// The provided buffer holding them.
    buf: u16,
    len: u32,
    sent: u32,
}

/// One direction: source socket → (buffer or pipe) → destination socket.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    first: Vec<u8>,
    first_sent: usize,
    held: Option<Held>,
    /// The source reached end-of-stream.
    eof: bool,
    /// The destination's write side has been shut.
    shut: bool,
    /// An operation of this direction is in flight.
    busy: bool,
    /// The last receive found no free buffer; it waits for one.
    starved: bool,
}

impl Flow {
    /// A direction that first sends `first`; `eof`: its source has
    /// already ended (the client half-closed while being sniffed).
    pub(crate) fn new(first: Vec<u8>, eof: bool) -> Flow {
        Flow {
            first,
            eof,
            ..Flow::default()
        }
    }

    /// The bytes still to send before anything received.
    pub(crate) fn first(&self) -> &[u8] {
        self.first.get(self.first_sent..).unwrap_or(&[])
    }

    /// Whether the destination's write side has been shut: the direction
    /// is over.
    pub(crate) fn is_shut(&self) -> bool {
        self.shut
    }

    /// What to do next. Anything but [`Action::Idle`] and
    /// [`Action::Shut`] marks the direction busy until its completion.
    pub(crate) fn next(&mut self) -> Action {
        if self.busy || self.shut {
            return Action::Idle;
        }
        if !self.first().is_empty() {
            self.busy = true;
            return Action::SendFirst;
        }
        if let Some(h) = self.held {
            self.busy = true;
            return Action::Send {
                buf: h.buf,
                offset: h.sent,
                len: h.len - h.sent,
            };
        }
        if self.eof {
            self.shut = true;
            return Action::Shut;
        }
        if self.starved {
            return Action::Idle;
        }
        self.busy = true;
        Action::Recv
    }

    /// A send of [`Flow::first`] completed with `res`.
    pub(crate) fn on_first_sent(&mut self, res: i32) -> Result<(), Failed> {
        self.busy = false;
        match res {
            n if n > 0 => {
                self.first_sent += n as usize;
                if self.first().is_empty() {
                    self.first = Vec::new();
                    self.first_sent = 0;
                }
                Ok(())
            }
            e if e == -EAGAIN || e == -EINTR => Ok(()),
            0 => Err(Failed(0)),
            e => Err(Failed(-e)),
        }
    }

    /// A receive completed with `res`, holding buffer `buf` if the kernel
    /// picked one. Returns a buffer to give back at once (end-of-stream can
    /// still carry one); on an error the caller gives `buf` back.
    pub(crate) fn on_received(
        &mut self,
        res: i32,
        buf: Option<u16>,
    ) -> Result<Option<u16>, Failed> {
        self.busy = false;
        match res {
            n if n > 0 => {
                let Some(buf) = buf else {
                    return Err(Failed(libc::EPROTO));
                };
                self.held = Some(Held {
                    buf,
                    len: n as u32,
                    sent: 0,
                });
                Ok(None)
            }
            0 => {
                self.eof = true;
                Ok(buf)
            }
            e if e == -ENOBUFS => {
                self.starved = true;
                Ok(buf)
            }
            e if e == -EAGAIN || e == -EINTR => Ok(buf),
            e => Err(Failed(-e)),
        }
    }

    /// A send of held bytes completed with `res`. Returns the buffer to
    /// give back once all it held has gone out.
    pub(crate) fn on_sent(&mut self, res: i32) -> Result<Option<u16>, Failed> {
        self.busy = false;
        let Some(mut h) = self.held else {
            return Err(Failed(libc::EPROTO));
        };
        match res {
            n if n > 0 => {
                h.sent = h.sent.saturating_add(n as u32).min(h.len);
                if h.sent == h.len {
                    self.held = None;
                    Ok(Some(h.buf))
                } else {
                    self.held = Some(h);
                    Ok(None)
                }
            }
            e if e == -EAGAIN || e == -EINTR => Ok(None),
            0 => Err(Failed(0)),
            e => Err(Failed(-e)),
        }
    }

    /// Whether this direction waits for a free buffer.
    pub(crate) fn is_starved(&self) -> bool {
        self.starved
    }

    /// A buffer came free: the next [`Flow::next`] receives again.
    pub(crate) fn unstarve(&mut self) {
        self.starved = false;
    }

    /// The buffer this direction holds, if any (given back at the end).
    pub(crate) fn held_buf(&self) -> Option<u16> {
        self.held.map(|h| h.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_bytes_go_before_anything_received() {
        let mut f = Flow::new(b"PROXY ...\r\n<msg/>".to_vec(), false);
        assert_eq!(f.next(), Action::SendFirst);
        assert_eq!(f.next(), Action::Idle, "one operation at a time");
        assert_eq!(f.on_first_sent(6), Ok(()));
        assert_eq!(f.first(), b"...\r\n<msg/>");
        assert_eq!(f.next(), Action::SendFirst);
        assert_eq!(f.on_first_sent(11), Ok(()));
        assert!(f.first().is_empty());
        assert_eq!(f.next(), Action::Recv);
    }

    #[test]
    fn received_bytes_are_sent_in_pieces_then_the_buffer_goes_back() {
        let mut f = Flow::new(Vec::new(), false);
        assert_eq!(f.next(), Action::Recv);
        assert_eq!(f.on_received(100, Some(7)), Ok(None));
        assert_eq!(
            f.next(),
            Action::Send {
                buf: 7,
                offset: 0,
                len: 100
            }
        );
        assert_eq!(f.held_buf(), Some(7));
        assert_eq!(f.on_sent(60), Ok(None));
        assert_eq!(
            f.next(),
            Action::Send {
                buf: 7,
                offset: 60,
                len: 40
            }
        );
        assert_eq!(f.on_sent(-libc::EAGAIN), Ok(None));
        assert_eq!(
            f.next(),
            Action::Send {
                buf: 7,
                offset: 60,
                len: 40
            }
        );
        assert_eq!(f.on_sent(40), Ok(Some(7)));
        assert_eq!(f.held_buf(), None);
        assert_eq!(f.next(), Action::Recv, "reads again only once all is out");
    }

    #[test]
    fn end_of_stream_shuts_once_everything_is_out() {
        let mut f = Flow::new(b"ab".to_vec(), true);
        assert_eq!(f.next(), Action::SendFirst);
        assert_eq!(f.on_first_sent(2), Ok(()));
        assert_eq!(f.next(), Action::Shut);
        assert!(f.is_shut());
        assert_eq!(f.next(), Action::Idle);

        let mut f = Flow::new(Vec::new(), false);
        assert_eq!(f.next(), Action::Recv);
        assert_eq!(
            f.on_received(0, Some(3)),
            Ok(Some(3)),
            "EOF gives its buffer back"
        );
        assert_eq!(f.next(), Action::Shut);
    }

    #[test]
    fn no_free_buffer_waits_until_one_comes_back() {
        let mut f = Flow::new(Vec::new(), false);
        assert_eq!(f.next(), Action::Recv);
        assert_eq!(f.on_received(-libc::ENOBUFS, None), Ok(None));
        assert!(f.is_starved());
        assert_eq!(f.next(), Action::Idle);
        f.unstarve();
        assert_eq!(f.next(), Action::Recv);
    }

    #[test]
    fn errors_fail_the_direction() {
        let mut f = Flow::new(Vec::new(), false);
        f.next();
        assert_eq!(
            f.on_received(-libc::ECONNRESET, None),
            Err(Failed(libc::ECONNRESET))
        );
        let mut f = Flow::new(Vec::new(), false);
        f.next();
        assert_eq!(
            f.on_received(5, None),
            Err(Failed(libc::EPROTO)),
            "no buffer named"
        );
        let mut f = Flow::new(Vec::new(), false);
        f.next();
        assert_eq!(f.on_received(5, Some(1)), Ok(None));
        f.next();
        assert_eq!(f.on_sent(-libc::EPIPE), Err(Failed(libc::EPIPE)));
        let mut f = Flow::new(b"x".to_vec(), false);
        f.next();
        assert_eq!(f.on_first_sent(0), Err(Failed(0)));
    }

    /// What the kernel does with one operation, in the property below.
    #[derive(Debug, Clone)]
    enum Kernel {
        /// Completes it: a receive takes this many bytes (1..) or 0 for
        /// end-of-stream; a send takes this many (clamped to what is asked).
        Takes(u32),
        /// `EAGAIN`, or for a receive `ENOBUFS` (then a buffer comes free).
        Refuses,
    }

    proptest! {
        /// Whatever the kernel's completions, a direction has one operation
        /// at a time, sends exactly what it received in order, gives every
        /// buffer back exactly once, and shuts only at the end.
        #[test]
        fn one_operation_at_a_time_and_every_buffer_back(
            steps in proptest::collection::vec(
                prop_oneof![(0u32..5000).prop_map(Kernel::Takes), Just(Kernel::Refuses)],
                1..200,
            ),
            first in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut f = Flow::new(first.clone(), false);
            let (mut received, mut sent) = (first.len() as u64, 0u64);
            let mut next_buf = 0u16;
            let mut held: Option<u16> = None;
            let mut returned = Vec::new();
            for step in steps {
                let action = f.next();
                prop_assert_eq!(f.next(), Action::Idle, "a second operation while one is in flight");
                match (action, step) {
                    (Action::Idle, _) => {
                        // Only a starved direction idles before its end.
                        prop_assert!(f.is_starved() || f.is_shut());
                        f.unstarve();
                    }
                    (Action::Shut, _) => break,
                    (Action::SendFirst, Kernel::Takes(n)) => {
                        let n = n.clamp(1, f.first().len() as u32);
                        prop_assert_eq!(f.on_first_sent(n as i32), Ok(()));
                        sent += u64::from(n);
                    }
                    (Action::SendFirst, Kernel::Refuses) => {
                        prop_assert_eq!(f.on_first_sent(-libc::EAGAIN), Ok(()));
                    }
                    (Action::Recv, Kernel::Takes(0)) => {
                        prop_assert_eq!(f.on_received(0, None), Ok(None));
                    }
                    (Action::Recv, Kernel::Takes(n)) => {
                        prop_assert!(held.is_none(), "a receive while holding a buffer");
                        held = Some(next_buf);
                        prop_assert_eq!(f.on_received(n as i32, Some(next_buf)), Ok(None));
                        next_buf += 1;
                        received += u64::from(n);
                    }
                    (Action::Recv, Kernel::Refuses) => {
                        prop_assert_eq!(f.on_received(-libc::ENOBUFS, None), Ok(None));
                    }
                    (Action::Send { buf, len, .. }, Kernel::Takes(n)) => {
                        prop_assert_eq!(Some(buf), held);
                        let n = n.clamp(1, len);
                        let back = f.on_sent(n as i32);
                        sent += u64::from(n);
                        if n == len {
                            prop_assert_eq!(back, Ok(Some(buf)));
                            returned.push(buf);
                            held = None;
                        } else {
                            prop_assert_eq!(back, Ok(None));
                        }
                    }
                    (Action::Send { .. }, Kernel::Refuses) => {
                        prop_assert_eq!(f.on_sent(-libc::EAGAIN), Ok(None));
                    }
                }
            }
            // Whatever is not yet sent is still held, in one buffer.
            prop_assert_eq!(f.held_buf(), held);
            if held.is_none() && f.first().is_empty() {
                prop_assert_eq!(sent, received);
            }
            let mut unique = returned.clone();
            unique.dedup();
            prop_assert_eq!(unique.len(), returned.len(), "a buffer given back twice");
            prop_assert_eq!(returned.len() + usize::from(held.is_some()), usize::from(next_buf));
        }
    }

    #[test]
    fn interrupted_receives_are_retried() {
        let mut f = Flow::new(Vec::new(), false);
        f.next();
        assert_eq!(f.on_received(-libc::EINTR, None), Ok(None));
        assert_eq!(f.next(), Action::Recv);
    }
}
