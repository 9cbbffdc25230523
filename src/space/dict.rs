//! [`SharedDict`]: Python's `Manager().dict()` for byte strings — a hash map from bytes to bytes
//! living in a space, usable by every process that maps the space, robust to any of them being
//! killed in the middle of an update.
//!
//! This file also holds the pieces [`SharedList`](super::list::SharedList) shares with it:
//! validated blocks, recorded allocation and release, the lock with recovery, the test hook.
//!
//! # Layout
//!
//! Everything is an offset from the start of the segment; nothing in shared memory is a
//! pointer. A block allocated from the space is named by one *block word*: its offset (a
//! multiple of 64) OR-ed with its size class `k` (block size `64 << k`) in the low 6 bits, so
//! that it can be freed with the class it was allocated with, whatever its contents say.
//!
//! The object's payload (88 bytes, all atomics):
//!
//! | offset | field        | meaning                                                          |
//! | ------ | ------------ | ---------------------------------------------------------------- |
//! | 0      | `lock`       | `RobustLock`: every access to the dict takes it                   |
//! | 16     | `magic` u32  | `b"wfdc"`                                                        |
//! | 20     | `version` u32| 1                                                                |
//! | 24     | `seed` 2×u64 | random SipHash-1-3 key, fixed at creation                         |
//! | 40     | `table` u64  | block word of the table, 0 while the dict has none (empty)        |
//! | 48     | `len` u64    | live entries (derived: recounted by recovery)                     |
//! | 56     | `journal` 4×u64 | block words of an update in progress: new entry, old entry, new table, old table (0: none) |
//!
//! A table (a block of class 2 to 29) is a compact dict like CPython's: an index of `n_idx`
//! u32 slots (0 empty, 1 deleted, `j + 2` for item `j`) probed linearly from the key's hash,
//! and an array of `n_items` item words (entry block words, 0 for a deleted item) in insertion
//! order. Its first 64 bytes are `magic: u64` (`b"wfdtab1\0"`) and `used: u64`, the number of
//! item slots consumed (live or deleted); `n_idx = (size - 72) * 3 / 28` and
//! `n_items = n_idx * 2 / 3` follow from the class, so the index is at most 2/3 full.
//!
//! An entry is an immutable block `{hash: u64, klen: u32, vlen: u32, key bytes, value bytes}`.
//!
//! # Crash safety
//!
//! The item words `items[0..used)` of the current table are the truth: an entry is in the dict
//! exactly when its word is there. The index, `len` and everything past `used` are derived, and
//! recovery recomputes them. Every update changes the truth with ONE store:
//!
//! - insert: the new entry is allocated *into* `items[used]` (the allocation and that store
//!   happen under the space's lock, so the block is never unrecorded), written, and committed
//!   by storing `used + 1`; then the index slot and `len` are updated;
//! - replace: the new entry is allocated into `journal.new_entry`, written; the old one is
//!   recorded in `journal.old_entry`; the commit stores the new word into `items[j]` (the
//!   position, hence the iteration order, is kept, as in Python);
//! - delete: the entry is recorded in `journal.old_entry`; the commit stores 0 into `items[j]`;
//! - resize (when `used == n_items`): a new table is allocated into `journal.new_table`, filled
//!   with the live item words (entries are not copied) and its index, the old table recorded in
//!   `journal.old_table`; the commit stores the new table's word into the header;
//! - clear: the table is recorded in `journal.old_table`; the commit stores 0 into `table`.
//!
//! After the commit the unreachable blocks are freed: under the space's lock, the reference
//! to a block (journal word or item word) is cleared first and the block freed next, so a
//! block is never freed twice; a process killed between those two stores leaks that one block
//! (the same window the allocator itself has, see `alloc.rs`).
//!
//! When taking the lock reports `WEFT_OWNER_DEAD`, recovery runs before the caller's
//! operation: it validates the header, the table and every live entry (bounds, lengths,
//! hash, no duplicate entry or key), frees every block the dead holder left unreachable — the
//! journal's words that are not live, nonzero words past `used`, a dead table together with
//! those of its entries that are not live — rebuilds the index and recounts `len`, then marks
//! the lock consistent. The dict then holds either the old or the new state of the
//! interrupted update, and nothing leaked. If validation fails the state was damaged, not just
//! interrupted: the lock is released without being marked consistent, the call returns
//! `WEFT_CORRUPTED` and every later call `WEFT_NOT_RECOVERABLE`. A failed update (say
//! `WEFT_NO_MEMORY` half-way) runs the same recovery before returning, so it has no effect.
//!
//! # Trust
//!
//! Every word read from the segment is checked before use: block words (class, alignment,
//! inside the data area, via `Space::ptr`), the table's class, magic and `used`, index values
//! (`< used`, naming a live item), entry lengths (at most 1 GiB, inside the block). Loops are
//! bounded by the table's size. A peer scribbling on the dict gets `WEFT_CORRUPTED` answers,
//! never an out-of-bounds access, a panic or a hang.

use super::alloc::{block_size, class_of};
use super::layout::{corrupted, Space, DATA_START, MAX_ALIGN, SIZE_CLASSES};
use super::object::{ObjectRef, KIND_DICT, OBJECT_HEADER};
use crate::futex::Interrupt;
use crate::status::{Error, Result, WEFT_NOT_FOUND, WEFT_NO_MEMORY, WEFT_OWNER_DEAD};
use crate::sync::robust::RobustLock;
use crate::time::Deadline;
use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

// ---------------------------------------------------------------------------------------------
// Pieces shared with list.rs
// ---------------------------------------------------------------------------------------------

/// The largest key, value or list item, in bytes (1 GiB).
pub(crate) const MAX_ITEM: usize = 1 << 30;

/// Low bits of a block word that hold the size class.
const CLASS_MASK: u64 = 63;

/// Alignment requested for every block of a dict or list (blocks are at least this aligned).
const BLOCK_ALIGN: u64 = 64;

/// Checks the length of a key, value or item given by a caller.
pub(super) fn check_item(what: &str, len: usize) -> Result<()> {
    if len > MAX_ITEM {
        return Err(Error::invalid(format!("{what} of {len} bytes exceeds the limit of {MAX_ITEM} bytes")));
    }
    Ok(())
}

/// The size class of a block holding `bytes` bytes.
pub(super) fn class_for(bytes: u64) -> Result<usize> {
    class_of(bytes, BLOCK_ALIGN)
        .ok_or_else(|| Error::new(WEFT_NO_MEMORY, format!("space is full: no block holds {bytes} bytes")))
}

/// A block of the space named by a block word, checked: class, alignment, inside the data area.
#[derive(Clone, Copy)]
pub(super) struct Block<'s> {
    word: u64,
    p: *mut u8,
    size: u64,
    _space: PhantomData<&'s Space>,
}

impl<'s> Block<'s> {
    /// Checks `word` and returns its block; `what` names it in the error.
    pub(super) fn open(space: &'s Space, word: u64, what: &str) -> Result<Block<'s>> {
        let k = (word & CLASS_MASK) as usize;
        let off = word & !CLASS_MASK;
        if k >= SIZE_CLASSES {
            return Err(corrupted(format!("{what} {word:#x}: size class {k} does not exist")));
        }
        let size = block_size(k);
        if off < DATA_START || off % size.min(MAX_ALIGN) != 0 {
            return Err(corrupted(format!("{what} {word:#x}: offset {off} is not a block of {size} bytes")));
        }
        let p = space.ptr(off, size).map_err(|e| corrupted(format!("{what} {word:#x}: {}", e.message)))?;
        Ok(Block { word, p, size, _space: PhantomData })
    }

    /// The block word.
    pub(super) fn word(&self) -> u64 {
        self.word
    }

    /// The size class.
    pub(super) fn class(&self) -> usize {
        (self.word & CLASS_MASK) as usize
    }

    /// Bytes in the block.
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    fn check(&self, at: u64, len: u64, align: u64) -> Result<()> {
        if at % align != 0 || at.checked_add(len).map_or(true, |end| end > self.size) {
            return Err(corrupted(format!(
                "{len} bytes at {at} of the block {:#x} lie outside its {} bytes",
                self.word, self.size
            )));
        }
        Ok(())
    }

    /// The 8-byte word at byte `at` of the block.
    pub(super) fn u64_at(&self, at: u64) -> Result<&'s AtomicU64> {
        self.check(at, 8, 8)?;
        // SAFETY: `check` keeps the 8 bytes inside the block, which `Space::ptr` checked lies in
        // the mapping; the block's base is 64-aligned and `at` a multiple of 8, so the pointer
        // is aligned for AtomicU64, for which every bit pattern is valid and shared mutation
        // through `&` is allowed. The mapping lives as long as the space ('s).
        Ok(unsafe { &*(self.p.add(at as usize) as *const AtomicU64) })
    }

    /// The 4-byte word at byte `at` of the block.
    pub(super) fn u32_at(&self, at: u64) -> Result<&'s AtomicU32> {
        self.check(at, 4, 4)?;
        // SAFETY: as in `u64_at`, with 4 bytes aligned to 4.
        Ok(unsafe { &*(self.p.add(at as usize) as *const AtomicU32) })
    }

    /// A pointer to `len` bytes at byte `at` of the block (checked to lie inside it).
    pub(super) fn bytes(&self, at: u64, len: u64) -> Result<*mut u8> {
        self.check(at, len, 1)?;
        // SAFETY: `at + len <= size`: the result stays inside the block.
        Ok(unsafe { self.p.add(at as usize) })
    }
}

/// Copies `len` bytes of shared memory at `p` into a new vector.
///
/// # Safety
/// `p` must be valid for reads of `len` bytes (a range checked by [`Block::bytes`]).
pub(super) unsafe fn copy_out(p: *const u8, len: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len as usize);
    // SAFETY: the caller guarantees `len` readable bytes at `p`; `v` has room for them and
    // they are initialised by the copy before `set_len`. The source is shared memory that
    // only a misbehaving peer would write concurrently (the data is immutable once
    // published); such a peer can only garble the bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), len as usize);
        v.set_len(len as usize);
    }
    v
}

/// Allocates a block of class `k` under the space's lock and passes its word to `record`
/// before that lock is released, so the block is reachable from the structure's state or
/// journal from the moment it exists. `record` must publish the word only once it cannot fail
/// (on its failure the block is freed again).
pub(super) fn alloc_recorded(space: &Space, k: usize, record: impl FnOnce(u64) -> Result<()>) -> Result<u64> {
    let _g = space.lock()?;
    let off = space.alloc_locked(block_size(k), BLOCK_ALIGN)?;
    let word = off | k as u64;
    if let Err(e) = record(word) {
        let _ = space.free_locked(off, block_size(k), BLOCK_ALIGN);
        return Err(e);
    }
    Ok(word)
}

/// Under the space's lock: checks `words` (0s are skipped), runs `unlink` — which clears every
/// reference the structure still holds to them — and frees them. A process killed between the
/// two leaks the blocks; it never frees one twice.
pub(super) fn free_unlinked(space: &Space, words: &[u64], unlink: impl FnOnce()) -> Result<()> {
    let _g = space.lock()?;
    for &w in words {
        if w != 0 {
            Block::open(space, w, "block to free")?;
        }
    }
    unlink();
    for &w in words {
        if w != 0 {
            let k = (w & CLASS_MASK) as usize;
            space.free_locked(w & !CLASS_MASK, block_size(k), BLOCK_ALIGN)?;
        }
    }
    Ok(())
}

/// Holds a dict's or list's lock; releases it when dropped.
pub(super) struct Held<'a>(&'a RobustLock);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

/// Takes `lock`; when its holder died, runs `repair` and marks the lock consistent (or, when
/// `repair` fails, releases it unmarked so that every later acquire fails with
/// `WEFT_NOT_RECOVERABLE`).
pub(super) fn acquire<'a>(
    lock: &'a RobustLock,
    deadline: Deadline,
    what: &str,
    repair: impl FnOnce() -> Result<()>,
) -> Result<Held<'a>> {
    match lock.acquire(deadline, Interrupt::Cancellable) {
        Ok(()) => Ok(Held(lock)),
        Err(e) if e.code == WEFT_OWNER_DEAD => {
            if let Err(e) = repair() {
                let _ = lock.release();
                return Err(Error::new(
                    e.code,
                    format!("the {what}'s lock holder died and its state could not be repaired: {}", e.message),
                ));
            }
            if lock.mark_consistent().is_err() {
                let _ = lock.release();
                return Err(corrupted(format!("the {what}'s lock is in an invalid state")));
            }
            Ok(Held(lock))
        }
        Err(e) => Err(e),
    }
}

/// Test hook: lets a forked child SIGKILL itself at the n-th step of an update (of a dict, a
/// list or a shared queue).
#[cfg(test)]
pub(crate) mod crash {
    use std::sync::atomic::AtomicU32;
    use std::sync::atomic::Ordering::Relaxed;

    static AT: AtomicU32 = AtomicU32::new(0);

    /// Arms the hook: the `n`-th call to [`step`] from now on kills the process (1-based).
    /// Only ever called in forked children.
    pub(crate) fn arm(n: u32) {
        AT.store(n, Relaxed);
    }

    /// One step of an update.
    pub(crate) fn step() {
        match AT.load(Relaxed) {
            0 => {}
            1 => {
                // SAFETY: raise has no memory-safety preconditions; the process dies here.
                unsafe { libc::raise(libc::SIGKILL) };
            }
            n => AT.store(n - 1, Relaxed),
        }
    }
}

/// Marks the boundary between two steps of an update (a test may kill the process there).
#[inline(always)]
pub(crate) fn step() {
    #[cfg(test)]
    crash::step();
}

/// `N` random words from the kernel.
pub(super) fn random_words<const N: usize>() -> Result<[u64; N]> {
    let mut out = [0u64; N];
    let mut filled = 0usize;
    let bytes = N * 8;
    while filled < bytes {
        // SAFETY: writes at most `bytes - filled` bytes into `out` starting at byte `filled`,
        // all inside the array.
        let n = unsafe { libc::getrandom(out.as_mut_ptr().cast::<u8>().add(filled).cast(), bytes - filled, 0) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::last_os("getrandom"));
        }
        filled += n as usize;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Hashing: SipHash-1-3, keyed by the dict's seed (stable across processes and weft versions).
// ---------------------------------------------------------------------------------------------

/// SipHash-c-d of `data` under the key `(k0, k1)`.
fn siphash<const C: usize, const D: usize>(k0: u64, k1: u64, data: &[u8]) -> u64 {
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut compress = |m: u64| {
        v[3] ^= m;
        (0..C).for_each(|_| round(&mut v));
        v[0] ^= m;
    };
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        compress(u64::from_le_bytes(c.try_into().expect("chunks of 8")));
    }
    let mut last = (data.len() as u64) << 56;
    for (i, &b) in chunks.remainder().iter().enumerate() {
        last |= u64::from(b) << (8 * i);
    }
    compress(last);
    v[2] ^= 0xff;
    (0..D).for_each(|_| round(&mut v));
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The dict's hash: SipHash-1-3 (as CPython's and Rust's hash maps).
fn siphash13(k0: u64, k1: u64, data: &[u8]) -> u64 {
    siphash::<1, 3>(k0, k1, data)
}

// ---------------------------------------------------------------------------------------------
// The dict
// ---------------------------------------------------------------------------------------------

const DICT_MAGIC: u32 = u32::from_le_bytes(*b"wfdc");
const DICT_VERSION: u32 = 1;
const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"wfdtab1\0");
/// Bytes before a table's index.
const TABLE_HEAD: u64 = 64;
/// Bytes before an entry's key.
const ENTRY_HEAD: u64 = 16;
const MIN_TABLE_CLASS: usize = 2;
/// The largest table class whose item numbers (+2) fit the u32 index slots.
const MAX_TABLE_CLASS: usize = 29;
const SLOT_EMPTY: u32 = 0;
const SLOT_DELETED: u32 = 1;

const J_NEW_ENTRY: usize = 0;
const J_OLD_ENTRY: usize = 1;
const J_NEW_TABLE: usize = 2;
const J_OLD_TABLE: usize = 3;

/// The dict's payload. All atomics: any bit pattern is a value, peers never race with UB.
#[repr(C)]
struct DictHeader {
    lock: RobustLock,
    magic: AtomicU32,
    version: AtomicU32,
    seed: [AtomicU64; 2],
    table: AtomicU64,
    len: AtomicU64,
    journal: [AtomicU64; 4],
}

// SAFETY: #[repr(C)], made only of atomics and a RobustLock (atomics), no pointers,
// alignment 8.
unsafe impl super::shared::SharedPod for DictHeader {}

const _: () = assert!(std::mem::size_of::<DictHeader>() == 88);
const _: () = assert!(std::mem::offset_of!(DictHeader, table) == 40);

/// `(n_idx, n_items, items_at)` of a table of class `k`.
fn geometry(k: usize) -> (u64, u64, u64) {
    let size = block_size(k);
    let n_idx = (size - TABLE_HEAD - 8) * 3 / 28;
    let n_items = n_idx * 2 / 3;
    (n_idx, n_items, TABLE_HEAD + (4 * n_idx).div_ceil(8) * 8)
}

/// A checked table.
struct Table<'s> {
    b: Block<'s>,
    n_idx: u64,
    n_items: u64,
    items_at: u64,
}

impl<'s> Table<'s> {
    fn open(space: &'s Space, word: u64) -> Result<Table<'s>> {
        let b = Block::open(space, word, "dict table")?;
        let k = b.class();
        if !(MIN_TABLE_CLASS..=MAX_TABLE_CLASS).contains(&k) {
            return Err(corrupted(format!("dict table {word:#x}: class {k} is not a table class")));
        }
        let magic = b.u64_at(0)?.load(Acquire);
        if magic != TABLE_MAGIC {
            return Err(corrupted(format!("dict table {word:#x}: field `magic` is {magic:#018x}")));
        }
        let (n_idx, n_items, items_at) = geometry(k);
        Ok(Table { b, n_idx, n_items, items_at })
    }

    fn used_word(&self) -> Result<&'s AtomicU64> {
        self.b.u64_at(8)
    }

    fn used(&self) -> Result<u64> {
        let used = self.used_word()?.load(Relaxed);
        if used > self.n_items {
            return Err(corrupted(format!(
                "dict table {:#x}: field `used` is {used}, above its {} item slots",
                self.b.word(),
                self.n_items
            )));
        }
        Ok(used)
    }

    fn idx(&self, s: u64) -> Result<&'s AtomicU32> {
        self.b.u32_at(TABLE_HEAD + 4 * s)
    }

    fn item(&self, j: u64) -> Result<&'s AtomicU64> {
        self.b.u64_at(self.items_at + 8 * j)
    }

    /// The first index slot to probe for hash `h`.
    fn home(&self, h: u64) -> u64 {
        ((u128::from(h) * u128::from(self.n_idx)) >> 64) as u64
    }
}

/// A checked entry.
struct Entry<'s> {
    b: Block<'s>,
    hash: u64,
    klen: u64,
    vlen: u64,
}

impl<'s> Entry<'s> {
    fn open(space: &'s Space, word: u64) -> Result<Entry<'s>> {
        let b = Block::open(space, word, "dict entry")?;
        let hash = b.u64_at(0)?.load(Relaxed);
        let klen = u64::from(b.u32_at(8)?.load(Relaxed));
        let vlen = u64::from(b.u32_at(12)?.load(Relaxed));
        if klen > MAX_ITEM as u64 || vlen > MAX_ITEM as u64 || ENTRY_HEAD + klen + vlen > b.size() {
            return Err(corrupted(format!(
                "dict entry {word:#x}: key of {klen} and value of {vlen} bytes do not fit its {}-byte block",
                b.size()
            )));
        }
        Ok(Entry { b, hash, klen, vlen })
    }

    fn key_eq(&self, key: &[u8]) -> Result<bool> {
        if self.klen != key.len() as u64 {
            return Ok(false);
        }
        let p = self.b.bytes(ENTRY_HEAD, self.klen)?;
        // SAFETY: `bytes` checked that klen bytes at `p` lie in the block; memcmp only reads
        // them (a misbehaving peer writing concurrently can only change the answer).
        Ok(unsafe { libc::memcmp(p.cast(), key.as_ptr().cast(), key.len()) } == 0)
    }

    fn key(&self) -> Result<Vec<u8>> {
        let p = self.b.bytes(ENTRY_HEAD, self.klen)?;
        // SAFETY: `bytes` checked the range.
        Ok(unsafe { copy_out(p, self.klen) })
    }

    fn value_ptr(&self) -> Result<*mut u8> {
        self.b.bytes(ENTRY_HEAD + self.klen, self.vlen)
    }

    fn value(&self) -> Result<Vec<u8>> {
        let p = self.value_ptr()?;
        // SAFETY: `bytes` checked the range.
        Ok(unsafe { copy_out(p, self.vlen) })
    }
}

enum Probe<'s> {
    Found { slot: u64, j: u64, entry: Entry<'s> },
    Absent { slot: u64 },
}

/// Python's `Manager().dict()` for byte keys and values, in a space: a view of one dict
/// object (see the module documentation for its layout and crash safety).
///
/// Iteration order is insertion order, as in Python: replacing a value keeps the key's place,
/// deleting and re-inserting moves it to the end.
///
/// The view borrows the [`Space`] and does not own a reference to the object: whoever holds
/// the object's reference (the C layer) keeps it alive while views are used, and calls
/// [`clear`](Self::clear) before dropping the last reference to give back every block the
/// dict owns (the object layer frees only the payload).
///
/// Every operation takes the dict's robust lock, waiting until `deadline` (`WEFT_WOULD_BLOCK`
/// for `Deadline::Now`, else `WEFT_TIMEOUT`; `WEFT_CANCELLED` when the calling weft thread is
/// asked to cancel). When the previous holder died, the operation repairs the dict first (the
/// interrupted update is either complete or without effect) and then proceeds normally. Every
/// operation can also fail with `WEFT_CORRUPTED` (the dict or the space failed validation),
/// `WEFT_NOT_RECOVERABLE` (an earlier repair found it damaged), and the space lock's errors.
///
/// Thread safety: `Send + Sync`; any number of views in any threads of any processes may use
/// the same dict concurrently.
#[derive(Clone, Copy)]
pub struct SharedDict<'a> {
    space: &'a Space,
    h: &'a DictHeader,
    payload: u64,
}

// The documented thread safety.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SharedDict<'static>>();
};

impl std::fmt::Debug for SharedDict<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDict").field("payload", &self.payload).finish_non_exhaustive()
    }
}

impl<'a> SharedDict<'a> {
    /// Bytes of payload a dict object needs (for `Space::create_object` with `KIND_DICT`).
    pub fn payload_size() -> u64 {
        std::mem::size_of::<DictHeader>() as u64
    }

    /// Writes an empty dict into a fresh payload: for the `init` callback of
    /// `Space::create_object(KIND_DICT, SharedDict::payload_size(), ...)`.
    ///
    /// Errors: `WEFT_OS_ERROR` when the random hash seed cannot be read.
    ///
    /// # Safety
    /// `payload` must point to at least [`payload_size`](Self::payload_size) writable bytes,
    /// 8-aligned, that nobody else accesses while this runs (a payload not yet published).
    pub unsafe fn init(payload: *mut u8) -> Result<()> {
        let seed = random_words::<2>()?;
        let p = payload.cast::<DictHeader>();
        // SAFETY: by the contract, `p` is valid, aligned and exclusively ours; every field is
        // written (the lock with a fresh one, the rest are atomics initialised by value).
        unsafe {
            p.write(DictHeader {
                lock: RobustLock::new(),
                magic: AtomicU32::new(DICT_MAGIC),
                version: AtomicU32::new(DICT_VERSION),
                seed: [AtomicU64::new(seed[0]), AtomicU64::new(seed[1])],
                table: AtomicU64::new(0),
                len: AtomicU64::new(0),
                journal: Default::default(),
            })
        };
        Ok(())
    }

    /// Creates an empty dict object in `space`, optionally named `name`, and returns a view of
    /// it with the object's reference (held by the caller, to be released with
    /// `Space::release` after [`clear`](Self::clear)).
    ///
    /// Errors: those of `Space::create_object` (`WEFT_INVALID_ARGUMENT` for a bad name,
    /// `WEFT_EXISTS`, `WEFT_NO_MEMORY`, `WEFT_CORRUPTED`, the space lock's errors) and
    /// `WEFT_OS_ERROR` when no random seed can be read.
    /// Thread safety: callable from any thread of any process using the space.
    pub fn create(space: &'a Space, name: Option<&str>) -> Result<(SharedDict<'a>, ObjectRef)> {
        let mut init = |p: *mut u8| {
            // SAFETY: create_object hands over a fresh, 64-aligned, zeroed payload of
            // payload_size() bytes that no other process can reach yet.
            unsafe { Self::init(p) }
        };
        space.create_viewed(KIND_DICT, Self::payload_size(), name, &mut init, Self::open)
    }

    /// A view of the dict object `object` (a reference the caller holds).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` when the object is not a dict; `WEFT_CORRUPTED` when its
    /// payload is too small or does not hold a dict.
    /// Thread safety: callable from any thread.
    pub fn open(space: &'a Space, object: &ObjectRef) -> Result<SharedDict<'a>> {
        let h = space.payload_as::<DictHeader>(object, KIND_DICT)?;
        let d = SharedDict { space, h, payload: object.offset + OBJECT_HEADER };
        d.check_header()?;
        Ok(d)
    }

    fn check_header(&self) -> Result<()> {
        let (magic, version) = (self.h.magic.load(Relaxed), self.h.version.load(Relaxed));
        if magic != DICT_MAGIC || version != DICT_VERSION {
            return Err(corrupted(format!(
                "dict at offset {}: fields `magic` {magic:#010x} / `version` {version} do not describe a dict",
                self.payload
            )));
        }
        Ok(())
    }

    fn hash(&self, key: &[u8]) -> u64 {
        siphash13(self.h.seed[0].load(Relaxed), self.h.seed[1].load(Relaxed), key)
    }

    fn lock(&self, deadline: Deadline) -> Result<Held<'a>> {
        self.check_header()?;
        acquire(&self.h.lock, deadline, "dict", || self.repair())
    }

    /// Runs an update; when it fails after it may have changed something, repairs (so a failed
    /// update has no effect and leaks nothing).
    fn update<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let r = f();
        if let Err(e) = &r {
            if e.code != WEFT_NOT_FOUND {
                let _ = self.repair();
            }
        }
        r
    }

    /// The current table and its `used`, if any.
    fn table(&self) -> Result<Option<(Table<'a>, u64)>> {
        let w = self.h.table.load(Acquire);
        if w == 0 {
            return Ok(None);
        }
        let t = Table::open(self.space, w)?;
        let used = t.used()?;
        Ok(Some((t, used)))
    }

    /// Looks `key` (hash `h`) up in `t`.
    fn probe(&self, t: &Table<'a>, used: u64, key: &[u8], h: u64) -> Result<Probe<'a>> {
        let mut s = t.home(h);
        let mut reuse = None;
        for _ in 0..t.n_idx {
            match t.idx(s)?.load(Relaxed) {
                SLOT_EMPTY => return Ok(Probe::Absent { slot: reuse.unwrap_or(s) }),
                SLOT_DELETED => {
                    reuse.get_or_insert(s);
                }
                v => {
                    let j = u64::from(v) - 2;
                    if j >= used {
                        return Err(corrupted(format!("dict index slot {s} names item {j}, beyond the {used} in use")));
                    }
                    let w = t.item(j)?.load(Relaxed);
                    if w == 0 {
                        return Err(corrupted(format!("dict index slot {s} names the deleted item {j}")));
                    }
                    let e = Entry::open(self.space, w)?;
                    if e.hash == h && e.key_eq(key)? {
                        return Ok(Probe::Found { slot: s, j, entry: e });
                    }
                }
            }
            s += 1;
            if s == t.n_idx {
                s = 0;
            }
        }
        Err(corrupted(format!("dict table {:#x}: the index has no empty slot", t.b.word())))
    }

    /// Finds `key`: `(table, slot, item number, entry)`.
    fn find(&self, key: &[u8], h: u64) -> Result<Option<(Table<'a>, u64, u64, Entry<'a>)>> {
        let Some((t, used)) = self.table()? else { return Ok(None) };
        match self.probe(&t, used, key, h)? {
            Probe::Found { slot, j, entry } => Ok(Some((t, slot, j, entry))),
            Probe::Absent { .. } => Ok(None),
        }
    }

    /// The live entries in order.
    fn entries(&self) -> Result<Vec<Entry<'a>>> {
        let Some((t, used)) = self.table()? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for j in 0..used {
            let w = t.item(j)?.load(Relaxed);
            if w != 0 {
                out.push(Entry::open(self.space, w)?);
            }
        }
        Ok(out)
    }

    /// The value stored under `key`, or `None`.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for a key over 1 GiB; the lock's and validation errors
    /// (see the type's documentation). Blocks until `deadline` for the lock.
    /// Thread safety: see the type.
    pub fn get(&self, key: &[u8], deadline: Deadline) -> Result<Option<Vec<u8>>> {
        check_item("key", key.len())?;
        let h = self.hash(key);
        let _g = self.lock(deadline)?;
        match self.find(key, h)? {
            Some((.., e)) => Ok(Some(e.value()?)),
            None => Ok(None),
        }
    }

    /// Copies the value stored under `key` into `buf` when it fits, and returns its length
    /// either way (a caller whose buffer was too small retries with one that large).
    ///
    /// Errors: `WEFT_NOT_FOUND` when the key is absent; otherwise as [`get`](Self::get).
    /// Thread safety: see the type.
    pub fn get_into(&self, key: &[u8], buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        check_item("key", key.len())?;
        let h = self.hash(key);
        let _g = self.lock(deadline)?;
        let (.., e) = self.find(key, h)?.ok_or_else(|| Error::new(WEFT_NOT_FOUND, "key not found in the dict"))?;
        let n = e.vlen as usize;
        if n <= buf.len() {
            let p = e.value_ptr()?;
            // SAFETY: `value_ptr` checked that `n` bytes at `p` lie in the entry's block; `buf`
            // has at least `n` bytes; the ranges cannot overlap (one is shared memory).
            unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n) };
        }
        Ok(n)
    }

    /// True when `key` is in the dict.
    ///
    /// Errors: as [`get`](Self::get).
    /// Thread safety: see the type.
    pub fn contains(&self, key: &[u8], deadline: Deadline) -> Result<bool> {
        check_item("key", key.len())?;
        let h = self.hash(key);
        let _g = self.lock(deadline)?;
        Ok(self.find(key, h)?.is_some())
    }

    /// The number of keys.
    ///
    /// Errors: the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn len(&self, deadline: Deadline) -> Result<usize> {
        let _g = self.lock(deadline)?;
        let used = self.table()?.map_or(0, |(_, used)| used);
        let len = self.h.len.load(Relaxed);
        if len > used {
            return Err(corrupted(format!("dict field `len` is {len}, above the {used} items in use")));
        }
        Ok(len as usize)
    }

    /// True when the dict has no keys.
    ///
    /// Errors: as [`len`](Self::len).
    /// Thread safety: see the type.
    pub fn is_empty(&self, deadline: Deadline) -> Result<bool> {
        Ok(self.len(deadline)? == 0)
    }

    /// Stores `value` under `key` (`d[key] = value`), replacing any value already there (the
    /// key keeps its place in the iteration order).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for a key or value over 1 GiB; `WEFT_NO_MEMORY` when the
    /// space is full (the dict is unchanged); the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn set(&self, key: &[u8], value: &[u8], deadline: Deadline) -> Result<()> {
        check_item("key", key.len())?;
        check_item("value", value.len())?;
        let h = self.hash(key);
        let _g = self.lock(deadline)?;
        self.update(|| self.set_locked(key, value, h, true)).map(|_| ())
    }

    /// Python's `setdefault`: stores `default` under `key` unless the key is present. Returns
    /// `None` when it stored `default`, else the value already there.
    ///
    /// Errors: as [`set`](Self::set).
    /// Thread safety: see the type.
    pub fn set_default(&self, key: &[u8], default: &[u8], deadline: Deadline) -> Result<Option<Vec<u8>>> {
        check_item("key", key.len())?;
        check_item("value", default.len())?;
        let h = self.hash(key);
        let _g = self.lock(deadline)?;
        self.update(|| self.set_locked(key, default, h, false))
    }

    /// Inserts or (when `overwrite`) replaces; returns the existing value when not overwriting.
    fn set_locked(&self, key: &[u8], value: &[u8], h: u64, overwrite: bool) -> Result<Option<Vec<u8>>> {
        let k = class_for(ENTRY_HEAD + key.len() as u64 + value.len() as u64)?;
        let (t, used) = match self.table()? {
            Some((t, used)) => match self.probe(&t, used, key, h)? {
                Probe::Found { j, entry, .. } => {
                    if !overwrite {
                        return Ok(Some(entry.value()?));
                    }
                    self.replace(&t, j, entry, k, key, value, h)?;
                    return Ok(None);
                }
                Probe::Absent { .. } if used < t.n_items => (t, used),
                Probe::Absent { .. } => self.resize()?,
            },
            None => self.resize()?,
        };
        let slot = match self.probe(&t, used, key, h)? {
            Probe::Absent { slot } => slot,
            Probe::Found { .. } => return Err(corrupted("dict: a key appeared during a resize".into())),
        };
        let item = t.item(used)?;
        if item.load(Relaxed) != 0 {
            return Err(corrupted(format!("dict table {:#x}: item slot {used} beyond `used` is not empty", t.b.word())));
        }
        // The entry is allocated into items[used]: recorded, not yet part of the dict.
        let w = alloc_recorded(self.space, k, |w| {
            item.store(w, Relaxed);
            Ok(())
        })?;
        self.write_entry(w, h, key, value)?;
        step();
        t.used_word()?.store(used + 1, Release); // commit
        step();
        t.idx(slot)?.store((used + 2) as u32, Relaxed);
        self.h.len.store(self.h.len.load(Relaxed).wrapping_add(1), Relaxed);
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    fn replace(&self, t: &Table<'a>, j: u64, old: Entry<'a>, k: usize, key: &[u8], value: &[u8], h: u64) -> Result<()> {
        let journal = &self.h.journal;
        let w = alloc_recorded(self.space, k, |w| {
            journal[J_NEW_ENTRY].store(w, Relaxed);
            Ok(())
        })?;
        self.write_entry(w, h, key, value)?;
        step();
        journal[J_OLD_ENTRY].store(old.b.word(), Relaxed);
        step();
        t.item(j)?.store(w, Release); // commit
        step();
        free_unlinked(self.space, &[old.b.word()], || {
            journal[J_NEW_ENTRY].store(0, Relaxed);
            journal[J_OLD_ENTRY].store(0, Relaxed);
        })
    }

    fn write_entry(&self, w: u64, h: u64, key: &[u8], value: &[u8]) -> Result<()> {
        let b = Block::open(self.space, w, "new dict entry")?;
        b.u64_at(0)?.store(h, Relaxed);
        b.u32_at(8)?.store(key.len() as u32, Relaxed);
        b.u32_at(12)?.store(value.len() as u32, Relaxed);
        let p = b.bytes(ENTRY_HEAD, (key.len() + value.len()) as u64)?;
        // SAFETY: `bytes` checked that key and value fit the block, which was just allocated
        // and is reachable only through words that no reader follows until the commit.
        unsafe {
            std::ptr::copy_nonoverlapping(key.as_ptr(), p, key.len());
            std::ptr::copy_nonoverlapping(value.as_ptr(), p.add(key.len()), value.len());
        }
        Ok(())
    }

    /// Replaces the table by a compacted one with room for one and a half times the live items
    /// (at least one more); returns it with its `used`.
    fn resize(&self) -> Result<(Table<'a>, u64)> {
        let old = self.table()?;
        let mut live = Vec::new();
        if let Some((t, used)) = &old {
            for j in 0..*used {
                let w = t.item(j)?.load(Relaxed);
                if w != 0 {
                    live.push(Entry::open(self.space, w)?);
                }
            }
        }
        let n = live.len() as u64;
        let want = (n + n / 2).max(n + 1);
        let k = (MIN_TABLE_CLASS..=MAX_TABLE_CLASS)
            .find(|&k| geometry(k).1 >= want)
            .ok_or_else(|| Error::new(WEFT_NO_MEMORY, format!("a dict cannot hold more than {} keys", live.len())))?;
        let journal = &self.h.journal;
        let nw = alloc_recorded(self.space, k, |w| {
            Block::open(self.space, w, "new dict table")?.u64_at(0)?.store(TABLE_MAGIC, Release);
            journal[J_NEW_TABLE].store(w, Relaxed);
            Ok(())
        })?;
        let nt = Table::open(self.space, nw)?;
        for (m, e) in live.iter().enumerate() {
            let m = m as u64;
            nt.item(m)?.store(e.b.word(), Relaxed);
            self.place(&nt, e.hash, m)?;
        }
        nt.used_word()?.store(n, Relaxed);
        step();
        let old_word = old.as_ref().map_or(0, |(t, _)| t.b.word());
        journal[J_OLD_TABLE].store(old_word, Relaxed);
        step();
        self.h.table.store(nw, Release); // commit
        step();
        free_unlinked(self.space, &[old_word], || {
            journal[J_NEW_TABLE].store(0, Relaxed);
            journal[J_OLD_TABLE].store(0, Relaxed);
        })?;
        self.h.len.store(n, Relaxed);
        Ok((nt, n))
    }

    /// Puts item `j` (hash `h`) into the first empty index slot (fresh tables only).
    fn place(&self, t: &Table<'a>, h: u64, j: u64) -> Result<()> {
        let mut s = t.home(h);
        for _ in 0..t.n_idx {
            let slot = t.idx(s)?;
            if slot.load(Relaxed) == SLOT_EMPTY {
                slot.store((j + 2) as u32, Relaxed);
                return Ok(());
            }
            s += 1;
            if s == t.n_idx {
                s = 0;
            }
        }
        Err(corrupted(format!("dict table {:#x}: the index has no empty slot", t.b.word())))
    }

    /// Deletes the found entry; the commit stores 0 into its item word.
    fn remove_found(&self, t: &Table<'a>, slot: u64, j: u64, e: &Entry<'a>) -> Result<()> {
        let journal = &self.h.journal;
        journal[J_OLD_ENTRY].store(e.b.word(), Relaxed);
        step();
        t.item(j)?.store(0, Release); // commit
        step();
        t.idx(slot)?.store(SLOT_DELETED, Relaxed);
        self.h.len.store(self.h.len.load(Relaxed).saturating_sub(1), Relaxed);
        free_unlinked(self.space, &[e.b.word()], || journal[J_OLD_ENTRY].store(0, Relaxed))
    }

    /// Removes `key` (`del d[key]`).
    ///
    /// Errors: `WEFT_NOT_FOUND` when the key is absent; `WEFT_INVALID_ARGUMENT` for a key over
    /// 1 GiB; the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn delete(&self, key: &[u8], deadline: Deadline) -> Result<()> {
        self.pop_impl(key, deadline, false).map(|_| ())
    }

    /// Removes `key` and returns its value (`d.pop(key)`).
    ///
    /// Errors: as [`delete`](Self::delete).
    /// Thread safety: see the type.
    pub fn pop(&self, key: &[u8], deadline: Deadline) -> Result<Vec<u8>> {
        self.pop_impl(key, deadline, true)
    }

    fn pop_impl(&self, key: &[u8], deadline: Deadline, want_value: bool) -> Result<Vec<u8>> {
        check_item("key", key.len())?;
        let h = self.hash(key);
        let _g = self.lock(deadline)?;
        self.update(|| {
            let (t, slot, j, e) =
                self.find(key, h)?.ok_or_else(|| Error::new(WEFT_NOT_FOUND, "key not found in the dict"))?;
            let value = if want_value { e.value()? } else { Vec::new() };
            self.remove_found(&t, slot, j, &e)?;
            Ok(value)
        })
    }

    /// Removes and returns the most recently inserted key and its value (`d.popitem()`).
    ///
    /// Errors: `WEFT_NOT_FOUND` when the dict is empty; the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn pop_item(&self, deadline: Deadline) -> Result<(Vec<u8>, Vec<u8>)> {
        let _g = self.lock(deadline)?;
        self.update(|| {
            let empty = || Error::new(WEFT_NOT_FOUND, "popitem(): the dict is empty");
            let (t, used) = self.table()?.ok_or_else(empty)?;
            for j in (0..used).rev() {
                let w = t.item(j)?.load(Relaxed);
                if w == 0 {
                    continue;
                }
                let e = Entry::open(self.space, w)?;
                let (key, value) = (e.key()?, e.value()?);
                let slot = match self.probe(&t, used, &key, e.hash)? {
                    Probe::Found { slot, j: found, .. } if found == j => slot,
                    _ => return Err(corrupted(format!("dict item {j} is not reachable through the index"))),
                };
                self.remove_found(&t, slot, j, &e)?;
                return Ok((key, value));
            }
            Err(empty())
        })
    }

    /// Removes every key and gives every block the dict owns back to the space (`d.clear()`).
    /// Call it before the last reference to the object is released.
    ///
    /// Errors: the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn clear(&self, deadline: Deadline) -> Result<()> {
        let _g = self.lock(deadline)?;
        self.update(|| self.clear_locked())
    }

    fn clear_locked(&self) -> Result<()> {
        let Some((t, _)) = self.table()? else {
            self.h.len.store(0, Relaxed);
            return Ok(());
        };
        let journal = &self.h.journal;
        journal[J_OLD_TABLE].store(t.b.word(), Relaxed);
        step();
        self.h.table.store(0, Release); // commit
        self.h.len.store(0, Relaxed);
        step();
        self.free_table_entries(&t, &mut HashSet::new())?;
        free_unlinked(self.space, &[t.b.word()], || journal[J_OLD_TABLE].store(0, Relaxed))
    }

    /// Frees every entry of the dead table `t` that is not in `skip` (adding each to it, so no
    /// block is freed twice), zeroing its item word first; in batches, one space-lock hold each.
    fn free_table_entries(&self, t: &Table<'a>, skip: &mut HashSet<u64>) -> Result<()> {
        const BATCH: u64 = 1024;
        let mut j = 0;
        while j < t.n_items {
            let end = (j + BATCH).min(t.n_items);
            let mut words = Vec::new();
            let mut slots = Vec::new();
            for i in j..end {
                let slot = t.item(i)?;
                let w = slot.load(Relaxed);
                if w != 0 {
                    slots.push(slot);
                    if skip.insert(w) {
                        words.push(w);
                    }
                }
            }
            free_unlinked(self.space, &words, || slots.iter().for_each(|s| s.store(0, Relaxed)))?;
            step();
            j = end;
        }
        Ok(())
    }

    /// The keys, in insertion order (a snapshot).
    ///
    /// Errors: the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn keys(&self, deadline: Deadline) -> Result<Vec<Vec<u8>>> {
        let _g = self.lock(deadline)?;
        self.entries()?.iter().map(Entry::key).collect()
    }

    /// The values, in insertion order of their keys (a snapshot).
    ///
    /// Errors: the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn values(&self, deadline: Deadline) -> Result<Vec<Vec<u8>>> {
        let _g = self.lock(deadline)?;
        self.entries()?.iter().map(Entry::value).collect()
    }

    /// The `(key, value)` pairs, in insertion order (a snapshot).
    ///
    /// Errors: the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn items(&self, deadline: Deadline) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let _g = self.lock(deadline)?;
        self.entries()?.iter().map(|e| Ok((e.key()?, e.value()?))).collect()
    }

    /// Recovery (lock held): validates, frees what an interrupted update left unreachable,
    /// rebuilds the index and `len`. See the module documentation.
    fn repair(&self) -> Result<()> {
        self.check_header()?;
        let cur_word = self.h.table.load(Acquire);
        let cur = if cur_word == 0 { None } else { Some(Table::open(self.space, cur_word)?) };
        let (seed0, seed1) = (self.h.seed[0].load(Relaxed), self.h.seed[1].load(Relaxed));
        // Every block word met so far: the live entries first, then those to free.
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        let mut dead = Vec::new();
        let mut beyond = Vec::new();
        if let Some(t) = &cur {
            let used = t.used()?;
            for j in 0..used {
                let w = t.item(j)?.load(Relaxed);
                if w == 0 {
                    continue;
                }
                let e = Entry::open(self.space, w)?;
                if siphash13(seed0, seed1, &e.key()?) != e.hash {
                    return Err(corrupted(format!("dict entry {w:#x}: stored hash does not match its key")));
                }
                if !seen.insert(w) {
                    return Err(corrupted(format!("dict entry {w:#x} is listed twice")));
                }
                entries.push((j, e));
            }
            for j in used..t.n_items {
                let slot = t.item(j)?;
                let w = slot.load(Relaxed);
                if w != 0 {
                    beyond.push(slot);
                    if seen.insert(w) {
                        dead.push(w);
                    }
                }
            }
        }
        let journal = &self.h.journal;
        for i in [J_NEW_ENTRY, J_OLD_ENTRY] {
            let w = journal[i].load(Relaxed);
            if w != 0 && seen.insert(w) {
                dead.push(w);
            }
        }
        let mut dead_tables = Vec::new();
        for i in [J_NEW_TABLE, J_OLD_TABLE] {
            let w = journal[i].load(Relaxed);
            if w != 0 && w != cur_word && seen.insert(w) {
                dead_tables.push(Table::open(self.space, w)?);
            }
        }
        // Entries of dead tables that are not live (a cleared table's).
        for t in &dead_tables {
            self.free_table_entries(t, &mut seen)?;
        }
        dead.extend(dead_tables.iter().map(|t| t.b.word()));
        free_unlinked(self.space, &dead, || {
            beyond.iter().for_each(|s| s.store(0, Relaxed));
            journal.iter().for_each(|j| j.store(0, Relaxed));
        })?;
        if let Some(t) = &cur {
            for s in 0..t.n_idx {
                t.idx(s)?.store(SLOT_EMPTY, Relaxed);
            }
            let used = t.used()?;
            for (j, e) in &entries {
                match self.probe(t, used, &e.key()?, e.hash)? {
                    Probe::Absent { slot } => t.idx(slot)?.store((j + 2) as u32, Relaxed),
                    Probe::Found { .. } => {
                        return Err(corrupted(format!("dict entry {:#x} repeats a key", e.b.word())));
                    }
                }
            }
        }
        self.h.len.store(entries.len() as u64, Relaxed);
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::space::alloc::block_size;
    use crate::test_support::XorShift;
    use crate::space::Segment;
    use crate::status::{WEFT_CORRUPTED, WEFT_INVALID_ARGUMENT, WEFT_NOT_RECOVERABLE, WEFT_TIMEOUT};
    use crate::test_support::{fork_child, wait_child};

    const NEVER: Deadline = Deadline::Never;

    pub(crate) fn new_space(size: usize) -> Space {
        Space::format(Segment::anonymous(size).unwrap()).unwrap()
    }

    /// The allocator's state: `next` and the length of every free list. Two equal states
    /// around a piece of work that carved nothing (same `next`) mean every block it allocated
    /// was given back exactly once: a leak shortens a list, a double free lengthens one.
    pub(crate) fn free_state(space: &Space) -> (u64, Vec<u64>) {
        let _g = space.lock().unwrap();
        let next = space.next().unwrap();
        let counts = (0..SIZE_CLASSES)
            .map(|k| {
                let mut off = space.header().free[k].load(Relaxed);
                let mut n = 0;
                while off != 0 {
                    // SAFETY: a free block's link word, 8-aligned, checked by `ptr`.
                    off = unsafe { (*(space.ptr(off, 8).unwrap() as *const AtomicU64)).load(Relaxed) };
                    n += 1;
                    assert!(n < 1 << 24, "free list cycle");
                }
                n
            })
            .collect();
        (next, counts)
    }

    /// Fills the free lists of classes 0 to 6 (64 B to 4 KiB) with `n` blocks each, so that the
    /// small allocations of a test come from the lists and never move `next`.
    pub(crate) fn prewarm(space: &Space, n: usize) {
        for k in 0..=6 {
            let blocks: Vec<u64> = (0..n).map(|_| space.alloc(block_size(k), 64).unwrap()).collect();
            for b in blocks {
                space.free(b, block_size(k), 64).unwrap();
            }
        }
    }

    fn kv(i: u64) -> (Vec<u8>, Vec<u8>) {
        (format!("key-{i}").into_bytes(), format!("value-{i}-{}", "x".repeat((i % 50) as usize)).into_bytes())
    }

    #[test]
    fn geometry_fits_every_table_class() {
        for k in MIN_TABLE_CLASS..=MAX_TABLE_CLASS {
            let (n_idx, n_items, items_at) = geometry(k);
            assert!(items_at + 8 * n_items <= block_size(k), "class {k}");
            assert!(n_items >= 1 && n_items * 3 <= n_idx * 2, "class {k}");
            assert!(n_items + 2 <= u64::from(u32::MAX), "class {k}");
        }
        assert!(class_of(100, 64).is_some());
    }

    #[test]
    fn siphash_matches_the_reference() {
        // The SipHash paper's test vector (SipHash-2-4, key 00..0f, message 00..0e) checks the
        // shared code; the 1-3 variant differs only in the round counts.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(siphash::<2, 4>(k0, k1, &msg), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash13(k0, k1, b"a"), siphash13(k0, k1, b"a"));
        assert_ne!(siphash13(k0, k1, b"a"), siphash13(k0, k1, b"b"));
        assert_ne!(siphash13(k0, k1, b"a"), siphash13(k0 + 1, k1, b"a"));
        assert_ne!(siphash13(k0, k1, b"12345678"), siphash13(k0, k1, b"12345678\0"));
    }

    #[test]
    fn python_dict_semantics() {
        let space = new_space(1 << 20);
        let (d, r) = SharedDict::create(&space, Some("dict")).unwrap();
        assert_eq!(d.len(NEVER).unwrap(), 0);
        assert!(d.is_empty(NEVER).unwrap());
        assert_eq!(d.get(b"a", NEVER).unwrap(), None);
        assert_eq!(d.delete(b"a", NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        assert_eq!(d.pop(b"a", NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        assert_eq!(d.pop_item(NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        d.set(b"a", b"1", NEVER).unwrap();
        d.set(b"b", b"2", NEVER).unwrap();
        d.set(b"", b"empty key", NEVER).unwrap();
        d.set(b"empty value", b"", NEVER).unwrap();
        assert_eq!(d.get(b"a", NEVER).unwrap().unwrap(), b"1");
        assert_eq!(d.get(b"", NEVER).unwrap().unwrap(), b"empty key");
        assert_eq!(d.get(b"empty value", NEVER).unwrap().unwrap(), b"");
        assert!(d.contains(b"b", NEVER).unwrap());
        assert!(!d.contains(b"c", NEVER).unwrap());
        // Replacing keeps the order; delete + insert moves to the end.
        d.set(b"a", b"one", NEVER).unwrap();
        assert_eq!(d.keys(NEVER).unwrap(), [&b"a"[..], b"b", b"", b"empty value"]);
        d.delete(b"b", NEVER).unwrap();
        d.set(b"b", b"two", NEVER).unwrap();
        assert_eq!(
            d.items(NEVER).unwrap(),
            [
                (b"a".to_vec(), b"one".to_vec()),
                (b"".to_vec(), b"empty key".to_vec()),
                (b"empty value".to_vec(), b"".to_vec()),
                (b"b".to_vec(), b"two".to_vec()),
            ]
        );
        assert_eq!(d.values(NEVER).unwrap()[0], b"one");
        assert_eq!(d.set_default(b"a", b"zzz", NEVER).unwrap().unwrap(), b"one");
        assert_eq!(d.set_default(b"c", b"3", NEVER).unwrap(), None);
        assert_eq!(d.get(b"c", NEVER).unwrap().unwrap(), b"3");
        assert_eq!(d.pop(b"c", NEVER).unwrap(), b"3");
        assert_eq!(d.pop_item(NEVER).unwrap(), (b"b".to_vec(), b"two".to_vec()));
        assert_eq!(d.len(NEVER).unwrap(), 3);
        let mut buf = [0u8; 2];
        assert_eq!(d.get_into(b"a", &mut buf, NEVER).unwrap(), 3, "too small: length only");
        assert_eq!(buf, [0, 0]);
        let mut buf = [0u8; 8];
        assert_eq!(d.get_into(b"a", &mut buf, NEVER).unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
        assert_eq!(d.get_into(b"zz", &mut buf, NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        // Limits.
        let big = vec![0u8; MAX_ITEM + 1];
        assert_eq!(d.set(&big, b"", NEVER).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        assert_eq!(d.set(b"k", &big, NEVER).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        assert_eq!(d.set(b"k", &vec![1u8; 2 << 20], NEVER).unwrap_err().code, WEFT_NO_MEMORY);
        assert_eq!(d.len(NEVER).unwrap(), 3, "a failed set changes nothing");
        // Lock timeouts.
        d.h.lock.acquire(NEVER, Interrupt::Uninterruptible).unwrap();
        assert_eq!(d.get(b"a", Deadline::from_timeout_ns(1_000_000)).unwrap_err().code, WEFT_TIMEOUT);
        d.h.lock.release().unwrap();
        // Another view of the same object, and kind checks.
        let again = SharedDict::open(&space, &space.open_named("dict", Some(KIND_DICT)).unwrap()).unwrap();
        assert_eq!(again.get(b"a", NEVER).unwrap().unwrap(), b"one");
        let other = space.create_object(crate::space::object::KIND_LOCK, 16, None, &mut |_| Ok(())).unwrap();
        assert_eq!(SharedDict::open(&space, &other).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        d.clear(NEVER).unwrap();
        assert!(d.is_empty(NEVER).unwrap());
        assert_eq!(d.keys(NEVER).unwrap(), Vec::<Vec<u8>>::new());
        space.release(&r).unwrap();
    }

    #[test]
    fn thousands_of_keys_resize_and_free_everything() {
        let space = new_space(16 << 20);
        let (d, _r) = SharedDict::create(&space, None).unwrap();
        let n = 5000;
        // Run 1 carves the blocks; run 2 must find them all on the free lists again (so carve
        // nothing) and give them all back again.
        let run = |d: &SharedDict| {
            for i in 0..n {
                let (k, v) = kv(i);
                d.set(&k, &v, NEVER).unwrap();
            }
            for i in (0..n).filter(|i| i % 10 != 0) {
                d.delete(&kv(i).0, NEVER).unwrap();
            }
            d.clear(NEVER).unwrap();
        };
        run(&d);
        let base = free_state(&space);
        run(&d);
        assert_eq!(free_state(&space), base, "clear gives back every block, exactly once");
        for i in 0..n {
            let (k, v) = kv(i);
            d.set(&k, &v, NEVER).unwrap();
        }
        assert_eq!(d.len(NEVER).unwrap(), n as usize);
        for i in 0..n {
            let (k, v) = kv(i);
            assert_eq!(d.get(&k, NEVER).unwrap().unwrap(), v, "{i}");
        }
        // Insertion order survives resizes.
        let keys = d.keys(NEVER).unwrap();
        assert_eq!(keys.len(), n as usize);
        assert!(keys.iter().enumerate().all(|(i, k)| *k == kv(i as u64).0));
        // Delete most; the table shrinks on the next resize; the rest is intact.
        for i in (0..n).filter(|i| i % 10 != 0) {
            d.delete(&kv(i).0, NEVER).unwrap();
        }
        for i in n..n + 2000 {
            let (k, v) = kv(i);
            d.set(&k, &v, NEVER).unwrap();
        }
        assert_eq!(d.len(NEVER).unwrap(), (n / 10 + 2000) as usize);
        for i in (0..n + 2000).step_by(7) {
            let (k, v) = kv(i);
            let want = (i >= n || i % 10 == 0).then_some(v);
            assert_eq!(d.get(&k, NEVER).unwrap(), want, "{i}");
        }
        d.clear(NEVER).unwrap();
        assert_eq!(free_state(&space), base, "clear gives back every block");
    }

    #[test]
    fn two_processes_update_concurrently() {
        let space = new_space(16 << 20);
        let (d, _r) = SharedDict::create(&space, None).unwrap();
        let work = |who: &str| -> Result<()> {
            for i in 0..1500u32 {
                d.set(format!("{who}{i}").as_bytes(), &i.to_le_bytes(), NEVER)?;
                d.set(b"last", who.as_bytes(), NEVER)?;
                if i % 3 == 0 {
                    d.delete(format!("{who}{}", i / 2).as_bytes(), NEVER)?;
                }
            }
            Ok(())
        };
        let pid = fork_child(|| work("child-").is_ok());
        work("parent-").unwrap();
        let st = wait_child(pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
        let mut want = std::collections::BTreeMap::new();
        for who in ["child-", "parent-"] {
            for i in 0..1500u32 {
                want.insert(format!("{who}{i}").into_bytes(), i.to_le_bytes().to_vec());
                if i % 3 == 0 {
                    want.remove(format!("{who}{}", i / 2).as_bytes());
                }
            }
        }
        let last = d.pop(b"last", NEVER).unwrap();
        assert!(last == b"child-" || last == b"parent-");
        let got: std::collections::BTreeMap<_, _> = d.items(NEVER).unwrap().into_iter().collect();
        assert_eq!(got, want);
        assert_eq!(d.len(NEVER).unwrap(), want.len());
    }

    /// Runs `op` in children killed at step 1, 2, ... until one completes; after each, checks
    /// in the parent that the dict holds the state before or after `op` (never anything
    /// else), that len is right and that clearing the dict gives back every block. Returns
    /// how many steps the update has.
    fn crash_at_every_step(
        setup: &dyn Fn(&SharedDict),
        op: &dyn Fn(&SharedDict) -> Result<()>,
    ) -> u32 {
        let snapshot = |d: &SharedDict| -> Vec<(Vec<u8>, Vec<u8>)> { d.items(NEVER).unwrap() };
        // The expected states, from a run without crash.
        let (before, after) = {
            let space = new_space(4 << 20);
            let (d, _r) = SharedDict::create(&space, None).unwrap();
            setup(&d);
            let before = snapshot(&d);
            op(&d).unwrap();
            (before, snapshot(&d))
        };
        assert_ne!(before, after);
        let (mut saw_new, mut crashed_old, mut crashed_new) = (false, false, false);
        for n in 1.. {
            let space = new_space(4 << 20);
            let (d, _r) = SharedDict::create(&space, None).unwrap();
            prewarm(&space, 64);
            let base = free_state(&space);
            setup(&d);
            let pid = fork_child(|| {
                crash::arm(n);
                op(&d).is_ok()
            });
            let st = wait_child(pid);
            let crashed = libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL;
            assert!(crashed || (libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0), "step {n}: status {st:#x}");
            if crashed {
                assert!(d.h.lock.locked(), "step {n}: the child died holding the dict's lock");
            }
            // The first call recovers the lock internally and succeeds.
            let now = snapshot(&d);
            if now == after {
                saw_new = true;
                crashed_new |= crashed;
            } else {
                crashed_old = true;
                assert_eq!(now, before, "step {n}: neither the old nor the new state");
                assert!(!saw_new, "step {n}: old state after the new one was committed");
            }
            assert!(!d.h.lock.locked());
            assert_eq!(d.len(NEVER).unwrap(), now.len(), "step {n}");
            for (k, v) in &now {
                assert_eq!(d.get(k, NEVER).unwrap().as_ref(), Some(v), "step {n}: index rebuilt");
            }
            // Still fully usable.
            d.set(b"after-crash", b"ok", NEVER).unwrap();
            d.delete(b"after-crash", NEVER).unwrap();
            d.clear(NEVER).unwrap();
            assert_eq!(free_state(&space), base, "step {n}: blocks leaked or freed twice");
            if !crashed {
                assert_eq!(now, after);
                assert!(crashed_old && crashed_new, "crashes both before and after the commit");
                return n - 1;
            }
        }
        unreachable!()
    }

    fn fill(n: u64) -> impl Fn(&SharedDict) {
        move |d: &SharedDict| {
            for i in 0..n {
                let (k, v) = kv(i);
                d.set(&k, &v, NEVER).unwrap();
            }
        }
    }

    /// Number of keys that fills the first table exactly (the next insert resizes).
    fn first_table_items() -> u64 {
        geometry(MIN_TABLE_CLASS).1
    }

    #[test]
    fn killed_in_the_middle_of_set_insert() {
        let steps = crash_at_every_step(&fill(5), &|d| d.set(b"new", b"value", NEVER));
        assert!(steps >= 2, "{steps}");
    }

    #[test]
    fn killed_in_the_middle_of_set_replace() {
        let steps = crash_at_every_step(&fill(5), &|d| d.set(&kv(2).0, b"replaced", NEVER));
        assert!(steps >= 3, "{steps}");
    }

    #[test]
    fn killed_in_the_middle_of_delete_and_pop() {
        let steps = crash_at_every_step(&fill(5), &|d| d.delete(&kv(3).0, NEVER));
        assert!(steps >= 2, "{steps}");
        crash_at_every_step(&fill(5), &|d| d.pop(&kv(0).0, NEVER).map(|_| ()));
        crash_at_every_step(&fill(5), &|d| d.pop_item(NEVER).map(|_| ()));
    }

    #[test]
    fn killed_in_the_middle_of_a_resize() {
        let n = first_table_items();
        let steps = crash_at_every_step(&fill(n), &|d| d.set(b"one more", b"resize", NEVER));
        assert!(steps >= 5, "resize steps and insert steps: {steps}");
        // The very first insert allocates the first table.
        crash_at_every_step(&|_| {}, &|d| d.set(b"first", b"", NEVER));
        // A resize that compacts deleted items.
        let compact = move |d: &SharedDict| {
            fill(n)(d);
            for i in 0..n / 2 {
                d.delete(&kv(i).0, NEVER).unwrap();
            }
        };
        crash_at_every_step(&compact, &|d| d.set(b"one more", b"compact", NEVER));
    }

    #[test]
    fn killed_in_the_middle_of_clear() {
        let steps = crash_at_every_step(&fill(30), &|d| d.clear(NEVER));
        assert!(steps >= 2, "{steps}");
    }

    #[test]
    fn killed_during_recovery_then_recovered() {
        let space = new_space(4 << 20);
        let (d, _r) = SharedDict::create(&space, None).unwrap();
        prewarm(&space, 64);
        let base = free_state(&space);
        fill(30)(&d);
        // Killed in clear right after the commit: the table and its entries are unreachable.
        let pid = fork_child(|| {
            crash::arm(2);
            d.clear(NEVER).is_ok()
        });
        assert!(libc::WIFSIGNALED(wait_child(pid)));
        // The next holder dies in the middle of the recovery (after freeing the entries).
        let pid = fork_child(|| {
            crash::arm(1);
            d.len(NEVER).is_ok()
        });
        assert!(libc::WIFSIGNALED(wait_child(pid)));
        assert!(d.h.lock.locked());
        assert_eq!(d.len(NEVER).unwrap(), 0);
        assert_eq!(free_state(&space), base, "nothing leaked, nothing freed twice");
        d.set(b"k", b"v", NEVER).unwrap();
        assert_eq!(d.items(NEVER).unwrap(), [(b"k".to_vec(), b"v".to_vec())]);
    }

    /// Damages `d` at random: header (lock spared), table or entries.
    fn damage(space: &Space, d: &SharedDict, rng: &mut XorShift) {
        let poke = |p: *mut u8, len: u64, rng: &mut XorShift| {
            for _ in 0..1 + rng.next() % 4 {
                let i = rng.next() % len;
                // SAFETY: i < len bytes of a checked range; the test is the only user.
                unsafe { *p.add(i as usize) = rng.next() as u8 };
            }
        };
        let table = d.table().ok().flatten().filter(|(_, used)| *used > 0);
        match (rng.next() % 4, table) {
            (1, Some((t, _))) => poke(t.b.bytes(0, t.b.size()).unwrap(), t.b.size(), rng),
            (2, Some((t, used))) => {
                // Whole words: offsets and index values, including copies of live words.
                for _ in 0..1 + rng.next() % 3 {
                    let v = match rng.next() % 3 {
                        0 => rng.next(),
                        1 => rng.next() % (used + 3),
                        _ => t.item(rng.next() % used).unwrap().load(Relaxed),
                    };
                    if rng.next() % 2 == 0 {
                        t.idx(rng.next() % t.n_idx).unwrap().store(v as u32, Relaxed);
                    } else {
                        t.item(rng.next() % t.n_items).unwrap().store(v, Relaxed);
                    }
                }
            }
            (3, Some((t, used))) => {
                let w = t.item(rng.next() % used).unwrap().load(Relaxed);
                if let Ok(b) = Block::open(space, w, "e") {
                    poke(b.bytes(0, 16).unwrap(), 16, rng);
                }
            }
            _ => {
                let p = space.ptr(d.payload + 16, SharedDict::payload_size() - 16).unwrap();
                poke(p, SharedDict::payload_size() - 16, rng);
            }
        }
    }

    #[test]
    fn garbage_gives_corrupted_never_a_crash() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let ok_codes = [WEFT_CORRUPTED, WEFT_NOT_FOUND, WEFT_NO_MEMORY, WEFT_NOT_RECOVERABLE, WEFT_TIMEOUT];
        let deadline = || Deadline::from_timeout_ns(2_000_000_000);
        let mut detected = 0;
        for iter in 0..300 {
            let space = new_space(1 << 20);
            let (d, _r) = SharedDict::create(&space, None).unwrap();
            fill(40)(&d);
            for _ in 0..1 + rng.next() % 3 {
                damage(&space, &d, &mut rng);
            }
            let check = |r: Result<()>, what: &str| match r {
                Ok(()) => false,
                Err(e) => {
                    assert!(ok_codes.contains(&e.code), "iteration {iter}, {what}: {e:?}");
                    e.code == WEFT_CORRUPTED
                }
            };
            let mut bad = false;
            if iter % 3 == 0 {
                // Recovery's validation on the garbage, as after a holder's death.
                match d.lock(deadline()) {
                    Ok(_g) => bad |= check(d.repair(), "repair"),
                    Err(e) => bad |= check(Err(e), "lock"),
                }
            }
            for i in 0..45 {
                let (k, v) = kv(i);
                bad |= check(d.get(&k, deadline()).map(|_| ()), "get");
                if i % 5 == 0 {
                    bad |= check(d.set(&k, &v, deadline()), "set");
                    bad |= check(d.delete(&kv(i + 1).0, deadline()), "delete");
                }
            }
            bad |= check(d.items(deadline()).map(|_| ()), "items");
            bad |= check(d.len(deadline()).map(|_| ()), "len");
            bad |= check(d.pop_item(deadline()).map(|_| ()), "pop_item");
            bad |= check(d.clear(deadline()), "clear");
            detected += usize::from(bad);
        }
        assert!(detected > 100, "most damage is detected: {detected}");
    }

    #[test]
    fn killed_holder_with_damaged_state_makes_the_dict_not_recoverable() {
        let space = new_space(1 << 20);
        let (d, _r) = SharedDict::create(&space, None).unwrap();
        fill(10)(&d);
        let pid = fork_child(|| {
            std::mem::forget(d.lock(NEVER));
            let (t, _) = d.table().unwrap().unwrap();
            t.used_word().unwrap().store(1 << 40, Relaxed);
            // SAFETY: dies holding the lock.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        assert!(libc::WIFSIGNALED(wait_child(pid)));
        assert_eq!(d.get(b"x", NEVER).unwrap_err().code, WEFT_CORRUPTED);
        assert_eq!(d.get(b"x", NEVER).unwrap_err().code, WEFT_NOT_RECOVERABLE);
    }
}
