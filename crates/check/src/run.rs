//! Walks each client's lookup, fetching as it asks.

use std::net::SocketAddr;
use std::time::Duration;

use flashpolicy_proto::clients::{Client, Lookup, Step, Verdict};

use crate::args::Check;
use crate::fetch::{fetch, Defect, Record};

/// One client's answer.
#[derive(Debug, Clone)]
pub struct ClientResult {
    /// The decision and the files consulted.
    pub verdict: Verdict,
    /// The fetches, one per file consulted, in the same order.
    pub fetches: Vec<Record>,
}

impl ClientResult {
    /// The time all its fetches took.
    pub fn elapsed(&self) -> Duration {
        self.fetches.iter().map(|f| f.elapsed).sum()
    }

    /// Every defect of every fetch.
    pub fn defects(&self) -> impl Iterator<Item = Defect> + '_ {
        self.fetches.iter().flat_map(|f| f.defects.iter().copied())
    }
}

/// Runs `client`'s lookup against the destination of `check`.
pub fn run_client(check: &Check, client: Client) -> ClientResult {
    let mut lookup = Lookup::new(
        client,
        check.origin.clone(),
        check.addr.is_ipv6(),
        check.addr.port(),
        check.master_port,
        &check.policy_ports,
    );
    let mut fetches: Vec<Record> = Vec::new();
    let mut last = None;
    loop {
        match lookup.step(last.take()) {
            Step::Fetch { port, .. } => {
                let record = fetch(
                    SocketAddr::new(check.addr.ip(), port),
                    check.timeout,
                    check.early_wait,
                );
                last = Some(record.fetched.clone());
                fetches.push(record);
            }
            Step::Done(verdict) => {
                for (record, consulted) in fetches.iter_mut().zip(&verdict.consulted) {
                    if consulted.cut {
                        record.defects.push(Defect::Cut);
                    }
                }
                return ClientResult { verdict, fetches };
            }
        }
    }
}

/// Runs every client of `check`, one after the other.
pub fn run(check: &Check) -> Vec<ClientResult> {
    check
        .clients
        .iter()
        .map(|&client| run_client(check, client))
        .collect()
}
