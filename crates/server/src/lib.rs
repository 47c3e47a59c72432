//! `flashpolicyd`: serves one Flash socket policy to many clients, fast.
//!
//! * [`config`] turns the command line into one validated [`config::Config`].
//! * [`listener`] opens one SO_REUSEPORT listening socket per worker and address.
//! * [`engine`] runs the workers: [`engine::epoll`] (mio) or [`engine::uring`].
//! * [`timer`] is the deadline queue both engines use for `--timeout`.
//! * [`control`] carries SIGINT/SIGTERM to every worker.
//! * [`reload`] hands a reloaded policy (SIGHUP) to every worker.
//!
//! All protocol decisions come from `flashpolicy-proto`; the engines only move
//! bytes.

pub mod config;
pub mod control;
pub mod engine;
pub mod error;
pub mod listener;
pub mod policy;
pub mod reload;
pub mod supervisor;
pub mod timer;
