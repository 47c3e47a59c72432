//! `flashpolicyd`: serves one Flash socket policy to many clients, fast.
//!
//! * [`config`] turns the command line into one validated [`config::Config`].
//! * [`policy`] loads the policy: a `--policy` file or the `--allow` specs,
//!   validated and made into the reply, at start-up and on every reload.
//! * [`listener`] opens one SO_REUSEPORT listening socket per worker and address.
//! * [`supervisor`] runs the server: starts the workers (pinned with
//!   `--pin`), waits for them, stops them all when one fails, and reports
//!   the totals.
//! * `engine` runs the workers: `engine::epoll` (mio) or `engine::uring`,
//!   each driving the serving core of `flashpolicy_proto::serve`.
//! * [`control`] catches SIGINT, SIGTERM and SIGHUP, and wakes the workers
//!   through their eventfds to stop them (SIGINT/SIGTERM: stop accepting,
//!   drain, exit).
//! * [`reload`] hands a policy loaded again on SIGHUP to every worker.
//! * [`activation`] takes the sockets systemd passes (socket activation);
//!   `notify` tells systemd READY/RELOADING/STOPPING and pings its
//!   watchdog; [`privileges`] switches to `--user` once all is bound; the
//!   start gate (`gate`) holds the workers until then; [`logging`] is
//!   `--log-format`.
//! * [`metrics`] holds each worker's live counters (the totals line sums
//!   them) and serves them to Prometheus with `--metrics`.
//! * [`tls`] is `--tls-cert`/`--tls-key`: the certificate loaded (and
//!   reloaded on SIGHUP) into a shared [`tls::TlsCell`], and
//!   [`tls::TlsStream`], a non-blocking TLS server stream over a mio socket
//!   for the listeners that serve TLS.
//! * [`error`] says why the server did not start or stopped with a failure,
//!   and which exit status that is.
//!
//! All protocol decisions come from `flashpolicy-proto`; the engines only move
//! bytes.

#![warn(unreachable_pub)]

pub mod activation;
pub mod config;
pub mod control;
pub(crate) mod engine;
pub mod error;
pub(crate) mod gate;
pub mod gateway;
pub mod listener;
pub mod logging;
pub mod metrics;
pub(crate) mod notify;
pub mod policy;
pub mod privileges;
pub(crate) mod relay;
pub mod reload;
pub mod supervisor;
pub mod tls;
