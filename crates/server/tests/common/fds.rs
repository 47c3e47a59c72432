//! Counting a process' open descriptors, to show that connections leave
//! none behind.

use std::time::{Duration, Instant};

use super::IO_TIMEOUT;

/// Descriptors open in process `pid` (0 once it has gone).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Descriptors open in `pid` once it has settled: workers open their ring
/// and spare descriptor after "listening on" is logged, and a finished
/// relay's sockets close just after its client saw the end, so wait until
/// the count holds still.
pub fn settled_fds(pid: u32) -> usize {
    let mut last = open_fds(pid);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = open_fds(pid);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// Waits (bounded) until process `pid` has `n` descriptors open.
pub fn wait_for_fds(pid: u32, n: usize, what: &str) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while open_fds(pid) != n {
        assert!(
            Instant::now() < deadline,
            "{what}: {} descriptors open, not {n}",
            open_fds(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
