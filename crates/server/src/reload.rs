//! SIGHUP: the policy loaded again and handed over to every worker.
//!
//! The hand-over, from the signal to the first client served the new reply:
//!
//! 1. The signal thread asks the `Reloader` (a thread of its own: reading
//!    the policy may block, and SIGINT/SIGTERM must still be acted on
//!    meanwhile) through `ReloadRequests`.
//! 2. The reloader loads the policy with the same checks as start-up; one
//!    that fails is logged and the old one kept.
//! 3. `Replies` turns the new reply into a `'static` buffer: leaked, and
//!    never freed, but shared with an equal reply handed out before.
//! 4. The reloader puts the buffer in each worker's [`ReplyMailbox`] and
//!    wakes the worker through its eventfd ([`Wakeup`]).
//! 5. The worker, after its eventfd fires (and is cleared), takes the buffer
//!    with [`ReplyMailbox::adopt`] and serves it from then on.
//! 6. The reloader waits (bounded) until every mailbox is empty, then logs
//!    `reloaded policy: ...`.

use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use flashpolicy_proto::Reply;
use tracing::{debug, error, info, warn};

use crate::config::Listen;
use crate::control::{ShutdownFlag, Wakeup};
use crate::metrics::PolicyCounters;
use crate::policy::PolicySource;

/// A reply waiting for one worker: the reload thread puts the reloaded
/// policy's reply here, then wakes the worker, which takes it when its
/// eventfd fires and swaps its own `reply` field.
///
/// The replies are `'static` buffers from `Replies`, never freed.
#[derive(Debug, Clone, Default)]
pub struct ReplyMailbox(Arc<Mutex<Option<&'static [u8]>>>);

impl ReplyMailbox {
    /// Leaves `reply` for the worker, replacing one it has not taken yet.
    /// Wake the worker afterwards.
    pub fn put(&self, reply: &'static [u8]) {
        // The lock guards a plain Option: a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is still fine to use.
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(reply);
    }

    /// The reply left for this worker, if any (the worker calls this after
    /// clearing its eventfd, so a reply put later comes with a new wake-up).
    pub fn take(&self) -> Option<&'static [u8]> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Whether a reply is still waiting to be taken.
    pub fn is_pending(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The worker's side of the hand-over, after a wake-up (and after
    /// clearing the eventfd, so a reply put later comes with a wake-up of
    /// its own): replaces `current` with the reply waiting here, if any.
    /// `worker` is the worker's id, for the log.
    ///
    /// The old reply is `'static` and never freed, so operations in flight
    /// that still point at it stay valid.
    pub fn adopt(&self, worker: usize, current: &mut &'static [u8]) {
        if let Some(new) = self.take() {
            debug!(
                "worker {worker}: serving the reloaded policy ({} bytes)",
                new.len()
            );
            *current = new;
        }
    }
}

/// Every reply ever handed to the workers, as `'static` buffers.
///
/// Leaked on purpose and never freed: an io_uring send (or zero-copy
/// notification) still in flight may point at an old buffer, and nothing
/// tells the reload thread when the last one has completed. A reply is at
/// most [`flashpolicy_proto::policy::MAX_POLICY_LEN`] + 1 bytes (about
/// 10 KB), and equal replies share one buffer, so memory grows only with the
/// number of distinct policies ever served: a policy switched back and forth
/// is leaked once.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    leaked: Vec<&'static [u8]>,
}

impl Replies {
    /// The `'static` buffer holding `reply`: one handed out before if it is
    /// equal, else `reply` itself, leaked.
    pub(crate) fn intern(&mut self, reply: Reply) -> &'static [u8] {
        if let Some(&known) = self.leaked.iter().find(|r| **r == reply.as_bytes()) {
            return known;
        }
        let fresh = reply.leak();
        self.leaked.push(fresh);
        fresh
    }
}

/// How long a reload waits for every worker to take the new reply before it
/// logs the result anyway. A worker looks at its mailbox as soon as its
/// event loop comes round, which takes microseconds, not seconds.
const RELOAD_PICKUP_WAIT: Duration = Duration::from_secs(2);

/// SIGHUP: loads the policy again and hands the new reply to every worker.
#[derive(Debug)]
pub(crate) struct Reloader {
    /// Where the policy comes from.
    pub(crate) source: PolicySource,
    /// Where it is served (for the warnings that depend on the port).
    pub(crate) listen: Listen,
    /// The reply the workers were last given.
    pub(crate) current: &'static [u8],
    /// Every reply handed out, the first one included.
    pub(crate) replies: Replies,
    /// One per worker, in the same order as `wakers`.
    pub(crate) mailboxes: Vec<ReplyMailbox>,
    /// One per worker.
    pub(crate) wakers: Vec<Wakeup>,
    /// Once set, reloads are refused.
    pub(crate) shutdown: ShutdownFlag,
    /// Reloads by result and the reply's size, for `--metrics`.
    pub(crate) counters: Arc<PolicyCounters>,
    /// `--tls-cert`/`--tls-key`: read again at each reload too.
    pub(crate) tls: Option<Arc<crate::tls::TlsCell>>,
}

/// Where reload requests go: to the [`Reloader`]'s thread.
#[derive(Debug)]
pub(crate) struct ReloadRequests(mpsc::Sender<()>);

impl ReloadRequests {
    /// Asks for one reload; false when the reload thread is gone.
    pub(crate) fn request(&self) -> bool {
        self.0.send(()).is_ok()
    }
}

impl Reloader {
    /// Starts the reload thread. It ends when the [`ReloadRequests`] are
    /// dropped.
    pub(crate) fn spawn(self) -> io::Result<ReloadRequests> {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || self.serve(&rx))?;
        Ok(ReloadRequests(tx))
    }

    /// Reloads once per request; requests that pile up while a reload runs
    /// are served by one more reload, not one each.
    fn serve(mut self, requests: &mpsc::Receiver<()>) {
        while requests.recv().is_ok() {
            while requests.try_recv().is_ok() {}
            if self.shutdown.is_set() {
                info!("shutting down; the policy is not reloaded");
                continue;
            }
            // Type=notify-reload: RELOADING=1 before, READY=1 once the
            // reload has ended, taken or refused.
            crate::notify::reloading();
            self.reload_tls();
            self.reload();
            crate::notify::ready();
        }
    }

    /// The certificate: a new one serves the next handshake; a broken one
    /// is logged and the previous one goes on.
    fn reload_tls(&self) {
        let Some(cell) = &self.tls else { return };
        match cell.reload() {
            Ok(()) => info!("certificate reloaded from {}", cell.cert_path().display()),
            Err(e) => error!("cannot reload the certificate, still serving the previous one: {e}"),
        }
    }

    fn reload(&mut self) {
        let loaded = match self.source.load(&self.listen) {
            Ok(loaded) => loaded,
            Err(e) => {
                // `e` names file:line:column and the rule broken.
                // Counted before the log line, which tests and people wait for.
                self.counters.reload_failed();
                error!("cannot reload the policy, still serving the previous one: {e}");
                return;
            }
        };
        for w in &loaded.warnings {
            warn!("{w}");
        }
        if loaded.reply.as_bytes() == self.current {
            self.counters.reloaded(self.current.len());
            info!("reloaded policy: {} (unchanged)", loaded.summary);
            return;
        }
        let reply = self.replies.intern(loaded.reply);
        self.current = reply;
        for (mailbox, waker) in self.mailboxes.iter().zip(&self.wakers) {
            mailbox.put(reply);
            if let Err(e) = waker.wake() {
                warn!("cannot wake a worker: {e}");
            }
        }
        // The log line means every worker serves the new policy: wait (a
        // little, bounded) until each has taken it.
        let deadline = Instant::now() + RELOAD_PICKUP_WAIT;
        let waiting = loop {
            let waiting = self.mailboxes.iter().filter(|m| m.is_pending()).count();
            if waiting == 0 || Instant::now() >= deadline {
                break waiting;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.counters.reloaded(reply.len());
        if waiting == 0 {
            info!("reloaded policy: {}", loaded.summary);
        } else {
            warn!(
                "reloaded policy: {}; {waiting} of {} workers have not taken it yet",
                loaded.summary,
                self.mailboxes.len()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mailbox_keeps_only_the_latest_reply() {
        let mailbox = ReplyMailbox::default();
        let worker_side = mailbox.clone();
        assert_eq!(worker_side.take(), None);
        mailbox.put(b"a\0");
        mailbox.put(b"b\0");
        assert!(mailbox.is_pending());
        assert_eq!(worker_side.take(), Some(&b"b\0"[..]));
        assert!(!mailbox.is_pending());
        assert_eq!(worker_side.take(), None);
    }

    #[test]
    fn adopt_swaps_in_the_waiting_reply_once() {
        let mailbox = ReplyMailbox::default();
        let mut current: &'static [u8] = b"old\0";
        mailbox.adopt(0, &mut current);
        assert_eq!(current, b"old\0", "nothing waiting: nothing changes");
        mailbox.put(b"new\0");
        mailbox.adopt(0, &mut current);
        assert_eq!(current, b"new\0");
        assert!(!mailbox.is_pending());
    }

    #[test]
    fn equal_replies_share_one_buffer() {
        let reply = |doc: &[u8]| Reply::new(doc).expect("a valid reply");
        let mut replies = Replies::default();
        let a = replies.intern(reply(b"<cross-domain-policy/>"));
        let b = replies.intern(reply(b"<cross-domain-policy></cross-domain-policy>"));
        let a_again = replies.intern(reply(b"<cross-domain-policy/>"));
        assert_eq!(a.as_ptr(), a_again.as_ptr(), "the same buffer");
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert_eq!(replies.leaked.len(), 2);
    }
}
