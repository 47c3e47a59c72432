//! One load-generating thread: its own mio event loop, a slab of client
//! state machines, deadline queues, and its own histograms.
//!
//! A client (Flash Player) goes: connect (non-blocking) -> writable: send the
//! request -> readable: read until the server closes -> check the reply ->
//! close. With `--flash-fallback`, a client whose first attempt gives no
//! valid policy in time tries again on the fallback port.
//!
//! Nothing on this path allocates or locks per connection: the slab and the
//! queues are sized up front, replies are read into one scratch buffer per
//! thread and checked incrementally ([`crate::check`]), and histograms are
//! fixed-size. Once a second the thread sends the interval's histograms to
//! the main thread (progress, `--log`); its totals come back when it ends.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::check::{Checker, ReplyState};
use crate::cli::{Fallback, RunConfig, Stop};
use crate::mix::{Picker, Scenario};
use crate::schedule::Schedule;
use crate::stats::{record, ErrorKind, Latencies, Stats};
use crate::sys::{self, TimerFd};

/// Bytes a `garbage` client sends: an HTTP request, the most common wrong
/// thing to arrive on a policy port.
pub const GARBAGE: &[u8] = b"GET /crossdomain.xml HTTP/1.1\r\nHost: flashpolicy\r\n\r\n";

const TIMER: Token = Token(usize::MAX - 1);
/// Most clients one loop iteration starts before it looks at events again.
const STARTS_PER_TURN: usize = 512;
/// Scratch read buffer per thread.
const SCRATCH: usize = 16 * 1024;

/// What one worker does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// This worker's number, 0-based.
    pub id: usize,
    /// The run's settings.
    pub config: Arc<RunConfig>,
    /// When the run started (all workers share it).
    pub t0: Instant,
    /// Closed or open loop, this worker's share.
    pub share: Share,
    /// Most connections this worker holds at once.
    pub max_inflight: usize,
    /// Set on Ctrl-C: start no more clients, finish the ones in flight.
    pub stop: Arc<AtomicBool>,
}

/// This worker's part of the load.
#[derive(Debug, Clone, Copy)]
pub enum Share {
    /// Keep this many clients going; with `Stop::Count`, record `count`.
    Closed {
        /// Concurrent clients.
        connections: usize,
        /// Recorded clients to start (with `--count`).
        count: Option<u64>,
    },
    /// Start global connection numbers `first, first + stride, …`.
    Open {
        /// The global schedule.
        schedule: Schedule,
        /// First connection number.
        first: u64,
        /// Distance between this worker's numbers (the thread count).
        stride: u64,
        /// Numbers below this are warm-up (not recorded).
        first_recorded: u64,
        /// Stop before this number (with `--count`).
        end_index: Option<u64>,
    },
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the handshake.
    Connecting,
    /// Sending the payload.
    Sending,
    /// Slow client between two bytes.
    Pausing,
    /// Reading until the server closes.
    Receiving,
}

/// One client attempt.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    gen: u32,
    scenario: Scenario,
    phase: Phase,
    /// Latency is measured from here: the intended start (open loop) or the
    /// actual start (closed loop) of the client's first attempt.
    origin: Instant,
    connected_at: Instant,
    first_byte_at: Option<Instant>,
    sent: usize,
    recorded: bool,
    fallback_attempt: bool,
    reply: ReplyState,
}

/// A client about to (re)start.
#[derive(Debug, Clone, Copy)]
struct Client {
    scenario: Scenario,
    origin: Instant,
    recorded: bool,
}

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
struct Deadlines {
    q: VecDeque<(Instant, usize, u32)>,
}

/// Entries a queue may hold beyond twice the live connections before
/// [`Deadlines::compact`] scans it.
const COMPACT_SLACK: usize = 1024;

impl Deadlines {
    fn with_capacity(n: usize) -> Deadlines {
        Deadlines {
            q: VecDeque::with_capacity(n),
        }
    }
    fn push(&mut self, at: Instant, key: usize, gen: u32) {
        self.q.push_back((at, key, gen));
    }
    fn next(&self) -> Option<Instant> {
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

enum Outcome<'a> {
    Ok,
    Failed(ErrorKind, &'a dyn fmt::Display),
}

struct Worker {
    plan: Plan,
    poll: Poll,
    conns: Slab<Conn>,
    next_gen: u32,
    picker: Picker,
    checker: Checker,
    scratch: Box<[u8]>,
    timeouts: Deadlines,
    fallbacks: Deadlines,
    slow: Deadlines,
    sources: Vec<IpAddr>,
    next_source: usize,
    rec_start: Instant,
    rec_end: Option<Instant>,
    /// Open loop: next global connection number.
    next_index: u64,
    /// Closed loop: recorded clients started.
    recorded_started: u64,
    stats: Stats,
    interval: Latencies,
    interval_ok: u64,
    interval_errors: u64,
    interval_index: u64,
    tx: Sender<Msg>,
}

/// Runs one worker until its share is done and every connection finished;
/// reports intervals and the totals on `tx`.
pub fn run(plan: Plan, tx: Sender<Msg>) {
    let id = plan.id;
    let result = Worker::new(plan, tx.clone())
        .and_then(Worker::run)
        .map(Box::new);
    let _ = tx.send(Msg::Done { id, result });
}

fn request_of(s: Scenario) -> &'static [u8] {
    match s {
        Scenario::Good | Scenario::Slow => flashpolicy_proto::POLICY_REQUEST,
        Scenario::Garbage => GARBAGE,
        Scenario::Idle => b"",
    }
}

impl Worker {
    fn new(plan: Plan, tx: Sender<Msg>) -> io::Result<Worker> {
        let cfg = &plan.config;
        // Room for the usual number of connections up front; more grows
        // the slab (amortised, not per connection).
        let cap = plan.max_inflight.min(16 * 1024);
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
            timeouts: Deadlines::with_capacity(cap),
            fallbacks: Deadlines::with_capacity(if cfg.fallback.is_some() { cap } else { 0 }),
            slow: Deadlines::with_capacity(0),
            sources: family,
            next_source,
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

    fn run(mut self) -> io::Result<Stats> {
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
                Some(self.next_tick()),
            ]
            .into_iter()
            .flatten()
            .min();
            let now = Instant::now();
            if let Some(start) = next_start {
                // The epoll timeout has millisecond granularity; the timerfd
                // wakes us on the microsecond for the next scheduled start.
                if start > now && armed != Some(start) {
                    timer.arm_after(start - now)?;
                    armed = Some(start);
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

    fn fresh_gen(&mut self) -> u32 {
        self.next_gen = self.next_gen.wrapping_add(1);
        self.next_gen
    }

    // ---- load models -------------------------------------------------

    /// Whether no client will start any more.
    fn starts_over(&self, now: Instant) -> bool {
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

    fn finished(&self) -> bool {
        self.conns.is_empty() && self.starts_over(Instant::now())
    }

    /// Open loop: when the next connection is due (if it will start at all).
    fn next_start(&self) -> Option<Instant> {
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

    fn start_due(&mut self, now: Instant) {
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
                        },
                        now,
                    );
                    started += 1;
                }
            }
        }
    }

    // ---- time -----------------------------------------------------------

    fn next_tick(&self) -> Instant {
        self.rec_start + Duration::from_secs(self.interval_index + 1)
    }

    fn tick(&mut self, now: Instant) {
        while now >= self.next_tick() {
            self.send_interval(self.next_tick(), false);
        }
    }

    fn send_interval(&mut self, end: Instant, last: bool) {
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

    fn expire(&mut self, now: Instant) {
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

    fn live(&self, key: usize, gen: u32) -> bool {
        self.conns.get(key).is_some_and(|c| c.gen == gen)
    }

    // ---- one client ------------------------------------------------------

    fn begin_client(&mut self, client: Client, now: Instant) {
        if client.recorded {
            self.stats.by_scenario[client.scenario.index()].started += 1;
        }
        let fallback = if client.scenario.wants_policy() {
            self.plan.config.fallback
        } else {
            None
        };
        self.attempt(client, self.plan.config.target, fallback, now);
    }

    /// Opens one connection for `client`. With `fallback`, this is the first
    /// of Flash Player's two attempts.
    fn attempt(
        &mut self,
        client: Client,
        addr: SocketAddr,
        fallback: Option<Fallback>,
        now: Instant,
    ) {
        let stream = match self.connect(addr) {
            Ok(s) => s,
            Err(e) => {
                let kind = classify_connect(&e);
                let msg = ConnectError(addr, e);
                self.finish_client(client, fallback, None, Outcome::Failed(kind, &msg), now);
                return;
            }
        };
        let gen = self.fresh_gen();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let fallback_attempt = fallback.is_none()
            && self.plan.config.fallback.is_some()
            && client.scenario.wants_policy();
        let mut conn = Conn {
            stream,
            gen,
            scenario: client.scenario,
            phase: Phase::Connecting,
            origin: client.origin,
            connected_at: now,
            first_byte_at: None,
            sent: 0,
            recorded: client.recorded,
            fallback_attempt,
            // Each port keeps its own reference reply.
            reply: ReplyState::for_target(usize::from(fallback_attempt)),
        };
        if let Err(e) = self.poll.registry().register(
            &mut conn.stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            let kind = classify_connect(&e);
            let msg = ConnectError(addr, e);
            self.finish_client(client, fallback, None, Outcome::Failed(kind, &msg), now);
            return;
        }
        entry.insert(conn);
        self.timeouts.push(now + self.plan.config.timeout, key, gen);
        if let Some(fb) = fallback {
            self.fallbacks.push(client.origin + fb.after, key, gen);
        }
        if client.scenario != Scenario::Idle {
            self.send_early(key, addr, Instant::now());
        }
    }

    /// Tries to send right after `connect`: on loopback (and whenever the
    /// handshake is quick) the connection is already established, which
    /// saves a trip through the event loop. A connection still handshaking
    /// answers EAGAIN and is handled when it turns writable.
    fn send_early(&mut self, key: usize, addr: SocketAddr, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let payload = request_of(conn.scenario);
        let end = if conn.scenario == Scenario::Slow {
            if conn.stream.set_nodelay(true).is_err() {
                return;
            }
            1
        } else {
            payload.len()
        };
        match conn.stream.write(&payload[..end]) {
            Ok(n) => {
                conn.connected_at = now;
                conn.phase = Phase::Sending;
                conn.sent = n;
                if conn.scenario == Scenario::Slow && n > 0 && n < payload.len() {
                    conn.phase = Phase::Pausing;
                    let gen = conn.gen;
                    let at = now + self.plan.config.slow_interval;
                    self.slow.push(at, key, gen);
                } else {
                    self.send(key, now);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let kind = classify_connect(&e);
                self.conclude(key, Outcome::Failed(kind, &ConnectError(addr, e)), now);
            }
        }
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        if !self.sources.is_empty() {
            let ip = self.sources[self.next_source];
            self.next_source = (self.next_source + 1) % self.sources.len();
            if ip.is_ipv4() {
                sys::set_bind_address_no_port(socket.as_raw_fd())?;
            } else {
                // Linux honours it on IPv6 sockets too; without it the
                // bind merely picks a port early.
                let _ = sys::set_bind_address_no_port(socket.as_raw_fd());
            }
            socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
        }
        match socket.connect(&SockAddr::from(addr)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(std::net::TcpStream::from(socket)))
    }

    fn on_event(&mut self, key: usize, writable: bool, readable: bool) {
        let now = Instant::now();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase == Phase::Connecting {
            // A non-blocking connect has finished when the socket turns
            // writable; SO_ERROR says how. (Anything else is a spurious
            // wake-up, or an error that SO_ERROR also reports.)
            let failed = match conn.stream.take_error() {
                Ok(None) if writable => None,
                Ok(None) => return,
                Ok(Some(e)) | Err(e) => Some(e),
            };
            if let Some(e) = failed {
                let kind = classify_connect(&e);
                let addr = self.attempt_addr(key);
                self.conclude(key, Outcome::Failed(kind, &ConnectError(addr, e)), now);
                return;
            }
            conn.connected_at = now;
            if conn.scenario == Scenario::Idle {
                conn.phase = Phase::Receiving;
            } else {
                conn.phase = Phase::Sending;
                if conn.scenario == Scenario::Slow {
                    // Each byte in its own segment.
                    let _ = conn.stream.set_nodelay(true);
                }
                if !self.send(key, now) {
                    return;
                }
            }
        } else if writable && conn.phase == Phase::Sending && !self.send(key, now) {
            return;
        }
        if readable {
            self.receive(key, now);
        }
    }

    fn attempt_addr(&self, key: usize) -> SocketAddr {
        match (self.conns.get(key), self.plan.config.fallback) {
            (Some(c), Some(fb)) if c.fallback_attempt => fb.addr,
            _ => self.plan.config.target,
        }
    }

    /// Sends what the client has to send now. Returns false when the
    /// connection is gone.
    fn send(&mut self, key: usize, now: Instant) -> bool {
        let slow_interval = self.plan.config.slow_interval;
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let payload = request_of(conn.scenario);
        while conn.sent < payload.len() {
            let end = if conn.scenario == Scenario::Slow {
                conn.sent + 1
            } else {
                payload.len()
            };
            match conn.stream.write(&payload[conn.sent..end]) {
                Ok(0) => break,
                Ok(n) => {
                    conn.sent += n;
                    if conn.scenario == Scenario::Slow && conn.sent < payload.len() {
                        conn.phase = Phase::Pausing;
                        let gen = conn.gen;
                        self.slow.push(now + slow_interval, key, gen);
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.phase = Phase::Sending;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.conclude(key, Outcome::Failed(classify_io(&e), &e), now);
                    return false;
                }
            }
        }
        conn.phase = Phase::Receiving;
        true
    }

    fn receive(&mut self, key: usize, now: Instant) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    let outcome = if conn.scenario.wants_policy() {
                        self.checker.finish(&mut conn.reply)
                    } else {
                        if !conn.reply.is_empty() {
                            self.stats.by_scenario[conn.scenario.index()].unexpected_replies +=
                                u64::from(conn.recorded);
                        }
                        Ok(())
                    };
                    match outcome {
                        Ok(()) => self.conclude(key, Outcome::Ok, now),
                        Err(bad) => {
                            self.conclude(key, Outcome::Failed(ErrorKind::BadResponse, &bad), now)
                        }
                    }
                    return;
                }
                Ok(n) => {
                    if conn.first_byte_at.is_none() {
                        conn.first_byte_at = Some(now);
                    }
                    if conn.scenario.wants_policy() {
                        self.checker.feed(&mut conn.reply, &self.scratch[..n]);
                    } else {
                        // Count the bytes only: these clients did not ask.
                        conn.reply.count(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.conclude(key, Outcome::Failed(classify_io(&e), &e), now);
                    return;
                }
            }
        }
    }

    /// The attempt at `key` is over: close it and account for the client.
    fn conclude(&mut self, key: usize, outcome: Outcome<'_>, now: Instant) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        // Dropping the stream closes it, which also removes it from epoll.
        let client = Client {
            scenario: conn.scenario,
            origin: conn.origin,
            recorded: conn.recorded,
        };
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
    fn finish_client(
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

#[derive(Debug, Clone, Copy)]
struct Timing {
    connected_at: Instant,
    first_byte_at: Option<Instant>,
    fell_back: bool,
}

struct NoPolicyWithin(Duration);

impl fmt::Display for NoPolicyWithin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no complete reply within {:?}", self.0)
    }
}

struct ConnectError(SocketAddr, io::Error);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connect to {}: {}", self.0, self.1)?;
        match classify_connect(&self.1) {
            ErrorKind::PortsExhausted => f.write_str(
                " (the load generator ran out of local ports: spread connections \
                 with --source 127.0.0.2-127.0.0.254 or lower the load)",
            )?,
            ErrorKind::LocalLimit => f.write_str(
                " (the generator's own descriptor or memory limit, not the server's: \
                 raise ulimit -Hn, lower --connections/--max-inflight, or free memory)",
            )?,
            _ => {}
        }
        Ok(())
    }
}

/// Errors that are the generator's own descriptor or memory limits.
fn is_local_limit(code: i32) -> bool {
    matches!(
        code,
        libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS
    )
}

/// Errors by which the peer ended the connection.
fn is_reset(code: i32) -> bool {
    matches!(code, libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED)
}

/// Classifies a failure to open a connection (or to send on one that was
/// still being opened).
pub fn classify_connect(e: &io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => ErrorKind::PortsExhausted,
        Some(c) if is_local_limit(c) => ErrorKind::LocalLimit,
        Some(c) if is_reset(c) => ErrorKind::Reset,
        _ => ErrorKind::Connect,
    }
}

/// Classifies a failure on an open connection. Only the peer's reset is a
/// `reset`; what is neither a reset, a refusal nor a local limit is `io`.
pub fn classify_io(e: &io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(c) if is_reset(c) => ErrorKind::Reset,
        Some(libc::ETIMEDOUT) => ErrorKind::Timeout,
        Some(libc::ECONNREFUSED | libc::ENETUNREACH | libc::EHOSTUNREACH) => ErrorKind::Connect,
        Some(c) if is_local_limit(c) => ErrorKind::LocalLimit,
        _ => ErrorKind::Io,
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn errors_are_classified() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(classify_connect(&e(libc::ECONNREFUSED)), ErrorKind::Connect);
        assert_eq!(classify_connect(&e(libc::ENETUNREACH)), ErrorKind::Connect);
        assert_eq!(
            classify_connect(&e(libc::EADDRNOTAVAIL)),
            ErrorKind::PortsExhausted
        );
        assert_eq!(
            classify_connect(&e(libc::EADDRINUSE)),
            ErrorKind::PortsExhausted
        );
        // Descriptor and memory limits are the generator's own, not ports.
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            assert_eq!(classify_connect(&e(code)), ErrorKind::LocalLimit, "{code}");
            assert_eq!(classify_io(&e(code)), ErrorKind::LocalLimit, "{code}");
        }
        assert_eq!(classify_connect(&e(libc::ECONNRESET)), ErrorKind::Reset);
        assert_eq!(classify_connect(&e(libc::EPIPE)), ErrorKind::Reset);
        assert_eq!(classify_io(&e(libc::ECONNRESET)), ErrorKind::Reset);
        assert_eq!(classify_io(&e(libc::EPIPE)), ErrorKind::Reset);
        assert_eq!(classify_io(&e(libc::ECONNABORTED)), ErrorKind::Reset);
        assert_eq!(classify_io(&e(libc::ETIMEDOUT)), ErrorKind::Timeout);
        // Anything else is not blamed on the server as a reset.
        for code in [libc::EIO, libc::EBADF, libc::EINVAL, libc::EFAULT] {
            assert_eq!(classify_io(&e(code)), ErrorKind::Io, "{code}");
        }
        // The message names the generator as the culprit.
        let msg = ConnectError(
            "127.0.0.1:843".parse().expect("addr"),
            e(libc::EADDRNOTAVAIL),
        )
        .to_string();
        assert!(msg.contains("load generator ran out"), "{msg}");
        let msg = ConnectError("127.0.0.1:843".parse().expect("addr"), e(libc::EMFILE)).to_string();
        assert!(msg.contains("generator's own"), "{msg}");
        assert!(!msg.contains("ports"), "{msg}");
    }

    #[test]
    fn payloads() {
        assert_eq!(request_of(Scenario::Good), b"<policy-file-request/>\0");
        assert_eq!(request_of(Scenario::Slow), request_of(Scenario::Good));
        assert!(request_of(Scenario::Idle).is_empty());
        assert!(!request_of(Scenario::Garbage).contains(&0));
    }
}
