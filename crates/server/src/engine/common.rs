//! What both engines share that is not a decision: limits, the spare
//! descriptor, and the words of the warnings the serving core asks for.
//! The decisions themselves live in `flashpolicy_proto::serve`.

use std::fs::File;
use std::io;
use std::sync::Once;
use std::time::Duration;

use flashpolicy_proto::serve::{AcceptErrorKind, AcceptErrorPlan, End, Serving, Session};
use tracing::{debug, error, warn};

/// How long accepting pauses after the process ran out of descriptors (or
/// memory), or after an accept error of an unknown kind, before it tries
/// again.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Most connections one worker holds open at once, whatever
/// `--max-connections` asks: both engines preallocate a slot per connection
/// at start-up (the io_uring engine a receive buffer too). A real worker
/// runs out of descriptors long before this.
pub(crate) const MAX_CONNECTIONS_PER_WORKER: usize = 1 << 20;

/// Accepted connections that may wait for a slot (see
/// `flashpolicy_proto::serve::admission`).
pub(crate) const MAX_PARKED: usize = 64;

/// Bytes per read. A request never needs more than
/// [`flashpolicy_proto::request::MAX_REQUEST_LEN`]; a little more lets a
/// client's whole first segment in without reading a flood.
pub(crate) const RECV_LEN: usize = 64;
const _: () = assert!(RECV_LEN >= flashpolicy_proto::request::MAX_REQUEST_LEN);

/// The per-worker connection cap: `requested`, at least 1, at most
/// [`MAX_CONNECTIONS_PER_WORKER`]. Clamping is logged once per process.
pub(crate) fn connection_cap(requested: usize) -> usize {
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

/// The errno of an `accept` error (`EAGAIN` for `WouldBlock`, `EIO` where
/// the error carries none).
pub(crate) fn accept_errno(e: &io::Error) -> i32 {
    if e.kind() == io::ErrorKind::WouldBlock {
        return libc::EAGAIN;
    }
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The spare descriptor: sacrificed to accept (and close) one connection
/// when the process is out of descriptors.
pub(crate) fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Sheds one queued connection when the process is out of descriptors:
/// closes the spare so that `accept_and_close` (an `accept` whose
/// connection is dropped at once) has a descriptor to use, then reopens the
/// spare. Returns whether a connection was shed: false without a spare (it
/// could not be reopened last time) or when the accept failed.
pub(crate) fn shed_one(spare: &mut Option<File>, accept_and_close: impl FnOnce() -> bool) -> bool {
    let Some(file) = spare.take() else {
        return false;
    };
    drop(file);
    let shed = accept_and_close();
    *spare = open_spare();
    shed
}

/// Logs an accept error the serving core said to report.
pub(crate) fn log_accept_error(id: usize, plan: &AcceptErrorPlan, errno: i32) {
    if !plan.warn {
        return;
    }
    let e = io::Error::from_raw_os_error(errno);
    match plan.kind {
        AcceptErrorKind::OutOfResources => warn!(
            "worker {id}: accept: {e}; shedding connections until descriptors free up \
             (raise `ulimit -n`?)"
        ),
        AcceptErrorKind::Refused => error!("worker {id}: accept refused: {e}"),
        _ => warn!("worker {id}: accept: {e}; retrying after {ACCEPT_BACKOFF:?}"),
    }
}

/// Whether sessions get their peer's address at accept: with
/// `--proxy-protocol` (the serving core needs it), or when debug logs
/// (which name each connection's client) are on. Otherwise the uring engine
/// makes no `getpeername` call and a session boxes no addresses.
pub(crate) fn wants_peer(serving: &Serving<'_>) -> bool {
    serving.needs_peer() || tracing::enabled!(tracing::Level::DEBUG)
}

/// The debug line for a connection that ended: its client (the header's
/// source with PROXY), and the balancer's address when it differs.
pub(crate) fn log_end(id: usize, session: &Session, end: End) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let client = session.client();
    let peer = session.peer();
    match (client, peer) {
        (Some(c), Some(p)) if c != p => debug!("worker {id}: client {c} via {p}: {end}"),
        (Some(c), _) => debug!("worker {id}: client {c}: {end}"),
        (None, Some(p)) => debug!("worker {id}: peer {p}: {end}"),
        (None, None) => debug!("worker {id}: connection: {end}"),
    }
}

/// Logs that a worker reached its connection cap.
pub(crate) fn log_full(id: usize, open: usize) {
    warn!(
        "worker {id}: {open} connections open (--max-connections); new clients wait in the \
         accept queue"
    );
}

/// One `epoll_wait` through mio: an interrupted wait (a signal arrived)
/// is an empty wake-up, so every loop handles it by going round again.
pub(crate) fn poll_events(
    poll: &mut mio::Poll,
    events: &mut mio::Events,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<()> {
    match poll.poll(events, timeout) {
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errnos() {
        assert_eq!(
            accept_errno(&io::Error::from(io::ErrorKind::WouldBlock)),
            libc::EAGAIN
        );
        assert_eq!(
            accept_errno(&io::Error::from_raw_os_error(libc::EMFILE)),
            libc::EMFILE
        );
        assert_eq!(accept_errno(&io::Error::other("no errno")), libc::EIO);
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

    #[test]
    fn shedding_needs_the_spare_and_gives_it_back() {
        let mut spare = open_spare();
        assert!(spare.is_some());
        assert!(shed_one(&mut spare, || true));
        assert!(spare.is_some(), "the spare is reopened");
        assert!(!shed_one(&mut spare, || false));
        let mut none = None;
        assert!(!shed_one(&mut none, || panic!("accepted without a spare")));
    }
}
