//! `--ws-origin ORIGIN`: which pages may open the bridge.
//!
//! A browser sends the page's origin (`https://game.example.com`, or with a
//! port) in every WebSocket upgrade; a page on another site could otherwise
//! open the bridge on a player's behalf. The check is an exact match on the
//! `Origin` header, so an allowed origin is written as a browser writes it:
//! a lowercase scheme and host, a port only when it is not the scheme's
//! default, and nothing after (no path, no trailing `/`). [`Origin`]'s
//! parser refuses anything else, so that a typo is a start-up error rather
//! than a bridge that silently refuses every page.

use std::fmt;
use std::str::FromStr;

/// One allowed origin, as a browser serialises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// The origin as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a `--ws-origin` value is not an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginError {
    /// Not `http://` or `https://`.
    Scheme(String),
    /// No host after the scheme.
    NoHost(String),
    /// A path, query or fragment after the host (a trailing `/` included).
    Path(String),
    /// Upper-case letters: browsers send the origin in lowercase.
    Case(String),
    /// The port is not a number from 1 to 65535, or is the scheme's
    /// default (which browsers leave out).
    Port(String),
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginError::Scheme(s) => {
                write!(
                    f,
                    "{s:?} is not an origin: it must start with http:// or https://"
                )
            }
            OriginError::NoHost(s) => write!(f, "{s:?} has no host after the scheme"),
            OriginError::Path(s) => write!(
                f,
                "{s:?} has a path: an origin is scheme://host[:port] with nothing after, \
                 not even a trailing /"
            ),
            OriginError::Case(s) => write!(
                f,
                "{s:?} has upper-case letters: browsers send origins in lowercase, so it would \
                 never match"
            ),
            OriginError::Port(s) => write!(
                f,
                "{s:?} has a bad port: 1 to 65535, and not the scheme's default (80 for http, 443 \
                 for https), which browsers leave out"
            ),
        }
    }
}

impl std::error::Error for OriginError {}

impl FromStr for Origin {
    type Err = OriginError;

    fn from_str(s: &str) -> Result<Origin, OriginError> {
        let (rest, default_port) = if let Some(r) = s.strip_prefix("https://") {
            (r, 443)
        } else if let Some(r) = s.strip_prefix("http://") {
            (r, 80)
        } else {
            return Err(OriginError::Scheme(s.to_string()));
        };
        if rest.contains(['/', '?', '#']) {
            return Err(OriginError::Path(s.to_string()));
        }
        if rest.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(OriginError::Case(s.to_string()));
        }
        // `[v6]:port`, `host:port` or a bare host.
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, Some(p)),
            _ => (rest, None),
        };
        if host.is_empty() {
            return Err(OriginError::NoHost(s.to_string()));
        }
        if let Some(p) = port {
            match p.parse::<u16>() {
                Ok(n) if n != 0 && n != default_port && !p.starts_with('0') => {}
                _ => return Err(OriginError::Port(s.to_string())),
            }
        }
        Ok(Origin(s.to_string()))
    }
}

/// The allowed origins; empty: any page (and a request with no `Origin`,
/// which only a non-browser client sends).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    allowed: Vec<Origin>,
}

impl Origins {
    /// Any origin.
    pub fn any() -> Origins {
        Origins::default()
    }

    /// Only these (any, if `allowed` is empty).
    pub fn only(allowed: Vec<Origin>) -> Origins {
        Origins { allowed }
    }

    /// Whether every page may connect.
    pub fn is_any(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Whether a request with this `Origin` header may open the bridge.
    /// With a list, a request without `Origin` is refused.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        if self.allowed.is_empty() {
            return true;
        }
        origin.is_some_and(|o| self.allowed.iter().any(|a| a.0 == o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_as_browsers_write_them_parse() {
        for ok in [
            "https://game.example.com",
            "http://127.0.0.1:8000",
            "https://[::1]:8443",
            "http://localhost",
        ] {
            assert_eq!(
                ok.parse::<Origin>().map(|o| o.0),
                Ok(ok.to_string()),
                "{ok}"
            );
        }
    }

    #[test]
    fn what_would_never_match_is_refused() {
        let bad = |s: &str| s.parse::<Origin>().expect_err(s);
        assert!(matches!(bad("game.example.com"), OriginError::Scheme(_)));
        assert!(matches!(
            bad("ws://game.example.com"),
            OriginError::Scheme(_)
        ));
        assert!(matches!(
            bad("https://game.example.com/"),
            OriginError::Path(_)
        ));
        assert!(matches!(
            bad("https://Game.example.com"),
            OriginError::Case(_)
        ));
        assert!(matches!(
            bad("https://game.example.com:443"),
            OriginError::Port(_)
        ));
        assert!(matches!(
            bad("http://game.example.com:80"),
            OriginError::Port(_)
        ));
        assert!(matches!(
            bad("http://game.example.com:0"),
            OriginError::Port(_)
        ));
        assert!(matches!(
            bad("http://game.example.com:x"),
            OriginError::Port(_)
        ));
        assert!(matches!(bad("https://"), OriginError::NoHost(_)));
        assert!(bad("https://Game.example.com")
            .to_string()
            .contains("lowercase"));
    }

    #[test]
    fn a_list_matches_exactly_and_needs_an_origin() {
        let list = Origins::only(vec!["https://game.example.com".parse().expect("origin")]);
        assert!(list.allows(Some("https://game.example.com")));
        assert!(!list.allows(Some("https://game.example.com.evil.example")));
        assert!(!list.allows(Some("http://game.example.com")));
        assert!(!list.allows(None));
        assert!(Origins::any().allows(None));
        assert!(Origins::any().allows(Some("https://anything.example")));
    }
}
