//! Which policy files a client fetches, in which order, and what it
//! decides: a sans-IO walk. [`Lookup::step`] says which port to fetch
//! next; the caller fetches it and hands the reply back, until
//! [`Step::Done`] gives the [`Verdict`].

use std::fmt;

use super::{Client, ClientRule, Origin, Rejection};
use crate::policy::MetaPolicy;

/// What fetching a policy port gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The server replied and closed; each chunk is what one read returned.
    Reply(Vec<Vec<u8>>),
    /// No reply: refused, timed out, reset before any byte.
    Failed(String),
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Fetch the policy on this port of the destination host.
    Fetch {
        /// The port.
        port: u16,
        /// Whether the client takes it for the master policy.
        master: bool,
    },
    /// The client has decided.
    Done(Verdict),
}

/// What one policy file told the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This rule grants the connection.
    Granted(ClientRule),
    /// Valid, but no rule grants it.
    NoRule,
    /// The master policy's meta-policy forbids looking further.
    MetaPolicy(MetaPolicy),
    /// The client rejects the file.
    Rejected(Rejection),
    /// Nothing came back.
    Unavailable(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Granted(rule) => write!(f, "granted by {rule}"),
            Outcome::NoRule => f.write_str("no rule grants it"),
            Outcome::MetaPolicy(meta) => write!(
                f,
                "site-control permitted-cross-domain-policies=\"{meta}\" stops the lookup"
            ),
            Outcome::Rejected(r) => write!(f, "rejected: {r}"),
            Outcome::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

/// One policy file the client consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consulted {
    /// Its port.
    pub port: u16,
    /// Taken for the master policy.
    pub master: bool,
    /// What it told the client.
    pub outcome: Outcome,
    /// The client's read stopped before the server's last byte.
    pub cut: bool,
}

/// A client's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The client.
    pub client: Client,
    /// Whether it connects.
    pub allowed: bool,
    /// Why, when no single file decided (e.g. "connects over IPv4 only").
    pub note: Option<&'static str>,
    /// The files consulted, in order; the last one decided.
    pub consulted: Vec<Consulted>,
}

/// A client's walk through the policy files of one destination.
#[derive(Debug)]
pub struct Lookup {
    client: Client,
    origin: Origin,
    port: u16,
    queue: Vec<(u16, bool)>,
    next: usize,
    consulted: Vec<Consulted>,
    done: Option<Verdict>,
}

impl Lookup {
    /// A SWF from `origin` connects to `port` on a host (`ipv6`: the host is
    /// an IPv6 address); the master policy is on `master_port` (843 for
    /// real clients); `policy_ports` are the ports
    /// `Security.loadPolicyFile("xmlsocket://host:P")` names.
    pub fn new(
        client: Client,
        origin: Origin,
        ipv6: bool,
        port: u16,
        master_port: u16,
        policy_ports: &[u16],
    ) -> Lookup {
        let mut lookup = Lookup {
            client,
            origin,
            port,
            queue: Vec::new(),
            next: 0,
            consulted: Vec::new(),
            done: None,
        };
        match client {
            // mono's `SocketPolicyClient` opens an IPv4 (`InterNetwork`)
            // socket; Lightspark refuses IPv6 hosts (issue 10's reading).
            Client::Unity | Client::Lightspark if ipv6 => {
                lookup.finish(false, Some("this client connects over IPv4 only"));
            }
            // `CrossDomainPolicyManager` fetches one policy per IP: the one
            // `Security.PrefetchSocketPolicy` names, else port 843's.
            Client::Unity => {
                let port = policy_ports.first().copied().unwrap_or(master_port);
                lookup.queue.push((port, port == master_port));
            }
            // Flash Player and Lightspark: the master first, then (as the
            // meta-policy allows) the loadPolicyFile ports, then the
            // destination port.
            Client::Flash | Client::Lightspark => {
                lookup.queue.push((master_port, true));
                for &p in policy_ports.iter().chain([&port]) {
                    if !lookup.queue.iter().any(|&(q, _)| q == p) {
                        lookup.queue.push((p, false));
                    }
                }
            }
        }
        lookup
    }

    fn finish(&mut self, allowed: bool, note: Option<&'static str>) {
        self.done = Some(Verdict {
            client: self.client,
            allowed,
            note,
            consulted: std::mem::take(&mut self.consulted),
        });
    }

    /// The next step: call with `None` first, then with what fetching the
    /// port of the last [`Step::Fetch`] gave.
    pub fn step(&mut self, fetched: Option<Fetched>) -> Step {
        if let (Some(fetched), None) = (fetched, &self.done) {
            if let Some(&(port, master)) = self.queue.get(self.next) {
                self.next += 1;
                self.consult(port, master, fetched);
            }
        }
        if let Some(verdict) = &self.done {
            return Step::Done(verdict.clone());
        }
        match self.queue.get(self.next) {
            Some(&(port, master)) => Step::Fetch { port, master },
            None => {
                self.finish(false, None);
                self.step(None)
            }
        }
    }

    fn consult(&mut self, port: u16, master: bool, fetched: Fetched) {
        let client = self.client;
        let (outcome, cut) = match fetched {
            Fetched::Failed(why) => (Outcome::Unavailable(why), false),
            Fetched::Reply(chunks) => {
                let pieces: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
                let read = client.read(&pieces);
                let outcome = match client.parse(&read.document, port, master) {
                    Err(rejection) => Outcome::Rejected(rejection),
                    Ok(policy) => {
                        let meta = policy.site_control.unwrap_or(MetaPolicy::All);
                        match client.grants(&policy, &self.origin, self.port) {
                            _ if master && meta == MetaPolicy::None => Outcome::MetaPolicy(meta),
                            Some(i) => Outcome::Granted(policy.rules[i].clone()),
                            None if master && meta == MetaPolicy::MasterOnly => {
                                Outcome::MetaPolicy(meta)
                            }
                            None => Outcome::NoRule,
                        }
                    }
                };
                (outcome, read.cut)
            }
        };
        let decided = match (&outcome, client) {
            (Outcome::Granted(_), _) => Some(true),
            (Outcome::MetaPolicy(_), _) => Some(false),
            // Unity consults one file.
            (_, Client::Unity) => Some(false),
            // Lightspark: an invalid master stops everything
            // (`searchPolicyFiles` needs `master->isValid()`); a missing one
            // counts as `<cross-domain-policy/>` (`retrievePolicyFile`).
            (Outcome::Rejected(_), Client::Lightspark) if master => Some(false),
            _ => None,
        };
        self.consulted.push(Consulted {
            port,
            master,
            outcome,
            cut,
        });
        if let Some(allowed) = decided {
            self.finish(allowed, None);
        }
    }
}
