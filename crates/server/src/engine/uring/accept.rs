//! Accepting: the multishot accepts, pausing them at the connection limit,
//! shedding and backing off when out of descriptors, and the last accepts
//! of the shutdown drain. What to do with each connection and each error
//! is the serving core's [`Admission`](flashpolicy_proto::serve::Admission);
//! this file arms and cancels the operations it implies.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::time::Instant;

use flashpolicy_proto::serve::{Admit, End, OnAcceptError};
use io_uring::{cqueue, opcode, types};
use tracing::debug;

use super::op::Op;
use super::worker::{AcceptState, Lifecycle, Worker};
use crate::engine::common::{self, accept_errno, log_accept_error, log_full};

impl Worker {
    pub(super) fn arm_accept(&mut self, li: usize) -> io::Result<()> {
        let Some(listener) = self.listeners.get(li).and_then(Option::as_ref) else {
            return Ok(());
        };
        let entry = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(
                Op::Accept {
                    listener: li as u32,
                }
                .encode(),
            );
        // SAFETY: a multishot accept without an address refers to no
        // memory; the listener is only closed once its accept has ended.
        unsafe { self.ring.push(&[entry]) }?;
        self.accept[li] = AcceptState::Armed;
        Ok(())
    }

    pub(super) fn cancel_accept(&mut self, li: usize) -> io::Result<()> {
        match self.accept[li] {
            AcceptState::Armed => {
                self.cancel(Op::Accept {
                    listener: li as u32,
                })?;
                self.accept[li] = AcceptState::Cancelling;
            }
            AcceptState::BackingOff => self.accept[li] = AcceptState::Idle,
            AcceptState::Idle | AcceptState::Cancelling => {}
        }
        Ok(())
    }

    /// Arms every idle listener's accept, if the serving core lets us.
    pub(super) fn rearm_accepts(&mut self) -> io::Result<()> {
        if self.lifecycle != Lifecycle::Serving || !self.admission.may_accept() {
            return Ok(());
        }
        for li in 0..self.listeners.len() {
            if self.accept[li] == AcceptState::Idle {
                self.arm_accept(li)?;
            }
        }
        Ok(())
    }

    /// A multishot accept's completion.
    pub(super) fn on_accept(&mut self, li: usize, res: i32, flags: u32) -> io::Result<()> {
        if res >= 0 {
            self.on_accepted(res)?;
        }
        if cqueue::more(flags) || li >= self.accept.len() {
            return Ok(());
        }
        // The multishot accept has ended.
        let state = std::mem::replace(&mut self.accept[li], AcceptState::Idle);
        let errno = -res;
        if res < 0 && state == AcceptState::Armed && errno != libc::ECANCELED {
            if errno == libc::EOPNOTSUPP {
                // The kernel refuses the operation itself: re-arming would
                // only fail again at once.
                return Err(io::Error::other(format!(
                    "multishot accept refused: {}",
                    io::Error::from_raw_os_error(errno)
                )));
            }
            let plan = self.admission.on_accept_error(errno, Instant::now());
            log_accept_error(self.id, &plan, errno);
            self.tally.accept_error(plan.kind);
            let mut then = plan.then;
            if then == OnAcceptError::Shed {
                let shed = self.shed_one_from(li);
                then = self.admission.after_shed(shed);
            }
            match then {
                OnAcceptError::Stop | OnAcceptError::Next | OnAcceptError::Shed => {}
                OnAcceptError::BackOff => {
                    self.accept[li] = AcceptState::BackingOff;
                    return self.arm_backoff();
                }
                OnAcceptError::Fatal => {
                    return Err(io::Error::other(format!(
                        "multishot accept refused: {}",
                        io::Error::from_raw_os_error(errno)
                    )))
                }
            }
        }
        if self.lifecycle == Lifecycle::Serving {
            self.rearm_accepts()
        } else {
            self.drain_listeners_when_idle()
        }
    }

    /// A new descriptor from accept: start it, park it, or shed it, as the
    /// serving core says.
    pub(super) fn on_accepted(&mut self, fd: RawFd) -> io::Result<()> {
        self.tally.accepted();
        let admitted = self.admission.on_accepted(Instant::now());
        if admitted.warn_full {
            log_full(self.id, self.admission.open());
        }
        match admitted.admit {
            Admit::Start => self.start_conn(fd)?,
            Admit::Park => self.parked.push_back(fd),
            Admit::Shed => {
                self.tally.ended(End::Shed);
                self.close_fd(fd)?;
            }
        }
        if admitted.pause {
            for li in 0..self.listeners.len() {
                self.cancel_accept(li)?;
            }
        }
        Ok(())
    }

    /// Frees the spare descriptor to accept one queued connection on
    /// `listener` synchronously and close it at once, then takes the spare
    /// back. Returns whether a connection was shed.
    fn shed_one(&mut self, listener: &TcpListener) -> bool {
        let shed = common::shed_one(&mut self.spare, || listener.accept().is_ok());
        if shed {
            self.tally.accepted();
            self.tally.ended(End::Shed);
        }
        shed
    }

    /// [`Worker::shed_one`] on listener `li`, while it is open.
    fn shed_one_from(&mut self, li: usize) -> bool {
        let Some(listener) = self.listeners.get_mut(li).and_then(Option::take) else {
            return false;
        };
        let shed = self.shed_one(&listener);
        self.listeners[li] = Some(listener);
        shed
    }

    fn arm_backoff(&mut self) -> io::Result<()> {
        if self.singletons.backoff {
            return Ok(());
        }
        let entry = opcode::Timeout::new(&*self.backoff_ts as *const types::Timespec)
            .build()
            .user_data(Op::Backoff.encode());
        // SAFETY: the timespec is boxed in `self` (stable address), never
        // changed, and dropped only after the drain barrier (or leaked).
        unsafe { self.ring.push(&[entry]) }?;
        self.singletons.backoff = true;
        Ok(())
    }

    pub(super) fn on_backoff(&mut self) -> io::Result<()> {
        self.singletons.backoff = false;
        if self.spare.is_none() {
            // Another thread took the descriptor we freed; try again now.
            self.spare = common::open_spare();
        }
        self.admission.on_backoff_over();
        for state in &mut self.accept {
            if *state == AcceptState::BackingOff {
                *state = AcceptState::Idle;
            }
        }
        if self.lifecycle == Lifecycle::Serving {
            self.rearm_accepts()
        } else {
            self.drain_listeners_when_idle()
        }
    }

    /// During shutdown, once no listener has an accept armed: accept what
    /// is still queued (closing an SO_REUSEPORT listener resets it), then
    /// close the listeners. Out of descriptors, queued clients are shed one
    /// by one with the spare descriptor (a FIN, not a reset).
    pub(super) fn drain_listeners_when_idle(&mut self) -> io::Result<()> {
        if self.lifecycle != Lifecycle::Stopping
            || self.accept.iter().any(|&s| s != AcceptState::Idle)
        {
            return Ok(());
        }
        self.lifecycle = Lifecycle::Draining;
        for li in 0..self.listeners.len() {
            let Some(listener) = self.listeners[li].take() else {
                continue;
            };
            loop {
                let errno = match listener.accept() {
                    Ok((stream, _)) => {
                        self.on_accepted(stream.into_raw_fd())?;
                        continue;
                    }
                    Err(e) => accept_errno(&e),
                };
                let plan = self.admission.on_accept_error(errno, Instant::now());
                log_accept_error(self.id, &plan, errno);
                self.tally.accept_error(plan.kind);
                let mut then = plan.then;
                if then == OnAcceptError::Shed {
                    let shed = self.shed_one(&listener);
                    then = self.admission.after_shed(shed);
                }
                if then != OnAcceptError::Next {
                    break;
                }
            }
        }
        debug!(
            "worker {}: listeners closed, {} connections still open",
            self.id,
            self.conns.len() + self.parked.len()
        );
        Ok(())
    }
}
