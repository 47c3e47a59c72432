//! Process control: the signals, and how SIGINT/SIGTERM reach the workers.
//!
//! `Signals` catches SIGINT, SIGTERM and SIGHUP and runs the signal
//! thread, which stops the workers or asks for a reload.
//!
//! Each worker owns an eventfd, its [`Wakeup`], that both engines can wait
//! on (mio registers it as a source; io_uring keeps a poll pending on it).
//! To stop the workers, the signal thread (or the supervisor, after a worker
//! failed) sets the shared [`ShutdownFlag`] and writes to every eventfd:
//! `stop_all`. The reload thread uses the same eventfds to hand over a
//! reloaded policy (see [`crate::reload`]).
//!
//! Workers look at the flag (and their reply mailbox) only when their
//! eventfd fires, never per connection: the per-connection path reads the
//! worker's own `reply` field, with no shared atomic or lock.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Handle;
use tracing::{error, info, warn};

use crate::reload::ReloadRequests;

/// A worker's wake-up line: an eventfd.
#[derive(Debug)]
pub struct Wakeup {
    fd: OwnedFd,
    /// How many times the worker has cleared it, shared by every handle:
    /// the watchdog's sign that the worker's loop is turning.
    cleared: Arc<AtomicU64>,
}

impl Wakeup {
    /// Creates a non-blocking eventfd.
    pub fn new() -> io::Result<Wakeup> {
        // SAFETY: eventfd takes no pointers; we check its result before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor we just created and nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Wakeup {
            fd,
            cleared: Arc::default(),
        })
    }

    /// A second handle on the same eventfd, for the thread that wakes.
    pub fn try_clone(&self) -> io::Result<Wakeup> {
        Ok(Wakeup {
            fd: self.fd.try_clone()?,
            cleared: Arc::clone(&self.cleared),
        })
    }

    /// Wakes the worker waiting on this eventfd.
    pub fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        let n = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            // The counter is saturated: the worker has a wake-up pending anyway.
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Resets the counter after a wake-up (non-blocking; harmless if zero).
    pub fn clear(&self) {
        self.cleared.fetch_add(1, Ordering::Relaxed);
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own eventfd.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut value as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

impl Wakeup {
    /// How many times [`Wakeup::clear`] has run, on any handle.
    pub fn beats(&self) -> u64 {
        self.cleared.load(Ordering::Relaxed)
    }
}

impl AsRawFd for Wakeup {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The flag every worker reads after its wake-up fires.
#[derive(Debug, Clone, Default)]
pub struct ShutdownFlag(Arc<AtomicBool>);

impl ShutdownFlag {
    /// Asks every worker to stop accepting and drain.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether shutdown has been asked for.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Stops every worker: sets `shutdown` (telling the service manager
/// `STOPPING=1` the first time), then wakes each one so that it looks at
/// the flag. A wake-up that fails is logged.
pub(crate) fn stop_all(shutdown: &ShutdownFlag, wakers: &[Wakeup]) {
    if !shutdown.is_set() {
        crate::notify::stopping();
    }
    shutdown.trigger();
    for w in wakers {
        if let Err(e) = w.wake() {
            warn!("cannot wake a worker: {e}");
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, caught from [`Signals::install`] on: install
/// them before anything is bound or logged, so that a signal that arrives
/// once "listening on" is printed reaches the handler instead of killing the
/// process.
#[derive(Debug)]
pub(crate) struct Signals(signal_hook::iterator::Signals);

impl Signals {
    /// Catches SIGINT, SIGTERM and SIGHUP from now on.
    pub(crate) fn install() -> io::Result<Signals> {
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).map(Signals)
    }

    /// Starts the signal thread, which acts on each signal caught:
    ///
    /// * SIGINT/SIGTERM, the first time: [`stop_all`] (workers stop
    ///   accepting and drain).
    /// * SIGINT/SIGTERM again, during the drain (which a long `--timeout`
    ///   can make long): exits at once with 128 + the signal, as a shell
    ///   reports a signal death.
    /// * SIGHUP: asks `reload` for a reload, unless shutting down.
    ///
    /// The thread ends when the returned handle is closed.
    pub(crate) fn spawn(
        self,
        shutdown: ShutdownFlag,
        wakers: Vec<Wakeup>,
        reload: ReloadRequests,
    ) -> io::Result<Handle> {
        let mut signals = self.0;
        let handle = signals.handle();
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
                        stop_all(&shutdown, &wakers);
                    } else {
                        error!("signal {sig} again: exiting now, open connections dropped");
                        std::process::exit(128 + sig);
                    }
                }
            })?;
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wakeup_is_readable_until_cleared() {
        let wakeup = Wakeup::new().expect("eventfd");
        let waker = wakeup.try_clone().expect("dup");
        let readable = |w: &Wakeup| {
            let mut pfd = libc::pollfd {
                fd: w.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: polls one live pollfd that we own, without waiting.
            unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
        };
        assert!(!readable(&wakeup));
        waker.wake().expect("wake");
        waker.wake().expect("wake");
        assert!(readable(&wakeup));
        wakeup.clear();
        assert!(!readable(&wakeup));
    }
}
