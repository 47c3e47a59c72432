//! The start gate: every worker sets itself up (listeners registered, its
//! io_uring ring built), says so, and waits; the supervisor waits until all
//! are ready (or one failed), drops privileges (`--user`), and then lets
//! them serve, or tells them to return without serving.
//!
//! This is what makes `READY=1` mean "every worker is listening", and what
//! keeps a failed `--user` drop from serving anything as root.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

#[derive(Debug, Default)]
struct State {
    ready: usize,
    failed: usize,
    verdict: Option<bool>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// The supervisor's side.
#[derive(Debug)]
pub(crate) struct StartGate {
    shared: Arc<Shared>,
    workers: usize,
}

/// A worker's side: [`StartTicket::arrive`] once set up. Dropped without
/// arriving (the worker failed or panicked first), it counts as a failure.
#[derive(Debug, Default)]
pub(crate) struct StartTicket {
    shared: Option<Arc<Shared>>,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    // Plain counters: a panic elsewhere cannot leave them half-written.
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StartGate {
    /// A gate for `workers` workers.
    pub(crate) fn new(workers: usize) -> StartGate {
        StartGate {
            shared: Arc::default(),
            workers,
        }
    }

    /// One worker's ticket.
    pub(crate) fn ticket(&self) -> StartTicket {
        StartTicket {
            shared: Some(Arc::clone(&self.shared)),
        }
    }

    /// Waits until every worker is ready (true) or all have either arrived
    /// or failed, one at least failing (false).
    pub(crate) fn wait_all(&self) -> bool {
        let mut state = lock(&self.shared);
        while state.ready + state.failed < self.workers {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.failed == 0
    }

    /// Lets the workers serve (`go`), or return at once without serving.
    pub(crate) fn open(&self, go: bool) {
        lock(&self.shared).verdict = Some(go);
        self.shared.changed.notify_all();
    }
}

impl StartTicket {
    /// Moves the ticket out, leaving an empty one (which arrives at once).
    pub(crate) fn take(&mut self) -> StartTicket {
        std::mem::take(self)
    }

    /// Says this worker is ready and waits for the supervisor: true to
    /// serve, false to return without serving. An empty ticket (a worker
    /// run outside the supervisor) returns true at once.
    pub(crate) fn arrive(mut self) -> bool {
        let Some(shared) = self.shared.take() else {
            return true;
        };
        let mut state = lock(&shared);
        state.ready += 1;
        shared.changed.notify_all();
        loop {
            if let Some(go) = state.verdict {
                return go;
            }
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for StartTicket {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            lock(&shared).failed += 1;
            shared.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_ready_then_go() {
        let gate = StartGate::new(2);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let t = gate.ticket();
                std::thread::spawn(move || t.arrive())
            })
            .collect();
        assert!(gate.wait_all());
        gate.open(true);
        for w in workers {
            assert!(w.join().expect("no panic"));
        }
    }

    #[test]
    fn a_failed_worker_fails_the_gate_and_the_others_stop() {
        let gate = StartGate::new(2);
        let good = gate.ticket();
        let good = std::thread::spawn(move || good.arrive());
        drop(gate.ticket());
        assert!(!gate.wait_all());
        gate.open(false);
        assert!(!good.join().expect("no panic"));
    }
}
