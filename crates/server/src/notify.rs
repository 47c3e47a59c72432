//! `Type=notify`: what the server tells its service manager over
//! `NOTIFY_SOCKET`, and the watchdog pings.
//!
//! * `READY=1` once every worker is listening (after the `--user` drop);
//! * `RELOADING=1` with `MONOTONIC_USEC=` (as `Type=notify-reload` wants)
//!   when a SIGHUP reload starts, and `READY=1` when it has ended, whether
//!   the new policy was taken or refused;
//! * `STOPPING=1` when the shutdown drain starts;
//! * `WATCHDOG=1` every half of `WATCHDOG_USEC` (when it is set, and
//!   `WATCHDOG_PID`, if set, is ours), from a thread that pings only while
//!   every worker answers its wake-up and stops at shutdown, so a hung or
//!   dead worker lets the service manager's watchdog fire.
//!
//! Without `NOTIFY_SOCKET` nothing is sent and nothing fails.

use std::sync::mpsc;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

use crate::control::{ShutdownFlag, Wakeup};

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        warn!("cannot notify the service manager (NOTIFY_SOCKET): {e}");
    }
}

/// `READY=1`.
pub(crate) fn ready() {
    send(&[NotifyState::Ready]);
}

/// `RELOADING=1` and `MONOTONIC_USEC=`.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => {
            debug!("CLOCK_MONOTONIC: {e}");
            send(&[NotifyState::Reloading]);
        }
    }
}

/// `STOPPING=1`.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// How often to ping: half of `WATCHDOG_USEC`, if it is set (and non-zero)
/// and `WATCHDOG_PID` is unset or ours.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// The watchdog thread; stopped (and joined) by [`Watchdog::stop`].
#[derive(Debug)]
pub(crate) struct Watchdog {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Watchdog {
    /// Starts pinging every `interval`. Each round wakes every worker
    /// through `wakers`; the next round pings only if each has cleared its
    /// wake-up since (its loop is turning). Nothing is pinged once
    /// `shutdown` is set.
    pub(crate) fn spawn(
        interval: Duration,
        shutdown: ShutdownFlag,
        wakers: Vec<Wakeup>,
    ) -> std::io::Result<Watchdog> {
        Watchdog::spawn_with(interval, shutdown, wakers, || {
            send(&[NotifyState::Watchdog]);
        })
    }

    /// [`Watchdog::spawn`], with `ping` in place of `WATCHDOG=1`.
    fn spawn_with(
        interval: Duration,
        shutdown: ShutdownFlag,
        wakers: Vec<Wakeup>,
        ping: impl Fn() + Send + 'static,
    ) -> std::io::Result<Watchdog> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut last: Option<Vec<u64>> = None;
                let mut warned = false;
                loop {
                    if shutdown.is_set() {
                        return;
                    }
                    let beats: Vec<u64> = wakers.iter().map(Wakeup::beats).collect();
                    let stuck: Vec<usize> = match &last {
                        Some(last) => (0..beats.len()).filter(|&i| beats[i] == last[i]).collect(),
                        None => Vec::new(),
                    };
                    if stuck.is_empty() {
                        ping();
                        warned = false;
                    } else if !warned {
                        warn!(
                            "workers {stuck:?} have not answered a wake-up in {interval:?}; \
                             not pinging the watchdog until they do"
                        );
                        warned = true;
                    }
                    last = Some(beats);
                    for w in &wakers {
                        let _ = w.wake();
                    }
                    match stopped.recv_timeout(interval) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })?;
        Ok(Watchdog { stop, thread })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    /// A stand-in worker loop: clears `wakeup` whenever it fires, until
    /// `stop` is set.
    fn answering(wakeup: Wakeup, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd: wakeup.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: polls one live pollfd we own, for at most 10 ms.
                if unsafe { libc::poll(&mut pfd, 1, 10) } == 1 {
                    wakeup.clear();
                }
            }
        })
    }

    fn pings_until(count: &AtomicUsize, n: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while count.load(Ordering::Relaxed) < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    #[test]
    fn pings_while_every_worker_answers_and_stops_at_shutdown() {
        let stop = Arc::new(AtomicBool::new(false));
        let wakeups: Vec<Wakeup> = (0..2).map(|_| Wakeup::new().expect("eventfd")).collect();
        let wakers = wakeups
            .iter()
            .map(|w| w.try_clone().expect("dup"))
            .collect();
        let workers: Vec<_> = wakeups
            .into_iter()
            .map(|w| answering(w, Arc::clone(&stop)))
            .collect();
        let count = Arc::new(AtomicUsize::new(0));
        let pinged = Arc::clone(&count);
        let shutdown = ShutdownFlag::default();
        let watchdog = Watchdog::spawn_with(
            Duration::from_millis(20),
            shutdown.clone(),
            wakers,
            move || {
                pinged.fetch_add(1, Ordering::Relaxed);
            },
        )
        .expect("thread");
        assert!(pings_until(&count, 5), "pings: {count:?}");
        shutdown.trigger();
        // The thread ends by itself once shutdown is set.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !watchdog.thread.is_finished() {
            assert!(Instant::now() < deadline, "still pinging after shutdown");
            std::thread::sleep(Duration::from_millis(5));
        }
        let after = count.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(count.load(Ordering::Relaxed), after);
        watchdog.stop();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("no panic");
        }
    }

    #[test]
    fn a_worker_that_never_answers_stops_the_pings() {
        let stop = Arc::new(AtomicBool::new(false));
        let alive = Wakeup::new().expect("eventfd");
        let hung = Wakeup::new().expect("eventfd");
        let wakers = vec![
            alive.try_clone().expect("dup"),
            hung.try_clone().expect("dup"),
        ];
        let worker = answering(alive, Arc::clone(&stop));
        let count = Arc::new(AtomicUsize::new(0));
        let pinged = Arc::clone(&count);
        let watchdog = Watchdog::spawn_with(
            Duration::from_millis(10),
            ShutdownFlag::default(),
            wakers,
            move || {
                pinged.fetch_add(1, Ordering::Relaxed);
            },
        )
        .expect("thread");
        // Many rounds: the hung worker never clears its wake-up, so only
        // the first round (before any wake-up was sent) may ping. Wait for
        // that one, however late the watchdog's thread starts.
        assert!(pings_until(&count, 1), "pings: {count:?}");
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(count.load(Ordering::Relaxed), 1);
        // Once it answers, the pings come back.
        hung.clear();
        assert!(pings_until(&count, 2), "pings: {count:?}");
        watchdog.stop();
        stop.store(true, Ordering::Relaxed);
        worker.join().expect("no panic");
    }
}
