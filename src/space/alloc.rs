//! The space's block allocator: size classes with one free list each, over a bump pointer.
//!
//! A block of class `k` is `64 << k` bytes and starts at an offset aligned to its size, capped
//! at 4096. [`Space::alloc`] pops the class's free list or carves a fresh block at `next`;
//! [`Space::free`] pushes a block back. A free block's first 8 bytes hold the offset of the next
//! free block of its class (0 ends the list).
//!
//! Crash safety: both operations run under the header's robust lock, and each changes the
//! allocator's state with one store: a pop stores the list head, a push writes the block's link
//! first and then stores the head, a carve stores `next`. A holder that dies between two stores
//! leaves every list well formed; at most one block is lost.
//!
//! Trust: a list head or link read from the segment is checked before it is followed (inside
//! the allocated area, aligned for its class) and a walk is bounded by the number of blocks the
//! area can hold, so a peer's garbage gives `WEFT_CORRUPTED`, never a wild access or a hang.

use super::layout::{corrupted, Space, DATA_ALIGN, DATA_START, MAX_ALIGN, SIZE_CLASSES};
use crate::status::{Error, Result, WEFT_NO_MEMORY};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// Size of the smallest block.
const MIN_BLOCK: u64 = DATA_ALIGN;

/// The class whose blocks hold `size` bytes aligned to `align`; `None` when too large.
pub(super) fn class_of(size: u64, align: u64) -> Option<usize> {
    let need = size.max(align).max(MIN_BLOCK);
    let k = need.checked_next_power_of_two()?.trailing_zeros() - MIN_BLOCK.trailing_zeros();
    ((k as usize) < SIZE_CLASSES).then_some(k as usize)
}

/// Bytes in a block of class `k`.
pub(super) fn block_size(k: usize) -> u64 {
    MIN_BLOCK << k
}

/// Alignment of a block of class `k`.
fn block_align(k: usize) -> u64 {
    block_size(k).min(MAX_ALIGN)
}

impl Space {
    fn check_alloc_args(size: u64, align: u64) -> Result<()> {
        if size == 0 {
            return Err(Error::invalid("allocation size must be at least 1 byte"));
        }
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(Error::invalid(format!(
                "allocation alignment must be a power of two from 1 to {MAX_ALIGN}, got {align}"
            )));
        }
        Ok(())
    }

    /// The link word at the start of free block `off`.
    fn link(&self, off: u64) -> Result<&AtomicU64> {
        let p = self.ptr(off, 8)?;
        // SAFETY: `ptr` checked that 8 bytes at `off` lie in the mapping; `off` is a block
        // offset (multiple of 64 from a page-aligned base), so aligned for AtomicU64, for which
        // any bit pattern is valid and shared mutation through `&` is allowed. The borrow lives
        // no longer than `self`, which keeps the mapping.
        Ok(unsafe { &*(p as *const AtomicU64) })
    }

    /// Checks that `off` can be a block of class `k`: in the allocated area, aligned.
    fn check_block(&self, off: u64, k: usize, next: u64, what: &str) -> Result<()> {
        let end = off.checked_add(block_size(k));
        if off < DATA_START || off % block_align(k) != 0 || end.map_or(true, |e| e > next) {
            return Err(corrupted(format!(
                "space free list {k}: {what} {off} is not a block of {} bytes inside the allocated area \
                 [{DATA_START}, {next})",
                block_size(k)
            )));
        }
        Ok(())
    }

    /// Walks every free list (lock held): each entry a valid block, each list finite.
    pub(super) fn validate_free_lists(&self, next: u64) -> Result<()> {
        for k in 0..SIZE_CLASSES {
            let max_blocks = (next - DATA_START) / block_size(k);
            let mut off = self.header().free[k].load(Relaxed);
            let mut seen = 0u64;
            while off != 0 {
                self.check_block(off, k, next, "entry")?;
                seen += 1;
                if seen > max_blocks {
                    return Err(corrupted(format!("space free list {k} is longer than the area can hold (a cycle)")));
                }
                off = self.link(off)?.load(Relaxed);
            }
        }
        Ok(())
    }

    /// Allocation with the lock held and the arguments checked. Returns zero-filled memory.
    pub(super) fn alloc_locked(&self, size: u64, align: u64) -> Result<u64> {
        let full = || {
            Error::new(
                WEFT_NO_MEMORY,
                format!(
                    "space is full: no block for {size} bytes aligned to {align} ({} bytes never allocated)",
                    self.len() - self.header().next.load(Relaxed).min(self.len())
                ),
            )
        };
        let k = class_of(size, align).ok_or_else(full)?;
        let next = self.next()?;
        let head = &self.header().free[k];
        let off = head.load(Relaxed);
        if off != 0 {
            self.check_block(off, k, next, "head")?;
            let after = self.link(off)?.load(Relaxed);
            if after != 0 {
                self.check_block(after, k, next, "link")?;
            }
            head.store(after, Relaxed);
            let p = self.ptr(off, block_size(k))?;
            // SAFETY: the block lies in the mapping (ptr checked) and, just popped, belongs to
            // nobody: no process reads or writes it until this allocation is handed out.
            unsafe { std::ptr::write_bytes(p, 0, block_size(k) as usize) };
            return Ok(off);
        }
        let a = block_align(k);
        let fresh = next
            .checked_add(a - 1)
            .map(|v| v & !(a - 1))
            .and_then(|off| Some((off, off.checked_add(block_size(k))?)))
            .filter(|&(_, end)| end <= self.len());
        let (off, end) = fresh.ok_or_else(full)?;
        self.header().next.store(end, Relaxed);
        Ok(off)
    }

    /// Allocates a block for `size` bytes aligned to `align` and returns its offset from the
    /// start of the segment. The block is zero-filled. Give it back with
    /// [`free`](Self::free) and the same `size` and `align`.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` when `size` is 0 or `align` is not a power of two from 1
    /// to 4096; `WEFT_NO_MEMORY` ("space is full"); `WEFT_CORRUPTED` when the header or a free
    /// list was damaged; the lock's errors (`WEFT_TIMEOUT`, `WEFT_NOT_RECOVERABLE`).
    /// Thread safety: callable from any thread of any process using the space.
    pub fn alloc(&self, size: u64, align: u64) -> Result<u64> {
        Self::check_alloc_args(size, align)?;
        let _g = self.lock()?;
        self.alloc_locked(size, align)
    }

    /// Frees with the lock held.
    pub(super) fn free_locked(&self, off: u64, size: u64, align: u64) -> Result<()> {
        let k = class_of(size, align).ok_or_else(|| Error::invalid(format!("no block holds {size} bytes")))?;
        let next = self.next()?;
        self.check_block(off, k, next, "freed block")?;
        let head = &self.header().free[k];
        self.link(off)?.store(head.load(Relaxed), Relaxed);
        head.store(off, Relaxed);
        Ok(())
    }

    /// Returns the block at `off`, allocated with `size` and `align`, to its free list. The
    /// caller guarantees that nobody uses it any more; freeing a block twice corrupts the list
    /// (the space's own object layer never does).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for bad `size`/`align`; `WEFT_CORRUPTED` when `off` is
    /// not a block of that size; the lock's errors.
    /// Thread safety: callable from any thread of any process using the space.
    pub fn free(&self, off: u64, size: u64, align: u64) -> Result<()> {
        Self::check_alloc_args(size, align)?;
        let _g = self.lock()?;
        self.free_locked(off, size, align)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Segment;
    use crate::status::{WEFT_CORRUPTED, WEFT_INVALID_ARGUMENT};

    const SIZE: usize = 256 * 1024;

    fn new_space() -> Space {
        Space::format(Segment::anonymous(SIZE).unwrap()).unwrap()
    }

    #[test]
    fn classes() {
        assert_eq!(class_of(1, 1), Some(0));
        assert_eq!(class_of(64, 8), Some(0));
        assert_eq!(class_of(65, 8), Some(1));
        assert_eq!(class_of(8, 4096), Some(6));
        assert_eq!(class_of(u64::MAX, 1), None);
        assert_eq!(class_of(1 << 40, 1), None);
    }

    #[test]
    fn freed_blocks_are_reused_zeroed() {
        let space = new_space();
        let a = space.alloc(100, 8).unwrap();
        assert_eq!(a % 128, 0);
        let p = space.ptr(a, 100).unwrap();
        // SAFETY: 100 bytes of our own block.
        unsafe { std::ptr::write_bytes(p, 0xab, 100) };
        space.free(a, 100, 8).unwrap();
        let b = space.alloc(120, 16).unwrap();
        assert_eq!(a, b, "same class: the freed block comes back");
        // SAFETY: as above.
        assert!(unsafe { std::slice::from_raw_parts(space.ptr(b, 120).unwrap(), 120) }.iter().all(|&x| x == 0));
        let c = space.alloc(100, 8).unwrap();
        assert_ne!(b, c);
        assert_eq!(space.alloc(0, 8).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        assert_eq!(space.alloc(8, 3).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        assert_eq!(space.alloc(8, 8192).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        assert_eq!(space.alloc(u64::MAX, 8).unwrap_err().code, WEFT_NO_MEMORY);
        assert_eq!(space.free(c + 64, 100, 8).unwrap_err().code, WEFT_CORRUPTED, "misaligned for its class");
    }

    #[test]
    fn alloc_until_full_then_free_all_and_again() {
        let space = new_space();
        let mut blocks = Vec::new();
        loop {
            match space.alloc(1000, 64) {
                Ok(off) => blocks.push(off),
                Err(e) => {
                    assert_eq!(e.code, WEFT_NO_MEMORY);
                    assert!(e.message.contains("space is full"), "{}", e.message);
                    break;
                }
            }
        }
        let n = blocks.len();
        assert!(n as u64 >= (SIZE as u64 - DATA_START) / 1024 - 1);
        for &b in &blocks {
            space.free(b, 1000, 64).unwrap();
        }
        for _ in 0..n {
            space.alloc(1000, 64).unwrap();
        }
        assert_eq!(space.alloc(1000, 64).unwrap_err().code, WEFT_NO_MEMORY);
    }

    #[test]
    fn damaged_free_lists_are_reported() {
        let space = new_space();
        let a = space.alloc(8, 8).unwrap();
        let b = space.alloc(8, 8).unwrap();
        space.free(a, 8, 8).unwrap();
        space.free(b, 8, 8).unwrap();
        // A cycle: b -> a -> b.
        space.link(a).unwrap().store(b, Relaxed);
        let seg = space.into_segment();
        let e = Space::attach(seg).unwrap_err();
        assert_eq!(e.code, WEFT_CORRUPTED);
        assert!(e.message.contains("cycle"), "{}", e.message);
        // A head pointing outside the area.
        let space = new_space();
        space.header().free[3].store(1 << 40, Relaxed);
        assert_eq!(space.alloc(500, 8).unwrap_err().code, WEFT_CORRUPTED);
        assert_eq!(Space::attach(space.into_segment()).unwrap_err().code, WEFT_CORRUPTED);
    }
}
