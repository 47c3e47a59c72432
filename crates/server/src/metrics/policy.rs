//! What the reload thread reports: reloads by result and the size of the
//! reply being served.

use std::sync::atomic::{AtomicU64, Ordering};

/// Written by the reload thread (and once at start-up), read at scrape
/// time. Reloads are rare, so plain atomic adds are fine here.
#[derive(Debug, Default)]
pub struct PolicyCounters {
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
    bytes: AtomicU64,
}

impl PolicyCounters {
    /// Counters for a server that starts serving a reply of `bytes` bytes.
    pub fn new(bytes: usize) -> PolicyCounters {
        let counters = PolicyCounters::default();
        counters.set_bytes(bytes);
        counters
    }

    /// A reload succeeded and the reply now served has `bytes` bytes (the
    /// document and its NUL). The size is stored first, so a scrape that
    /// sees the new count sees the new size.
    pub fn reloaded(&self, bytes: usize) {
        self.set_bytes(bytes);
        self.reloads_ok.fetch_add(1, Ordering::Release);
    }

    /// A reload failed; the previous reply is still served.
    pub fn reload_failed(&self) {
        self.reloads_error.fetch_add(1, Ordering::Release);
    }

    /// Successful reloads so far.
    pub fn reloads_ok(&self) -> u64 {
        self.reloads_ok.load(Ordering::Acquire)
    }

    /// Failed reloads so far.
    pub fn reloads_error(&self) -> u64 {
        self.reloads_error.load(Ordering::Acquire)
    }

    /// Bytes of the reply being served.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn set_bytes(&self, bytes: usize) {
        self.bytes
            .store(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_count_and_set_the_size() {
        let p = PolicyCounters::new(100);
        assert_eq!((p.reloads_ok(), p.reloads_error(), p.bytes()), (0, 0, 100));
        p.reload_failed();
        assert_eq!((p.reloads_ok(), p.reloads_error(), p.bytes()), (0, 1, 100));
        p.reloaded(42);
        assert_eq!((p.reloads_ok(), p.reloads_error(), p.bytes()), (1, 1, 42));
    }
}
