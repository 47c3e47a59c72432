//! The warnings that depend on where the policy is served (the listening
//! addresses), not on the document alone.

use std::net::SocketAddr;

use flashpolicy_proto::policy::{Advice, Policy};

use crate::config::Listen;

/// The compatibility warnings that depend on where the policy is served:
/// `<site-control>` (at `site_control_at`) served from a port other than
/// 843, which Lightspark rejects; only IPv6-only listeners, which Unity Web
/// Player cannot reach (an unspecified `[::]` is dual-stack, so it counts
/// as IPv4 too).
pub(super) fn listen_advice(
    listen: &Listen,
    site_control_at: Option<(u32, u32)>,
) -> Vec<(Option<(u32, u32)>, Advice)> {
    let Listen::Addrs(addrs) = listen else {
        return Vec::new(); // the default is [::]:843, dual-stack
    };
    let mut found = Vec::new();
    if let Some(at) = site_control_at {
        if let Some(addr) = addrs.iter().find(|a| a.port() != 843) {
            found.push((Some(at), Advice::SiteControlOffMaster { port: addr.port() }));
        }
    }
    let v6_only = |a: &SocketAddr| match a {
        SocketAddr::V6(v6) => !v6.ip().is_unspecified(),
        SocketAddr::V4(_) => false,
    };
    if !addrs.is_empty() && addrs.iter().all(v6_only) {
        let listeners = addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        found.push((None, Advice::Ipv6Only { listeners }));
    }
    found
}

/// Flash Player honours a policy served from a port of 1024 or above only
/// for ports of 1024 or above. Says which rules grant lower ports in vain.
pub(super) fn low_port_warning(listen: &Listen, policy: &Policy) -> Option<String> {
    let Listen::Addrs(addrs) = listen else {
        return None; // the default is port 843
    };
    let high = addrs.iter().find(|a| a.port() == 0 || a.port() >= 1024)?;
    let vain: Vec<String> = policy
        .allow
        .iter()
        .filter(|rule| {
            rule.to_ports
                .ranges()
                .is_some_and(|ranges| ranges.iter().any(|r| r.first() < 1024))
        })
        .map(|rule| format!("{}:{}", rule.domain, rule.to_ports))
        .collect();
    if vain.is_empty() {
        return None;
    }
    Some(format!(
        "the policy is served from {high}, a port of 1024 or above, where Flash Player ignores \
         grants of ports below 1024, so these rules grant less than they say: {}",
        vain.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::policy;
    use super::*;

    fn addrs(list: &[&str]) -> Listen {
        Listen::Addrs(list.iter().map(|a| a.parse().expect("address")).collect())
    }

    #[test]
    fn warns_when_a_high_port_serves_grants_below_1024() {
        let p = policy(&[
            "*:80,8000-9000",
            "example.com:9000",
            "*.example.org:1000-2000",
        ]);
        let w = low_port_warning(&addrs(&["127.0.0.1:8843"]), &p).expect("a warning");
        assert!(w.contains("127.0.0.1:8843"), "{w}");
        assert!(w.contains("*:80,8000-9000"), "{w}");
        assert!(w.contains("*.example.org:1000-2000"), "{w}");
        assert!(!w.contains("example.com:9000"), "{w}");
    }

    #[test]
    fn no_warning_on_843_or_for_high_ports_or_any_port() {
        let low = policy(&["*:80"]);
        assert_eq!(low_port_warning(&Listen::Default, &low), None);
        assert_eq!(low_port_warning(&addrs(&["0.0.0.0:843"]), &low), None);
        let high = policy(&["*:1024-2048", "*:*"]);
        assert_eq!(low_port_warning(&addrs(&["127.0.0.1:8843"]), &high), None);
    }

    #[test]
    fn site_control_off_843_names_the_line_and_port() {
        let at = Some((3, 5));
        let found = listen_advice(&addrs(&["127.0.0.1:9339"]), at);
        assert_eq!(
            found,
            vec![(at, Advice::SiteControlOffMaster { port: 9339 })]
        );
        let message = found[0].1.to_string();
        assert!(
            message.contains("Lightspark rejects the whole file"),
            "{message}"
        );
        assert_eq!(listen_advice(&addrs(&["0.0.0.0:843"]), at), vec![]);
        assert_eq!(listen_advice(&Listen::Default, at), vec![]);
        assert_eq!(listen_advice(&addrs(&["127.0.0.1:9339"]), None), vec![]);
    }

    #[test]
    fn only_ipv6_listeners() {
        let found = listen_advice(&addrs(&["[::1]:843", "[2001:db8::1]:843"]), None);
        assert_eq!(
            found,
            vec![(
                None,
                Advice::Ipv6Only {
                    listeners: "[::1]:843, [2001:db8::1]:843".to_string()
                }
            )]
        );
        assert!(found[0].1.to_string().contains("Unity Web Player"));
        // `[::]` is dual-stack; one IPv4 listener is enough.
        assert_eq!(listen_advice(&addrs(&["[::]:843"]), None), vec![]);
        assert_eq!(
            listen_advice(&addrs(&["[::1]:843", "127.0.0.1:843"]), None),
            vec![]
        );
    }
}
