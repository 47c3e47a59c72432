//! The engines: per-thread loops that accept, read the request, send the one
//! reply and close. Each engine only turns readiness events ([`epoll`]) or
//! completions ([`uring`]) into calls of the serving core,
//! `flashpolicy_proto::serve`, and moves the bytes it answers with.

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use flashpolicy_proto::proxy::ProxySettings;
use flashpolicy_proto::serve::AddressLimit;

use crate::config::Backend;
use crate::control::{ShutdownFlag, Wakeup};
use crate::reload::ReplyMailbox;
use uring::UringUnavailable;

pub(crate) mod common;
pub(crate) mod epoll;
pub(crate) mod uring;

/// What one worker needs. Owned by the worker thread.
#[derive(Debug)]
pub(crate) struct WorkerCtx {
    /// Index of this worker, for logs and pinning.
    pub id: usize,
    /// This worker's own listeners, one per address (non-blocking).
    pub listeners: Vec<TcpListener>,
    /// The reply to start with, shared read-only by every worker. Replaced
    /// (never freed) when SIGHUP reloads the policy.
    pub reply: &'static [u8],
    /// Where a reloaded policy's reply waits until `wakeup` fires.
    pub new_reply: ReplyMailbox,
    /// Close connections without a complete request after this long.
    pub timeout: Duration,
    /// Most connections this worker holds open at once.
    pub max_connections: usize,
    /// Fires when the worker should look at `shutdown` and `new_reply`.
    pub wakeup: Wakeup,
    /// Set when the process is shutting down.
    pub shutdown: ShutdownFlag,
    /// io_uring engine: send the reply with IORING_OP_SEND_ZC.
    pub send_zc: bool,
    /// Arrived at once set up; the worker serves only if it says so.
    pub started: crate::gate::StartTicket,
    /// This worker's own counters (it is their only writer); the totals
    /// line and `--metrics` read them.
    pub tally: crate::metrics::LiveTally,
    /// `--proxy-protocol`: the PROXY settings every session is served with.
    pub proxy: Option<Arc<ProxySettings>>,
    /// `--max-per-ip`: the per-address counts every worker shares.
    pub address_limit: Option<&'static AddressLimit>,
}

/// Runs one worker on `engine` (chosen once by [`resolve_backend`]) until
/// shutdown has drained it. What it counted is in its `ctx.tally`.
pub(crate) fn run_worker(engine: Engine, ctx: WorkerCtx) -> io::Result<()> {
    match engine {
        Engine::Epoll => epoll::run(ctx),
        Engine::Uring => uring::run(ctx),
    }
}

/// An engine to run: what `--backend` becomes once `auto` is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// [`epoll`]: mio, edge-triggered.
    Epoll,
    /// [`uring`]: io_uring, one ring per worker.
    Uring,
}

impl Engine {
    /// The engine's name, as `--backend` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Epoll => "epoll",
            Engine::Uring => "uring",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Backend::from(*self), f)
    }
}

impl From<Engine> for Backend {
    fn from(engine: Engine) -> Backend {
        match engine {
            Engine::Epoll => Backend::Epoll,
            Engine::Uring => Backend::Uring,
        }
    }
}

/// The engine chosen at start-up, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The engine every worker runs.
    pub engine: Engine,
    /// One line for the start-up log.
    pub reason: String,
}

/// Turns the requested backend into the one to run, probing io_uring once.
///
/// `auto` picks io_uring when the io_uring probe succeeds and epoll otherwise;
/// `uring` on a kernel that refuses io_uring is an error (the message says
/// why); `epoll` is taken as asked.
pub(crate) fn resolve_backend(
    requested: Backend,
    send_zc: bool,
) -> Result<Resolved, UringUnavailable> {
    let mut resolved = resolve(requested, send_zc)?;
    if send_zc && resolved.engine == Engine::Epoll {
        resolved
            .reason
            .push_str("; --send-zc only applies to the uring engine and is ignored");
    }
    Ok(resolved)
}

fn resolve(requested: Backend, send_zc: bool) -> Result<Resolved, UringUnavailable> {
    match requested {
        Backend::Epoll => Ok(Resolved {
            engine: Engine::Epoll,
            reason: "asked for with --backend epoll".into(),
        }),
        Backend::Uring => match uring::probe(send_zc) {
            Ok(found) => Ok(Resolved {
                engine: Engine::Uring,
                reason: format!("asked for with --backend uring; {found}"),
            }),
            Err(why) => Err(why),
        },
        Backend::Auto => Ok(match uring::probe(send_zc) {
            Ok(found) => Resolved {
                engine: Engine::Uring,
                reason: format!("auto: {found}"),
            },
            Err(why) => Resolved {
                engine: Engine::Epoll,
                reason: format!("auto: io_uring unavailable ({why}), using epoll"),
            },
        }),
    }
}
