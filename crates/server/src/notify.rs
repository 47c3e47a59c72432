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
                        send(&[NotifyState::Watchdog]);
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
