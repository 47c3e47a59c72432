//! The epoll engine (mio, edge-triggered). STUB: being written.

use std::io;

use super::{Stats, WorkerCtx};

/// Runs one worker until shutdown.
pub fn run(ctx: WorkerCtx) -> io::Result<Stats> {
    let _ = ctx;
    Err(io::Error::other("epoll engine not written yet"))
}
