//! The worker's deadlines (`--timeout`, `--fallback-after`, a slow client's
//! next byte) and what happens when one expires.

use std::collections::VecDeque;
use std::time::Instant;

use super::classify::NoPolicyWithin;
use super::event_loop::Worker;
use super::outcome::Outcome;
use crate::stats::ErrorKind;

/// Deadlines of one fixed length, pushed in time order: a FIFO is a
/// complete timer, with no scans and no heap.
///
/// An entry stays until it is due even when its connection finished long
/// before (nearly all do), so the queue holds every connection started in
/// the last `--timeout`: at 50,000 connections/s and `--timeout 1h`, 180
/// million entries. [`Deadlines::compact`] drops the finished connections'
/// entries once they outnumber the live ones, which bounds the queue by the
/// connections in flight.
#[derive(Debug)]
pub(super) struct Deadlines {
    q: VecDeque<(Instant, usize, u32)>,
}

/// Entries a queue may hold beyond twice the live connections before
/// [`Deadlines::compact`] scans it.
const COMPACT_SLACK: usize = 1024;

impl Deadlines {
    pub(super) fn with_capacity(n: usize) -> Deadlines {
        Deadlines {
            q: VecDeque::with_capacity(n),
        }
    }
    pub(super) fn push(&mut self, at: Instant, key: usize, gen: u32) {
        self.q.push_back((at, key, gen));
    }
    pub(super) fn next(&self) -> Option<Instant> {
        self.q.front().map(|e| e.0)
    }
    #[cfg(test)]
    fn len(&self) -> usize {
        self.q.len()
    }
    /// Drops the entries of finished connections (those `is_live` denies)
    /// when the queue holds more than `2 * live + COMPACT_SLACK`. Each live
    /// connection has at most one entry in a queue, so at least half the
    /// entries go, and the scans cost O(1) per push, amortised. Order is
    /// kept.
    fn compact(&mut self, live: usize, is_live: impl Fn(usize, u32) -> bool) {
        if self.q.len() > live.saturating_mul(2).saturating_add(COMPACT_SLACK) {
            self.q.retain(|&(_, key, gen)| is_live(key, gen));
        }
    }
    fn pop_due(&mut self, now: Instant) -> Option<(usize, u32)> {
        match self.q.front() {
            Some(&(at, key, gen)) if at <= now => {
                self.q.pop_front();
                Some((key, gen))
            }
            _ => None,
        }
    }
}

impl Worker {
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((key, gen)) = self.fallbacks.pop_due(now) {
            if self.live(key, gen) {
                let fb = self
                    .plan
                    .config
                    .fallback
                    .map(|f| f.after)
                    .unwrap_or_default();
                let why = NoPolicyWithin(fb);
                self.conclude(key, Outcome::Failed(ErrorKind::Timeout, &why), now);
            }
        }
        while let Some((key, gen)) = self.timeouts.pop_due(now) {
            if self.live(key, gen) {
                let why = NoPolicyWithin(self.plan.config.timeout);
                self.conclude(key, Outcome::Failed(ErrorKind::Timeout, &why), now);
            }
        }
        while let Some((key, gen)) = self.slow.pop_due(now) {
            if self.live(key, gen) {
                self.send(key, now);
            }
        }
        let conns = &self.conns;
        let is_live = |key: usize, gen: u32| conns.get(key).is_some_and(|c| c.gen == gen);
        for q in [&mut self.timeouts, &mut self.fallbacks, &mut self.slow] {
            q.compact(conns.len(), is_live);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn deadlines_pop_in_order_only_when_due() {
        let t = Instant::now();
        let mut d = Deadlines::with_capacity(4);
        assert_eq!(d.next(), None);
        d.push(t + Duration::from_millis(10), 1, 7);
        d.push(t + Duration::from_millis(20), 2, 8);
        assert_eq!(d.next(), Some(t + Duration::from_millis(10)));
        assert_eq!(d.pop_due(t), None);
        assert_eq!(d.pop_due(t + Duration::from_millis(15)), Some((1, 7)));
        assert_eq!(d.pop_due(t + Duration::from_millis(15)), None);
        assert_eq!(d.pop_due(t + Duration::from_millis(20)), Some((2, 8)));
        assert_eq!(d.next(), None);
    }

    #[test]
    fn deadlines_of_finished_connections_do_not_pile_up() {
        // A long run with a long timeout: every connection finishes at once,
        // a few stay open; the queue must stay near the live count, not
        // grow with every connection started.
        let t = Instant::now() + Duration::from_secs(3600);
        let mut d = Deadlines::with_capacity(16);
        let live_keys = [3usize, 5, 7];
        let is_live = |key: usize, gen: u32| live_keys.contains(&key) && gen == key as u32;
        for key in live_keys {
            d.push(t, key, key as u32);
        }
        let mut peak = 0;
        for i in 0..100_000u32 {
            // Finished connections reuse slab keys with new generations.
            d.push(t, (i % 8) as usize, i + 100);
            d.compact(live_keys.len(), is_live);
            peak = peak.max(d.len());
        }
        assert!(
            peak <= 2 * live_keys.len() + COMPACT_SLACK + 1,
            "peak {peak}"
        );
        // The live ones are all still there, in order.
        let mut left = Vec::new();
        while let Some(e) = d.pop_due(t) {
            if is_live(e.0, e.1) {
                left.push(e.0);
            }
        }
        assert_eq!(left, live_keys);
    }
}
