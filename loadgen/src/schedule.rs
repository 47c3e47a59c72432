//! The open-loop schedule: when connection `i` *should* start.
//!
//! Latency in open loop is measured from this intended start, as wrk2 does,
//! so time the generator (or a stalled server) makes a connection wait before
//! it even starts counts against the server instead of silently vanishing
//! (coordinated omission).

use std::fmt;
use std::time::Duration;

/// A `--rate` that is not a positive, finite number of connections per
/// second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateError(pub f64);

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--rate must be above 0 (got {})", self.0)
    }
}

impl std::error::Error for RateError {}

/// A constant rate, optionally reached by a linear ramp from 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
    ramp: f64,
}

impl Schedule {
    /// `rate` connections per second, reached linearly over `ramp`.
    pub fn new(rate: f64, ramp: Duration) -> Result<Schedule, RateError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(RateError(rate));
        }
        Ok(Schedule {
            rate,
            ramp: ramp.as_secs_f64(),
        })
    }

    /// Connections per second at full rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Connections started during the ramp.
    fn ramp_count(&self) -> f64 {
        self.rate * self.ramp / 2.0
    }

    /// Intended start of connection `i` (0-based), from the start of the run.
    ///
    /// During the ramp the rate grows as `rate * t / ramp`, so `N(t) = rate *
    /// t² / (2 ramp)` connections have started by `t`, and connection `i`
    /// starts at `sqrt(2 ramp i / rate)`.
    pub fn offset(&self, i: u64) -> Duration {
        let i = i as f64;
        let n_ramp = self.ramp_count();
        let secs = if i < n_ramp {
            (2.0 * self.ramp * i / self.rate).sqrt()
        } else {
            self.ramp + (i - n_ramp) / self.rate
        };
        Duration::from_secs_f64(secs)
    }

    /// How many connections are scheduled strictly before `t`: the index of
    /// the first connection whose intended start is at or after `t`.
    pub fn count_before(&self, t: Duration) -> u64 {
        let s = t.as_secs_f64();
        let estimate = if s < self.ramp {
            self.rate * s * s / (2.0 * self.ramp)
        } else {
            self.ramp_count() + (s - self.ramp) * self.rate
        };
        let mut i = estimate.max(0.0).floor() as u64;
        // Float rounding: settle on the exact boundary.
        while i > 0 && self.offset(i - 1) >= t {
            i -= 1;
        }
        while self.offset(i) < t {
            i += 1;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate() {
        let s = Schedule::new(1000.0, Duration::ZERO).expect("valid");
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1000), Duration::from_secs(1));
        assert_eq!(s.offset(1500), Duration::from_millis(1500));
        assert_eq!(s.count_before(Duration::from_secs(1)), 1000);
        assert_eq!(s.count_before(Duration::ZERO), 0);
        assert_eq!(s.count_before(Duration::from_micros(1)), 1);
    }

    #[test]
    fn ramp_then_rate() {
        // 100/s reached over 2 s: 100 connections during the ramp.
        let s = Schedule::new(100.0, Duration::from_secs(2)).expect("valid");
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.count_before(Duration::from_secs(2)), 100);
        // Halfway through the ramp a quarter of its connections have started.
        assert_eq!(s.count_before(Duration::from_secs(1)), 25);
        // After the ramp: one every 10 ms.
        let a = s.offset(100).as_secs_f64();
        let b = s.offset(101).as_secs_f64();
        assert!((a - 2.0).abs() < 1e-9, "{a}");
        assert!((b - a - 0.01).abs() < 1e-9);
        // Gaps shrink during the ramp.
        let early = s.offset(2) - s.offset(1);
        let late = s.offset(99) - s.offset(98);
        assert!(early > late);
        // Monotonic everywhere.
        for i in 0..300 {
            assert!(s.offset(i) < s.offset(i + 1));
        }
    }

    #[test]
    fn count_before_inverts_offset() {
        let s = Schedule::new(333.3, Duration::from_millis(700)).expect("valid");
        for i in 0..2000 {
            let t = s.offset(i);
            assert_eq!(s.count_before(t), i, "i={i}");
        }
    }

    #[test]
    fn refuses_bad_rates() {
        assert!(Schedule::new(0.0, Duration::ZERO).is_err());
        assert!(Schedule::new(f64::NAN, Duration::ZERO).is_err());
    }
}
