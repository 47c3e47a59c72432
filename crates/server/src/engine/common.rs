//! What both engines share: limits, the accept-error classification, the
//! spare descriptor and the warning rate limit. One copy, so the engines
//! cannot drift apart on how they treat the same kernel answer.

use std::fs::File;
use std::io;
use std::sync::Once;
use std::time::{Duration, Instant};

use slab::Slab;
use tracing::{debug, warn};

use crate::reload::ReplyMailbox;

/// How long accepting pauses after the process ran out of descriptors (or
/// memory), or after an accept error of an unknown kind, before it tries
/// again.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Most connections one worker holds open at once, whatever
/// `--max-connections` asks: both engines preallocate a slot per connection
/// at start-up (the io_uring engine a receive buffer too). A real worker
/// runs out of descriptors long before this.
pub const MAX_CONNECTIONS_PER_WORKER: usize = 1 << 20;

/// At most one warning of each kind per this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The per-worker connection cap: `requested`, at least 1, at most
/// [`MAX_CONNECTIONS_PER_WORKER`]. Clamping is logged once per process.
pub fn connection_cap(requested: usize) -> usize {
    static WARNED: Once = Once::new();
    if requested > MAX_CONNECTIONS_PER_WORKER {
        WARNED.call_once(|| {
            warn!(
                "--max-connections gives each worker {requested} connections; \
                 using {MAX_CONNECTIONS_PER_WORKER} per worker"
            );
        });
    }
    requested.clamp(1, MAX_CONNECTIONS_PER_WORKER)
}

/// What to do about an error from `accept` (or from a multishot accept's
/// completion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// Nothing (more) queued.
    Empty,
    /// This one connection failed; try the next.
    Retry,
    /// Out of descriptors or memory: shed one with the spare and back off.
    OutOfResources,
    /// Anything else: warn (rate-limited) and back off rather than spin.
    Other,
}

/// Classifies an accept error by its errno.
pub fn classify_accept_error(errno: i32) -> AcceptError {
    match errno {
        libc::EAGAIN => AcceptError::Empty,
        libc::EINTR => AcceptError::Retry,
        // accept(2): errors already pending on the new socket, to be treated
        // like EAGAIN by retrying; ECONNABORTED is a client that gave up.
        libc::ECONNABORTED
        | libc::EPROTO
        | libc::EPERM
        | libc::ENETDOWN
        | libc::ENOPROTOOPT
        | libc::EHOSTDOWN
        | libc::ENONET
        | libc::EHOSTUNREACH
        | libc::EOPNOTSUPP
        | libc::ENETUNREACH
        | libc::ETIMEDOUT => AcceptError::Retry,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => AcceptError::OutOfResources,
        _ => AcceptError::Other,
    }
}

/// [`classify_accept_error`] for an `io::Error` from `accept`.
pub fn accept_error(e: &io::Error) -> AcceptError {
    if e.kind() == io::ErrorKind::WouldBlock {
        return AcceptError::Empty;
    }
    e.raw_os_error()
        .map_or(AcceptError::Other, classify_accept_error)
}

/// The spare descriptor: sacrificed to accept (and close) one connection
/// when the process is out of descriptors.
pub fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Sheds one queued connection when the process is out of descriptors:
/// closes the spare so that `accept_and_close` (an `accept` whose
/// connection is dropped at once) has a descriptor to use, then reopens the
/// spare. Returns whether a connection was shed: false without a spare (it
/// could not be reopened last time) or when the accept failed.
pub fn shed_one(spare: &mut Option<File>, accept_and_close: impl FnOnce() -> bool) -> bool {
    let Some(file) = spare.take() else {
        return false;
    };
    drop(file);
    let shed = accept_and_close();
    *spare = open_spare();
    shed
}

/// Rate limit for warnings: true (and records `now`) at most once per
/// [`WARN_INTERVAL`].
pub fn due(last: &mut Option<Instant>, now: Instant) -> bool {
    match last {
        Some(at) if now.saturating_duration_since(*at) < WARN_INTERVAL => false,
        _ => {
            *last = Some(now);
            true
        }
    }
}

/// A connection slot that knows which use of the slot it is.
pub trait Generation {
    /// The generation of this use of the slot.
    fn generation(&self) -> u32;
}

/// Whether slot `key` still holds the use `generation` refers to.
pub fn is_live<C: Generation>(conns: &Slab<C>, key: usize, generation: u32) -> bool {
    conns.get(key).is_some_and(|c| c.generation() == generation)
}

/// After a wake-up (and after clearing the eventfd, so a reply put later
/// comes with a wake-up of its own): adopt a reloaded reply, if one waits.
///
/// The old reply is `'static` and never freed, so operations in flight that
/// still point at it stay valid.
pub fn adopt_new_reply(id: usize, mailbox: &ReplyMailbox, reply: &mut &'static [u8]) {
    if let Some(new) = mailbox.take() {
        debug!(
            "worker {id}: serving the reloaded policy ({} bytes)",
            new.len()
        );
        *reply = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_rate_limited() {
        let t0 = Instant::now();
        let mut last = None;
        assert!(due(&mut last, t0));
        assert!(!due(&mut last, t0 + WARN_INTERVAL / 2));
        assert!(due(&mut last, t0 + WARN_INTERVAL));
        assert!(!due(&mut last, t0 + WARN_INTERVAL));
    }

    #[test]
    fn accept_errors_are_classified() {
        assert_eq!(classify_accept_error(libc::EAGAIN), AcceptError::Empty);
        assert_eq!(
            accept_error(&io::Error::from(io::ErrorKind::WouldBlock)),
            AcceptError::Empty
        );
        for e in [
            libc::EINTR,
            libc::ECONNABORTED,
            libc::EPROTO,
            libc::ETIMEDOUT,
        ] {
            assert_eq!(classify_accept_error(e), AcceptError::Retry, "{e}");
        }
        for e in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(classify_accept_error(e), AcceptError::OutOfResources, "{e}");
        }
        assert_eq!(classify_accept_error(libc::EIO), AcceptError::Other);
        assert_eq!(
            accept_error(&io::Error::from_raw_os_error(libc::EMFILE)),
            AcceptError::OutOfResources
        );
    }

    #[test]
    fn the_cap_is_clamped_both_ways() {
        assert_eq!(connection_cap(0), 1);
        assert_eq!(connection_cap(100), 100);
        assert_eq!(
            connection_cap(MAX_CONNECTIONS_PER_WORKER + 1),
            MAX_CONNECTIONS_PER_WORKER
        );
    }
}
