//! The system allocator, plus a few freed large blocks kept for the next allocation of the same
//! size.
//!
//! musl's `malloc` (the image is a static musl binary) maps every block above 128 KiB straight
//! from the kernel and unmaps it on `free`. hyper reads each response into a ~408 KiB buffer and,
//! because the previous buffer is still shared with a body chunk in flight, allocates a fresh one
//! for nearly every page of a listing: an `mmap`, about a hundred page faults while the kernel
//! copies the socket into it, and an `munmap`, per 500 pipelines. [`SpareBlocks`] keeps up to
//! [`SPARE_SLOTS`] freed blocks between [`SMALLEST`] and [`LARGEST`] bytes and hands one back for
//! the next allocation of exactly that size, so a listing reuses two or three buffers instead of
//! mapping one per page. At most `SPARE_SLOTS * LARGEST` bytes stay resident for it.
//!
//! Everything else goes to [`System`] unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The smallest block kept: musl's threshold for mapping a block on its own.
pub const SMALLEST: usize = 128 * 1024;
/// The largest block kept.
pub const LARGEST: usize = 1024 * 1024;
/// How many freed blocks are kept at most.
pub const SPARE_SLOTS: usize = 4;
/// Kept blocks are those `malloc` itself aligns (`free` needs no alignment to release them).
const MAX_ALIGN: usize = 16;

/// A global allocator: [`System`], with up to [`SPARE_SLOTS`] freed large blocks kept for reuse.
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: spare_alloc::SpareBlocks = spare_alloc::SpareBlocks::new();
/// ```
pub struct SpareBlocks {
    /// Kept blocks; each one's size is written in its first word while it is kept.
    slots: [AtomicPtr<u8>; SPARE_SLOTS],
}

impl SpareBlocks {
    /// An allocator keeping nothing yet.
    pub const fn new() -> Self {
        Self {
            slots: [const { AtomicPtr::new(null_mut()) }; SPARE_SLOTS],
        }
    }

    /// A kept block of exactly `size` bytes, taken out of its slot. On a miss, one kept block
    /// of another size is released, so that sizes no longer asked for do not hold the slots.
    fn take(&self, size: usize) -> Option<*mut u8> {
        let mut released_one = false;
        for slot in &self.slots {
            let block = slot.swap(null_mut(), Ordering::Acquire);
            if block.is_null() {
                continue;
            }
            // SAFETY: a kept block is at least SMALLEST bytes, aligned for usize, and its first
            // word was written by `keep` before the block was published.
            let kept_size = unsafe { block.cast::<usize>().read() };
            if kept_size == size {
                return Some(block);
            }
            let keep_it = released_one
                && slot
                    .compare_exchange(null_mut(), block, Ordering::Release, Ordering::Relaxed)
                    .is_ok();
            if !keep_it {
                released_one = true;
                // SAFETY: the block came from System with this size and an alignment `malloc`
                // gives by itself; nobody else holds it now.
                unsafe { System.dealloc(block, block_layout(kept_size)) };
            }
        }
        None
    }

    /// Keeps `block` of `size` bytes when a slot is free; false when it must be released.
    fn keep(&self, block: *mut u8, size: usize) -> bool {
        // SAFETY: the caller owns the block (it is being freed), which is at least SMALLEST
        // bytes and aligned to at least MAX_ALIGN.
        unsafe { block.cast::<usize>().write(size) };
        self.slots.iter().any(|slot| {
            slot.compare_exchange(null_mut(), block, Ordering::Release, Ordering::Relaxed)
                .is_ok()
        })
    }
}

impl Default for SpareBlocks {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether blocks of this layout are kept.
fn is_kept_size(layout: Layout) -> bool {
    (SMALLEST..=LARGEST).contains(&layout.size()) && layout.align() <= MAX_ALIGN
}

/// The layout a kept block of `size` bytes was allocated with (up to its alignment, which
/// `free` does not need).
fn block_layout(size: usize) -> Layout {
    // SAFETY: size is within SMALLEST..=LARGEST and 1 is a power of two.
    unsafe { Layout::from_size_align_unchecked(size, 1) }
}

// SAFETY: every block handed out is either fresh from System or a System block of exactly the
// requested size (and an alignment malloc guarantees) that was freed to us and not handed out
// since; every block released goes back to System.
unsafe impl GlobalAlloc for SpareBlocks {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_kept_size(layout) {
            if let Some(block) = self.take(layout.size()) {
                return block;
            }
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_kept_size(layout) && self.keep(ptr, layout.size()) {
            return;
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // A mapped block is zeroed by the kernel for free; a kept one would need clearing.
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Every block is a System block of its layout's size, so `realloc` (mremap for a mapped
        // block) can move it.
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = 417_792;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    #[test]
    fn a_freed_large_block_is_handed_back_for_the_same_size() {
        let allocator = SpareBlocks::new();
        unsafe {
            let first = allocator.alloc(layout(BIG));
            first.write_bytes(7, BIG);
            allocator.dealloc(first, layout(BIG));
            let second = allocator.alloc(layout(BIG));
            assert_eq!(second, first);
            // The whole block is usable.
            second.write_bytes(1, BIG);
            assert_eq!(*second.add(BIG - 1), 1);
            allocator.dealloc(second, layout(BIG));
        }
    }

    fn kept(allocator: &SpareBlocks) -> usize {
        allocator
            .slots
            .iter()
            .filter(|s| !s.load(Ordering::Relaxed).is_null())
            .count()
    }

    #[test]
    fn a_kept_block_of_another_size_is_not_handed_out_and_a_miss_releases_one() {
        let allocator = SpareBlocks::new();
        unsafe {
            let sizes: Vec<usize> = (0..SPARE_SLOTS).map(|i| SMALLEST + i * 4096).collect();
            let blocks: Vec<_> = sizes.iter().map(|&s| allocator.alloc(layout(s))).collect();
            for (&block, &size) in blocks.iter().zip(&sizes) {
                allocator.dealloc(block, layout(size));
            }
            assert_eq!(kept(&allocator), SPARE_SLOTS);
            assert_eq!(allocator.take(BIG), None);
            assert_eq!(kept(&allocator), SPARE_SLOTS - 1);
            // The freed slot takes the new size, which is then handed back.
            let big = allocator.alloc(layout(BIG));
            allocator.dealloc(big, layout(BIG));
            assert_eq!(allocator.take(BIG), Some(big));
            allocator.dealloc(big, layout(BIG));
        }
    }

    #[test]
    fn small_and_huge_blocks_are_never_kept() {
        let allocator = SpareBlocks::new();
        unsafe {
            for size in [64, SMALLEST - 1, LARGEST + 1] {
                let block = allocator.alloc(layout(size));
                allocator.dealloc(block, layout(size));
            }
        }
        assert_eq!(kept(&allocator), 0);
    }

    #[test]
    fn at_most_the_slots_are_kept_and_the_rest_released() {
        let allocator = SpareBlocks::new();
        unsafe {
            let blocks: Vec<_> = (0..SPARE_SLOTS + 2)
                .map(|_| allocator.alloc(layout(BIG)))
                .collect();
            for &block in &blocks {
                allocator.dealloc(block, layout(BIG));
            }
            assert_eq!(kept(&allocator), SPARE_SLOTS);
            // Each kept block is handed out once.
            let again: Vec<_> = (0..SPARE_SLOTS)
                .map(|_| allocator.alloc(layout(BIG)))
                .collect();
            for (i, a) in again.iter().enumerate() {
                assert!(blocks.contains(a));
                assert!(!again[..i].contains(a));
            }
            for block in again {
                allocator.dealloc(block, layout(BIG));
            }
        }
    }

    #[test]
    fn threads_freeing_and_allocating_at_once_never_share_a_block() {
        static SHARED: SpareBlocks = SpareBlocks::new();
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    for round in 0..2_000usize {
                        // Two sizes, so that misses also release other threads' blocks.
                        let size = if (round + usize::from(t)) % 3 == 0 {
                            BIG
                        } else {
                            SMALLEST
                        };
                        unsafe {
                            let block = SHARED.alloc(layout(size));
                            assert!(!block.is_null());
                            block.write_bytes(t, size);
                            std::thread::yield_now();
                            // Nobody else wrote into it while it was ours.
                            assert_eq!(*block, t);
                            assert_eq!(*block.add(size / 2), t);
                            assert_eq!(*block.add(size - 1), t);
                            SHARED.dealloc(block, layout(size));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(kept(&SHARED) <= SPARE_SLOTS);
    }

    #[test]
    fn reallocating_a_reused_block_keeps_its_bytes() {
        let allocator = SpareBlocks::new();
        unsafe {
            let first = allocator.alloc(layout(BIG));
            allocator.dealloc(first, layout(BIG));
            let reused = allocator.alloc(layout(BIG));
            reused.write_bytes(9, BIG);
            let grown = allocator.realloc(reused, layout(BIG), 2 * BIG);
            assert!((0..BIG).all(|i| *grown.add(i) == 9));
            allocator.dealloc(grown, layout(2 * BIG));
        }
    }
}
