//! The `DOMAIN:PORTS` form of `--allow`.
//!
//! The rule for telling the domain from the ports: the **last** `:` separates
//! them, unless the domain is an IPv6 literal, which must then be written in
//! brackets (`[::1]:843`, `[2001:db8::1]:*`). An unbracketed IPv6 literal
//! (`::1:843`) is refused rather than guessed at. The domain and the ports
//! follow the `domain` and `to-ports` rules of [`DomainPattern`] and
//! [`PortSet`]: `*.example.com:443,8000-8100`, `*:*`, `192.0.2.7:843`.

use std::fmt;

use super::{AllowAccessFrom, DomainError, DomainPattern, PortSet, PortsError};

/// Why a `--allow DOMAIN:PORTS` argument is not a valid rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// No `:` separating the ports.
    MissingPorts,
    /// A `[` without its `]`, or something other than `:` after the `]`.
    UnclosedBracket,
    /// The text in brackets is not an IPv6 address.
    NotIpv6InBrackets,
    /// An IPv6 literal without brackets, so the ports cannot be told apart.
    UnbracketedIpv6,
    /// The domain part is malformed.
    Domain(DomainError),
    /// The ports part is malformed.
    Ports(PortsError),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::MissingPorts => {
                f.write_str("expected DOMAIN:PORTS, e.g. `*.example.com:443` or `*:*`")
            }
            SpecError::UnclosedBracket => {
                f.write_str("a bracketed IPv6 address must look like `[::1]:PORTS`")
            }
            SpecError::NotIpv6InBrackets => {
                f.write_str("only an IPv6 address may stand in brackets, as in `[::1]:843`")
            }
            SpecError::UnbracketedIpv6 => f.write_str(
                "write an IPv6 address in brackets so the ports can be told apart: `[::1]:843`",
            ),
            SpecError::Domain(e) => e.fmt(f),
            SpecError::Ports(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SpecError {}

/// Parses `DOMAIN:PORTS` as given to `--allow`, e.g. `*.example.com:443,8000-8100`.
///
/// ```
/// use flashpolicy_proto::policy::parse_allow_spec;
/// let rule = parse_allow_spec("[::1]:843").expect("valid");
/// assert!(rule.grants("::1", 843));
/// assert!(parse_allow_spec("::1:843").is_err());
/// ```
pub fn parse_allow_spec(spec: &str) -> Result<AllowAccessFrom, SpecError> {
    let (domain, ports) = if let Some(rest) = spec.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or(SpecError::UnclosedBracket)?;
        let ports = after.strip_prefix(':').ok_or(SpecError::UnclosedBracket)?;
        let addr: std::net::Ipv6Addr = inside.parse().map_err(|_| SpecError::NotIpv6InBrackets)?;
        (DomainPattern::ip(addr.into()), ports)
    } else {
        let (domain, ports) = spec.rsplit_once(':').ok_or(SpecError::MissingPorts)?;
        if domain.contains(':') {
            return Err(SpecError::UnbracketedIpv6);
        }
        (domain.parse().map_err(SpecError::Domain)?, ports)
    };
    let to_ports: PortSet = ports.parse().map_err(SpecError::Ports)?;
    Ok(AllowAccessFrom::new(domain, to_ports))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(spec: &str) -> Result<String, SpecError> {
        parse_allow_spec(spec).map(|r| format!("{} {}", r.domain, r.to_ports))
    }

    #[test]
    fn valid() {
        assert_eq!(shown("*:*"), Ok("* *".into()));
        assert_eq!(
            shown("*.example.com:443,8000-8100"),
            Ok("*.example.com 443,8000-8100".into())
        );
        assert_eq!(shown("192.0.2.7:843"), Ok("192.0.2.7 843".into()));
        assert_eq!(shown("[::1]:843"), Ok("::1 843".into()));
        assert_eq!(shown("[2001:db8::1]:*"), Ok("2001:db8::1 *".into()));
        assert_eq!(
            parse_allow_spec("*:*").map(|r| r.secure),
            Ok(None),
            "no secure attribute"
        );
    }

    #[test]
    fn invalid() {
        assert_eq!(shown("example.com"), Err(SpecError::MissingPorts));
        assert_eq!(shown(""), Err(SpecError::MissingPorts));
        assert_eq!(shown("::1:843"), Err(SpecError::UnbracketedIpv6));
        assert_eq!(shown("[::1:843"), Err(SpecError::UnclosedBracket));
        assert_eq!(shown("[::1]843"), Err(SpecError::UnclosedBracket));
        assert_eq!(shown("[::1]"), Err(SpecError::UnclosedBracket));
        assert_eq!(shown("[10.0.0.1]:843"), Err(SpecError::NotIpv6InBrackets));
        assert_eq!(
            shown("10.*:843"),
            Err(SpecError::Domain(DomainError::WildcardIp))
        );
        assert_eq!(shown(":843"), Err(SpecError::Domain(DomainError::Empty)));
        assert_eq!(shown("*:"), Err(SpecError::Ports(PortsError::Empty)));
        assert_eq!(
            shown("*:0"),
            Err(SpecError::Ports(PortsError::OutOfRange {
                item: 1,
                text: "0".into()
            }))
        );
        let message = shown("example.com:99999")
            .expect_err("out of range")
            .to_string();
        assert!(message.contains("99999"), "{message}");
    }
}
