//! What the workers count: outcomes by kind and HdrHistograms of latency,
//! kept per thread (no sharing, no locks) and merged at the end.

use std::time::Duration;

use hdrhistogram::{AdditionError, Histogram};

use crate::mix::Scenario;

/// Largest latency a histogram holds: one hour, in microseconds. Larger
/// values are clamped to it.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant decimal digits kept by every histogram.
pub const SIGFIG: u8 = 3;

/// A latency histogram in microseconds, 1 µs to 1 h, 3 significant digits,
/// allocated once (recording never allocates).
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIG)
        .expect("constant, valid histogram bounds");
    h.auto(false);
    h
}

/// Records `d` in microseconds, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.min(MAX_LATENCY_US));
}

/// Two histograms that cannot be added up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeError(pub AdditionError);

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot merge histograms: {:?}", self.0)
    }
}

impl std::error::Error for MergeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Adds `src` into `dst` (same bounds, so this cannot fail; a mismatch from
/// a foreign log is reported).
pub fn add(dst: &mut Histogram<u64>, src: &Histogram<u64>) -> Result<(), MergeError> {
    dst.add(src).map_err(MergeError)
}

/// How a connection failed.
///
/// This enum is the one list of error kinds: [`ErrorKind::ALL`] and
/// [`ErrorKind::name`] give the report order and the names used as JSON
/// keys, in the text report, in the `--log` summary line and in the help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Refused or unreachable.
    Connect,
    /// The server reset the connection (RST), or the send failed with EPIPE.
    Reset,
    /// No complete reply within `--timeout`.
    Timeout,
    /// Truncated, extra, wrong, missing NUL, or an invalid policy.
    BadResponse,
    /// The generator ran out of local ports (EADDRNOTAVAIL, EADDRINUSE):
    /// the generator's fault, not the server's.
    PortsExhausted,
    /// The generator hit its own descriptor or memory limit (EMFILE, ENFILE,
    /// ENOMEM, ENOBUFS): the generator's fault, not the server's.
    LocalLimit,
    /// Any other I/O error on an open connection (neither a reset nor a
    /// refusal): not blamed on either side.
    Io,
}

/// How many [`ErrorKind`]s there are.
pub const ERROR_KINDS: usize = ErrorKind::ALL.len();

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::BadResponse,
        ErrorKind::PortsExhausted,
        ErrorKind::LocalLimit,
        ErrorKind::Io,
    ];

    /// The key used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::PortsExhausted => "ports_exhausted",
            ErrorKind::LocalLimit => "local_limit",
            ErrorKind::Io => "io",
        }
    }

    /// The kind whose [`ErrorKind::name`] is `name`.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Position in [`ErrorKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Connect, first byte and total latency of successful clients.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// Until the TCP handshake completed.
    pub connect: Histogram<u64>,
    /// Until the first byte of the reply arrived.
    pub first_byte: Histogram<u64>,
    /// Until the server closed after a good reply.
    pub total: Histogram<u64>,
}

impl Latencies {
    /// Empty histograms.
    pub fn new() -> Latencies {
        Latencies {
            connect: new_histogram(),
            first_byte: new_histogram(),
            total: new_histogram(),
        }
    }

    /// Adds another set.
    pub fn add(&mut self, other: &Latencies) -> Result<(), MergeError> {
        add(&mut self.connect, &other.connect)?;
        add(&mut self.first_byte, &other.first_byte)?;
        add(&mut self.total, &other.total)
    }

    /// Empties all three.
    pub fn reset(&mut self) {
        self.connect.reset();
        self.first_byte.reset();
        self.total.reset();
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

/// Everything counted for one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioStats {
    /// Clients started (recorded ones only).
    pub started: u64,
    /// Clients that succeeded: a good reply for `good`/`slow`, the server
    /// closing the connection for `idle`/`garbage`.
    pub ok: u64,
    /// Failed clients by [`ErrorKind`].
    pub errors: [u64; ERROR_KINDS],
    /// Clients that fell back to `--flash-fallback`'s port.
    pub fell_back: u64,
    /// Why the first (master port) attempt was given up, by [`ErrorKind`]
    /// (`timeout` there means `--fallback-after` passed).
    pub fallback_reasons: [u64; ERROR_KINDS],
    /// Latencies of successful clients.
    pub latency: Latencies,
    /// Total latency of successful clients that fell back (from the first
    /// attempt's start until the policy arrived from the fallback port).
    pub fell_back_total: Histogram<u64>,
    /// Replies received by clients that did not ask for a policy (`idle`,
    /// `garbage`), i.e. the server answered something it should not have.
    pub unexpected_replies: u64,
}

impl Default for ScenarioStats {
    fn default() -> Self {
        ScenarioStats::new()
    }
}

impl ScenarioStats {
    /// Zero counts, empty histograms.
    pub fn new() -> ScenarioStats {
        ScenarioStats {
            started: 0,
            ok: 0,
            errors: [0; ERROR_KINDS],
            fell_back: 0,
            fallback_reasons: [0; ERROR_KINDS],
            latency: Latencies::new(),
            fell_back_total: new_histogram(),
            unexpected_replies: 0,
        }
    }

    /// Sum of all errors.
    pub fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Adds another thread's counts.
    pub fn add(&mut self, o: &ScenarioStats) -> Result<(), MergeError> {
        self.started += o.started;
        self.ok += o.ok;
        self.fell_back += o.fell_back;
        self.unexpected_replies += o.unexpected_replies;
        for i in 0..ERROR_KINDS {
            self.errors[i] += o.errors[i];
            self.fallback_reasons[i] += o.fallback_reasons[i];
        }
        self.latency.add(&o.latency)?;
        add(&mut self.fell_back_total, &o.fell_back_total)
    }
}

/// One thread's (or, merged, the whole run's) results.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Indexed by [`Scenario::index`].
    pub by_scenario: [ScenarioStats; 4],
    /// Open loop: how late each connection started against its schedule.
    pub lag: Histogram<u64>,
    /// Every client finished, warm-up included (for CPU per connection).
    pub finished_all: u64,
    /// The first message seen for each error kind.
    pub first_error: [Option<String>; ERROR_KINDS],
    /// From the start of recording to the last recorded completion.
    pub last_completion: Duration,
    /// `--payload`: payload bytes recorded clients sent.
    pub bytes_sent: u64,
    /// `--payload`: bytes recorded clients received (and checked).
    pub bytes_received: u64,
}

impl Stats {
    /// Nothing counted yet.
    pub fn new() -> Stats {
        Stats {
            by_scenario: std::array::from_fn(|_| ScenarioStats::new()),
            lag: new_histogram(),
            finished_all: 0,
            first_error: Default::default(),
            last_completion: Duration::ZERO,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    /// The counts of one scenario.
    pub fn scenario(&self, s: Scenario) -> &ScenarioStats {
        &self.by_scenario[s.index()]
    }

    /// Adds another thread's results.
    pub fn add(&mut self, o: &Stats) -> Result<(), MergeError> {
        for (a, b) in self.by_scenario.iter_mut().zip(&o.by_scenario) {
            a.add(b)?;
        }
        add(&mut self.lag, &o.lag)?;
        self.finished_all += o.finished_all;
        for (a, b) in self.first_error.iter_mut().zip(&o.first_error) {
            if a.is_none() {
                a.clone_from(b);
            }
        }
        self.last_completion = self.last_completion.max(o.last_completion);
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        Ok(())
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_at_its_index() {
        for (i, k) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i, "{k}");
            assert_eq!(ErrorKind::from_name(k.name()), Some(k));
        }
        assert_eq!(ErrorKind::from_name("nonsense"), None);
    }

    /// Scripts read these names as JSON keys: renaming one breaks them, so
    /// a rename must be deliberate.
    #[test]
    fn names_are_a_contract() {
        let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "connect",
                "reset",
                "timeout",
                "bad_response",
                "ports_exhausted",
                "local_limit",
                "io"
            ]
        );
    }

    #[test]
    fn usage_documents_every_kind() {
        let usage = include_str!("../USAGE.md");
        for k in ErrorKind::ALL {
            assert!(usage.contains(&format!("`{k}`")), "USAGE.md lacks `{k}`");
        }
    }
}
