//! At most one warning of a kind per interval.

use std::time::{Duration, Instant};

/// The interval the engines use for their warnings.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Says yes at most once per interval: for warnings that a flood of the
/// same event would otherwise repeat thousands of times a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(WARN_INTERVAL)
    }
}

impl RateLimit {
    /// A limit of once per `interval`.
    pub const fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval,
            last: None,
        }
    }

    /// Whether the event may be reported at `now`; if so, `now` starts a
    /// new interval.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.last {
            Some(at) if now.saturating_duration_since(at) < self.interval => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_interval() {
        let t0 = Instant::now();
        let mut r = RateLimit::default();
        assert!(r.allow(t0));
        assert!(!r.allow(t0 + WARN_INTERVAL / 2));
        assert!(r.allow(t0 + WARN_INTERVAL));
        assert!(!r.allow(t0 + WARN_INTERVAL));
        // A clock that seems to go back never lets a second one through.
        assert!(!r.allow(t0));
    }
}
