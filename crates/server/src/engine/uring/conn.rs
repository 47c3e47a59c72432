//! The connection path: a recv into the slot's buffer, the reply sent from
//! the one static buffer, the close; and the deadlines. What each
//! completion means for the connection is its
//! [`Session`](flashpolicy_proto::serve::Session)'s answer; this file
//! submits what it asks for.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Instant;

use flashpolicy_proto::serve::{
    classify_io_errno, deadline_after, Action, End, Freed, Serving, Session,
};
use io_uring::{cqueue, opcode, squeue, types};
use tracing::{debug, warn};

use super::op::{ConnRef, Op, GEN_MASK, MAX_LINKED_SEND};
use super::worker::{errno, Conn, InFlight, Worker};
use crate::engine::common::{log_end, RECV_LEN};

impl Worker {
    /// Gives `fd` a slot and starts its session.
    pub(super) fn start_conn(&mut self, fd: RawFd) -> io::Result<()> {
        let now = Instant::now();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let generation = self.generations[key];
        // The multishot accept gives no address: ask only when it is needed.
        let peer = if self.want_peer { peer_of(fd) } else { None };
        let serving =
            Serving::new(self.reply, self.proxy.as_deref()).with_limit(self.address_limit);
        let mut session = Session::new();
        let action = session.on_accepted(&serving, peer);
        entry.insert(Conn {
            fd,
            generation,
            session,
            op: InFlight::Recv,
        });
        self.deadlines
            .push(deadline_after(now, self.timeout), key, generation);
        self.act(key, action)
    }

    /// Does what connection `key`'s session answered. Called only when the
    /// connection has no operation in flight.
    fn act(&mut self, key: usize, action: Action) -> io::Result<()> {
        match action {
            Action::Recv => self.submit_recv(key),
            Action::Send(bytes) => self.submit_send(key, bytes),
            Action::Close(end) => self.close_conn(key, end),
        }
    }

    fn submit_recv(&mut self, key: usize) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        conn.op = InFlight::Recv;
        let op = Op::Recv(conn_ref(key, conn));
        let entry = opcode::Recv::new(types::Fd(conn.fd), self.bufs.ptr(key), RECV_LEN as u32)
            .build()
            .user_data(op.encode());
        // SAFETY: the recv writes into slot `key` of the arena, which is
        // neither moved nor freed before the drain barrier (or is leaked),
        // and slot `key` is not reused, nor its buffer read, until this
        // recv's completion has been handled.
        unsafe { self.ring.push(&[entry]) }
    }

    /// Sends `bytes` (the reply, or the rest of it after a short zero-copy
    /// send).
    ///
    /// Without `--send-zc`: a `SEND` linked to a `CLOSE`, both
    /// skip-success, and the slot is freed at once with the connection
    /// counted as served. Nothing in flight points into the slot's buffer
    /// (the reply is `'static`), and neither operation posts a completion
    /// unless the send fails or comes up short. Their `user_data` name the
    /// descriptor, not the slot: the send's completion means the link broke,
    /// the close never ran, and the descriptor is still ours (see
    /// [`Worker::on_send_failed`]). After a successful close the number may
    /// be reused by a new accept, but by then the send has succeeded, so no
    /// completion naming the old use can come.
    fn submit_send(&mut self, key: usize, bytes: &'static [u8]) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let flags = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
        let fd = conn.fd;
        if self.send_zc {
            conn.op = InFlight::SendZc;
            let entry = opcode::SendZc::new(types::Fd(fd), bytes.as_ptr(), len)
                .flags(flags)
                .build()
                .user_data(Op::SendZc(conn_ref(key, conn)).encode());
            // SAFETY: the reply is `&'static`: it outlives the send and its
            // zero-copy notification.
            return unsafe { self.ring.push(&[entry]) };
        }
        // A reply is capped far below the field (see `MAX_LINKED_SEND`).
        let len = len.min(MAX_LINKED_SEND);
        let send = opcode::Send::new(types::Fd(fd), bytes.as_ptr(), len)
            .flags(flags)
            .build()
            .flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS)
            .user_data(Op::LinkedSend { fd, len }.encode());
        let close = opcode::Close::new(types::Fd(fd))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Op::LinkedClose { fd }.encode());
        // SAFETY: the send reads only the `&'static` reply; the close refers
        // to no memory. Both go in as one group, so the link cannot be split.
        // The descriptor is handed to these two operations: the slot is
        // freed below and nothing else refers to the descriptor any more.
        unsafe { self.ring.push(&[send, close]) }?;
        // Counted when submitted: a failure is the rare path, and amends it.
        let end = match conn.session.on_sent(len as usize) {
            Action::Close(end) => end,
            _ => End::Served,
        };
        log_end(self.id, &conn.session, end);
        self.tally.ended(end);
        self.free_slot(key)
    }

    /// Closes connection `key`, whose operations have all completed.
    fn close_conn(&mut self, key: usize, end: End) -> io::Result<()> {
        if let Some(conn) = self.conns.get(key) {
            let fd = conn.fd;
            log_end(self.id, &conn.session, end);
            self.close_fd(fd)?;
            self.tally.ended(end);
            self.free_slot(key)?;
        }
        Ok(())
    }

    /// Frees slot `key` (no operation pointing into it is in flight) and
    /// does what the serving core says with it.
    fn free_slot(&mut self, key: usize) -> io::Result<()> {
        if self.conns.try_remove(key).is_none() {
            return Ok(());
        }
        self.generations[key] = self.generations[key].wrapping_add(1) & GEN_MASK;
        match self.admission.on_freed() {
            Freed::StartParked => match self.parked.pop_front() {
                Some(fd) => self.start_conn(fd),
                None => Ok(()),
            },
            Freed::Resume => self.rearm_accepts(),
            Freed::Nothing => Ok(()),
        }
    }

    /// The live connection `c` names, if it is still that use of the slot.
    fn live(&mut self, c: ConnRef) -> Option<(usize, &mut Conn)> {
        let key = c.slot as usize;
        self.conns
            .get_mut(key)
            .filter(|conn| conn.generation == c.generation)
            .map(|conn| (key, conn))
    }

    pub(super) fn on_recv(&mut self, c: ConnRef, res: i32) -> io::Result<()> {
        let serving =
            Serving::new(self.reply, self.proxy.as_deref()).with_limit(self.address_limit);
        let id = self.id;
        let bufs = &self.bufs;
        let key = c.slot as usize;
        let Some(conn) = self
            .conns
            .get_mut(key)
            .filter(|conn| conn.generation == c.generation && conn.op == InFlight::Recv)
        else {
            return Ok(());
        };
        let action = if res > 0 {
            // SAFETY: this recv's completion is being handled, so nothing
            // writes slot `key`; the slice is dropped before the next recv.
            let bytes = unsafe { bufs.filled(key, res as usize) };
            conn.session.on_bytes(bytes, &serving)
        } else if res == 0 {
            conn.session.on_eof(&serving)
        } else {
            debug!("worker {id}: recv: {}", errno(res));
            conn.session.on_error(classify_io_errno(-res))
        };
        self.act(key, action)
    }

    /// The linked send of descriptor `fd`, asked to send `len` bytes,
    /// posted a completion: it failed or came up short (with `MSG_WAITALL`
    /// only together with an error), the kernel cancelled the linked close
    /// without a completion (`REQ_F_SKIP_LINK_CQES`), and the descriptor is
    /// still ours. Close it and count the connection as failed, not served.
    pub(super) fn on_send_failed(&mut self, fd: RawFd, len: u32, res: i32) {
        if res >= 0 && res as u32 >= len {
            // A success completion (only if skip-success were ignored): the
            // linked close runs, and the descriptor is no longer ours.
            return;
        }
        if res < 0 {
            debug!("worker {}: send: {}", self.id, errno(res));
        } else {
            debug!("worker {}: short send: {res} of {len} bytes", self.id);
        }
        // Synchronously: this is the rare path, and it leaves nothing queued
        // that the shutdown drain (which may be the next completion) would
        // not cover.
        // SAFETY: the send failed, so its linked close was cancelled and
        // never ran: `fd` is still our connection's descriptor, nothing else
        // refers to it, and it is closed exactly once, here.
        unsafe { libc::close(fd) };
        self.tally.amend(End::Served, End::Failed);
    }

    pub(super) fn on_send_zc(&mut self, c: ConnRef, res: i32, flags: u32) -> io::Result<()> {
        if cqueue::notif(flags) {
            self.singletons.zc_notifs = self.singletons.zc_notifs.saturating_sub(1);
            return Ok(());
        }
        if cqueue::more(flags) {
            self.singletons.zc_notifs += 1;
        }
        let id = self.id;
        let mut fall_back = false;
        let Some((key, conn)) = self.live(c) else {
            return Ok(());
        };
        if conn.op != InFlight::SendZc {
            return Ok(());
        }
        let action = if res >= 0 {
            conn.session.on_sent(res as usize)
        } else if res == -libc::EOPNOTSUPP && conn.session.end().is_none() {
            // This socket cannot do zero-copy: send plainly from now on.
            fall_back = true;
            conn.session.resume()
        } else {
            debug!("worker {id}: send: {}", errno(res));
            conn.session.on_error(classify_io_errno(-res))
        };
        if fall_back {
            warn!("worker {id}: SEND_ZC not supported on this socket; using SEND");
            self.send_zc = false;
        }
        self.act(key, action)
    }

    /// Ends every connection whose deadline has passed.
    ///
    /// Its operation is in flight, so it cannot just be closed: its session
    /// is told (and answers `Close` from now on), and `shutdown(2)` of the
    /// socket (a plain syscall; the descriptor stays open and ours) makes a
    /// pending recv complete at once with 0, and a zero-copy send with
    /// `EPIPE` or short; that completion closes it. Unlike an
    /// `ASYNC_CANCEL`, the shutdown cannot miss an operation that is
    /// mid-retry, and a recv submitted after it returns 0 at once.
    ///
    /// The connection keeps a deadline until it is gone: should it still be
    /// open one `--timeout` later (which would take a kernel that ignores
    /// the shutdown), the shutdown is repeated, an `ASYNC_CANCEL` aimed at
    /// the operation is added, and a warning is logged. The same cancel is
    /// added at once if the shutdown itself fails.
    pub(super) fn expire(&mut self, now: Instant) -> io::Result<()> {
        while let Some(d) = self.deadlines.pop_due(now) {
            let Some(conn) = self
                .conns
                .get_mut(d.key)
                .filter(|conn| conn.generation == d.generation)
            else {
                continue;
            };
            let again = conn.session.end().is_some();
            conn.session.on_deadline();
            let (fd, op) = (conn.fd, conn.op);
            self.deadlines
                .push(deadline_after(now, self.timeout), d.key, d.generation);
            // SAFETY: the connection is live, so `fd` is its open socket,
            // owned by this worker and not yet closed (closing frees the
            // slot). shutdown(2) neither closes the descriptor nor touches
            // our memory.
            let rc = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            let failed = (rc != 0).then(io::Error::last_os_error);
            if again && self.stuck_warning.allow(now) {
                warn!(
                    "worker {}: a timed-out connection is still open after another {:?}; \
                     cancelling its {op:?}",
                    self.id, self.timeout
                );
            }
            if let Some(e) = &failed {
                // ENOTCONN: a reset got there first, and has already ended
                // the operation; the cancel is only a second line.
                debug!("worker {}: shutdown of a timed-out socket: {e}", self.id);
            }
            if again || failed.is_some() {
                let c = ConnRef {
                    slot: d.key as u32,
                    generation: d.generation,
                };
                let target = match op {
                    InFlight::Recv => Op::Recv(c),
                    InFlight::SendZc => Op::SendZc(c),
                };
                self.cancel(target)?;
            }
        }
        Ok(())
    }
}

/// The peer of accepted socket `fd` (`getpeername`); `None` if the client
/// is already gone.
fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: `fd` is the open socket just accepted, owned by this worker;
    // the borrow ends within this function, before anything could close it.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&fd).peer_addr().ok()?.as_socket()
}

fn conn_ref(key: usize, conn: &Conn) -> ConnRef {
    ConnRef {
        slot: key as u32,
        generation: conn.generation,
    }
}
