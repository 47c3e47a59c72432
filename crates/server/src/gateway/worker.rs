//! One gateway thread: a mio event loop (edge-triggered) over this
//! thread's SO_REUSEPORT gateway listeners and their connections.
//!
//! A connection is sniffed ([`Sniff`]) from a small stack buffer; the
//! policy is answered like on 843; a relayed one connects to its upstream
//! (non-blocking, bounded by `--timeout`) and becomes a [`Relay`], or on
//! the io_uring engine a relay on the thread's ring (the `ring` module,
//! where the thread then waits). Timers
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
use flashpolicy_proto::serve::{
    classify_accept_errno, AcceptErrorKind, AddressLimit, End, RateLimit, Sniff, Step,
};
use std::sync::Arc;

use super::conn::{conn_step, hold_player, Conn, Driven, Stage};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tracing::{debug, warn};

use super::bridge::Bridge;
use super::client::Client;
use super::GatewayCtx;
use crate::tls::TlsAcceptor;
use flashpolicy_proto::ws::{Accepted, Origins, Refusal, BAD_GATEWAY};

use crate::relay::proxy_header::{self, UpstreamProxy};
use crate::relay::Relay;

mod ring;

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
    let mut routes = Vec::with_capacity(ctx.listeners.len());
    for (i, (l, upstream)) in ctx.listeners.into_iter().enumerate() {
        l.set_nonblocking(true)?;
        let mut l = TcpListener::from_std(l);
        poll.registry()
            .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
        let listen = l.local_addr()?;
        listeners.push(l);
        routes.push((listen, upstream));
    }
    let fd = ctx.wakeup.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), WAKEUP, Interest::READABLE)?;
    // A ring only where there is something to relay (bridges stay on epoll).
    let ring = ring::open(ctx.id, ctx.uring && ctx.websocket_from > 0, &poll);
    if !ctx.started.arrive() {
        return Ok(()); // start-up abandoned: serve nothing
    }
    let mut g = Gateway {
        ring,
        epoll_backlog: false,
        id: ctx.id,
        poll,
        listeners,
        routes,
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
        draining: None,
        websocket_from: ctx.websocket_from,
        origins: ctx.origins,
        tls: ctx.tls.map(TlsAcceptor::new),
        spare: crate::engine::common::open_spare(),
        warn_shed: RateLimit::default(),
    };
    loop {
        let now = Instant::now();
        if let Some(until) = g.draining {
            if g.conns.is_empty() && g.ring_len() == 0 {
                return Ok(());
            }
            if now >= until {
                g.close_all();
                return Ok(());
            }
        }
        let next_timer = g.timers.peek().map(|Reverse((at, ..))| *at);
        let wake_at = match (next_timer, g.draining) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = wake_at.map(|at| at.saturating_duration_since(now));
        g.wait(&mut events, timeout)?;
        let now = Instant::now();
        for event in events.iter() {
            match event.token() {
                WAKEUP => {
                    ctx.wakeup.clear();
                    ctx.new_reply.adopt(g.id, &mut g.reply);
                    if ctx.shutdown.is_set() && g.draining.is_none() {
                        g.begin_drain(now, ctx.drain_timeout);
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
    /// This thread's listeners, in token order; emptied at shutdown.
    listeners: Vec<TcpListener>,
    /// Each listener's own address and its upstream (kept after the
    /// listeners close, for the connections still open).
    routes: Vec<(SocketAddr, SocketAddr)>,
    conns: Slab<Conn>,
    /// On the io_uring engine: the relays, on the thread's ring.
    ring: Option<crate::relay::uring::RingRelays<ring::RingTag>>,
    /// The last epoll batch was full: collect more before waiting.
    epoll_backlog: bool,
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
    /// Set at shutdown: the listeners are closed, and connections still
    /// open at this instant are closed.
    draining: Option<Instant>,
    /// Listeners from this index on are `--websocket` ones.
    websocket_from: usize,
    /// `--ws-origin`.
    origins: Arc<Origins>,
    /// `--tls-cert`: `--websocket` listeners speak TLS.
    tls: Option<TlsAcceptor>,
    /// Closed to accept (and shed) a connection when out of descriptors.
    spare: Option<std::fs::File>,
    warn_shed: RateLimit,
}

impl Gateway {
    /// Shutdown: accepts what is queued (closing a listener would reset
    /// those clients), closes the listeners, and lets the open connections
    /// go on for at most `drain`: a policy answer or a short game session
    /// ends on its own; a long one is closed when the drain is over.
    fn begin_drain(&mut self, now: Instant, drain: Duration) {
        for i in 0..self.listeners.len() {
            self.accept_from(i, now);
        }
        for mut listener in self.listeners.drain(..) {
            if let Err(e) = self.poll.registry().deregister(&mut listener) {
                debug!("gateway {}: deregistering a listener: {e}", self.id);
            }
        }
        self.draining = Some(now + drain);
        debug!(
            "gateway {}: listeners closed, {} connections still open",
            self.id,
            self.conns.len()
        );
    }

    /// The drain is over: closes every connection still open (a relay
    /// counts as relayed, anything earlier as failed).
    fn close_all(&mut self) {
        debug!(
            "gateway {}: drain over, {} connections closed",
            self.id,
            self.conns.len()
        );
        self.close_ring();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let end = match self.conns.get(key).map(|c| &c.stage) {
                Some(Stage::Relaying { .. } | Stage::Bridging { .. }) => End::Relayed,
                _ => End::Failed,
            };
            self.close(key, end);
        }
    }

    fn accept_from(&mut self, i: usize, now: Instant) {
        loop {
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let errno = crate::engine::common::accept_errno(&e);
                    if classify_accept_errno(errno) == AcceptErrorKind::OutOfResources {
                        self.shed_queued(i, &e, Instant::now());
                    } else {
                        // The client left: the next one waits for the next edge.
                        debug!("gateway {}: accept: {e}", self.id);
                    }
                    return;
                }
            };
            self.tally.accepted();
            if self.conns.len() + self.ring_len() >= self.max {
                self.tally.ended(End::Shed);
                continue;
            }
            // A relay passes each write on as it comes: game traffic is
            // interactive, and Nagle would hold a message's small tail for
            // the peer's delayed ACK (40 ms) behind a large one.
            let _ = stream.set_nodelay(true);
            self.start(stream, peer, i, now);
        }
    }

    /// Out of descriptors: every queued connection is accepted with the
    /// spare descriptor and closed at once (a FIN), counted `shed`, rather
    /// than left waiting in the kernel for an edge that may never come.
    fn shed_queued(&mut self, i: usize, e: &io::Error, now: Instant) {
        if self.warn_shed.allow(now) {
            warn!(
                "gateway {}: accept: {e}: shedding queued connections (raise the descriptor \
                 limit, or lower --max-connections; further ones within a minute are counted, \
                 not logged)",
                self.id
            );
        }
        let Some(listener) = self.listeners.get(i) else {
            return;
        };
        while crate::engine::common::shed_one(&mut self.spare, || listener.accept().is_ok()) {
            self.tally.accepted();
            self.tally.ended(End::Shed);
        }
    }

    fn start(&mut self, stream: TcpStream, peer: SocketAddr, listener: usize, now: Instant) {
        // With --proxy-protocol, only --proxy-from peers may send a header.
        let websocket = listener >= self.websocket_from;
        let stage = match &self.proxy {
            None if websocket => Stage::WsUpgrade(Box::default()),
            None => Stage::Sniffing(Sniff::new()),
            Some(settings) if settings.trusts(peer.ip()) => Stage::Header(Box::default()),
            Some(_) => {
                self.tally.ended(End::ProxyInvalid);
                return;
            }
        };
        // `wss://`: the TLS session starts with the connection (config
        // refuses --proxy-protocol with TLS, so no header comes first).
        let mut client = match (&mut self.tls, websocket) {
            (Some(acceptor), true) => match acceptor.accept(stream) {
                Ok(tls) => Client::Tls(Box::new(tls)),
                Err(e) => {
                    debug!("gateway {}: TLS: {e}", self.id);
                    self.tally.ended(End::Failed);
                    return;
                }
            },
            _ => Client::Plain(stream),
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
            websocket,
        };
        // Without PROXY the player is the peer, known now.
        if matches!(conn.stage, Stage::Sniffing(_) | Stage::WsUpgrade(_)) && !hold_player(&mut conn)
        {
            self.tally.ended(End::OverIpLimit);
            return;
        }
        entry.insert(conn);
        if !websocket {
            self.timers
                .push(Reverse((now + self.wait, key, generation, Timer::Silence)));
        }
        self.timers
            .push(Reverse((deadline, key, generation, Timer::Deadline)));
        // The first bytes are often there already.
        self.on_ready(key, now);
    }

    fn on_ready(&mut self, key: usize, now: Instant) {
        let step = match self.conns.get_mut(key) {
            Some(conn) => conn_step(conn, &self.origins),
            None => return,
        };
        let next = self.advance(key, step, now);
        if let Next::Close(end) = next {
            self.close(key, end);
            return;
        }
        // A bridge that sent its close frame waits for the browser's at
        // most --timeout.
        if let Some(conn) = self.conns.get_mut(key) {
            if let Stage::Bridging { bridge, .. } = &mut conn.stage {
                if bridge.awaits_client() && !bridge.armed {
                    bridge.armed = true;
                    arm_deadline(&mut self.timers, conn, key, now + self.timeout);
                }
            }
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
                match conn_step(conn, &self.origins) {
                    Driven::Close(end) => Next::Close(end),
                    _ => Next::Wait,
                }
            }
            Driven::Relay { first, eof } => self.connect(key, first, eof, now),
            Driven::UpstreamReady => self.relay(key),
            Driven::UpstreamFailed(e) => self.upstream_failed(key, &e, now),
            Driven::WsAccept(accepted) => self.connect_ws(key, accepted, now),
            Driven::WsRefuse(refusal) => {
                let Some(conn) = self.conns.get_mut(key) else {
                    return Next::Wait;
                };
                debug!("websocket {}: refused: {refusal}", conn.peer);
                let end = match refusal {
                    Refusal::Origin => End::OriginRefused,
                    _ => End::Rejected,
                };
                conn.stage = Stage::WsRefusing {
                    reply: refusal.response(),
                    sent: 0,
                    end,
                };
                match conn_step(conn, &self.origins) {
                    Driven::Close(end) => Next::Close(end),
                    _ => Next::Wait,
                }
            }
        }
    }

    /// A valid upgrade: connects the game (the 101 goes out once it is
    /// connected, so a browser whose game is down gets a 502 instead).
    fn connect_ws(&mut self, key: usize, accepted: Box<Accepted>, now: Instant) -> Next {
        let (upstream, first) = match self.open_upstream(key, now) {
            Ok(opened) => opened,
            Err(next) => return next,
        };
        if let Some(conn) = self.conns.get_mut(key) {
            conn.stage = Stage::WsConnecting {
                upstream,
                first,
                accepted,
            };
        }
        Next::Wait
    }

    /// Relays to the game: `already` (what the sniff read) goes first.
    fn connect(&mut self, key: usize, already: Vec<u8>, eof: bool, now: Instant) -> Next {
        let (upstream, mut first) = match self.open_upstream(key, now) {
            Ok(opened) => opened,
            Err(next) => return next,
        };
        first.extend_from_slice(&already);
        if let Some(conn) = self.conns.get_mut(key) {
            conn.stage = Stage::Connecting {
                upstream,
                first,
                client_eof: eof,
            };
        }
        Next::Wait
    }

    /// Starts a non-blocking connect to the connection's upstream, bounded
    /// by `--timeout`; with `--upstream-proxy-protocol`, also the header to
    /// send it first.
    fn open_upstream(&mut self, key: usize, now: Instant) -> Result<(TcpStream, Vec<u8>), Next> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Err(Next::Wait);
        };
        let Some(&(_, upstream_addr)) = self.routes.get(conn.listener) else {
            return Err(Next::Close(End::Failed));
        };
        let mut first = Vec::new();
        if let Some(version) = self.upstream_proxy {
            let local = conn.client.tcp().local_addr().unwrap_or(upstream_addr);
            first = proxy_header::encode(version, conn.player, local);
        }
        let mut upstream = match TcpStream::connect(upstream_addr) {
            Ok(s) => s,
            Err(e) => return Err(self.upstream_failed(key, &e, now)),
        };
        let _ = upstream.set_nodelay(true);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut upstream, Token(key * 2 + 1), BOTH)
        {
            return Err(self.upstream_failed(key, &e, now));
        }
        arm_deadline(&mut self.timers, conn, key, now + self.timeout);
        Ok((upstream, first))
    }

    fn relay(&mut self, key: usize) -> Next {
        let Some(conn) = self.conns.get_mut(key) else {
            return Next::Wait;
        };
        let stage = std::mem::replace(&mut conn.stage, Stage::Sniffing(Sniff::new()));
        if let Stage::WsConnecting {
            upstream,
            first,
            accepted,
        } = stage
        {
            let Accepted {
                response, early, ..
            } = *accepted;
            let bridge = Box::new(Bridge::new(response, first, &early));
            conn.stage = Stage::Bridging { upstream, bridge };
            return match conn_step(conn, &self.origins) {
                Driven::Close(end) => Next::Close(end),
                _ => Next::Wait,
            };
        }
        let Stage::Connecting {
            upstream,
            first,
            client_eof,
        } = stage
        else {
            conn.stage = stage;
            return Next::Wait;
        };
        if self.ring.is_some() {
            return self.relay_on_ring(key, upstream, first, client_eof);
        }
        let relay = match Relay::new(first, client_eof) {
            Ok(r) => Box::new(r),
            Err(e) => {
                debug!("gateway {}: no pipe for a relay: {e}", self.id);
                return Next::Close(End::Failed);
            }
        };
        conn.stage = Stage::Relaying { upstream, relay };
        match conn_step(conn, &self.origins) {
            Driven::Close(end) => Next::Close(end),
            _ => Next::Wait,
        }
    }

    fn upstream_failed(&mut self, key: usize, e: &io::Error, now: Instant) -> Next {
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.websocket {
                // Best effort: a short answer into an empty socket buffer.
                let _ = std::io::Write::write(&mut conn.client, BAD_GATEWAY);
            }
            if let Some((listen, upstream)) = self.routes.get(conn.listener) {
                if self.warn_upstream.allow(now) {
                    warn!(
                        "gateway {listen}: upstream {upstream} failed: {e} (clients are closed; \
                     further failures within a minute are counted, not logged)"
                    );
                }
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
                (Timer::Deadline, Stage::Sniffing(_) | Stage::Header(_) | Stage::WsUpgrade(_)) => {
                    Next::Close(End::TimedOut)
                }
                (Timer::Deadline, Stage::Policy { .. } | Stage::WsRefusing { .. }) => {
                    Next::Close(End::Failed)
                }
                (Timer::Deadline, Stage::Bridging { bridge, .. }) if bridge.awaits_client() => {
                    Next::Close(End::Relayed)
                }
                (Timer::Deadline, Stage::Connecting { .. } | Stage::WsConnecting { .. }) => {
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
            let moved = match &conn.stage {
                Stage::Relaying { relay, .. } => Some(relay.moved()),
                Stage::Bridging { bridge, .. } => Some(bridge.moved()),
                _ => None,
            };
            if let Some(moved) = moved {
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

/// Moves a connection's `--timeout` deadline to `at`, with its timer (the
/// earlier timer, if any, finds `deadline` later and waits on).
fn arm_deadline(timers: &mut BinaryHeap<Due>, conn: &mut Conn, key: usize, at: Instant) {
    conn.deadline = at;
    timers.push(Reverse((at, key, conn.generation, Timer::Deadline)));
}
