//! `--gateway LISTEN=UPSTREAM`: the game's own port. A connection that
//! sends the policy request gets the policy, as on 843; anything else is
//! relayed to the game server (the `relay` module). The decision is the
//! serving core's (`flashpolicy_proto::serve::gateway`); the `worker` module runs it.
//!
//! Architecture: each of `--threads` gateway threads runs its own mio
//! (epoll) loop over its own SO_REUSEPORT listener of every `--gateway`
//! address, next to the policy workers. Sniffing, the policy answer, the
//! upstream's connect and the WebSocket bridge run on that loop whatever
//! the engine; `TCP_DEFER_ACCEPT` is never set on gateway listeners (a game
//! whose server speaks first must not be held in the kernel). The relay
//! itself follows `--backend`:
//!
//! * **epoll**: `crate::relay::Relay`, `splice(2)` through a pipe each
//!   way, driven by edge-triggered readiness: zero copy, six descriptors
//!   per relay.
//! * **io_uring**: `crate::relay::uring::RingRelays` on the thread's own
//!   ring, which also watches the epoll descriptor, so the thread waits in
//!   `io_uring_enter` alone: `RECV` into a provided buffer, then `SEND`.
//!   Two descriptors per relay, one copy each way, and user-space memory
//!   bounded per thread (256 buffers of 64 KiB) whatever the relays do.
//!
//! Why provided buffers and not `IORING_OP_SPLICE` on io_uring, measured
//! (`benches/results/2026-12-03-uring-relay-paths.md`: `scripts/bench.sh
//! --only gw-fpd,gw-fpd-uring,gw-fpd-splice --rounds 3` at commit 570455a,
//! which had both, against the epoll relay; medians of three alternating
//! rounds on a 2-core VM):
//!
//! * The kernel never issues a ring `SPLICE` inline (`io_splice` returns
//!   `-EAGAIN` under `IO_URING_F_NONBLOCK`), so each one is handed to an
//!   io-wq worker thread; a `POLL_ADD` linked before it keeps that worker
//!   from blocking on an idle socket. It cost the same CPU per short relay
//!   as the epoll relay (1.01×) and 1.46× its CPU per relayed MiB.
//! * Provided buffers cost 0.86× the epoll relay's CPU per short relay
//!   (64 connections, 64 bytes each way: the small messages a game sends)
//!   and half its memory per open relay, but 1.55× its CPU per MiB in bulk
//!   (the copies; with 16 KiB buffers it was 2.35×, hence 64 KiB).
//!
//! So on io_uring the buffers are kept: cheaper than the ring's splice for
//! a game's traffic, and in bulk within the spread of its runs
//! (1,321–1,714 µs/MiB against 1,403–1,418), with no kernel threads and a
//! third of the descriptors. For bulk transfer the
//! epoll relay's splice is cheaper per MiB; the README's table has both
//! engines' rows, so an operator can choose with `--backend`.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use flashpolicy_proto::serve::AddressLimit;

use crate::control::{ShutdownFlag, Wakeup};
use crate::reload::ReplyMailbox;

mod bridge;
mod client;
mod conn;
mod spec;
pub(crate) mod worker;

pub use crate::relay::proxy_header::UpstreamProxy;
pub use spec::{GatewaySpec, GatewaySpecError};

/// What one gateway thread needs. Owned by the thread.
#[derive(Debug)]
pub(crate) struct GatewayCtx {
    /// Index of this gateway thread, for logs.
    pub id: usize,
    /// This thread's listeners, each with its upstream.
    pub listeners: Vec<(TcpListener, SocketAddr)>,
    /// The policy reply, replaced on reload through `new_reply`.
    pub reply: &'static [u8],
    /// Where a reloaded policy's reply waits until `wakeup` fires.
    pub new_reply: ReplyMailbox,
    /// `--timeout`: for the request, the upstream's connect, the reply.
    pub timeout: Duration,
    /// `--gateway-wait`.
    pub wait: Duration,
    /// The engine is io_uring: relays move their bytes on a ring.
    pub uring: bool,
    /// Listeners from this index on are `--websocket` bridges.
    pub websocket_from: usize,
    /// `--ws-origin`.
    pub origins: std::sync::Arc<flashpolicy_proto::ws::Origins>,
    /// `--tls-cert`/`--tls-key`: the `--websocket` listeners' certificate.
    pub tls: Option<std::sync::Arc<crate::tls::TlsCell>>,
    /// `--drain-timeout`: how long relays may go on after shutdown.
    pub drain_timeout: Duration,
    /// `--upstream-proxy-protocol`.
    pub upstream_proxy: Option<UpstreamProxy>,
    /// Most connections this thread holds open at once.
    pub max_connections: usize,
    /// `--proxy-protocol`: each connection starts with a PROXY header.
    pub proxy: Option<std::sync::Arc<flashpolicy_proto::proxy::ProxySettings>>,
    /// `--max-per-ip`.
    pub address_limit: Option<&'static AddressLimit>,
    /// Fires when the thread should look at `shutdown` and `new_reply`.
    pub wakeup: Wakeup,
    /// Set when the process is shutting down.
    pub shutdown: ShutdownFlag,
    /// Arrived at once set up; the thread serves only if it says so.
    pub started: crate::gate::StartTicket,
    /// This thread's own counters.
    pub tally: crate::metrics::LiveTally,
}

/// Binds every `--gateway` address once per thread (SO_REUSEPORT, never
/// `TCP_DEFER_ACCEPT`); each thread's list pairs its listeners with their
/// upstreams. Empty without `--gateway`.
pub(crate) fn bind(
    specs: &[GatewaySpec],
    threads: usize,
    backlog: u32,
) -> Result<Vec<Vec<(TcpListener, SocketAddr)>>, crate::listener::BindError> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let opts = crate::listener::ListenOptions {
        backlog,
        defer_accept_secs: None,
    };
    let listen = crate::config::Listen::Addrs(specs.iter().map(|s| s.listen).collect());
    let per_thread = crate::listener::bind_all(&listen, threads, opts)?;
    Ok(per_thread
        .into_iter()
        .map(|ls| {
            ls.into_iter()
                .zip(specs.iter().map(|s| s.upstream))
                .collect()
        })
        .collect())
}
