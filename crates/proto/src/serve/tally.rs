//! How a worker's connections ended, counted by the worker alone.

use std::ops::AddAssign;

use super::session::End;

/// Per-worker counters: one writer (the worker), summed at exit. Nothing
/// on the per-connection path touches a shared cache line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Connections accepted (shed ones included).
    pub accepted: u64,
    /// Replies sent in full.
    pub served: u64,
    /// Connections whose bytes were not a policy request.
    pub rejected: u64,
    /// Connections closed by `--timeout`.
    pub timed_out: u64,
    /// Connections that failed with an I/O error.
    pub failed: u64,
    /// Connections closed at once because a limit was reached.
    pub shed: u64,
    /// Connections whose PROXY header was invalid or untrusted.
    pub proxy_invalid: u64,
    /// Connections closed because their address was over `--max-per-ip`.
    pub over_ip_limit: u64,
    /// `--gateway` connections relayed to their upstream.
    pub relayed: u64,
    /// `--gateway` connections whose upstream could not be reached.
    pub upstream_failed: u64,
    /// `--websocket` upgrades refused for their `Origin`.
    pub origin_refused: u64,
}

impl Tally {
    /// Counts one accepted connection.
    pub fn accepted(&mut self) {
        self.accepted += 1;
    }

    /// Counts one connection that ended with `end`.
    pub fn ended(&mut self, end: End) {
        *self.slot(end) += 1;
    }

    /// Moves one connection counted as `from` to `to`: an engine that
    /// counted a send as served when it submitted it, and then learned that
    /// it failed.
    pub fn amend(&mut self, from: End, to: End) {
        let was = self.slot(from);
        if *was > 0 {
            *was -= 1;
            self.ended(to);
        }
    }

    /// Counts `n` connections that ended with `end` (a parsed report).
    pub fn add(&mut self, end: End, n: u64) {
        *self.slot(end) += n;
    }

    /// Connections that ended with `end`.
    pub fn get(&self, end: End) -> u64 {
        match end {
            End::Served => self.served,
            End::Rejected => self.rejected,
            End::TimedOut => self.timed_out,
            End::Failed => self.failed,
            End::Shed => self.shed,
            End::ProxyInvalid => self.proxy_invalid,
            End::OverIpLimit => self.over_ip_limit,
            End::Relayed => self.relayed,
            End::UpstreamFailed => self.upstream_failed,
            End::OriginRefused => self.origin_refused,
        }
    }

    /// Connections that have ended, however.
    pub fn ended_total(&self) -> u64 {
        End::ALL.iter().map(|&e| self.get(e)).sum()
    }

    fn slot(&mut self, end: End) -> &mut u64 {
        match end {
            End::Served => &mut self.served,
            End::Rejected => &mut self.rejected,
            End::TimedOut => &mut self.timed_out,
            End::Failed => &mut self.failed,
            End::Shed => &mut self.shed,
            End::ProxyInvalid => &mut self.proxy_invalid,
            End::OverIpLimit => &mut self.over_ip_limit,
            End::Relayed => &mut self.relayed,
            End::UpstreamFailed => &mut self.upstream_failed,
            End::OriginRefused => &mut self.origin_refused,
        }
    }
}

impl AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.accepted += o.accepted;
        for end in End::ALL {
            *self.slot(end) += o.get(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_amends_and_sums() {
        let mut t = Tally::default();
        t.accepted();
        t.accepted();
        t.ended(End::Served);
        t.ended(End::Served);
        t.amend(End::Served, End::Failed);
        assert_eq!((t.served, t.failed), (1, 1));
        // Nothing to move: nothing changes.
        t.amend(End::Shed, End::Failed);
        assert_eq!((t.shed, t.failed), (0, 1));
        let mut sum = t;
        sum += t;
        assert_eq!(sum.accepted, 4);
        assert_eq!(sum.ended_total(), 4);
        for end in End::ALL {
            assert_eq!(sum.get(end), 2 * t.get(end), "{end}");
        }
    }
}
