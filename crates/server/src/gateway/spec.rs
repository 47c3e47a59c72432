//! `--gateway LISTEN=UPSTREAM`, parsed.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// One `--gateway`: a game port to listen on and the game server behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewaySpec {
    /// Where players connect (the game's public port).
    pub listen: SocketAddr,
    /// The game server connections are relayed to.
    pub upstream: SocketAddr,
}

/// Why a `--gateway` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewaySpecError {
    /// No `=` between the two addresses.
    NoEquals,
    /// The part before `=` is not `IP:PORT`.
    Listen(String),
    /// The part after `=` is not `IP:PORT`.
    Upstream(String),
    /// The upstream's port is 0, or its address unspecified.
    UnusableUpstream(SocketAddr),
}

impl fmt::Display for GatewaySpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewaySpecError::NoEquals => f.write_str(
                "expected LISTEN=UPSTREAM, two IP:PORT addresses, e.g. 0.0.0.0:9339=127.0.0.1:9340",
            ),
            GatewaySpecError::Listen(s) => {
                write!(f, "the listen address {s:?} is not IP:PORT")
            }
            GatewaySpecError::Upstream(s) => {
                write!(f, "the upstream address {s:?} is not IP:PORT")
            }
            GatewaySpecError::UnusableUpstream(a) => write!(
                f,
                "the upstream {a} cannot be connected to (it needs a real address and a port \
                 other than 0)"
            ),
        }
    }
}

impl std::error::Error for GatewaySpecError {}

impl FromStr for GatewaySpec {
    type Err = GatewaySpecError;

    fn from_str(s: &str) -> Result<GatewaySpec, GatewaySpecError> {
        let (listen, upstream) = s.split_once('=').ok_or(GatewaySpecError::NoEquals)?;
        let listen: SocketAddr = listen
            .trim()
            .parse()
            .map_err(|_| GatewaySpecError::Listen(listen.to_string()))?;
        let upstream: SocketAddr = upstream
            .trim()
            .parse()
            .map_err(|_| GatewaySpecError::Upstream(upstream.to_string()))?;
        if upstream.port() == 0 || upstream.ip().is_unspecified() {
            return Err(GatewaySpecError::UnusableUpstream(upstream));
        }
        Ok(GatewaySpec { listen, upstream })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_and_an_upstream_parse() {
        let spec: GatewaySpec = "0.0.0.0:9339=127.0.0.1:9340".parse().expect("parsed");
        assert_eq!(spec.listen, "0.0.0.0:9339".parse().expect("addr"));
        assert_eq!(spec.upstream, "127.0.0.1:9340".parse().expect("addr"));
        let v6: GatewaySpec = "[::]:9339=[::1]:9340".parse().expect("parsed");
        assert_eq!(v6.upstream.port(), 9340);
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        assert_eq!(
            "0.0.0.0:9339".parse::<GatewaySpec>(),
            Err(GatewaySpecError::NoEquals)
        );
        assert!(matches!(
            "host:1=127.0.0.1:2".parse::<GatewaySpec>(),
            Err(GatewaySpecError::Listen(_))
        ));
        assert!(matches!(
            "0.0.0.0:1=127.0.0.1".parse::<GatewaySpec>(),
            Err(GatewaySpecError::Upstream(_))
        ));
        assert!(matches!(
            "0.0.0.0:1=0.0.0.0:2".parse::<GatewaySpec>(),
            Err(GatewaySpecError::UnusableUpstream(_))
        ));
        assert!(matches!(
            "0.0.0.0:1=127.0.0.1:0".parse::<GatewaySpec>(),
            Err(GatewaySpecError::UnusableUpstream(_))
        ));
    }
}
