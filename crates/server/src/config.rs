//! The command line, parsed once into a typed, validated [`Config`].

use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use flashpolicy_proto::policy::{self, Policy, PolicyError, Rule, SpecError};
use flashpolicy_proto::reply::{Reply, ReplyError};

/// `flashpolicyd` command line.
#[derive(Debug, Parser)]
#[command(
    name = "flashpolicyd",
    version,
    about = "Serves a Flash socket policy file to Flash Player and Unity Web Player clients",
    long_about = None
)]
pub struct Args {
    /// Address to listen on (repeatable), e.g. `0.0.0.0:843`, `[::1]:8843`.
    /// Default: `[::]:843` dual-stack, or `0.0.0.0:843` where IPv6 is absent.
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,

    /// Serve this policy file, byte for byte, after validating it.
    #[arg(long, value_name = "FILE", conflicts_with = "allow")]
    pub policy: Option<PathBuf>,

    /// Allow DOMAIN to connect to PORTS (repeatable), e.g. `*.example.com:443,8000-8100`.
    #[arg(long, value_name = "DOMAIN:PORTS")]
    pub allow: Vec<String>,

    /// The I/O engine: `auto` uses io_uring where the kernel allows it, epoll otherwise.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,

    /// io_uring engine: send the reply with IORING_OP_SEND_ZC (zero-copy).
    /// Only pays for large replies on real NICs, never on loopback.
    #[arg(long)]
    pub send_zc: bool,

    /// Worker threads, each with its own SO_REUSEPORT listener. Default: the CPUs available.
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,

    /// Close connections that have not sent a complete request within this time.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Most connections open at once (shared evenly among the workers).
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    pub max_connections: usize,

    /// Pin worker i to CPU i (modulo the CPUs available).
    #[arg(long)]
    pub pin: bool,

    /// Listen backlog of each listening socket.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub backlog: u32,

    /// Set TCP_DEFER_ACCEPT so accept returns once the request has arrived.
    #[arg(long)]
    pub defer_accept: bool,

    /// Log filter (`error`, `warn`, `info`, `debug`, or a tracing directive).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,

    /// Validate the configuration and the policy, print the warnings and
    /// the reply that would be served, and exit (0 if it can be served, 2 if
    /// not) without binding anything.
    #[arg(long)]
    pub check: bool,
}

/// Which engine moves the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// io_uring where the kernel allows it (probed once at start-up), epoll otherwise.
    Auto,
    /// epoll through mio, edge-triggered.
    Epoll,
    /// io_uring: multishot accept, one ring per worker.
    Uring,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Auto => f.write_str("auto"),
            Backend::Epoll => f.write_str("epoll"),
            Backend::Uring => f.write_str("uring"),
        }
    }
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `[::]:843` dual-stack, falling back to `0.0.0.0:843`.
    Default,
    /// Exactly these addresses.
    Addrs(Vec<SocketAddr>),
}

/// Everything the server needs, validated.
#[derive(Debug)]
pub struct Config {
    /// Where to listen.
    pub listen: Listen,
    /// The reply every client gets.
    pub reply: Reply,
    /// One line describing the policy, for the start-up log.
    pub policy_summary: String,
    /// Where the policy came from: SIGHUP loads it again from there.
    pub policy_source: PolicySource,
    /// Warnings to log at start-up (already formatted with their source).
    pub warnings: Vec<String>,
    /// The engine.
    pub backend: Backend,
    /// io_uring engine: send with IORING_OP_SEND_ZC.
    pub send_zc: bool,
    /// Worker threads.
    pub threads: usize,
    /// Request timeout.
    pub timeout: Duration,
    /// Cap on open connections for the whole process.
    pub max_connections: usize,
    /// Pin workers to cores.
    pub pin: bool,
    /// Listen backlog.
    pub backlog: u32,
    /// TCP_DEFER_ACCEPT.
    pub defer_accept: bool,
    /// Log filter.
    pub log: String,
}

/// A configuration that cannot be served.
#[derive(Debug)]
pub enum ConfigError {
    /// The policy file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The policy file breaks a rule.
    Policy {
        /// The file.
        path: PathBuf,
        /// Where and which rule.
        error: PolicyError,
    },
    /// The policy cannot be sent as a reply.
    Reply {
        /// The file.
        path: PathBuf,
        /// Why.
        error: ReplyError,
    },
    /// An `--allow` argument is malformed.
    Allow {
        /// The argument.
        spec: String,
        /// Why.
        error: SpecError,
    },
    /// A numeric option is out of range.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                write!(f, "{}: cannot read policy file: {error}", path.display())
            }
            ConfigError::Policy { path, error } => write!(
                f,
                "{}:{}:{}: {}",
                path.display(),
                error.line,
                error.column,
                error.rule
            ),
            ConfigError::Reply { path, error } => write!(f, "{}: {error}", path.display()),
            ConfigError::Allow { spec, error } => write!(f, "--allow '{spec}': {error}"),
            ConfigError::Invalid(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The longest `--timeout`: a client that has sent no request for an hour is
/// not going to, and a bound keeps deadline arithmetic far from the clock's
/// limit.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Reads a policy file, but never more than one byte past
/// [`policy::MAX_POLICY_LEN`]: enough for validation to refuse an oversize
/// document without reading all of `/dev/zero` or a huge file first.
fn read_policy(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut document = Vec::new();
    std::fs::File::open(path)?
        .take(policy::MAX_POLICY_LEN as u64 + 1)
        .read_to_end(&mut document)?;
    Ok(document)
}

/// Flash Player honours a policy served from a port of 1024 or above only
/// for ports of 1024 or above. Says which rules grant lower ports in vain.
fn low_port_warning(listen: &Listen, policy: &Policy) -> Option<String> {
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

/// Where the policy comes from, kept so that SIGHUP can load it again with
/// exactly the checks start-up used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `--policy FILE`: read (bounded) and validated on every load.
    File(PathBuf),
    /// `--allow` specs, rendered on every load; none means the default
    /// policy, which allows every domain to connect to every port.
    Allow(Vec<String>),
}

/// A policy loaded and validated, ready to serve.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The reply every client gets.
    pub reply: Reply,
    /// One line describing the policy, for the log.
    pub summary: String,
    /// Warnings to log (already formatted with their source).
    pub warnings: Vec<String>,
}

impl PolicySource {
    /// Reads (or renders), validates and builds the reply, with the warnings
    /// that apply when it is served on `listen`. Reading a file takes at
    /// most [`policy::MAX_POLICY_LEN`] + 1 bytes.
    pub fn load(&self, listen: &Listen) -> Result<LoadedPolicy, ConfigError> {
        let mut warnings = Vec::new();
        let (policy, reply, summary) = match self {
            PolicySource::File(path) => {
                let document = read_policy(path).map_err(|error| ConfigError::Read {
                    path: path.clone(),
                    error,
                })?;
                let validated = policy::validate(&document).map_err(|mut error| {
                    // Only MAX_POLICY_LEN + 1 bytes were read: name the file's
                    // real size where it has one (not for /dev/zero or a pipe).
                    if let Rule::TooLarge { len } = &mut error.rule {
                        if let Ok(meta) = std::fs::metadata(path) {
                            *len = (*len).max(usize::try_from(meta.len()).unwrap_or(usize::MAX));
                        }
                    }
                    ConfigError::Policy {
                        path: path.clone(),
                        error,
                    }
                })?;
                for w in &validated.warnings {
                    warnings.push(format!(
                        "{}:{}:{}: {}",
                        path.display(),
                        w.line,
                        w.column,
                        w.rule
                    ));
                }
                let reply = Reply::new(&document).map_err(|error| ConfigError::Reply {
                    path: path.clone(),
                    error,
                })?;
                let summary = format!(
                    "{} ({} rules, {} bytes)",
                    path.display(),
                    validated.policy.allow.len(),
                    document.len()
                );
                (validated.policy, reply, summary)
            }
            PolicySource::Allow(specs) => {
                let policy = if specs.is_empty() {
                    warnings.push(
                        "no --policy or --allow given: serving the default policy, which lets \
                         every domain connect to every port"
                            .to_string(),
                    );
                    Policy::allow_all()
                } else {
                    let mut allow = Vec::with_capacity(specs.len());
                    for spec in specs {
                        allow.push(policy::parse_allow_spec(spec).map_err(|error| {
                            ConfigError::Allow {
                                spec: spec.clone(),
                                error,
                            }
                        })?);
                    }
                    Policy {
                        site_control: None,
                        allow,
                    }
                };
                let document = policy.render();
                // The same checks as a file gets: the size refusal and warnings.
                let generated = PathBuf::from("<generated>");
                let validated =
                    policy::validate(document.as_bytes()).map_err(|error| ConfigError::Policy {
                        path: generated.clone(),
                        error,
                    })?;
                for w in &validated.warnings {
                    warnings.push(format!(
                        "{}:{}:{}: {}",
                        generated.display(),
                        w.line,
                        w.column,
                        w.rule
                    ));
                }
                let summary = format!(
                    "generated ({} rules, {} bytes)",
                    policy.allow.len(),
                    document.len()
                );
                let reply =
                    Reply::new(document.as_bytes()).map_err(|error| ConfigError::Reply {
                        path: generated,
                        error,
                    })?;
                (policy, reply, summary)
            }
        };
        warnings.extend(low_port_warning(listen, &policy));
        Ok(LoadedPolicy {
            reply,
            summary,
            warnings,
        })
    }
}

impl Config {
    /// Validates the arguments and builds the reply. Nothing is bound yet.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let listen = if args.listen.is_empty() {
            Listen::Default
        } else {
            Listen::Addrs(args.listen)
        };
        let policy_source = match args.policy {
            Some(path) => PolicySource::File(path),
            None => PolicySource::Allow(args.allow),
        };
        let LoadedPolicy {
            reply,
            summary: policy_summary,
            warnings,
        } = policy_source.load(&listen)?;

        if args.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "--max-connections must be at least 1".into(),
            ));
        }
        if args.timeout.is_zero() {
            return Err(ConfigError::Invalid("--timeout must be more than 0".into()));
        }
        if args.timeout > MAX_TIMEOUT {
            return Err(ConfigError::Invalid(format!(
                "--timeout {} is too long: the most is {}",
                humantime::format_duration(args.timeout),
                humantime::format_duration(MAX_TIMEOUT)
            )));
        }
        let threads = match args.threads {
            Some(n) => n.get(),
            None => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        };
        Ok(Config {
            listen,
            reply,
            policy_summary,
            policy_source,
            warnings,
            backend: args.backend,
            send_zc: args.send_zc,
            threads,
            timeout: args.timeout,
            max_connections: args.max_connections,
            pin: args.pin,
            backlog: args.backlog,
            defer_accept: args.defer_accept,
            log: args.log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashpolicy_proto::policy::parse_allow_spec;

    fn policy(specs: &[&str]) -> Policy {
        Policy {
            site_control: None,
            allow: specs
                .iter()
                .map(|s| parse_allow_spec(s).expect("valid spec"))
                .collect(),
        }
    }

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
}
