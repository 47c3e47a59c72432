//! `--gateway LISTEN=UPSTREAM`: the game's own port. A connection that
//! sends the policy request gets the policy, as on 843; anything else is
//! relayed to the game server (the `relay` module). The decision is the
//! serving core's (`flashpolicy_proto::serve::gateway`); the `worker` module runs it.
//!
//! Architecture (first part): each of `--threads` gateway threads runs its
//! own mio (epoll) loop over its own SO_REUSEPORT listener of every
//! `--gateway` address, next to the policy workers and whatever engine
//! they run (epoll or io_uring). An io_uring relay is not built yet.
//! `TCP_DEFER_ACCEPT` is never set on gateway listeners: a game whose
//! server speaks first must not be held in the kernel.

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
