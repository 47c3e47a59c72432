//! Property tests of the client models (the Flash model agrees with the
//! validator; Unity and Lightspark never grant more than their code does)
//! and the lookup order of each client.

use flashpolicy_proto::clients::{Client, Fetched, Lookup, Origin, Outcome, Step, Verdict};
use flashpolicy_proto::policy::{self, AllowAccessFrom, DomainPattern, Policy, PortSet};
use proptest::prelude::*;

fn domain() -> impl Strategy<Value = DomainPattern> {
    prop_oneof![
        Just("*"),
        Just("example.com"),
        Just("*.example.com"),
        Just("game.example.com"),
        Just("192.0.2.7"),
    ]
    .prop_map(|t| t.parse().expect("valid"))
}

fn ports() -> impl Strategy<Value = PortSet> {
    prop_oneof![
        Just("*"),
        Just("843"),
        Just("80,443"),
        Just("8000-8100"),
        Just("443,9000-9001"),
        Just("1023-1025"),
    ]
    .prop_map(|t| t.parse().expect("valid"))
}

fn a_policy() -> impl Strategy<Value = Policy> {
    proptest::collection::vec(
        (domain(), ports(), proptest::option::of(any::<bool>())).prop_map(
            |(domain, to_ports, secure)| AllowAccessFrom {
                domain,
                to_ports,
                secure,
            },
        ),
        0..5,
    )
    .prop_map(|allow| Policy {
        site_control: None,
        allow,
    })
}

fn origin() -> impl Strategy<Value = Origin> {
    (
        any::<bool>(),
        prop_oneof![
            Just("example.com"),
            Just("game.example.com"),
            Just("other.org"),
            Just("192.0.2.7")
        ],
    )
        .prop_map(|(https, host)| Origin {
            https,
            host: host.to_string(),
        })
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(80u16),
        Just(443),
        Just(843),
        Just(1023),
        Just(1024),
        Just(1025),
        Just(8000),
        Just(8050),
        Just(8100),
        Just(9000),
        Just(9001),
        any::<u16>()
    ]
}

fn policy_port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(843u16), Just(1024), Just(1025), Just(8843)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Flash Player accepts exactly what the validator accepts, with the
    /// same rules.
    #[test]
    fn flash_agrees_with_the_validator(
        p in a_policy(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let mut doc = p.render().into_bytes();
        for (at, byte) in edits {
            let i = at.index(doc.len());
            doc[i] = byte;
        }
        let model = Client::Flash.parse(&doc, 843, true);
        let validator = policy::validate(&doc);
        prop_assert_eq!(model.is_ok(), validator.is_ok());
        if let (Ok(model), Ok(validated)) = (model, validator) {
            let rules: Vec<_> = model.rules.into_iter().map(|r| r.rule).collect();
            prop_assert_eq!(rules, validated.policy.allow);
        }
    }

    /// Unity grants only through a `domain="*"` rule whose ports contain
    /// the port, never below 1024 from a policy port above 1024.
    #[test]
    fn unity_is_never_more_permissive_than_its_code(
        p in a_policy(), o in origin(), port in port(), served in policy_port(),
    ) {
        let doc = p.render();
        let model = Client::Unity.parse(doc.as_bytes(), served, served == 843).expect("valid");
        if Client::Unity.grants(&model, &o, port).is_some() {
            prop_assert!(!(served > 1024 && port < 1024));
            prop_assert!(p.allow.iter().any(|r| r.domain.is_any() && r.to_ports.contains(port)));
            // The exclusive end: a range's last port comes only from elsewhere.
            let exclusive = |r: &AllowAccessFrom| match r.to_ports.ranges() {
                None => true,
                Some(rs) => rs
                    .iter()
                    .any(|x| x.first() == port || (x.first() <= port && port < x.last())),
            };
            let found = p.allow.iter().any(|r| r.domain.is_any() && exclusive(r));
            prop_assert!(found);
        }
    }

    /// Lightspark grants only a port that is `*` or the first port of an
    /// item of a rule whose domain matches.
    #[test]
    fn lightspark_is_never_more_permissive_than_its_code(
        p in a_policy(), o in origin(), port in port(), served in policy_port(),
    ) {
        let doc = p.render();
        let model = Client::Lightspark.parse(doc.as_bytes(), served, served == 843).expect("valid");
        if Client::Lightspark.grants(&model, &o, port).is_some() {
            prop_assert!(port != 0);
            let first_port = |r: &AllowAccessFrom| match r.to_ports.ranges() {
                None => true,
                Some(rs) => rs.iter().any(|x| x.first() == port),
            };
            let found = p.allow.iter().any(|r| {
                r.domain.matches(&o.host) && (r.secure != Some(true) || o.https) && first_port(r)
            });
            prop_assert!(found);
        }
    }
}

fn reply(document: &str) -> Fetched {
    let mut bytes = document.as_bytes().to_vec();
    bytes.push(0);
    Fetched::Reply(vec![bytes])
}

/// Runs a lookup with `serve(port)` answering each fetch; returns the
/// ports fetched and the verdict.
fn run(mut lookup: Lookup, serve: impl Fn(u16) -> Fetched) -> (Vec<u16>, Verdict) {
    let mut fetched = Vec::new();
    let mut last = None;
    loop {
        match lookup.step(last.take()) {
            Step::Fetch { port, .. } => {
                fetched.push(port);
                last = Some(serve(port));
            }
            Step::Done(verdict) => return (fetched, verdict),
        }
    }
}

const ALL_9339: &str =
    "<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"9339\"/></cross-domain-policy>";

fn from() -> Origin {
    "https://game.example.com".parse().expect("origin")
}

#[test]
fn flash_falls_back_to_the_destination_port() {
    // Adobe, "Setting up a socket policy file server": master on 843 first,
    // then the destination port.
    let lookup = Lookup::new(Client::Flash, from(), false, 9339, 843, &[]);
    let (ports, verdict) = run(lookup, |p| match p {
        843 => Fetched::Failed("timed out".into()),
        _ => reply(ALL_9339),
    });
    assert_eq!(ports, [843, 9339]);
    assert!(verdict.allowed);
    assert!(matches!(verdict.consulted[1].outcome, Outcome::Granted(_)));
}

#[test]
fn master_only_stops_flash_and_lightspark() {
    let master =
        "<cross-domain-policy><site-control permitted-cross-domain-policies=\"master-only\"/>\
                  <allow-access-from domain=\"*\" to-ports=\"843\"/></cross-domain-policy>";
    for client in [Client::Flash, Client::Lightspark] {
        let lookup = Lookup::new(client, from(), false, 9339, 843, &[]);
        let (ports, verdict) = run(lookup, |p| match p {
            843 => reply(master),
            _ => reply(ALL_9339),
        });
        assert_eq!(ports, [843], "{client}");
        assert!(!verdict.allowed, "{client}");
    }
}

#[test]
fn policy_ports_come_before_the_destination() {
    let lookup = Lookup::new(Client::Flash, from(), false, 9339, 843, &[8000, 9339]);
    let (ports, verdict) = run(lookup, |_| Fetched::Failed("refused".into()));
    assert_eq!(ports, [843, 8000, 9339]);
    assert!(!verdict.allowed);
}

#[test]
fn unity_consults_one_file_over_ipv4() {
    // CrossDomainPolicyManager: one policy per IP, from 843 (or the
    // prefetch port); no fallback.
    let lookup = Lookup::new(Client::Unity, from(), false, 9339, 843, &[]);
    let (ports, verdict) = run(lookup, |p| match p {
        843 => Fetched::Failed("refused".into()),
        _ => reply(ALL_9339),
    });
    assert_eq!(ports, [843]);
    assert!(!verdict.allowed);
    let lookup = Lookup::new(Client::Unity, from(), false, 9339, 843, &[9339]);
    assert!(run(lookup, |_| reply(ALL_9339)).1.allowed);
    let lookup = Lookup::new(Client::Unity, from(), true, 9339, 843, &[]);
    let (ports, verdict) = run(lookup, |_| reply(ALL_9339));
    assert!(ports.is_empty() && !verdict.allowed && verdict.note.is_some());
}

#[test]
fn lightspark_missing_master_is_empty_but_invalid_master_stops() {
    // security.cpp: a master that cannot be reached counts as
    // `<cross-domain-policy/>`; an invalid one stops the search.
    let lookup = Lookup::new(Client::Lightspark, from(), false, 9339, 843, &[]);
    let (ports, verdict) = run(lookup, |p| match p {
        843 => Fetched::Failed("refused".into()),
        _ => reply(ALL_9339),
    });
    assert_eq!(ports, [843, 9339]);
    assert!(verdict.allowed);
    let lookup = Lookup::new(Client::Lightspark, from(), false, 9339, 843, &[]);
    let (ports, verdict) = run(lookup, |p| match p {
        843 => reply("<cross-domain-policy><oops"),
        _ => reply(ALL_9339),
    });
    assert_eq!(ports, [843]);
    assert!(!verdict.allowed);
}
