//! `flashpolicy-check`: fetches what each client would fetch, in that
//! client's order, and says whether it would connect and why.
//!
//! * [`args`] reads the command line (a usage error is UNKNOWN, exit 3).
//! * [`fetch`] is the only I/O: one connection per policy file, the policy
//!   request and nothing else, every read recorded.
//! * [`run`] walks each client's [`flashpolicy_proto::clients::Lookup`].
//! * [`report`] prints the Nagios status line, the verdicts, or JSON.

pub mod args;
pub mod fetch;
pub mod report;
pub mod run;
