//! One gateway thread: a mio event loop (edge-triggered) over this
//! thread's SO_REUSEPORT gateway listeners and their connections.
//!
//! A connection is sniffed ([`Sniff`]) from a small stack buffer; the
//! policy is answered like on 843; a relayed one connects to its upstream
//! (non-blocking, bounded by `--timeout`) and becomes a [`Relay`]. Timers
//! (`--gateway-wait`, `--timeout`) sit in a heap; an entry lives at most
//! `--timeout` (a connection arms its silence, re-armed while a PROXY
//! header is awaited, its deadline and the upstream's connect deadline),
//! so the heap is bounded by the connections accepted within the last
//! `--timeout`, never by what a client sends.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use flashpolicy_proto::proxy::ProxySettings;
use flashpolicy_proto::serve::{AddressLimit, End, RateLimit, Sniff, Step};
use std::sync::Arc;

use super::conn::{conn_step, hold_player, Conn, Driven, Stage};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tracing::{debug, warn};

use super::GatewayCtx;
use crate::relay::proxy_header::{self, UpstreamProxy};
use crate::relay::Relay;

const WAKEUP: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX / 2;
const BOTH: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// A timer's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// `--gateway-wait`: relay a client that has sent nothing.
    Silence,
    /// `--timeout`: sniffing, connecting upstream or sending the policy.
    Deadline,
}

type Due = Reverse<(Instant, usize, u32, Timer)>;

/// Where a connection stands after an event.
enum Next {
    Wait,
    Close(End),
}

/// Runs one gateway thread until shutdown.
pub(crate) fn run(ctx: GatewayCtx) -> io::Result<()> {
    let mut events = Events::with_capacity(1024);
    let poll = Poll::new()?;
    let mut listeners = Vec::with_capacity(ctx.listeners.len());
    for (i, (l, upstream)) in ctx.listeners.into_iter().enumerate() {
        l.set_nonblocking(true)?;
        let mut l = TcpListener::from_std(l);
        poll.registry()
            .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
        listeners.push((l, upstream));
    }
    let fd = ctx.wakeup.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), WAKEUP, Interest::READABLE)?;
    if !ctx.started.arrive() {
        return Ok(()); // start-up abandoned: serve nothing
    }
    let mut g = Gateway {
        id: ctx.id,
        poll,
        listeners,
        conns: Slab::new(),
        timers: BinaryHeap::new(),
        next_generation: 0,
        reply: ctx.reply,
        timeout: ctx.timeout,
        wait: ctx.wait,
        upstream_proxy: ctx.upstream_proxy,
        proxy: ctx.proxy,
        max: ctx.max_connections.max(1),
        address_limit: ctx.address_limit,
        tally: ctx.tally,
        warn_upstream: RateLimit::default(),
    };
    loop {
        let now = Instant::now();
        let timeout = g
            .timers
            .peek()
            .map(|Reverse((at, ..))| at.saturating_duration_since(now));
        crate::engine::common::poll_events(&mut g.poll, &mut events, timeout)?;
        let now = Instant::now();
        for event in events.iter() {
            match event.token() {
                WAKEUP => {
                    ctx.wakeup.clear();
                    ctx.new_reply.adopt(g.id, &mut g.reply);
                    if ctx.shutdown.is_set() {
                        // Relays end with the process: their sockets close.
                        debug!("gateway {}: {} connections closed", g.id, g.conns.len());
                        for conn in g.conns.drain() {
                            let end = match &conn.stage {
                                Stage::Relaying { relay, .. } => {
                                    let moved = relay.moved();
                                    g.tally.relayed_bytes(moved.up, moved.down);
                                    End::Relayed
                                }
                                _ => End::Failed,
                            };
                            g.tally.ended(end);
                        }
                        return Ok(());
                    }
                }
                Token(t) if t >= LISTENER_BASE => g.accept_from(t - LISTENER_BASE, now),
                Token(t) => g.on_ready(t / 2, now),
            }
        }
        g.expire(now);
    }
}

struct Gateway {
    id: usize,
    poll: Poll,
    listeners: Vec<(TcpListener, SocketAddr)>,
    conns: Slab<Conn>,
    timers: BinaryHeap<Due>,
    next_generation: u32,
    reply: &'static [u8],
    timeout: Duration,
    wait: Duration,
    upstream_proxy: Option<UpstreamProxy>,
    proxy: Option<Arc<ProxySettings>>,
    max: usize,
    address_limit: Option<&'static AddressLimit>,
    tally: crate::metrics::LiveTally,
    warn_upstream: RateLimit,
}

impl Gateway {
    fn accept_from(&mut self, i: usize, now: Instant) {
        loop {
            let Some((listener, _)) = self.listeners.get(i) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors or memory, or the client left:
                    // what is queued waits for the next edge.
                    debug!("gateway {}: accept: {e}", self.id);
                    return;
                }
            };
            self.tally.accepted();
            if self.conns.len() >= self.max {
                self.tally.ended(End::Shed);
                continue;
            }
            self.start(stream, peer, i, now);
        }
    }

    fn start(&mut self, mut client: TcpStream, peer: SocketAddr, listener: usize, now: Instant) {
        // With --proxy-protocol, only --proxy-from peers may send a header.
        let stage = match &self.proxy {
            None => Stage::Sniffing(Sniff::new()),
            Some(settings) if settings.trusts(peer.ip()) => Stage::Header(Box::default()),
            Some(_) => {
                self.tally.ended(End::ProxyInvalid);
                return;
            }
        };
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut client, Token(key * 2), BOTH)
        {
            debug!("gateway {}: register: {e}", self.id);
            self.tally.ended(End::Failed);
            return;
        }
        let deadline = now + self.timeout;
        let mut conn = Conn {
            client,
            generation,
            listener,
            peer,
            player: peer,
            limit: self.address_limit,
            deadline,
            stage,
            hold: None,
        };
        // Without PROXY the player is the peer, known now.
        if matches!(conn.stage, Stage::Sniffing(_)) && !hold_player(&mut conn) {
            self.tally.ended(End::OverIpLimit);
            return;
        }
        entry.insert(conn);
        self.timers
            .push(Reverse((now + self.wait, key, generation, Timer::Silence)));
        self.timers
            .push(Reverse((deadline, key, generation, Timer::Deadline)));
        // The first bytes are often there already.
        self.on_ready(key, now);
    }

    fn on_ready(&mut self, key: usize, now: Instant) {
        let step = match self.conns.get_mut(key) {
            Some(conn) => conn_step(conn),
            None => return,
        };
        let next = self.advance(key, step, now);
        if let Next::Close(end) = next {
            self.close(key, end);
        }
    }

    /// Turns a sniff verdict (or readiness of a later stage) into the next
    /// stage.
    fn advance(&mut self, key: usize, step: Driven, now: Instant) -> Next {
        match step {
            Driven::Wait => Next::Wait,
            Driven::Close(end) => Next::Close(end),
            Driven::Policy => {
                let reply = self.reply;
                let Some(conn) = self.conns.get_mut(key) else {
                    return Next::Wait;
                };
                conn.stage = Stage::Policy { reply, sent: 0 };
                match conn_step(conn) {
                    Driven::Close(end) => Next::Close(end),
                    _ => Next::Wait,
                }
            }
            Driven::Relay { first, eof } => self.connect(key, first, eof, now),
            Driven::UpstreamReady => self.relay(key),
            Driven::UpstreamFailed(e) => self.upstream_failed(key, &e, now),
        }
    }

    fn connect(&mut self, key: usize, already: Vec<u8>, eof: bool, now: Instant) -> Next {
        let timeout = self.timeout;
        let header_for = self.upstream_proxy;
        let Some(conn) = self.conns.get_mut(key) else {
            return Next::Wait;
        };
        let upstream_addr = self.listeners[conn.listener].1;
        let mut first = Vec::new();
        if let Some(version) = header_for {
            let local = conn.client.local_addr().unwrap_or(upstream_addr);
            first = proxy_header::encode(version, conn.player, local);
        }
        first.extend_from_slice(&already);
        let mut upstream = match TcpStream::connect(upstream_addr) {
            Ok(s) => s,
            Err(e) => return self.upstream_failed(key, &e, now),
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut upstream, Token(key * 2 + 1), BOTH)
        {
            return self.upstream_failed(key, &e, now);
        }
        conn.deadline = now + timeout;
        self.timers.push(Reverse((
            conn.deadline,
            key,
            conn.generation,
            Timer::Deadline,
        )));
        conn.stage = Stage::Connecting {
            upstream,
            first,
            client_eof: eof,
        };
        Next::Wait
    }

    fn relay(&mut self, key: usize) -> Next {
        let Some(conn) = self.conns.get_mut(key) else {
            return Next::Wait;
        };
        let stage = std::mem::replace(&mut conn.stage, Stage::Sniffing(Sniff::new()));
        let Stage::Connecting {
            upstream,
            first,
            client_eof,
        } = stage
        else {
            conn.stage = stage;
            return Next::Wait;
        };
        let relay = match Relay::new(first, client_eof) {
            Ok(r) => Box::new(r),
            Err(e) => {
                debug!("gateway {}: no pipe for a relay: {e}", self.id);
                return Next::Close(End::Failed);
            }
        };
        conn.stage = Stage::Relaying { upstream, relay };
        match conn_step(conn) {
            Driven::Close(end) => Next::Close(end),
            _ => Next::Wait,
        }
    }

    fn upstream_failed(&mut self, key: usize, e: &io::Error, now: Instant) -> Next {
        if let Some(conn) = self.conns.get(key) {
            let (listen, upstream) = &self.listeners[conn.listener];
            if self.warn_upstream.allow(now) {
                let listen = listen
                    .local_addr()
                    .map_or_else(|_| "?".to_string(), |a| a.to_string());
                warn!(
                    "gateway {listen}: upstream {upstream} failed: {e} (clients are closed; \
                     further failures within a minute are counted, not logged)"
                );
            }
        }
        Next::Close(End::UpstreamFailed)
    }

    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((at, key, generation, timer))) = self.timers.peek().copied() {
            if at > now {
                return;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.generation != generation {
                continue;
            }
            let next = match (timer, &mut conn.stage) {
                (Timer::Silence, Stage::Sniffing(sniff)) => match sniff.on_silence() {
                    Step::Relay { eof, .. } => self.connect(key, Vec::new(), eof, now),
                    _ => Next::Wait,
                },
                (Timer::Silence, Stage::Header(_)) => {
                    // The silence counts from the header's end: look again.
                    let at = now + self.wait;
                    self.timers
                        .push(Reverse((at, key, generation, Timer::Silence)));
                    Next::Wait
                }
                (Timer::Deadline, _) if conn.deadline > now => Next::Wait,
                (Timer::Deadline, Stage::Sniffing(_) | Stage::Header(_)) => {
                    Next::Close(End::TimedOut)
                }
                (Timer::Deadline, Stage::Policy { .. }) => Next::Close(End::Failed),
                (Timer::Deadline, Stage::Connecting { .. }) => {
                    let e =
                        io::Error::new(io::ErrorKind::TimedOut, "no connection within --timeout");
                    self.upstream_failed(key, &e, now)
                }
                _ => Next::Wait,
            };
            if let Next::Close(end) = next {
                self.close(key, end);
            }
        }
    }

    fn close(&mut self, key: usize, end: End) {
        if self.conns.contains(key) {
            // Dropping the sockets closes them (and takes them out of epoll).
            let conn = self.conns.remove(key);
            if let Stage::Relaying { relay, .. } = &conn.stage {
                let moved = relay.moved();
                self.tally.relayed_bytes(moved.up, moved.down);
                debug!(
                    "gateway {}: {} relayed, {} bytes up, {} down",
                    self.id, conn.peer, moved.up, moved.down
                );
            }
            drop(conn);
            self.tally.ended(end);
        }
    }
}
