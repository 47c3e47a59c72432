//! The serving core: every decision about a policy connection, with no I/O.
//!
//! * [`session`]: one connection from accept to close: events in (bytes,
//!   end-of-stream, sent, error, deadline), actions out (recv, send, close
//!   with how it [`End`]ed).
//! * [`context`]: what session events are served with: the current reply
//!   and the PROXY settings.
//! * [`admission`]: when a worker takes connections: start, park or shed;
//!   pause at the limit and the one resume rule; what an `accept` error
//!   means.
//! * [`errno`]: how kernel error numbers are classified.
//! * [`deadline`]: the `--timeout` queue, bounded by the open connections.
//! * [`tally`]: how a worker's connections ended.
//! * [`gateway`]: `--gateway`, policy or relay on a game's own port.
//! * [`rate_limit`]: at most one warning of a kind per interval.
//! * [`address_limit`]: `--max-per-ip`, the open connections of each client
//!   address, shared by every worker without a lock.
//!
//! The engines in `flashpolicy-server` turn readiness events (epoll) or
//! completions (io_uring) into calls of these types and move the bytes they
//! answer with; a behaviour change here is one edit, not one per engine.

pub mod address_limit;
pub mod admission;
pub mod context;
pub mod deadline;
pub mod errno;
pub mod gateway;
pub mod rate_limit;
pub mod session;
pub mod tally;

pub use address_limit::{AddressKey, AddressLimit, Hold};
pub use admission::{AcceptErrorPlan, Admission, Admit, Admitted, Freed, OnAcceptError};
pub use context::Serving;
pub use deadline::{after_accept, deadline_after, Deadline, DeadlineQueue};
pub use errno::{classify_accept_errno, classify_io_errno, AcceptErrorKind};
pub use gateway::{Already, Sniff, Step, DEFAULT_GATEWAY_WAIT};
pub use rate_limit::{RateLimit, WARN_INTERVAL};
pub use session::{Action, End, IoFailure, Session, MAX_RETRIES};
pub use tally::Tally;
