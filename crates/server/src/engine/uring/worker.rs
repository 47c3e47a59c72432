//! A worker: its state, its loop, and the dispatch of completions to the
//! accept path ([`super::accept`]), the connection path ([`super::conn`])
//! and the end of its life ([`super::teardown`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashpolicy_proto::proxy::ProxySettings;
use flashpolicy_proto::serve::AddressLimit;
use flashpolicy_proto::serve::{Admission, DeadlineQueue, RateLimit, Serving, Session};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;
use tracing::{debug, warn};

use super::arena::RecvArena;
use super::op::Op;
use super::ring::Ring;
use crate::control::{ShutdownFlag, Wakeup};
use crate::engine::common::{connection_cap, open_spare, wants_peer, ACCEPT_BACKOFF, MAX_PARKED};
use crate::engine::WorkerCtx;
use crate::metrics::LiveTally;
use crate::reload::ReplyMailbox;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lifecycle {
    /// Accepting and serving.
    Serving,
    /// Shutdown asked: the multishot accepts are being cancelled.
    Stopping,
    /// The listeners are drained and closed; open connections finish.
    Draining,
    /// The `IO_DRAIN` barrier is submitted.
    Barrier,
    /// The barrier completed: nothing is in flight any more.
    Done,
}

/// A listener's multishot accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AcceptState {
    /// None armed.
    Idle,
    /// Armed.
    Armed,
    /// A cancel was submitted; the final completion has not come yet.
    Cancelling,
    /// Waiting for the back-off timer.
    BackingOff,
}

/// The operation a connection has in flight (one at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InFlight {
    Recv,
    SendZc,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) fd: RawFd,
    pub(super) generation: u32,
    pub(super) session: Session,
    pub(super) op: InFlight,
}

/// Operations that exist once per worker, and whether each is in flight.
#[derive(Debug, Default)]
pub(super) struct Singletons {
    /// The poll on the wake-up eventfd.
    pub(super) wake: bool,
    /// The back-off timer.
    pub(super) backoff: bool,
    /// Zero-copy notifications still to come.
    pub(super) zc_notifs: usize,
}

pub(super) struct Worker {
    pub(super) id: usize,
    pub(super) ring: Ring,
    pub(super) listeners: Vec<Option<TcpListener>>,
    pub(super) accept: Vec<AcceptState>,
    pub(super) reply: &'static [u8],
    /// `--proxy-protocol`.
    pub(super) proxy: Option<Arc<ProxySettings>>,
    /// `--max-per-ip`: the per-address counts every worker shares.
    pub(super) address_limit: Option<&'static AddressLimit>,
    /// Sessions get their peer's address (see `common::wants_peer`).
    pub(super) want_peer: bool,
    pub(super) new_reply: ReplyMailbox,
    pub(super) timeout: Duration,
    pub(super) wakeup: Wakeup,
    pub(super) shutdown: ShutdownFlag,
    pub(super) send_zc: bool,
    pub(super) conns: Slab<Conn>,
    pub(super) generations: Vec<u32>,
    pub(super) bufs: RecvArena,
    /// Accepted, waiting for a slot (see `flashpolicy_proto::serve::admission`).
    pub(super) parked: VecDeque<RawFd>,
    pub(super) admission: Admission,
    pub(super) deadlines: DeadlineQueue,
    /// The back-off timer's duration; boxed so its address is stable while
    /// a TIMEOUT operation refers to it.
    pub(super) backoff_ts: Box<types::Timespec>,
    pub(super) singletons: Singletons,
    pub(super) lifecycle: Lifecycle,
    pub(super) spare: Option<File>,
    pub(super) tally: LiveTally,
    pub(super) stuck_warning: RateLimit,
}

impl Worker {
    pub(super) fn new(ctx: WorkerCtx, ring: IoUring, zc_supported: bool) -> Worker {
        let max = connection_cap(ctx.max_connections);
        let want_peer = wants_peer(
            &Serving::new(ctx.reply, ctx.proxy.as_deref()).with_limit(ctx.address_limit),
        );
        Worker {
            id: ctx.id,
            ring: Ring::new(ring),
            accept: vec![AcceptState::Idle; ctx.listeners.len()],
            listeners: ctx.listeners.into_iter().map(Some).collect(),
            reply: ctx.reply,
            proxy: ctx.proxy,
            address_limit: ctx.address_limit,
            want_peer,
            new_reply: ctx.new_reply,
            timeout: ctx.timeout,
            wakeup: ctx.wakeup,
            shutdown: ctx.shutdown,
            send_zc: ctx.send_zc && zc_supported,
            conns: Slab::with_capacity(max),
            generations: vec![0; max],
            bufs: RecvArena::new(max),
            parked: VecDeque::with_capacity(MAX_PARKED),
            admission: Admission::new(max, MAX_PARKED),
            deadlines: DeadlineQueue::new(),
            backoff_ts: Box::new(types::Timespec::from(ACCEPT_BACKOFF)),
            singletons: Singletons::default(),
            lifecycle: Lifecycle::Serving,
            spare: open_spare(),
            tally: ctx.tally,
            stuck_warning: RateLimit::default(),
        }
    }

    pub(super) fn run(&mut self) -> io::Result<()> {
        self.arm_wake()?;
        if self.shutdown.is_set() {
            self.begin_shutdown()?;
        } else {
            for li in 0..self.listeners.len() {
                self.arm_accept(li)?;
            }
        }
        loop {
            self.maybe_finish()?;
            if self.lifecycle == Lifecycle::Done {
                return Ok(());
            }
            let conns = &self.conns;
            self.deadlines.compact(conns.len(), |key, generation| {
                conns.get(key).is_some_and(|c| c.generation == generation)
            });
            self.ring
                .wait(self.deadlines.next_timeout(Instant::now()))?;
            while let Some(cqe) = self.ring.pop() {
                self.complete(&cqe)?;
            }
            self.expire(Instant::now())?;
        }
    }

    fn complete(&mut self, cqe: &cqueue::Entry) -> io::Result<()> {
        let res = cqe.result();
        let flags = cqe.flags();
        match Op::decode(cqe.user_data()) {
            Some(Op::Accept { listener }) => self.on_accept(listener as usize, res, flags),
            Some(Op::Recv(conn)) => self.on_recv(conn, res),
            Some(Op::SendZc(conn)) => self.on_send_zc(conn, res, flags),
            Some(Op::LinkedSend { fd, len }) => {
                self.on_send_failed(fd, len, res);
                Ok(())
            }
            Some(Op::LinkedClose { .. }) => {
                debug!("worker {}: close after send: {}", self.id, errno(res));
                Ok(())
            }
            Some(Op::Close) => {
                debug!("worker {}: close failed: {}", self.id, errno(res));
                Ok(())
            }
            Some(Op::Cancel) => {
                if !matches!(-res, libc::ENOENT | libc::EALREADY) {
                    debug!("worker {}: cancel: {}", self.id, errno(res));
                }
                Ok(())
            }
            Some(Op::Wake) => self.on_wake(),
            Some(Op::Backoff) => self.on_backoff(),
            Some(Op::Drain) => {
                self.lifecycle = Lifecycle::Done;
                Ok(())
            }
            None => {
                warn!(
                    "worker {}: completion with unknown user_data {:#x}",
                    self.id,
                    cqe.user_data()
                );
                Ok(())
            }
        }
    }

    pub(super) fn arm_wake(&mut self) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(self.wakeup.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(Op::Wake.encode());
        // SAFETY: a poll refers to no memory; the eventfd lives in `self`
        // until after the drain barrier.
        unsafe { self.ring.push(&[entry]) }?;
        self.singletons.wake = true;
        Ok(())
    }

    fn on_wake(&mut self) -> io::Result<()> {
        self.singletons.wake = false;
        // Clear first, then look: a reply put after the look comes with a
        // wake-up of its own, which the poll armed below will see.
        self.wakeup.clear();
        self.new_reply.adopt(self.id, &mut self.reply);
        if self.shutdown.is_set() {
            self.begin_shutdown()
        } else {
            self.arm_wake()
        }
    }

    fn begin_shutdown(&mut self) -> io::Result<()> {
        if self.lifecycle != Lifecycle::Serving {
            return Ok(());
        }
        self.lifecycle = Lifecycle::Stopping;
        self.admission.begin_drain();
        debug!(
            "worker {}: shutting down, {} connections open",
            self.id,
            self.conns.len()
        );
        for li in 0..self.listeners.len() {
            self.cancel_accept(li)?;
        }
        if self.singletons.backoff {
            self.cancel(Op::Backoff)?;
        }
        self.drain_listeners_when_idle()
    }

    /// Submits an `ASYNC_CANCEL` of `target` (skip-success; its completion,
    /// posted only when the cancel fails because the target already
    /// finished or is finishing, is only logged).
    pub(super) fn cancel(&mut self, target: Op) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target.encode())
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Op::Cancel.encode());
        // SAFETY: a cancel refers to no memory, only to a user_data value.
        unsafe { self.ring.push(&[entry]) }
    }

    /// Queues a stand-alone close of `fd` (a completion only on failure).
    pub(super) fn close_fd(&mut self, fd: RawFd) -> io::Result<()> {
        let entry = opcode::Close::new(types::Fd(fd))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Op::Close.encode());
        // SAFETY: a close refers to no memory. `fd` is ours and nothing else
        // refers to it once this is queued (its other operations are done).
        unsafe { self.ring.push(&[entry]) }
    }
}

/// The error a negative completion result stands for.
pub(super) fn errno(res: i32) -> io::Error {
    io::Error::from_raw_os_error(res.saturating_neg())
}
