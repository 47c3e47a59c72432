//! One load-generating thread: its own mio event loop, a slab of client
//! state machines, deadline queues, and its own histograms.
//!
//! A client (Flash Player) goes: connect (non-blocking) -> writable (and,
//! with `--send-delay`, that long after): send the request -> readable: read
//! until the server closes -> check the reply -> close. With `--flash-fallback`, a client whose first attempt gives no
//! valid policy in time tries again on the fallback port.
//!
//! Nothing on this path allocates or locks per connection: the slab and the
//! timeout queues start with room for up to 16,384 connections (fewer when
//! `--max-inflight` allows fewer) and grow, amortised, past that; neither
//! ever shrinks, so a steady run stops allocating once it reaches its peak.
//! Replies are read into one scratch buffer per thread and checked
//! incrementally ([`crate::check`]), and histograms are fixed-size. Once a
//! second the thread sends the interval's histograms to the main thread
//! (progress, `--log`); its totals come back when it ends.
//!
//! Files, one concept each:
//!
//! * `plan`: what the runner asks of a worker ([`Plan`], [`Share`]).
//! * `interval`: what a worker reports back ([`Msg`], [`Interval`]) and when.
//! * `event_loop`: the worker itself, its poll loop and event dispatch.
//! * `load`: the load models, i.e. when the next client starts.
//! * `deadlines`: the worker's deadline queues and what happens when one
//!   expires.
//! * `client`: one client attempt's state machine (connect, send, receive).
//! * `echo`: `--payload`, the echo test: the pattern sent, generated and
//!   checked on the fly.
//! * `websocket`: `--websocket`, the echo through a WebSocket bridge: the
//!   upgrade, masked frames out, the server's frames checked, the close.
//! * `connect`: opening a non-blocking connection from the next `--source`.
//! * `outcome`: accounting for a finished client, and the fallback.
//! * `classify`: which [`ErrorKind`](crate::stats::ErrorKind) an OS error
//!   is, and the messages reported for connection failures.

mod classify;
mod client;
mod connect;
mod deadlines;
mod echo;
mod event_loop;
mod interval;
mod load;
mod outcome;
mod plan;
mod websocket;

use std::sync::mpsc::Sender;

pub use classify::{classify_connect, classify_io};
pub use client::GARBAGE;
pub use interval::{Interval, Msg};
pub use plan::{Plan, Share};

use event_loop::Worker;

/// Runs one worker until its share is done and every connection finished;
/// reports intervals and the totals on `tx`.
pub fn run(plan: Plan, tx: Sender<Msg>) {
    let id = plan.id;
    let result = Worker::new(plan, tx.clone())
        .and_then(Worker::run)
        .map(Box::new);
    let _ = tx.send(Msg::Done { id, result });
}
