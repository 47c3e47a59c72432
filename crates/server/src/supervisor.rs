//! Runs the server from a validated [`Config`] to its exit: binds, opens
//! every descriptor, starts the reload and signal threads and one worker
//! thread per `--threads` (pinned with `--pin`) and, with `--metrics`, the
//! metrics thread; waits for the workers, stops the others when one fails,
//! and reports the totals (summed from the workers' live counters, the
//! same ones `/metrics` shows).

use std::io;
use std::sync::{mpsc, Arc};

use flashpolicy_proto::serve::{AddressLimit, End, Tally};
use tracing::{error, info, warn};

use crate::config::{Config, LogFormat};
use crate::control::{stop_all, ShutdownFlag, Signals, Wakeup};
use crate::engine::{self, Engine, WorkerCtx};
use crate::error::StartError;
use crate::gate::StartGate;
use crate::listener::{self, ListenOptions};
use crate::metrics::{self, Counters, MetricsListener, PolicyCounters};
use crate::notify::{self, Watchdog};
use crate::privileges;
use crate::reload::{Reloader, Replies, ReplyMailbox};

/// Runs the server until it has shut down: cleanly (Ok) after SIGINT or
/// SIGTERM and the drain, or with [`StartError::WorkerFailed`] once a worker
/// failed and the others were stopped. A second SIGINT/SIGTERM during the
/// drain exits the process at once, with 128 + the signal, from the signal
/// thread.
pub fn run(mut config: Config) -> Result<(), StartError> {
    let signals = Signals::install().map_err(StartError::io("cannot catch signals"))?;
    for w in &config.warnings {
        warn!("{w}");
    }
    // `--user` is looked up before anything is bound: an unknown user
    // stops the start-up at once.
    let target = config.user.as_ref().map(privileges::resolve).transpose()?;
    if target.is_none() {
        if let Some(w) = privileges::root_warning() {
            warn!("{w}");
        }
    }
    let resolved = engine::resolve_backend(config.backend, config.send_zc)?;
    info!("engine {}: {}", resolved.engine, resolved.reason);
    config.backend = resolved.engine.into();
    // Bound before the policy listeners, so a taken port fails start-up
    // before anything is served.
    let metrics_listener = match config.metrics {
        Some(addr) => {
            Some(MetricsListener::bind(addr).map_err(|error| StartError::Metrics { addr, error })?)
        }
        None => None,
    };
    let opts = ListenOptions {
        backlog: config.backlog,
        defer_accept_secs: config.defer_accept.then_some(listener::DEFER_ACCEPT_SECS),
    };
    let passed: Vec<String> = config
        .passed
        .iter()
        .flat_map(|p| &p.sockets)
        .map(|s| s.to_string())
        .collect();
    let sockets = match config.passed.take() {
        Some(passed) => passed.per_worker(config.threads, opts)?,
        None => listener::bind_all(&config.listen, config.threads, opts)?,
    };
    // `--gateway`: one set of game-port listeners per thread, bound with
    // the policy listeners so a taken port fails start-up the same way.
    // `--websocket` bridges run on the same threads, after the gateways.
    let websocket_from = config.gateways.len();
    let fronts: Vec<crate::gateway::GatewaySpec> = config
        .gateways
        .iter()
        .chain(&config.websockets)
        .copied()
        .collect();
    let gateway_sockets = crate::gateway::bind(&fronts, config.threads, config.backlog)?;
    let gateway_threads = gateway_sockets.len();
    let origins = Arc::new(config.ws_origins.clone());
    let gateway_addrs: Vec<(std::net::SocketAddr, std::net::SocketAddr)> = gateway_sockets
        .first()
        .map(|ls| {
            ls.iter()
                .filter_map(|(l, up)| l.local_addr().ok().map(|a| (a, *up)))
                .collect()
        })
        .unwrap_or_default();
    let addrs = match sockets.first() {
        Some(first) => first
            .iter()
            .map(std::net::TcpListener::local_addr)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::io("cannot read a listening address"))?,
        None => Vec::new(),
    };

    // Open every descriptor the process needs before any worker runs: once
    // workers accept, a low RLIMIT_NOFILE can be used up at any moment, and
    // start-up must not fail half-way because of it.
    let shutdown = ShutdownFlag::default();
    let loops = sockets.len() + gateway_threads;
    let mut mailboxes: Vec<ReplyMailbox> = (0..loops).map(|_| ReplyMailbox::default()).collect();
    let eventfd = StartError::io("cannot create a worker's eventfd");
    let mut wakeups = Vec::with_capacity(loops);
    let mut stop_wakers = Vec::with_capacity(loops);
    let mut signal_wakers = Vec::with_capacity(loops);
    let mut reload_wakers = Vec::with_capacity(loops);
    let mut watchdog_wakers = Vec::with_capacity(sockets.len());
    for i in 0..loops {
        let wakeup = Wakeup::new().map_err(eventfd)?;
        if i < sockets.len() {
            watchdog_wakers.push(wakeup.try_clone().map_err(eventfd)?);
        }
        stop_wakers.push(wakeup.try_clone().map_err(eventfd)?);
        signal_wakers.push(wakeup.try_clone().map_err(eventfd)?);
        reload_wakers.push(wakeup.try_clone().map_err(eventfd)?);
        wakeups.push(wakeup);
    }
    // Never freed (see `Replies`).
    let mut replies = Replies::default();
    let reply = replies.intern(config.reply.clone());
    let policy_counters = Arc::new(PolicyCounters::new(reply.len()));
    let (counters, mut tallies) = Counters::new(loops);
    let reload = Reloader {
        source: config.policy_source.clone(),
        listen: config.listen.clone(),
        current: reply,
        replies,
        mailboxes: mailboxes.clone(),
        wakers: reload_wakers,
        shutdown: shutdown.clone(),
        counters: Arc::clone(&policy_counters),
        tls: config.tls.clone(),
    }
    .spawn()
    .map_err(StartError::io("cannot start the reload thread"))?;
    let signal_handle = signals
        .spawn(shutdown.clone(), signal_wakers, reload)
        .map_err(StartError::io("cannot start the signal thread"))?;

    if let Some(listener) = metrics_listener {
        let addr = listener
            .local_addr()
            .map_err(StartError::io("cannot read the --metrics address"))?;
        metrics::serve(
            listener,
            counters.clone(),
            Arc::clone(&policy_counters),
            resolved.engine.name(),
        )
        .map_err(StartError::io("cannot start the metrics thread"))?;
        info!("metrics at http://{addr}/metrics");
    }

    let per_worker = config.max_connections.div_ceil(config.threads).max(1);
    // One table for the process, kept to its end: a connection's share is
    // a reference and an index, with no reference count to touch.
    let address_limit = config.max_per_ip.map(|cap| {
        let limit = AddressLimit::new(cap, config.max_connections).leak();
        info!(
            "max-per-ip {cap}: per address (IPv6 per /64), {} counters shared by every worker",
            limit.buckets()
        );
        limit
    });
    let cpus = if config.pin {
        online_cpus()
    } else {
        Vec::new()
    };
    let gate = StartGate::new(config.threads + gateway_threads);
    let (done_tx, done_rx) = mpsc::channel::<(usize, io::Result<()>)>();
    let mut handles = Vec::with_capacity(loops);
    let gateway_wakeups = wakeups.split_off(sockets.len());
    let gateway_mailboxes = mailboxes.split_off(sockets.len());
    let gateway_tallies = tallies.split_off(sockets.len());
    for (id, (((listeners, wakeup), new_reply), tally)) in sockets
        .into_iter()
        .zip(wakeups)
        .zip(mailboxes)
        .zip(tallies)
        .enumerate()
    {
        let ctx = WorkerCtx {
            id,
            listeners,
            reply,
            new_reply,
            timeout: config.after_accept_timeout(),
            max_connections: per_worker,
            wakeup,
            shutdown: shutdown.clone(),
            send_zc: config.send_zc,
            started: gate.ticket(),
            tally,
            proxy: config.proxy.clone().map(std::sync::Arc::new),
            address_limit,
        };
        let pin = cpus.get(id % cpus.len().max(1)).copied();
        let report = Report {
            id,
            done: Some(done_tx.clone()),
        };
        let handle = spawn_worker(resolved.engine, ctx, pin, report)
            .map_err(StartError::io("cannot start a worker thread"))?;
        handles.push(handle);
    }
    for (i, (((listeners, wakeup), new_reply), tally)) in gateway_sockets
        .into_iter()
        .zip(gateway_wakeups)
        .zip(gateway_mailboxes)
        .zip(gateway_tallies)
        .enumerate()
    {
        let ctx = crate::gateway::GatewayCtx {
            id: i,
            listeners,
            reply,
            new_reply,
            timeout: config.timeout,
            wait: config.gateway_wait,
            uring: resolved.engine == crate::engine::Engine::Uring,
            drain_timeout: config.drain_timeout,
            websocket_from,
            origins: origins.clone(),
            tls: config.tls.clone(),
            upstream_proxy: config.upstream_proxy,
            proxy: config.proxy.clone().map(Arc::new),
            max_connections: per_worker,
            address_limit,
            wakeup,
            shutdown: shutdown.clone(),
            started: gate.ticket(),
            tally,
        };
        let report = Report {
            id: config.threads + i,
            done: Some(done_tx.clone()),
        };
        let handle = std::thread::Builder::new()
            .name(format!("gateway-{i}"))
            .spawn(move || report.send(crate::gateway::worker::run(ctx)))
            .map_err(StartError::io("cannot start a gateway thread"))?;
        handles.push(handle);
    }
    drop(done_tx);
    // Every worker is set up (its ring built) or has failed: drop
    // privileges now, and let the workers serve only if that worked.
    let all_ready = gate.wait_all();
    let start_error = match &target {
        Some(target) if all_ready => target.drop_to().err().map(StartError::Privileges),
        _ => None,
    };
    gate.open(all_ready && start_error.is_none());
    if start_error.is_some() {
        stop_all(&shutdown, &stop_wakers);
    } else {
        if let Some(target) = &target {
            info!("running as {target}");
        }
        // Logged once everything is up: tests and scripts wait for these lines.
        if passed.is_empty() {
            for addr in &addrs {
                info!("listening on {addr}");
            }
        }
        for socket in &passed {
            info!("listening on {socket}");
        }
        for (i, (listen, upstream)) in gateway_addrs.iter().enumerate() {
            if i < websocket_from {
                info!("gateway on {listen} relays to {upstream}");
            } else {
                info!("websocket on {listen} bridges to {upstream}");
            }
        }
    }
    info!(
        "engine {}, {} threads, timeout {:?}, defer-accept {}, max {} connections, policy {}",
        config.backend,
        config.threads,
        config.timeout,
        if config.defer_accept { "on" } else { "off" },
        config.max_connections,
        config.policy_summary
    );
    let mut watchdog = None;
    if all_ready && start_error.is_none() {
        notify::ready();
        if let Some(interval) = notify::watchdog_interval() {
            match Watchdog::spawn(interval, shutdown.clone(), watchdog_wakers) {
                Ok(w) => watchdog = Some(w),
                // Serving goes on; the service manager's watchdog will fire.
                Err(e) => error!("cannot start the watchdog thread: {e}"),
            }
        }
    }
    if let Some(proxy) = &config.proxy {
        let from: Vec<String> = proxy.from().iter().map(ToString::to_string).collect();
        info!(
            "proxy-protocol on (v1 and v2), headers from {}",
            if from.is_empty() {
                "any peer".to_string()
            } else {
                from.join(", ")
            }
        );
    }

    let mut failed = 0;
    for (id, result) in done_rx.iter() {
        match result {
            Ok(()) => {}
            Err(e) => {
                error!("worker {id} failed: {e}");
                failed += 1;
                stop_all(&shutdown, &stop_wakers);
            }
        }
    }
    for (id, h) in handles.into_iter().enumerate() {
        if h.join().is_err() && failed == 0 {
            // Its Report has normally said so already, and the others have
            // been stopped; a panic is a failure whatever was reported.
            error!("worker {id} panicked");
            failed = 1;
        }
    }
    if let Some(watchdog) = watchdog {
        watchdog.stop();
    }
    signal_handle.close();
    if let Some(e) = start_error {
        return Err(e);
    }
    // Every worker has ended: the counts are final.
    report_totals(&counters.total(), config.log_format);
    if failed > 0 {
        return Err(StartError::WorkerFailed { count: failed });
    }
    Ok(())
}

/// Test hook (debug builds only): the worker with the id in this variable
/// panics at start.
#[cfg(debug_assertions)]
const TEST_PANIC_WORKER_ENV: &str = "FLASHPOLICYD_TEST_PANIC_WORKER";

/// Starts worker thread `ctx.id` on `engine`, pinned to CPU `pin` if given;
/// its result goes to `report`.
fn spawn_worker(
    engine: Engine,
    ctx: WorkerCtx,
    pin: Option<usize>,
    report: Report,
) -> io::Result<std::thread::JoinHandle<()>> {
    let id = ctx.id;
    #[cfg(debug_assertions)]
    let panic_hook = std::env::var(TEST_PANIC_WORKER_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        == Some(id);
    std::thread::Builder::new()
        .name(format!("worker-{id}"))
        .spawn(move || {
            #[cfg(debug_assertions)]
            if panic_hook {
                panic!("worker {id}: {TEST_PANIC_WORKER_ENV} asked for a panic");
            }
            if let Some(cpu) = pin {
                if let Err(e) = pin_to_cpu(cpu) {
                    warn!("worker {id}: cannot pin to CPU {cpu}: {e}");
                }
            }
            report.send(engine::run_worker(engine, ctx));
        })
}

/// Carries a worker's result to the main thread, and an error in its place
/// when the worker unwinds without one (a panic), so that the main thread
/// stops the others and exits 1 instead of waiting on them and exiting 0.
/// Release builds set `panic = "abort"`: there a worker panic kills the whole
/// process before anything is reported.
struct Report {
    id: usize,
    done: Option<mpsc::Sender<(usize, io::Result<()>)>>,
}

impl Report {
    fn send(mut self, result: io::Result<()>) {
        if let Some(done) = self.done.take() {
            let _ = done.send((self.id, result));
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let error = io::Error::other("the worker ended without a result (it panicked)");
            let _ = done.send((self.id, Err(error)));
        }
    }
}

/// Logs the totals for people, then prints them on stderr as one line for
/// scripts, whatever `--log` filters: see [`totals_line`].
fn report_totals(totals: &Tally, format: LogFormat) {
    info!(
        "stopped: served {}, rejected {}, timed out {}, failed {}, shed {}, proxy invalid {}, over ip limit {}, relayed {}, upstream failed {}, origin refused {} (accepted {})",
        totals.served,
        totals.rejected,
        totals.timed_out,
        totals.failed,
        totals.shed,
        totals.proxy_invalid,
        totals.over_ip_limit,
        totals.relayed,
        totals.upstream_failed,
        totals.origin_refused,
        totals.accepted
    );
    match format {
        LogFormat::Text => eprintln!("{}", totals_line(totals)),
        LogFormat::Json => eprintln!("{}", crate::logging::totals_json(totals)),
    }
}

/// The totals as scripts read them:
/// `flashpolicyd: totals accepted=N served=N rejected=N timed_out=N failed=N shed=N proxy_invalid=N over_ip_limit=N relayed=N upstream_failed=N origin_refused=N`,
/// the ends named and ordered as [`End::ALL`] and [`End::name`] say.
pub(crate) fn totals_line(totals: &Tally) -> String {
    use std::fmt::Write;
    let mut line = format!("flashpolicyd: totals accepted={}", totals.accepted);
    for end in End::ALL {
        let _ = write!(line, " {}={}", end.name(), totals.get(end));
    }
    line
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

fn pin_to_cpu(cpu: usize) -> io::Result<()> {
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
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_totals_line_names_every_counter() {
        let totals = Tally {
            accepted: 21,
            served: 17,
            rejected: 1,
            timed_out: 2,
            failed: 0,
            shed: 1,
            ..Tally::default()
        };
        assert_eq!(
            totals_line(&totals),
            "flashpolicyd: totals accepted=21 served=17 rejected=1 timed_out=2 failed=0 shed=1 proxy_invalid=0 over_ip_limit=0 relayed=0 upstream_failed=0 origin_refused=0"
        );
    }

    #[test]
    fn the_cpus_are_listed_and_a_worker_can_pin_to_one() {
        let cpus = online_cpus();
        assert!(!cpus.is_empty());
        let first = cpus[0];
        std::thread::spawn(move || pin_to_cpu(first))
            .join()
            .expect("no panic")
            .expect("pinned to a CPU this process may use");
    }
}
