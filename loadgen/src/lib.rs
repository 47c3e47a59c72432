//! `flashpolicy-loadgen`: thousands of simulated Flash Player clients against
//! a socket policy server, with honest latency histograms.
//!
//! Each simulated client does what Flash Player does: connect, send
//! `<policy-file-request/>\0`, read until the server closes, check the reply
//! (byte for byte with `--expect`, else a valid policy and exactly one NUL),
//! close. Every wrong reply is an error, never a success. With `--payload
//! BYTES` (the echo test, for a gateway in front of an echo server) a client
//! sends that many bytes of its own pattern instead, half-closes, and must
//! get exactly them back (with `--flash-gateway`, after a policy request on
//! a first connection; with `--websocket`, in WebSocket frames through a
//! bridge, as Ruffle reaches a game).
//!
//! * Closed loop (`--connections N`): N clients, each restarting when done.
//!   Latency is each connection's own service time; a stalled server also
//!   stalls the clients, so stalls are under-represented (coordinated
//!   omission). Use it for throughput, not for tail latency.
//! * Open loop (`--rate R`): connections start on a fixed schedule whatever
//!   the server does, and latency runs from the *intended* start (as in
//!   wrk2), so a stall shows in the percentiles.
//!
//! Modules: [`cli`] (options), [`worker`] (one event loop per thread and the
//! client state machine), [`check`] (reply checks), [`schedule`] (open-loop
//! start times), [`mix`] (scenarios), [`source`] (source addresses),
//! [`proxy`] (PROXY protocol headers before the request), [`size`] (byte
//! counts such as `--payload 64KiB`),
//! [`stats`] (counts and histograms), [`runner`] (threads, progress, log),
//! [`report`] (text, JSON, `.hgrm`), [`hlog`] (interval logs and `merge`),
//! [`plot`] (SVG), [`sys`] (the few raw system calls); [`echo_server`] is
//! the `flashpolicy-echo` binary's echo server (the game server behind the
//! gateway and bridge benchmarks).
//!
//! See `USAGE.md` in the crate for the command line and the report.

pub mod check;
pub mod cli;
pub mod echo_server;
pub mod hlog;
pub mod mix;
pub mod plot;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod size;
pub mod source;
pub mod stats;
pub mod sys;
pub mod worker;
