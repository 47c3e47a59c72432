//! The load models: whether and when the next client starts, closed loop
//! (keep N going) or open loop (on the schedule).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::client::Client;
use super::event_loop::Worker;
use super::plan::Share;
use crate::stats::record;

/// Most clients one loop iteration starts before it looks at events again.
const STARTS_PER_TURN: usize = 512;

impl Worker {
    /// Whether no client will start any more.
    pub(super) fn starts_over(&self, now: Instant) -> bool {
        if self.plan.stop.load(Ordering::Relaxed) {
            return true;
        }
        match self.plan.share {
            Share::Closed { count, .. } => match (count, self.rec_end) {
                (Some(n), _) => self.recorded_started >= n,
                (None, Some(end)) => now >= end,
                (None, None) => true,
            },
            Share::Open {
                schedule,
                end_index,
                ..
            } => match end_index {
                Some(end) => self.next_index >= end,
                None => {
                    let end = self.rec_end.unwrap_or(self.rec_start);
                    self.plan.t0 + schedule.offset(self.next_index) >= end
                }
            },
        }
    }

    pub(super) fn finished(&self) -> bool {
        self.conns.is_empty() && self.starts_over(Instant::now())
    }

    /// Open loop: when the next connection is due (if it will start at all).
    pub(super) fn next_start(&self) -> Option<Instant> {
        match self.plan.share {
            Share::Open { schedule, .. } => {
                if self.starts_over(Instant::now()) || self.conns.len() >= self.plan.max_inflight {
                    None
                } else {
                    Some(self.plan.t0 + schedule.offset(self.next_index))
                }
            }
            Share::Closed { .. } => None,
        }
    }

    pub(super) fn start_due(&mut self, now: Instant) {
        let mut started = 0;
        match self.plan.share {
            Share::Closed { connections, .. } => {
                while self.conns.len() < connections.min(self.plan.max_inflight)
                    && started < STARTS_PER_TURN
                    && !self.starts_over(now)
                {
                    let recorded = now >= self.rec_start;
                    if recorded {
                        self.recorded_started += 1;
                    }
                    let scenario = self.picker.next_scenario();
                    self.begin_client(
                        Client {
                            scenario,
                            origin: now,
                            recorded,
                            second: false,
                        },
                        now,
                    );
                    started += 1;
                }
            }
            Share::Open {
                schedule,
                stride,
                first_recorded,
                ..
            } => {
                while started < STARTS_PER_TURN
                    && self.conns.len() < self.plan.max_inflight
                    && !self.starts_over(now)
                {
                    let intended = self.plan.t0 + schedule.offset(self.next_index);
                    if intended > now {
                        break;
                    }
                    let recorded = self.next_index >= first_recorded;
                    self.next_index += stride;
                    if recorded {
                        record(&mut self.stats.lag, now - intended);
                    }
                    let scenario = self.picker.next_scenario();
                    self.begin_client(
                        Client {
                            scenario,
                            origin: intended,
                            recorded,
                            second: false,
                        },
                        now,
                    );
                    started += 1;
                }
            }
        }
    }
}
