//! One connection of the policy service, from accept to close, as a state
//! machine fed with plain events.
//!
//! The engines tell a [`Session`] what happened on its socket and do what
//! it answers:
//!
//! | event | when |
//! |---|---|
//! | [`Session::on_accepted`] | the connection has a slot (with its peer's address when asked for) |
//! | [`Session::on_bytes`] | a read returned bytes |
//! | [`Session::on_eof`] | a read returned end-of-stream |
//! | [`Session::on_sent`] | a send of the bytes last asked for wrote `n` of them |
//! | [`Session::on_error`] | a read or send failed |
//! | [`Session::on_deadline`] | `--timeout` passed |
//!
//! Events that may read or answer take the worker's [`Serving`] context
//! (the current reply, the PROXY settings). With `--proxy-protocol` a
//! session reads a PROXY header ([`crate::proxy`]) before the request, and
//! nothing of the request is looked at before the header is complete and
//! valid.
//!
//! Every event answers with one [`Action`]: read more, send these bytes, or
//! close because the connection ended this way ([`End`]). Once a session has
//! ended, every later event answers the same `Close`: an engine whose
//! operation was still in flight (io_uring) can close when it completes.

use std::fmt;
use std::net::SocketAddr;

use super::address_limit::Hold;
use super::context::Serving;
use crate::proxy::{HeaderReader, Step};
use crate::request::{Recogniser, Verdict};

/// Times in a row a read or send may fail with a transient error
/// ([`IoFailure::Transient`]) before the connection is given up.
pub const MAX_RETRIES: u8 = 8;

/// What to do next with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read from the socket (again).
    Recv,
    /// Send these bytes, the reply or what is left of it, then report how
    /// many went out with [`Session::on_sent`].
    Send(&'static [u8]),
    /// Close the socket: the connection ended this way.
    Close(End),
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// The whole reply was sent.
    Served,
    /// The client's bytes were not a policy request.
    Rejected,
    /// No complete request within `--timeout`.
    TimedOut,
    /// An I/O error, or the peer went away while the reply was being sent.
    Failed,
    /// Closed at once because a limit (connections, descriptors) was reached.
    Shed,
    /// `--proxy-protocol`: the PROXY header was malformed, oversized or
    /// came from a peer not listed by `--proxy-from`; nothing was sent.
    ProxyInvalid,
    /// `--max-per-ip`: the client's address already held its share of
    /// connections; closed at once, nothing was sent.
    OverIpLimit,
    /// `--gateway`: relayed to the upstream until both sides closed (or
    /// one reset).
    Relayed,
    /// `--gateway`: the upstream could not be reached (refused, unreachable,
    /// or no connection within `--timeout`); the client was closed.
    UpstreamFailed,
    /// `--websocket`: the page's `Origin` is not one of `--ws-origin`; the
    /// upgrade was refused with 403.
    OriginRefused,
}

impl End {
    /// Every end, in the order reports list them.
    pub const ALL: [End; 10] = [
        End::Served,
        End::Rejected,
        End::TimedOut,
        End::Failed,
        End::Shed,
        End::ProxyInvalid,
        End::OverIpLimit,
        End::Relayed,
        End::UpstreamFailed,
        End::OriginRefused,
    ];

    /// The name used in logs, the totals line and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            End::Served => "served",
            End::Rejected => "rejected",
            End::TimedOut => "timed_out",
            End::Failed => "failed",
            End::Shed => "shed",
            End::ProxyInvalid => "proxy_invalid",
            End::OverIpLimit => "over_ip_limit",
            End::Relayed => "relayed",
            End::UpstreamFailed => "upstream_failed",
            End::OriginRefused => "origin_refused",
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of I/O failure an engine saw (it classifies the errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoFailure {
    /// Worth trying the same operation again (`EINTR`, `EAGAIN` from an
    /// operation that should have waited, `ENOBUFS`, `ENOMEM`).
    Transient,
    /// The connection is broken (reset, `EPIPE`, anything else).
    Fatal,
}

/// One connection's state: a two-byte recogniser while reading, the reply
/// and an offset while sending; with `--proxy-protocol`, a boxed header
/// reader first. Nothing in it grows with what a client sends.
///
/// The addresses (the TCP peer, the client a PROXY header names) are boxed
/// and only there when the engine passed the peer at accept, so a session
/// that needs neither stays small.
#[derive(Debug)]
pub struct Session {
    state: State,
    /// Transient failures in a row (reset by progress).
    retries: u8,
    /// The peer and the client, when known.
    addrs: Option<Box<Addrs>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// `--proxy-protocol`: waiting for (the rest of) the PROXY header.
    Header(Box<HeaderReader>),
    /// Waiting for (the rest of) the request.
    Reading(Recogniser),
    /// The request is complete; `sent` bytes of `reply` are out. The reply
    /// is the one current when the request completed, so a reload never
    /// changes a reply half-way.
    ///
    /// `sent` is a `u32` to keep the session small: a reply is at most
    /// [`crate::policy::MAX_POLICY_LEN`] bytes and one NUL.
    Sending { reply: &'static [u8], sent: u32 },
    /// Over; every event answers `Close(end)`.
    Ended(End),
}

/// A connection's addresses, and its share of `--max-per-ip`.
#[derive(Debug)]
struct Addrs {
    /// The TCP peer (with PROXY: the balancer).
    peer: SocketAddr,
    /// The client: the peer without PROXY, the header's source with it
    /// (the peer for `LOCAL`/`UNKNOWN`); `None` until known.
    client: Option<SocketAddr>,
    /// `--max-per-ip`: the client's share of its address's count, given
    /// back when the session is dropped.
    hold: Option<Hold>,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    /// A connection that has sent nothing yet.
    pub const fn new() -> Session {
        Session {
            state: State::Reading(Recogniser::new()),
            retries: 0,
            addrs: None,
        }
    }

    /// The connection has a slot: read its PROXY header (with
    /// `--proxy-protocol`) or its request.
    ///
    /// `peer` is the TCP peer's address; engines pass it when
    /// [`Serving::needs_peer`] (or debug logging) asks for it, `None`
    /// otherwise. With `--proxy-protocol` and no peer (`getpeername`
    /// failed: the client is gone) the connection fails; a peer outside
    /// `--proxy-from` ends it at once as [`End::ProxyInvalid`].
    pub fn on_accepted(&mut self, serving: &Serving<'_>, peer: Option<SocketAddr>) -> Action {
        if let Some(peer) = peer {
            self.addrs = Some(Box::new(Addrs {
                peer,
                client: None,
                hold: None,
            }));
        }
        match (serving.proxy, peer) {
            (None, _) => self.client_known(serving, peer),
            (Some(_), None) => self.state = State::Ended(End::Failed),
            (Some(settings), Some(peer)) if !settings.trusts(peer.ip()) => {
                self.state = State::Ended(End::ProxyInvalid)
            }
            (Some(_), Some(_)) => self.state = State::Header(Box::default()),
        }
        self.resume()
    }

    /// A read returned `bytes` (not empty). The reply in `serving` is sent
    /// if these bytes complete the request.
    pub fn on_bytes(&mut self, bytes: &[u8], serving: &Serving<'_>) -> Action {
        let bytes = match &mut self.state {
            State::Header(reader) => {
                self.retries = 0;
                match reader.feed(bytes) {
                    Step::NeedMore => return Action::Recv,
                    Step::Invalid(_) => {
                        self.state = State::Ended(End::ProxyInvalid);
                        return self.resume();
                    }
                    Step::Header { client, consumed } => {
                        self.state = State::Reading(Recogniser::new());
                        let real = self.addrs.as_ref().map(|a| a.peer);
                        self.client_known(serving, client.or(real));
                        match bytes.get(consumed..) {
                            Some(rest) if !rest.is_empty() => rest,
                            _ => return self.resume(),
                        }
                    }
                }
            }
            State::Reading(_) => bytes,
            _ => return self.after_unexpected_read(),
        };
        let State::Reading(recogniser) = &mut self.state else {
            // The client's limit ended it when its address became known.
            return self.resume();
        };
        self.retries = 0;
        let verdict = recogniser.feed(bytes);
        self.on_verdict(verdict, serving.reply)
    }

    /// A read returned end-of-stream. A bare tag followed by a half-close
    /// still counts as a request (see [`Recogniser::eof`]); a PROXY header
    /// cut short is [`End::ProxyInvalid`].
    pub fn on_eof(&mut self, serving: &Serving<'_>) -> Action {
        match &mut self.state {
            State::Header(_) => {
                self.state = State::Ended(End::ProxyInvalid);
                self.resume()
            }
            State::Reading(recogniser) => {
                let verdict = recogniser.eof();
                self.on_verdict(verdict, serving.reply)
            }
            _ => self.after_unexpected_read(),
        }
    }

    /// The client's address became known: at accept without
    /// `--proxy-protocol` (the TCP peer, if the engine passed it), after a
    /// complete, valid header with it (the header's source, or the peer
    /// for `LOCAL`/`UNKNOWN`). This is the one place where a decision
    /// about the client's address is taken, before any byte of the
    /// request is looked at: with `--max-per-ip`, an address that already
    /// holds its share ends the session at once as [`End::OverIpLimit`];
    /// one that does not keeps a [`Hold`] until the session is dropped. An
    /// address that cannot be known (the engine could not read the peer:
    /// the client is gone) fails the connection under a limit.
    fn client_known(&mut self, serving: &Serving<'_>, client: Option<SocketAddr>) {
        let Some(addrs) = self.addrs.as_deref_mut() else {
            if serving.limit.is_some() {
                self.state = State::Ended(End::Failed);
            }
            return;
        };
        addrs.client = client;
        let Some(limit) = serving.limit else {
            return;
        };
        match client {
            None => self.state = State::Ended(End::Failed),
            Some(client) => match limit.try_hold(client.ip()) {
                Some(hold) => addrs.hold = Some(hold),
                None => self.state = State::Ended(End::OverIpLimit),
            },
        }
    }

    /// The client's address, once known (see [`Session::on_accepted`]):
    /// the TCP peer without PROXY, the header's source with it.
    pub fn client(&self) -> Option<SocketAddr> {
        self.addrs.as_ref().and_then(|a| a.client)
    }

    /// The TCP peer's address, if the engine passed it at accept (with
    /// PROXY: the balancer).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.addrs.as_ref().map(|a| a.peer)
    }

    /// A send of the bytes last asked for wrote `n` of them.
    pub fn on_sent(&mut self, n: usize) -> Action {
        if let State::Sending { reply, sent } = &mut self.state {
            if n > 0 {
                self.retries = 0;
                let total = (*sent as usize).saturating_add(n).min(reply.len());
                *sent = u32::try_from(total).unwrap_or(u32::MAX);
                if total == reply.len() {
                    // Served: no later event (an error or a deadline
                    // racing the last send) may change that.
                    self.state = State::Ended(End::Served);
                }
            } else {
                // A send that wrote nothing and reported no error: the
                // socket is unusable.
                self.state = State::Ended(End::Failed);
            }
        }
        self.resume()
    }

    /// A read or send failed.
    pub fn on_error(&mut self, failure: IoFailure) -> Action {
        if matches!(self.state, State::Ended(_)) {
            return self.resume();
        }
        if failure == IoFailure::Transient && self.retries < MAX_RETRIES {
            self.retries += 1;
        } else {
            self.state = State::Ended(End::Failed);
        }
        self.resume()
    }

    /// `--timeout` passed: a connection still waiting for its header or
    /// request timed out; one still sending failed (its client does not
    /// read).
    pub fn on_deadline(&mut self) -> Action {
        match self.state {
            State::Header(_) | State::Reading(_) => self.state = State::Ended(End::TimedOut),
            State::Sending { .. } => self.state = State::Ended(End::Failed),
            State::Ended(_) => {}
        }
        self.resume()
    }

    /// What the session waits for now: the action its last event answered.
    pub fn resume(&self) -> Action {
        match self.state {
            State::Header(_) | State::Reading(_) => Action::Recv,
            State::Sending { reply, sent } => {
                Action::Send(reply.get(sent as usize..).unwrap_or(&[]))
            }
            State::Ended(end) => Action::Close(end),
        }
    }

    /// How it ended, once it has (`Close` was answered).
    pub fn end(&self) -> Option<End> {
        match self.resume() {
            Action::Close(end) => Some(end),
            _ => None,
        }
    }

    /// Whether the request is complete and the reply being sent.
    pub fn is_sending(&self) -> bool {
        matches!(self.state, State::Sending { .. })
    }

    fn on_verdict(&mut self, verdict: Verdict, reply: &'static [u8]) -> Action {
        match verdict {
            Verdict::NeedMore => {}
            // (An empty reply is never built; it would be served at once.)
            Verdict::Request { .. } if reply.is_empty() => self.state = State::Ended(End::Served),
            Verdict::Request { .. } => self.state = State::Sending { reply, sent: 0 },
            Verdict::Reject(_) => self.state = State::Ended(End::Rejected),
        }
        self.resume()
    }

    /// Bytes or end-of-stream while not reading: after the verdict there is
    /// nothing to read (an engine that read anyway is told what it waits
    /// for already).
    fn after_unexpected_read(&self) -> Action {
        self.resume()
    }
}

#[cfg(test)]
mod tests;
