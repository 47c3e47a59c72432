//! Submitting and reaping: a ring and the completions taken out of it.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use io_uring::{cqueue, squeue, types, IoUring};

/// A worker's ring, with the completions reaped but not yet handled.
pub(crate) struct Ring {
    ring: IoUring,
    cqes: VecDeque<cqueue::Entry>,
}

impl Ring {
    pub(crate) fn new(ring: IoUring) -> Ring {
        Ring {
            ring,
            cqes: VecDeque::with_capacity(1024),
        }
    }

    /// Pushes `entries` into the submission queue as one group (a linked
    /// pair stays contiguous), submitting first if the queue is full.
    ///
    /// # Safety
    /// Every pointer in `entries` must stay valid until the operation's
    /// completion (each caller says why in its `SAFETY` comment).
    pub(crate) unsafe fn push(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from this function's contract.
            let pushed = unsafe { self.ring.submission().push_multiple(entries) };
            if pushed.is_ok() {
                return Ok(());
            }
            self.submit_now()?;
        }
    }

    /// Submits what is queued without waiting. On `EBUSY`/`EAGAIN` (the
    /// completion queue is overflowing, or the kernel is short of memory)
    /// it reaps completions (kept for handling) and tries again.
    pub(crate) fn submit_now(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => self.reap_or_pause(),
                    _ => return Err(e),
                },
            }
        }
    }

    /// Submits what is queued and, unless completions are already waiting
    /// to be handled, waits for at least one completion or `timeout`; then
    /// reaps every completion.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if !self.cqes.is_empty() {
            self.submit_now()?;
        } else {
            let result = match timeout {
                Some(left) => {
                    let ts = types::Timespec::from(left);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                }
                None => self.ring.submit_and_wait(1),
            };
            if let Err(e) = result {
                match e.raw_os_error() {
                    Some(libc::ETIME) | Some(libc::EINTR) => {}
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => self.reap_or_pause(),
                    _ => return Err(e),
                }
            }
        }
        self.reap();
        Ok(())
    }

    /// The ring's registration interface (buffer rings).
    pub(crate) fn submitter(&self) -> io_uring::Submitter<'_> {
        self.ring.submitter()
    }

    /// The next completion to handle.
    pub(crate) fn pop(&mut self) -> Option<cqueue::Entry> {
        self.cqes.pop_front()
    }

    /// Copies every available completion out of the ring, freeing its
    /// place there. Returns how many.
    pub(super) fn reap(&mut self) -> usize {
        let before = self.cqes.len();
        self.cqes.extend(self.ring.completion());
        self.cqes.len() - before
    }

    /// The kernel is busy: reap, or if nothing came, give it a moment.
    fn reap_or_pause(&mut self) {
        if self.reap() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
