//! The worker: its state, and the poll loop that drives every client.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::mpsc::Sender;
use std::time::Instant;

use flashpolicy_proto::serve::DeadlineQueue;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::client::Conn;
use super::echo::SEND_CHUNK;
use super::interval::Msg;
use super::plan::{Plan, Share};
use crate::check::Checker;
use crate::cli::Stop;
use crate::mix::Picker;
use crate::stats::{Latencies, Stats};
use crate::sys::TimerFd;

const TIMER: Token = Token(usize::MAX - 1);
/// Scratch read buffer per thread.
const SCRATCH: usize = 16 * 1024;
/// Most connections the slab and the deadline queues have room for before
/// they grow.
const INITIAL_ROOM: usize = 16 * 1024;

pub(super) struct Worker {
    pub(super) plan: Plan,
    pub(super) poll: Poll,
    pub(super) conns: Slab<Conn>,
    pub(super) next_gen: u32,
    pub(super) picker: Picker,
    pub(super) checker: Checker,
    pub(super) scratch: Box<[u8]>,
    /// `--payload`: the buffer the pattern is generated into (empty
    /// without it).
    pub(super) send_buf: Box<[u8]>,
    /// `--websocket`: the server frames' payload is decoded into this
    /// (empty without it).
    pub(super) decoded: Box<[u8]>,
    pub(super) timeouts: DeadlineQueue,
    pub(super) fallbacks: DeadlineQueue,
    pub(super) slow: DeadlineQueue,
    /// `--send-delay`: connected clients waiting to send.
    pub(super) send_delays: DeadlineQueue,
    pub(super) sources: Vec<IpAddr>,
    pub(super) next_source: usize,
    /// `--proxy-source`: the next claimed address's number.
    pub(super) next_proxy_source: u64,
    pub(super) rec_start: Instant,
    pub(super) rec_end: Option<Instant>,
    /// Open loop: next global connection number.
    pub(super) next_index: u64,
    /// Closed loop: recorded clients started.
    pub(super) recorded_started: u64,
    pub(super) stats: Stats,
    pub(super) interval: Latencies,
    pub(super) interval_ok: u64,
    pub(super) interval_errors: u64,
    pub(super) interval_index: u64,
    pub(super) tx: Sender<Msg>,
}

impl Worker {
    pub(super) fn new(plan: Plan, tx: Sender<Msg>) -> io::Result<Worker> {
        let cfg = &plan.config;
        // Room for the usual number of connections up front; more grows
        // the slab (amortised, not per connection).
        let cap = plan.max_inflight.min(INITIAL_ROOM);
        let rec_start = plan.t0 + cfg.warmup;
        let rec_end = match cfg.stop {
            Stop::After(d) => Some(rec_start + d),
            Stop::Count(_) => None,
        };
        let next_index = match plan.share {
            Share::Open { first, .. } => first,
            Share::Closed { .. } => 0,
        };
        // Each worker starts at a different source address.
        let family: Vec<IpAddr> = cfg
            .sources
            .iter()
            .copied()
            .filter(|ip| ip.is_ipv4() == cfg.target.is_ipv4())
            .collect();
        let next_source = if family.is_empty() {
            0
        } else {
            plan.id * family.len() / cfg.threads.max(1)
        };
        Ok(Worker {
            poll: Poll::new()?,
            conns: Slab::with_capacity(cap),
            next_gen: 0,
            picker: cfg.mix.picker(),
            checker: Checker::new(cfg.expect.clone()),
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            send_buf: vec![0u8; if cfg.payload.is_some() { SEND_CHUNK } else { 0 }]
                .into_boxed_slice(),
            decoded: vec![0u8; if cfg.websocket.is_some() { SCRATCH } else { 0 }]
                .into_boxed_slice(),
            timeouts: DeadlineQueue::with_capacity(cap),
            fallbacks: DeadlineQueue::with_capacity(if cfg.fallback.is_some() { cap } else { 0 }),
            slow: DeadlineQueue::with_capacity(0),
            send_delays: DeadlineQueue::with_capacity(if cfg.send_delay.is_zero() {
                0
            } else {
                cap
            }),
            sources: family,
            next_source,
            next_proxy_source: plan.id as u64,
            rec_start,
            rec_end,
            next_index,
            recorded_started: 0,
            stats: Stats::new(),
            interval: Latencies::new(),
            interval_ok: 0,
            interval_errors: 0,
            interval_index: 0,
            tx,
            plan,
        })
    }

    pub(super) fn run(mut self) -> io::Result<Stats> {
        let timer = TimerFd::new()?;
        self.poll.registry().register(
            &mut SourceFd(&timer.as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        let mut armed: Option<Instant> = None;
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.expire(now);
            self.start_due(now);
            self.tick(now);
            if self.finished() {
                break;
            }
            let next_start = self.next_start();
            let wake = [
                next_start,
                self.timeouts.next(),
                self.fallbacks.next(),
                self.slow.next(),
                self.send_delays.next(),
                Some(self.next_tick()),
            ]
            .into_iter()
            .flatten()
            .min();
            let now = Instant::now();
            // The epoll timeout has millisecond granularity; the timerfd
            // wakes us on the microsecond for the next scheduled start or
            // the next `--send-delay` (one timer per thread, re-armed at
            // most once a turn, never one per connection).
            let precise = [next_start, self.send_delays.next()]
                .into_iter()
                .flatten()
                .min();
            if let Some(at) = precise {
                if at > now && armed != Some(at) {
                    timer.arm_after(at - now)?;
                    armed = Some(at);
                }
            }
            let timeout = wake.map(|w| w.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    TIMER => {
                        timer.drain();
                        armed = None;
                    }
                    Token(key) => self.on_event(
                        key,
                        ev.is_writable(),
                        ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ),
                }
            }
        }
        let now = Instant::now();
        self.send_interval(now, true);
        Ok(self.stats)
    }

    pub(super) fn fresh_gen(&mut self) -> u32 {
        self.next_gen = self.next_gen.wrapping_add(1);
        self.next_gen
    }

    pub(super) fn live(&self, key: usize, gen: u32) -> bool {
        self.conns.get(key).is_some_and(|c| c.gen == gen)
    }
}
