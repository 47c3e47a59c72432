//! The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`), receiver side,
//! with no I/O.
//!
//! A balancer in front of `flashpolicyd` (HAProxy, a cloud NLB) prepends a
//! header carrying the client's real address to every connection.
//!
//! * [`header`]: reads a v1 or v2 header one slice at a time, with a fixed
//!   bound on what it buffers, and says where the request starts.
//! * [`cidr`]: the peers allowed to send one (`--proxy-from`).
//! * [`encode`](mod@encode): the sender side, a header naming a connection's
//!   endpoints (the gateway's upstream header, the load generator's).
//!
//! The serving core ([`crate::serve::Session`]) runs the header stage before
//! the request recogniser when [`ProxySettings`] are given.

pub mod cidr;
pub mod encode;
pub mod header;

pub use cidr::{Cidr, CidrError, ProxySettings};
pub use encode::{encode, Version};
pub use header::{HeaderReader, Invalid, Step, MAX_BUFFERED, V1_MAX_LEN, V2_SIGNATURE};
