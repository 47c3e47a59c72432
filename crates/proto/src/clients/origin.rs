//! Where the SWF came from: `https://game.example.com`, or a bare host
//! (meaning `http://`).

use std::fmt;
use std::str::FromStr;

use crate::policy::DomainPattern;

/// The origin of the SWF that asks to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Loaded over HTTPS.
    pub https: bool,
    /// Its host (a name, or an IP literal; IPv6 without brackets).
    pub host: String,
}

/// Why an origin is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginError {
    /// A scheme other than `http` or `https`.
    Scheme(String),
    /// No host, or a host that is not a name or an IP address.
    Host(String),
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginError::Scheme(s) => {
                write!(f, "the origin's scheme must be http or https, not `{s}`")
            }
            OriginError::Host(h) => write!(
                f,
                "the origin's host `{h}` is not a host name or an IP address"
            ),
        }
    }
}

impl std::error::Error for OriginError {}

impl FromStr for Origin {
    type Err = OriginError;

    /// `https://host[:port][/path]`, `http://...`, or a bare `host`.
    fn from_str(text: &str) -> Result<Origin, OriginError> {
        let (https, rest) = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
            Some((scheme, _)) => return Err(OriginError::Scheme(scheme.to_string())),
            None => (false, text),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = if let Some(inner) = authority.strip_prefix('[') {
            inner.split(']').next().unwrap_or_default()
        } else {
            authority.split(':').next().unwrap_or_default()
        };
        // The host must be something a `domain` attribute could name.
        match host.parse::<DomainPattern>() {
            Ok(p) if !p.is_any() && !host.starts_with("*.") => Ok(Origin {
                https,
                host: host.to_string(),
            }),
            _ => Err(OriginError::Host(host.to_string())),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]", self.host)
        } else {
            write!(f, "{scheme}://{}", self.host)
        }
    }
}
