//! The io_uring engine: one ring per worker thread, driven by completions.
//!
//! Each worker owns its SO_REUSEPORT listeners, its wake-up eventfd, a slab
//! of connections and a fixed arena of receive buffers, both sized once at
//! start-up. Every decision about a connection comes from
//! `flashpolicy_proto::serve`: completions become calls of a connection's
//! `Session` or of the worker's `Admission`, and their answers become
//! submissions. One concept per file:
//!
//! * `setup`: building the ring (set-up flags and their fallbacks) and
//!   the start-up probe;
//! * `op`: what each submission was, typed, in its `user_data`;
//! * `ring`: submitting, waiting and reaping;
//! * `arena`: the receive buffers;
//! * `accept`: multishot accepts, pausing, parking, shedding, back-off
//!   and the shutdown drain's last accepts;
//! * `conn`: the connection path and the deadlines;
//! * `teardown`: the drain barrier and a safe teardown;
//! * `unavailable`: why io_uring cannot run here, as a typed error;
//! * `worker`: the worker's state, its lifecycle and its loop.
//!
//! # A connection, in submissions
//!
//! 1. A **multishot accept** per listener posts one completion per new
//!    connection; it is re-armed whenever a completion arrives without
//!    `IORING_CQE_F_MORE`.
//! 2. Each started connection takes a slab slot and gets one `RECV` into
//!    its slot of the arena (64 bytes; a request needs at most 24). The
//!    bytes go to its session; "read more" re-submits the recv, so a
//!    request split over any number of reads works.
//! 3. On a request: one `SEND` of the shared, static reply
//!    (`MSG_NOSIGNAL | MSG_WAITALL`) **linked** to a `CLOSE` of the socket,
//!    both with `IOSQE_CQE_SKIP_SUCCESS`, so a served connection costs no
//!    completion at all. The slot is freed at submission and the connection
//!    counted as served. If the send fails or comes up short, the link
//!    breaks: the kernel posts the send's completion and, because the
//!    failed request had skip-success, suppresses the cancelled close's
//!    (`REQ_F_SKIP_LINK_CQES`). The descriptor is then still ours: we close
//!    it and move the count from served to failed. The request has been
//!    read to its terminator, so the close sends FIN, not RST. With
//!    `DEFER_TASKRUN` the close runs as task work inside the same
//!    `io_uring_enter` that submitted the pair.
//! 4. Rejects, end-of-stream before a request, errors and timeouts: one
//!    `CLOSE` with skip-success; the slot is free at once.
//!
//! With `--send-zc` the reply goes out with `IORING_OP_SEND_ZC`, not
//! linked: the first completion carries the result (and `F_MORE` when a
//! notification follows), the second has `IORING_CQE_F_NOTIF`. The socket
//! is closed after the result; the notification only lowers a counter that
//! the shutdown drain waits for.
//!
//! # Timeouts: a deadline queue and `shutdown(2)`, not linked timeouts
//!
//! A `LINK_TIMEOUT` per recv would cost a second submission, a second
//! completion and a kernel hrtimer per recv, although almost every client
//! sends its 23 bytes at once. Instead every connection gets an entry in
//! the shared deadline queue, and the loop waits in `io_uring_enter` with
//! `IORING_ENTER_EXT_ARG` and a timeout equal to the earliest deadline. A
//! connection whose deadline passes has its socket shut down, which ends
//! the operation in flight at once (see `conn`).
//!
//! # Limits
//!
//! * `--max-connections`: the multishot accepts are cancelled when the
//!   serving core pauses accepting and re-armed when it resumes, so new
//!   clients wait in the kernel's accept queue. Accept completions already
//!   on their way are parked, or shed past a bound.
//! * EMFILE/ENFILE (and ENOBUFS/ENOMEM) end the multishot accept: one
//!   queued connection is shed with a spare descriptor, and the accept is
//!   re-armed only after a back-off `TIMEOUT` operation: no spin.
//! * A full submission queue: submit and push again. The completion queue
//!   has `IORING_FEAT_NODROP` (required), so nothing is lost on overflow;
//!   `EBUSY`/`EAGAIN` from submit makes us reap completions first.
//! * A slot is reused only once no operation pointing at its buffer can
//!   still complete; every `user_data` carries the slot's generation, so a
//!   late completion for an old use of a slot is recognised and ignored.
//!
//! # Reload and shutdown
//!
//! A `POLL_ADD` on the worker's eventfd is always pending until shutdown.
//! When it fires, the worker takes a reloaded reply from its mailbox, if
//! one is there; sends already under way finish with the reply they
//! started. The old reply is never freed. When it fires with the shutdown
//! flag set, the worker cancels its multishot accepts, accepts what is
//! still queued in its listeners before closing them (closing an
//! SO_REUSEPORT listener resets what is queued in it), serves open and
//! parked connections until they finish or time out, and then waits for
//! the drain barrier before the ring and the buffer arena are dropped.
//!
//! # Test hooks (environment variables)
//!
//! * `FLASHPOLICYD_FORCE_NO_URING=1`: `probe` fails, as on a kernel or
//!   container that refuses io_uring (`auto` then picks epoll).
//! * `FLASHPOLICYD_URING_ENTRIES=N`: ring size (default 1024; the completion
//!   queue is 4x), to overflow a tiny completion queue in tests.
//! * `FLASHPOLICYD_URING_SETUP=1|2|3`: skip the first set-up attempts, so
//!   the fallbacks run on a kernel that has everything.
//!
//! What was measured and tried on the way to this design (direct
//! descriptors, linked send → close, skip-success, batched waits, zero-copy
//! sends), with the commands that reproduce it, is in `benches/README.md`.

use std::io;

use tracing::{debug, warn};

use super::WorkerCtx;

mod accept;
mod arena;
mod conn;
mod op;
mod ring;
mod setup;
mod teardown;
mod unavailable;
mod worker;

pub(crate) use ring::Ring;
pub(crate) use setup::probe;
pub(crate) use setup::{build_ring, entries};
pub(crate) use unavailable::UringUnavailable;

/// Runs one worker until shutdown; it counts in `ctx.tally`.
pub(crate) fn run(mut ctx: WorkerCtx) -> io::Result<()> {
    let started = ctx.started.take();
    let (ring, flags) = setup::build_ring(setup::entries())?;
    let support = setup::check_ring(&ring, flags).map_err(|e| io::Error::other(e.to_string()))?;
    if ctx.send_zc && !support.send_zc {
        warn!(
            "worker {}: the kernel has no IORING_OP_SEND_ZC; sending with SEND",
            ctx.id
        );
    }
    debug!(
        "worker {}: ring of {} entries ({})",
        ctx.id,
        ring.params().sq_entries(),
        support.flags
    );
    let mut worker = worker::Worker::new(ctx, ring, support.send_zc);
    if !started.arrive() {
        // Start-up abandoned: nothing was submitted, nothing is served.
        worker.teardown();
        return Ok(());
    }
    let result = worker.run();
    worker.teardown();
    result
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::worker::{Lifecycle, Worker};
    use super::*;
    use crate::control::{ShutdownFlag, Wakeup};
    use crate::reload::ReplyMailbox;

    /// A worker that fails tears down with connections open: once the
    /// drain is confirmed, their descriptors are closed (the peer sees
    /// end-of-stream), not leaked.
    #[test]
    fn teardown_after_a_failure_closes_open_connections() {
        if let Err(why) = probe(false) {
            if std::env::var_os("FLASHPOLICYD_REQUIRE_URING").is_some_and(|v| v == "1") {
                panic!("FLASHPOLICYD_REQUIRE_URING=1 but io_uring is unavailable: {why}");
            }
            eprintln!("skipped: io_uring is unavailable here: {why}");
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let (counters, mut tallies) = crate::metrics::Counters::new(1);
        let tally = tallies.remove(0);
        let ctx = WorkerCtx {
            id: 0,
            listeners: vec![listener],
            reply: b"reply\0",
            new_reply: ReplyMailbox::default(),
            timeout: Duration::from_secs(60),
            max_connections: 8,
            wakeup: Wakeup::new().expect("eventfd"),
            shutdown: ShutdownFlag::default(),
            send_zc: false,
            started: Default::default(),
            tally,
            proxy: None,
            address_limit: None,
        };
        let (ring, flags) = setup::build_ring(8).expect("ring");
        setup::check_ring(&ring, flags).expect("ring features");
        let mut worker = Worker::new(ctx, ring, false);
        worker.arm_wake().expect("poll");
        worker.arm_accept(0).expect("accept");
        let mut peers = Vec::new();
        for _ in 0..3 {
            let (ours, theirs) = UnixStream::pair().expect("socketpair");
            // A recv in flight on each, as for a client that sent nothing.
            worker.on_accepted(ours.into_raw_fd()).expect("recv");
            peers.push(theirs);
        }
        worker.ring.submit_now().expect("submit");
        assert_eq!(worker.conns.len(), 3);

        // As after an error in `run`: the drain was never started.
        worker.teardown();
        assert_eq!(
            worker.lifecycle,
            Lifecycle::Done,
            "the drain was not confirmed"
        );
        assert!(worker.conns.is_empty());
        let counted = counters.snapshot(0);
        assert_eq!(counted.accepted, 3, "{counted:?}");
        for (i, mut peer) in peers.into_iter().enumerate() {
            peer.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut buf = [0u8; 8];
            loop {
                match peer.read(&mut buf) {
                    Ok(0) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => panic!("connection {i} still open after teardown: {other:?}"),
                }
            }
        }
    }
}
