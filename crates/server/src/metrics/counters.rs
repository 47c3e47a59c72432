//! The live counters: one cache-line-aligned block of `AtomicU64`s per
//! worker, written by that worker alone and read by anyone.
//!
//! A worker holds its block through a [`LiveTally`], which has the methods
//! the engines call ([`LiveTally::accepted`], [`LiveTally::ended`],
//! [`LiveTally::amend`]). Since the worker is the only writer, an increment
//! is a relaxed load and a relaxed store of its own cache line: no locked
//! read-modify-write, no line shared with another writer. Readers (the
//! metrics thread, the supervisor at exit) take [`Counters::snapshot`]s with
//! relaxed loads; a snapshot taken while the worker runs may be a few
//! increments behind or mix two moments, one taken after the worker has
//! ended is exact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flashpolicy_proto::serve::{AcceptErrorKind, End, Tally};

/// How many accept error kinds are counted ([`AcceptErrorKind::ERRORS`]).
pub const ACCEPT_ERROR_KINDS: usize = AcceptErrorKind::ERRORS.len();

/// One worker's counters. Aligned to 128 bytes, two cache lines (the
/// adjacent-line prefetcher pulls lines in pairs), so no other worker's block
/// or anything else shares its lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Block {
    accepted: AtomicU64,
    ends: [AtomicU64; End::ALL.len()],
    accept_errors: [AtomicU64; ACCEPT_ERROR_KINDS],
    /// `--gateway`: bytes relayed up (client to upstream) and down.
    relayed_bytes: [AtomicU64; 2],
}

const _: () = assert!(std::mem::size_of::<Block>() % 128 == 0);

/// Adds one to a counter that only the calling thread writes: a relaxed
/// load and store, not a locked read-modify-write.
#[inline]
fn bump(counter: &AtomicU64) {
    let v = counter.load(Ordering::Relaxed);
    counter.store(v.wrapping_add(1), Ordering::Relaxed);
}

fn end_index(end: End) -> usize {
    match end {
        End::Served => 0,
        End::Rejected => 1,
        End::TimedOut => 2,
        End::Failed => 3,
        End::Shed => 4,
        End::ProxyInvalid => 5,
        End::OverIpLimit => 6,
        End::Relayed => 7,
        End::UpstreamFailed => 8,
        End::OriginRefused => 9,
    }
}

fn accept_error_index(kind: AcceptErrorKind) -> Option<usize> {
    match kind {
        AcceptErrorKind::Empty => None,
        AcceptErrorKind::Retry => Some(0),
        AcceptErrorKind::OutOfResources => Some(1),
        AcceptErrorKind::Refused => Some(2),
        AcceptErrorKind::Other => Some(3),
    }
}

impl Block {
    fn snapshot(&self) -> Tally {
        let mut tally = Tally {
            accepted: self.accepted.load(Ordering::Relaxed),
            ..Tally::default()
        };
        for end in End::ALL {
            tally.add(end, self.ends[end_index(end)].load(Ordering::Relaxed));
        }
        tally
    }
}

/// A worker's own counters, the only handle that writes them. Not `Clone`:
/// one writer per block is what makes the plain load + store increments
/// correct.
#[derive(Debug)]
pub struct LiveTally(Arc<Block>);

impl LiveTally {
    /// Counts one accepted connection.
    #[inline]
    pub fn accepted(&mut self) {
        bump(&self.0.accepted);
    }

    /// Counts one connection that ended with `end`.
    #[inline]
    pub fn ended(&mut self, end: End) {
        bump(&self.0.ends[end_index(end)]);
    }

    /// Moves one connection counted as `from` to `to` (as
    /// [`Tally::amend`]): nothing if none was counted as `from`.
    pub fn amend(&mut self, from: End, to: End) {
        let was = &self.0.ends[end_index(from)];
        let v = was.load(Ordering::Relaxed);
        if v > 0 {
            was.store(v - 1, Ordering::Relaxed);
            self.ended(to);
        }
    }

    /// Counts one `accept` error of `kind` (nothing for
    /// [`AcceptErrorKind::Empty`], which is no error).
    #[inline]
    pub fn accept_error(&mut self, kind: AcceptErrorKind) {
        if let Some(i) = accept_error_index(kind) {
            bump(&self.0.accept_errors[i]);
        }
    }

    /// Counts the bytes one relay moved, up (client to upstream) and down.
    pub fn relayed_bytes(&mut self, up: u64, down: u64) {
        for (counter, n) in self.0.relayed_bytes.iter().zip([up, down]) {
            let v = counter.load(Ordering::Relaxed);
            counter.store(v.wrapping_add(n), Ordering::Relaxed);
        }
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Tally {
        self.0.snapshot()
    }
}

/// The read side of every worker's counters, in worker order.
#[derive(Debug, Clone)]
pub struct Counters {
    blocks: Arc<[Arc<Block>]>,
}

impl Counters {
    /// Counters for `workers` workers, and the [`LiveTally`] each worker
    /// writes (worker *i* gets the *i*-th).
    pub fn new(workers: usize) -> (Counters, Vec<LiveTally>) {
        let blocks: Vec<Arc<Block>> = (0..workers).map(|_| Arc::default()).collect();
        let tallies = blocks.iter().cloned().map(LiveTally).collect();
        (
            Counters {
                blocks: blocks.into(),
            },
            tallies,
        )
    }

    /// How many workers there are.
    pub fn workers(&self) -> usize {
        self.blocks.len()
    }

    /// Worker `worker`'s counts (all zero for an index out of range).
    pub fn snapshot(&self, worker: usize) -> Tally {
        self.blocks
            .get(worker)
            .map_or_else(Tally::default, |b| b.snapshot())
    }

    /// Every worker's counts, summed.
    pub fn total(&self) -> Tally {
        let mut total = Tally::default();
        for b in self.blocks.iter() {
            total += b.snapshot();
        }
        total
    }

    /// `--gateway`: bytes relayed `[up, down]`, summed over the threads.
    pub fn relayed_bytes(&self) -> [u64; 2] {
        let mut sum = [0u64; 2];
        for b in self.blocks.iter() {
            for (s, c) in sum.iter_mut().zip(&b.relayed_bytes) {
                *s += c.load(Ordering::Relaxed);
            }
        }
        sum
    }

    /// `accept` errors of each kind in [`AcceptErrorKind::ERRORS`], summed
    /// over the workers.
    pub fn accept_errors(&self) -> [u64; ACCEPT_ERROR_KINDS] {
        let mut sum = [0u64; ACCEPT_ERROR_KINDS];
        for b in self.blocks.iter() {
            for (s, c) in sum.iter_mut().zip(&b.accept_errors) {
                *s += c.load(Ordering::Relaxed);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_writes_its_own_block_and_the_reader_sees_all() {
        let (counters, mut tallies) = Counters::new(2);
        assert_eq!(counters.workers(), 2);
        assert_eq!(std::mem::align_of::<Block>(), 128);
        let (a, b) = tallies.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        for _ in 0..3 {
            a.accepted();
            a.ended(End::Served);
        }
        b.accepted();
        b.ended(End::TimedOut);
        a.amend(End::Served, End::Failed);
        b.amend(End::Served, End::Failed); // nothing to move
        let mut expect_a = Tally::default();
        for _ in 0..3 {
            expect_a.accepted();
            expect_a.ended(End::Served);
        }
        expect_a.amend(End::Served, End::Failed);
        assert_eq!(counters.snapshot(0), expect_a);
        assert_eq!(a.snapshot(), expect_a);
        assert_eq!(counters.snapshot(1).timed_out, 1);
        assert_eq!(counters.snapshot(1).failed, 0);
        assert_eq!(counters.snapshot(7), Tally::default());
        let total = counters.total();
        assert_eq!(total.accepted, 4);
        assert_eq!(total.ended_total(), 4);
        for end in End::ALL {
            assert_eq!(
                total.get(end),
                counters.snapshot(0).get(end) + counters.snapshot(1).get(end)
            );
        }
    }

    #[test]
    fn every_end_has_its_own_slot() {
        let (counters, mut tallies) = Counters::new(1);
        for (i, end) in End::ALL.into_iter().enumerate() {
            for _ in 0..=i {
                tallies[0].ended(end);
            }
        }
        let t = counters.snapshot(0);
        for (i, end) in End::ALL.into_iter().enumerate() {
            assert_eq!(t.get(end), i as u64 + 1, "{end}");
        }
    }

    #[test]
    fn accept_errors_by_kind_and_empty_is_not_one() {
        let (counters, mut tallies) = Counters::new(2);
        tallies[0].accept_error(AcceptErrorKind::Empty);
        tallies[0].accept_error(AcceptErrorKind::OutOfResources);
        tallies[1].accept_error(AcceptErrorKind::OutOfResources);
        tallies[1].accept_error(AcceptErrorKind::Other);
        let sum = counters.accept_errors();
        for (kind, n) in AcceptErrorKind::ERRORS.into_iter().zip(sum) {
            let want = match kind {
                AcceptErrorKind::OutOfResources => 2,
                AcceptErrorKind::Other => 1,
                _ => 0,
            };
            assert_eq!(n, want, "{}", kind.name());
        }
    }
}
