//! The epoll engine: one mio event loop per worker thread, edge-triggered.
//!
//! Each worker owns its SO_REUSEPORT listeners, its wake-up eventfd and a slab
//! of connections sized once at start-up. The life of a connection:
//!
//! 1. `accept4` until `WouldBlock`.
//! 2. Read at once, before asking epoll anything: the request is often
//!    already there (always with `--defer-accept`), and then the connection
//!    is answered and closed without ever being registered or taking a slot.
//! 3. Otherwise it takes a slab slot, is registered for reading and gets a
//!    deadline in the [`DeadlineQueue`].
//! 4. Every read goes through a small stack buffer into the connection's
//!    [`Recogniser`]; nothing grows with what the client sends.
//! 5. On a request: one `write` of the shared reply, then close. The request
//!    has been read to its terminator, so the close sends FIN, not RST. A
//!    short write (which a ~200-byte reply essentially never sees) keeps its
//!    offset and finishes on writability.
//! 6. On anything else: close at once.
//!
//! Limits never make the loop spin or die:
//! * `--max-connections` reached: the worker stops accepting and leaves new
//!   connections in the kernel's accept queue until a slot frees (see
//!   [`Worker::accept_from`] for why that is kinder than shedding).
//! * EMFILE/ENFILE and friends: a spare descriptor (an open `/dev/null`) is
//!   closed to accept one queued connection, which is closed at once (counted
//!   as shed), the spare is reopened, and accepting pauses for
//!   [`ACCEPT_BACKOFF`]: edge-triggered epoll gives no new edge for
//!   connections still queued, so a timer is what brings the worker back.
//!
//! Reload: when the wake-up fires with a reply in the worker's mailbox, the
//! worker takes it and answers every request completed from then on with
//! it; a connection already part-way through writing the old reply finishes
//! that one (its phase keeps the reply it started).
//!
//! Shutdown: when the wake-up fires with the flag set, the worker accepts
//! everything already queued (closing an SO_REUSEPORT listener resets the
//! connections queued in it), drops its listeners, and keeps serving open
//! connections until they finish or reach their deadline.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use flashpolicy_proto::request::{Recogniser, Verdict, MAX_REQUEST_LEN};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tracing::{debug, warn};

use super::common::{
    self, accept_error, adopt_new_reply, connection_cap, due, is_live, open_spare, AcceptError,
    Generation, ACCEPT_BACKOFF,
};
use super::{Stats, WorkerCtx};
use crate::timer::DeadlineQueue;

/// Bytes read per `read` call. A request never needs more than
/// [`MAX_REQUEST_LEN`]; a little more lets a client's whole first segment in
/// without reading a flood.
const READ_BUF_LEN: usize = 64;
const _: () = assert!(READ_BUF_LEN >= MAX_REQUEST_LEN);

/// Events fetched per `epoll_wait`.
const EVENTS_CAPACITY: usize = 1024;

/// Connections use their slab key as token; these two sit at the top of the
/// token space, far above any slab key.
const WAKEUP: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX / 2;

/// One open connection that had to wait for the kernel.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// Identifies this use of the slot in the deadline queue.
    generation: u32,
    phase: Phase,
}

impl Generation for Conn {
    fn generation(&self) -> u32 {
        self.generation
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) the request.
    Reading(Recogniser),
    /// The request is complete; `sent` bytes of `reply` are out. The reply
    /// is the one current when the request completed: a reload does not
    /// change a reply half-way.
    Writing { reply: &'static [u8], sent: usize },
}

/// What reading found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    /// A complete request: send the reply.
    Request,
    /// Need more bytes: wait for readability.
    Wait,
    /// Close without a reply.
    Close(End),
}

/// What became of a connection after some I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Wait for readability.
    WaitRead,
    /// Wait for writability; `sent` bytes of the reply are out.
    WaitWrite { sent: usize },
    /// Done: close it.
    Close(End),
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Served,
    Rejected,
    Failed,
}

/// Runs one worker until shutdown has drained it, and returns its counters.
pub fn run(ctx: WorkerCtx) -> io::Result<Stats> {
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let mut worker = Worker::new(ctx)?;
    worker.run(&mut events)?;
    Ok(worker.stats)
}

struct Worker {
    id: usize,
    poll: Poll,
    /// `None` once shutdown has closed them; indexes stay stable for tokens.
    listeners: Vec<Option<TcpListener>>,
    conns: Slab<Conn>,
    max_connections: usize,
    deadlines: DeadlineQueue,
    next_generation: u32,
    reply: &'static [u8],
    new_reply: crate::reload::ReplyMailbox,
    wakeup: crate::control::Wakeup,
    shutdown: crate::control::ShutdownFlag,
    /// Sacrificed to accept (and close) one connection when out of descriptors.
    spare: Option<File>,
    /// While set, do not accept before this instant.
    backoff_until: Option<Instant>,
    /// Accepting stopped with a full slab; connections may be queued.
    full: bool,
    draining: bool,
    last_fd_warning: Option<Instant>,
    last_full_warning: Option<Instant>,
    stats: Stats,
}

impl Worker {
    fn new(ctx: WorkerCtx) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let mut listeners = Vec::with_capacity(ctx.listeners.len());
        for (i, l) in ctx.listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let mut l = TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
            listeners.push(Some(l));
        }
        let fd = ctx.wakeup.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), WAKEUP, Interest::READABLE)?;
        let max_connections = connection_cap(ctx.max_connections);
        Ok(Worker {
            id: ctx.id,
            poll,
            listeners,
            // Every slot up front (the cap is bounded by
            // `MAX_CONNECTIONS_PER_WORKER`).
            conns: Slab::with_capacity(max_connections),
            max_connections,
            deadlines: DeadlineQueue::new(ctx.timeout),
            next_generation: 0,
            reply: ctx.reply,
            new_reply: ctx.new_reply,
            wakeup: ctx.wakeup,
            shutdown: ctx.shutdown,
            spare: open_spare(),
            backoff_until: None,
            full: false,
            draining: false,
            last_fd_warning: None,
            last_full_warning: None,
            stats: Stats::default(),
        })
    }

    fn run(&mut self, events: &mut Events) -> io::Result<()> {
        loop {
            let now = Instant::now();
            let conns = &self.conns;
            self.deadlines
                .discard_stale(|key, generation| is_live(conns, key, generation));
            let timeout = min_opt(
                self.deadlines.next_timeout(now),
                self.backoff_until
                    .map(|at| at.saturating_duration_since(now)),
            );
            match self.poll.poll(events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKEUP => self.on_wakeup(now),
                    Token(t) if t >= LISTENER_BASE => {
                        if self.may_accept() {
                            self.accept_from(t - LISTENER_BASE, now);
                        }
                    }
                    Token(key) => self.on_ready(key),
                }
            }
            self.expire(now);
            if let Some(at) = self.backoff_until {
                if at <= now {
                    self.backoff_until = None;
                    if self.spare.is_none() {
                        self.spare = open_spare();
                    }
                    self.accept_all(now);
                }
            } else if self.full && self.conns.len() < self.max_connections {
                self.accept_all(now);
            }
            if self.draining && self.conns.is_empty() {
                return Ok(());
            }
        }
    }

    fn may_accept(&self) -> bool {
        !self.draining && self.backoff_until.is_none()
    }

    fn on_wakeup(&mut self, now: Instant) {
        // Clear first, then look: a reply put after the look comes with a
        // wake-up of its own.
        self.wakeup.clear();
        adopt_new_reply(self.id, &self.new_reply, &mut self.reply);
        if self.shutdown.is_set() && !self.draining {
            self.drain_listeners(now);
        }
    }

    /// Accepts everything still queued (ignoring the connection cap, since
    /// closing the listener would reset those clients), then closes the
    /// listeners.
    fn drain_listeners(&mut self, now: Instant) {
        self.draining = true;
        self.backoff_until = None;
        self.full = false;
        for i in 0..self.listeners.len() {
            self.accept_from(i, now);
            if let Some(mut l) = self.listeners[i].take() {
                if let Err(e) = self.poll.registry().deregister(&mut l) {
                    debug!("worker {}: deregistering a listener: {e}", self.id);
                }
            }
        }
        debug!(
            "worker {}: listeners closed, {} connections still open",
            self.id,
            self.conns.len()
        );
    }

    /// Accepts from every listener: after a pause, since edge-triggered
    /// epoll reports no new edge for connections that were already queued.
    fn accept_all(&mut self, now: Instant) {
        self.full = false;
        for i in 0..self.listeners.len() {
            if self.backoff_until.is_some() || self.full {
                return;
            }
            self.accept_from(i, now);
        }
    }

    /// Accepts from listener `i` until it is empty or a limit stops us.
    ///
    /// At `--max-connections` the worker stops accepting rather than
    /// accepting and closing at once: a client left in the kernel's accept
    /// queue is served as soon as a slot frees (slots free quickly, since
    /// every connection is bounded by `--timeout` and most last
    /// microseconds), while a client that is accepted and closed gets no
    /// policy at all and, for Flash Player, a failed socket. If the queue
    /// itself overflows, the kernel drops SYNs and clients retry: still
    /// better than a certain failure. The cost is that a full worker's queue
    /// waits even if other workers are idle (SO_REUSEPORT hashes by address).
    fn accept_from(&mut self, i: usize, now: Instant) {
        loop {
            if !self.draining && self.conns.len() >= self.max_connections {
                if !self.full {
                    self.full = true;
                    if due(&mut self.last_full_warning, now) {
                        warn!(
                            "worker {}: {} connections open (--max-connections); \
                             new clients wait in the accept queue",
                            self.id, self.max_connections
                        );
                    }
                }
                return;
            }
            let Some(listener) = self.listeners.get(i).and_then(Option::as_ref) else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => self.on_accept(stream, now),
                Err(e) => match accept_error(&e) {
                    AcceptError::Empty => return,
                    AcceptError::Retry => continue,
                    AcceptError::OutOfResources => {
                        if due(&mut self.last_fd_warning, now) {
                            warn!(
                                "worker {}: accept: {e}; shedding connections until \
                                 descriptors free up (raise `ulimit -n`?)",
                                self.id
                            );
                        }
                        let shed = self.shed_one(i);
                        if self.draining {
                            if shed {
                                continue;
                            }
                            return;
                        }
                        self.backoff_until = Some(now + ACCEPT_BACKOFF);
                        return;
                    }
                    AcceptError::Other => {
                        if due(&mut self.last_fd_warning, now) {
                            warn!("worker {}: accept: {e}", self.id);
                        }
                        if !self.draining {
                            self.backoff_until = Some(now + ACCEPT_BACKOFF);
                        }
                        return;
                    }
                },
            }
        }
    }

    /// Frees the spare descriptor to accept one queued connection and close
    /// it at once, then takes the spare back. Returns whether a connection
    /// was shed.
    fn shed_one(&mut self, i: usize) -> bool {
        let listener = self.listeners.get(i).and_then(Option::as_ref);
        let shed = common::shed_one(&mut self.spare, || {
            listener.is_some_and(|l| l.accept().is_ok())
        });
        if shed {
            self.stats.accepted += 1;
            self.stats.shed += 1;
        }
        shed
    }

    /// A new connection: read at once, and only involve epoll if it must wait.
    fn on_accept(&mut self, mut stream: TcpStream, now: Instant) {
        self.stats.accepted += 1;
        let mut recogniser = Recogniser::new();
        let step = match read_request(&mut stream, &mut recogniser) {
            Got::Request => write_reply(&mut stream, self.reply, 0),
            Got::Wait => Step::WaitRead,
            Got::Close(end) => Step::Close(end),
        };
        let (interest, phase) = match step {
            Step::Close(end) => return self.count(end),
            Step::WaitRead => (Interest::READABLE, Phase::Reading(recogniser)),
            Step::WaitWrite { sent } => (
                Interest::WRITABLE,
                Phase::Writing {
                    reply: self.reply,
                    sent,
                },
            ),
        };
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            debug!("worker {}: register: {e}", self.id);
            return self.count(End::Failed);
        }
        entry.insert(Conn {
            stream,
            generation,
            phase,
        });
        self.deadlines.arm(now, key, generation);
    }

    /// Readiness on a registered connection.
    fn on_ready(&mut self, key: usize) {
        let current = self.reply;
        let Some(conn) = self.conns.get_mut(key) else {
            return; // closed earlier in this batch
        };
        let step = match &mut conn.phase {
            Phase::Reading(recogniser) => match read_request(&mut conn.stream, recogniser) {
                Got::Request => write_reply(&mut conn.stream, current, 0),
                Got::Wait => Step::WaitRead,
                Got::Close(end) => Step::Close(end),
            },
            Phase::Writing { reply, sent } => write_reply(&mut conn.stream, reply, *sent),
        };
        match step {
            Step::WaitRead => {}
            Step::WaitWrite { sent } => {
                let was_reading = matches!(conn.phase, Phase::Reading(_));
                // Only reached from Reading (a short write that started
                // now) or from Writing with the reply it already had.
                let reply = match conn.phase {
                    Phase::Writing { reply, .. } => reply,
                    Phase::Reading(_) => current,
                };
                conn.phase = Phase::Writing { reply, sent };
                if was_reading {
                    if let Err(e) = self.poll.registry().reregister(
                        &mut conn.stream,
                        Token(key),
                        Interest::WRITABLE,
                    ) {
                        debug!("worker {}: reregister: {e}", self.id);
                        self.close(key, End::Failed);
                    }
                }
            }
            Step::Close(end) => self.close(key, end),
        }
    }

    /// Closes connections whose deadline has passed.
    fn expire(&mut self, now: Instant) {
        while let Some(d) = self.deadlines.pop_expired(now) {
            if is_live(&self.conns, d.key, d.generation) {
                let conn = self.conns.remove(d.key);
                match conn.phase {
                    Phase::Reading(_) => self.stats.timed_out += 1,
                    Phase::Writing { .. } => self.stats.failed += 1,
                }
            }
        }
    }

    fn close(&mut self, key: usize, end: End) {
        // Dropping the stream closes it, which also removes it from epoll.
        drop(self.conns.remove(key));
        self.count(end);
    }

    fn count(&mut self, end: End) {
        match end {
            End::Served => self.stats.served += 1,
            End::Rejected => self.stats.rejected += 1,
            End::Failed => self.stats.failed += 1,
        }
    }
}

/// Reads until the recogniser gives a verdict or the socket runs dry.
///
/// Edge-triggered epoll needs reading until `WouldBlock`; the verdict comes
/// within [`MAX_REQUEST_LEN`] bytes, so this loop is short.
fn read_request(stream: &mut TcpStream, recogniser: &mut Recogniser) -> Got {
    let mut buf = [0u8; READ_BUF_LEN];
    loop {
        let verdict = match stream.read(&mut buf) {
            Ok(0) => recogniser.eof(),
            Ok(n) => recogniser.feed(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Got::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Got::Close(End::Failed),
        };
        match verdict {
            Verdict::NeedMore => continue,
            Verdict::Request { .. } => return Got::Request,
            Verdict::Reject(reason) => {
                debug!("rejected: {reason}");
                return Got::Close(End::Rejected);
            }
        }
    }
}

/// Writes the rest of the reply from offset `sent`.
fn write_reply(stream: &mut TcpStream, reply: &[u8], mut sent: usize) -> Step {
    while sent < reply.len() {
        match stream.write(&reply[sent..]) {
            Ok(0) => return Step::Close(End::Failed),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::WaitWrite { sent },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Step::Close(End::Failed),
        }
    }
    Step::Close(End::Served)
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
