//! The end of a worker: the `IO_DRAIN` barrier after a clean shutdown, and
//! the teardown that makes sure nothing the kernel may still use is freed
//! or closed under it.

use std::time::{Duration, Instant};

use flashpolicy_proto::serve::End;
use io_uring::{cqueue, opcode, squeue, types};
use tracing::warn;

use super::arena::RecvArena;
use super::op::Op;
use super::worker::{Lifecycle, Worker};

impl Worker {
    /// Once the shutdown drain has nothing left, submits the barrier: a
    /// `NOP` with `IOSQE_IO_DRAIN`, whose completion means every earlier
    /// submission has finished, the skip-success closes and cancels whose
    /// completions we never see included.
    pub(super) fn maybe_finish(&mut self) -> std::io::Result<()> {
        let idle = self.lifecycle == Lifecycle::Draining
            && self.conns.is_empty()
            && self.parked.is_empty()
            && !self.singletons.backoff
            && self.singletons.zc_notifs == 0;
        if idle {
            if self.singletons.wake {
                // Only when the worker stopped for a reason other than its
                // eventfd (it never re-arms the poll once shutting down).
                self.cancel(Op::Wake)?;
                self.singletons.wake = false;
            }
            self.submit_drain()?;
        }
        Ok(())
    }

    fn submit_drain(&mut self) -> std::io::Result<()> {
        let entry = opcode::Nop::new()
            .build()
            .flags(squeue::Flags::IO_DRAIN)
            .user_data(Op::Drain.encode());
        // SAFETY: a nop refers to no memory.
        unsafe { self.ring.push(&[entry]) }?;
        self.lifecycle = Lifecycle::Barrier;
        Ok(())
    }

    /// Makes sure nothing the kernel might still use is freed or closed:
    /// after a clean run the barrier has completed; after an error, cancel
    /// everything, submit the barrier and wait for it (bounded).
    ///
    /// Once the barrier is confirmed, no operation refers to any descriptor
    /// or buffer any more: the descriptors of connections still open are
    /// closed, and so are descriptors still arriving in accept completions
    /// and those whose linked send failed (its close never ran). If the
    /// barrier cannot be confirmed, the buffer arena and the connections'
    /// descriptors are leaked instead: closing a descriptor that an
    /// operation still uses could let a new file take its number under the
    /// operation, which is worse than a leak in a worker that has failed.
    /// Parked descriptors are closed either way: no operation uses them.
    pub(super) fn teardown(&mut self) {
        if self.lifecycle != Lifecycle::Done {
            let cancel_all = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(Op::Cancel.encode());
            // SAFETY: a cancel refers to no memory.
            let mut ok = unsafe { self.ring.push(&[cancel_all]) }.is_ok();
            if ok && self.lifecycle != Lifecycle::Barrier {
                ok = self.submit_drain().is_ok();
            }
            let give_up = Instant::now() + Duration::from_secs(2);
            loop {
                while let Some(cqe) = self.ring.pop() {
                    self.complete_in_teardown(&cqe);
                }
                if !ok || self.lifecycle == Lifecycle::Done || Instant::now() >= give_up {
                    break;
                }
                ok = self.ring.wait(Some(Duration::from_millis(50))).is_ok();
            }
        }
        if self.lifecycle == Lifecycle::Done {
            for conn in self.conns.drain() {
                // SAFETY: the drain barrier has completed, so no operation
                // refers to this descriptor; it is ours and closed once.
                unsafe { libc::close(conn.fd) };
            }
        } else {
            warn!(
                "worker {}: could not confirm that the ring is idle; leaking its buffers \
                 and the descriptors of {} open connections",
                self.id,
                self.conns.len()
            );
            let arena = std::mem::replace(&mut self.bufs, RecvArena::new(1));
            arena.leak();
            let ts = std::mem::replace(&mut self.backoff_ts, Box::new(types::Timespec::new()));
            Box::leak(ts);
        }
        while let Some(fd) = self.parked.pop_front() {
            self.admission.on_parked_dropped();
            // SAFETY: parked descriptors were accepted by us and no
            // operation refers to them.
            unsafe { libc::close(fd) };
        }
    }

    /// A completion reaped while tearing down: only what owns a descriptor
    /// or ends the wait matters.
    fn complete_in_teardown(&mut self, cqe: &cqueue::Entry) {
        let res = cqe.result();
        match Op::decode(cqe.user_data()) {
            Some(Op::Drain) => self.lifecycle = Lifecycle::Done,
            Some(Op::Accept { .. }) if res >= 0 => {
                self.tally.accepted();
                self.tally.ended(End::Failed);
                // SAFETY: a descriptor just accepted for us, which nothing
                // else knows of; closed once, here.
                unsafe { libc::close(res) };
            }
            Some(Op::LinkedSend { fd, len }) => self.on_send_failed(fd, len, res),
            _ => {}
        }
    }
}
