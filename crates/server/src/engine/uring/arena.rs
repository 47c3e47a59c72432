//! The receive buffers: one fixed slot per connection, allocated once.

use std::ptr::NonNull;

use crate::engine::common::RECV_LEN;

/// One fixed receive buffer per slot, allocated once, never moved or resized
/// while the worker runs. Accessed only through raw pointers, so no Rust
/// reference ever covers a buffer the kernel may be writing into.
pub(super) struct RecvArena {
    bufs: NonNull<[[u8; RECV_LEN]]>,
}

impl RecvArena {
    /// `slots` buffers (at least one).
    pub(super) fn new(slots: usize) -> RecvArena {
        let boxed: Box<[[u8; RECV_LEN]]> = vec![[0u8; RECV_LEN]; slots.max(1)].into_boxed_slice();
        RecvArena {
            bufs: NonNull::from(Box::leak(boxed)),
        }
    }

    pub(super) fn slots(&self) -> usize {
        self.bufs.len()
    }

    /// Start of slot `slot`'s buffer, for a recv of at most [`RECV_LEN`]
    /// bytes.
    ///
    /// # Panics
    /// If `slot` is outside the arena.
    pub(super) fn ptr(&self, slot: usize) -> *mut u8 {
        assert!(slot < self.slots(), "slot {slot} outside the arena");
        // SAFETY: `slot` is in bounds (checked above), so the offset stays
        // inside the one allocation `bufs` points to.
        unsafe { self.bufs.cast::<[u8; RECV_LEN]>().as_ptr().add(slot).cast() }
    }

    /// The first `len` bytes of slot `slot`.
    ///
    /// # Safety
    /// No operation writing into this slot may be in flight (its completion
    /// has been reaped), and the slice must be dropped before the next recv
    /// into the slot is submitted.
    pub(super) unsafe fn filled(&self, slot: usize, len: usize) -> &[u8] {
        let len = len.min(RECV_LEN);
        // SAFETY: in bounds (`ptr` checks the slot, `len` is clamped); the
        // caller guarantees nothing writes the bytes while the slice lives.
        unsafe { std::slice::from_raw_parts(self.ptr(slot), len) }
    }

    /// Gives the memory up for good: used when the kernel might still write
    /// into it and we cannot wait to find out.
    pub(super) fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for RecvArena {
    fn drop(&mut self) {
        // SAFETY: `bufs` came from `Box::leak` in `new` and is dropped once;
        // the worker drops the arena only after the drain barrier confirmed
        // that no operation is in flight (otherwise it calls `leak`).
        drop(unsafe { Box::from_raw(self.bufs.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_adjacent_and_do_not_overlap() {
        let arena = RecvArena::new(4);
        assert_eq!(arena.slots(), 4);
        for slot in 0..3 {
            assert_eq!(
                arena.ptr(slot + 1) as usize - arena.ptr(slot) as usize,
                RECV_LEN,
                "slot {slot}"
            );
        }
        // What one slot holds is not seen through another.
        // SAFETY: no operation is in flight on this arena; the writes stay
        // inside slot 1 and no slice is alive meanwhile.
        unsafe { arena.ptr(1).write_bytes(0xaa, RECV_LEN) };
        // SAFETY: nothing writes into the arena while these slices live.
        let (s0, s1, s2) = unsafe {
            (
                arena.filled(0, RECV_LEN),
                arena.filled(1, RECV_LEN + 10),
                arena.filled(2, 1),
            )
        };
        assert!(s0.iter().all(|&b| b == 0));
        assert_eq!(s1.len(), RECV_LEN, "a length past the slot is clamped");
        assert!(s1.iter().all(|&b| b == 0xaa));
        assert_eq!(s2, [0]);
    }

    #[test]
    #[should_panic(expected = "outside the arena")]
    fn a_slot_past_the_end_panics() {
        RecvArena::new(2).ptr(2);
    }

    #[test]
    fn an_empty_arena_still_has_one_slot() {
        assert_eq!(RecvArena::new(0).slots(), 1);
    }
}
