//! One client attempt's state machine: connect, send the request (all at
//! once, or a byte at a time for a slow client), read until the server
//! closes, check the reply.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use flashpolicy_proto::serve::deadline_after;
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::classify::{classify_connect, classify_io, ConnectError};
use super::echo::Echo;
use super::event_loop::Worker;
use super::outcome::Outcome;
use super::websocket::{self, Ws};
use crate::check::ReplyState;
use crate::cli::Fallback;
use crate::mix::Scenario;
use crate::stats::ErrorKind;

/// Bytes a `garbage` client sends: an HTTP request, the most common wrong
/// thing to arrive on a policy port.
pub const GARBAGE: &[u8] = b"GET /crossdomain.xml HTTP/1.1\r\nHost: flashpolicy\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the handshake.
    Connecting,
    /// Connected, waiting `--send-delay` before sending.
    Delaying,
    /// Sending the payload.
    Sending,
    /// Slow client between two bytes.
    Pausing,
    /// Reading until the server closes.
    Receiving,
}

/// One client attempt.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) gen: u32,
    pub(super) scenario: Scenario,
    pub(super) phase: Phase,
    /// Latency is measured from here: the intended start (open loop) or the
    /// actual start (closed loop) of the client's first attempt.
    pub(super) origin: Instant,
    pub(super) connected_at: Instant,
    pub(super) first_byte_at: Option<Instant>,
    /// What the client sends: its scenario's request, after a PROXY header
    /// with `--proxy-protocol`.
    pub(super) payload: Cow<'static, [u8]>,
    pub(super) sent: usize,
    pub(super) recorded: bool,
    pub(super) fallback_attempt: bool,
    pub(super) reply: ReplyState,
    /// `--payload`: the echo in progress (`payload` is then only the PROXY
    /// header, if any).
    pub(super) echo: Option<Echo>,
    /// `--flash-gateway`: this is the client's second connection (the
    /// echo, after the policy).
    pub(super) second: bool,
    /// `--websocket`: the echo goes through a WebSocket (`payload` is then
    /// the upgrade request, after the PROXY header if any).
    pub(super) ws: Option<Ws>,
}

/// A client about to (re)start.
#[derive(Debug, Clone, Copy)]
pub(super) struct Client {
    pub(super) scenario: Scenario,
    pub(super) origin: Instant,
    pub(super) recorded: bool,
    /// `--flash-gateway`: the second connection is next (the policy was
    /// received).
    pub(super) second: bool,
}

fn request_of(s: Scenario) -> &'static [u8] {
    match s {
        Scenario::Good | Scenario::Slow => flashpolicy_proto::POLICY_REQUEST,
        Scenario::Garbage => GARBAGE,
        Scenario::Idle => b"",
    }
}

impl Worker {
    pub(super) fn begin_client(&mut self, client: Client, now: Instant) {
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
    pub(super) fn attempt(
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
        let echoes = self.echoes(client);
        let (request, ws) = match (&self.plan.config.websocket, echoes) {
            (Some(origin), true) => {
                // As a browser's WebSocket: no Nagle delay on a frame's tail.
                let _ = stream.set_nodelay(true);
                let (req, ws) = websocket::open(&self.plan.config.target_text, origin.as_deref());
                (Some(req), Some(ws))
            }
            _ => (None, None),
        };
        let payload = self.payload_for(client.scenario, echoes, request, &stream, addr);
        let gen = self.fresh_gen();
        let echo = if echoes { self.echo_for(gen) } else { None };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let fallback_attempt = fallback.is_none()
            && self.plan.config.fallback.is_some()
            && client.scenario.wants_policy();
        let mut conn = Conn {
            payload,
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
            echo,
            second: client.second,
            ws,
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
        self.timeouts
            .push(deadline_after(now, self.plan.config.timeout), key, gen);
        if let Some(fb) = fallback {
            self.fallbacks
                .push(deadline_after(client.origin, fb.after), key, gen);
        }
        // With --send-delay, the client waits for the handshake (the
        // socket turning writable) and then the delay instead.
        if client.scenario != Scenario::Idle && self.plan.config.send_delay.is_zero() {
            self.send_early(key, addr, Instant::now());
        }
    }

    /// Tries to send right after `connect`: on loopback (and whenever the
    /// handshake is quick) the connection is already established, which
    /// saves a trip through the event loop. A connection still handshaking
    /// answers EAGAIN and is handled when it turns writable.
    pub(super) fn send_early(&mut self, key: usize, addr: SocketAddr, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let payload = &conn.payload;
        let end = if conn.scenario == Scenario::Slow {
            if conn.stream.set_nodelay(true).is_err() {
                return;
            }
            1
        } else {
            payload.len()
        };
        // With --payload and no PROXY header, the first write is payload.
        let early_echo = payload.is_empty() && conn.echo.is_some();
        let written = if early_echo {
            self.echo_write_early(key)
        } else {
            conn.stream.write(&payload[..end])
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let payload = &conn.payload;
        match written {
            Ok(n) => {
                conn.connected_at = now;
                conn.phase = Phase::Sending;
                if !early_echo {
                    conn.sent = n;
                }
                if conn.scenario == Scenario::Slow && n > 0 && n < payload.len() {
                    conn.phase = Phase::Pausing;
                    let gen = conn.gen;
                    let at = deadline_after(now, self.plan.config.slow_interval);
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

    /// The bytes a `scenario` client sends on `stream` (connected to
    /// `dest`) before anything else: its request (`upgrade`, a WebSocket's
    /// upgrade request, if given), after a PROXY header with
    /// `--proxy-protocol` (an idle client sends nothing at all).
    fn payload_for(
        &mut self,
        scenario: Scenario,
        echo: bool,
        upgrade: Option<Vec<u8>>,
        stream: &TcpStream,
        dest: SocketAddr,
    ) -> Cow<'static, [u8]> {
        if let Some(upgrade) = upgrade {
            let mut bytes = self.proxy_header(stream, dest).unwrap_or_default();
            bytes.extend_from_slice(&upgrade);
            return Cow::Owned(bytes);
        }
        // An echo's payload follows the header.
        let request = if echo { b"" } else { request_of(scenario) };
        if self.plan.config.proxy.is_none() || (request.is_empty() && !echo) {
            return Cow::Borrowed(request);
        }
        let mut bytes = self.proxy_header(stream, dest).unwrap_or_default();
        bytes.extend_from_slice(request);
        Cow::Owned(bytes)
    }

    /// `--proxy-protocol`: the header for `stream`'s connection to `dest`.
    fn proxy_header(&mut self, stream: &TcpStream, dest: SocketAddr) -> Option<Vec<u8>> {
        let proxy = self.plan.config.proxy?;
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(dest.ip(), 0));
        let n = self.next_proxy_source;
        self.next_proxy_source = n.wrapping_add(self.plan.config.threads as u64);
        Some(proxy.header(local, dest, n))
    }

    /// Whether `client`'s next connection is an echo: a good client's with
    /// `--payload`, its second one with `--flash-gateway`.
    fn echoes(&self, client: Client) -> bool {
        let cfg = &self.plan.config;
        cfg.payload.is_some()
            && client.scenario == Scenario::Good
            && (client.second || !cfg.flash_gateway)
    }

    /// `--payload`: an echo, its pattern picked by the thread and the
    /// connection's number.
    fn echo_for(&self, gen: u32) -> Option<Echo> {
        let len = self.plan.config.payload?;
        Some(Echo {
            seed: gen ^ ((self.plan.id as u32) << 24),
            len,
            sent: 0,
            received: 0,
        })
    }

    pub(super) fn on_event(&mut self, key: usize, writable: bool, readable: bool) {
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
            let delay = self.plan.config.send_delay;
            if conn.scenario == Scenario::Idle {
                conn.phase = Phase::Receiving;
            } else if !delay.is_zero() {
                // Send later: the event loop wakes for it (timerfd), and
                // nothing per connection but a queue entry is armed.
                conn.phase = Phase::Delaying;
                let gen = conn.gen;
                self.send_delays.push(deadline_after(now, delay), key, gen);
            } else if !self.start_sending(key, now) {
                return;
            }
        } else if writable && conn.phase == Phase::Sending && !self.send(key, now) {
            return;
        }
        if readable {
            self.receive(key, now);
        }
    }

    pub(super) fn attempt_addr(&self, key: usize) -> SocketAddr {
        match (self.conns.get(key), self.plan.config.fallback) {
            (Some(c), Some(fb)) if c.fallback_attempt => fb.addr,
            _ => self.plan.config.target,
        }
    }

    /// The connection is up (and `--send-delay` has passed): sends the
    /// first bytes. Returns false when the connection is gone.
    pub(super) fn start_sending(&mut self, key: usize, now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        conn.phase = Phase::Sending;
        if conn.scenario == Scenario::Slow {
            // Each byte in its own segment.
            let _ = conn.stream.set_nodelay(true);
        }
        self.send(key, now)
    }

    /// Sends what the client has to send now. Returns false when the
    /// connection is gone.
    pub(super) fn send(&mut self, key: usize, now: Instant) -> bool {
        let slow_interval = self.plan.config.slow_interval;
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let payload = &conn.payload;
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
                        self.slow.push(deadline_after(now, slow_interval), key, gen);
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
        if let Some(ws) = &conn.ws {
            if ws.is_open() {
                return self.ws_send(key, now);
            }
            // The upgrade request is out: wait for the answer.
            conn.phase = Phase::Receiving;
            return true;
        }
        if conn.echo.is_some() {
            return self.send_echo(key, now);
        }
        conn.phase = Phase::Receiving;
        true
    }

    pub(super) fn receive(&mut self, key: usize, now: Instant) {
        if self.conns.get(key).is_some_and(|c| c.ws.is_some()) {
            return self.ws_receive(key, now);
        }
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    if let Some(echo) = &conn.echo {
                        match echo.finish() {
                            Ok(()) => self.conclude(key, Outcome::Ok, now),
                            Err(bad) => self.conclude(
                                key,
                                Outcome::Failed(ErrorKind::BadResponse, &bad),
                                now,
                            ),
                        }
                        return;
                    }
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
                    if let Some(echo) = &mut conn.echo {
                        if conn.recorded {
                            self.stats.bytes_received += n as u64;
                        }
                        if let Err(bad) = echo.check(&self.scratch[..n]) {
                            self.conclude(key, Outcome::Failed(ErrorKind::BadResponse, &bad), now);
                            return;
                        }
                        if echo.complete() && self.plan.config.no_half_close {
                            self.conclude(key, Outcome::Ok, now);
                            return;
                        }
                    } else if conn.scenario.wants_policy() {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(request_of(Scenario::Good), b"<policy-file-request/>\0");
        assert_eq!(request_of(Scenario::Slow), request_of(Scenario::Good));
        assert!(request_of(Scenario::Idle).is_empty());
        assert!(!request_of(Scenario::Garbage).contains(&0));
    }
}
