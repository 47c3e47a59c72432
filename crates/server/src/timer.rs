//! Deadlines for `--timeout`, without scanning every connection.
//!
//! Every connection gets the same timeout, so deadlines are created in
//! non-decreasing order: a FIFO queue is already sorted. Arming is a push,
//! finding what expired is a look at the front, and nothing is ever scanned.
//! Entries for connections that finished early are not removed (that would
//! need a search); each carries the connection's generation, and the engine
//! ignores an entry whose generation no longer matches its slot.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One armed deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// When it fires.
    pub at: Instant,
    /// The connection's slot (slab key).
    pub key: usize,
    /// The connection's generation when armed, to spot reused slots.
    pub generation: u32,
}

/// A queue of deadlines that all share one timeout.
#[derive(Debug)]
pub struct DeadlineQueue {
    timeout: Duration,
    queue: VecDeque<Deadline>,
}

impl DeadlineQueue {
    /// An empty queue whose deadlines fire `timeout` after arming.
    pub fn new(timeout: Duration) -> Self {
        DeadlineQueue {
            timeout,
            queue: VecDeque::new(),
        }
    }

    /// Arms a deadline `timeout` after `now` for `(key, generation)`.
    ///
    /// Never panics: a deadline past what `Instant` can hold becomes a far
    /// one (see [`far_deadline`]), and none is ever put before the last
    /// entry, so the queue stays sorted even then.
    pub fn arm(&mut self, now: Instant, key: usize, generation: u32) {
        let at = now
            .checked_add(self.timeout)
            .unwrap_or_else(|| far_deadline(now));
        let at = self.queue.back().map_or(at, |d| d.at.max(at));
        self.queue.push_back(Deadline {
            at,
            key,
            generation,
        });
    }

    /// Removes and returns the next deadline that is due at `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Deadline> {
        match self.queue.front() {
            Some(d) if d.at <= now => self.queue.pop_front(),
            _ => None,
        }
    }

    /// How long until the earliest deadline (zero if one is due), or `None`
    /// when nothing is armed. Stale entries may make this early, never late.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.queue
            .front()
            .map(|d| d.at.saturating_duration_since(now))
    }

    /// Drops entries for which `live(key, generation)` is false from the
    /// front, so a queue full of finished connections does not wake the loop.
    pub fn discard_stale(&mut self, mut live: impl FnMut(usize, u32) -> bool) {
        while let Some(d) = self.queue.front() {
            if live(d.key, d.generation) {
                break;
            }
            self.queue.pop_front();
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

/// The latest deadline after `now` that `Instant` can hold, found by halving
/// a century until it fits (a 64-bit clock fits it at the first try).
fn far_deadline(now: Instant) -> Instant {
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

    #[test]
    fn fires_in_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new(Duration::from_millis(100));
        q.arm(t0, 1, 0);
        q.arm(t0 + Duration::from_millis(10), 2, 0);
        assert_eq!(q.pop_expired(t0 + Duration::from_millis(99)), None);
        assert_eq!(
            q.next_timeout(t0 + Duration::from_millis(50)),
            Some(Duration::from_millis(50))
        );
        assert_eq!(
            q.pop_expired(t0 + Duration::from_millis(100))
                .map(|d| d.key),
            Some(1)
        );
        assert_eq!(q.pop_expired(t0 + Duration::from_millis(100)), None);
        assert_eq!(
            q.pop_expired(t0 + Duration::from_millis(110))
                .map(|d| d.key),
            Some(2)
        );
        assert!(q.is_empty());
        assert_eq!(q.next_timeout(t0), None);
    }

    #[test]
    fn discards_stale_front() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new(Duration::from_secs(1));
        q.arm(t0, 1, 7);
        q.arm(t0, 2, 7);
        q.arm(t0, 3, 7);
        q.discard_stale(|key, _| key == 2);
        assert_eq!(q.len(), 2);
        assert_eq!(
            q.pop_expired(t0 + Duration::from_secs(1)).map(|d| d.key),
            Some(2)
        );
    }

    #[test]
    fn a_timeout_past_the_clock_limit_arms_a_far_deadline() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new(Duration::MAX);
        q.arm(t0, 1, 0);
        q.arm(t0 + Duration::from_secs(1), 2, 0);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_expired(t0 + Duration::from_secs(3600)), None);
        let wait = q.next_timeout(t0).expect("armed");
        assert!(wait >= Duration::from_secs(3600), "{wait:?}");
    }
}
