//! Local source addresses (`--source`): a range such as
//! `127.0.0.2-127.0.0.254`, a comma list, or both.
//!
//! One local address has about 28,000 ephemeral ports (the default
//! `ip_local_port_range`), and every connection the client closes first
//! keeps its port in TIME_WAIT for 60 s. Spreading connections over many
//! source addresses, each bound with `IP_BIND_ADDRESS_NO_PORT` so the kernel
//! picks the port at connect time (per destination 4-tuple), lifts that cap.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// The most addresses one `--source` may name.
pub const MAX_SOURCES: usize = 65_536;

/// Why a `--source` list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// One end of the range `item` is not an IPv4 address.
    RangeEnd {
        /// The range as given.
        item: String,
        /// The end that did not parse.
        end: String,
        /// Whether it is the first end (the message then says that ranges
        /// are IPv4 only).
        first: bool,
    },
    /// The range `item` runs backwards.
    Backwards {
        /// The range as given.
        item: String,
    },
    /// The range `item` alone names more than [`MAX_SOURCES`] addresses
    /// (with those before it).
    RangeTooLarge {
        /// The range as given.
        item: String,
    },
    /// `item` is not an IP address.
    NotAnAddress {
        /// The item as given.
        item: String,
    },
    /// The whole list names more than [`MAX_SOURCES`] addresses.
    TooMany,
    /// The list names no address.
    Empty {
        /// The list as given.
        spec: String,
    },
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::RangeEnd {
                item,
                end,
                first: true,
            } => write!(
                f,
                "{item:?}: {end:?} is not an IPv4 address (ranges are IPv4 only)"
            ),
            SourceError::RangeEnd { item, end, .. } => {
                write!(f, "{item:?}: {end:?} is not an IPv4 address")
            }
            SourceError::Backwards { item } => write!(f, "{item:?}: the range runs backwards"),
            SourceError::RangeTooLarge { item } => {
                write!(f, "{item:?}: more than {MAX_SOURCES} addresses")
            }
            SourceError::NotAnAddress { item } => write!(f, "{item:?} is not an IP address"),
            SourceError::TooMany => write!(f, "--source names more than {MAX_SOURCES} addresses"),
            SourceError::Empty { spec } => write!(f, "{spec:?}: no source address given"),
        }
    }
}

impl std::error::Error for SourceError {}

/// Parses `--source`: comma-separated items, each an address or an IPv4
/// range `FIRST-LAST` (inclusive).
pub fn parse_sources(spec: &str) -> Result<Vec<IpAddr>, SourceError> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once('-') {
            Some((a, b)) => {
                let end = |text: &str, first: bool| {
                    text.trim()
                        .parse::<Ipv4Addr>()
                        .map_err(|_| SourceError::RangeEnd {
                            item: item.to_string(),
                            end: text.to_string(),
                            first,
                        })
                };
                let a = end(a, true)?;
                let b = end(b, false)?;
                let (lo, hi) = (u32::from(a), u32::from(b));
                if lo > hi {
                    return Err(SourceError::Backwards {
                        item: item.to_string(),
                    });
                }
                if (hi - lo) as usize >= MAX_SOURCES - out.len().min(MAX_SOURCES) {
                    return Err(SourceError::RangeTooLarge {
                        item: item.to_string(),
                    });
                }
                out.extend((lo..=hi).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
            None => {
                let ip: IpAddr = item.parse().map_err(|_| SourceError::NotAnAddress {
                    item: item.to_string(),
                })?;
                out.push(ip);
            }
        }
        if out.len() > MAX_SOURCES {
            return Err(SourceError::TooMany);
        }
    }
    if out.is_empty() {
        return Err(SourceError::Empty {
            spec: spec.to_string(),
        });
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
        assert_eq!(
            parse_sources("127.0.0.9-127.0.0.2")
                .map_err(|e| e.to_string())
                .err()
                .as_deref(),
            Some("\"127.0.0.9-127.0.0.2\": the range runs backwards")
        );
        assert_eq!(
            parse_sources("::1-::2")
                .map_err(|e| e.to_string())
                .err()
                .as_deref(),
            Some("\"::1-::2\": \"::1\" is not an IPv4 address (ranges are IPv4 only)")
        );
    }
}
