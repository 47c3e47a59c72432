//! Deadlines without scanning every connection, and without keeping the
//! finished ones.
//!
//! Deadlines are pushed in non-decreasing order (every connection of a
//! server gets the same `--timeout`; a load generator's schedules only move
//! forward), so a FIFO queue is already sorted: arming is a push, finding
//! what expired is a look at the front. An entry names a connection by its
//! slot key and the generation of that use of the slot; a connection that
//! finishes early leaves its entry behind, and the owner recognises it as
//! stale because the generation no longer matches.
//!
//! Stale entries must not pile up: with `--timeout 1h`, one idle client at
//! the front would otherwise pin every entry pushed after it, about 32 bytes
//! per connection served, until its own deadline. [`DeadlineQueue::compact`]
//! drops them once they outnumber the live connections, so the queue is
//! bounded by the connections open, not by the connections served.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One armed deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// When it fires.
    pub at: Instant,
    /// The connection's slot.
    pub key: usize,
    /// The connection's generation when armed, to spot reused slots.
    pub generation: u32,
}

/// Entries a queue may hold beyond twice the live connections before
/// [`DeadlineQueue::compact`] scans it.
pub const COMPACT_SLACK: usize = 64;

/// A FIFO of deadlines pushed in time order.
#[derive(Debug, Default)]
pub struct DeadlineQueue {
    queue: VecDeque<Deadline>,
}

impl DeadlineQueue {
    /// An empty queue.
    pub fn new() -> Self {
        DeadlineQueue::default()
    }

    /// An empty queue with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        DeadlineQueue {
            queue: VecDeque::with_capacity(n),
        }
    }

    /// Arms a deadline at `at` for `(key, generation)`.
    ///
    /// A deadline earlier than the last one armed is moved up to it, so the
    /// queue stays sorted whatever the caller passes: an entry may fire
    /// late, never out of order.
    pub fn push(&mut self, at: Instant, key: usize, generation: u32) {
        let at = self.queue.back().map_or(at, |d| d.at.max(at));
        self.queue.push_back(Deadline {
            at,
            key,
            generation,
        });
    }

    /// Removes and returns the next deadline that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Deadline> {
        match self.queue.front() {
            Some(d) if d.at <= now => self.queue.pop_front(),
            _ => None,
        }
    }

    /// The earliest deadline, if any. Stale entries may make it early,
    /// never late.
    pub fn next(&self) -> Option<Instant> {
        self.queue.front().map(|d| d.at)
    }

    /// How long until the earliest deadline (zero if one is due), or `None`
    /// when nothing is armed.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.next().map(|at| at.saturating_duration_since(now))
    }

    /// Drops the entries of finished connections, those for which
    /// `is_live(key, generation)` is false.
    ///
    /// Stale entries at the front go at once (so they do not wake the
    /// loop early). The whole queue is scanned only when it holds more than
    /// `2 * live + COMPACT_SLACK` entries, where `live` is the number of
    /// connections that may still have one: each live connection has at
    /// most a couple of entries, so a scan removes about half of them or
    /// more, and scanning costs O(1) per push, amortised. Order is kept.
    pub fn compact(&mut self, live: usize, mut is_live: impl FnMut(usize, u32) -> bool) {
        while let Some(d) = self.queue.front() {
            if is_live(d.key, d.generation) {
                break;
            }
            self.queue.pop_front();
        }
        if self.queue.len() > live.saturating_mul(2).saturating_add(COMPACT_SLACK) {
            self.queue.retain(|d| is_live(d.key, d.generation));
        }
    }

    /// Number of entries, stale ones included.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no deadline is armed.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// How long a worker gives a connection after accepting it, when the kernel
/// may already have held it for `kernel_hold` (`TCP_DEFER_ACCEPT` hands a
/// silent client over only after that long): `timeout - kernel_hold`, so a
/// client that sends nothing is closed about `timeout` after it connected,
/// not `timeout + kernel_hold`. Never less than half of `timeout`, so a
/// client whose first bytes came at once still gets most of it.
pub fn after_accept(timeout: Duration, kernel_hold: Duration) -> Duration {
    timeout.saturating_sub(kernel_hold).max(timeout / 2)
}

/// `now + timeout`, or, where that is past what `Instant` can hold, the
/// latest instant after `now` that it can (found by halving a century until
/// it fits; a 64-bit clock fits it at the first try). Never panics.
pub fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    if let Some(at) = now.checked_add(timeout) {
        return at;
    }
    let mut ahead = Duration::from_secs(100 * 365 * 24 * 3600);
    loop {
        if let Some(at) = now.checked_add(ahead) {
            return at;
        }
        if ahead.is_zero() {
            return now;
        }
        ahead /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn fires_in_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new();
        q.push(t0 + 100 * MS, 1, 0);
        q.push(t0 + 110 * MS, 2, 0);
        assert_eq!(q.pop_due(t0 + 99 * MS), None);
        assert_eq!(q.next_timeout(t0 + 50 * MS), Some(50 * MS));
        assert_eq!(q.pop_due(t0 + 100 * MS).map(|d| d.key), Some(1));
        assert_eq!(q.pop_due(t0 + 100 * MS), None);
        assert_eq!(q.pop_due(t0 + 110 * MS).map(|d| d.key), Some(2));
        assert!(q.is_empty());
        assert_eq!(q.next_timeout(t0), None);
    }

    #[test]
    fn an_earlier_deadline_never_overtakes() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new();
        q.push(t0 + 10 * MS, 1, 0);
        q.push(t0, 2, 0);
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.pop_due(t0 + 10 * MS).map(|d| d.key), Some(1));
        assert_eq!(q.pop_due(t0 + 10 * MS).map(|d| d.key), Some(2));
    }

    #[test]
    fn stale_front_entries_go_at_once() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new();
        for key in 1..=3 {
            q.push(t0, key, 7);
        }
        q.compact(1, |key, _| key == 2);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_due(t0).map(|d| d.key), Some(2));
    }

    /// The bug this module fixes: one idle connection at the front, then
    /// many served ones behind it. The queue must stay within a small
    /// multiple of the live connections, not grow with every one served.
    #[test]
    fn one_idle_connection_does_not_pin_finished_ones() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        let mut q = DeadlineQueue::new();
        // Slot 0, generation 0: the idle client, first in the queue.
        q.push(far, 0, 0);
        let mut peak = 0;
        for generation in 1..200_000u32 {
            // Each served connection takes slot 1 with a new generation,
            // arms a deadline and finishes before the next one starts.
            q.push(far, 1, generation);
            let live = |key: usize, g: u32| (key, g) == (0, 0) || (key, g) == (1, generation);
            q.compact(2, live);
            peak = peak.max(q.len());
        }
        assert!(peak <= 2 * 2 + COMPACT_SLACK + 1, "peak {peak}");
        // The idle one is still there, first.
        assert_eq!(q.pop_due(far).map(|d| (d.key, d.generation)), Some((0, 0)));
    }

    #[test]
    fn compaction_keeps_every_live_entry_in_order() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new();
        let live_keys = [3usize, 5, 7];
        let is_live = |key: usize, g: u32| live_keys.contains(&key) && g == key as u32;
        for (i, key) in live_keys.into_iter().enumerate() {
            q.push(t0 + (i as u32) * MS, key, key as u32);
        }
        for i in 0..10_000u32 {
            q.push(t0 + 10 * MS, (i % 8) as usize, i + 100);
            q.compact(live_keys.len(), is_live);
        }
        let mut left = Vec::new();
        while let Some(d) = q.pop_due(t0 + 10 * MS) {
            if is_live(d.key, d.generation) {
                left.push(d.key);
            }
        }
        assert_eq!(left, live_keys);
    }

    #[test]
    fn the_kernel_hold_comes_off_the_timeout() {
        let s = Duration::from_secs;
        assert_eq!(after_accept(s(5), s(1)), s(4));
        assert_eq!(after_accept(s(2), s(1)), s(1));
        assert_eq!(after_accept(s(1), s(1)), 500 * MS);
        assert_eq!(after_accept(s(5), Duration::ZERO), s(5));
    }

    #[test]
    fn a_timeout_past_the_clock_limit_gives_a_far_deadline() {
        let t0 = Instant::now();
        let far = deadline_after(t0, Duration::MAX);
        assert!(far >= t0 + Duration::from_secs(3600));
        assert_eq!(deadline_after(t0, 5 * MS), t0 + 5 * MS);
    }
}
