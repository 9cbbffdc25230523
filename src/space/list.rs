//! [`SharedList`]: Python's `Manager().list()` for byte strings — a list living in a space,
//! usable by every process that maps the space, robust to any of them being killed in the
//! middle of an update.
//!
//! # Layout
//!
//! Blocks are named by block words (offset | size class, see `dict.rs`). The object's payload
//! (64 bytes, all atomics):
//!
//! | offset | field           | meaning                                                       |
//! | ------ | --------------- | ------------------------------------------------------------- |
//! | 0      | `lock`          | `RobustLock`: every access to the list takes it                |
//! | 16     | `magic` u32     | `b"wfls"`                                                     |
//! | 20     | `version` u32   | 1                                                             |
//! | 24     | `vector` u64    | block word of the vector, 0 while the list has none (empty)    |
//! | 32     | `journal` 4×u64 | update in progress: new item, old item, new vector, old vector |
//!
//! The vector (a block of class 1 or more) starts with `magic: u64` (`b"wflvec1\0"`) and
//! `len: u64`; from byte 64 on it holds `cap = (size - 64) / 8` item words, `items[0..len)`
//! being the list in order and every word past `len` 0. An item is an immutable block
//! `{len: u64, bytes}`.
//!
//! # Crash safety
//!
//! `vector` and the vector's `len` and `items[0..len)` are the truth. Every update changes it
//! with ONE store:
//!
//! - append / extend with room: each new item is allocated *into* `items[len + i]` (under the
//!   space's lock, so it is never unrecorded) and written; the commit stores the new `len` —
//!   an extend is all or nothing;
//! - set: the new item is allocated into `journal.new_item`, the old one recorded in
//!   `journal.old_item`; the commit stores the new word into `items[i]`;
//! - pop of the last item: the item is recorded in `journal.old_item`; the commit stores
//!   `len - 1`;
//! - insert, pop in the middle, append or extend without room: a new vector is allocated into
//!   `journal.new_vector` and filled (item words are copied, items are not; new items are
//!   allocated into it), the old vector recorded in `journal.old_vector` (and a popped item in
//!   `journal.old_item`); the commit stores the new vector's word into the header;
//! - clear: the vector is recorded in `journal.old_vector`; the commit stores 0 into `vector`.
//!
//! Unreachable blocks are then freed as in the dict: reference cleared first, block freed
//! next, under the space's lock (a death in between leaks that one block, never frees one
//! twice). Recovery, when taking the lock reports `WEFT_OWNER_DEAD`, validates the vector and
//! every live item (bounds, lengths, no word listed twice), frees every block the dead holder
//! left unreachable — journal words that are not live, nonzero words past `len`, a dead vector
//! with those of its item words that are not live — and marks the lock consistent; a state
//! that fails validation makes the list `WEFT_NOT_RECOVERABLE`, as for the dict. A failed
//! update runs the same recovery, so it has no effect.
//!
//! # Trust
//!
//! As for the dict: every word read from the segment is checked before use (block words, the
//! vector's class, magic and `len`, item lengths at most 1 GiB inside their block), loops are
//! bounded by the vector's size, garbage gives `WEFT_CORRUPTED`.

use super::alloc::block_size;
use super::dict::{
    acquire, alloc_recorded, check_item, class_for, copy_out, free_unlinked, step, Block, Held,
};
use super::layout::{corrupted, Space, SIZE_CLASSES};
use super::object::{ObjectRef, KIND_LIST, OBJECT_HEADER};
use crate::status::{Error, Result, WEFT_NOT_FOUND, WEFT_NO_MEMORY};
use crate::sync::robust::RobustLock;
use crate::time::Deadline;
use std::collections::HashSet;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

const LIST_MAGIC: u32 = u32::from_le_bytes(*b"wfls");
const LIST_VERSION: u32 = 1;
const VECTOR_MAGIC: u64 = u64::from_le_bytes(*b"wflvec1\0");
/// Bytes before a vector's items.
const VECTOR_HEAD: u64 = 64;
/// Bytes before an item's bytes.
const ITEM_HEAD: u64 = 8;
const MIN_VECTOR_CLASS: usize = 1;

const J_NEW_ITEM: usize = 0;
const J_OLD_ITEM: usize = 1;
const J_NEW_VECTOR: usize = 2;
const J_OLD_VECTOR: usize = 3;

/// The list's payload. All atomics.
#[repr(C)]
struct ListHeader {
    lock: RobustLock,
    magic: AtomicU32,
    version: AtomicU32,
    vector: AtomicU64,
    journal: [AtomicU64; 4],
}

// SAFETY: #[repr(C)], made only of atomics and a RobustLock (atomics), no pointers,
// alignment 8.
unsafe impl super::shared::SharedPod for ListHeader {}

const _: () = assert!(std::mem::size_of::<ListHeader>() == 64);

/// Item words a vector of class `k` holds.
fn capacity(k: usize) -> u64 {
    (block_size(k) - VECTOR_HEAD) / 8
}

/// The smallest vector class holding `n` items.
fn vector_class(n: u64) -> Result<usize> {
    (MIN_VECTOR_CLASS..SIZE_CLASSES)
        .find(|&k| capacity(k) >= n)
        .ok_or_else(|| Error::new(WEFT_NO_MEMORY, format!("a list cannot hold {n} items")))
}

/// A checked vector.
struct Vector<'s> {
    b: Block<'s>,
    cap: u64,
}

impl<'s> Vector<'s> {
    fn open(space: &'s Space, word: u64) -> Result<Vector<'s>> {
        let b = Block::open(space, word, "list vector")?;
        if b.class() < MIN_VECTOR_CLASS {
            return Err(corrupted(format!("list vector {word:#x}: class {} is too small", b.class())));
        }
        let magic = b.u64_at(0)?.load(Acquire);
        if magic != VECTOR_MAGIC {
            return Err(corrupted(format!("list vector {word:#x}: field `magic` is {magic:#018x}")));
        }
        Ok(Vector { cap: capacity(b.class()), b })
    }

    fn len_word(&self) -> Result<&'s AtomicU64> {
        self.b.u64_at(8)
    }

    fn len(&self) -> Result<u64> {
        let len = self.len_word()?.load(Relaxed);
        if len > self.cap {
            return Err(corrupted(format!(
                "list vector {:#x}: field `len` is {len}, above its capacity {}",
                self.b.word(),
                self.cap
            )));
        }
        Ok(len)
    }

    fn item(&self, j: u64) -> Result<&'s AtomicU64> {
        self.b.u64_at(VECTOR_HEAD + 8 * j)
    }

    /// The word of live item `j` (`j < len`), checked to name a block.
    fn live(&self, space: &Space, j: u64) -> Result<u64> {
        let w = self.item(j)?.load(Relaxed);
        if w == 0 {
            return Err(corrupted(format!("list vector {:#x}: item {j} is empty", self.b.word())));
        }
        Block::open(space, w, "list item")?;
        Ok(w)
    }
}

/// A checked item.
struct Item<'s> {
    b: Block<'s>,
    len: u64,
}

impl<'s> Item<'s> {
    fn open(space: &'s Space, word: u64) -> Result<Item<'s>> {
        let b = Block::open(space, word, "list item")?;
        let len = b.u64_at(0)?.load(Relaxed);
        if len > super::dict::MAX_ITEM as u64 || len > b.size() - ITEM_HEAD {
            return Err(corrupted(format!("list item {word:#x}: {len} bytes do not fit its {}-byte block", b.size())));
        }
        Ok(Item { b, len })
    }

    fn value(&self) -> Result<Vec<u8>> {
        let p = self.b.bytes(ITEM_HEAD, self.len)?;
        // SAFETY: `bytes` checked the range.
        Ok(unsafe { copy_out(p, self.len) })
    }
}

/// Python's index rule: negative indices count from the end; `None` when out of range.
fn index(i: i64, len: u64) -> Option<u64> {
    let i = if i < 0 { i128::from(i) + i128::from(len) } else { i128::from(i) };
    (0..i128::from(len)).contains(&i).then_some(i as u64)
}

/// Python's insert position: negative from the end, clamped to `0..=len`.
fn insert_position(i: i64, len: u64) -> u64 {
    let i = if i < 0 { i128::from(i) + i128::from(len) } else { i128::from(i) };
    i.clamp(0, i128::from(len)) as u64
}

/// Python's `Manager().list()` for byte items, in a space: a view of one list object (see the
/// module documentation for its layout and crash safety). Indices follow Python's rules:
/// negative ones count from the end; [`insert`](Self::insert) clamps.
///
/// The view borrows the [`Space`] and does not own a reference to the object: whoever holds
/// the object's reference keeps it alive while views are used, and calls
/// [`clear`](Self::clear) before dropping the last reference to give back every block the
/// list owns (the object layer frees only the payload).
///
/// Every operation takes the list's robust lock, waiting until `deadline` (`WEFT_WOULD_BLOCK`
/// for `Deadline::Now`, else `WEFT_TIMEOUT`; `WEFT_CANCELLED` when the calling weft thread is
/// asked to cancel). When the previous holder died, the operation repairs the list first (the
/// interrupted update is either complete or without effect) and proceeds. Every operation
/// can also fail with `WEFT_CORRUPTED` (the list or the space failed validation),
/// `WEFT_NOT_RECOVERABLE` (an earlier repair found it damaged) and the space lock's errors.
///
/// Thread safety: `Send + Sync`; any number of views in any threads of any processes may use
/// the same list concurrently.
#[derive(Clone, Copy)]
pub struct SharedList<'a> {
    space: &'a Space,
    h: &'a ListHeader,
    payload: u64,
}

// The documented thread safety.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SharedList<'static>>();
};

impl std::fmt::Debug for SharedList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedList").field("payload", &self.payload).finish_non_exhaustive()
    }
}

impl<'a> SharedList<'a> {
    /// Bytes of payload a list object needs (for `Space::create_object` with `KIND_LIST`).
    pub fn payload_size() -> u64 {
        std::mem::size_of::<ListHeader>() as u64
    }

    /// Writes an empty list into a fresh payload: for the `init` callback of
    /// `Space::create_object(KIND_LIST, SharedList::payload_size(), ...)`.
    ///
    /// # Safety
    /// `payload` must point to at least [`payload_size`](Self::payload_size) writable bytes,
    /// 8-aligned, that nobody else accesses while this runs (a payload not yet published).
    pub unsafe fn init(payload: *mut u8) {
        // SAFETY: by the contract, the pointer is valid, aligned and exclusively ours; every
        // field is written.
        unsafe {
            payload.cast::<ListHeader>().write(ListHeader {
                lock: RobustLock::new(),
                magic: AtomicU32::new(LIST_MAGIC),
                version: AtomicU32::new(LIST_VERSION),
                vector: AtomicU64::new(0),
                journal: Default::default(),
            })
        };
    }

    /// Creates an empty list object in `space`, optionally named `name`, and returns a view of
    /// it with the object's reference (held by the caller, to be released with
    /// `Space::release` after [`clear`](Self::clear)).
    ///
    /// Errors: those of `Space::create_object` (`WEFT_INVALID_ARGUMENT` for a bad name,
    /// `WEFT_EXISTS`, `WEFT_NO_MEMORY`, `WEFT_CORRUPTED`, the space lock's errors).
    /// Thread safety: callable from any thread of any process using the space.
    pub fn create(space: &'a Space, name: Option<&str>) -> Result<(SharedList<'a>, ObjectRef)> {
        let mut init = |p: *mut u8| {
            // SAFETY: create_object hands over a fresh, 64-aligned payload of payload_size()
            // bytes that no other process can reach yet.
            unsafe { Self::init(p) };
            Ok(())
        };
        space.create_viewed(KIND_LIST, Self::payload_size(), name, &mut init, Self::open)
    }

    /// A view of the list object `object` (a reference the caller holds).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` when the object is not a list; `WEFT_CORRUPTED` when its
    /// payload is too small or does not hold a list.
    /// Thread safety: callable from any thread.
    pub fn open(space: &'a Space, object: &ObjectRef) -> Result<SharedList<'a>> {
        let h = space.payload_as::<ListHeader>(object, KIND_LIST)?;
        let l = SharedList { space, h, payload: object.offset + OBJECT_HEADER };
        l.check_header()?;
        Ok(l)
    }

    fn check_header(&self) -> Result<()> {
        let (magic, version) = (self.h.magic.load(Relaxed), self.h.version.load(Relaxed));
        if magic != LIST_MAGIC || version != LIST_VERSION {
            return Err(corrupted(format!(
                "list at offset {}: fields `magic` {magic:#010x} / `version` {version} do not describe a list",
                self.payload
            )));
        }
        Ok(())
    }

    fn lock(&self, deadline: Deadline) -> Result<Held<'a>> {
        self.check_header()?;
        acquire(&self.h.lock, deadline, "list", || self.repair())
    }

    /// Runs an update; when it fails after it may have changed something, repairs.
    fn update<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let r = f();
        if let Err(e) = &r {
            if e.code != WEFT_NOT_FOUND {
                let _ = self.repair();
            }
        }
        r
    }

    /// The vector and its `len`, if any.
    fn vector(&self) -> Result<Option<(Vector<'a>, u64)>> {
        let w = self.h.vector.load(Acquire);
        if w == 0 {
            return Ok(None);
        }
        let v = Vector::open(self.space, w)?;
        let len = v.len()?;
        Ok(Some((v, len)))
    }

    /// The vector and the live item at Python index `i`.
    fn at(&self, i: i64, what: &'static str) -> Result<(Vector<'a>, u64, u64, Item<'a>)> {
        let out_of_range = || Error::new(WEFT_NOT_FOUND, what);
        let (v, len) = self.vector()?.ok_or_else(out_of_range)?;
        let j = index(i, len).ok_or_else(out_of_range)?;
        let w = v.live(self.space, j)?;
        let item = Item::open(self.space, w)?;
        Ok((v, len, j, item))
    }

    fn write_item(&self, w: u64, value: &[u8]) -> Result<()> {
        let b = Block::open(self.space, w, "new list item")?;
        b.u64_at(0)?.store(value.len() as u64, Relaxed);
        let p = b.bytes(ITEM_HEAD, value.len() as u64)?;
        // SAFETY: `bytes` checked the range; the block was just allocated and no reader
        // follows its word before the commit.
        unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), p, value.len()) };
        Ok(())
    }

    /// Allocates an item for `value` into the item word `slot` (which must be 0) and writes it.
    fn new_item_into(&self, slot: &AtomicU64, value: &[u8]) -> Result<()> {
        let k = class_for(ITEM_HEAD + value.len() as u64)?;
        if slot.load(Relaxed) != 0 {
            return Err(corrupted("list: an item word past the end is not empty".into()));
        }
        let w = alloc_recorded(self.space, k, |w| {
            slot.store(w, Relaxed);
            Ok(())
        })?;
        self.write_item(w, value)
    }

    /// Replaces the vector by a new one of `new_len` items filled by `fill` (which copies item
    /// words and allocates new items into it); `removed`, when not 0, is an item the new vector
    /// no longer holds (freed after the commit).
    fn swap(
        &self,
        old: Option<&Vector<'a>>,
        new_len: u64,
        removed: u64,
        fill: impl FnOnce(&Vector<'a>) -> Result<()>,
    ) -> Result<()> {
        let k = vector_class(new_len.saturating_add(new_len / 4))?;
        let journal = &self.h.journal;
        let nw = alloc_recorded(self.space, k, |w| {
            Block::open(self.space, w, "new list vector")?.u64_at(0)?.store(VECTOR_MAGIC, Release);
            journal[J_NEW_VECTOR].store(w, Relaxed);
            Ok(())
        })?;
        let nv = Vector::open(self.space, nw)?;
        fill(&nv)?;
        nv.len_word()?.store(new_len, Relaxed);
        step();
        let old_word = old.map_or(0, |v| v.b.word());
        journal[J_OLD_ITEM].store(removed, Relaxed);
        journal[J_OLD_VECTOR].store(old_word, Relaxed);
        step();
        self.h.vector.store(nw, Release); // commit
        step();
        free_unlinked(self.space, &[old_word, removed], || {
            journal[J_NEW_VECTOR].store(0, Relaxed);
            journal[J_OLD_VECTOR].store(0, Relaxed);
            journal[J_OLD_ITEM].store(0, Relaxed);
        })
    }

    /// Copies the live item words `from[src..src + n)` to `to[dst..)`.
    fn copy_words(&self, from: &Vector<'a>, src: u64, to: &Vector<'a>, dst: u64, n: u64) -> Result<()> {
        for i in 0..n {
            to.item(dst + i)?.store(from.live(self.space, src + i)?, Relaxed);
        }
        Ok(())
    }

    /// The number of items.
    ///
    /// Errors: the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn len(&self, deadline: Deadline) -> Result<usize> {
        let _g = self.lock(deadline)?;
        Ok(self.vector()?.map_or(0, |(_, len)| len as usize))
    }

    /// True when the list has no items.
    ///
    /// Errors: as [`len`](Self::len).
    /// Thread safety: see the type.
    pub fn is_empty(&self, deadline: Deadline) -> Result<bool> {
        Ok(self.len(deadline)? == 0)
    }

    /// The item at index `i` (`l[i]`).
    ///
    /// Errors: `WEFT_NOT_FOUND` when `i` is out of range (Python's IndexError); the lock's and
    /// validation errors.
    /// Thread safety: see the type.
    pub fn get(&self, i: i64, deadline: Deadline) -> Result<Vec<u8>> {
        let _g = self.lock(deadline)?;
        self.at(i, "list index out of range")?.3.value()
    }

    /// Copies the item at index `i` into `buf` when it fits, and returns its length either way
    /// (a caller whose buffer was too small retries with one that large).
    ///
    /// Errors: as [`get`](Self::get).
    /// Thread safety: see the type.
    pub fn get_into(&self, i: i64, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        let _g = self.lock(deadline)?;
        let item = self.at(i, "list index out of range")?.3;
        let n = item.len as usize;
        if n <= buf.len() {
            let p = item.b.bytes(ITEM_HEAD, item.len)?;
            // SAFETY: `bytes` checked that `n` bytes at `p` lie in the item's block; `buf` has
            // room for them; shared memory and `buf` cannot overlap.
            unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n) };
        }
        Ok(n)
    }

    /// All items in order (a snapshot, `list(l)`).
    ///
    /// Errors: the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn snapshot(&self, deadline: Deadline) -> Result<Vec<Vec<u8>>> {
        let _g = self.lock(deadline)?;
        let Some((v, len)) = self.vector()? else { return Ok(Vec::new()) };
        (0..len).map(|j| Item::open(self.space, v.live(self.space, j)?)?.value()).collect()
    }

    /// Appends `value` (`l.append(value)`).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for an item over 1 GiB; `WEFT_NO_MEMORY` when the space
    /// is full (the list is unchanged); the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn append(&self, value: &[u8], deadline: Deadline) -> Result<()> {
        self.extend(&[value], deadline)
    }

    /// Appends every item of `values`, all or nothing (`l.extend(values)`).
    ///
    /// Errors: as [`append`](Self::append); on any error no item was appended.
    /// Thread safety: see the type.
    pub fn extend(&self, values: &[&[u8]], deadline: Deadline) -> Result<()> {
        for v in values {
            check_item("list item", v.len())?;
        }
        let _g = self.lock(deadline)?;
        self.update(|| self.extend_locked(values))
    }

    fn extend_locked(&self, values: &[&[u8]]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let n = values.len() as u64;
        let cur = self.vector()?;
        let len = cur.as_ref().map_or(0, |(_, len)| *len);
        let new_len = len.checked_add(n).ok_or_else(|| Error::new(WEFT_NO_MEMORY, "list too long"))?;
        match &cur {
            Some((v, _)) if new_len <= v.cap => {
                for (i, value) in (len..).zip(values) {
                    self.new_item_into(v.item(i)?, value)?;
                    step();
                }
                v.len_word()?.store(new_len, Release); // commit
                step();
                Ok(())
            }
            _ => self.swap(cur.as_ref().map(|(v, _)| v), new_len, 0, |nv| {
                if let Some((v, _)) = &cur {
                    self.copy_words(v, 0, nv, 0, len)?;
                }
                for (i, value) in (len..).zip(values) {
                    self.new_item_into(nv.item(i)?, value)?;
                    step();
                }
                Ok(())
            }),
        }
    }

    /// Inserts `value` before index `i` (`l.insert(i, value)`): negative indices count from the
    /// end, and indices out of range insert at the start or the end, as in Python.
    ///
    /// Errors: as [`append`](Self::append).
    /// Thread safety: see the type.
    pub fn insert(&self, i: i64, value: &[u8], deadline: Deadline) -> Result<()> {
        check_item("list item", value.len())?;
        let _g = self.lock(deadline)?;
        self.update(|| {
            let cur = self.vector()?;
            let len = cur.as_ref().map_or(0, |(_, len)| *len);
            let pos = insert_position(i, len);
            let Some((v, _)) = &cur else { return self.extend_locked(&[value]) };
            if pos == len {
                return self.extend_locked(&[value]);
            }
            self.swap(Some(v), len + 1, 0, |nv| {
                self.copy_words(v, 0, nv, 0, pos)?;
                self.new_item_into(nv.item(pos)?, value)?;
                step();
                self.copy_words(v, pos, nv, pos + 1, len - pos)
            })
        })
    }

    /// Replaces the item at index `i` (`l[i] = value`).
    ///
    /// Errors: `WEFT_NOT_FOUND` when `i` is out of range; otherwise as
    /// [`append`](Self::append).
    /// Thread safety: see the type.
    pub fn set(&self, i: i64, value: &[u8], deadline: Deadline) -> Result<()> {
        check_item("list item", value.len())?;
        let _g = self.lock(deadline)?;
        self.update(|| {
            let (v, _, j, old) = self.at(i, "list assignment index out of range")?;
            let k = class_for(ITEM_HEAD + value.len() as u64)?;
            let journal = &self.h.journal;
            let w = alloc_recorded(self.space, k, |w| {
                journal[J_NEW_ITEM].store(w, Relaxed);
                Ok(())
            })?;
            self.write_item(w, value)?;
            step();
            journal[J_OLD_ITEM].store(old.b.word(), Relaxed);
            step();
            v.item(j)?.store(w, Release); // commit
            step();
            free_unlinked(self.space, &[old.b.word()], || {
                journal[J_NEW_ITEM].store(0, Relaxed);
                journal[J_OLD_ITEM].store(0, Relaxed);
            })
        })
    }

    /// Removes and returns the item at index `i` (`l.pop(i)`; `l.pop()` is `pop(-1)`).
    ///
    /// Errors: `WEFT_NOT_FOUND` when the list is empty or `i` is out of range; the lock's and
    /// validation errors.
    /// Thread safety: see the type.
    pub fn pop(&self, i: i64, deadline: Deadline) -> Result<Vec<u8>> {
        let _g = self.lock(deadline)?;
        self.update(|| {
            let (v, len, j, item) = self.at(i, "pop index out of range (or pop from an empty list)")?;
            let value = item.value()?;
            let w = item.b.word();
            if j + 1 == len {
                let journal = &self.h.journal;
                journal[J_OLD_ITEM].store(w, Relaxed);
                step();
                v.len_word()?.store(len - 1, Release); // commit
                step();
                let slot = v.item(j)?;
                free_unlinked(self.space, &[w], || {
                    slot.store(0, Relaxed);
                    journal[J_OLD_ITEM].store(0, Relaxed);
                })?;
            } else {
                self.swap(Some(&v), len - 1, w, |nv| {
                    self.copy_words(&v, 0, nv, 0, j)?;
                    self.copy_words(&v, j + 1, nv, j, len - j - 1)
                })?;
            }
            Ok(value)
        })
    }

    /// Removes every item and gives every block the list owns back to the space
    /// (`l.clear()`). Call it before the last reference to the object is released.
    ///
    /// Errors: the lock's and validation errors.
    /// Thread safety: see the type.
    pub fn clear(&self, deadline: Deadline) -> Result<()> {
        let _g = self.lock(deadline)?;
        self.update(|| {
            let Some((v, _)) = self.vector()? else { return Ok(()) };
            let journal = &self.h.journal;
            journal[J_OLD_VECTOR].store(v.b.word(), Relaxed);
            step();
            self.h.vector.store(0, Release); // commit
            step();
            self.free_vector_items(&v, &mut HashSet::new())?;
            free_unlinked(self.space, &[v.b.word()], || journal[J_OLD_VECTOR].store(0, Relaxed))
        })
    }

    /// Frees every item word of the dead vector `v` that is not in `skip` (adding each to it),
    /// zeroing the word first; in batches, one space-lock hold each.
    fn free_vector_items(&self, v: &Vector<'a>, skip: &mut HashSet<u64>) -> Result<()> {
        const BATCH: u64 = 1024;
        let mut j = 0;
        while j < v.cap {
            let end = (j + BATCH).min(v.cap);
            let mut words = Vec::new();
            let mut slots = Vec::new();
            for i in j..end {
                let slot = v.item(i)?;
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

    /// Recovery (lock held): validates, frees what an interrupted update left unreachable.
    fn repair(&self) -> Result<()> {
        self.check_header()?;
        let cur_word = self.h.vector.load(Acquire);
        let mut seen = HashSet::new();
        let mut dead = Vec::new();
        let mut beyond = Vec::new();
        if cur_word != 0 {
            let v = Vector::open(self.space, cur_word)?;
            let len = v.len()?;
            for j in 0..len {
                let w = v.live(self.space, j)?;
                Item::open(self.space, w)?;
                if !seen.insert(w) {
                    return Err(corrupted(format!("list item {w:#x} is listed twice")));
                }
            }
            for j in len..v.cap {
                let slot = v.item(j)?;
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
        for i in [J_NEW_ITEM, J_OLD_ITEM] {
            let w = journal[i].load(Relaxed);
            if w != 0 && seen.insert(w) {
                dead.push(w);
            }
        }
        let mut dead_vectors = Vec::new();
        for i in [J_NEW_VECTOR, J_OLD_VECTOR] {
            let w = journal[i].load(Relaxed);
            if w != 0 && w != cur_word && seen.insert(w) {
                dead_vectors.push(Vector::open(self.space, w)?);
            }
        }
        for v in &dead_vectors {
            self.free_vector_items(v, &mut seen)?;
        }
        dead.extend(dead_vectors.iter().map(|v| v.b.word()));
        free_unlinked(self.space, &dead, || {
            beyond.iter().for_each(|s| s.store(0, Relaxed));
            journal.iter().for_each(|j| j.store(0, Relaxed));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::futex::Interrupt;
    use crate::space::dict::crash;
    use crate::space::dict::tests::{free_state, new_space, prewarm};
    use crate::test_support::XorShift;
    use crate::status::{WEFT_CORRUPTED, WEFT_INVALID_ARGUMENT, WEFT_NOT_RECOVERABLE, WEFT_TIMEOUT};
    use crate::test_support::{fork_child, wait_child};

    const NEVER: Deadline = Deadline::Never;

    fn item(i: u64) -> Vec<u8> {
        format!("item-{i}-{}", "y".repeat((i % 70) as usize)).into_bytes()
    }

    fn fill(n: u64) -> impl Fn(&SharedList) {
        move |l: &SharedList| {
            for i in 0..n {
                l.append(&item(i), NEVER).unwrap();
            }
        }
    }

    #[test]
    fn python_list_semantics() {
        let space = new_space(1 << 20);
        let (l, r) = SharedList::create(&space, Some("list")).unwrap();
        assert_eq!(l.len(NEVER).unwrap(), 0);
        assert!(l.is_empty(NEVER).unwrap());
        assert_eq!(l.get(0, NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        assert_eq!(l.pop(-1, NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        assert_eq!(l.set(0, b"x", NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        l.append(b"a", NEVER).unwrap();
        l.append(b"", NEVER).unwrap();
        l.extend(&[b"c", b"d"], NEVER).unwrap();
        l.extend(&[], NEVER).unwrap();
        assert_eq!(l.snapshot(NEVER).unwrap(), [&b"a"[..], b"", b"c", b"d"]);
        assert_eq!(l.get(-1, NEVER).unwrap(), b"d");
        assert_eq!(l.get(-4, NEVER).unwrap(), b"a");
        assert_eq!(l.get(-5, NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        assert_eq!(l.get(4, NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        assert_eq!(l.get(i64::MIN, NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        l.set(1, b"b", NEVER).unwrap();
        l.set(-1, b"D", NEVER).unwrap();
        // insert: front, middle, negative, clamped both ways.
        l.insert(0, b"start", NEVER).unwrap();
        l.insert(2, b"mid", NEVER).unwrap();
        l.insert(-1, b"before-last", NEVER).unwrap();
        l.insert(100, b"end", NEVER).unwrap();
        l.insert(-100, b"front", NEVER).unwrap();
        assert_eq!(
            l.snapshot(NEVER).unwrap(),
            [&b"front"[..], b"start", b"a", b"mid", b"b", b"c", b"before-last", b"D", b"end"]
        );
        assert_eq!(l.pop(-1, NEVER).unwrap(), b"end");
        assert_eq!(l.pop(0, NEVER).unwrap(), b"front");
        assert_eq!(l.pop(2, NEVER).unwrap(), b"mid");
        assert_eq!(l.pop(-2, NEVER).unwrap(), b"before-last");
        assert_eq!(l.pop(9, NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        assert_eq!(l.snapshot(NEVER).unwrap(), [&b"start"[..], b"a", b"b", b"c", b"D"]);
        assert_eq!(l.len(NEVER).unwrap(), 5);
        let mut buf = [0u8; 3];
        assert_eq!(l.get_into(0, &mut buf, NEVER).unwrap(), 5);
        assert_eq!(buf, [0; 3]);
        assert_eq!(l.get_into(1, &mut buf, NEVER).unwrap(), 1);
        assert_eq!(buf[0], b'a');
        assert_eq!(l.get_into(7, &mut buf, NEVER).unwrap_err().code, WEFT_NOT_FOUND);
        // Limits; a failed extend appends nothing.
        let big = vec![0u8; super::super::dict::MAX_ITEM + 1];
        assert_eq!(l.append(&big, NEVER).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        let huge = vec![1u8; 400 << 10];
        assert_eq!(l.extend(&[b"x", &huge, &huge, &huge], NEVER).unwrap_err().code, WEFT_NO_MEMORY);
        assert_eq!(l.len(NEVER).unwrap(), 5);
        // Lock timeouts.
        l.h.lock.acquire(NEVER, Interrupt::Uninterruptible).unwrap();
        assert_eq!(l.len(Deadline::from_timeout_ns(1_000_000)).unwrap_err().code, WEFT_TIMEOUT);
        l.h.lock.release().unwrap();
        let again = SharedList::open(&space, &space.open_named("list", Some(KIND_LIST)).unwrap()).unwrap();
        assert_eq!(again.get(0, NEVER).unwrap(), b"start");
        let other = space.create_object(crate::space::object::KIND_LOCK, 16, None, &mut |_| Ok(())).unwrap();
        assert_eq!(SharedList::open(&space, &other).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        l.clear(NEVER).unwrap();
        assert!(l.is_empty(NEVER).unwrap());
        space.release(&r).unwrap();
    }

    #[test]
    fn thousands_of_items_and_every_block_given_back() {
        let space = new_space(16 << 20);
        let (l, _r) = SharedList::create(&space, None).unwrap();
        let n = 4000;
        let run = |l: &SharedList| {
            fill(n)(l);
            for i in 0..100 {
                l.insert(i * 7, b"ins", NEVER).unwrap();
            }
            for i in 0..100 {
                assert_eq!(l.pop(i * 6, NEVER).unwrap(), b"ins");
            }
            for i in 0..50 {
                l.set(i as i64 * 3, &item(i * 3), NEVER).unwrap();
            }
            let values: Vec<Vec<u8>> = (n..n + 500).map(item).collect();
            let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            l.extend(&refs, NEVER).unwrap();
            let all = l.snapshot(NEVER).unwrap();
            assert_eq!(all.len() as u64, n + 500);
            assert!(all.iter().enumerate().all(|(i, v)| *v == item(i as u64)));
            for i in (0..n + 500).rev().step_by(3) {
                assert_eq!(l.pop(-1, NEVER).unwrap(), item(i), "{i}");
                if i >= 2 {
                    l.pop(-1, NEVER).unwrap();
                    l.pop(-1, NEVER).unwrap();
                }
            }
            l.clear(NEVER).unwrap();
        };
        run(&l);
        let base = free_state(&space);
        run(&l);
        assert_eq!(free_state(&space), base, "clear gives back every block, exactly once");
    }

    #[test]
    fn two_processes_append_and_insert_concurrently() {
        let space = new_space(16 << 20);
        let (l, _r) = SharedList::create(&space, None).unwrap();
        let work = |who: &str| -> Result<()> {
            for i in 0..1500u32 {
                l.append(format!("{who}{i}").as_bytes(), NEVER)?;
                if i % 10 == 0 {
                    l.insert(0, format!("front-{who}{i}").as_bytes(), NEVER)?;
                }
            }
            Ok(())
        };
        let pid = fork_child(|| work("child-").is_ok());
        work("parent-").unwrap();
        let st = wait_child(pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
        let all: Vec<String> = l.snapshot(NEVER).unwrap().into_iter().map(|v| String::from_utf8(v).unwrap()).collect();
        assert_eq!(all.len(), 2 * (1500 + 150));
        for who in ["child-", "parent-"] {
            let appended: Vec<&String> = all.iter().filter(|s| s.starts_with(who)).collect();
            let want: Vec<String> = (0..1500).map(|i| format!("{who}{i}")).collect();
            assert_eq!(appended, want.iter().collect::<Vec<_>>());
            let front: Vec<&String> = all.iter().filter(|s| s.starts_with(&format!("front-{who}"))).collect();
            // Each was inserted at the front: newest first.
            let want: Vec<String> = (0..150).rev().map(|i| format!("front-{who}{}", i * 10)).collect();
            assert_eq!(front, want.iter().collect::<Vec<_>>());
        }
        // Every front insert precedes every append of its writer that came after it.
        let pos = |s: &str| all.iter().position(|x| x == s).unwrap();
        assert!(pos("front-child-0") < pos("child-0"));
    }

    /// As the dict's: runs `op` in children killed at step 1, 2, ... until one completes and
    /// checks old-or-new state, len, recovery and exact block accounting after each.
    fn crash_at_every_step(setup: &dyn Fn(&SharedList), op: &dyn Fn(&SharedList) -> Result<()>) -> u32 {
        let (before, after) = {
            let space = new_space(4 << 20);
            let (l, _r) = SharedList::create(&space, None).unwrap();
            setup(&l);
            let before = l.snapshot(NEVER).unwrap();
            op(&l).unwrap();
            (before, l.snapshot(NEVER).unwrap())
        };
        assert_ne!(before, after);
        let (mut saw_new, mut crashed_old, mut crashed_new) = (false, false, false);
        for n in 1.. {
            let space = new_space(4 << 20);
            let (l, _r) = SharedList::create(&space, None).unwrap();
            prewarm(&space, 64);
            let base = free_state(&space);
            setup(&l);
            let pid = fork_child(|| {
                crash::arm(n);
                op(&l).is_ok()
            });
            let st = wait_child(pid);
            let crashed = libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL;
            assert!(crashed || (libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0), "step {n}: status {st:#x}");
            if crashed {
                assert!(l.h.lock.locked(), "step {n}: the child died holding the list's lock");
            }
            let now = l.snapshot(NEVER).unwrap();
            if now == after {
                saw_new = true;
                crashed_new |= crashed;
            } else {
                assert_eq!(now, before, "step {n}: neither the old nor the new state");
                assert!(!saw_new, "step {n}: old state after the new one was committed");
                crashed_old = true;
            }
            assert_eq!(l.len(NEVER).unwrap(), now.len(), "step {n}");
            l.append(b"after-crash", NEVER).unwrap();
            assert_eq!(l.pop(-1, NEVER).unwrap(), b"after-crash");
            l.clear(NEVER).unwrap();
            assert_eq!(free_state(&space), base, "step {n}: blocks leaked or freed twice");
            if !crashed {
                assert_eq!(now, after);
                assert!(crashed_old && crashed_new, "crashes both before and after the commit");
                return n - 1;
            }
        }
        unreachable!()
    }

    /// Items that fill the first vector exactly (the next append grows it).
    fn first_vector_items() -> u64 {
        capacity(vector_class(1).unwrap())
    }

    #[test]
    fn killed_in_the_middle_of_append() {
        assert!(crash_at_every_step(&fill(3), &|l| l.append(b"new", NEVER)) >= 2);
        // Growing: a new vector.
        let n = first_vector_items();
        assert!(crash_at_every_step(&fill(n), &|l| l.append(b"grow", NEVER)) >= 4);
        crash_at_every_step(&|_| {}, &|l| l.append(b"first", NEVER));
    }

    #[test]
    fn killed_in_the_middle_of_extend() {
        assert!(crash_at_every_step(&fill(2), &|l| l.extend(&[b"x", b"y", b"z"], NEVER)) >= 4);
        let n = first_vector_items();
        assert!(crash_at_every_step(&fill(n - 1), &|l| l.extend(&[b"x", b"y", b"z"], NEVER)) >= 6);
    }

    #[test]
    fn killed_in_the_middle_of_insert() {
        assert!(crash_at_every_step(&fill(5), &|l| l.insert(2, b"ins", NEVER)) >= 4);
        crash_at_every_step(&fill(5), &|l| l.insert(0, b"ins", NEVER));
        crash_at_every_step(&fill(5), &|l| l.insert(5, b"ins", NEVER));
    }

    #[test]
    fn killed_in_the_middle_of_pop_and_set() {
        assert!(crash_at_every_step(&fill(5), &|l| l.pop(-1, NEVER).map(|_| ())) >= 2);
        assert!(crash_at_every_step(&fill(5), &|l| l.pop(1, NEVER).map(|_| ())) >= 3);
        assert!(crash_at_every_step(&fill(5), &|l| l.set(3, b"replaced", NEVER)) >= 3);
    }

    #[test]
    fn killed_in_the_middle_of_clear() {
        assert!(crash_at_every_step(&fill(30), &|l| l.clear(NEVER)) >= 2);
    }

    #[test]
    fn garbage_gives_corrupted_never_a_crash() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let ok_codes = [WEFT_CORRUPTED, WEFT_NOT_FOUND, WEFT_NO_MEMORY, WEFT_NOT_RECOVERABLE, WEFT_TIMEOUT];
        let deadline = || Deadline::from_timeout_ns(2_000_000_000);
        let mut detected = 0;
        for iter in 0..300 {
            let space = new_space(1 << 20);
            let (l, _r) = SharedList::create(&space, None).unwrap();
            fill(40)(&l);
            let (v, len) = l.vector().unwrap().unwrap();
            for _ in 0..1 + rng.next() % 3 {
                match rng.next() % 4 {
                    0 => {
                        // The header, lock spared.
                        let p = space.ptr(l.payload + 16, 48).unwrap();
                        // SAFETY: inside the payload; the test is its only user.
                        unsafe { *p.add((rng.next() % 48) as usize) = rng.next() as u8 };
                    }
                    1 => {
                        let p = v.b.bytes(0, v.b.size()).unwrap();
                        // SAFETY: inside the vector's block.
                        unsafe { *p.add((rng.next() % 80) as usize) = rng.next() as u8 };
                    }
                    2 => {
                        let val = match rng.next() % 3 {
                            0 => rng.next(),
                            1 => rng.next() % 4096,
                            _ => v.item(rng.next() % len).unwrap().load(Relaxed),
                        };
                        v.item(rng.next() % v.cap).unwrap().store(val, Relaxed);
                    }
                    _ => {
                        let w = v.item(rng.next() % len).unwrap().load(Relaxed);
                        if let Ok(b) = Block::open(&space, w, "i") {
                            b.u64_at(0).unwrap().store(rng.next() >> (rng.next() % 64), Relaxed);
                        }
                    }
                }
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
                match l.lock(deadline()) {
                    Ok(_g) => bad |= check(l.repair(), "repair"),
                    Err(e) => bad |= check(Err(e), "lock"),
                }
            }
            for i in -45..45 {
                bad |= check(l.get(i, deadline()).map(|_| ()), "get");
            }
            bad |= check(l.snapshot(deadline()).map(|_| ()), "snapshot");
            bad |= check(l.set(3, b"s", deadline()), "set");
            bad |= check(l.insert(5, b"i", deadline()), "insert");
            bad |= check(l.append(b"a", deadline()), "append");
            bad |= check(l.pop(7, deadline()).map(|_| ()), "pop");
            bad |= check(l.len(deadline()).map(|_| ()), "len");
            bad |= check(l.clear(deadline()), "clear");
            detected += usize::from(bad);
        }
        assert!(detected > 100, "most damage is detected: {detected}");
    }

    #[test]
    fn killed_holder_with_damaged_state_makes_the_list_not_recoverable() {
        let space = new_space(1 << 20);
        let (l, _r) = SharedList::create(&space, None).unwrap();
        fill(10)(&l);
        let pid = fork_child(|| {
            std::mem::forget(l.lock(NEVER));
            let (v, _) = l.vector().unwrap().unwrap();
            v.item(4).unwrap().store(0, Relaxed);
            // SAFETY: dies holding the lock.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        assert!(libc::WIFSIGNALED(wait_child(pid)));
        assert_eq!(l.get(0, NEVER).unwrap_err().code, WEFT_CORRUPTED);
        assert_eq!(l.get(0, NEVER).unwrap_err().code, WEFT_NOT_RECOVERABLE);
    }

    #[test]
    fn index_rules() {
        assert_eq!(index(0, 3), Some(0));
        assert_eq!(index(-1, 3), Some(2));
        assert_eq!(index(-3, 3), Some(0));
        assert_eq!(index(-4, 3), None);
        assert_eq!(index(3, 3), None);
        assert_eq!(index(i64::MIN, u64::MAX), Some(u64::MAX - (1u64 << 63)));
        assert_eq!(insert_position(-100, 3), 0);
        assert_eq!(insert_position(100, 3), 3);
        assert_eq!(insert_position(-1, 3), 2);
        assert_eq!(insert_position(i64::MAX, 0), 0);
        assert_eq!(vector_class(0).unwrap(), 1);
        assert_eq!(capacity(1), 8);
        assert!(vector_class(u64::MAX).is_err());
    }
}
