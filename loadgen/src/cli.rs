//! The command line, and its translation into one validated [`RunConfig`].

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use flashpolicy_proto::proxy::Cidr;

use crate::mix::{Mix, Scenario};
use crate::proxy::{ProxyHeaders, ProxyVersion};
use crate::schedule::{RateError, Schedule};
use crate::size::parse_size;
use crate::source::{parse_sources, SourceError};
use crate::stats::ErrorKind;

/// `flashpolicy-loadgen` command line.
#[derive(Debug, Parser)]
#[command(
    name = "flashpolicy-loadgen",
    version,
    about = "Load-tests a Flash socket policy server with simulated Flash Player clients",
    long_about = "Load-tests a Flash socket policy server with simulated Flash Player clients.\n\n\
        Closed loop (--connections N): N clients, each starting again as soon as it finishes.\n\
        Open loop (--rate R): R new connections per second on a fixed schedule; latency is\n\
        measured from each connection's intended start, so stalls show in the percentiles.\n\n\
        Example: flashpolicy-loadgen --rate 2000 --duration 10s 127.0.0.1:843",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// `merge` or `plot`; without one, runs a load test against ADDR.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The load test's options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands that work on files written by earlier runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Combine interval logs (--log) from several runs or machines into one report.
    Merge(MergeArgs),
    /// Draw latency-by-percentile curves of .hgrm files (--hgrm) into one SVG.
    Plot(PlotArgs),
}

/// `merge` options.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Interval log files written with --log.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also write the combined summary as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the combined total latency as a .hgrm percentile distribution.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
}

/// `plot` options.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Percentile distribution files written with --hgrm.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Name of each curve, in file order (default: the file name).
    #[arg(long = "label", value_name = "NAME")]
    pub labels: Vec<String>,
    /// Title of the picture.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
}

/// Options of a load test.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The server, as HOST:PORT: 127.0.0.1:843, localhost:843, or an IPv6 address in brackets and a port.
    #[arg(value_name = "ADDR", required = true)]
    pub target: Option<String>,

    /// Closed loop: this many clients, each starting again as soon as it
    /// finishes (default: 10 when --rate is not given).
    #[arg(short = 'c', long, value_name = "N", conflicts_with = "rate")]
    pub connections: Option<usize>,

    /// Open loop: this many new connections per second on a fixed schedule.
    #[arg(short = 'R', long, value_name = "PER_SEC")]
    pub rate: Option<f64>,

    /// Open loop: grow the rate linearly from 0 to --rate over this time.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "rate")]
    pub ramp: Option<Duration>,

    /// How long to record, after --warmup (default 10s unless --count is given).
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,

    /// Record this many clients, after --warmup, then stop.
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,

    /// Run this long first without recording.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0s")]
    pub warmup: Duration,

    /// Threads, each with its own event loop (default: the CPUs this process may use).
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,

    /// Give up on a connection with no complete reply after this long.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5s")]
    pub timeout: Duration,

    /// The reply must equal this file byte for byte (a NUL is appended when
    /// the file does not end with one, so the server's policy file works).
    /// Without it, a reply must be a valid policy followed by exactly one NUL.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,

    /// Local addresses to connect from, in turn: a range and/or a comma list,
    /// e.g. 127.0.0.2-127.0.0.254. Uses IP_BIND_ADDRESS_NO_PORT.
    #[arg(long, value_name = "ADDRS")]
    pub source: Option<String>,

    /// Flash Player's sequence: when the target gives no valid policy within
    /// --fallback-after (or fails), ask on this port of the same host instead.
    #[arg(long, value_name = "PORT")]
    pub flash_fallback: Option<u16>,

    /// How long to wait for the target before falling back.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "3s", requires = "flash_fallback")]
    pub fallback_after: Duration,

    /// What every client does: good, idle, slow or garbage.
    #[arg(long, value_name = "NAME", conflicts_with = "mix")]
    pub scenario: Option<Scenario>,

    /// A weighted mix of scenarios, e.g. good=90,idle=10.
    #[arg(long, value_name = "MIX")]
    pub mix: Option<Mix>,

    /// Slow clients send one request byte this often.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "100ms")]
    pub slow_interval: Duration,

    /// After a client's TCP handshake completes, wait this long before
    /// sending its request. 0s (the default) sends at once, in the same
    /// turn as connect when the handshake is already done (as on
    /// loopback); a real client on a real network sends some tens of
    /// microseconds after the handshake, and independent clients one event
    /// loop turn later. Latency still counts from the (intended) start;
    /// the delay counts against --timeout.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0s")]
    pub send_delay: Duration,

    /// Open loop: most connections open at once (default: what the descriptor
    /// limit allows). Connections over it wait, and their wait counts as latency.
    #[arg(long, value_name = "N")]
    pub max_inflight: Option<usize>,

    /// Send a PROXY protocol header (`v1` or `v2`) before each request, with
    /// the connection's own addresses (for a server run with --proxy-protocol).
    #[arg(long, value_name = "VERSION")]
    pub proxy_protocol: Option<ProxyVersion>,

    /// With --proxy-protocol: claim source addresses from this range, cycling
    /// through it (e.g. `198.51.100.0/24`), instead of the connection's own.
    #[arg(long, value_name = "CIDR", requires = "proxy_protocol")]
    pub proxy_source: Option<Cidr>,

    /// Echo test (a gateway in front of an echo server): instead of the
    /// policy request, each client sends this many bytes (4096, 64KiB,
    /// 1MiB; a pattern of its own), half-closes, and must read exactly
    /// them back before the server closes.
    #[arg(long, value_name = "BYTES", value_parser = parse_size,
          conflicts_with_all = ["scenario", "mix", "expect", "flash_fallback"])]
    pub payload: Option<u64>,

    /// With --payload, Flash Player's sequence against a gateway on the
    /// game's port: each client first asks the target for the policy (which
    /// must be valid), then opens a second connection to it for the echo.
    #[arg(long, requires = "payload")]
    pub flash_gateway: bool,

    /// With --payload: do not half-close after sending; the client closes
    /// once the whole payload has come back (for relays that close both
    /// ways at a client's half-close, such as sslh).
    #[arg(long, requires = "payload")]
    pub no_half_close: bool,

    /// With --payload, through a WebSocket bridge (as Ruffle reaches a game):
    /// each client opens a WebSocket to the target (`GET /`, checking the
    /// accept key), sends the payload in masked binary frames, expects it
    /// back in binary frames, and closes with a close frame (after the
    /// payload; with --no-half-close, once the whole echo is back).
    #[arg(long, requires = "payload", conflicts_with = "flash_gateway")]
    pub websocket: bool,

    /// With --websocket: the page's origin sent in the upgrade request
    /// (e.g. `https://game.example.com`); none without it.
    #[arg(long, value_name = "ORIGIN", requires = "websocket")]
    pub ws_origin: Option<String>,

    /// Write a JSON summary to FILE.
    #[arg(long, value_name = "FILE", long_help = json_help())]
    pub json: Option<PathBuf>,

    /// Write the good clients' total latency as an HdrHistogram .hgrm percentile distribution (milliseconds).
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,

    /// Write an HdrHistogram V2 interval log (one histogram per second) to FILE.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Print a progress line every second even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,

    /// Do not print the text report.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Why the options do not describe a load test that can run (a usage
/// error: exit status 2).
#[derive(Debug)]
pub enum ConfigError {
    /// No ADDR.
    NoTarget,
    /// ADDR did not resolve.
    Resolve {
        /// ADDR as given.
        target: String,
        /// Why.
        source: std::io::Error,
    },
    /// ADDR resolved to nothing.
    NoAddress(String),
    /// A bad `--rate`.
    Rate(RateError),
    /// `--connections 0`.
    ZeroConnections,
    /// `--count 0`.
    ZeroCount,
    /// `--duration 0s`.
    ZeroDuration,
    /// `--timeout 0s`.
    ZeroTimeout,
    /// The `--expect` file could not be read.
    Expect {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A bad `--source` list.
    Source(SourceError),
    /// `--source` names no address of the target's family.
    SourceFamily(SocketAddr),
    /// `--max-inflight 0`.
    ZeroMaxInflight,
    /// `--proxy-source` of another family than the target.
    ProxySourceFamily(SocketAddr),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoTarget => f.write_str("the target ADDR (HOST:PORT) is required"),
            ConfigError::Resolve { target, source } => write!(
                f,
                "{target}: {source} (expected HOST:PORT, e.g. 127.0.0.1:843)"
            ),
            ConfigError::NoAddress(target) => write!(f, "{target}: no address"),
            ConfigError::Rate(e) => e.fmt(f),
            ConfigError::ZeroConnections => f.write_str("--connections must be at least 1"),
            ConfigError::ZeroCount => f.write_str("--count must be at least 1"),
            ConfigError::ZeroDuration => f.write_str("--duration must be above 0"),
            ConfigError::ZeroTimeout => f.write_str("--timeout must be above 0"),
            ConfigError::Expect { path, source } => {
                write!(f, "--expect {}: {source}", path.display())
            }
            ConfigError::Source(e) => write!(f, "--source: {e}"),
            ConfigError::SourceFamily(target) => {
                write!(f, "--source: no address of the target's family ({target})")
            }
            ConfigError::ZeroMaxInflight => f.write_str("--max-inflight must be at least 1"),
            ConfigError::ProxySourceFamily(target) => write!(
                f,
                "--proxy-source: the range must be of the target's family ({target})"
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Resolve { source, .. } | ConfigError::Expect { source, .. } => {
                Some(source)
            }
            ConfigError::Rate(e) => Some(e),
            ConfigError::Source(e) => Some(e),
            _ => None,
        }
    }
}

/// `--json`'s long help, naming the error kinds its `errors` object counts.
fn json_help() -> String {
    let kinds: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
    format!(
        "Write a JSON summary to FILE. Its \"errors\" object counts the good \
         clients' failures by kind: {}.",
        kinds.join(", ")
    )
}

/// Closed or open loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// This many clients, each restarting when it finishes.
    Closed {
        /// Concurrent clients.
        connections: usize,
    },
    /// New connections on a schedule.
    Open {
        /// The schedule.
        schedule: Schedule,
    },
}

impl Load {
    /// `"closed"` or `"open"`.
    pub fn mode(&self) -> &'static str {
        match self {
            Load::Closed { .. } => "closed",
            Load::Open { .. } => "open",
        }
    }
}

/// When recording stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Start no client after this long (after the warm-up).
    After(Duration),
    /// Record this many clients.
    Count(u64),
}

/// Flash Player's fallback to the destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// Where to ask second.
    pub addr: SocketAddr,
    /// How long the first attempt may take.
    pub after: Duration,
}

/// A validated load test.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The server.
    pub target: SocketAddr,
    /// The server as given.
    pub target_text: String,
    /// Closed or open loop.
    pub load: Load,
    /// When to stop.
    pub stop: Stop,
    /// Unrecorded time at the start.
    pub warmup: Duration,
    /// Worker threads.
    pub threads: usize,
    /// Per-connection time limit.
    pub timeout: Duration,
    /// Exact expected reply.
    pub expect: Option<Arc<[u8]>>,
    /// Local addresses to connect from.
    pub sources: Vec<IpAddr>,
    /// Flash Player's fallback.
    pub fallback: Option<Fallback>,
    /// Client behaviours.
    pub mix: Mix,
    /// Gap between a slow client's bytes.
    pub slow_interval: Duration,
    /// Wait between a client's handshake and its request.
    pub send_delay: Duration,
    /// Open loop: cap on connections open at once (whole process).
    pub max_inflight: Option<usize>,
    /// `--proxy-protocol`: a header before each request.
    pub proxy: Option<ProxyHeaders>,
    /// `--payload`: bytes each client sends and expects echoed, instead of
    /// the policy request.
    pub payload: Option<u64>,
    /// `--flash-gateway`: the policy request first, then the echo on a
    /// second connection.
    pub flash_gateway: bool,
    /// `--no-half-close`: the client closes after the whole echo, instead
    /// of half-closing after sending and waiting for the server's close.
    pub no_half_close: bool,
    /// `--websocket`: the echo goes through a WebSocket bridge; `Some`
    /// holds the `--ws-origin` (or `None` for no `Origin` header).
    pub websocket: Option<Option<String>>,
    /// Outputs.
    pub json: Option<PathBuf>,
    /// Outputs.
    pub hgrm: Option<PathBuf>,
    /// Outputs.
    pub log: Option<PathBuf>,
    /// Print progress lines even when not on a terminal.
    pub progress: bool,
    /// No text report.
    pub quiet: bool,
}

impl RunConfig {
    /// Checks and resolves the options.
    pub fn from_args(a: RunArgs) -> Result<RunConfig, ConfigError> {
        let target_text = a.target.ok_or(ConfigError::NoTarget)?;
        let target = resolve(&target_text)?;
        let load = match a.rate {
            Some(rate) => Load::Open {
                schedule: Schedule::new(rate, a.ramp.unwrap_or(Duration::ZERO))
                    .map_err(ConfigError::Rate)?,
            },
            None => {
                let connections = a.connections.unwrap_or(10);
                if connections == 0 {
                    return Err(ConfigError::ZeroConnections);
                }
                Load::Closed { connections }
            }
        };
        let stop = match (a.count, a.duration) {
            (Some(0), _) => return Err(ConfigError::ZeroCount),
            (Some(n), _) => Stop::Count(n),
            (None, Some(d)) if d.is_zero() => return Err(ConfigError::ZeroDuration),
            (None, Some(d)) => Stop::After(d),
            (None, None) => Stop::After(Duration::from_secs(10)),
        };
        if a.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        let mut threads = a
            .threads
            .map_or_else(crate::sys::available_cpus, NonZeroUsize::get);
        if let Load::Closed { connections } = load {
            threads = threads.min(connections);
        }
        if let Stop::Count(n) = stop {
            threads = threads.min(usize::try_from(n).unwrap_or(usize::MAX));
        }
        let expect = match &a.expect {
            Some(path) => {
                let mut bytes = std::fs::read(path).map_err(|source| ConfigError::Expect {
                    path: path.clone(),
                    source,
                })?;
                if bytes.last() != Some(&0) {
                    bytes.push(0);
                }
                Some(Arc::from(bytes))
            }
            None => None,
        };
        let sources = match &a.source {
            Some(spec) => {
                let s = parse_sources(spec).map_err(ConfigError::Source)?;
                if !s.iter().any(|ip| ip.is_ipv4() == target.is_ipv4()) {
                    return Err(ConfigError::SourceFamily(target));
                }
                s
            }
            None => Vec::new(),
        };
        let fallback = a.flash_fallback.map(|port| Fallback {
            addr: SocketAddr::new(target.ip(), port),
            after: a.fallback_after,
        });
        let mix = match (a.scenario, a.mix) {
            (Some(s), _) => Mix::only(s),
            (None, Some(m)) => m,
            (None, None) => Mix::only(Scenario::Good),
        };
        if a.max_inflight == Some(0) {
            return Err(ConfigError::ZeroMaxInflight);
        }
        if let Some(c) = a.proxy_source {
            if c.network().is_ipv4() != target.is_ipv4() {
                return Err(ConfigError::ProxySourceFamily(target));
            }
        }
        let proxy = a.proxy_protocol.map(|version| ProxyHeaders {
            version,
            source: a.proxy_source,
        });
        Ok(RunConfig {
            target,
            target_text,
            load,
            stop,
            warmup: a.warmup,
            threads: threads.max(1),
            timeout: a.timeout,
            expect,
            sources,
            fallback,
            mix,
            slow_interval: a.slow_interval,
            send_delay: a.send_delay,
            max_inflight: a.max_inflight,
            proxy,
            payload: a.payload,
            flash_gateway: a.flash_gateway,
            no_half_close: a.no_half_close,
            websocket: a.websocket.then_some(a.ws_origin),
            json: a.json,
            hgrm: a.hgrm,
            log: a.log,
            progress: a.progress,
            quiet: a.quiet,
        })
    }
}

fn resolve(text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    text.to_socket_addrs()
        .map_err(|source| ConfigError::Resolve {
            target: text.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| ConfigError::NoAddress(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Result<RunConfig, Box<dyn std::error::Error>> {
        let mut v = vec!["flashpolicy-loadgen"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v)?;
        Ok(RunConfig::from_args(cli.run)?)
    }

    #[test]
    fn config_errors_say_which_option() {
        let err = |args: &[&str]| cfg(args).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            err(&["--rate", "0", "127.0.0.1:1"]),
            "--rate must be above 0 (got 0)"
        );
        assert_eq!(
            err(&["--timeout", "0s", "127.0.0.1:1"]),
            "--timeout must be above 0"
        );
        assert_eq!(
            err(&["--source", "::1", "127.0.0.1:1"]),
            "--source: no address of the target's family (127.0.0.1:1)"
        );
        assert_eq!(
            err(&["--source", "127.0.0.9-127.0.0.2", "127.0.0.1:1"]),
            "--source: \"127.0.0.9-127.0.0.2\": the range runs backwards"
        );
    }

    #[test]
    fn defaults_and_modes() {
        let c = cfg(&["127.0.0.1:843"]).expect("valid");
        assert_eq!(c.load, Load::Closed { connections: 10 });
        assert_eq!(c.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!(c.timeout, Duration::from_secs(5));
        let c = cfg(&["--rate", "500", "--count", "100", "[::1]:843"]).expect("valid");
        assert_eq!(c.load.mode(), "open");
        assert_eq!(c.stop, Stop::Count(100));
        assert!(cfg(&["--rate", "5", "-c", "5", "127.0.0.1:1"]).is_err());
        assert!(cfg(&["--count", "5", "--duration", "1s", "127.0.0.1:1"]).is_err());
        assert!(cfg(&["--ramp", "1s", "127.0.0.1:1"]).is_err());
        assert!(cfg(&["--scenario", "idle", "--mix", "good=1", "127.0.0.1:1"]).is_err());
        assert!(cfg(&[]).is_err());
        let c = cfg(&["--flash-fallback", "8843", "127.0.0.1:843"]).expect("valid");
        assert_eq!(
            c.fallback,
            Some(Fallback {
                addr: "127.0.0.1:8843".parse().expect("addr"),
                after: Duration::from_secs(3)
            })
        );
        assert_eq!(c.send_delay, Duration::ZERO);
        let c = cfg(&["--send-delay", "50us", "127.0.0.1:1"]).expect("valid");
        assert_eq!(c.send_delay, Duration::from_micros(50));
        assert!(cfg(&["--send-delay", "50", "127.0.0.1:1"]).is_err());
        let c = cfg(&["-c", "2", "-t", "8", "127.0.0.1:1"]).expect("valid");
        assert_eq!(c.threads, 2);
    }

    #[test]
    fn json_help_names_every_error_kind() {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let help = cmd.render_long_help().to_string();
        for k in ErrorKind::ALL {
            assert!(help.contains(k.name()), "{k} missing from --help");
        }
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["x", "merge", "a.hlog", "b.hlog"]).expect("valid");
        assert!(matches!(cli.command, Some(Command::Merge(m)) if m.files.len() == 2));
        let cli = Cli::try_parse_from([
            "x", "plot", "a.hgrm", "b.hgrm", "-o", "c.svg", "--label", "A", "--label", "B",
        ])
        .expect("valid");
        assert!(matches!(cli.command, Some(Command::Plot(p)) if p.labels == ["A", "B"]));
    }
}
