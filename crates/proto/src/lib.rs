//! The Flash socket policy protocol with no I/O at all.
//!
//! A Flash Player (or Unity Web Player) client connects to port 843, sends
//! [`request::POLICY_REQUEST`] (`<policy-file-request/>` and one NUL byte) and
//! expects a `<cross-domain-policy>` document terminated by one NUL byte.
//!
//! * [`request`] decides, byte by byte, whether a client asked for the policy.
//! * [`policy`] models, validates and renders socket policy documents.
//! * [`clients`] models how Flash Player, Unity Web Player and Lightspark
//!   each read a policy and decide a connection.
//! * [`proxy`] reads the PROXY protocol header a balancer may put first.
//! * [`reply`] holds the one response buffer every connection is answered from.
//! * [`serve`] is the serving core: what a connection does next, when a
//!   worker accepts, how connections end and when they time out.
//! * [`ws`] is the WebSocket bridge for Ruffle: the upgrade, the frames,
//!   the closing handshake.
//!
//! Everything here works on plain byte slices, so it can be tested, fuzzed and
//! benchmarked without sockets; the engines in `flashpolicy-server` only move
//! bytes and ask this crate what to do with them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clients;
pub mod policy;
pub mod proxy;
pub mod reply;
pub mod request;
pub mod serve;
pub mod ws;

pub use policy::{Policy, PolicyError, Validated, Warning};
pub use reply::Reply;
pub use request::{Recogniser, Reject, Verdict, POLICY_REQUEST};
