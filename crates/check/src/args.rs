//! The command line.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use flashpolicy_proto::clients::{Client, Origin, OriginError, MASTER_PORT};

/// `flashpolicy-check` command line.
#[derive(Debug, Parser)]
#[command(
    name = "flashpolicy-check",
    version,
    about = "Would Flash Player, Unity Web Player or Lightspark, loaded from ORIGIN, connect to \
             HOST:PORT? Fetches what each client fetches and says which file and rule decided \
             (Nagios plugin: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)",
    long_about = None
)]
pub struct Args {
    /// The destination the SWF connects to, e.g. `game.example.com:9339`, `[::1]:9339`.
    #[arg(value_name = "HOST:PORT")]
    pub target: String,

    /// Where the SWF came from: `https://game.example.com`, or a bare domain (meaning http://).
    #[arg(long, value_name = "ORIGIN")]
    pub from: String,

    /// Which client to model.
    #[arg(long, value_enum, default_value_t = Which::All)]
    pub client: Which,

    /// The master policy port (843 for real clients; another port stands in for it in tests).
    #[arg(long, value_name = "PORT", default_value_t = MASTER_PORT)]
    pub master_port: u16,

    /// A port the SWF names with Security.loadPolicyFile("xmlsocket://HOST:P") (repeatable).
    #[arg(long = "policy-port", value_name = "P")]
    pub policy_ports: Vec<u16>,

    /// How long each fetch may take (connect and reply); real clients wait about 3 s.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// How long to look, before sending the request, for bytes the server sends unasked ("sent before the request"; 0s skips the look); not counted in the times.
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub early_wait: Duration,

    /// WARNING when a client's fetches take longer than this many milliseconds in all.
    #[arg(long, value_name = "MS")]
    pub warning_ms: Option<u64>,

    /// CRITICAL when a client's fetches take longer than this many milliseconds in all.
    #[arg(long, value_name = "MS")]
    pub critical_ms: Option<u64>,

    /// Print one JSON object instead of the status line and verdicts.
    #[arg(long)]
    pub json: bool,
}

/// `--client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Adobe Flash Player.
    Flash,
    /// Unity Web Player.
    Unity,
    /// Lightspark.
    Lightspark,
    /// All three.
    All,
}

impl Which {
    /// The clients it names.
    pub fn clients(self) -> Vec<Client> {
        match self {
            Which::Flash => vec![Client::Flash],
            Which::Unity => vec![Client::Unity],
            Which::Lightspark => vec![Client::Lightspark],
            Which::All => Client::ALL.to_vec(),
        }
    }
}

/// A checked command line.
#[derive(Debug, Clone)]
pub struct Check {
    /// The destination as the user wrote it (host part).
    pub host: String,
    /// The address connected to (IPv4 preferred where the name has both).
    pub addr: SocketAddr,
    /// The SWF's origin.
    pub origin: Origin,
    /// The clients to model.
    pub clients: Vec<Client>,
    /// The master policy port.
    pub master_port: u16,
    /// `Security.loadPolicyFile` ports.
    pub policy_ports: Vec<u16>,
    /// Per fetch.
    pub timeout: Duration,
    /// `--early-wait`.
    pub early_wait: Duration,
    /// `--warning-ms`.
    pub warning_ms: Option<u64>,
    /// `--critical-ms`.
    pub critical_ms: Option<u64>,
    /// `--json`.
    pub json: bool,
}

/// A usage error (UNKNOWN, exit 3).
#[derive(Debug)]
pub enum UsageError {
    /// `HOST:PORT` lacks a port, or the port is not 1–65535.
    Target(String),
    /// The host does not resolve.
    Resolve {
        /// The host.
        host: String,
        /// Why.
        error: std::io::Error,
    },
    /// `--from` is malformed.
    Origin(OriginError),
    /// `--timeout 0`.
    ZeroTimeout,
    /// A port 0 among `--master-port`, `--policy-port`.
    ZeroPort(&'static str),
    /// `--warning-ms` above `--critical-ms`.
    Thresholds,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Target(t) => write!(
                f,
                "HOST:PORT `{t}`: expected a host and a port 1-65535, e.g. game.example.com:9339 or [::1]:9339"
            ),
            UsageError::Resolve { host, error } => write!(f, "cannot resolve `{host}`: {error}"),
            UsageError::Origin(e) => write!(f, "--from: {e}"),
            UsageError::ZeroTimeout => f.write_str("--timeout must be more than 0"),
            UsageError::ZeroPort(option) => write!(f, "{option} must be a port 1-65535"),
            UsageError::Thresholds => f.write_str("--warning-ms must not be above --critical-ms"),
        }
    }
}

impl std::error::Error for UsageError {}

/// Splits `host:port` (`[v6]:port` for IPv6).
fn split_target(target: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        (host, port)
    } else {
        let (host, port) = target.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

impl Check {
    /// Checks `args` and resolves the host.
    pub fn from_args(args: Args) -> Result<Check, UsageError> {
        let (host, port) =
            split_target(&args.target).ok_or_else(|| UsageError::Target(args.target.clone()))?;
        let origin: Origin = args.from.parse().map_err(UsageError::Origin)?;
        if args.timeout.is_zero() {
            return Err(UsageError::ZeroTimeout);
        }
        if args.master_port == 0 {
            return Err(UsageError::ZeroPort("--master-port"));
        }
        if args.policy_ports.contains(&0) {
            return Err(UsageError::ZeroPort("--policy-port"));
        }
        if let (Some(w), Some(c)) = (args.warning_ms, args.critical_ms) {
            if w > c {
                return Err(UsageError::Thresholds);
            }
        }
        let addrs: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|error| UsageError::Resolve {
                host: host.clone(),
                error,
            })?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| UsageError::Resolve {
                host: host.clone(),
                error: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
            })?;
        Ok(Check {
            host,
            addr,
            origin,
            clients: args.client.clients(),
            master_port: args.master_port,
            policy_ports: args.policy_ports,
            timeout: args.timeout,
            early_wait: args.early_wait,
            warning_ms: args.warning_ms,
            critical_ms: args.critical_ms,
            json: args.json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(split_target("a.com:9339"), Some(("a.com".into(), 9339)));
        assert_eq!(split_target("[::1]:843"), Some(("::1".into(), 843)));
        assert_eq!(split_target("::1:843"), None);
        assert_eq!(split_target("a.com"), None);
        assert_eq!(split_target("a.com:0"), None);
        assert_eq!(split_target(":80"), None);
        assert_eq!(split_target("a.com:99999"), None);
    }
}
