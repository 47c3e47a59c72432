//! What a worker reports to the main thread, and its once-a-second tick.

use std::io;
use std::time::{Duration, Instant};

use super::event_loop::Worker;
use crate::stats::{Latencies, Stats};

/// Sent by workers to the main thread.
#[derive(Debug)]
pub enum Msg {
    /// One second (or the final part of one) of recorded results.
    Interval(Box<Interval>),
    /// The worker finished.
    Done {
        /// Which worker.
        id: usize,
        /// Its totals, or why it failed.
        result: io::Result<Box<Stats>>,
    },
}

/// Results of good clients that completed during one interval.
#[derive(Debug)]
pub struct Interval {
    /// Which worker.
    pub worker: usize,
    /// Interval number since recording started (1 s each).
    pub index: u64,
    /// Length (1 s except the last).
    pub length: Duration,
    /// Good clients that succeeded.
    pub ok: u64,
    /// Good clients that failed.
    pub errors: u64,
    /// Latencies of the successes.
    pub latency: Latencies,
    /// Connections open at the end of the interval.
    pub in_flight: usize,
}

impl Worker {
    pub(super) fn next_tick(&self) -> Instant {
        self.rec_start + Duration::from_secs(self.interval_index + 1)
    }

    pub(super) fn tick(&mut self, now: Instant) {
        while now >= self.next_tick() {
            self.send_interval(self.next_tick(), false);
        }
    }

    pub(super) fn send_interval(&mut self, end: Instant, last: bool) {
        let start = self.rec_start + Duration::from_secs(self.interval_index);
        if end < start {
            return; // still warming up: nothing recorded yet
        }
        let latency = std::mem::take(&mut self.interval);
        let msg = Interval {
            worker: self.plan.id,
            index: self.interval_index,
            length: if last {
                end - start
            } else {
                Duration::from_secs(1)
            },
            ok: std::mem::take(&mut self.interval_ok),
            errors: std::mem::take(&mut self.interval_errors),
            latency,
            in_flight: self.conns.len(),
        };
        self.interval_index += 1;
        let _ = self.tx.send(Msg::Interval(Box::new(msg)));
    }
}
