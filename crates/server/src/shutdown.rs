//! Carrying SIGINT/SIGTERM to the workers.
//!
//! Each worker owns an eventfd that both engines can wait on (mio registers
//! it as a source; io_uring keeps a read pending on it). The main thread
//! waits for a signal, then sets the shared flag and writes to every eventfd.
//! Workers check the flag only when their eventfd fires, never per connection.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A worker's wake-up line: an eventfd.
#[derive(Debug)]
pub struct Wakeup {
    fd: OwnedFd,
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
        Ok(Wakeup { fd })
    }

    /// A second handle on the same eventfd, for the thread that wakes.
    pub fn try_clone(&self) -> io::Result<Wakeup> {
        Ok(Wakeup {
            fd: self.fd.try_clone()?,
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
