//! The command line, parsed once into a typed, validated [`Config`]. The
//! policy it names is loaded by [`crate::policy`].

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use flashpolicy_proto::proxy::{Cidr, ProxySettings};
use flashpolicy_proto::reply::Reply;

use crate::activation::PassedSockets;
use crate::policy::{LoadError, LoadedPolicy, PolicySource};
use crate::privileges::UserSpec;

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
    /// Ignored (with a warning) when systemd passes sockets (LISTEN_FDS).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,

    /// Serve this policy file, byte for byte, after validating it.
    #[arg(long, value_name = "FILE", conflicts_with = "allow")]
    pub policy: Option<PathBuf>,

    /// Allow DOMAIN to connect to PORTS (repeatable), e.g. `*.example.com:443,8000-8100`.
    #[arg(long, value_name = "DOMAIN:PORTS")]
    pub allow: Vec<String>,

    /// The I/O engine, of the policy workers and of --gateway relays: `auto` uses io_uring
    /// where the kernel allows it, epoll otherwise.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,

    /// io_uring engine: send the reply with IORING_OP_SEND_ZC (zero-copy).
    /// Only pays for large replies on real NICs, never on loopback.
    #[arg(long)]
    pub send_zc: bool,

    /// Worker threads, each with its own SO_REUSEPORT listener (or its own
    /// duplicate of each passed socket). Default: the CPUs available.
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

    /// Set TCP_DEFER_ACCEPT so accept returns once the request has arrived
    /// (a silent client waits about 1 s in the kernel; --timeout still counts
    /// from its connect).
    #[arg(long, overrides_with = "no_defer_accept")]
    pub defer_accept: bool,

    /// Do not set TCP_DEFER_ACCEPT (the default; overrides an earlier
    /// --defer-accept).
    #[arg(long, overrides_with = "defer_accept")]
    pub no_defer_accept: bool,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. `127.0.0.1:9843`
    /// (from a thread of its own; not served when absent).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from
    /// a balancer; the client address is taken from it.
    #[arg(long)]
    pub proxy_protocol: bool,

    /// With --proxy-protocol: accept headers only from peers in this range
    /// (repeatable), e.g. `10.0.0.0/8`, `::1/128`; others are closed at once.
    #[arg(long, value_name = "CIDR")]
    pub proxy_from: Vec<Cidr>,

    /// Most connections one client address holds open at once, across all
    /// workers (IPv6: per /64; with --proxy-protocol, the header's source);
    /// more are closed at once.
    #[arg(long, value_name = "N")]
    pub max_per_ip: Option<std::num::NonZeroU32>,

    /// Also listen on a game's own port (repeatable), e.g.
    /// `0.0.0.0:9339=127.0.0.1:9340`: a policy request there gets the
    /// policy, anything else is relayed to UPSTREAM (the game server).
    #[arg(long = "gateway", value_name = "LISTEN=UPSTREAM")]
    pub gateway: Vec<crate::gateway::GatewaySpec>,

    /// With --gateway: relay a client that has sent nothing for this long,
    /// so that games whose server speaks first work.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub gateway_wait: Duration,

    /// With --gateway: send the game server a PROXY header (`v1` or `v2`)
    /// with the player's address before the relayed bytes.
    #[arg(long, value_enum, value_name = "VERSION")]
    pub upstream_proxy_protocol: Option<crate::gateway::UpstreamProxy>,

    /// A WebSocket-to-TCP bridge for Ruffle's `socketProxy` (repeatable):
    /// e.g. 0.0.0.0:8443=127.0.0.1:9340; each WebSocket opens one TCP
    /// connection to UPSTREAM, binary frames carry the bytes both ways.
    #[arg(long = "websocket", value_name = "LISTEN=UPSTREAM")]
    pub websocket: Vec<crate::gateway::GatewaySpec>,

    /// With --websocket: only pages of this origin may connect (repeatable;
    /// an exact match on the Origin header, e.g. `https://game.example.com`).
    /// Without it, any page may.
    #[arg(long = "ws-origin", value_name = "ORIGIN")]
    pub ws_origin: Vec<flashpolicy_proto::ws::Origin>,

    /// With --websocket: the certificate chain (PEM) that makes the bridge
    /// wss:// (reloaded on SIGHUP). Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// With --tls-cert: its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// At SIGTERM: how long relayed connections (--gateway, --websocket) may go on
    /// once the listeners are closed; those still open then are closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Log filter (`error`, `warn`, `info`, `debug`, or a tracing directive).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,

    /// Log lines as `text`, or `json` (one JSON object per line, for log
    /// shippers; the totals at exit become one JSON object too).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Once every socket is bound, run as USER (and GROUP, else the user's
    /// primary group): names or numeric ids. Needs root.
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<UserSpec>,

    /// Validate the configuration and the policy, print the warnings and
    /// the reply that would be served, and exit (0 if it can be served, 2 if
    /// not) without binding anything.
    #[arg(long)]
    pub check: bool,

    /// Refuse the policy (exit 2, before anything is served) when it draws a
    /// compatibility warning: a client (Unity Web Player, Lightspark) that
    /// would refuse it or read it differently. For deploy pipelines, with
    /// --check.
    #[arg(long)]
    pub strict: bool,
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

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
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
    /// TCP_DEFER_ACCEPT: `--defer-accept` (the last of it and
    /// `--no-defer-accept` wins).
    pub defer_accept: bool,
    /// `--proxy-protocol` and its `--proxy-from` ranges.
    pub proxy: Option<ProxySettings>,
    /// `--max-per-ip`: connections one client address may hold open.
    pub max_per_ip: Option<std::num::NonZeroU32>,
    /// Log filter.
    pub log: String,
    /// `--log-format`.
    pub log_format: LogFormat,
    /// `--user`: who to run as once everything is bound.
    pub user: Option<UserSpec>,
    /// Sockets passed by the service manager (socket activation): served
    /// instead of `listen`'s addresses, which are then theirs.
    pub passed: Option<PassedSockets>,
    /// `--metrics`: where to serve `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// `--gateway`: game ports and their upstreams.
    pub gateways: Vec<crate::gateway::GatewaySpec>,
    /// `--gateway-wait`.
    pub gateway_wait: Duration,
    /// `--upstream-proxy-protocol`.
    pub upstream_proxy: Option<crate::gateway::UpstreamProxy>,
    /// `--drain-timeout`.
    pub drain_timeout: Duration,
    /// `--websocket`: bridge ports and their upstreams.
    pub websockets: Vec<crate::gateway::GatewaySpec>,
    /// `--ws-origin`: the pages that may open a bridge (any, if empty).
    pub ws_origins: flashpolicy_proto::ws::Origins,
    /// `--tls-cert`/`--tls-key`, loaded: the bridge speaks `wss://`.
    pub tls: Option<std::sync::Arc<crate::tls::TlsCell>>,
}

/// A configuration that cannot be served.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The policy cannot be loaded.
    Policy(LoadError),
    /// `--max-connections 0`.
    ZeroMaxConnections,
    /// `--timeout 0`.
    ZeroTimeout,
    /// A `--timeout` above [`MAX_TIMEOUT`].
    TimeoutTooLong(Duration),
    /// `--proxy-from` without `--proxy-protocol`.
    ProxyFromWithoutProxyProtocol,
    /// `--gateway-wait` is 0, or not shorter than `--timeout` (it would
    /// never relay a silent client).
    GatewayWait(Duration),
    /// `--upstream-proxy-protocol` without `--gateway` or `--websocket`.
    UpstreamProxyWithoutGateway,
    /// `--ws-origin` without `--websocket`.
    WsOriginWithoutWebsocket,
    /// `--tls-cert` without `--websocket`, or with `--proxy-protocol`.
    TlsWithout(&'static str),
    /// The certificate or key cannot be used.
    Tls(crate::tls::TlsError),
    /// `--strict` and the policy draws compatibility warnings (each as
    /// logged: `name:line:column: advice`).
    Strict(Vec<String>),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Policy(e) => fmt::Display::fmt(e, f),
            ConfigError::ZeroMaxConnections => f.write_str("--max-connections must be at least 1"),
            ConfigError::ZeroTimeout => f.write_str("--timeout must be more than 0"),
            ConfigError::TimeoutTooLong(timeout) => write!(
                f,
                "--timeout {} is too long: the most is {}",
                humantime::format_duration(*timeout),
                humantime::format_duration(MAX_TIMEOUT)
            ),
            ConfigError::ProxyFromWithoutProxyProtocol => f.write_str(
                "--proxy-from only applies with --proxy-protocol (add --proxy-protocol, or drop \
                 --proxy-from)",
            ),
            ConfigError::GatewayWait(wait) => write!(
                f,
                "--gateway-wait {} must be more than 0 and shorter than --timeout",
                humantime::format_duration(*wait)
            ),
            ConfigError::UpstreamProxyWithoutGateway => f.write_str(
                "--upstream-proxy-protocol only applies with --gateway or --websocket (add \
                 --gateway LISTEN=UPSTREAM, or drop --upstream-proxy-protocol)",
            ),
            ConfigError::TlsWithout(why) => write!(f, "--tls-cert: {why}"),
            ConfigError::Tls(e) => fmt::Display::fmt(e, f),
            ConfigError::WsOriginWithoutWebsocket => f.write_str(
                "--ws-origin only applies with --websocket (add --websocket LISTEN=UPSTREAM, or \
                 drop --ws-origin)",
            ),
            ConfigError::Strict(warnings) => {
                write!(
                    f,
                    "--strict: the policy draws {} compatibility warning(s):",
                    warnings.len()
                )?;
                for w in warnings {
                    write!(f, "\n  {w}")?;
                }
                Ok(())
            }
        }
    }
}

// The policy's error is the whole message, so it is not also the source.
impl std::error::Error for ConfigError {}

impl From<LoadError> for ConfigError {
    fn from(e: LoadError) -> ConfigError {
        ConfigError::Policy(e)
    }
}

/// The longest `--timeout`: a client that has sent no request for an hour is
/// not going to, and a bound keeps deadline arithmetic far from the clock's
/// limit.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The shortest `--timeout` that `--defer-accept` goes with without a
/// warning: the kernel holds a silent client for about
/// [`crate::listener::DEFER_ACCEPT_HOLD`] (1 s), which would be most of a
/// shorter timeout.
pub const DEFER_ACCEPT_MIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the policy is served, for its warnings: the policy listeners and
/// the `--gateway` ports (a policy answered on a game port of 1024 or
/// above grants no port below 1024).
fn with_gateways(listen: &Listen, gateways: &[crate::gateway::GatewaySpec]) -> Listen {
    if gateways.is_empty() {
        return listen.clone();
    }
    let mut addrs = match listen {
        Listen::Addrs(addrs) => addrs.clone(),
        Listen::Default => vec![SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 843))],
    };
    addrs.extend(gateways.iter().map(|g| g.listen));
    Listen::Addrs(addrs)
}

impl Config {
    /// How long a worker gives a connection after accepting it: `timeout`,
    /// less what `TCP_DEFER_ACCEPT` may already have held it in the kernel,
    /// so that a client sees `--timeout` from its connect.
    pub fn after_accept_timeout(&self) -> Duration {
        let hold = if self.defer_accept {
            crate::listener::DEFER_ACCEPT_HOLD
        } else {
            Duration::ZERO
        };
        flashpolicy_proto::serve::after_accept(self.timeout, hold)
    }

    /// Validates the arguments and builds the reply. Nothing is bound yet.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        Config::from_args_passed(args, None)
    }

    /// [`Config::from_args`] with the sockets a service manager passed, if
    /// any (see [`crate::activation`]): they are served instead of
    /// `--listen`, which is then ignored with a warning.
    pub fn from_args_passed(
        args: Args,
        passed: Option<PassedSockets>,
    ) -> Result<Config, ConfigError> {
        let mut ignored_listen = None;
        let listen = match &passed {
            Some(p) => {
                if !args.listen.is_empty() {
                    ignored_listen = Some(format!(
                        "--listen is ignored: serving the {} socket(s) passed by the service manager (LISTEN_FDS)",
                        p.sockets.len()
                    ));
                }
                Listen::Addrs(p.addrs())
            }
            None if args.listen.is_empty() => Listen::Default,
            None => Listen::Addrs(args.listen),
        };
        let policy_source = match args.policy {
            Some(path) => PolicySource::File(path),
            None => PolicySource::Allow(args.allow),
        };
        let LoadedPolicy {
            reply,
            summary: policy_summary,
            mut warnings,
            compat,
        } = policy_source.load(&with_gateways(&listen, &args.gateway))?;
        if args.strict && !compat.is_empty() {
            return Err(ConfigError::Strict(compat));
        }
        warnings.extend(ignored_listen);

        if args.max_connections == 0 {
            return Err(ConfigError::ZeroMaxConnections);
        }
        if args.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if args.timeout > MAX_TIMEOUT {
            return Err(ConfigError::TimeoutTooLong(args.timeout));
        }
        if args.defer_accept && args.timeout < DEFER_ACCEPT_MIN_TIMEOUT {
            warnings.push(format!(
                "--defer-accept with --timeout {}: the kernel holds a client that sends \
                 nothing for about 1 s before the server sees it, then the server gives it \
                 half of --timeout",
                humantime::format_duration(args.timeout)
            ));
        }
        if !args.proxy_protocol && !args.proxy_from.is_empty() {
            return Err(ConfigError::ProxyFromWithoutProxyProtocol);
        }
        if args.proxy_protocol && args.proxy_from.is_empty() {
            warnings.push(
                "--proxy-protocol without --proxy-from: any peer may send a PROXY header and \
                 claim any client address"
                    .to_string(),
            );
        }
        if !args.gateway.is_empty()
            && (args.gateway_wait.is_zero() || args.gateway_wait >= args.timeout)
        {
            return Err(ConfigError::GatewayWait(args.gateway_wait));
        }
        if args.gateway.is_empty()
            && args.websocket.is_empty()
            && args.upstream_proxy_protocol.is_some()
        {
            return Err(ConfigError::UpstreamProxyWithoutGateway);
        }
        if args.websocket.is_empty() && !args.ws_origin.is_empty() {
            return Err(ConfigError::WsOriginWithoutWebsocket);
        }
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                if args.websocket.is_empty() {
                    return Err(ConfigError::TlsWithout(
                        "only applies with --websocket (add --websocket LISTEN=UPSTREAM)",
                    ));
                }
                if args.proxy_protocol {
                    return Err(ConfigError::TlsWithout(
                        "a PROXY header before TLS is not supported: terminate TLS at the \
                         balancer, or drop --proxy-protocol",
                    ));
                }
                let cell = crate::tls::TlsCell::load(cert, key).map_err(ConfigError::Tls)?;
                Some(std::sync::Arc::new(cell))
            }
            _ => None,
        };
        if !args.websocket.is_empty() && args.ws_origin.is_empty() {
            warnings.push(
                "--websocket without --ws-origin: any web page may open the bridge to the game \
                 on its visitors' behalf (add --ws-origin https://your-game-site)"
                    .to_string(),
            );
        }
        let proxy = args
            .proxy_protocol
            .then(|| ProxySettings::new(args.proxy_from));
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
            proxy,
            max_per_ip: args.max_per_ip,
            log: args.log,
            log_format: args.log_format,
            user: args.user,
            passed,
            metrics: args.metrics,
            gateways: args.gateway,
            gateway_wait: args.gateway_wait,
            drain_timeout: args.drain_timeout,
            upstream_proxy: args.upstream_proxy_protocol,
            websockets: args.websocket,
            ws_origins: flashpolicy_proto::ws::Origins::only(args.ws_origin),
            tls,
        })
    }
}
