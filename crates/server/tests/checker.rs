//! `flashpolicy-check`'s walk (its library, the code the binary runs)
//! against the real `flashpolicyd`: a generated and a file policy on a
//! stand-in for port 843 (`--master-port`), and a destination-port policy.
//! The server's engine does not matter to the checker: the default is used.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use flashpolicy_check::args::Check;
use flashpolicy_check::report::{overall, Status};
use flashpolicy_check::run::{run, ClientResult};
use flashpolicy_proto::clients::{Client, Outcome};

fn check(dest: SocketAddr, master_port: u16, policy_ports: &[u16], from: &str) -> Check {
    Check {
        host: dest.ip().to_string(),
        addr: dest,
        origin: from.parse().expect("origin"),
        clients: Client::ALL.to_vec(),
        master_port,
        policy_ports: policy_ports.to_vec(),
        timeout: Duration::from_secs(10),
        early_wait: Duration::from_millis(50),
        warning_ms: None,
        critical_ms: None,
        json: false,
    }
}

fn of(results: &[ClientResult], client: Client) -> &ClientResult {
    results
        .iter()
        .find(|r| r.verdict.client == client)
        .expect("client")
}

fn granted_line(r: &ClientResult) -> Option<u32> {
    match &r.verdict.consulted.last()?.outcome {
        Outcome::Granted(rule) => Some(rule.line),
        _ => None,
    }
}

#[test]
fn a_generated_policy_on_the_master_stand_in() {
    let server = Server::start("auto", &["--allow", "*:*"]);
    let dest = SocketAddr::from(([127, 0, 0, 1], closed_port().port()));
    let c = check(dest, server.addr().port(), &[], "https://game.example.com");
    let results = run(&c);
    for r in &results {
        assert!(r.verdict.allowed, "{r:?}");
        assert_eq!(r.fetches.len(), 1, "{r:?}");
        assert!(r.fetches[0].defects.is_empty(), "{r:?}");
        assert_eq!(granted_line(r), Some(1));
    }
    assert_eq!(overall(&c, &results), Status::Ok);
}

#[test]
fn a_file_policy_each_client_reads_its_way() {
    let file = TempFile::new(
        "check-file.xml",
        b"<?xml version=\"1.0\"?>\n<cross-domain-policy>\n\
          <site-control permitted-cross-domain-policies=\"master-only\"/>\n\
          <allow-access-from domain=\"*.example.com\" to-ports=\"9000-9100\"/>\n\
          </cross-domain-policy>\n",
    );
    let server = Server::start("auto", &["--policy", file.path()]);
    let dest = SocketAddr::from(([127, 0, 0, 1], 9050));
    let c = check(dest, server.addr().port(), &[], "game.example.com");
    let results = run(&c);
    // Flash Player: inclusive range, the master grants it.
    assert_eq!(granted_line(of(&results, Client::Flash)), Some(4));
    // Unity: no domain="*" rule.
    assert!(!of(&results, Client::Unity).verdict.allowed);
    // Lightspark: the range grants 9000 alone; master-only stops there.
    let lightspark = of(&results, Client::Lightspark);
    assert!(!lightspark.verdict.allowed);
    assert_eq!(lightspark.fetches.len(), 1);
    assert_eq!(overall(&c, &results), Status::Critical);
    let at_9000 = check(
        SocketAddr::from(([127, 0, 0, 1], 9000)),
        server.addr().port(),
        &[],
        "game.example.com",
    );
    assert!(of(&run(&at_9000), Client::Lightspark).verdict.allowed);
}

#[test]
fn a_destination_port_policy() {
    let server = Server::start("auto", &["--allow", "*:*"]);
    let dest = server.addr();
    // Nothing on the master port: Flash Player and Lightspark go on to the
    // destination port; Unity consults the master only...
    let c = check(dest, closed_port().port(), &[], "game.example.com");
    let results = run(&c);
    for client in [Client::Flash, Client::Lightspark] {
        let r = of(&results, client);
        assert!(r.verdict.allowed, "{r:?}");
        assert_eq!(r.fetches.len(), 2);
        assert_eq!(r.fetches[1].port, dest.port());
    }
    assert!(!of(&results, Client::Unity).verdict.allowed);
    // ... unless Security.PrefetchSocketPolicy names the port.
    let c = check(
        dest,
        closed_port().port(),
        &[dest.port()],
        "game.example.com",
    );
    assert!(of(&run(&c), Client::Unity).verdict.allowed);
}
