//! Local source addresses (`--source`): a range such as
//! `127.0.0.2-127.0.0.254`, a comma list, or both.
//!
//! One local address has about 28,000 ephemeral ports (the default
//! `ip_local_port_range`), and every connection the client closes first
//! keeps its port in TIME_WAIT for 60 s. Spreading connections over many
//! source addresses, each bound with `IP_BIND_ADDRESS_NO_PORT` so the kernel
//! picks the port at connect time (per destination 4-tuple), lifts that cap.

use std::net::{IpAddr, Ipv4Addr};

/// The most addresses one `--source` may name.
pub const MAX_SOURCES: usize = 65_536;

/// Parses `--source`: comma-separated items, each an address or an IPv4
/// range `FIRST-LAST` (inclusive).
pub fn parse_sources(spec: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once('-') {
            Some((a, b)) => {
                let a: Ipv4Addr = a.trim().parse().map_err(|_| {
                    format!("{item:?}: {a:?} is not an IPv4 address (ranges are IPv4 only)")
                })?;
                let b: Ipv4Addr = b
                    .trim()
                    .parse()
                    .map_err(|_| format!("{item:?}: {b:?} is not an IPv4 address"))?;
                let (lo, hi) = (u32::from(a), u32::from(b));
                if lo > hi {
                    return Err(format!("{item:?}: the range runs backwards"));
                }
                if (hi - lo) as usize >= MAX_SOURCES - out.len().min(MAX_SOURCES) {
                    return Err(format!("{item:?}: more than {MAX_SOURCES} addresses"));
                }
                out.extend((lo..=hi).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
            None => {
                let ip: IpAddr = item
                    .parse()
                    .map_err(|_| format!("{item:?} is not an IP address"))?;
                out.push(ip);
            }
        }
        if out.len() > MAX_SOURCES {
            return Err(format!("--source names more than {MAX_SOURCES} addresses"));
        }
    }
    if out.is_empty() {
        return Err(format!("{spec:?}: no source address given"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lists() {
        let v = parse_sources("127.0.0.2-127.0.0.254").expect("valid");
        assert_eq!(v.len(), 253);
        assert_eq!(v[0], IpAddr::from([127, 0, 0, 2]));
        assert_eq!(v[252], IpAddr::from([127, 0, 0, 254]));
        let v = parse_sources("127.0.0.1, 127.0.0.5-127.0.0.6,::1").expect("valid");
        assert_eq!(
            v,
            vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([127, 0, 0, 5]),
                IpAddr::from([127, 0, 0, 6]),
                "::1".parse::<IpAddr>().expect("ip"),
            ]
        );
        let v = parse_sources("127.0.0.255-127.0.1.1").expect("valid");
        assert_eq!(v.len(), 3);
        assert!(parse_sources("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_sources("localhost").is_err());
        assert!(parse_sources("").is_err());
        assert!(parse_sources("10.0.0.0-10.255.255.255").is_err());
    }
}
