//! How each client that still fetches socket policies reads one and decides
//! a connection, with no I/O: [`flash`] (Adobe Flash Player), [`unity`]
//! (Unity Web Player: mono's `SocketPolicyClient` and Unity's policy
//! parser), [`lightspark`]. Every rule's doc comment names its source.
//!
//! * [`Client::read`]: what the client keeps of a reply, given the pieces
//!   in which it arrived (each client reads differently).
//! * [`Client::parse`]: whether it accepts the document, and the rules it
//!   takes from it ([`ClientPolicy`]), or why it rejects the file.
//! * [`Client::grants`]: whether a rule of that policy lets a SWF from an
//!   [`Origin`] connect to a port, and which one.
//! * [`Lookup`]: which policy files the client fetches, in which order,
//!   and the final [`Verdict`].

pub mod flash;
pub mod lightspark;
mod lookup;
mod origin;
mod structure;
pub mod unity;

use std::fmt;

pub use lookup::{Consulted, Fetched, Lookup, Outcome, Step, Verdict};
pub use origin::{Origin, OriginError};

use crate::policy::{self, AllowAccessFrom, MetaPolicy, PolicyError};

/// The port of the master socket policy.
pub const MASTER_PORT: u16 = 843;

/// A client that fetches socket policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// Adobe Flash Player.
    Flash,
    /// Unity Web Player (mono's socket policy client).
    Unity,
    /// Lightspark, the open-source Flash player.
    Lightspark,
}

impl Client {
    /// Every client, in the order verdicts are printed.
    pub const ALL: [Client; 3] = [Client::Flash, Client::Unity, Client::Lightspark];

    /// Its short name: `flash`, `unity`, `lightspark`.
    pub const fn name(self) -> &'static str {
        match self {
            Client::Flash => "flash",
            Client::Unity => "unity",
            Client::Lightspark => "lightspark",
        }
    }

    /// What the client keeps of a reply that arrived in `chunks` (each
    /// chunk what one read returned; the server closed after the last).
    pub fn read(self, chunks: &[&[u8]]) -> Read {
        match self {
            Client::Flash => flash::read(chunks),
            Client::Unity => unity::read(chunks),
            Client::Lightspark => lightspark::read(chunks),
        }
    }

    /// Parses `document` (what [`Client::read`] kept, terminator removed)
    /// served from `port`; `master` tells whether it was fetched as the
    /// master policy.
    pub fn parse(
        self,
        document: &[u8],
        port: u16,
        master: bool,
    ) -> Result<ClientPolicy, Rejection> {
        match self {
            Client::Flash => flash::parse(document, port, master),
            Client::Unity => unity::parse(document, port, master),
            Client::Lightspark => lightspark::parse(document, port, master),
        }
    }

    /// The first rule of `policy` that lets a SWF from `origin` connect to
    /// `port` (its index in `policy.rules`), as this client decides it.
    pub fn grants(self, policy: &ClientPolicy, origin: &Origin, port: u16) -> Option<usize> {
        policy.rules.iter().position(|rule| match self {
            Client::Flash => flash::grants(rule, policy.port, origin, port),
            Client::Unity => unity::grants(rule, policy.port, port),
            Client::Lightspark => lightspark::grants(rule, origin, port),
        })
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a client kept of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The document, its terminator removed as the client removes it.
    pub document: Vec<u8>,
    /// The client stopped reading before the server's last byte (one read
    /// too small, or a read that came back short).
    pub cut: bool,
}

/// A rule as a client took it, with where it stands in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRule {
    /// 1-based line of its `<allow-access-from>`.
    pub line: u32,
    /// The rule (`to_ports` as written: each client reads ranges its way).
    pub rule: AllowAccessFrom,
}

impl fmt::Display for ClientRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: <allow-access-from domain=\"{}\" to-ports=\"{}\"",
            self.line, self.rule.domain, self.rule.to_ports
        )?;
        if let Some(secure) = self.rule.secure {
            write!(f, " secure=\"{secure}\"")?;
        }
        f.write_str("/>")
    }
}

/// A policy file as a client took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPolicy {
    /// The port it was served from.
    pub port: u16,
    /// The meta-policy it declares, if the client reads one from this file.
    pub site_control: Option<MetaPolicy>,
    /// Its rules, in document order.
    pub rules: Vec<ClientRule>,
}

/// Why a client rejects a whole policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// It breaks a rule every client enforces (the validator's error).
    Invalid(PolicyError),
    /// Valid, but this client refuses it.
    Refused {
        /// 1-based line of what it refuses.
        line: u32,
        /// What and why, with the source.
        reason: &'static str,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Invalid(e) => write!(f, "invalid policy: {e}"),
            Rejection::Refused { line, reason } => write!(f, "line {line}: {reason}"),
        }
    }
}

/// The validator's reading, shared by the three models (none of them
/// accepts what the validator refuses: the Flash model is the validator,
/// the others only refuse more).
fn validated(document: &[u8], port: u16) -> Result<(policy::Validated, ClientPolicy), Rejection> {
    let validated = policy::validate(document).map_err(Rejection::Invalid)?;
    let rules = validated
        .policy
        .allow
        .iter()
        .zip(&validated.allow_at)
        .map(|(rule, &(line, _))| ClientRule {
            line,
            rule: rule.clone(),
        })
        .collect();
    let taken = ClientPolicy {
        port,
        site_control: validated.policy.site_control,
        rules,
    };
    Ok((validated, taken))
}

/// The document before the first NUL, and whether one was found.
fn before_nul(bytes: &[u8]) -> (&[u8], bool) {
    match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], true),
        None => (bytes, false),
    }
}

#[cfg(test)]
mod tests;
