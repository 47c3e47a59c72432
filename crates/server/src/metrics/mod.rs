//! `--metrics ADDR`: live Prometheus metrics, served from a thread of their
//! own.
//!
//! * [`counters`]: each worker's own block of counters ([`LiveTally`], one
//!   writer, relaxed load + store per increment), which the engines write
//!   in place of a plain `Tally`, and their read side ([`Counters`]). The
//!   totals line at exit is summed from the same blocks, whether or not
//!   `--metrics` is given.
//! * [`policy`]: reloads by result and the size of the reply served, written
//!   by the reload thread.
//! * `encode`: a `prometheus-client` collector that reads all of it at
//!   scrape time, in the Prometheus text format.
//! * `http`: the endpoint, a small mio loop with bounded clients, bounded
//!   requests and deadlines ([`MetricsListener`]).
//!
//! Without `--metrics` no thread is started and nothing is bound; the
//! workers' counters are the same either way.

use std::io;
use std::sync::Arc;

pub mod counters;
mod encode;
mod http;
pub mod policy;

pub use counters::{Counters, LiveTally};
pub use encode::{registry, render, LiveCollector};
pub use http::{MetricsListener, CLIENT_TIMEOUT, MAX_CLIENTS, MAX_REQUEST};
pub use policy::PolicyCounters;

/// Starts serving `/metrics` on `listener` from its own thread: the
/// workers' `counters`, the reload thread's `policy` counters, and the
/// `engine` the workers run.
pub fn serve(
    listener: MetricsListener,
    counters: Counters,
    policy: Arc<PolicyCounters>,
    engine: &'static str,
) -> io::Result<()> {
    listener.spawn(registry(LiveCollector::new(counters, policy, engine)))
}
