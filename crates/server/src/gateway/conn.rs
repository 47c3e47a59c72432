//! One gateway connection: its stages (sniffing, answering the policy,
//! connecting upstream, relaying) and what readiness does in each.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use flashpolicy_proto::proxy::{self, HeaderReader};
use flashpolicy_proto::serve::{AddressLimit, End, Hold, Sniff, Step};
use flashpolicy_proto::ws::{Accepted, Origins, Refusal, UpgradeReader, UpgradeStep};
use mio::net::TcpStream;

use super::bridge::Bridge;
use super::client::Client;
use crate::engine::common::RECV_LEN;
use crate::relay::{Progress, Relay};

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) generation: u32,
    /// Index of the listener it came from (its upstream).
    pub(super) listener: usize,
    pub(super) peer: SocketAddr,
    /// The player: the peer, or with `--proxy-protocol` the header's
    /// source (the peer for `LOCAL`/`UNKNOWN`).
    pub(super) player: SocketAddr,
    /// `--max-per-ip`, applied once the player is known.
    pub(super) limit: Option<&'static AddressLimit>,
    /// `--timeout` for the stage it is in.
    pub(super) deadline: Instant,
    pub(super) stage: Stage,
    /// `--max-per-ip`: given back when the connection is dropped.
    pub(super) hold: Option<Hold>,
    /// A `--websocket` connection (else `--gateway`).
    pub(super) websocket: bool,
}

#[derive(Debug)]
pub(super) enum Stage {
    /// `--proxy-protocol`: the balancer's PROXY header first.
    Header(Box<HeaderReader>),
    Sniffing(Sniff),
    Policy {
        reply: &'static [u8],
        sent: usize,
    },
    Connecting {
        upstream: TcpStream,
        first: Vec<u8>,
        client_eof: bool,
    },
    Relaying {
        upstream: TcpStream,
        relay: Box<Relay>,
    },
    /// `--websocket`: reading the upgrade request.
    WsUpgrade(Box<UpgradeReader>),
    /// `--websocket`: an HTTP error, then a close counted as `end`.
    WsRefusing {
        reply: &'static [u8],
        sent: usize,
        end: End,
    },
    /// `--websocket`: a valid upgrade; the game's connection is being made.
    WsConnecting {
        upstream: TcpStream,
        first: Vec<u8>,
        accepted: Box<Accepted>,
    },
    /// `--websocket`: bridging frames and the game's stream.
    Bridging {
        upstream: TcpStream,
        bridge: Box<Bridge>,
    },
}

/// What readiness of a connection amounted to.
pub(super) enum Driven {
    Wait,
    Close(End),
    Policy,
    Relay { first: Vec<u8>, eof: bool },
    UpstreamReady,
    UpstreamFailed(io::Error),
    WsAccept(Box<Accepted>),
    WsRefuse(Refusal),
}

/// Does what the connection's stage can do now.
pub(super) fn conn_step(conn: &mut Conn, origins: &Origins) -> Driven {
    match &mut conn.stage {
        Stage::Header(_) => header_step(conn, origins),
        Stage::WsUpgrade(reader) => upgrade_step(&mut conn.client, reader, &[], origins),
        Stage::WsRefusing { reply, sent, end } => {
            let end = *end;
            match write_all(&mut conn.client, reply, sent) {
                Some(true) => Driven::Close(end),
                Some(false) => Driven::Wait,
                None => Driven::Close(End::Failed),
            }
        }
        Stage::WsConnecting { upstream, .. } => connected(upstream),
        Stage::Bridging { upstream, bridge } => match bridge.pump(&mut conn.client, upstream) {
            Progress::Open => Driven::Wait,
            Progress::Closed | Progress::Aborted => Driven::Close(End::Relayed),
        },
        Stage::Sniffing(sniff) => sniff_step(&mut conn.client, sniff, &[]),
        Stage::Policy { reply, sent } => loop {
            let Some(rest) = reply.get(*sent..).filter(|r| !r.is_empty()) else {
                return Driven::Close(End::Served);
            };
            match conn.client.write(rest) {
                Ok(0) => return Driven::Close(End::Failed),
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Driven::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Driven::Close(End::Failed),
            }
        },
        Stage::Connecting { upstream, .. } => connected(upstream),
        Stage::Relaying { upstream, relay } => match relay.pump(conn.client.tcp(), upstream) {
            Progress::Open => Driven::Wait,
            Progress::Closed | Progress::Aborted => Driven::Close(End::Relayed),
        },
    }
}

/// Whether a non-blocking connect has finished.
fn connected(upstream: &TcpStream) -> Driven {
    match upstream.take_error() {
        Ok(Some(e)) | Err(e) => Driven::UpstreamFailed(e),
        Ok(None) => match upstream.peer_addr() {
            Ok(_) => Driven::UpstreamReady,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Driven::Wait,
            Err(e) => Driven::UpstreamFailed(e),
        },
    }
}

/// Writes what is left of `reply`: `Some(true)` once all of it is out,
/// `Some(false)` to wait, `None` on an error.
fn write_all(client: &mut Client, reply: &[u8], sent: &mut usize) -> Option<bool> {
    loop {
        let Some(rest) = reply.get(*sent..).filter(|r| !r.is_empty()) else {
            return Some(true);
        };
        match client.write(rest) {
            Ok(0) => return None,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Reads the upgrade request (`first`: bytes already read).
fn upgrade_step(
    client: &mut Client,
    reader: &mut UpgradeReader,
    first: &[u8],
    origins: &Origins,
) -> Driven {
    let mut step = reader.feed(first, origins);
    let mut buf = [0u8; RECV_LEN];
    loop {
        match step {
            UpgradeStep::NeedMore => {}
            UpgradeStep::Accept(a) => return Driven::WsAccept(a),
            UpgradeStep::Refuse(r) => return Driven::WsRefuse(r),
        }
        step = match client.read(&mut buf) {
            Ok(0) => reader.on_eof(),
            Ok(n) => reader.feed(&buf[..n], origins),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Driven::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Driven::Close(End::Failed),
        };
    }
}

/// `--max-per-ip` for the player, once known: `false` if over.
pub(super) fn hold_player(conn: &mut Conn) -> bool {
    let Some(limit) = conn.limit else {
        return true;
    };
    match limit.try_hold(conn.player.ip()) {
        Some(hold) => {
            conn.hold = Some(hold);
            true
        }
        None => false,
    }
}

/// Reads the PROXY header; what follows it in the same read is sniffed.
fn header_step(conn: &mut Conn, origins: &Origins) -> Driven {
    let mut buf = [0u8; RECV_LEN];
    loop {
        let Stage::Header(reader) = &mut conn.stage else {
            return Driven::Wait;
        };
        let n = match conn.client.read(&mut buf) {
            Ok(0) => return Driven::Close(End::ProxyInvalid),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Driven::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Driven::Close(End::Failed),
        };
        match reader.feed(&buf[..n]) {
            proxy::Step::NeedMore => {}
            proxy::Step::Invalid(_) => return Driven::Close(End::ProxyInvalid),
            proxy::Step::Header { client, consumed } => {
                conn.player = client.unwrap_or(conn.peer);
                if !hold_player(conn) {
                    return Driven::Close(End::OverIpLimit);
                }
                let rest = buf.get(consumed..n).unwrap_or(&[]);
                if conn.websocket {
                    let mut reader = Box::default();
                    let driven = upgrade_step(&mut conn.client, &mut reader, rest, origins);
                    conn.stage = Stage::WsUpgrade(reader);
                    return driven;
                }
                let mut sniff = Sniff::new();
                let driven = sniff_step(&mut conn.client, &mut sniff, rest);
                conn.stage = Stage::Sniffing(sniff);
                return driven;
            }
        }
    }
}

/// Sniffs `first` (bytes already read), then reads while the verdict is
/// open; at most one stack buffer of bytes is read past a verdict's first
/// byte.
fn sniff_step(client: &mut Client, sniff: &mut Sniff, first: &[u8]) -> Driven {
    if !first.is_empty() {
        match sniff.on_bytes(first) {
            Step::Wait => {}
            Step::Policy => return Driven::Policy,
            Step::TimedOut => return Driven::Close(End::TimedOut),
            Step::Relay { already, eof } => {
                let mut bytes = already.prefix().to_vec();
                bytes.extend_from_slice(first);
                return Driven::Relay { first: bytes, eof };
            }
        }
    }
    let mut buf = [0u8; RECV_LEN];
    loop {
        let (step, read) = match client.read(&mut buf) {
            Ok(0) => (sniff.on_eof(), 0),
            Ok(n) => (sniff.on_bytes(&buf[..n]), n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Driven::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Driven::Close(End::Failed),
        };
        match step {
            Step::Wait => {}
            Step::Policy => return Driven::Policy,
            Step::TimedOut => return Driven::Close(End::TimedOut),
            Step::Relay { already, eof } => {
                let mut first = already.prefix().to_vec();
                first.extend_from_slice(&buf[..read]);
                return Driven::Relay { first, eof };
            }
        }
    }
}
