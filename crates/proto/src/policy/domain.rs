//! The `domain` attribute: who may connect.
//!
//! Syntax accepted by [`DomainPattern::from_str`]:
//! * `*`: every domain;
//! * `*.suffix`: `suffix` itself and every name below it (`*.example.com`
//!   matches `example.com` and `a.b.example.com`); `suffix` must be a host name;
//! * a host name: labels of ASCII letters, digits, `-` and `_`, 1–63 bytes
//!   each, separated by single dots, 253 bytes at most, no label starting or
//!   ending with `-`; the last label must not be all digits (so a malformed
//!   IPv4 address such as `10.0.0` or `256.1.1.1` is not taken for a name);
//! * an IPv4 literal (`192.0.2.7`) or an IPv6 literal (`2001:db8::1`, also
//!   accepted in brackets, `[2001:db8::1]`).
//!
//! Wildcards anywhere else (`10.*`, `www.*.com`, `a*.example.com`) are errors:
//! Flash Player matches IP addresses literally and never resolves names.
//!
//! [`Display`](fmt::Display) writes `*`, `*.suffix`, the host name as written,
//! or the address in its standard form (IPv6 without brackets); that text
//! parses back to an equal pattern.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Longest host name, in bytes.
pub const MAX_HOST_LEN: usize = 253;
/// Longest label of a host name, in bytes.
pub const MAX_LABEL_LEN: usize = 63;

/// A valid `domain` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainPattern {
    repr: Repr,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Repr {
    Any,
    Suffix(Box<str>),
    Host(Box<str>),
    Ip(IpAddr),
}

impl DomainPattern {
    /// `*`: every domain.
    pub fn any() -> DomainPattern {
        DomainPattern { repr: Repr::Any }
    }

    /// Exactly this address.
    pub fn ip(addr: IpAddr) -> DomainPattern {
        DomainPattern {
            repr: Repr::Ip(addr),
        }
    }

    /// Whether this is `*`.
    pub fn is_any(&self) -> bool {
        matches!(self.repr, Repr::Any)
    }

    /// The address, if this pattern is an IP literal.
    pub fn as_ip(&self) -> Option<IpAddr> {
        match self.repr {
            Repr::Ip(addr) => Some(addr),
            _ => None,
        }
    }

    /// Whether a client whose page came from `host` is granted by this
    /// pattern, as Flash Player decides it: host names compare ASCII
    /// case-insensitively, `*.suffix` also matches `suffix` itself, and IP
    /// literals match only the same address written as an IP (`host` may be
    /// bracketed IPv6). Names are never resolved.
    pub fn matches(&self, host: &str) -> bool {
        match &self.repr {
            Repr::Any => true,
            Repr::Ip(addr) => parse_ip(host) == Some(*addr),
            Repr::Host(name) => host.eq_ignore_ascii_case(name),
            Repr::Suffix(suffix) => {
                let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
                if host.len() == suffix.len() {
                    host.eq_ignore_ascii_case(suffix)
                } else if host.len() > suffix.len() {
                    let split = host.len() - suffix.len();
                    host[split - 1] == b'.' && host[split..].eq_ignore_ascii_case(suffix)
                } else {
                    false
                }
            }
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Any => f.write_str("*"),
            Repr::Suffix(suffix) => write!(f, "*.{suffix}"),
            Repr::Host(name) => f.write_str(name),
            Repr::Ip(addr) => write!(f, "{addr}"),
        }
    }
}

/// Why a `domain` value is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainError {
    /// The value is empty.
    Empty,
    /// A `*` somewhere other than alone or as a leading `*.`.
    MisplacedWildcard,
    /// `*.` with nothing after it.
    EmptySuffix,
    /// A wildcard applied to an IP address (`*.10.0.0.1`) or one inside an
    /// address (`10.*`).
    WildcardIp,
    /// A character that cannot appear in a host name.
    InvalidChar {
        /// The character.
        found: char,
    },
    /// An empty label: a leading, trailing or doubled dot.
    EmptyLabel,
    /// A label longer than [`MAX_LABEL_LEN`] bytes.
    LabelTooLong {
        /// Its length.
        len: usize,
    },
    /// A label that starts or ends with `-`.
    HyphenAtLabelEdge,
    /// The name is longer than [`MAX_HOST_LEN`] bytes.
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Looks like an IP address (only digits and dots, or colons) but is
    /// not a valid one.
    InvalidIp,
    /// A URL (`scheme://...`) where a bare name belongs.
    Url,
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainError::Empty => {
                f.write_str("domain is empty; use `*`, `*.example.com`, a host name or an IP")
            }
            DomainError::MisplacedWildcard => f.write_str(
                "domain wildcard must be `*` alone or a leading `*.` (as in `*.example.com`)",
            ),
            DomainError::EmptySuffix => f.write_str("domain `*.` needs a name after the dot"),
            DomainError::WildcardIp => f.write_str(
                "domain wildcards cannot apply to IP addresses; list each address instead",
            ),
            DomainError::InvalidChar { found } => write!(
                f,
                "domain contains {found:?}, which cannot appear in a host name"
            ),
            DomainError::EmptyLabel => {
                f.write_str("domain has an empty label (a leading, trailing or doubled dot)")
            }
            DomainError::LabelTooLong { len } => write!(
                f,
                "domain has a label of {len} bytes; the most is {MAX_LABEL_LEN}"
            ),
            DomainError::HyphenAtLabelEdge => {
                f.write_str("domain has a label that starts or ends with `-`")
            }
            DomainError::TooLong { len } => {
                write!(f, "domain is {len} bytes long; the most is {MAX_HOST_LEN}")
            }
            DomainError::InvalidIp => f.write_str("domain is not a valid IP address"),
            DomainError::Url => {
                f.write_str("domain must be a bare host name, not a URL: drop the scheme and path")
            }
        }
    }
}

impl std::error::Error for DomainError {}

/// Parses an IP literal, IPv6 optionally in brackets.
fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    text.parse().ok()
}

/// Whether `text` is shaped like an IPv4 address: digits and dots only.
fn looks_like_ipv4(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Checks a host name (no wildcard) against the rules in the module docs.
fn check_host(name: &str) -> Result<(), DomainError> {
    if name.is_empty() {
        return Err(DomainError::Empty);
    }
    if name.contains("://") {
        return Err(DomainError::Url);
    }
    if let Some(found) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
    {
        return Err(match found {
            '*' => DomainError::MisplacedWildcard,
            ':' | '[' | ']'
                if name
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '[' | ']')) =>
            {
                DomainError::InvalidIp
            }
            _ => DomainError::InvalidChar { found },
        });
    }
    if name.len() > MAX_HOST_LEN {
        return Err(DomainError::TooLong { len: name.len() });
    }
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err(DomainError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DomainError::LabelTooLong { len: label.len() });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DomainError::HyphenAtLabelEdge);
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::InvalidIp);
    }
    Ok(())
}

impl FromStr for DomainPattern {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<DomainPattern, DomainError> {
        if text.is_empty() {
            return Err(DomainError::Empty);
        }
        if text == "*" {
            return Ok(DomainPattern::any());
        }
        if let Some(addr) = parse_ip(text) {
            return Ok(DomainPattern::ip(addr));
        }
        if let Some(suffix) = text.strip_prefix("*.") {
            if suffix.is_empty() {
                return Err(DomainError::EmptySuffix);
            }
            if parse_ip(suffix).is_some() || suffix.contains(':') || looks_like_ipv4(suffix) {
                return Err(DomainError::WildcardIp);
            }
            check_host(suffix)?;
            return Ok(DomainPattern {
                repr: Repr::Suffix(suffix.into()),
            });
        }
        if text.contains('*') {
            // `10.*`, `10.0.*.1`, `2001:db8::*`: a wildcard inside an address.
            let digits_and_dots = text.bytes().any(|b| b.is_ascii_digit())
                && text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'*');
            if digits_and_dots || text.contains(':') {
                return Err(DomainError::WildcardIp);
            }
            return Err(DomainError::MisplacedWildcard);
        }
        check_host(text)?;
        Ok(DomainPattern {
            repr: Repr::Host(text.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DomainPattern, DomainError> {
        text.parse()
    }

    #[test]
    fn valid_forms() {
        for (text, shown) in [
            ("*", "*"),
            ("*.example.com", "*.example.com"),
            ("*.com", "*.com"),
            ("example.com", "example.com"),
            ("localhost", "localhost"),
            ("Www.Example.COM", "Www.Example.COM"),
            ("a_b.example-1.org", "a_b.example-1.org"),
            ("192.0.2.7", "192.0.2.7"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("::1", "::1"),
            ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
            ("1.2.3.com", "1.2.3.com"),
        ] {
            let pattern = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(pattern.to_string(), shown, "{text}");
            assert_eq!(parse(shown), Ok(pattern), "{text}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(parse(""), Err(DomainError::Empty));
        assert_eq!(parse("10.*"), Err(DomainError::WildcardIp));
        assert_eq!(parse("10.0.*.1"), Err(DomainError::WildcardIp));
        assert_eq!(parse("2001:db8::*"), Err(DomainError::WildcardIp));
        assert_eq!(parse("*.10.0.0.1"), Err(DomainError::WildcardIp));
        assert_eq!(parse("*.10.0"), Err(DomainError::WildcardIp));
        assert_eq!(parse("*.::1"), Err(DomainError::WildcardIp));
        assert_eq!(parse("*."), Err(DomainError::EmptySuffix));
        assert_eq!(parse("**"), Err(DomainError::MisplacedWildcard));
        assert_eq!(parse("www.*.com"), Err(DomainError::MisplacedWildcard));
        assert_eq!(parse("a*.example.com"), Err(DomainError::MisplacedWildcard));
        assert_eq!(parse("*.*.com"), Err(DomainError::MisplacedWildcard));
        assert_eq!(parse("*example.com"), Err(DomainError::MisplacedWildcard));
        assert_eq!(
            parse("exa mple.com"),
            Err(DomainError::InvalidChar { found: ' ' })
        );
        assert_eq!(parse("http://x.com"), Err(DomainError::Url));
        assert_eq!(
            parse("x.com:843"),
            Err(DomainError::InvalidChar { found: ':' })
        );
        assert_eq!(
            parse("x.com/"),
            Err(DomainError::InvalidChar { found: '/' })
        );
        assert_eq!(
            parse("ex\u{e9}.com"),
            Err(DomainError::InvalidChar { found: '\u{e9}' })
        );
        assert_eq!(parse(".example.com"), Err(DomainError::EmptyLabel));
        assert_eq!(parse("example.com."), Err(DomainError::EmptyLabel));
        assert_eq!(parse("a..b"), Err(DomainError::EmptyLabel));
        assert_eq!(parse("-a.com"), Err(DomainError::HyphenAtLabelEdge));
        assert_eq!(parse("a-.com"), Err(DomainError::HyphenAtLabelEdge));
        assert_eq!(parse("10.0.0"), Err(DomainError::InvalidIp));
        assert_eq!(parse("256.1.1.1"), Err(DomainError::InvalidIp));
        assert_eq!(parse("1:2:3"), Err(DomainError::InvalidIp));
        assert_eq!(parse("[10.0.0.1]"), Err(DomainError::InvalidIp));
        let label = "a".repeat(64);
        assert_eq!(parse(&label), Err(DomainError::LabelTooLong { len: 64 }));
        let long = ["a".repeat(63).as_str(); 4].join(".");
        assert_eq!(parse(&long), Err(DomainError::TooLong { len: 255 }));
        let longest = format!("{}.b", ["a".repeat(63).as_str(); 3].join("."));
        assert!(longest.len() <= MAX_HOST_LEN);
        assert!(parse(&longest).is_ok());
    }

    #[test]
    fn matching() {
        let any = DomainPattern::any();
        assert!(any.matches("anything.example"));
        let suffix = parse("*.example.com").expect("valid");
        assert!(suffix.matches("example.com"));
        assert!(suffix.matches("www.example.com"));
        assert!(suffix.matches("a.b.EXAMPLE.com"));
        assert!(!suffix.matches("badexample.com"));
        assert!(!suffix.matches("example.com.evil"));
        assert!(!suffix.matches("com"));
        let host = parse("Example.com").expect("valid");
        assert!(host.matches("example.COM"));
        assert!(!host.matches("www.example.com"));
        let v4 = parse("192.0.2.7").expect("valid");
        assert!(v4.matches("192.0.2.7"));
        assert!(!v4.matches("192.0.2.8"));
        let v6 = parse("2001:db8::1").expect("valid");
        assert!(v6.matches("[2001:db8::1]"));
        assert!(v6.matches("2001:0db8:0:0::1"));
        assert!(!v6.matches("2001:db8::2"));
        assert_eq!(v6.as_ip(), Some("2001:db8::1".parse().expect("ip")));
    }
}
