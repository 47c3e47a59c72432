//! The io_uring engine: one ring per worker thread, driven by completions.
//!
//! Each worker owns its SO_REUSEPORT listeners, its wake-up eventfd, a slab
//! of connections and a fixed arena of receive buffers, both sized once at
//! start-up. The life of a connection, in submissions:
//!
//! 1. A **multishot accept** per listener (`IORING_OP_ACCEPT` with
//!    `IORING_ACCEPT_MULTISHOT`) posts one completion per new connection. It
//!    is re-armed whenever a completion arrives without `IORING_CQE_F_MORE`.
//! 2. Each new connection takes a slab slot and gets one `RECV` into its slot
//!    of the arena (`RECV_BUF` bytes; a request needs at most
//!    [`MAX_REQUEST_LEN`]). The bytes go to the connection's [`Recogniser`];
//!    `NeedMore` re-submits the recv, so a request split over any number of
//!    reads works.
//! 3. On a request: one `SEND` of the shared, static reply
//!    (`MSG_NOSIGNAL | MSG_WAITALL`) **linked** to a `CLOSE` of the socket,
//!    both submitted together and both with `IOSQE_CQE_SKIP_SUCCESS`, so a
//!    served connection costs no completion at all. The slot is freed at
//!    submission and the connection counted as served: nothing in flight
//!    points into the slot's buffer (the reply is `'static`). The two
//!    operations' `user_data` carry the raw descriptor, not the slot. If the
//!    send fails or comes up short, the link breaks: the kernel posts the
//!    send's completion (skip-success only skips successes) and, because the
//!    failed request had skip-success, suppresses the cancelled close's
//!    completion (`REQ_F_SKIP_LINK_CQES`). The descriptor is then still ours:
//!    we close it (synchronously: the rare path) and move the count from
//!    served to failed. `MSG_WAITALL` makes the kernel retry partial sends
//!    internally, so "short" only happens together with an error. A close
//!    that fails posts a completion too; it is only logged. Descriptor
//!    numbers are reused after the close, but a completion naming the old
//!    number can only come while the close has not run (the send failed), so
//!    it never meets a new connection. The request has been read to its
//!    terminator, so the close sends FIN, not RST. With `DEFER_TASKRUN` the
//!    close runs as task work inside the same `io_uring_enter` that submitted
//!    the pair and waits for the next completion. The send has no deadline
//!    any more: a ~200-byte reply into a fresh socket's empty send buffer
//!    does not wait (only global TCP memory pressure could make it), and the
//!    shutdown drain covers it like any other submission.
//! 4. Rejects, end-of-stream before a request, errors and timeouts: one
//!    `CLOSE` with skip-success; the slot is free at once, since no operation
//!    that points into it is in flight any more.
//!
//! With `--send-zc` the reply goes out with `IORING_OP_SEND_ZC` instead, not
//! linked: the first completion carries the result (and `F_MORE` when a
//! notification follows), the second has `IORING_CQE_F_NOTIF`. The socket is
//! closed after the result; the notification only lowers a counter that the
//! shutdown drain waits for. The reply buffer is `'static`, so nothing a
//! late notification refers to can be freed.
//!
//! # Timeouts: a deadline queue and `shutdown(2)`, not linked timeouts
//!
//! A `LINK_TIMEOUT` per recv would cost a second submission and a second
//! completion per recv, and a kernel hrtimer armed and cancelled per recv,
//! even though almost every client sends its 23 bytes at once. Instead every
//! connection gets an entry in the shared [`DeadlineQueue`] (all share one
//! timeout, so a FIFO is sorted), and the loop waits in `io_uring_enter`
//! with `IORING_ENTER_EXT_ARG` and a timeout equal to the earliest deadline:
//! no timer operation at all on the fast path.
//!
//! A connection whose deadline passes is marked timed out and its socket is
//! shut down (`shutdown(fd, SHUT_RDWR)`, a plain syscall; the descriptor
//! stays open and ours). That wakes the pending recv, which completes at
//! once with 0 (or with data or an error, if it was completing anyway), and
//! a zero-copy send, which completes with `EPIPE` or short; the completion
//! sees the mark and closes the connection as timed out. Unlike an
//! `ASYNC_CANCEL`, which this engine used before, the shutdown cannot miss:
//! a cancel fails with `EALREADY`/`ENOENT` when it meets the operation
//! mid-retry (a wake-up that found no data re-arms the recv), and then
//! nothing would ever end the connection, which would hold its slot and
//! block the shutdown drain forever. A recv submitted after the shutdown
//! sees `RCV_SHUTDOWN` and returns 0 at once. As a second line, the
//! connection keeps a deadline until it is gone; if it is still open a
//! `--timeout` later, or the shutdown call fails, an `ASYNC_CANCEL` is added
//! (its failure only logged). The client sees a FIN, as with the epoll
//! engine's close. Timeouts are the rare path; they pay, the fast path does
//! not.
//!
//! # Limits
//!
//! * `--max-connections`: when the slab is full the multishot accepts are
//!   cancelled and not re-armed until the open count falls to a low-water
//!   mark, so new clients wait in the kernel's accept queue (as with the
//!   epoll engine; a client accepted and closed at once would get no policy).
//!   Connections whose accept completions were already on their way when
//!   the cancel went in are *parked* (accepted, not yet read) and take the
//!   next free slots; only if more than [`MAX_PARKED`] race in is one closed
//!   at once (counted as shed). At shutdown, what is still queued in the
//!   listeners is parked without bound (the backlog bounds it) and served.
//! * EMFILE/ENFILE (and ENOBUFS/ENOMEM): the multishot accept ends with that
//!   error. A spare descriptor (an open `/dev/null`) is closed to accept one
//!   queued connection synchronously and close it (shed), the spare is
//!   reopened, and the accept is re-armed only after a [`ACCEPT_BACKOFF`]
//!   `TIMEOUT` operation: no spin. The errno of a multishot accept's final
//!   completion goes through the same classification as the epoll engine's
//!   `accept` ([`classify_accept_error`]); unknown errors back off the same
//!   way, with a warning at most once per [`WARN_INTERVAL`]. Only errors
//!   that mean the operation itself is refused (`EINVAL`, `EBADF`,
//!   `ENOTSOCK`, `EOPNOTSUPP`) stop the worker.
//! * `--max-connections` is capped at [`MAX_CONNECTIONS_PER_WORKER`] per
//!   worker in both engines (with a warning at start-up): every slot gets
//!   its receive buffer up front.
//! * A full submission queue: submit and push again. A completion queue that
//!   overflows: the ring has `IORING_FEAT_NODROP` (required), so nothing is
//!   lost; `EBUSY`/`EAGAIN` from submit makes us reap completions first.
//! * A slot is reused only once no operation pointing at its buffer can
//!   still complete; every `user_data` carries the slot's generation, so a
//!   late completion for an old use of a slot is recognised and ignored.
//!
//! # Reload and shutdown
//!
//! A `POLL_ADD` on the worker's eventfd is always pending (until shutdown).
//! When it fires, the worker first takes a reloaded policy's reply from its
//! mailbox, if one is there: every request completed from then on is
//! answered with it, while a zero-copy send already under way finishes with
//! the reply it started (the connection keeps it). The old reply is never
//! freed: sends still in flight point at it. Then, without the shutdown
//! flag, the poll is armed again. When it fires with
//! the flag set, the worker cancels its multishot accepts, then (like the
//! epoll engine) accepts what is still queued in its listeners before
//! closing them (closing an SO_REUSEPORT listener resets what is queued in
//! it), and keeps serving open connections until they finish or time out.
//! Out of descriptors during that last accept, queued clients are shed one
//! by one with the spare descriptor (a FIN, not a reset), as in the epoll
//! engine; only without a spare does the listener's close reset the rest.
//! Finally a `NOP` with `IOSQE_IO_DRAIN` is submitted: its completion means
//! every earlier submission, including the skip-success closes and cancels
//! whose completions we never see, has finished. Only then are the ring and
//! the buffer arena dropped. If a worker fails, it cancels everything in
//! flight and waits for the drain, then closes the descriptors of the
//! connections still open; if even the drain cannot be confirmed, the
//! buffer arena and those descriptors are leaked rather than freed or
//! closed under the kernel's feet (a closed number can be reused by a new
//! file while an operation still names it).
//!
//! # Ring set-up
//!
//! `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (6.1+): task work
//! runs only when we enter the kernel to wait, in one batch. Where refused
//! (`EINVAL`) we fall back to `COOP_TASKRUN | TASKRUN_FLAG`, then to
//! `SUBMIT_ALL` alone, then to no flags. `SUBMIT_ALL` is added where known,
//! so one bad entry does not stop a batch.
//!
//! # Test hooks (environment variables)
//!
//! * `FLASHPOLICYD_FORCE_NO_URING=1`: [`probe`] fails, as on a kernel or
//!   container that refuses io_uring (`auto` then picks epoll).
//! * `FLASHPOLICYD_URING_ENTRIES=N`: ring size (default 1024; the completion
//!   queue is 4x), to overflow a tiny completion queue in tests.
//! * `FLASHPOLICYD_URING_SETUP=1|2|3`: skip the first set-up attempts, so
//!   the fallbacks run on a kernel that has everything.
//!
//! # Measured / tried
//!
//! On this 2-core development VM (AMD EPYC, kernel 6.18, shared with other
//! builds, so run-to-run noise is ±15%), one worker pinned to core 0 and
//! `flashpolicy-loadgen -c 32 -t 1` on core 1, `perf stat -p` on the server:
//!
//! * epoll ≈ 6.9 syscalls per connection, this engine ≈ 1.2 (one
//!   `io_uring_enter` per loop), yet server CPU per connection differs only
//!   by ~5–15% (≈ 19–26 µs here, 23–29 µs for epoll, over five runs of
//!   each kind): user time is under 1 µs per connection on both; the rest
//!   is the kernel's TCP work, which no engine avoids. `--defer-accept` saves more than the engine choice (≈ 20 µs
//!   for both).
//! * Direct descriptors (accept with `IORING_FILE_INDEX_ALLOC`, fixed-file
//!   recv/send/close): no difference within the noise (21.0 vs 21.3 µs
//!   median of 4), and they add limits of their own (the table is capped by
//!   RLIMIT_NOFILE; `SOCK_CLOEXEC` is refused with them). Not kept.
//! * Linked send→close against send, wait, close: no difference within the
//!   noise (24.1 vs 23.3 µs, median of 5). Kept, since it saves a loop
//!   iteration and a completion per connection at no cost in code.
//! * Skip-success on the linked close too, the slot freed at submission
//!   (step 3 above; before, the close posted the one completion of a served
//!   connection). Server `--backend uring --threads 1` pinned with
//!   `taskset -c 1`, `flashpolicy-loadgen --source 127.0.0.2-127.0.0.254
//!   --duration 3s --json` pinned on CPU 0, before/after binaries
//!   alternating, CPU from `/proc/PID/stat` utime+stime over `ok`:
//!   `--connections 64`: 19.1 → 18.6 µs per connection (median of 16 each;
//!   lower in 14 of 16 paired rounds); `--rate 5000`: 28.7 → 28.0 µs
//!   (median of 30 each; lower in only 16 of 30 rounds, so within the
//!   noise). `strace -c -f`, once each: `io_uring_enter` per connection
//!   0.63 → 0.59 closed loop, 2.95 → 1.99 open loop (accept, recv, and no
//!   longer a wake-up for the close). Kept: fewer syscalls and never worse.
//! * Batching the wait (`want` 8 or 16 with `min_wait_usec` 50–100): ~3x
//!   fewer syscalls, but no less CPU per connection (20–22 µs vs 19 µs) and
//!   up to 100 µs more latency when idle. Not kept: the default waits for
//!   one completion.
//! * `--send-zc` on loopback: no gain (25.4 vs 26.5 µs), as the kernel
//!   documentation predicts; it stays an option for the benchmark issue.
//! * Registered buffers: not tried; the reply is one ~200-byte static
//!   buffer and the receive buffers are 64 bytes, so there is little page
//!   pinning to save.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use flashpolicy_proto::request::{Recogniser, Verdict, MAX_REQUEST_LEN};
use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};
use slab::Slab;
use tracing::{debug, warn};

use super::common::{
    self, accept_error, adopt_new_reply, classify_accept_error, connection_cap, due, is_live,
    open_spare, AcceptError, Generation, ACCEPT_BACKOFF,
};
#[cfg(doc)]
use super::common::{MAX_CONNECTIONS_PER_WORKER, WARN_INTERVAL};
use super::unavailable::UringUnavailable;
use super::{Stats, WorkerCtx};
use crate::control::{ShutdownFlag, Wakeup};
use crate::reload::ReplyMailbox;
use crate::timer::DeadlineQueue;

/// Bytes per receive buffer. A request never needs more than
/// [`MAX_REQUEST_LEN`]; a little more lets a client's whole first segment in
/// without reading a flood (same as the epoll engine).
const RECV_BUF: usize = 64;
const _: () = assert!(RECV_BUF >= MAX_REQUEST_LEN);

/// Submission queue entries per ring (the completion queue gets four times
/// as many). `FLASHPOLICYD_URING_ENTRIES` overrides it, for tests that want
/// a tiny completion queue.
const DEFAULT_ENTRIES: u32 = 1024;

/// Accepted connections that may wait for a slot (see the module docs).
pub const MAX_PARKED: usize = 64;

/// Retries of a recv or send that failed with a transient error.
const MAX_RETRIES: u8 = 8;

/// Environment variable that makes [`probe`] fail, to test the fallback.
pub const FORCE_NO_URING_ENV: &str = "FLASHPOLICYD_FORCE_NO_URING";

/// Environment variable that skips the first N ring set-up attempts (test
/// hook: 1 = COOP_TASKRUN, 2 = SUBMIT_ALL only, 3 = no flags).
pub const SETUP_ENV: &str = "FLASHPOLICYD_URING_SETUP";

/// Environment variable overriding the ring size, 1024 submission entries
/// (test hook: a tiny completion queue).
pub const ENTRIES_ENV: &str = "FLASHPOLICYD_URING_ENTRIES";

// ---------------------------------------------------------------------------
// user_data: kind (8 bits) | generation (24 bits) | slot (32 bits)

const GEN_MASK: u32 = (1 << 24) - 1;

/// What a submission was, recovered from its completion's `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    /// Multishot accept; slot = listener index.
    Accept = 1,
    Recv,
    /// The linked send (completion only on failure); slot = the raw
    /// descriptor, generation = the bytes it was asked to send.
    Send,
    /// The close linked after a send (completion only on failure); slot =
    /// the raw descriptor.
    LinkedClose,
    SendZc,
    /// A stand-alone close (completion only on failure).
    Close,
    /// An `ASYNC_CANCEL` (completion only on failure).
    Cancel,
    /// The poll on the wake-up eventfd.
    Wake,
    /// The accept back-off timer.
    Backoff,
    /// The final `IO_DRAIN` barrier.
    Drain,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Accept,
            2 => Kind::Recv,
            3 => Kind::Send,
            4 => Kind::LinkedClose,
            5 => Kind::SendZc,
            6 => Kind::Close,
            7 => Kind::Cancel,
            8 => Kind::Wake,
            9 => Kind::Backoff,
            10 => Kind::Drain,
            _ => return None,
        })
    }
}

fn tag(kind: Kind, slot: usize, generation: u32) -> u64 {
    ((kind as u64) << 56) | (u64::from(generation & GEN_MASK) << 32) | (slot as u64 & 0xffff_ffff)
}

fn untag(user_data: u64) -> (Option<Kind>, usize, u32) {
    (
        Kind::from_u8((user_data >> 56) as u8),
        (user_data & 0xffff_ffff) as usize,
        ((user_data >> 32) as u32) & GEN_MASK,
    )
}

// ---------------------------------------------------------------------------
// Probe and ring set-up

/// Applies one set of ring set-up flags.
type Setup = fn(&mut io_uring::Builder);

/// Builds a ring with the best flags the kernel accepts. Returns the ring
/// and a short description of the flags.
fn build_ring(entries: u32) -> io::Result<(IoUring, &'static str)> {
    let cq = entries.saturating_mul(4);
    let attempts: [(&'static str, Setup); 4] = [
        ("single_issuer+defer_taskrun", |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_submit_all();
        }),
        ("coop_taskrun+taskrun_flag", |b| {
            b.setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_submit_all();
        }),
        ("submit_all", |b| {
            b.setup_submit_all();
        }),
        ("no setup flags", |_| {}),
    ];
    // Test hook: start at a later attempt, as if the kernel refused the
    // earlier ones, so the fallbacks get exercised on a new kernel too.
    let skip = std::env::var(SETUP_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(attempts.len() - 1);
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for (name, apply) in attempts.into_iter().skip(skip) {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq).setup_clamp();
        apply(&mut builder);
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, name)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// The opcodes this engine needs. `SOCKET` is not used: it arrived in the
/// same release as multishot accept (5.19), which has no probe bit of its own.
const REQUIRED_OPS: [(u8, &str); 9] = [
    (opcode::AcceptMulti::CODE, "ACCEPT"),
    (opcode::Socket::CODE, "multishot accept (5.19)"),
    (opcode::Recv::CODE, "RECV"),
    (opcode::Send::CODE, "SEND"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::Nop::CODE, "NOP"),
];

/// What a ring offers, checked once per ring.
struct Support {
    flags: &'static str,
    send_zc: bool,
}

fn check_ring(ring: &IoUring, flags: &'static str) -> Result<Support, UringUnavailable> {
    let params = ring.params();
    if !params.is_feature_nodrop() {
        return Err(UringUnavailable::MissingFeature("IORING_FEAT_NODROP (5.5)"));
    }
    if !params.is_feature_ext_arg() {
        return Err(UringUnavailable::MissingFeature(
            "IORING_FEAT_EXT_ARG (5.11)",
        ));
    }
    if !params.is_feature_skip_cqe_on_success() {
        return Err(UringUnavailable::MissingFeature(
            "IORING_FEAT_CQE_SKIP (5.17)",
        ));
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(UringUnavailable::Probe)?;
    for (code, name) in REQUIRED_OPS {
        if !probe.is_supported(code) {
            return Err(UringUnavailable::MissingOpcode(name));
        }
    }
    Ok(Support {
        flags,
        send_zc: probe.is_supported(opcode::SendZc::CODE),
    })
}

/// Checks once whether this engine can run here: the test hook
/// `FLASHPOLICYD_FORCE_NO_URING=1`, the `kernel.io_uring_disabled` sysctl,
/// building a ring (seccomp profiles refuse `io_uring_setup` with EPERM or
/// ENOSYS), the features and the opcodes. Returns a line for the log.
pub fn probe(send_zc: bool) -> Result<String, UringUnavailable> {
    if std::env::var_os(FORCE_NO_URING_ENV).is_some_and(|v| v == "1") {
        return Err(UringUnavailable::ForcedOff);
    }
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if disabled == "2" {
        return Err(UringUnavailable::DisabledBySysctl);
    }
    let (ring, flags) = build_ring(8).map_err(|e| UringUnavailable::setup(e, &disabled))?;
    let support = check_ring(&ring, flags)?;
    let zc = match (send_zc, support.send_zc) {
        (true, true) => ", SEND_ZC",
        (true, false) => ", no SEND_ZC: --send-zc falls back to SEND",
        _ => "",
    };
    Ok(format!("io_uring available ({}{zc})", support.flags))
}

// ---------------------------------------------------------------------------
// Receive buffers

/// One fixed receive buffer per slot, allocated once, never moved or resized
/// while the worker runs. Accessed only through raw pointers, so no Rust
/// reference ever covers a buffer the kernel may be writing into.
struct RecvArena {
    bufs: NonNull<[[u8; RECV_BUF]]>,
}

impl RecvArena {
    fn new(slots: usize) -> RecvArena {
        let boxed: Box<[[u8; RECV_BUF]]> = vec![[0u8; RECV_BUF]; slots.max(1)].into_boxed_slice();
        RecvArena {
            bufs: NonNull::from(Box::leak(boxed)),
        }
    }

    fn slots(&self) -> usize {
        self.bufs.len()
    }

    /// Start of slot `slot`'s buffer, for a recv.
    fn ptr(&self, slot: usize) -> *mut u8 {
        assert!(slot < self.slots(), "slot {slot} outside the arena");
        // SAFETY: `slot` is in bounds (checked above), so the offset stays
        // inside the one allocation `bufs` points to.
        unsafe { self.bufs.cast::<[u8; RECV_BUF]>().as_ptr().add(slot).cast() }
    }

    /// The first `len` bytes of slot `slot`.
    ///
    /// # Safety
    /// No operation writing into this slot may be in flight (its completion
    /// has been reaped), and the slice must be dropped before the next recv
    /// into the slot is submitted.
    unsafe fn filled(&self, slot: usize, len: usize) -> &[u8] {
        let len = len.min(RECV_BUF);
        // SAFETY: in bounds (`ptr` checks the slot, `len` is clamped); the
        // caller guarantees nothing writes the bytes while the slice lives.
        unsafe { std::slice::from_raw_parts(self.ptr(slot), len) }
    }

    /// Gives the memory up for good: used when the kernel might still write
    /// into it and we cannot wait to find out.
    fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for RecvArena {
    fn drop(&mut self) {
        // SAFETY: `bufs` came from `Box::leak` in `new` and is dropped once;
        // the worker drops the arena only after the drain barrier confirmed
        // that no operation is in flight (otherwise it calls `leak`).
        drop(unsafe { Box::from_raw(self.bufs.as_ptr()) });
    }
}

// ---------------------------------------------------------------------------
// The worker

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A recv into the slot's buffer is in flight.
    Reading,
    /// A SEND_ZC is in flight. (A linked send and close leave the slot
    /// at once: see [`Worker::submit_send`].)
    Sending,
}

#[derive(Debug)]
struct Conn {
    fd: RawFd,
    generation: u32,
    recogniser: Recogniser,
    phase: Phase,
    /// The reply this connection is sent: the worker's when its request
    /// completed, so a reload never changes a reply half-way.
    reply: &'static [u8],
    /// Bytes of `reply` already sent.
    sent: usize,
    deadline: Instant,
    timed_out: bool,
    retries: u8,
}

impl Generation for Conn {
    fn generation(&self) -> u32 {
        self.generation
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptState {
    /// No accept armed.
    Idle,
    /// A multishot accept is armed.
    Armed,
    /// A cancel was submitted; the final completion has not come yet.
    Cancelling,
    /// Waiting for the back-off timer.
    BackingOff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    NotStarted,
    Submitted,
    Done,
}

struct Worker {
    id: usize,
    ring: IoUring,
    listeners: Vec<Option<TcpListener>>,
    accept: Vec<AcceptState>,
    reply: &'static [u8],
    new_reply: ReplyMailbox,
    timeout: Duration,
    max: usize,
    resume_at: usize,
    wakeup: Wakeup,
    shutdown: ShutdownFlag,
    send_zc: bool,
    conns: Slab<Conn>,
    generations: Vec<u32>,
    bufs: RecvArena,
    parked: VecDeque<RawFd>,
    deadlines: DeadlineQueue,
    cqes: VecDeque<cqueue::Entry>,
    /// The back-off timer's duration; boxed so its address is stable while
    /// a TIMEOUT operation refers to it.
    backoff_ts: Box<types::Timespec>,
    backoff_armed: bool,
    wake_armed: bool,
    zc_notifs: usize,
    paused: bool,
    shutting_down: bool,
    listeners_closed: bool,
    drain: Drain,
    spare: Option<File>,
    stats: Stats,
    last_full_warning: Option<Instant>,
    last_fd_warning: Option<Instant>,
    last_stuck_warning: Option<Instant>,
}

/// Runs one worker until shutdown.
pub fn run(ctx: WorkerCtx) -> io::Result<Stats> {
    let entries = std::env::var(ENTRIES_ENV)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&n| n >= 2)
        .unwrap_or(DEFAULT_ENTRIES);
    let (ring, flags) = build_ring(entries)?;
    let support = check_ring(&ring, flags).map_err(io::Error::other)?;
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
    let mut worker = Worker::new(ctx, ring, support.send_zc)?;
    let result = worker.run();
    worker.teardown();
    result.map(|()| worker.stats)
}

impl Worker {
    fn new(ctx: WorkerCtx, ring: IoUring, zc_supported: bool) -> io::Result<Worker> {
        let max = connection_cap(ctx.max_connections);
        let accept = vec![AcceptState::Idle; ctx.listeners.len()];
        Ok(Worker {
            id: ctx.id,
            ring,
            listeners: ctx.listeners.into_iter().map(Some).collect(),
            accept,
            reply: ctx.reply,
            new_reply: ctx.new_reply,
            timeout: ctx.timeout,
            max,
            resume_at: max - (max / 16).max(1),
            wakeup: ctx.wakeup,
            shutdown: ctx.shutdown,
            send_zc: ctx.send_zc && zc_supported,
            conns: Slab::with_capacity(max),
            generations: vec![0; max],
            bufs: RecvArena::new(max),
            parked: VecDeque::with_capacity(MAX_PARKED),
            deadlines: DeadlineQueue::new(ctx.timeout),
            cqes: VecDeque::with_capacity(1024),
            backoff_ts: Box::new(types::Timespec::from(ACCEPT_BACKOFF)),
            backoff_armed: false,
            wake_armed: false,
            zc_notifs: 0,
            paused: false,
            shutting_down: false,
            listeners_closed: false,
            drain: Drain::NotStarted,
            spare: open_spare(),
            stats: Stats::default(),
            last_full_warning: None,
            last_fd_warning: None,
            last_stuck_warning: None,
        })
    }

    fn run(&mut self) -> io::Result<()> {
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
            if self.drain == Drain::Done {
                return Ok(());
            }
            self.wait()?;
            while let Some(cqe) = self.cqes.pop_front() {
                self.complete(cqe)?;
            }
            self.expire(Instant::now())?;
        }
    }

    // --- submission -------------------------------------------------------

    /// Pushes `entries` into the submission queue as one group (a linked
    /// pair stays contiguous), submitting first if the queue is full.
    ///
    /// # Safety
    /// Every pointer in `entries` must stay valid until the operation's
    /// completion (each caller says why in its `SAFETY` comment).
    unsafe fn push(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
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
    /// it reaps completions (kept for processing) and tries again.
    fn submit_now(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                        if self.reap() == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Submits what is queued and waits for at least one completion or the
    /// earliest deadline, then moves every completion into `self.cqes`.
    fn wait(&mut self) -> io::Result<()> {
        if !self.cqes.is_empty() {
            self.submit_now()?;
        } else {
            let conns = &self.conns;
            self.deadlines
                .discard_stale(|key, generation| is_live(conns, key, generation));
            let result = match self.deadlines.next_timeout(Instant::now()) {
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
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                        if self.reap() == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    _ => return Err(e),
                }
            }
        }
        self.reap();
        Ok(())
    }

    /// Copies every available completion into `self.cqes`, freeing its
    /// slot in the ring. Returns how many.
    fn reap(&mut self) -> usize {
        let before = self.cqes.len();
        self.cqes.extend(self.ring.completion());
        self.cqes.len() - before
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(self.wakeup.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(tag(Kind::Wake, 0, 0));
        // SAFETY: a poll refers to no memory; the eventfd lives in `self`
        // until after the drain barrier.
        unsafe { self.push(&[entry]) }?;
        self.wake_armed = true;
        Ok(())
    }

    fn arm_accept(&mut self, li: usize) -> io::Result<()> {
        let Some(listener) = self.listeners.get(li).and_then(Option::as_ref) else {
            return Ok(());
        };
        let entry = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(tag(Kind::Accept, li, 0));
        // SAFETY: a multishot accept without an address refers to no
        // memory; the listener is only closed once its accept has ended.
        unsafe { self.push(&[entry]) }?;
        self.accept[li] = AcceptState::Armed;
        Ok(())
    }

    /// Submits an `ASYNC_CANCEL` of `target` (skip-success). Its
    /// completion, posted only when the cancel fails (the target already
    /// finished, or is finishing), carries the target's slot and generation
    /// for the log; nothing relies on it.
    fn cancel(&mut self, target: u64) -> io::Result<()> {
        let (_, slot, generation) = untag(target);
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(tag(Kind::Cancel, slot, generation));
        // SAFETY: a cancel refers to no memory, only to a user_data value.
        unsafe { self.push(&[entry]) }
    }

    fn cancel_accept(&mut self, li: usize) -> io::Result<()> {
        match self.accept[li] {
            AcceptState::Armed => {
                self.cancel(tag(Kind::Accept, li, 0))?;
                self.accept[li] = AcceptState::Cancelling;
            }
            AcceptState::BackingOff => self.accept[li] = AcceptState::Idle,
            AcceptState::Idle | AcceptState::Cancelling => {}
        }
        Ok(())
    }

    fn arm_backoff(&mut self) -> io::Result<()> {
        if self.backoff_armed {
            return Ok(());
        }
        let entry = opcode::Timeout::new(&*self.backoff_ts as *const types::Timespec)
            .build()
            .user_data(tag(Kind::Backoff, 0, 0));
        // SAFETY: the timespec is boxed in `self` (stable address), never
        // changed, and dropped only after the drain barrier.
        unsafe { self.push(&[entry]) }?;
        self.backoff_armed = true;
        Ok(())
    }

    /// Queues a stand-alone close of `fd`; its completion (only posted on
    /// failure) needs no slot.
    fn close_fd(&mut self, fd: RawFd) -> io::Result<()> {
        let entry = opcode::Close::new(types::Fd(fd))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(tag(Kind::Close, 0, 0));
        // SAFETY: a close refers to no memory. `fd` is ours and nothing else
        // refers to it once this is queued (its other operations are done).
        unsafe { self.push(&[entry]) }
    }

    fn submit_recv(&mut self, key: usize) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        conn.phase = Phase::Reading;
        let entry = opcode::Recv::new(types::Fd(conn.fd), self.bufs.ptr(key), RECV_BUF as u32)
            .build()
            .user_data(tag(Kind::Recv, key, conn.generation));
        // SAFETY: the recv writes into slot `key` of the arena, which is
        // neither moved nor freed before the drain barrier (or is leaked),
        // and slot `key` is not reused, nor its buffer read, until this
        // recv's completion has been handled.
        unsafe { self.push(&[entry]) }
    }

    /// Sends the reply (the rest of it, after a short zero-copy send).
    ///
    /// Without `--send-zc`: a `SEND` linked to a `CLOSE`, both skip-success,
    /// and the slot is freed at once with the connection counted as served.
    /// Nothing in flight points into the slot's buffer (the reply is
    /// `'static`), and neither operation posts a completion unless the send
    /// fails or comes up short. Their `user_data` carry the raw descriptor,
    /// not the slot: the send's completion means the link broke, the close
    /// never ran, and the descriptor is still ours (see
    /// [`Worker::on_send_failed`]). After a successful close the number may
    /// be reused by a new accept, but by then the send has succeeded, so no
    /// completion naming the old use can come.
    fn submit_send(&mut self, key: usize) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        let reply = conn.reply;
        let rest = &reply[conn.sent.min(reply.len())..];
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        let flags = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
        let (fd, generation) = (conn.fd, conn.generation);
        if self.send_zc {
            conn.phase = Phase::Sending;
            let entry = opcode::SendZc::new(types::Fd(fd), rest.as_ptr(), len)
                .flags(flags)
                .build()
                .user_data(tag(Kind::SendZc, key, generation));
            // SAFETY: the reply is `&'static`: it outlives the send and its
            // zero-copy notification.
            return unsafe { self.push(&[entry]) };
        }
        // A reply is at most a few KiB (the policy is capped), far below
        // GEN_MASK; clamping only makes `on_send_failed` stricter.
        let len = len.min(GEN_MASK);
        let fd_slot = fd as u32 as usize;
        let send = opcode::Send::new(types::Fd(fd), rest.as_ptr(), len)
            .flags(flags)
            .build()
            .flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS)
            .user_data(tag(Kind::Send, fd_slot, len));
        let close = opcode::Close::new(types::Fd(fd))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(tag(Kind::LinkedClose, fd_slot, 0));
        // SAFETY: the send reads only the `&'static` reply; the close refers
        // to no memory. Both go in as one group, so the link cannot be split.
        // The descriptor is handed to these two operations: the slot is
        // freed below and nothing else refers to the descriptor any more.
        unsafe { self.push(&[send, close]) }?;
        self.stats.served += 1;
        self.free_slot(key)
    }

    // --- connections ------------------------------------------------------

    /// A new descriptor from accept: give it a slot, park it, or shed it.
    fn on_accepted(&mut self, fd: RawFd) -> io::Result<()> {
        self.stats.accepted += 1;
        if self.conns.len() < self.max && self.parked.is_empty() {
            self.start_conn(fd)?;
        } else if self.parked.len() < MAX_PARKED || self.shutting_down {
            // At shutdown the listeners' queues are drained into `parked`
            // (bounded by the backlog): like the epoll engine, every client
            // already queued is served, not reset.
            self.parked.push_back(fd);
        } else {
            self.stats.shed += 1;
            self.close_fd(fd)?;
        }
        if self.conns.len() >= self.max {
            self.pause_accepting()?;
        }
        Ok(())
    }

    fn start_conn(&mut self, fd: RawFd) -> io::Result<()> {
        let now = Instant::now();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let generation = self.generations[key];
        entry.insert(Conn {
            fd,
            generation,
            recogniser: Recogniser::new(),
            phase: Phase::Reading,
            reply: self.reply,
            sent: 0,
            deadline: now + self.timeout,
            timed_out: false,
            retries: 0,
        });
        self.deadlines.arm(now, key, generation);
        self.submit_recv(key)
    }

    /// Frees slot `key` (no operation pointing into it is in flight) and
    /// gives it to a parked connection, or lets accepting resume.
    fn free_slot(&mut self, key: usize) -> io::Result<()> {
        if self.conns.try_remove(key).is_none() {
            return Ok(());
        }
        self.generations[key] = self.generations[key].wrapping_add(1) & GEN_MASK;
        if let Some(fd) = self.parked.pop_front() {
            return self.start_conn(fd);
        }
        if self.paused && self.conns.len() <= self.resume_at {
            self.paused = false;
            if !self.shutting_down {
                for li in 0..self.listeners.len() {
                    if self.accept[li] == AcceptState::Idle {
                        self.arm_accept(li)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Closes connection `key` whose operations have all completed.
    fn close_conn(&mut self, key: usize) -> io::Result<()> {
        if let Some(fd) = self.conns.get(key).map(|c| c.fd) {
            self.close_fd(fd)?;
            self.free_slot(key)?;
        }
        Ok(())
    }

    fn pause_accepting(&mut self) -> io::Result<()> {
        if self.paused {
            return Ok(());
        }
        self.paused = true;
        if due(&mut self.last_full_warning, Instant::now()) {
            warn!(
                "worker {}: {} connections open (--max-connections); new clients wait in the \
                 accept queue",
                self.id,
                self.conns.len()
            );
        }
        for li in 0..self.listeners.len() {
            self.cancel_accept(li)?;
        }
        Ok(())
    }

    // --- completions ------------------------------------------------------

    fn complete(&mut self, cqe: cqueue::Entry) -> io::Result<()> {
        let (kind, slot, generation) = untag(cqe.user_data());
        let res = cqe.result();
        let flags = cqe.flags();
        match kind {
            Some(Kind::Accept) => self.on_accept(slot, res, flags),
            Some(Kind::Recv) => self.on_recv(slot, generation, res),
            Some(Kind::Send) => self.on_send_failed(slot, generation, res),
            Some(Kind::LinkedClose) => {
                debug!("worker {}: close after send: {}", self.id, errno(res));
                Ok(())
            }
            Some(Kind::SendZc) => self.on_send_zc(slot, generation, res, flags),
            Some(Kind::Close) => {
                debug!("worker {}: close failed: {}", self.id, errno(res));
                Ok(())
            }
            Some(Kind::Cancel) => {
                if !matches!(-res, libc::ENOENT | libc::EALREADY) {
                    debug!(
                        "worker {}: cancel for slot {slot} ({generation}): {}",
                        self.id,
                        errno(res)
                    );
                }
                Ok(())
            }
            Some(Kind::Wake) => self.on_wake(),
            Some(Kind::Backoff) => self.on_backoff(),
            Some(Kind::Drain) => {
                self.drain = Drain::Done;
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

    fn on_accept(&mut self, li: usize, res: i32, flags: u32) -> io::Result<()> {
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
            if matches!(
                errno,
                libc::EINVAL | libc::EBADF | libc::ENOTSOCK | libc::EOPNOTSUPP
            ) {
                // From an io_uring accept on our own TCP listener these mean
                // the operation itself is refused: re-arming would only fail
                // again at once.
                return Err(io::Error::other(format!(
                    "multishot accept refused: {}",
                    io::Error::from_raw_os_error(errno)
                )));
            }
            let now = Instant::now();
            match classify_accept_error(errno) {
                // One connection failed (or none was there): re-arm below.
                AcceptError::Empty | AcceptError::Retry => {}
                AcceptError::OutOfResources => {
                    if due(&mut self.last_fd_warning, now) {
                        warn!(
                            "worker {}: accept: {}; shedding connections until descriptors \
                             free up (raise `ulimit -n`?)",
                            self.id,
                            io::Error::from_raw_os_error(errno)
                        );
                    }
                    self.shed_one_from(li);
                    self.accept[li] = AcceptState::BackingOff;
                    return self.arm_backoff();
                }
                AcceptError::Other => {
                    if due(&mut self.last_fd_warning, now) {
                        warn!(
                            "worker {}: accept: {}; retrying after {ACCEPT_BACKOFF:?}",
                            self.id,
                            io::Error::from_raw_os_error(errno)
                        );
                    }
                    self.accept[li] = AcceptState::BackingOff;
                    return self.arm_backoff();
                }
            }
        }
        self.accept_ended(li)
    }

    /// Listener `li` has no accept armed any more: re-arm it if we may, or,
    /// during shutdown, close the listeners once none has an accept armed.
    fn accept_ended(&mut self, li: usize) -> io::Result<()> {
        if self.shutting_down {
            return self.close_listeners_when_idle();
        }
        if !self.paused && self.accept[li] == AcceptState::Idle {
            self.arm_accept(li)?;
        }
        Ok(())
    }

    /// Frees the spare descriptor to accept one queued connection on
    /// `listener` synchronously and close it at once, then takes the spare
    /// back. Returns whether a connection was shed.
    fn shed_one(&mut self, listener: &TcpListener) -> bool {
        let shed = common::shed_one(&mut self.spare, || listener.accept().is_ok());
        if shed {
            self.stats.accepted += 1;
            self.stats.shed += 1;
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

    fn on_backoff(&mut self) -> io::Result<()> {
        self.backoff_armed = false;
        if self.spare.is_none() {
            // Another thread took the descriptor we freed; try again now.
            self.spare = open_spare();
        }
        for li in 0..self.accept.len() {
            if self.accept[li] == AcceptState::BackingOff {
                self.accept[li] = AcceptState::Idle;
                self.accept_ended(li)?;
            }
        }
        if self.shutting_down {
            self.close_listeners_when_idle()?;
        }
        Ok(())
    }

    fn on_recv(&mut self, key: usize, generation: u32, res: i32) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if conn.generation != generation || conn.phase != Phase::Reading {
            return Ok(());
        }
        if conn.timed_out {
            self.stats.timed_out += 1;
            return self.close_conn(key);
        }
        let verdict = if res > 0 {
            // SAFETY: this recv's completion is being handled, so nothing
            // writes slot `key`; the slice is dropped before the next recv.
            let bytes = unsafe { self.bufs.filled(key, res as usize) };
            conn.recogniser.feed(bytes)
        } else if res == 0 {
            conn.recogniser.eof()
        } else {
            match -res {
                libc::EINTR | libc::EAGAIN | libc::ENOBUFS | libc::ENOMEM
                    if conn.retries < MAX_RETRIES =>
                {
                    conn.retries += 1;
                    return self.submit_recv(key);
                }
                e => {
                    debug!("worker {}: recv: {}", self.id, errno(-e));
                    self.stats.failed += 1;
                    return self.close_conn(key);
                }
            }
        };
        match verdict {
            Verdict::NeedMore => self.submit_recv(key),
            Verdict::Request { .. } => {
                conn.retries = 0;
                conn.reply = self.reply;
                self.submit_send(key)
            }
            Verdict::Reject(reason) => {
                debug!("worker {}: rejected: {reason}", self.id);
                self.stats.rejected += 1;
                self.close_conn(key)
            }
        }
    }

    /// The linked send of descriptor `fd`, asked to send `len` bytes,
    /// posted a completion: it failed or came up short (with `MSG_WAITALL`
    /// only together with an error), the kernel cancelled the linked close
    /// without a completion (`REQ_F_SKIP_LINK_CQES`), and the descriptor is
    /// still ours. Close it and count the connection as failed, not served.
    fn on_send_failed(&mut self, fd_slot: usize, len: u32, res: i32) -> io::Result<()> {
        let Ok(fd) = RawFd::try_from(fd_slot) else {
            return Ok(());
        };
        if res >= 0 && res as u32 >= len {
            // A success completion (only if skip-success were ignored): the
            // linked close runs, and the descriptor is no longer ours.
            return Ok(());
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
        self.stats.served = self.stats.served.saturating_sub(1);
        self.stats.failed += 1;
        Ok(())
    }

    /// A send ended without sending everything: retry the rest, or close.
    fn send_incomplete(&mut self, key: usize, res: i32) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if conn.timed_out {
            self.stats.failed += 1;
            return self.close_conn(key);
        }
        let retry = if res > 0 {
            conn.sent += res as usize;
            // Progress: the rest gets a fresh deadline.
            let now = Instant::now();
            conn.deadline = now + self.timeout;
            conn.retries = 0;
            self.deadlines.arm(now, key, conn.generation);
            true
        } else {
            matches!(
                -res,
                libc::EINTR | libc::EAGAIN | libc::ENOBUFS | libc::ENOMEM
            ) && conn.retries < MAX_RETRIES
        };
        if retry {
            conn.retries += u8::from(res <= 0);
            self.submit_send(key)
        } else {
            debug!("worker {}: send: {}", self.id, errno(res));
            self.stats.failed += 1;
            self.close_conn(key)
        }
    }

    fn on_send_zc(&mut self, key: usize, generation: u32, res: i32, flags: u32) -> io::Result<()> {
        if cqueue::notif(flags) {
            self.zc_notifs = self.zc_notifs.saturating_sub(1);
            return Ok(());
        }
        if cqueue::more(flags) {
            self.zc_notifs += 1;
        }
        let Some(conn) = self.conns.get(key) else {
            return Ok(());
        };
        if conn.generation != generation || conn.phase != Phase::Sending {
            return Ok(());
        }
        if res >= 0 && conn.sent + res as usize >= conn.reply.len() {
            self.stats.served += 1;
            return self.close_conn(key);
        }
        if res == -libc::EOPNOTSUPP && !conn.timed_out {
            // This socket cannot do zero-copy: send plainly from now on.
            warn!(
                "worker {}: SEND_ZC not supported on this socket; using SEND",
                self.id
            );
            self.send_zc = false;
            return self.submit_send(key);
        }
        self.send_incomplete(key, res)
    }

    fn on_wake(&mut self) -> io::Result<()> {
        self.wake_armed = false;
        // Clear first, then look: a reply put after the look comes with a
        // wake-up of its own, which the poll armed below will see.
        self.wakeup.clear();
        adopt_new_reply(self.id, &self.new_reply, &mut self.reply);
        if self.shutdown.is_set() {
            self.begin_shutdown()
        } else {
            self.arm_wake()
        }
    }

    fn begin_shutdown(&mut self) -> io::Result<()> {
        if self.shutting_down {
            return Ok(());
        }
        self.shutting_down = true;
        debug!(
            "worker {}: shutting down, {} connections open",
            self.id,
            self.conns.len()
        );
        for li in 0..self.listeners.len() {
            self.cancel_accept(li)?;
        }
        if self.backoff_armed {
            self.cancel(tag(Kind::Backoff, 0, 0))?;
        }
        self.close_listeners_when_idle()
    }

    /// During shutdown, once no listener has an accept armed: accept what
    /// is still queued (closing an SO_REUSEPORT listener resets it), then
    /// close the listeners.
    fn close_listeners_when_idle(&mut self) -> io::Result<()> {
        if self.listeners_closed || self.accept.iter().any(|&s| s != AcceptState::Idle) {
            return Ok(());
        }
        self.listeners_closed = true;
        for li in 0..self.listeners.len() {
            let Some(listener) = self.listeners[li].take() else {
                continue;
            };
            loop {
                let e = match listener.accept() {
                    Ok((stream, _)) => {
                        self.on_accepted(stream.into_raw_fd())?;
                        continue;
                    }
                    Err(e) => e,
                };
                match accept_error(&e) {
                    AcceptError::Empty => break,
                    AcceptError::Retry => {}
                    // As in the epoll engine: shed with the spare descriptor
                    // and carry on, since dropping the listener would reset
                    // everyone still queued in it.
                    AcceptError::OutOfResources => {
                        if due(&mut self.last_fd_warning, Instant::now()) {
                            warn!(
                                "worker {}: accept: {e}; shedding connections until \
                                 descriptors free up (raise `ulimit -n`?)",
                                self.id
                            );
                        }
                        if !self.shed_one(&listener) {
                            break;
                        }
                    }
                    AcceptError::Other => {
                        if due(&mut self.last_fd_warning, Instant::now()) {
                            warn!("worker {}: accept: {e}", self.id);
                        }
                        break;
                    }
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

    /// Ends every connection whose deadline has passed: `shutdown(2)` of its
    /// socket makes its pending recv (or zero-copy send) complete at once,
    /// and that completion closes it (see "Timeouts" in the module docs).
    ///
    /// The connection keeps a deadline until it is gone: should it still be
    /// open one `--timeout` later (which would take a kernel that ignores
    /// the shutdown), the shutdown is repeated, an `ASYNC_CANCEL` aimed at
    /// the operation is added, and a warning is logged. The same cancel is
    /// added at once if the shutdown itself fails.
    fn expire(&mut self, now: Instant) -> io::Result<()> {
        while let Some(d) = self.deadlines.pop_expired(now) {
            let Some(conn) = self.conns.get_mut(d.key) else {
                continue;
            };
            if conn.generation != d.generation || conn.deadline > now {
                continue;
            }
            let again = std::mem::replace(&mut conn.timed_out, true);
            conn.deadline = now + self.timeout;
            self.deadlines.arm(now, d.key, d.generation);
            // SAFETY: the connection is live, so `fd` is its open socket,
            // owned by this worker and not yet closed (closing frees the
            // slot). shutdown(2) neither closes the descriptor nor touches
            // our memory.
            let rc = unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
            let failed = (rc != 0).then(io::Error::last_os_error);
            let kind = match conn.phase {
                Phase::Reading => Kind::Recv,
                Phase::Sending => Kind::SendZc,
            };
            if again && due(&mut self.last_stuck_warning, now) {
                warn!(
                    "worker {}: a timed-out connection is still open after another {:?}; \
                     cancelling its {kind:?}",
                    self.id, self.timeout
                );
            }
            if let Some(e) = &failed {
                // ENOTCONN: a reset got there first, and has already ended
                // the operation; the cancel is only a second line.
                debug!("worker {}: shutdown of a timed-out socket: {e}", self.id);
            }
            if again || failed.is_some() {
                self.cancel(tag(kind, d.key, d.generation))?;
            }
        }
        Ok(())
    }

    /// At the end of shutdown, submits the drain barrier.
    fn maybe_finish(&mut self) -> io::Result<()> {
        let idle = self.shutting_down
            && self.listeners_closed
            && self.conns.is_empty()
            && self.parked.is_empty()
            && !self.backoff_armed
            && self.zc_notifs == 0;
        if idle && self.drain == Drain::NotStarted {
            if self.wake_armed {
                // Only when the worker stopped for a reason other than its
                // eventfd (it never re-arms the poll once shutting down).
                self.cancel(tag(Kind::Wake, 0, 0))?;
                self.wake_armed = false;
            }
            self.submit_drain()?;
        }
        Ok(())
    }

    fn submit_drain(&mut self) -> io::Result<()> {
        let entry = opcode::Nop::new()
            .build()
            .flags(squeue::Flags::IO_DRAIN)
            .user_data(tag(Kind::Drain, 0, 0));
        // SAFETY: a nop refers to no memory.
        unsafe { self.push(&[entry]) }?;
        self.drain = Drain::Submitted;
        Ok(())
    }

    /// Makes sure nothing the kernel might still use is freed or closed:
    /// after a clean run the drain barrier has completed; after an error,
    /// cancel everything, submit the barrier and wait for it (bounded).
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
    fn teardown(&mut self) {
        if self.drain != Drain::Done {
            let cancel_all = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(tag(Kind::Cancel, 0, 0));
            // SAFETY: a cancel refers to no memory.
            let mut ok = unsafe { self.push(&[cancel_all]) }.is_ok();
            if ok && self.drain == Drain::NotStarted {
                ok = self.submit_drain().is_ok();
            }
            let give_up = Instant::now() + Duration::from_secs(2);
            loop {
                while let Some(cqe) = self.cqes.pop_front() {
                    self.complete_in_teardown(&cqe);
                }
                if !ok || self.drain == Drain::Done || Instant::now() >= give_up {
                    break;
                }
                let ts = types::Timespec::from(Duration::from_millis(50));
                let args = types::SubmitArgs::new().timespec(&ts);
                if let Err(e) = self.ring.submitter().submit_with_args(1, &args) {
                    if !matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                    ) {
                        ok = false;
                    }
                }
                self.reap();
            }
        }
        if self.drain == Drain::Done {
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
        for fd in self.parked.drain(..) {
            // SAFETY: parked descriptors were accepted by us and no
            // operation refers to them.
            unsafe { libc::close(fd) };
        }
    }

    /// A completion reaped while tearing down: only what owns a descriptor
    /// or ends the wait matters.
    fn complete_in_teardown(&mut self, cqe: &cqueue::Entry) {
        let (kind, slot, generation) = untag(cqe.user_data());
        let res = cqe.result();
        match kind {
            Some(Kind::Drain) => self.drain = Drain::Done,
            Some(Kind::Accept) if res >= 0 => {
                self.stats.accepted += 1;
                self.stats.failed += 1;
                // SAFETY: a descriptor just accepted for us, which nothing
                // else knows of; closed once, here.
                unsafe { libc::close(res) };
            }
            Some(Kind::Send) => {
                let _ = self.on_send_failed(slot, generation, res);
            }
            _ => {}
        }
    }
}

fn errno(res: i32) -> io::Error {
    io::Error::from_raw_os_error(res.saturating_neg())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let ud = tag(Kind::SendZc, 123_456, GEN_MASK);
        assert_eq!(untag(ud), (Some(Kind::SendZc), 123_456, GEN_MASK));
        let ud = tag(Kind::Accept, 3, 0);
        assert_eq!(untag(ud), (Some(Kind::Accept), 3, 0));
        assert_eq!(untag(0).0, None);
        for k in 1..=10u8 {
            let kind = Kind::from_u8(k).expect("kind");
            assert_eq!(kind as u8, k);
        }
    }

    #[test]
    fn generation_wraps_within_mask() {
        let g = GEN_MASK.wrapping_add(1) & GEN_MASK;
        assert_eq!(g, 0);
        assert_eq!(untag(tag(Kind::Recv, 1, GEN_MASK + 5)).2, 4);
    }

    /// A worker that fails tears down with connections open: once the
    /// drain is confirmed, their descriptors are closed (the peer sees
    /// end-of-stream), not leaked.
    #[test]
    fn teardown_after_a_failure_closes_open_connections() {
        use std::io::Read;
        use std::os::unix::net::UnixStream;

        if let Err(why) = probe(false) {
            eprintln!("skipped: io_uring is unavailable here: {why}");
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
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
        };
        let (ring, flags) = build_ring(8).expect("ring");
        check_ring(&ring, flags).expect("ring features");
        let mut worker = Worker::new(ctx, ring, false).expect("worker");
        worker.arm_wake().expect("poll");
        worker.arm_accept(0).expect("accept");
        let mut peers = Vec::new();
        for _ in 0..3 {
            let (ours, theirs) = UnixStream::pair().expect("socketpair");
            // A recv in flight on each, as for a client that sent nothing.
            worker.start_conn(ours.into_raw_fd()).expect("recv");
            peers.push(theirs);
        }
        worker.submit_now().expect("submit");
        assert_eq!(worker.conns.len(), 3);

        // As after an error in `run`: the drain was never started.
        worker.teardown();
        assert_eq!(worker.drain, Drain::Done, "the drain was not confirmed");
        assert!(worker.conns.is_empty());
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

    #[test]
    fn arena_slots_are_distinct_and_stable() {
        let arena = RecvArena::new(4);
        assert_eq!(arena.slots(), 4);
        let a = arena.ptr(0) as usize;
        let b = arena.ptr(1) as usize;
        assert_eq!(b - a, RECV_BUF);
        assert_eq!(arena.ptr(0) as usize, a);
    }
}
