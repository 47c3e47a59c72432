//! The epoll engine: one mio event loop per worker thread, edge-triggered.
//!
//! Each worker owns its SO_REUSEPORT listeners, its wake-up eventfd and a
//! slab of connections sized once at start-up. Every decision (what the
//! bytes mean, what to send, when a connection ends, when to accept, park
//! or shed) comes from `flashpolicy_proto::serve`; this file turns readiness
//! into calls of it and moves the bytes it answers with:
//!
//! 1. `accept4` until `WouldBlock`, or until [`Admission`] says to stop.
//! 2. A started connection is read at once, before asking epoll anything:
//!    the request is often already there (always with `--defer-accept`),
//!    and then it is answered and closed without ever being registered or
//!    taking a slab slot.
//! 3. Otherwise it takes a slab slot, is registered for what its
//!    [`Session`] waits for (readable, or writable after a short write) and
//!    gets a deadline in the [`DeadlineQueue`].
//! 4. Reads go through a small stack buffer into the session; nothing grows
//!    with what the client sends. The request is read to its terminator
//!    before the reply is sent, so the close sends FIN, not RST.
//!
//! Limits: at `--max-connections` the worker stops accepting and leaves new
//! connections in the kernel's accept queue until the open count falls to
//! the resume mark. Out of descriptors, a spare descriptor (an open
//! `/dev/null`) is closed to accept one queued connection, which is closed
//! at once (shed), and accepting pauses for [`ACCEPT_BACKOFF`]:
//! edge-triggered epoll gives no new edge for connections still queued, so
//! the back-off deadline is what brings the worker back.
//!
//! Reload: when the wake-up fires with a reply in the worker's mailbox, the
//! worker answers every request completed from then on with it (a session
//! keeps the reply it started sending).
//!
//! Shutdown: when the wake-up fires with the flag set, the worker accepts
//! everything already queued (closing an SO_REUSEPORT listener resets the
//! connections queued in it), drops its listeners, and keeps serving open
//! and parked connections until they finish or reach their deadline.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashpolicy_proto::proxy::ProxySettings;
use flashpolicy_proto::serve::AddressLimit;

use flashpolicy_proto::serve::{
    classify_io_errno, deadline_after, Action, Admission, Admit, DeadlineQueue, End, Freed,
    IoFailure, OnAcceptError, Serving, Session,
};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tracing::debug;

use super::common::{
    self, accept_errno, connection_cap, log_accept_error, log_end, log_full, open_spare,
    wants_peer, ACCEPT_BACKOFF, MAX_PARKED, RECV_LEN,
};
use super::WorkerCtx;
use crate::metrics::LiveTally;

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
    session: Session,
    /// What it is registered for.
    interest: Interest,
}

/// Where driving a session left it.
enum Driven {
    /// Waiting for the socket to become ready for this.
    Wait(Interest),
    /// Over: close it.
    Done(End),
}

/// Runs one worker until shutdown has drained it; it counts in `ctx.tally`.
pub(crate) fn run(mut ctx: WorkerCtx) -> io::Result<()> {
    let started = ctx.started.take();
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let mut worker = Worker::new(ctx)?;
    if !started.arrive() {
        return Ok(()); // start-up abandoned: serve nothing
    }
    worker.run(&mut events)
}

struct Worker {
    id: usize,
    poll: Poll,
    /// `None` once shutdown has closed them; indexes stay stable for tokens.
    listeners: Vec<Option<TcpListener>>,
    conns: Slab<Conn>,
    /// Accepted during the shutdown drain while every slot was taken.
    parked: VecDeque<TcpStream>,
    admission: Admission,
    deadlines: DeadlineQueue,
    timeout: Duration,
    next_generation: u32,
    reply: &'static [u8],
    /// `--proxy-protocol`.
    proxy: Option<Arc<ProxySettings>>,
    address_limit: Option<&'static AddressLimit>,
    /// Sessions get their peer's address (see `common::wants_peer`).
    want_peer: bool,
    new_reply: crate::reload::ReplyMailbox,
    wakeup: crate::control::Wakeup,
    shutdown: crate::control::ShutdownFlag,
    /// Sacrificed to accept (and close) one connection when out of descriptors.
    spare: Option<File>,
    /// While set, do not accept before this instant.
    backoff_until: Option<Instant>,
    /// The serving core said accepting may resume: do it after this batch.
    resume: bool,
    tally: LiveTally,
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
        let max = connection_cap(ctx.max_connections);
        let want_peer = wants_peer(
            &Serving::new(ctx.reply, ctx.proxy.as_deref()).with_limit(ctx.address_limit),
        );
        Ok(Worker {
            id: ctx.id,
            poll,
            listeners,
            // Every slot up front (the cap is bounded by
            // `MAX_CONNECTIONS_PER_WORKER`).
            conns: Slab::with_capacity(max),
            parked: VecDeque::new(),
            admission: Admission::new(max, MAX_PARKED),
            deadlines: DeadlineQueue::new(),
            timeout: ctx.timeout,
            next_generation: 0,
            reply: ctx.reply,
            proxy: ctx.proxy,
            address_limit: ctx.address_limit,
            want_peer,
            new_reply: ctx.new_reply,
            wakeup: ctx.wakeup,
            shutdown: ctx.shutdown,
            spare: open_spare(),
            backoff_until: None,
            resume: false,
            tally: ctx.tally,
        })
    }

    fn run(&mut self, events: &mut Events) -> io::Result<()> {
        loop {
            let now = Instant::now();
            let conns = &self.conns;
            self.deadlines.compact(conns.len(), |key, generation| {
                conns.get(key).is_some_and(|c| c.generation == generation)
            });
            let timeout = min_opt(
                self.deadlines.next_timeout(now),
                self.backoff_until
                    .map(|at| at.saturating_duration_since(now)),
            );
            super::common::poll_events(&mut self.poll, events, timeout)?;
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKEUP => self.on_wakeup(now)?,
                    Token(t) if t >= LISTENER_BASE => self.accept_from(t - LISTENER_BASE, now)?,
                    Token(key) => self.on_ready(key, now),
                }
            }
            self.expire(now);
            if self.backoff_until.is_some_and(|at| at <= now) {
                self.backoff_until = None;
                self.admission.on_backoff_over();
                if self.spare.is_none() {
                    self.spare = open_spare();
                }
                self.resume = true;
            }
            if std::mem::take(&mut self.resume) {
                // Edge-triggered epoll reports no new edge for connections
                // that were queued while we did not accept: look now.
                for i in 0..self.listeners.len() {
                    self.accept_from(i, now)?;
                }
            }
            if self.admission.draining() && self.admission.is_idle() {
                return Ok(());
            }
        }
    }

    fn on_wakeup(&mut self, now: Instant) -> io::Result<()> {
        // Clear first, then look: a reply put after the look comes with a
        // wake-up of its own.
        self.wakeup.clear();
        self.new_reply.adopt(self.id, &mut self.reply);
        if self.shutdown.is_set() && !self.admission.draining() {
            self.drain_listeners(now)?;
        }
        Ok(())
    }

    /// Accepts everything still queued (closing the listener would reset
    /// those clients), then closes the listeners.
    fn drain_listeners(&mut self, now: Instant) -> io::Result<()> {
        self.admission.begin_drain();
        self.backoff_until = None;
        for i in 0..self.listeners.len() {
            self.accept_from(i, now)?;
            if let Some(mut l) = self.listeners[i].take() {
                if let Err(e) = self.poll.registry().deregister(&mut l) {
                    debug!("worker {}: deregistering a listener: {e}", self.id);
                }
            }
        }
        debug!(
            "worker {}: listeners closed, {} connections still open",
            self.id,
            self.admission.open() + self.admission.parked()
        );
        Ok(())
    }

    /// Accepts from listener `i` until it is empty or the serving core says
    /// to stop.
    fn accept_from(&mut self, i: usize, now: Instant) -> io::Result<()> {
        while self.admission.may_accept() {
            let Some(listener) = self.listeners.get(i).and_then(Option::as_ref) else {
                return Ok(());
            };
            let errno = match listener.accept() {
                Ok((stream, peer)) => {
                    self.on_accepted(stream, peer, now);
                    continue;
                }
                Err(e) => accept_errno(&e),
            };
            let plan = self.admission.on_accept_error(errno, now);
            log_accept_error(self.id, &plan, errno);
            self.tally.accept_error(plan.kind);
            let mut then = plan.then;
            if then == OnAcceptError::Shed {
                let shed = self.shed_one(i);
                then = self.admission.after_shed(shed);
            }
            match then {
                OnAcceptError::Next => {}
                OnAcceptError::Stop | OnAcceptError::Shed => return Ok(()),
                OnAcceptError::BackOff => {
                    self.backoff_until = Some(now + ACCEPT_BACKOFF);
                    return Ok(());
                }
                OnAcceptError::Fatal => return Err(io::Error::from_raw_os_error(errno)),
            }
        }
        Ok(())
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
            self.tally.accepted();
            self.tally.ended(End::Shed);
        }
        shed
    }

    fn on_accepted(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        self.tally.accepted();
        let admitted = self.admission.on_accepted(now);
        if admitted.warn_full {
            log_full(self.id, self.admission.open());
        }
        match admitted.admit {
            Admit::Start => {
                let peer = self.want_peer.then_some(peer);
                if let Some(end) = self.start(stream, peer, now) {
                    self.finished(end, now);
                }
            }
            Admit::Park => self.parked.push_back(stream),
            Admit::Shed => self.tally.ended(End::Shed),
        }
    }

    /// A connection with a slot: read at once, and only involve epoll if it
    /// must wait. Returns how it ended if it did so at once.
    fn start(
        &mut self,
        mut stream: TcpStream,
        peer: Option<SocketAddr>,
        now: Instant,
    ) -> Option<End> {
        let serving =
            Serving::new(self.reply, self.proxy.as_deref()).with_limit(self.address_limit);
        let mut session = Session::new();
        let action = session.on_accepted(&serving, peer);
        let interest = match drive(&mut stream, &mut session, action, &serving) {
            Driven::Done(end) => {
                log_end(self.id, &session, end);
                return Some(end);
            }
            Driven::Wait(interest) => interest,
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
            return Some(End::Failed);
        }
        entry.insert(Conn {
            stream,
            generation,
            session,
            interest,
        });
        self.deadlines
            .push(deadline_after(now, self.timeout), key, generation);
        None
    }

    /// A connection ended: count it, and hand its slot on.
    fn finished(&mut self, end: End, now: Instant) {
        let mut end = end;
        loop {
            self.tally.ended(end);
            match self.admission.on_freed() {
                Freed::StartParked => {
                    let Some(stream) = self.parked.pop_front() else {
                        return;
                    };
                    // A parked stream's peer is asked for now (a rare path).
                    let peer = if self.want_peer {
                        stream.peer_addr().ok()
                    } else {
                        None
                    };
                    match self.start(stream, peer, now) {
                        Some(next) => end = next,
                        None => return,
                    }
                }
                Freed::Resume => {
                    self.resume = true;
                    return;
                }
                Freed::Nothing => return,
            }
        }
    }

    /// Readiness on a registered connection.
    fn on_ready(&mut self, key: usize, now: Instant) {
        let serving =
            Serving::new(self.reply, self.proxy.as_deref()).with_limit(self.address_limit);
        let Some(conn) = self.conns.get_mut(key) else {
            return; // closed earlier in this batch
        };
        let action = conn.session.resume();
        match drive(&mut conn.stream, &mut conn.session, action, &serving) {
            Driven::Wait(interest) if interest == conn.interest => {}
            Driven::Wait(interest) => {
                conn.interest = interest;
                if let Err(e) =
                    self.poll
                        .registry()
                        .reregister(&mut conn.stream, Token(key), interest)
                {
                    debug!("worker {}: reregister: {e}", self.id);
                    self.close(key, End::Failed, now);
                }
            }
            Driven::Done(end) => self.close(key, end, now),
        }
    }

    /// Ends connections whose deadline has passed.
    fn expire(&mut self, now: Instant) {
        while let Some(d) = self.deadlines.pop_due(now) {
            let Some(conn) = self.conns.get_mut(d.key) else {
                continue;
            };
            if conn.generation != d.generation {
                continue;
            }
            if let Action::Close(end) = conn.session.on_deadline() {
                self.close(d.key, end, now);
            }
        }
    }

    fn close(&mut self, key: usize, end: End, now: Instant) {
        // Dropping the stream closes it, which also removes it from epoll.
        let conn = self.conns.remove(key);
        log_end(self.id, &conn.session, end);
        drop(conn);
        self.finished(end, now);
    }
}

/// Does what the session asks until it waits for the socket or ends.
///
/// Edge-triggered epoll needs reading until `WouldBlock`; the session gives
/// its verdict within a request's length, so the loop is short.
fn drive(
    stream: &mut TcpStream,
    session: &mut Session,
    mut action: Action,
    serving: &Serving<'_>,
) -> Driven {
    let mut buf = [0u8; RECV_LEN];
    loop {
        action = match action {
            Action::Close(end) => return Driven::Done(end),
            Action::Recv => match stream.read(&mut buf) {
                Ok(0) => session.on_eof(serving),
                Ok(n) => session.on_bytes(&buf[..n], serving),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Driven::Wait(Interest::READABLE)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => session.on_error(io_failure(&e)),
            },
            Action::Send(bytes) => match stream.write(bytes) {
                Ok(n) => session.on_sent(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Driven::Wait(Interest::WRITABLE)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => session.on_error(io_failure(&e)),
            },
        };
    }
}

fn io_failure(e: &io::Error) -> IoFailure {
    e.raw_os_error().map_or(IoFailure::Fatal, classify_io_errno)
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
