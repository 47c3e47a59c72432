//! When a worker takes new connections: start, park or shed each one, when
//! to stop asking the kernel for more and when to ask again, and what to do
//! when `accept` fails.
//!
//! The rules, the same for both engines:
//!
//! * A worker holds at most `max` connections (`--max-connections` shared
//!   among the workers). Reaching it **pauses** accepting: new clients wait
//!   in the kernel's accept queue and are served as soon as slots free,
//!   which is kinder than accepting and closing them (a client accepted and
//!   closed gets no policy, and for Flash Player a failed socket).
//! * Accepting **resumes** once the open count has fallen to a low-water
//!   mark, `max - max(max / 16, 1)`, so a worker at its limit does not
//!   flip between paused and accepting on every close.
//! * A connection accepted while every slot is taken (an io_uring accept
//!   already on its way when the pause went in) is **parked**: held,
//!   unread, until a slot frees. At most `max_parked` are; beyond that one
//!   is **shed** (closed at once). While draining (shutdown), everything
//!   still queued in the listeners is taken and parked without bound (the
//!   backlog bounds it): closing an SO_REUSEPORT listener would reset those
//!   clients.
//! * Out of descriptors or memory: shed one queued connection with the
//!   spare descriptor, then back off for a moment ([`Admission::after_shed`]);
//!   while draining, keep shedding as long as that works. Unknown errors
//!   back off too; warnings about both come at most once per interval.

use std::time::Instant;

use super::errno::{classify_accept_errno, AcceptErrorKind};
use super::rate_limit::RateLimit;

/// What to do with a connection just accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Give it a slot and start its session.
    Start,
    /// Hold it, unread, until a slot frees.
    Park,
    /// Close it at once (count it as shed).
    Shed,
}

/// The answer to [`Admission::on_accepted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// What to do with the connection.
    pub admit: Admit,
    /// Accepting has just paused: stop asking the kernel for connections
    /// (an io_uring engine cancels its multishot accepts).
    pub pause: bool,
    /// Log that the worker is full (rate-limited).
    pub warn_full: bool,
}

/// The answer to [`Admission::on_freed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freed {
    /// Give the freed slot to the oldest parked connection.
    StartParked,
    /// Accepting may resume: ask the kernel for connections again.
    Resume,
    /// Nothing to do.
    Nothing,
}

/// What to do after `accept` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAcceptError {
    /// Nothing more to accept now: wait for the next readiness.
    Stop,
    /// Try accepting again at once.
    Next,
    /// Shed one queued connection with the spare descriptor, then ask
    /// [`Admission::after_shed`].
    Shed,
    /// Stop accepting until the back-off ends
    /// ([`Admission::on_backoff_over`]).
    BackOff,
    /// The listener is unusable: the worker fails.
    Fatal,
}

/// The answer to [`Admission::on_accept_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptErrorPlan {
    /// What the engine does next.
    pub then: OnAcceptError,
    /// What the error means.
    pub kind: AcceptErrorKind,
    /// Log the error (rate-limited).
    pub warn: bool,
}

/// A worker's admission state: counts and flags, no sockets.
#[derive(Debug, Clone)]
pub struct Admission {
    max: usize,
    resume_at: usize,
    max_parked: usize,
    open: usize,
    parked: usize,
    paused: bool,
    backing_off: bool,
    draining: bool,
    full_warning: RateLimit,
    error_warning: RateLimit,
}

impl Admission {
    /// At most `max` open connections (at least 1) and `max_parked` parked
    /// ones.
    pub fn new(max: usize, max_parked: usize) -> Admission {
        let max = max.max(1);
        Admission {
            max,
            resume_at: max - (max / 16).max(1),
            max_parked,
            open: 0,
            parked: 0,
            paused: false,
            backing_off: false,
            draining: false,
            full_warning: RateLimit::default(),
            error_warning: RateLimit::default(),
        }
    }

    /// Whether to ask the kernel for connections now.
    pub fn may_accept(&self) -> bool {
        !self.paused && !self.backing_off
    }

    /// A connection was accepted.
    pub fn on_accepted(&mut self, now: Instant) -> Admitted {
        let admit = if self.open < self.max && self.parked == 0 {
            self.open += 1;
            Admit::Start
        } else if self.parked < self.max_parked || self.draining {
            self.parked += 1;
            Admit::Park
        } else {
            Admit::Shed
        };
        let pause = !self.draining && !self.paused && self.open >= self.max;
        let mut warn_full = false;
        if pause {
            self.paused = true;
            warn_full = self.full_warning.allow(now);
        }
        Admitted {
            admit,
            pause,
            warn_full,
        }
    }

    /// A started connection has closed and freed its slot.
    pub fn on_freed(&mut self) -> Freed {
        self.open = self.open.saturating_sub(1);
        if self.parked > 0 {
            self.parked -= 1;
            self.open += 1;
            return Freed::StartParked;
        }
        if self.paused && self.open <= self.resume_at {
            self.paused = false;
            if !self.draining {
                return Freed::Resume;
            }
        }
        Freed::Nothing
    }

    /// A parked connection was closed without being started (teardown).
    pub fn on_parked_dropped(&mut self) {
        self.parked = self.parked.saturating_sub(1);
    }

    /// `accept` failed with `errno`.
    pub fn on_accept_error(&mut self, errno: i32, now: Instant) -> AcceptErrorPlan {
        let kind = classify_accept_errno(errno);
        let (then, warn) = match kind {
            AcceptErrorKind::Empty => (OnAcceptError::Stop, false),
            AcceptErrorKind::Retry => (OnAcceptError::Next, false),
            AcceptErrorKind::Refused => (OnAcceptError::Fatal, true),
            AcceptErrorKind::OutOfResources => (OnAcceptError::Shed, self.error_warning.allow(now)),
            AcceptErrorKind::Other => {
                let warn = self.error_warning.allow(now);
                if self.draining {
                    (OnAcceptError::Stop, warn)
                } else {
                    self.backing_off = true;
                    (OnAcceptError::BackOff, warn)
                }
            }
        };
        AcceptErrorPlan { then, kind, warn }
    }

    /// After [`OnAcceptError::Shed`]: `shed` says whether a connection was
    /// shed (there was a spare descriptor and a queued connection).
    pub fn after_shed(&mut self, shed: bool) -> OnAcceptError {
        match (self.draining, shed) {
            (true, true) => OnAcceptError::Next,
            (true, false) => OnAcceptError::Stop,
            (false, _) => {
                self.backing_off = true;
                OnAcceptError::BackOff
            }
        }
    }

    /// The back-off has ended: accepting may go on.
    pub fn on_backoff_over(&mut self) {
        self.backing_off = false;
    }

    /// Shutdown: take everything still queued, whatever the limits.
    pub fn begin_drain(&mut self) {
        self.draining = true;
        self.paused = false;
        self.backing_off = false;
    }

    /// Whether shutdown has begun.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Whether accepting is paused at the connection limit.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Whether a back-off is running.
    pub fn backing_off(&self) -> bool {
        self.backing_off
    }

    /// Connections started and not yet freed.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Connections parked.
    pub fn parked(&self) -> usize {
        self.parked
    }

    /// Whether no connection is open or parked.
    pub fn is_idle(&self) -> bool {
        self.open == 0 && self.parked == 0
    }

    /// The most connections open at once.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn pauses_at_the_limit_and_resumes_at_the_low_water_mark() {
        let t = now();
        let mut a = Admission::new(32, 4);
        for i in 0..31 {
            let got = a.on_accepted(t);
            assert_eq!((got.admit, got.pause), (Admit::Start, false), "{i}");
        }
        let last = a.on_accepted(t);
        assert_eq!(
            (last.admit, last.pause, last.warn_full),
            (Admit::Start, true, true)
        );
        assert!(!a.may_accept());
        // 32 - max(32/16, 1) = 30: the second close resumes.
        assert_eq!(a.on_freed(), Freed::Nothing);
        assert_eq!(a.on_freed(), Freed::Resume);
        assert!(a.may_accept());
    }

    #[test]
    fn late_arrivals_are_parked_then_shed() {
        let t = now();
        let mut a = Admission::new(1, 2);
        assert_eq!(a.on_accepted(t).admit, Admit::Start);
        assert_eq!(a.on_accepted(t).admit, Admit::Park);
        assert_eq!(a.on_accepted(t).admit, Admit::Park);
        assert_eq!(a.on_accepted(t).admit, Admit::Shed);
        assert_eq!(a.on_freed(), Freed::StartParked);
        assert_eq!(a.on_freed(), Freed::StartParked);
        assert_eq!(a.on_freed(), Freed::Resume);
        assert!(a.is_idle());
    }

    #[test]
    fn draining_parks_without_bound_and_never_resumes() {
        let t = now();
        let mut a = Admission::new(1, 0);
        a.on_accepted(t);
        a.begin_drain();
        for _ in 0..100 {
            assert_eq!(a.on_accepted(t).admit, Admit::Park);
        }
        for _ in 0..100 {
            assert_eq!(a.on_freed(), Freed::StartParked);
        }
        assert_eq!(a.on_freed(), Freed::Nothing);
        assert!(a.is_idle());
    }

    #[test]
    fn out_of_descriptors_sheds_then_backs_off_and_warns_once() {
        let t = now();
        let mut a = Admission::new(8, 0);
        let plan = a.on_accept_error(libc::EMFILE, t);
        assert_eq!((plan.then, plan.warn), (OnAcceptError::Shed, true));
        assert_eq!(a.after_shed(true), OnAcceptError::BackOff);
        assert!(!a.may_accept());
        a.on_backoff_over();
        assert!(a.may_accept());
        let plan = a.on_accept_error(libc::ENFILE, t);
        assert_eq!((plan.then, plan.warn), (OnAcceptError::Shed, false));
        // Draining: shed while it works, stop when it does not.
        a.begin_drain();
        assert_eq!(a.after_shed(true), OnAcceptError::Next);
        assert_eq!(a.after_shed(false), OnAcceptError::Stop);
    }

    #[test]
    fn other_accept_errors() {
        let t = now();
        let mut a = Admission::new(8, 0);
        assert_eq!(a.on_accept_error(libc::EAGAIN, t).then, OnAcceptError::Stop);
        assert_eq!(
            a.on_accept_error(libc::ECONNABORTED, t).then,
            OnAcceptError::Next
        );
        assert_eq!(a.on_accept_error(libc::EBADF, t).then, OnAcceptError::Fatal);
        assert_eq!(a.on_accept_error(libc::EIO, t).then, OnAcceptError::BackOff);
        assert!(a.backing_off());
        a.begin_drain();
        assert!(!a.backing_off());
        assert_eq!(a.on_accept_error(libc::EIO, t).then, OnAcceptError::Stop);
    }
}
