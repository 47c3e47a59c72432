//! What the runner asks of one worker.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::cli::RunConfig;
use crate::schedule::Schedule;

/// What one worker does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// This worker's number, 0-based.
    pub id: usize,
    /// The run's settings.
    pub config: Arc<RunConfig>,
    /// When the run started (all workers share it).
    pub t0: Instant,
    /// Closed or open loop, this worker's share.
    pub share: Share,
    /// Most connections this worker holds at once.
    pub max_inflight: usize,
    /// Set on Ctrl-C: start no more clients, finish the ones in flight.
    pub stop: Arc<AtomicBool>,
}

/// This worker's part of the load.
#[derive(Debug, Clone, Copy)]
pub enum Share {
    /// Keep this many clients going; with `Stop::Count`, record `count`.
    Closed {
        /// Concurrent clients.
        connections: usize,
        /// Recorded clients to start (with `--count`).
        count: Option<u64>,
    },
    /// Start global connection numbers `first, first + stride, …`.
    Open {
        /// The global schedule.
        schedule: Schedule,
        /// First connection number.
        first: u64,
        /// Distance between this worker's numbers (the thread count).
        stride: u64,
        /// Numbers below this are warm-up (not recorded).
        first_recorded: u64,
        /// Stop before this number (with `--count`).
        end_index: Option<u64>,
    },
}
