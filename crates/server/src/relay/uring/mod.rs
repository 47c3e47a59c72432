//! The relay on io_uring: the same pairs as [`crate::relay::Relay`], with
//! every byte moved by operations on one ring per gateway thread.
//!
//! Each direction of a pair is a [`flow::Flow`] with at most one operation
//! in flight: a `RECV` with `IOSQE_BUFFER_SELECT` lets the kernel pick one
//! of the thread's provided buffers ([`bufs`]) when data arrives (an idle
//! relay holds none), then a `SEND` of those bytes; the buffer goes back to
//! the ring once they are all out. A receive arms the kernel's internal
//! poll and completes in this thread's own task work: no system call per
//! message, and no kernel thread. Why buffers and not `IORING_OP_SPLICE`,
//! measured: `crate::gateway`'s module documentation.
//!
//! Half-close and reset behave as in the epoll relay: end-of-stream from
//! one side becomes `shutdown(Write)` on the other once everything it sent
//! is out; an error on either side cancels the pair's operations, and once
//! none is left both sockets close with `SO_LINGER` 0 (a reset).
//!
//! Nothing the kernel may still use is freed under it: a pair is dropped
//! only when none of its operations (cancels included) is in flight; the
//! buffers only once every pair is gone and the group is unregistered.

use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types};
use mio::net::TcpStream;
use slab::Slab;

use super::{linger_zero, Moved2};
use crate::engine::uring::Ring;

mod bufs;
pub(crate) mod flow;

use bufs::BufRing;
use flow::{Action, Flow};

/// Buffers per thread (each relay direction with bytes in flight holds one).
const BUFFERS: u16 = 256;
/// Bytes per buffer: the most one receive takes (the size of a loopback
/// segment, and of a pipe's default capacity).
const BUFFER_LEN: u32 = 64 * 1024;
/// The buffer group of the relay's ring.
const GROUP: u16 = 1;

/// Environment variable overriding [`BUFFERS`] (test hook: a few buffers,
/// so that relays wait for one; a count that is not a power of two fails
/// the ring's set-up, so that the fallback to epoll relays is exercised).
pub(crate) const BUFFERS_ENV: &str = "FLASHPOLICYD_URING_RELAY_BUFFERS";

/// How long teardown waits for the kernel to finish with a thread's pairs.
const TEARDOWN: Duration = Duration::from_secs(1);

/// The buffer count: [`BUFFERS`], or `FLASHPOLICYD_URING_RELAY_BUFFERS`.
fn buffers() -> u16 {
    std::env::var(BUFFERS_ENV)
        .ok()
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(BUFFERS)
}

/// What a completion is for: the operation's kind, its pair, its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The multishot poll on the watched descriptor (the thread's epoll).
    Watch,
    /// A send of a direction's first bytes.
    First,
    /// A receive into a provided buffer.
    Recv,
    /// A send of held bytes.
    Send,
    /// A cancel of a pair's operations.
    Cancel,
}

fn encode(kind: Kind, key: usize, dir: usize) -> u64 {
    let k: u64 = match kind {
        Kind::Watch => 1,
        Kind::First => 2,
        Kind::Recv => 3,
        Kind::Send => 4,
        Kind::Cancel => 5,
    };
    (k << 56) | ((dir as u64 & 1) << 32) | (key as u64 & 0xffff_ffff)
}

fn decode(user_data: u64) -> Option<(Kind, usize, usize)> {
    let kind = match user_data >> 56 {
        1 => Kind::Watch,
        2 => Kind::First,
        3 => Kind::Recv,
        4 => Kind::Send,
        5 => Kind::Cancel,
        _ => return None,
    };
    Some((
        kind,
        (user_data & 0xffff_ffff) as usize,
        ((user_data >> 32) & 1) as usize,
    ))
}

/// A relayed pair: `sockets[0]` is the client, `sockets[1]` the upstream;
/// `flows[d]` moves bytes from `sockets[d]` to the other.
#[derive(Debug)]
struct Pair<T> {
    sockets: [TcpStream; 2],
    flows: [Flow; 2],
    /// Operations in flight, cancels included.
    in_flight: u32,
    aborting: bool,
    moved: Moved2,
    tag: T,
}

/// A pair that has ended, with what its owner handed in.
#[derive(Debug)]
pub(crate) struct Finished<T> {
    pub(crate) tag: T,
    pub(crate) moved: Moved2,
}

/// A gateway thread's io_uring relays.
pub(crate) struct RingRelays<T> {
    ring: Ring,
    pairs: Slab<Pair<T>>,
    bufs: BufRing,
    /// Directions whose receive found no free buffer.
    starved: VecDeque<(usize, usize)>,
    /// Buffers the kernel handed us and we have not given back.
    out: u16,
    /// Receives that found no free buffer (logged at the end).
    waits: u64,
    /// The descriptor whose readability [`RingRelays::wait`] reports.
    watch: RawFd,
    watch_armed: bool,
    watch_ready: bool,
    finished: Vec<Finished<T>>,
}

impl<T> RingRelays<T> {
    /// A ring for one thread's relays (built in that thread: it may be
    /// single-issuer). `watch` is a descriptor to wait on alongside the
    /// relays (the thread's epoll).
    pub(crate) fn new(watch: RawFd) -> io::Result<RingRelays<T>> {
        let (ring, _flags) = crate::engine::uring::build_ring(crate::engine::uring::entries())?;
        let ring = Ring::new(ring);
        let bufs = BufRing::new(&ring.submitter(), buffers(), BUFFER_LEN, GROUP)?;
        Ok(RingRelays {
            ring,
            pairs: Slab::new(),
            bufs,
            starved: VecDeque::new(),
            out: 0,
            waits: 0,
            watch,
            watch_armed: false,
            watch_ready: false,
            finished: Vec::new(),
        })
    }

    /// The buffers, for the log: how many, of how many KiB.
    pub(crate) fn buffers(&self) -> (u16, u32) {
        (self.bufs.count(), self.bufs.size() / 1024)
    }

    /// Pairs still open (or finishing).
    pub(crate) fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Starts relaying between `client` and `upstream` (both connected and
    /// out of any other poller): `first` goes to the upstream before
    /// anything from the client; `client_eof`: the client already
    /// half-closed. It ends through [`RingRelays::take_finished`], a failure
    /// to submit included (as an abort).
    pub(crate) fn start(
        &mut self,
        client: TcpStream,
        upstream: TcpStream,
        first: Vec<u8>,
        client_eof: bool,
        tag: T,
    ) {
        let key = self.pairs.insert(Pair {
            sockets: [client, upstream],
            flows: [Flow::new(first, client_eof), Flow::new(Vec::new(), false)],
            in_flight: 0,
            aborting: false,
            moved: Moved2::default(),
            tag,
        });
        if self.drive(key).is_err() {
            // It ends as an abort, through `take_finished`.
            self.abort(key);
            self.maybe_finish(key);
        }
    }

    /// Submits what is queued and waits until a completion or `timeout`,
    /// then handles every completion. Returns whether the watched
    /// descriptor became readable.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        if !self.watch_armed {
            let entry = opcode::PollAdd::new(types::Fd(self.watch), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(encode(Kind::Watch, 0, 0));
            // SAFETY: a poll refers to no memory of ours.
            unsafe { self.ring.push(&[entry]) }?;
            self.watch_armed = true;
        }
        self.ring.wait(timeout)?;
        while let Some(cqe) = self.ring.pop() {
            self.complete(&cqe);
        }
        let free = self.bufs.count().saturating_sub(self.out);
        if free > 0 && !self.starved.is_empty() {
            // Buffers came back while receives were finding none: every one
            // of those receives tries again. Not only as many as are free:
            // a receive on a socket with nothing to read finds no buffer
            // either while none is free, and tried again it only waits for
            // data, taking none and completing nothing, so a wake-up spent
            // on it would leave one with data waiting behind it, on a
            // thread that may see no other completion. The ones that lose
            // the race for the free buffers find none again and queue.
            self.retry_starved(self.starved.len());
        }
        Ok(std::mem::take(&mut self.watch_ready))
    }

    /// The pairs that have ended since the last call.
    pub(crate) fn take_finished(&mut self) -> Vec<Finished<T>> {
        std::mem::take(&mut self.finished)
    }

    /// Closes every pair (shutdown's drain is over: a plain close, as the
    /// epoll relay's) and waits, at most `TEARDOWN`, for the kernel to
    /// finish with them.
    pub(crate) fn close_all(&mut self) {
        let keys: Vec<usize> = self.pairs.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.stop(key, false);
        }
        let until = Instant::now() + TEARDOWN;
        while !self.pairs.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.wait(Some(left)).is_err() {
                return;
            }
        }
    }

    fn complete(&mut self, cqe: &cqueue::Entry) {
        let Some((kind, key, dir)) = decode(cqe.user_data()) else {
            return;
        };
        let res = cqe.result();
        if kind == Kind::Watch {
            self.watch_ready = true;
            if !cqueue::more(cqe.flags()) {
                self.watch_armed = false;
            }
            return;
        }
        let buf = cqueue::buffer_select(cqe.flags());
        if buf.is_some() {
            self.out = self.out.saturating_add(1);
        }
        let Some(pair) = self.pairs.get_mut(key) else {
            // Never: a pair outlives its operations. Keep the buffer safe.
            if let Some(b) = buf {
                self.give_back(b);
            }
            return;
        };
        pair.in_flight = pair.in_flight.saturating_sub(1);
        let Some(flow) = pair.flows.get_mut(dir) else {
            return;
        };
        let mut release = None;
        let outcome = match kind {
            Kind::First => flow.on_first_sent(res).map(|()| res),
            Kind::Recv => match flow.on_received(res, buf) {
                Ok(back) => {
                    release = back;
                    if flow.is_starved() {
                        self.waits += 1;
                        self.starved.push_back((key, dir));
                    }
                    Ok(0)
                }
                Err(f) => {
                    release = buf;
                    Err(f)
                }
            },
            Kind::Send => flow.on_sent(res).map(|back| {
                release = back;
                res
            }),
            Kind::Cancel | Kind::Watch => Ok(0),
        };
        match outcome {
            Ok(sent) if sent > 0 => {
                let counted = if dir == 0 {
                    &mut pair.moved.up
                } else {
                    &mut pair.moved.down
                };
                *counted += sent as u64;
            }
            Ok(_) => {}
            Err(_) if pair.aborting => {}
            Err(_) => self.abort(key),
        }
        if let Some(b) = release {
            self.give_back(b);
        }
        if self.pairs.get(key).is_some_and(|p| !p.aborting) {
            if let Err(_e) = self.drive(key) {
                self.abort(key);
            }
        }
        self.maybe_finish(key);
    }

    /// Submits what each direction of pair `key` wants next.
    fn drive(&mut self, key: usize) -> io::Result<()> {
        for dir in 0..2 {
            loop {
                let Some(pair) = self.pairs.get_mut(key) else {
                    return Ok(());
                };
                let from = pair.sockets[dir].as_raw_fd();
                let to = pair.sockets[1 - dir].as_raw_fd();
                let action = pair.flows[dir].next();
                let entry = match action {
                    Action::Idle => break,
                    Action::Shut => {
                        // The peer may be gone already; its reset shows on
                        // the other direction's next receive.
                        let _ = pair.sockets[1 - dir].shutdown(Shutdown::Write);
                        continue;
                    }
                    Action::SendFirst => {
                        let first = pair.flows[dir].first();
                        opcode::Send::new(types::Fd(to), first.as_ptr(), first.len() as u32)
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                            .user_data(encode(Kind::First, key, dir))
                    }
                    Action::Recv => {
                        opcode::Recv::new(types::Fd(from), std::ptr::null_mut(), self.bufs.size())
                            .buf_group(self.bufs.group())
                            .build()
                            .flags(squeue::Flags::BUFFER_SELECT)
                            .user_data(encode(Kind::Recv, key, dir))
                    }
                    Action::Send { buf, offset, len } => {
                        let Some(ptr) = self.bufs.at(buf, offset) else {
                            return Err(io::Error::from(io::ErrorKind::InvalidData));
                        };
                        opcode::Send::new(types::Fd(to), ptr, len)
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                            .user_data(encode(Kind::Send, key, dir))
                    }
                };
                // SAFETY: a first-bytes send points into the flow's own
                // vector, kept unchanged until its completion (the pair
                // outlives its operations); a held-bytes send points into a
                // buffer this direction holds until the send completes; a
                // receive names the buffer group, whose memory lives until
                // every pair is gone.
                unsafe { self.ring.push(std::slice::from_ref(&entry)) }?;
                // Counted once submitted: an entry that never went in would
                // keep the pair from ever finishing.
                pair.in_flight += 1;
            }
        }
        Ok(())
    }

    /// Starts aborting pair `key`: no new operations, its operations
    /// cancelled, and both sockets set to reset on close.
    fn abort(&mut self, key: usize) {
        self.stop(key, true);
    }

    /// Stops pair `key`: no new operations, its operations cancelled; with
    /// `reset`, both sockets set to reset on close.
    fn stop(&mut self, key: usize, reset: bool) {
        let Some(pair) = self.pairs.get_mut(key) else {
            return;
        };
        if pair.aborting {
            return;
        }
        pair.aborting = true;
        if reset {
            linger_zero(&pair.sockets[0]);
            linger_zero(&pair.sockets[1]);
        }
        if pair.in_flight == 0 {
            // No completion will come to finish it (say one direction shut
            // and the other waiting for a buffer): it is over now.
            self.maybe_finish(key);
            return;
        }
        let entries = pair.sockets.each_ref().map(|socket| {
            let builder = types::CancelBuilder::fd(types::Fd(socket.as_raw_fd())).all();
            opcode::AsyncCancel2::new(builder)
                .build()
                .user_data(encode(Kind::Cancel, key, 0))
        });
        // SAFETY: a cancel refers to no memory of ours.
        if unsafe { self.ring.push(&entries) }.is_ok() {
            pair.in_flight += entries.len() as u32;
        }
    }

    /// Drops pair `key` once nothing of it is in flight and it is over.
    fn maybe_finish(&mut self, key: usize) {
        let done = self.pairs.get(key).is_some_and(|p| {
            p.in_flight == 0 && (p.aborting || (p.flows[0].is_shut() && p.flows[1].is_shut()))
        });
        if !done {
            return;
        }
        let Some(pair) = self.pairs.try_remove(key) else {
            return;
        };
        for flow in &pair.flows {
            if let Some(b) = flow.held_buf() {
                self.give_back(b);
            }
        }
        self.finished.push(Finished {
            tag: pair.tag,
            moved: pair.moved,
        });
        // The sockets close here.
    }

    fn give_back(&mut self, bid: u16) {
        self.bufs.give_back(bid);
        self.out = self.out.saturating_sub(1);
        self.retry_starved(1);
    }

    /// Lets up to `n` starved directions receive again.
    fn retry_starved(&mut self, n: usize) {
        let mut woken = 0;
        while woken < n {
            let Some((key, dir)) = self.starved.pop_front() else {
                return;
            };
            let Some(pair) = self.pairs.get_mut(key) else {
                continue;
            };
            if pair.aborting || !pair.flows[dir].is_starved() {
                continue;
            }
            pair.flows[dir].unstarve();
            woken += 1;
            if self.drive(key).is_err() {
                self.abort(key);
            }
        }
    }
}

impl<T> Drop for RingRelays<T> {
    fn drop(&mut self) {
        tracing::debug!(
            "relay ring: {} receives waited for a free buffer",
            self.waits
        );
        if !self.pairs.is_empty() {
            self.close_all();
        }
        if !self.pairs.is_empty() || self.bufs.unregister(&self.ring.submitter()).is_err() {
            // An operation may still write into a buffer: leak them.
            self.bufs.leak();
        }
        if !self.pairs.is_empty() {
            // Their first bytes may still be read by a send: leak them too.
            std::mem::forget(std::mem::take(&mut self.pairs));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        for kind in [
            Kind::Watch,
            Kind::First,
            Kind::Recv,
            Kind::Send,
            Kind::Cancel,
        ] {
            for (key, dir) in [(0, 0), (1, 1), (0xffff_ffff, 1), (12345, 0)] {
                assert_eq!(decode(encode(kind, key, dir)), Some((kind, key, dir)));
            }
        }
        assert_eq!(decode(0), None);
        assert_eq!(decode(u64::MAX), None);
    }
}
