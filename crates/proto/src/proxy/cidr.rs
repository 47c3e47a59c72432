//! Address ranges (`10.0.0.0/8`, `::1/128`) and the PROXY settings built
//! from them: which peers may send a header.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 address range: an address and a prefix length.
///
/// ```
/// use flashpolicy_proto::proxy::Cidr;
/// let net: Cidr = "10.0.0.0/8".parse().expect("valid");
/// assert!(net.contains("10.1.2.3".parse().expect("valid")));
/// assert!(!net.contains("11.0.0.1".parse().expect("valid")));
/// // An IPv4-mapped IPv6 peer (a dual-stack listener) is its IPv4 address.
/// assert!(net.contains("::ffff:10.0.0.1".parse().expect("valid")));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a range does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// No `/` and a prefix length.
    MissingPrefix,
    /// The part before `/` is not an IPv4 or IPv6 address.
    Address(String),
    /// The prefix length is not a number within the family's bits.
    Prefix {
        /// What was given after `/`.
        given: String,
        /// 32 or 128.
        max: u8,
    },
    /// Bits outside the prefix are set (`10.0.0.1/8`).
    HostBits {
        /// The range it probably means.
        network: Cidr,
    },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::MissingPrefix => {
                f.write_str("expected ADDRESS/PREFIX, e.g. 10.0.0.0/8 or ::1/128")
            }
            CidrError::Address(a) => write!(f, "{a:?} is not an IPv4 or IPv6 address"),
            CidrError::Prefix { given, max } => {
                write!(f, "prefix length {given:?} is not a number from 0 to {max}")
            }
            CidrError::HostBits { network } => {
                write!(f, "bits after the prefix are set (did you mean {network}?)")
            }
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The range of `prefix` leading bits of `addr`; `None` if the prefix is
    /// longer than the family's bits.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        (prefix <= max_prefix(addr)).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in the range. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(ip).into(), 32, self.prefix) == u32::from(net).into()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(ip), 128, self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl Cidr {
    /// The range's first address.
    pub fn network(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The `i`-th address of the range, counting from its first and
    /// wrapping around at its end (a load generator cycles through it).
    pub fn nth(&self, i: u64) -> IpAddr {
        let host_bits = u32::from(max_prefix(self.addr) - self.prefix);
        let offset = if host_bits >= 64 {
            u128::from(i)
        } else {
            u128::from(i % (1u64 << host_bits))
        };
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(((u32::from(a) as u128 + offset) as u32).into()),
            IpAddr::V6(a) => IpAddr::V6(u128::from(a).wrapping_add(offset).into()),
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `bits` (the low `width` bits of `value`) with all but the leading
/// `prefix` cleared.
fn masked(value: u128, width: u8, prefix: u8) -> u128 {
    let keep = u32::from(prefix.min(width));
    let clear = u32::from(width) - keep;
    if clear >= 128 {
        0
    } else {
        (value >> clear) << clear
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = s.split_once('/').ok_or(CidrError::MissingPrefix)?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Address(addr.to_string()))?;
        let max = max_prefix(addr);
        let prefix_err = || CidrError::Prefix {
            given: prefix.to_string(),
            max,
        };
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(prefix_err());
        }
        let len: u8 = prefix.parse().map_err(|_| prefix_err())?;
        let cidr = Cidr::new(addr, len).ok_or_else(prefix_err)?;
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4((masked(u32::from(a).into(), 32, len) as u32).into()),
            IpAddr::V6(a) => IpAddr::V6(masked(u128::from(a), 128, len).into()),
        };
        if network != addr {
            return Err(CidrError::HostBits {
                network: Cidr {
                    addr: network,
                    prefix: len,
                },
            });
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `--proxy-protocol` and its `--proxy-from` ranges: every connection
/// starts with a PROXY header, accepted only from these peers (from any
/// peer when there are none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    from: Vec<Cidr>,
}

impl ProxySettings {
    /// Headers from the peers in `from`; from any peer if it is empty.
    pub fn new(from: Vec<Cidr>) -> ProxySettings {
        ProxySettings { from }
    }

    /// The ranges allowed to send a header (empty: any peer).
    pub fn from(&self) -> &[Cidr] {
        &self.from
    }

    /// Whether a connection from `peer` may send a header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.from.is_empty() || self.from.iter().any(|c| c.contains(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid")
    }

    #[test]
    fn ranges_parse_and_match() {
        let one: Cidr = "127.0.0.1/32".parse().expect("valid");
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().expect("valid");
        assert!(all.contains(ip("203.0.113.9")));
        assert!(!all.contains(ip("::1")));
        let v6: Cidr = "::1/128".parse().expect("valid");
        assert!(v6.contains(ip("::1")));
        assert!(!v6.contains(ip("127.0.0.1")));
        let net: Cidr = "2001:db8::/32".parse().expect("valid");
        assert!(net.contains(ip("2001:db8:ffff::1")));
        assert!(!net.contains(ip("2001:db9::1")));
        let any6: Cidr = "::/0".parse().expect("valid");
        assert!(any6.contains(ip("2001:db8::1")));
        assert_eq!(net.to_string(), "2001:db8::/32");
    }

    #[test]
    fn nth_cycles_through_the_range() {
        let net: Cidr = "198.51.100.0/30".parse().expect("valid");
        let got: Vec<IpAddr> = (0..5).map(|i| net.nth(i)).collect();
        assert_eq!(got[0], ip("198.51.100.0"));
        assert_eq!(got[3], ip("198.51.100.3"));
        assert_eq!(got[4], ip("198.51.100.0"));
        let one: Cidr = "127.0.0.1/32".parse().expect("valid");
        assert_eq!(one.nth(7), ip("127.0.0.1"));
        let v6: Cidr = "2001:db8::/64".parse().expect("valid");
        assert_eq!(v6.nth(0x10), ip("2001:db8::10"));
    }

    #[test]
    fn bad_ranges_say_why() {
        assert_eq!("10.0.0.0".parse::<Cidr>(), Err(CidrError::MissingPrefix));
        assert!(matches!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::Address(_))
        ));
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "::/129", "::/x"] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::Prefix { .. })),
                "{bad}"
            );
        }
        let e = "10.0.0.1/8".parse::<Cidr>().expect_err("invalid");
        assert_eq!(
            e.to_string(),
            "bits after the prefix are set (did you mean 10.0.0.0/8?)"
        );
    }

    #[test]
    fn settings_trust_their_ranges_or_anyone() {
        assert!(ProxySettings::default().trusts(ip("192.0.2.1")));
        let s = ProxySettings::new(vec!["127.0.0.1/32".parse().expect("valid")]);
        assert!(s.trusts(ip("127.0.0.1")));
        assert!(s.trusts(ip("::ffff:127.0.0.1")));
        assert!(!s.trusts(ip("127.0.0.2")));
    }
}
