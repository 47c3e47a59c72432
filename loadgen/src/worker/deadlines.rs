//! The worker's deadlines (`--timeout`, `--fallback-after`, a slow client's
//! next byte, `--send-delay`) and what happens when one expires.
//!
//! Each kind has its own [`DeadlineQueue`](flashpolicy_proto::serve::DeadlineQueue)
//! (the one the server uses too): every deadline of a queue is the same
//! length from a moment that only moves forward, so a FIFO is already in
//! time order. A connection that finishes early leaves its entries behind;
//! they are recognised as stale by the slot's generation, and
//! [`DeadlineQueue::compact`](flashpolicy_proto::serve::DeadlineQueue::compact)
//! runs after every expiry pass so they never outnumber the live
//! connections (with `--timeout 1h` they would otherwise pile up by the
//! million).

use std::time::Instant;

use super::classify::NoPolicyWithin;
use super::client::Phase;
use super::event_loop::Worker;
use super::outcome::Outcome;
use crate::stats::ErrorKind;

impl Worker {
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(d) = self.fallbacks.pop_due(now) {
            if self.live(d.key, d.generation) {
                let fb = self
                    .plan
                    .config
                    .fallback
                    .map(|f| f.after)
                    .unwrap_or_default();
                let why = NoPolicyWithin(fb);
                self.conclude(d.key, Outcome::Failed(ErrorKind::Timeout, &why), now);
            }
        }
        while let Some(d) = self.timeouts.pop_due(now) {
            if self.live(d.key, d.generation) {
                let why = NoPolicyWithin(self.plan.config.timeout);
                self.conclude(d.key, Outcome::Failed(ErrorKind::Timeout, &why), now);
            }
        }
        while let Some(d) = self.slow.pop_due(now) {
            if self.live(d.key, d.generation) {
                self.send(d.key, now);
            }
        }
        while let Some(d) = self.send_delays.pop_due(now) {
            let delaying = self
                .conns
                .get(d.key)
                .is_some_and(|c| c.gen == d.generation && c.phase == Phase::Delaying);
            if delaying {
                self.start_sending(d.key, now);
            }
        }
        let conns = &self.conns;
        let is_live = |key: usize, gen: u32| conns.get(key).is_some_and(|c| c.gen == gen);
        for q in [
            &mut self.timeouts,
            &mut self.fallbacks,
            &mut self.slow,
            &mut self.send_delays,
        ] {
            q.compact(conns.len(), is_live);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use clap::Parser;
    use flashpolicy_proto::serve::deadline::COMPACT_SLACK;
    use mio::net::TcpStream;

    use super::*;
    use crate::check::ReplyState;
    use crate::cli::{Cli, RunConfig};
    use crate::mix::Scenario;
    use crate::worker::client::Conn;
    use crate::worker::plan::{Plan, Share};

    fn worker() -> Worker {
        let cli = Cli::try_parse_from(["x", "--timeout", "1h", "127.0.0.1:9"]).expect("valid");
        let plan = Plan {
            id: 0,
            config: Arc::new(RunConfig::from_args(cli.run).expect("valid")),
            t0: Instant::now(),
            share: Share::Closed {
                connections: 1,
                count: None,
            },
            max_inflight: 16,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (tx, _rx) = mpsc::channel();
        Worker::new(plan, tx).expect("worker")
    }

    /// The worker's side of the compaction that the queue itself tests:
    /// `expire` compacts every queue, and it asks the slab (slot and
    /// generation) which entries are live.
    #[test]
    fn deadlines_of_finished_connections_do_not_pile_up() {
        let mut w = worker();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = std::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .expect("connect on loopback");
        let now = Instant::now();
        let far = now + Duration::from_secs(3600);
        let gen = w.fresh_gen();
        let live = w.conns.insert(Conn {
            stream: TcpStream::from_std(stream),
            gen,
            scenario: Scenario::Good,
            phase: Phase::Receiving,
            origin: now,
            connected_at: now,
            first_byte_at: None,
            payload: std::borrow::Cow::Borrowed(b""),
            sent: 0,
            recorded: false,
            fallback_attempt: false,
            reply: ReplyState::for_target(0),
            echo: None,
            second: false,
            ws: None,
        });
        for q in [
            &mut w.timeouts,
            &mut w.fallbacks,
            &mut w.slow,
            &mut w.send_delays,
        ] {
            q.push(far, live, gen);
        }
        let mut peak = 0;
        for i in 0..20_000u32 {
            // Connections that finished: the live slot with an old
            // generation, or slots that are empty now.
            let (key, g) = if i % 2 == 0 {
                (live, gen.wrapping_sub(1 + i))
            } else {
                (live + 1 + (i as usize % 7), i)
            };
            for q in [
                &mut w.timeouts,
                &mut w.fallbacks,
                &mut w.slow,
                &mut w.send_delays,
            ] {
                q.push(far, key, g);
            }
            w.expire(now);
            peak = [&w.timeouts, &w.fallbacks, &w.slow, &w.send_delays]
                .iter()
                .map(|q| q.len())
                .fold(peak, usize::max);
        }
        assert!(peak <= 2 + COMPACT_SLACK + 1, "peak {peak}");
        // The live connection's entries are all still there.
        for q in [
            &mut w.timeouts,
            &mut w.fallbacks,
            &mut w.slow,
            &mut w.send_delays,
        ] {
            let mut left = Vec::new();
            while let Some(d) = q.pop_due(far) {
                if (d.key, d.generation) == (live, gen) {
                    left.push(d.key);
                }
            }
            assert_eq!(left, [live]);
        }
    }
}
