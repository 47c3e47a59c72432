//! Runs a load test: splits the load over worker threads, gathers their
//! per-second intervals (progress line, `--log`), merges their totals.
//!
//! The recording window (`duration_s`) is `--duration` when given; with
//! `--count` it runs from the end of the warm-up to the last recorded
//! completion. Throughput is good replies per second of that window.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::cli::{Load, RunConfig, Stop};
use crate::hlog;
use crate::mix::Scenario;
use crate::report::Summary;
use crate::stats::{Latencies, MergeError, Stats};
use crate::sys;
use crate::worker::{self, Interval, Msg, Plan, Share};

/// Descriptors kept back from the connection budget (files, epoll, pipes).
const RESERVED_FDS: u64 = 64;

/// Why a run has no result.
#[derive(Debug)]
pub enum RunError {
    /// The descriptor limit could not be read.
    Rlimit(io::Error),
    /// `--connections` is above what the descriptor limit allows.
    TooManyConnections {
        /// `--connections`.
        connections: usize,
        /// The descriptor limit.
        nofile: u64,
    },
    /// A `--source` address cannot be bound to.
    SourceNotLocal {
        /// The address.
        ip: IpAddr,
        /// Why.
        source: io::Error,
    },
    /// The `--log` file could not be created.
    LogCreate {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The `--log` file could not be written.
    LogWrite(io::Error),
    /// A signal handler could not be installed.
    Signal {
        /// The signal.
        signal: i32,
        /// Why.
        source: io::Error,
    },
    /// A worker thread could not be started.
    Spawn(io::Error),
    /// A worker failed.
    Worker {
        /// Which.
        id: usize,
        /// Why.
        source: io::Error,
    },
    /// A worker stopped without a result.
    WorkerPanicked {
        /// Which.
        id: usize,
    },
    /// The workers' results could not be added up.
    Merge(MergeError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Rlimit(e) => write!(f, "getrlimit: {e}"),
            RunError::TooManyConnections {
                connections,
                nofile,
            } => write!(
                f,
                "--connections {connections} needs more descriptors than this process may open \
                 ({nofile}); raise the hard limit (ulimit -Hn) or use fewer connections"
            ),
            RunError::SourceNotLocal { ip, source } => write!(
                f,
                "--source {ip}: cannot bind to it ({source}); is it an address of this machine?"
            ),
            RunError::LogCreate { path, source } => {
                write!(f, "--log {}: {source}", path.display())
            }
            RunError::LogWrite(e) => write!(f, "--log: {e}"),
            RunError::Signal { signal, source } => {
                write!(f, "cannot handle signal {signal}: {source}")
            }
            RunError::Spawn(e) => write!(f, "cannot start a worker thread: {e}"),
            RunError::Worker { id, source } => write!(f, "worker {id} failed: {source}"),
            RunError::WorkerPanicked { id } => {
                write!(f, "worker {id} stopped without a result (it panicked)")
            }
            RunError::Merge(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Rlimit(e) | RunError::LogWrite(e) | RunError::Spawn(e) => Some(e),
            RunError::SourceNotLocal { source, .. }
            | RunError::LogCreate { source, .. }
            | RunError::Signal { source, .. }
            | RunError::Worker { source, .. } => Some(source),
            RunError::Merge(e) => Some(e),
            RunError::TooManyConnections { .. } | RunError::WorkerPanicked { .. } => None,
        }
    }
}

/// Runs the test described by `cfg` and returns its summary.
pub fn run(cfg: RunConfig) -> Result<Summary, RunError> {
    let nofile = sys::raise_nofile_limit().map_err(RunError::Rlimit)?;
    let budget = usize::try_from(nofile.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
    if let Load::Closed { connections } = cfg.load {
        if connections > budget {
            return Err(RunError::TooManyConnections {
                connections,
                nofile,
            });
        }
    }
    check_sources(&cfg)?;
    let total_inflight = cfg.max_inflight.unwrap_or(budget).min(budget);
    let threads = cfg.threads;
    let per_thread_inflight = total_inflight.div_ceil(threads).max(1);

    let mut log = match &cfg.log {
        Some(path) => Some(
            hlog::Writer::create(path, SystemTime::now() + cfg.warmup).map_err(|source| {
                RunError::LogCreate {
                    path: path.clone(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    let progress = cfg.progress || std::io::stderr().is_terminal();
    let live = std::io::stderr().is_terminal() && !cfg.progress;

    // Ctrl-C (or SIGTERM): stop starting clients, finish those in flight,
    // report. A second one quits at once.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .map_err(|source| RunError::Signal {
                signal: sig,
                source,
            })?;
    }
    let mut stopped_at: Option<Instant> = None;
    let mut last_warm_note = Instant::now();

    let cfg = Arc::new(cfg);
    let cpu0 = sys::process_cpu_time();
    let t0 = Instant::now();
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut handles = Vec::with_capacity(threads);
    for id in 0..threads {
        let plan = Plan {
            id,
            config: Arc::clone(&cfg),
            t0,
            share: share_of(&cfg, id),
            max_inflight: per_thread_inflight,
            stop: Arc::clone(&stop),
        };
        let tx = tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{id}"))
            .spawn(move || worker::run(plan, tx))
            .map_err(RunError::Spawn)?;
        handles.push(h);
    }
    drop(tx);

    let mut totals = Stats::new();
    let mut failure: Option<RunError> = None;
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut last_index = vec![None::<u64>; threads];
    let mut done = vec![false; threads];
    let mut next_emit = 0u64;
    let mut cumulative = Pending::default();
    loop {
        if stopped_at.is_none() && stop.load(Ordering::Relaxed) {
            stopped_at = Some(Instant::now());
            eprintln!(
                "\nflashpolicy-loadgen: interrupted; finishing the connections in flight \
                 (up to --timeout); interrupt again to quit"
            );
        }
        let msg = match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let warming = t0.elapsed() < cfg.warmup;
                if progress && warming && last_warm_note.elapsed() >= Duration::from_secs(1) {
                    last_warm_note = Instant::now();
                    progress_line(
                        live,
                        &format!(
                            "warming up, {:.0} s left",
                            (cfg.warmup - t0.elapsed()).as_secs_f64()
                        ),
                    );
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Msg::Interval(iv) => {
                last_index[iv.worker] = Some(iv.index);
                pending.entry(iv.index).or_default().add(&iv);
            }
            Msg::Done { id, result } => {
                done[id] = true;
                match result {
                    Ok(stats) => {
                        if let Err(e) = totals.add(&stats) {
                            failure.get_or_insert(RunError::Merge(e));
                        }
                    }
                    Err(source) => {
                        failure.get_or_insert(RunError::Worker { id, source });
                    }
                }
            }
        }
        // Emit every interval all workers have reported (or will never report).
        while pending.contains_key(&next_emit) {
            let complete =
                (0..threads).all(|w| done[w] || last_index[w].is_some_and(|i| i >= next_emit));
            if !complete {
                break;
            }
            let p = pending.remove(&next_emit).unwrap_or_default();
            if let Some(log) = &mut log {
                if let Err(e) = log.interval(next_emit, p.length, &p.latency) {
                    failure.get_or_insert(RunError::LogWrite(e));
                }
            }
            cumulative.add_pending(&p);
            if progress && (p.ok + p.errors > 0 || p.length >= Duration::from_millis(500)) {
                progress_line(live, &format!(
                    "[{:>4} s] {:>8.0} ok/s, errors {}, p99 {} µs (interval) / {} µs (so far), in flight {}",
                    next_emit + 1,
                    p.ok as f64 / p.length.as_secs_f64().max(1e-3),
                    cumulative.errors,
                    p.latency.total.value_at_quantile(0.99),
                    cumulative.latency.total.value_at_quantile(0.99),
                    p.in_flight
                ));
            }
            next_emit += 1;
        }
        if done.iter().all(|d| *d) && pending.is_empty() {
            break;
        }
    }
    for h in handles {
        let _ = h.join();
    }
    // A worker that panicked never said Done: its clients are unaccounted
    // for, so the run has no result (rather than a report of zeros).
    if let Some(id) = done.iter().position(|d| !*d) {
        failure.get_or_insert(RunError::WorkerPanicked { id });
    }
    if live {
        eprintln!();
    }
    let elapsed = t0.elapsed();
    let cpu = sys::process_cpu_time().since(cpu0);
    if let Some(e) = failure {
        return Err(e);
    }
    let rec_start = t0 + cfg.warmup;
    let duration_s = match (stopped_at, cfg.stop) {
        (Some(at), Stop::After(d)) => at.saturating_duration_since(rec_start).min(d).as_secs_f64(),
        (None, Stop::After(d)) => d.as_secs_f64(),
        (_, Stop::Count(_)) => totals.last_completion.as_secs_f64(),
    };
    let scenarios: Vec<Scenario> = cfg.mix.scenarios().collect();
    let summary = Summary {
        mode: cfg.load.mode().to_string(),
        description: describe(&cfg),
        duration_s,
        stats: totals,
        scenarios,
        rate: match cfg.load {
            Load::Open { schedule } => Some(schedule.rate()),
            Load::Closed { .. } => None,
        },
        connections: match cfg.load {
            Load::Closed { connections } => Some(connections),
            Load::Open { .. } => None,
        },
        threads: Some(threads),
        cpu: Some(cpu),
        elapsed: Some(elapsed),
        fallback: cfg.fallback.is_some(),
        send_delay: Some(cfg.send_delay),
        proxy_protocol: cfg.proxy.map(|p| p.version.name()),
        payload: cfg.payload,
        flash_gateway: cfg.flash_gateway,
        websocket: cfg.websocket.is_some(),
    };
    if let Some(log) = log {
        log.finish(&summary).map_err(RunError::LogWrite)?;
    }
    Ok(summary)
}

fn describe(cfg: &RunConfig) -> String {
    let load = match cfg.load {
        Load::Closed { connections } => format!("closed loop, {connections} connections"),
        Load::Open { schedule } => format!("open loop, {} connections/s", schedule.rate()),
    };
    let stop = match cfg.stop {
        Stop::After(d) => format!("for {d:?}"),
        Stop::Count(n) => format!("for {n} clients"),
    };
    let warm = if cfg.warmup.is_zero() {
        String::new()
    } else {
        format!(" after {:?} warm-up", cfg.warmup)
    };
    let send_delay = if cfg.send_delay.is_zero() {
        String::new()
    } else {
        format!(", send delay {:?}", cfg.send_delay)
    };
    let send_delay = match cfg.proxy {
        Some(p) => match p.source {
            Some(range) => format!("{send_delay}, PROXY {} from {range}", p.version),
            None => format!("{send_delay}, PROXY {}", p.version),
        },
        None => send_delay,
    };
    let send_delay = match (cfg.payload, cfg.flash_gateway, &cfg.websocket) {
        (Some(p), true, _) => format!("{send_delay}, policy then {p}-byte echo (Flash gateway)"),
        (Some(p), false, Some(_)) => format!("{send_delay}, {p}-byte echo over WebSocket"),
        (Some(p), false, None) => format!("{send_delay}, {p}-byte echo payload"),
        (None, _, _) => send_delay,
    };
    let target = if cfg.target_text == cfg.target.to_string() {
        cfg.target_text.clone()
    } else {
        format!("{} ({})", cfg.target_text, cfg.target)
    };
    format!(
        "flashpolicy-loadgen: {load} {stop}{warm}, {} thread{}, mix {}{send_delay}, target {target}",
        cfg.threads,
        if cfg.threads == 1 { "" } else { "s" },
        cfg.mix,
    )
}

/// Worker `id`'s part of the load.
fn share_of(cfg: &RunConfig, id: usize) -> Share {
    let threads = cfg.threads;
    match cfg.load {
        Load::Closed { connections } => {
            let conns = split(connections as u64, threads, id);
            let count = match cfg.stop {
                Stop::Count(n) => {
                    // Proportional to this worker's connections.
                    let before = split_prefix(connections as u64, threads, id);
                    let c = connections as u64;
                    let lo = n * before / c;
                    let hi = n * (before + conns) / c;
                    Some(hi - lo)
                }
                Stop::After(_) => None,
            };
            Share::Closed {
                connections: usize::try_from(conns).unwrap_or(usize::MAX),
                count,
            }
        }
        Load::Open { schedule } => {
            let first_recorded = schedule.count_before(cfg.warmup);
            Share::Open {
                schedule,
                first: id as u64,
                stride: threads as u64,
                first_recorded,
                end_index: match cfg.stop {
                    Stop::Count(n) => Some(first_recorded + n),
                    Stop::After(_) => None,
                },
            }
        }
    }
}

/// `total` split over `parts`: part `i`'s share.
fn split(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts as u64;
    let i = i as u64;
    total / parts + u64::from(i < total % parts)
}

fn split_prefix(total: u64, parts: usize, i: usize) -> u64 {
    (0..i).map(|j| split(total, parts, j)).sum()
}

/// Fails early, with a clear message, when a `--source` address is not local.
fn check_sources(cfg: &RunConfig) -> Result<(), RunError> {
    for ip in cfg
        .sources
        .iter()
        .filter(|ip| ip.is_ipv4() == cfg.target.is_ipv4())
    {
        TcpListener::bind(SocketAddr::new(*ip, 0))
            .map_err(|source| RunError::SourceNotLocal { ip: *ip, source })?;
    }
    Ok(())
}

fn progress_line(live: bool, text: &str) {
    let mut err = std::io::stderr().lock();
    if live {
        let _ = write!(err, "\r\x1b[K{text}");
    } else {
        let _ = writeln!(err, "{text}");
    }
    let _ = err.flush();
}

/// One interval from all workers.
#[derive(Debug, Default)]
struct Pending {
    length: Duration,
    ok: u64,
    errors: u64,
    in_flight: usize,
    latency: Latencies,
}

impl Pending {
    fn add(&mut self, iv: &Interval) {
        self.length = self.length.max(iv.length);
        self.ok += iv.ok;
        self.errors += iv.errors;
        self.in_flight += iv.in_flight;
        let _ = self.latency.add(&iv.latency);
    }

    fn add_pending(&mut self, p: &Pending) {
        self.ok += p.ok;
        self.errors += p.errors;
        let _ = self.latency.add(&p.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_add_up() {
        for total in [0u64, 1, 7, 100] {
            for parts in 1..5 {
                let sum: u64 = (0..parts).map(|i| split(total, parts, i)).sum();
                assert_eq!(sum, total);
            }
        }
        assert_eq!(split(7, 3, 0), 3);
        assert_eq!(split(7, 3, 2), 2);
        assert_eq!(split_prefix(7, 3, 2), 5);
    }
}
