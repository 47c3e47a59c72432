//! `flashpolicyd`: parse, build, run, map errors to exit codes.
//!
//! Exit status: 0 after a clean shutdown, 2 for a usage or configuration
//! error (nothing was served), 1 when the server could not start or a worker
//! failed (returned an error, or panicked), 128 + the signal number (130 for
//! SIGINT, 143 for SIGTERM) when a second SIGINT/SIGTERM cut the drain short.
//!
//! SIGHUP reloads the policy (the `--policy` file is read and validated
//! again, or the `--allow` policy rendered again; nothing else changes). A
//! policy that fails is logged and the old one kept: a reload never stops
//! the server.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc;

use clap::Parser;
use flashpolicy_server::config::{Args, Config};
use flashpolicy_server::control::{stop_all, ShutdownFlag, Wakeup};
use flashpolicy_server::engine::{self, Stats, WorkerCtx};
use flashpolicy_server::listener::{self, ListenOptions};
use flashpolicy_server::reload::{Reloader, Replies, ReplyMailbox};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.log);
    let check = args.check;
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            // One plain line, file:line:column first, so editors and
            // scripts can jump to it.
            eprintln!("flashpolicyd: {e}");
            return ExitCode::from(2);
        }
    };
    if check {
        return print_check(&config);
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// `--check`: what would be served, on stdout, and nothing bound.
fn print_check(config: &Config) -> ExitCode {
    use std::io::Write;
    for w in &config.warnings {
        eprintln!("flashpolicyd: warning: {w}");
    }
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "policy {}: OK", config.policy_summary)
        .and_then(|()| out.write_all(config.reply.document()))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashpolicyd: writing to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn run(mut config: Config) -> Result<(), Box<dyn std::error::Error>> {
    // Before anything is bound or logged: a signal that arrives once
    // "listening on" is printed must reach the handler, not kill the process.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    for w in &config.warnings {
        warn!("{w}");
    }
    let resolved = engine::resolve_backend(config.backend, config.send_zc).map_err(|why| {
        format!("--backend uring: io_uring is not available: {why} (use --backend epoll or auto)")
    })?;
    info!("engine {}: {}", resolved.engine, resolved.reason);
    config.backend = resolved.engine.into();
    let opts = ListenOptions {
        backlog: config.backlog,
        defer_accept_secs: config
            .defer_accept
            .then(|| u32::try_from(config.timeout.as_secs().max(1)).unwrap_or(u32::MAX)),
    };
    let sockets = listener::bind_all(&config.listen, config.threads, opts)?;
    let addrs = match sockets.first() {
        Some(first) => first
            .iter()
            .map(std::net::TcpListener::local_addr)
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };

    // Open every descriptor the process needs before any worker runs: once
    // workers accept, a low RLIMIT_NOFILE can be used up at any moment, and
    // start-up must not fail half-way because of it.
    let shutdown = ShutdownFlag::default();
    let mailboxes: Vec<ReplyMailbox> = (0..sockets.len())
        .map(|_| ReplyMailbox::default())
        .collect();
    let mut wakeups = Vec::with_capacity(sockets.len());
    let mut wakers = Vec::with_capacity(sockets.len());
    let mut signal_wakers = Vec::with_capacity(sockets.len());
    for _ in 0..sockets.len() {
        let wakeup = Wakeup::new()?;
        wakers.push(wakeup.try_clone()?);
        signal_wakers.push(wakeup.try_clone()?);
        wakeups.push(wakeup);
    }
    // Never freed (see `Replies`).
    let mut replies = Replies::default();
    let reply = replies.intern(config.reply.clone());
    let signal_handle = signals.handle();
    {
        let shutdown = shutdown.clone();
        // Reloads run on their own thread: reading the policy may block (a
        // pipe, a terminal, a hung network mount), and the signal thread must
        // stay free to act on SIGINT/SIGTERM meanwhile.
        let reload = Reloader {
            source: config.policy_source.clone(),
            listen: config.listen.clone(),
            current: reply,
            replies,
            mailboxes: mailboxes.clone(),
            wakers: signal_wakers
                .iter()
                .map(Wakeup::try_clone)
                .collect::<Result<_, _>>()?,
            shutdown: shutdown.clone(),
        }
        .spawn()?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut stopping = false;
                for sig in signals.forever() {
                    if sig == SIGHUP {
                        if stopping || shutdown.is_set() {
                            info!("signal {sig}: shutting down; the policy is not reloaded");
                        } else if !reload.request() {
                            error!("signal {sig}: the reload thread is gone; not reloaded");
                        }
                    } else if !stopping {
                        stopping = true;
                        info!("signal {sig}: no longer accepting; finishing open connections");
                        stop_all(&shutdown, &signal_wakers);
                    } else {
                        // A second signal during the drain (which a long
                        // --timeout can make long) quits at once, as a shell
                        // reports a signal death.
                        error!("signal {sig} again: exiting now, open connections dropped");
                        std::process::exit(128 + sig);
                    }
                }
            })?;
    }

    let per_worker = config.max_connections.div_ceil(config.threads).max(1);
    let cpus = online_cpus();
    let (done_tx, done_rx) = mpsc::channel::<(usize, std::io::Result<Stats>)>();
    // Test hook (debug builds only): the worker with this id panics at start.
    #[cfg(debug_assertions)]
    let test_panic_worker: Option<usize> = std::env::var("FLASHPOLICYD_TEST_PANIC_WORKER")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut handles = Vec::with_capacity(config.threads);
    for (id, ((listeners, wakeup), new_reply)) in
        sockets.into_iter().zip(wakeups).zip(mailboxes).enumerate()
    {
        let ctx = WorkerCtx {
            id,
            listeners,
            reply,
            new_reply,
            timeout: config.timeout,
            max_connections: per_worker,
            wakeup,
            shutdown: shutdown.clone(),
            send_zc: config.send_zc,
        };
        let chosen = resolved.engine;
        let pin = config.pin.then(|| cpus[id % cpus.len()]);
        let report = Report {
            id,
            done: Some(done_tx.clone()),
        };
        #[cfg(debug_assertions)]
        let panic_hook = test_panic_worker == Some(id);
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || {
                    #[cfg(debug_assertions)]
                    if panic_hook {
                        panic!("worker {id}: FLASHPOLICYD_TEST_PANIC_WORKER asked for a panic");
                    }
                    if let Some(cpu) = pin {
                        if let Err(e) = pin_to_cpu(cpu) {
                            warn!("worker {id}: cannot pin to CPU {cpu}: {e}");
                        }
                    }
                    let result = engine::run_worker(chosen, ctx);
                    report.send(result);
                })?,
        );
    }
    drop(done_tx);
    // Logged once everything is up: tests and scripts wait for these lines.
    for addr in &addrs {
        info!("listening on {addr}");
    }
    info!(
        "engine {}, {} threads, timeout {:?}, max {} connections, policy {}",
        config.backend,
        config.threads,
        config.timeout,
        config.max_connections,
        config.policy_summary
    );

    let mut totals = Stats::default();
    let mut failed = false;
    for (id, result) in done_rx.iter() {
        match result {
            Ok(stats) => totals += stats,
            Err(e) => {
                error!("worker {id} failed: {e}");
                failed = true;
                stop_all(&shutdown, &wakers);
            }
        }
    }
    for (id, h) in handles.into_iter().enumerate() {
        if h.join().is_err() {
            // Its Report has normally said so already, and the others have
            // been stopped; a panic is a failure whatever was reported.
            if !failed {
                error!("worker {id} panicked");
            }
            failed = true;
        }
    }
    signal_handle.close();
    info!(
        "stopped: served {}, rejected {}, timed out {}, failed {}, shed {} (accepted {})",
        totals.served,
        totals.rejected,
        totals.timed_out,
        totals.failed,
        totals.shed,
        totals.accepted
    );
    if failed {
        return Err("a worker failed".into());
    }
    Ok(())
}

/// Carries a worker's result to the main thread, and an error in its place
/// when the worker unwinds without one (a panic), so that the main thread
/// stops the others and exits 1 instead of waiting on them and exiting 0.
/// Release builds set `panic = "abort"`: there a worker panic kills the whole
/// process before anything is reported.
struct Report {
    id: usize,
    done: Option<mpsc::Sender<(usize, std::io::Result<Stats>)>>,
}

impl Report {
    fn send(mut self, result: std::io::Result<Stats>) {
        if let Some(done) = self.done.take() {
            let _ = done.send((self.id, result));
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let error = std::io::Error::other("the worker ended without a result (it panicked)");
            let _ = done.send((self.id, Err(error)));
        }
    }
}

/// The CPUs this process may run on, in order.
fn online_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity
    // writes at most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above; pid 0 is the calling thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    let cpus: Vec<usize> = if rc == 0 {
        // SAFETY: CPU_ISSET reads the set we own, with an index below CPU_SETSIZE.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside the set we own; `cpu` comes from
    // sched_getaffinity so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: passes a pointer to our live set and its exact size; pid 0 is
    // the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
