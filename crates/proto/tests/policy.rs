//! Property tests of the `to-ports` and `domain` parsers, `--allow` specs and
//! the render -> validate round trip; plus "never panics" on arbitrary input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flashpolicy_proto::policy::{
    self, parse_allow_spec, AllowAccessFrom, DomainPattern, MetaPolicy, Policy, PortRange, PortSet,
    MAX_POLICY_LEN,
};
use proptest::prelude::*;

fn port_range() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        (1..=u16::MAX).prop_map(|p| PortRange::single(p).expect("non-zero")),
        (1..=u16::MAX, 1..=u16::MAX)
            .prop_map(|(a, b)| { PortRange::new(a.min(b), a.max(b)).expect("ordered, non-zero") }),
    ]
}

fn port_set() -> impl Strategy<Value = PortSet> {
    prop_oneof![
        1 => Just(PortSet::any()),
        4 => proptest::collection::vec(port_range(), 1..8)
            .prop_map(|ranges| PortSet::from_ranges(ranges).expect("non-empty")),
    ]
}

/// Host names by the documented rules: labels of letters, digits, `-`, `_`
/// (no `-` at either edge), the last one with a letter.
fn host_name() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec("[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,8}[a-zA-Z0-9_])?", 0..4),
        "[a-zA-Z][a-zA-Z0-9]{0,5}",
    )
        .prop_map(|(mut labels, last)| {
            labels.push(last);
            labels.join(".")
        })
}

/// Valid `domain` values as text.
fn domain_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        host_name(),
        host_name().prop_map(|h| format!("*.{h}")),
        any::<Ipv4Addr>().prop_map(|a| a.to_string()),
        any::<Ipv6Addr>().prop_map(|a| a.to_string()),
        any::<Ipv6Addr>().prop_map(|a| format!("[{a}]")),
    ]
}

fn domain() -> impl Strategy<Value = DomainPattern> {
    domain_text().prop_map(|t| t.parse().expect("valid by construction"))
}

fn meta_policy() -> impl Strategy<Value = MetaPolicy> {
    prop_oneof![
        Just(MetaPolicy::All),
        Just(MetaPolicy::MasterOnly),
        Just(MetaPolicy::None)
    ]
}

fn rule() -> impl Strategy<Value = AllowAccessFrom> {
    (domain(), port_set(), proptest::option::of(any::<bool>())).prop_map(
        |(domain, to_ports, secure)| AllowAccessFrom {
            domain,
            to_ports,
            secure,
        },
    )
}

fn a_policy() -> impl Strategy<Value = Policy> {
    (
        proptest::option::of(meta_policy()),
        proptest::collection::vec(rule(), 0..10),
    )
        .prop_map(|(site_control, allow)| Policy {
            site_control,
            allow,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn ports_display_then_parse_is_identity(set in port_set()) {
        let text = set.to_string();
        prop_assert_eq!(text.parse::<PortSet>(), Ok(set.clone()));
        prop_assert!(!text.contains(' '));
    }

    #[test]
    fn ports_contains_agrees_with_the_ranges(set in port_set(), port in any::<u16>()) {
        let expected = match set.ranges() {
            None => port != 0,
            Some(ranges) => ranges.iter().any(|r| r.first() <= port && port <= r.last()),
        };
        prop_assert_eq!(set.contains(port), expected);
    }

    #[test]
    fn ports_with_blanks_parse_like_without(
        set in port_set(),
        blank in "[ \t]{0,2}",
    ) {
        // Put blanks around every item and every `-`.
        let text = set
            .to_string()
            .split(',')
            .map(|item| format!("{blank}{}{blank}", item.replace('-', &format!("{blank}-{blank}"))))
            .collect::<Vec<_>>()
            .join(",");
        prop_assert_eq!(text.parse::<PortSet>(), Ok(set));
    }

    #[test]
    fn ports_parser_never_panics_and_is_canonical(text in "\\PC{0,40}|[0-9*, \t-]{0,40}") {
        if let Ok(set) = text.parse::<PortSet>() {
            let shown = set.to_string();
            prop_assert_eq!(shown.parse::<PortSet>(), Ok(set));
        }
    }

    #[test]
    fn domain_display_then_parse_is_identity(text in domain_text()) {
        let pattern: DomainPattern = text.parse().expect("valid by construction");
        let shown = pattern.to_string();
        prop_assert_eq!(shown.parse::<DomainPattern>(), Ok(pattern.clone()));
        if pattern.as_ip().is_none() {
            prop_assert_eq!(shown, text);
        }
    }

    #[test]
    fn domain_matches_what_it_names(host in host_name(), sub in host_name()) {
        let exact: DomainPattern = host.parse().expect("valid");
        prop_assert!(exact.matches(&host));
        prop_assert!(exact.matches(&host.to_ascii_uppercase()));
        let wildcard: DomainPattern = format!("*.{host}").parse().expect("valid");
        prop_assert!(wildcard.matches(&host));
        let below = format!("{sub}.{host}");
        prop_assert!(wildcard.matches(&below));
        prop_assert!(!exact.matches(&below));
        let glued = format!("{sub}{host}");
        prop_assert!(!wildcard.matches(&glued));
        prop_assert!(DomainPattern::any().matches(&below));
    }

    #[test]
    fn ip_domains_match_only_their_address(a in any::<IpAddr>(), b in any::<IpAddr>()) {
        let pattern = DomainPattern::ip(a);
        prop_assert!(pattern.matches(&a.to_string()));
        prop_assert_eq!(pattern.matches(&b.to_string()), a == b);
    }

    #[test]
    fn wildcards_inside_addresses_are_refused(a in any::<Ipv4Addr>(), keep in 1..4usize) {
        let octets: Vec<String> = a.octets().iter().take(keep).map(u8::to_string).collect();
        let text = format!("{}.*", octets.join("."));
        prop_assert!(text.parse::<DomainPattern>().is_err(), "{}", text);
    }

    #[test]
    fn domain_parser_never_panics_and_is_canonical(
        text in "\\PC{0,40}|[a-z0-9.*:\\[\\]-]{0,40}"
    ) {
        if let Ok(pattern) = text.parse::<DomainPattern>() {
            let shown = pattern.to_string();
            prop_assert_eq!(shown.parse::<DomainPattern>(), Ok(pattern));
        }
    }

    #[test]
    fn allow_specs_round_trip(domain in domain(), ports in port_set()) {
        let spec = match domain.as_ip() {
            Some(IpAddr::V6(a)) => format!("[{a}]:{ports}"),
            _ => format!("{domain}:{ports}"),
        };
        prop_assert_eq!(parse_allow_spec(&spec), Ok(AllowAccessFrom::new(domain, ports)));
    }

    #[test]
    fn allow_spec_parser_never_panics(spec in "\\PC{0,40}|[a-z0-9.*:\\[\\],-]{0,40}") {
        let _ = parse_allow_spec(&spec);
    }

    #[test]
    fn render_then_validate_gives_back_the_policy(p in a_policy()) {
        let text = p.render();
        prop_assert!(text.len() <= MAX_POLICY_LEN);
        let validated = policy::validate(text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&validated.policy, &p);
        // Rendering again gives the same bytes.
        prop_assert_eq!(validated.policy.render(), text);
    }

    #[test]
    fn validate_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let _ = policy::validate(&bytes);
    }

    #[test]
    fn validate_never_panics_on_damaged_policies(
        p in a_policy(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = p.render().into_bytes();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Err(e) = policy::validate(&bytes) {
            prop_assert!(e.line >= 1 && e.column >= 1);
            let line_count = bytes.split(|&b| b == b'\n').count();
            prop_assert!(e.line as usize <= line_count, "{} beyond {} lines", e, line_count);
        }
    }
}
