//! The provided-buffer ring of one gateway thread: `count` buffers of
//! `size` bytes that the kernel picks from for each receive
//! (`IOSQE_BUFFER_SELECT`), given back once their bytes have been sent.
//!
//! The thread's whole user-space relay memory is `count × size`, whatever
//! the number of relays: an idle relay holds no buffer, a busy direction
//! holds one. When every buffer is in use a receive completes with
//! `ENOBUFS` and its direction waits for one to come back.

use std::alloc::Layout;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

/// The ring's entries must be page-aligned.
const RING_ALIGN: usize = 4096;

/// A registered provided-buffer ring and the memory of its buffers.
#[derive(Debug)]
pub(super) struct BufRing {
    /// `count` entries, page-aligned, shared with the kernel.
    entries: NonNull<BufRingEntry>,
    layout: Layout,
    /// The buffers, `size` bytes each, back to back (raw: the kernel
    /// writes into them while we hold them).
    memory: NonNull<u8>,
    memory_layout: Layout,
    size: u32,
    count: u16,
    /// Our copy of the ring's tail (the kernel reads the shared one).
    tail: u16,
    group: u16,
    /// Set by [`BufRing::leak`].
    leaked: bool,
}

impl BufRing {
    /// Allocates `count` (a power of two) buffers of `size` bytes and
    /// registers them with the ring as buffer group `group`.
    pub(super) fn new(
        submitter: &Submitter<'_>,
        count: u16,
        size: u32,
        group: u16,
    ) -> io::Result<BufRing> {
        if !count.is_power_of_two() || size == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let bytes = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        let layout = Layout::from_size_align(bytes, RING_ALIGN)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: the layout has a non-zero size (count ≥ 1).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(entries) = NonNull::new(raw.cast::<BufRingEntry>()) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let memory_layout = Layout::from_size_align(usize::from(count) * size as usize, 64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a non-zero size (count ≥ 1, size ≥ 1).
        let Some(memory) = NonNull::new(unsafe { std::alloc::alloc(memory_layout) }) else {
            // SAFETY: allocated just above with this layout.
            unsafe { std::alloc::dealloc(raw, layout) };
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let mut ring = BufRing {
            entries,
            layout,
            memory,
            memory_layout,
            size,
            count,
            tail: 0,
            group,
            leaked: false,
        };
        // SAFETY: the entries live until `Drop`, which unregisters the
        // group first (and the owner keeps the ring alive that long).
        unsafe {
            submitter.register_buf_ring_with_flags(entries.as_ptr() as u64, count, group, 0)
        }?;
        for bid in 0..count {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// How many buffers there are.
    pub(super) fn count(&self) -> u16 {
        self.count
    }

    /// Gives up the memory for good (the kernel may still write into it):
    /// `Drop` then frees nothing.
    pub(super) fn leak(&mut self) {
        self.leaked = true;
    }

    /// The buffer group receives pick from.
    pub(super) fn group(&self) -> u16 {
        self.group
    }

    /// The size of each buffer: the most one receive takes.
    pub(super) fn size(&self) -> u32 {
        self.size
    }

    /// A pointer to `offset` bytes into buffer `bid`, for a send of at most
    /// `size - offset` bytes; `None` for a buffer or offset out of range.
    pub(super) fn at(&self, bid: u16, offset: u32) -> Option<*const u8> {
        if bid >= self.count || offset >= self.size {
            return None;
        }
        let start = usize::from(bid) * self.size as usize + offset as usize;
        // SAFETY: bid < count and offset < size, so `start` is inside the
        // allocation of count × size bytes.
        Some(unsafe { self.memory.as_ptr().add(start) }.cast_const())
    }

    /// Gives buffer `bid` back to the kernel.
    pub(super) fn give_back(&mut self, bid: u16) {
        if bid < self.count {
            self.push(bid);
            self.publish();
        }
    }

    /// Writes the entry for `bid` at our tail.
    fn push(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.memory.as_ptr() as u64 + u64::from(bid) * u64::from(self.size);
        // SAFETY: `index` < `count`, so the entry is inside the allocation;
        // the kernel reads entries only between its head and the published
        // tail, and this one is past the published tail until `publish`.
        let entry = unsafe { &mut *self.entries.as_ptr().add(index) };
        entry.set_addr(addr);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries written so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the ring's base is a live, aligned entry array; the tail
        // field it points to is a `u16` that the kernel only reads.
        let tail = unsafe { BufRingEntry::tail(self.entries.as_ptr()) };
        // SAFETY: `tail` points into our live allocation, aligned for a
        // u16; the kernel reads it concurrently, hence the atomic store.
        let tail = unsafe { AtomicU16::from_ptr(tail.cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Unregisters the group; called before the memory is freed.
    pub(super) fn unregister(&self, submitter: &Submitter<'_>) -> io::Result<()> {
        submitter.unregister_buf_ring(self.group)
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: both allocated in `new` with these layouts, freed once.
        // The owner unregisters the group, and makes sure no operation is
        // left that could write into a buffer, before this runs (or leaks
        // the whole ring instead).
        unsafe {
            std::alloc::dealloc(self.entries.as_ptr().cast(), self.layout);
            std::alloc::dealloc(self.memory.as_ptr(), self.memory_layout);
        }
    }
}
