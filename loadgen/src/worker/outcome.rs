//! Accounting for a client whose attempt ended: its counts and latencies,
//! or, for a failed first attempt with `--flash-fallback`, the second try.

use std::fmt;
use std::time::Instant;

use super::client::Client;
use super::event_loop::Worker;
use crate::cli::Fallback;
use crate::mix::Scenario;
use crate::stats::{record, ErrorKind};

/// How an attempt ended.
pub(super) enum Outcome<'a> {
    Ok,
    Failed(ErrorKind, &'a dyn fmt::Display),
}

impl Worker {
    /// The attempt at `key` is over: close it and account for the client.
    pub(super) fn conclude(&mut self, key: usize, outcome: Outcome<'_>, now: Instant) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        // Dropping the stream closes it, which also removes it from epoll.
        let client = Client {
            scenario: conn.scenario,
            origin: conn.origin,
            recorded: conn.recorded,
            second: conn.second,
        };
        if matches!(outcome, Outcome::Ok)
            && self.plan.config.flash_gateway
            && !conn.second
            && conn.scenario == Scenario::Good
        {
            // --flash-gateway: the policy came; now the game connection.
            drop(conn);
            let next = Client {
                second: true,
                ..client
            };
            self.attempt(next, self.plan.config.target, None, now);
            return;
        }
        let fallback = if conn.fallback_attempt {
            None
        } else if conn.scenario.wants_policy() {
            self.plan.config.fallback
        } else {
            None
        };
        let timing = Timing {
            connected_at: conn.connected_at,
            first_byte_at: conn.first_byte_at,
            fell_back: conn.fallback_attempt,
        };
        drop(conn);
        self.finish_client(client, fallback, Some(timing), outcome, now);
    }

    /// Accounts for a client whose attempt ended. A failed first attempt of a
    /// client with a fallback starts the second attempt instead.
    pub(super) fn finish_client(
        &mut self,
        client: Client,
        fallback: Option<Fallback>,
        timing: Option<Timing>,
        outcome: Outcome<'_>,
        now: Instant,
    ) {
        if let (Some(fb), Outcome::Failed(kind, _)) = (fallback, &outcome) {
            if client.recorded {
                let s = &mut self.stats.by_scenario[client.scenario.index()];
                s.fell_back += 1;
                s.fallback_reasons[kind.index()] += 1;
            }
            self.attempt(client, fb.addr, None, now);
            return;
        }
        self.stats.finished_all += 1;
        if !client.recorded {
            return;
        }
        self.stats.last_completion = self
            .stats
            .last_completion
            .max(now.saturating_duration_since(self.rec_start));
        let good = client.scenario == Scenario::Good;
        let s = &mut self.stats.by_scenario[client.scenario.index()];
        match outcome {
            Outcome::Ok => {
                s.ok += 1;
                let t = timing.unwrap_or(Timing {
                    connected_at: now,
                    first_byte_at: None,
                    fell_back: false,
                });
                let connect = t.connected_at.saturating_duration_since(client.origin);
                let first = t
                    .first_byte_at
                    .unwrap_or(now)
                    .saturating_duration_since(client.origin);
                let total = now.saturating_duration_since(client.origin);
                record(&mut s.latency.connect, connect);
                record(&mut s.latency.first_byte, first);
                record(&mut s.latency.total, total);
                if t.fell_back {
                    record(&mut s.fell_back_total, total);
                }
                if good {
                    self.interval_ok += 1;
                    record(&mut self.interval.connect, connect);
                    record(&mut self.interval.first_byte, first);
                    record(&mut self.interval.total, total);
                }
            }
            Outcome::Failed(kind, why) => {
                s.errors[kind.index()] += 1;
                if good {
                    self.interval_errors += 1;
                }
                let slot = &mut self.stats.first_error[kind.index()];
                if slot.is_none() {
                    *slot = Some(format!("{} client: {why}", client.scenario));
                }
            }
        }
    }
}

/// When an attempt's connection was established and its reply began.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub(super) connected_at: Instant,
    pub(super) first_byte_at: Option<Instant>,
    pub(super) fell_back: bool,
}
