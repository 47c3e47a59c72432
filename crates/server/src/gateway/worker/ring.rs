//! A gateway thread on the io_uring engine: relays move their bytes on the
//! thread's ring ([`RingRelays`]); sniffing, the policy, the upstream's
//! connect and the WebSocket bridge stay on the thread's epoll, whose
//! descriptor the ring watches. The thread then waits in the ring alone:
//! `io_uring_enter` returns for a relay's completion or for epoll
//! readiness, which is then collected with a zero-timeout `epoll_wait`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use flashpolicy_proto::serve::{End, Hold};
use mio::net::TcpStream;
use mio::Events;
use tracing::{debug, info, warn};

use super::{Gateway, Next};
use crate::relay::uring::RingRelays;

/// What a relay on the ring carries for the gateway until it ends.
#[derive(Debug)]
pub(super) struct RingTag {
    peer: SocketAddr,
    /// `--max-per-ip`: given back when the relay ends.
    _hold: Option<Hold>,
}

/// The thread's ring relays, or `None` (epoll relays) where the engine is
/// epoll or the ring cannot be set up here (said once, in the log).
pub(super) fn open(id: usize, uring: bool, poll: &mio::Poll) -> Option<RingRelays<RingTag>> {
    if !uring {
        return None;
    }
    match RingRelays::new(poll.as_raw_fd()) {
        Ok(ring) => {
            let (count, kib) = ring.buffers();
            info!("gateway {id}: relays on io_uring ({count} provided buffers of {kib} KiB)");
            Some(ring)
        }
        Err(e) => {
            warn!("gateway {id}: no io_uring relay here ({e}): relaying with splice on epoll");
            None
        }
    }
}

impl Gateway {
    /// Waits for events (at most `timeout`): on epoll alone, or on the
    /// ring, which also reports epoll readiness. Ended ring relays are
    /// counted.
    pub(super) fn wait(
        &mut self,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let Some(ring) = &mut self.ring else {
            return crate::engine::common::poll_events(&mut self.poll, events, timeout);
        };
        let timeout = if self.epoll_backlog {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let ready = ring.wait(timeout)?;
        self.count_finished();
        if ready || self.epoll_backlog {
            crate::engine::common::poll_events(&mut self.poll, events, Some(Duration::ZERO))?;
            // A full batch may leave more ready than one wait returned.
            self.epoll_backlog = events.iter().count() >= events.capacity();
        } else {
            events.clear();
        }
        Ok(())
    }

    /// Relays currently on the ring.
    pub(super) fn ring_len(&self) -> usize {
        self.ring.as_ref().map_or(0, RingRelays::len)
    }

    /// Hands connection `key`, connected to `upstream`, to the ring.
    pub(super) fn relay_on_ring(
        &mut self,
        key: usize,
        upstream: TcpStream,
        first: Vec<u8>,
        client_eof: bool,
    ) -> Next {
        let Some(conn) = self.conns.try_remove(key) else {
            return Next::Wait;
        };
        let mut upstream = upstream;
        let mut client = conn.client;
        let registry = self.poll.registry();
        if let Err(e) = registry
            .deregister(&mut client)
            .and(registry.deregister(&mut upstream))
        {
            debug!("gateway {}: deregister: {e}", self.id);
        }
        let Some(client) = client.into_plain() else {
            // Never: only --websocket listeners speak TLS, and they bridge.
            self.tally.ended(End::Failed);
            return Next::Wait;
        };
        let tag = RingTag {
            peer: conn.peer,
            _hold: conn.hold,
        };
        let Some(ring) = &mut self.ring else {
            self.tally.ended(End::Failed);
            return Next::Wait;
        };
        ring.start(client, upstream, first, client_eof, tag);
        self.count_finished();
        Next::Wait
    }

    /// Closes every relay on the ring (the drain is over).
    pub(super) fn close_ring(&mut self) {
        if let Some(ring) = &mut self.ring {
            ring.close_all();
        }
        self.count_finished();
    }

    fn count_finished(&mut self) {
        let Some(ring) = &mut self.ring else {
            return;
        };
        for done in ring.take_finished() {
            self.tally.relayed_bytes(done.moved.up, done.moved.down);
            self.tally.ended(End::Relayed);
            debug!(
                "gateway {}: {} relayed, {} bytes up, {} down",
                self.id, done.tag.peer, done.moved.up, done.moved.down
            );
        }
    }
}
