//! The LIFO and priority kinds of [`SharedQueue`]: Python's `LifoQueue` and `PriorityQueue` in a
//! space, with the FIFO's guarantees (see the parent module): when `put` returns the item is in
//! shared memory, and a process killed at any instant — in the middle of copying an item or of
//! a heap sift — never makes a committed item disappear or appear twice, never exposes a torn
//! item, never wedges the queue and never leaks capacity.
//!
//! # Layout
//!
//! The payload starts with the FIFO's 512-byte header, with the same fields and meaning, but
//! for: `kind` is 1 (LIFO) or 2 (priority); `ring_size` is the bytes of the *arena*; `tail` and
//! `head` are cursors of offset 0 whose seqs count the items put and got (mod 2^32), each moved
//! by the commit of a put or a get, so that `qsize`, `task_done`/`join`, the waits for items
//! and the pollable descriptor are the FIFO's own; `p_lock` is the one lock of every operation
//! (`c_lock` is only taken by an immediate shutdown, before `p_lock`, as for the FIFO). Then:
//!
//! | offset         | field        | meaning                                                   |
//! | -------------- | ------------ | --------------------------------------------------------- |
//! | 512            | `count` u64  | items in the index                                        |
//! | 520            | `free_head`  | u64: the first free chunk, `NIL` (`u32::MAX`) when none   |
//! | 528            | `free_count` | u64: free chunks                                          |
//! | 536            | `next_seq`   | u64: the insertion number of the next item                |
//! | 576            | the journal  | an update in progress (see `journal.rs`)                  |
//! | 1536           | the index    | `cap` u32 chunk numbers, padded to 64 bytes               |
//! | after it       | the links    | one u32 per chunk, padded to 64 bytes                     |
//! | after them     | the arena    | chunks of 64 bytes                                        |
//!
//! Two u32 entries share a u64 word (entry `2i` in its low half, `2i + 1` in its high half);
//! every access goes through the word.
//!
//! An item occupies a chain of chunks: `chunks_for(len)` = 1 + ⌈(len − 40) / 64⌉ of them. Its
//! first chunk starts with its 24-byte head — `len: u32 | tag: u32`, `priority: i64`,
//! `seq: u64` (its insertion number; `tag` mixes `seq` and the chunk's number) — and its bytes
//! follow, continuing at the start of each next chunk of the chain; `links[c]` is the chunk
//! after `c`, `NIL` after the last. Free chunks form one more chain from `free_head`: an
//! allocation takes the first `k` (two words change: `free_head` and the link of the k-th,
//! which becomes `NIL`), a release puts an item's whole chain in front (two words again), so
//! neither depends on the item's size and the arena never fragments.
//!
//! The index holds the first chunks of the `count` items: a stack for LIFO (the last entry is
//! the next item), a binary min-heap on `(priority, seq)` for priority (the root is the next
//! item; `seq` keeps equal priorities first in, first out, and never wraps). The queue holds at
//! most `cap` items: `maxsize` when set, never more than the chunks.
//!
//! Why so: with each item's key in its own first chunk, an index entry is 4 bytes, so the index
//! of a queue bounded by bytes only (one entry per chunk) costs 6% of the arena, not the 37% of
//! 24-byte slots; a sift moves 4-byte entries, O(log n) words for the journal; and chains make
//! an allocation or a release change two words whatever the item's size, with no fragmentation,
//! for 24 bytes and the rounding to 64 per item.
//!
//! # Operations and crash safety
//!
//! Everything happens under `p_lock`. A put checks room (`count < cap`, `k` free chunks),
//! writes the item's head and bytes into the first `k` free chunks — free, so nobody reads
//! them, and a crash there leaves the queue as it was — and then makes one update: the free
//! list, the item's last link, `count`, `next_seq` and the index (one entry for LIFO, a sift-up
//! of O(log n) entries for priority), committed by the store of `tail`. A get checks the next
//! item (entry, tag, length, chain), offers it to the caller's copy, and makes one update: its
//! chain back on the free list, `count` and the index (a sift-down for priority), committed by
//! the store of `head`. `put_many` / `get_many` make one update per item under one lock (a
//! `put_many` killed half-way has put the first items, as a series of `put` calls would have).
//!
//! Each update goes through the undo journal (`journal.rs`): old values recorded, journal made
//! valid by one store, words changed, commit by one store of the cursor, journal retired. A
//! holder killed while holding the lock leaves it to the robust lock: the next locker gets
//! `WEFT_OWNER_DEAD`, rolls an uncommitted update back (or keeps a committed one), checks the
//! whole queue (`census`: every chunk in exactly one chain, the heap ordered, the counts
//! consistent), marks the lock consistent and carries on; callers never see it.
//!
//! Waits are the FIFO's (the `Sleepers` of the header, the spin of the handle): a get waits for
//! `tail` to move away from `head`, which only commits move. A put waits for room, which it
//! reads from `count` and `free_count` — words an interrupted update may have changed — so it
//! also counts a valid journal as a reason to look (under the lock, which repairs).
//!
//! # Trust
//!
//! The header is validated when the queue is opened (the payload's size must be this layout's
//! for its `maxsize` and arena); under the lock, the counts, cursors and free list head are
//! checked before each step, every item's entry, tag, length and chain before it is read or
//! freed, every walk is bounded by a count, every chunk number is checked (and every access
//! clamped inside the payload besides). Garbage gives `WEFT_CORRUPTED`, never a wild access, a
//! panic or an unbounded loop.

use super::journal::{self, half_of, Journal, Tx, JOURNAL_MAX};
use super::{closed, corrupted, Cursor, QueueHeader, SharedQueue, Side, Take, HEADER_SIZE, MAX_RING, MIN_RING, OPEN, SHUT_NOW};
use crate::futex::Interrupt;
use crate::queue::{Kind, Options};
use crate::space::dict::step;
use crate::space::handle::SpaceHandle;
use crate::space::object::{KIND_QUEUE, OBJECT_HEADER};
use crate::space::shared::SharedRef;
use crate::status::{Error, Result, WEFT_INVALID_ARGUMENT};
use crate::time::Deadline;
use std::mem::{offset_of, size_of};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::Arc;

/// Bytes of a chunk of the arena.
const CHUNK: u64 = 64;
/// Bytes of an item's head in its first chunk.
const ITEM_HEAD: u64 = 24;
/// No chunk: the end of a chain.
const NIL: u32 = u32::MAX;
/// Xor'ed into an item's tag.
const TAG_KEY: u32 = 0x7164_726f;
/// Where the state words and the journal start, and their bytes.
const META: u64 = HEADER_SIZE;
const META_SIZE: u64 = 1024;
/// Where the index starts.
const INDEX: u64 = META + META_SIZE;
/// Levels of the deepest heap (at most MAX_RING / CHUNK = 2^24 items). An update changes at
/// most one index word per level and 5 more.
const MAX_LEVELS: usize = 25;
const _: () = assert!(MAX_LEVELS + 5 <= JOURNAL_MAX && MAX_RING / CHUNK <= 1 << (MAX_LEVELS - 1));

/// The commit words: the header's cursors.
pub(super) const TAIL: u64 = offset_of!(QueueHeader, tail) as u64;
pub(super) const HEAD: u64 = offset_of!(QueueHeader, head) as u64;

/// The state words and the journal, at META.
#[repr(C)]
struct Meta {
    count: AtomicU64,
    free_head: AtomicU64,
    free_count: AtomicU64,
    next_seq: AtomicU64,
    _r: [AtomicU64; 4],
    journal: Journal,
}

const _: () = assert!(size_of::<Meta>() as u64 <= META_SIZE && INDEX % 64 == 0);
const COUNT: u64 = META + offset_of!(Meta, count) as u64;
const FREE_HEAD: u64 = META + offset_of!(Meta, free_head) as u64;
const FREE_COUNT: u64 = META + offset_of!(Meta, free_count) as u64;
const NEXT_SEQ: u64 = META + offset_of!(Meta, next_seq) as u64;

/// True for the kinds this module implements.
pub(super) fn is_ordered(kind: Kind) -> bool {
    matches!(kind, Kind::Lifo | Kind::Priority)
}

/// Chunks an item of `len` bytes occupies.
fn chunks_for(len: u64) -> u64 {
    1 + len.saturating_sub(CHUNK - ITEM_HEAD).div_ceil(CHUNK)
}

/// The tag of the item of insertion number `seq` whose first chunk is `c`.
fn tag(c: u32, seq: u64) -> u32 {
    (seq as u32).wrapping_mul(0x9e37_79b9) ^ (seq >> 32) as u32 ^ c.rotate_left(16) ^ TAG_KEY
}

/// `x` rounded up to a multiple of 64.
fn pad(x: u64) -> u64 {
    x.div_ceil(64) * 64
}

/// Most items at once in an arena of `arena` bytes: `maxsize` when set, never more than the
/// chunks.
pub(super) fn capacity(maxsize: u64, arena: u64) -> u64 {
    let chunks = arena / CHUNK;
    if maxsize == 0 {
        chunks
    } else {
        maxsize.min(chunks)
    }
}

/// The payload size of a queue of this layout, or None when `arena` is not a valid arena size.
pub(super) fn payload_size(maxsize: u64, arena: u64) -> Option<u64> {
    if arena % CHUNK != 0 || !(MIN_RING..=MAX_RING).contains(&arena) {
        return None;
    }
    Some(Geometry::new(capacity(maxsize, arena), arena / CHUNK).size)
}

/// The arena for `max_bytes` (rounded up to chunks; 0: the largest whose object fits a 1 MiB
/// block).
fn arena_for(maxsize: u64, max_bytes: u64) -> Result<u64> {
    if max_bytes == 0 {
        let fits = |chunks: u64| {
            OBJECT_HEADER + Geometry::new(capacity(maxsize, chunks * CHUNK), chunks).size <= 1 << 20
        };
        let (mut lo, mut hi) = (1, (1 << 20) / CHUNK);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return Ok(lo * CHUNK);
    }
    let ring = max_bytes.checked_add(7).map_or(u64::MAX, |b| b / 8 * 8);
    if !(MIN_RING..=MAX_RING).contains(&ring) {
        return Err(Error::invalid(format!("a shared queue holds from {MIN_RING} to {MAX_RING} bytes, not {max_bytes}")));
    }
    Ok(ring.div_ceil(CHUNK) * CHUNK)
}

/// Where the parts of a queue's payload are.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    chunks: u64,
    links: u64,
    arena: u64,
    size: u64,
}

impl Geometry {
    fn new(cap: u64, chunks: u64) -> Geometry {
        let links = INDEX + pad(cap * 4);
        let arena = links + pad(chunks * 4);
        Geometry { chunks, links, arena, size: arena + chunks * CHUNK }
    }

    /// The offset of chunk `c`, clamped to the last chunk: garbage never leaves the arena.
    fn chunk(&self, c: u32) -> u64 {
        self.arena + u64::from(c).min(self.chunks - 1) * CHUNK
    }

    /// True for the offset of a word an update may change: a state word, the index, a link.
    fn journaled(&self, off: u64) -> bool {
        off % 8 == 0 && ((COUNT..=NEXT_SEQ).contains(&off) || (INDEX..self.arena).contains(&off))
    }
}

/// The checked state words and cursors (under the lock).
struct State {
    count: u64,
    free_head: u32,
    free_count: u64,
    tail: Cursor,
    head: Cursor,
}

/// A checked item.
struct Item {
    len: u64,
    seq: u64,
    chunks: u64,
    last: u32,
}

/// The outcome of one attempt to take one item.
enum One {
    Took,
    Refused,
    Empty,
}

impl SharedQueue {
    /// Creates an empty LIFO or priority queue (see [`SharedQueue::create`]).
    pub(super) fn create_ordered(handle: Arc<SpaceHandle>, name: Option<&str>, opts: Options) -> Result<SharedQueue> {
        let maxsize = opts.maxsize as u64;
        let arena = arena_for(maxsize, opts.max_bytes)?;
        let chunks = arena / CHUNK;
        let g = Geometry::new(capacity(maxsize, arena), chunks);
        let mut init = |p: *mut u8| {
            let header = QueueHeader::new(opts.kind, opts.joinable, maxsize, arena);
            // SAFETY: create_object hands over a fresh, zero-filled, 64-aligned payload of
            // `g.size` bytes that no other thread or process can reach yet; the header fits.
            unsafe { (p as *mut QueueHeader).write(header) };
            // SAFETY: the state words (zero: no item, free list from chunk 0) lie at META inside
            // the payload, 8-aligned, atomics.
            let free_count = unsafe { &*(p.add(FREE_COUNT as usize) as *const AtomicU64) };
            free_count.store(chunks, Relaxed);
            // Every chunk free, in order: links[c] = c + 1, NIL after the last.
            for w in 0..chunks.div_ceil(2) {
                let next = |c: u64| if c + 1 < chunks { (c + 1) as u32 } else { NIL };
                let v = u64::from(next(2 * w)) | u64::from(next(2 * w + 1)) << 32;
                // SAFETY: word `w` of the links lies inside the payload (`g.links` + 8 w is below
                // `g.arena`), 8-aligned.
                unsafe { (p.add((g.links + 8 * w) as usize) as *mut u64).write(v) };
            }
            Ok(())
        };
        let r = SharedRef::create(handle, KIND_QUEUE, g.size, name, &mut init)?;
        SharedQueue::from_ref(r)
    }

    /// Where the parts of this queue's payload are.
    fn geometry(&self) -> Geometry {
        Geometry::new(u64::from(self.cap), self.ring / CHUNK)
    }

    /// The word at payload offset `off` (clamped to an aligned word inside the payload).
    pub(super) fn word(&self, off: u64) -> &AtomicU64 {
        let off = off.min(self.r.object().size - 8) & !7;
        // SAFETY: the payload (at least HEADER_SIZE bytes, a multiple of 64, 64-aligned) holds
        // the word; AtomicU64 accepts any bits and shared mutation; mapped while `self.r` lives.
        unsafe { &*(self.r.payload().add(off as usize) as *const AtomicU64) }
    }

    /// The state words and the journal.
    fn meta(&self) -> &Meta {
        // SAFETY: only called for the ordered kinds, whose payload `from_ref` checked to have
        // this layout: META_SIZE bytes of atomics at META (64-aligned), mapped while `self.r`
        // lives.
        unsafe { &*(self.r.payload().add(META as usize) as *const Meta) }
    }

    /// The undo journal (see `journal.rs`).
    pub(super) fn journal(&self) -> &Journal {
        &self.meta().journal
    }

    /// Entry `i` of the u32 array at `base`.
    fn half(&self, base: u64, i: u64) -> u32 {
        half_of(self.word(base + 8 * (i / 2)).load(Relaxed), i)
    }

    /// The chunk after chunk `c` in its chain (`NIL` after the last).
    fn link(&self, g: &Geometry, c: u32) -> u32 {
        self.half(g.links, u64::from(c))
    }

    /// The ordering key of the item whose first chunk is `c`.
    fn key(&self, g: &Geometry, c: u32) -> (i64, u64) {
        let at = g.chunk(c);
        (self.word(at + 8).load(Relaxed) as i64, self.word(at + 16).load(Relaxed))
    }

    /// Copies `src` (at most a chunk) to payload offset `at` (clamped inside the payload).
    fn bytes_in(&self, at: u64, src: &[u8]) {
        let len = src.len().min(CHUNK as usize);
        let at = at.min(self.r.object().size - len as u64);
        // SAFETY: [at, at + len) lies inside the payload; `src` is caller memory. The bytes are
        // in free chunks, which nobody reads.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.r.payload().add(at as usize), len) };
    }

    /// Copies bytes (at most a chunk) from payload offset `at` (clamped) into `dst`.
    fn bytes_out(&self, at: u64, dst: &mut [u8]) {
        let len = dst.len().min(CHUNK as usize);
        let at = at.min(self.r.object().size - len as u64);
        // SAFETY: as in `bytes_in`; the bytes belong to a committed item, which nobody writes
        // while the lock is held.
        unsafe { std::ptr::copy_nonoverlapping(self.r.payload().add(at as usize), dst.as_mut_ptr(), len) };
    }

    /// Copies the bytes of the item whose first chunk is `first` into `dst` (its length).
    pub(super) fn copy_chunks(&self, first: u32, dst: &mut [u8]) {
        let g = self.geometry();
        let (head, rest) = dst.split_at_mut(dst.len().min((CHUNK - ITEM_HEAD) as usize));
        self.bytes_out(g.chunk(first) + ITEM_HEAD, head);
        step();
        let mut c = first;
        for part in rest.chunks_mut(CHUNK as usize) {
            c = self.link(&g, c);
            self.bytes_out(g.chunk(c), part);
        }
    }

    /// Writes an item's head and bytes into the chain from `first` (free chunks).
    fn write_item(&self, g: &Geometry, first: u32, item: &[u8], priority: i64, seq: u64) {
        let at = g.chunk(first);
        self.word(at).store(item.len() as u64 | u64::from(tag(first, seq)) << 32, Relaxed);
        self.word(at + 8).store(priority as u64, Relaxed);
        self.word(at + 16).store(seq, Relaxed);
        step();
        let (head, rest) = item.split_at(item.len().min((CHUNK - ITEM_HEAD) as usize));
        self.bytes_in(at + ITEM_HEAD, head);
        step();
        let mut c = first;
        for part in rest.chunks(CHUNK as usize) {
            c = self.link(g, c);
            self.bytes_in(g.chunk(c), part);
            step();
        }
    }

    /// The state words and cursors, checked (under the lock).
    fn state(&self, g: &Geometry) -> Result<State> {
        let (h, m) = (self.header(), self.meta());
        let count = m.count.load(Relaxed);
        let free_head = m.free_head.load(Relaxed);
        let free_count = m.free_count.load(Relaxed);
        let tail = Cursor::load(&h.tail, Relaxed);
        let head = Cursor::load(&h.head, Relaxed);
        let free_ok = if free_count == 0 { free_head == u64::from(NIL) } else { free_head < g.chunks };
        if count > u64::from(self.cap)
            || free_count > g.chunks - count
            || !free_ok
            || tail.off != 0
            || head.off != 0
            || u64::from(tail.seq.wrapping_sub(head.seq)) != count
        {
            return Err(corrupted(format!(
                "{count} items, {free_count} free chunks from {free_head:#x}, cursors {:#x} / {:#x}: inconsistent \
                 (at most {} items, {} chunks)",
                tail.word(),
                head.word(),
                self.cap,
                g.chunks
            )));
        }
        Ok(State { count, free_head: free_head as u32, free_count, tail, head })
    }

    /// The last chunk of the chain of `chunks` chunks from `first`, every link checked.
    fn walk(&self, g: &Geometry, first: u32, chunks: u64) -> Result<u32> {
        let mut c = first;
        for _ in 1..chunks {
            c = self.link(g, c);
            if u64::from(c) >= g.chunks {
                return Err(corrupted(format!("a chain leads to chunk {c:#x}, beyond the {} chunks", g.chunks)));
            }
        }
        Ok(c)
    }

    /// The item whose first chunk is `c`, checked: chunk number, tag, length, chain.
    fn item(&self, g: &Geometry, st: &State, c: u32) -> Result<Item> {
        if u64::from(c) >= g.chunks {
            return Err(corrupted(format!("the index names chunk {c:#x}, beyond the {} chunks", g.chunks)));
        }
        let at = g.chunk(c);
        let w = self.word(at).load(Relaxed);
        let seq = self.word(at + 16).load(Relaxed);
        let len = w & 0xffff_ffff;
        let chunks = chunks_for(len);
        if (w >> 32) as u32 != tag(c, seq) || chunks > g.chunks - st.free_count {
            return Err(corrupted(format!("chunk {c}: length {len} / tag {:#x} are not an item's head", w >> 32)));
        }
        let last = self.walk(g, c, chunks)?;
        if self.link(g, last) != NIL {
            return Err(corrupted(format!("the chain of the item at chunk {c} does not end after {chunks} chunks")));
        }
        Ok(Item { len, seq, chunks, last })
    }

    /// Plans the entry of item `c` (key `key`) into the index of `count` items.
    fn insert(&self, g: &Geometry, tx: &mut Tx, count: u64, c: u32, key: (i64, u64)) {
        let mut i = count;
        if self.opts.kind == Kind::Priority {
            // Sift up: parents with a larger key move down a level.
            while i > 0 {
                let p = (i - 1) / 2;
                let pc = tx.get_half(INDEX, p);
                if self.key(g, pc) <= key {
                    break;
                }
                tx.set_half(INDEX, i, pc);
                i = p;
            }
        }
        tx.set_half(INDEX, i, c);
    }

    /// Plans the removal of the next item from the index of `count` items (LIFO: the last
    /// entry, which needs no change; priority: the root, replaced by a sift-down of the last).
    fn remove(&self, g: &Geometry, tx: &mut Tx, count: u64) {
        let n = count - 1;
        if self.opts.kind != Kind::Priority || n == 0 {
            return;
        }
        let x = tx.get_half(INDEX, n);
        let kx = self.key(g, x);
        let mut i = 0;
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let (mut c, mut cc) = (l, tx.get_half(INDEX, l));
            let mut kc = self.key(g, cc);
            if l + 1 < n {
                let rc = tx.get_half(INDEX, l + 1);
                let kr = self.key(g, rc);
                if kr < kc {
                    (c, cc, kc) = (l + 1, rc, kr);
                }
            }
            if kx <= kc {
                break;
            }
            tx.set_half(INDEX, i, cc);
            i = c;
        }
        tx.set_half(INDEX, i, x);
    }

    /// After a holder of `side`'s lock died: rolls back (or retires) its update and checks the
    /// whole queue. `c_lock` guards nothing of these kinds.
    pub(super) fn repair_ordered(&self, side: Side) -> Result<()> {
        if side == Side::Consumers {
            return Ok(());
        }
        let g = self.geometry();
        journal::recover(self, &|off| g.journaled(off))?;
        self.census(&g).map(|_| ())
    }

    /// Checks the whole queue (under the lock): every item's entry, head and chain, the heap
    /// order, every chunk in exactly one chain (an item's or the free list). Returns the items
    /// and the free chunks.
    fn census(&self, g: &Geometry) -> Result<(u64, u64)> {
        let st = self.state(g)?;
        let next_seq = self.meta().next_seq.load(Relaxed);
        let mut seen = vec![0u64; g.chunks.div_ceil(64) as usize];
        let mut claim = |c: u32| {
            let (w, bit) = ((c / 64) as usize, 1u64 << (c % 64));
            if u64::from(c) >= g.chunks || seen[w] & bit != 0 {
                return Err(corrupted(format!("chunk {c:#x} is in two chains, or beyond the {} chunks", g.chunks)));
            }
            seen[w] |= bit;
            Ok(())
        };
        let mut used = 0;
        for i in 0..st.count {
            let c = self.half(INDEX, i);
            let it = self.item(g, &st, c)?;
            if it.seq >= next_seq {
                return Err(corrupted(format!("the item at chunk {c} has insertion number {}, not yet given", it.seq)));
            }
            if self.opts.kind == Kind::Priority && i > 0 && self.key(g, self.half(INDEX, (i - 1) / 2)) > self.key(g, c) {
                return Err(corrupted(format!("index entry {i} is smaller than its parent: not a heap")));
            }
            let mut x = c;
            for j in 0..it.chunks {
                if j > 0 {
                    x = self.link(g, x);
                }
                claim(x)?;
            }
            used += it.chunks;
        }
        let mut x = st.free_head;
        for j in 0..st.free_count {
            if j > 0 {
                x = self.link(g, x);
            }
            claim(x)?;
        }
        if st.free_count > 0 && self.link(g, x) != NIL {
            return Err(corrupted(format!("the free list does not end after its {} chunks", st.free_count)));
        }
        if used + st.free_count != g.chunks {
            return Err(corrupted(format!("{} chunks are neither free nor in an item", g.chunks - used - st.free_count)));
        }
        Ok((st.count, st.free_count))
    }

    /// Test access: takes the lock (repairing as any caller would) and checks the whole queue;
    /// the items and the free chunks.
    #[cfg(test)]
    pub(super) fn check_ordered(&self) -> Result<(u64, u64)> {
        let _held = self.lock(Side::Producers, Deadline::Never, Interrupt::Uninterruptible)?;
        self.census(&self.geometry())
    }

    // ---- putting -------------------------------------------------------------------------

    /// [`SharedQueue::put_many`] for these kinds: one update per item, as many as fit under one
    /// lock, waiting for room as needed.
    pub(super) fn put_many_ordered(&self, items: &[&[u8]], priority: i64, deadline: Deadline) -> (usize, Result<()>) {
        let chunks = self.ring / CHUNK;
        if let Some(item) = items.iter().find(|i| chunks_for(i.len() as u64) > chunks || i.len() as u64 > u64::from(u32::MAX)) {
            let e = Error::new(
                WEFT_INVALID_ARGUMENT,
                format!(
                    "an item of {} bytes never fits this queue's {}-byte arena (at most {} bytes)",
                    item.len(),
                    self.ring,
                    self.ring - ITEM_HEAD
                ),
            );
            return (0, Err(e));
        }
        let mut done = 0;
        while done < items.len() {
            match self.try_put_ordered(&items[done..], priority, deadline) {
                Ok(n) => done += n,
                Err(e) => return (done, Err(e)),
            }
            if done == items.len() {
                break;
            }
            if let Err(e) = self.wait_room_ordered(chunks_for(items[done].len() as u64), deadline) {
                return (done, Err(e));
            }
        }
        (done, Ok(()))
    }

    /// One attempt: under the lock, puts as many of `items` as fit, one update each.
    fn try_put_ordered(&self, items: &[&[u8]], priority: i64, deadline: Deadline) -> Result<usize> {
        let held = self.lock(Side::Producers, deadline, Interrupt::Cancellable)?;
        step();
        if self.shutdown_state()? != OPEN {
            return Err(closed());
        }
        let mut n = 0;
        let mut failure = None;
        for item in items {
            match self.put_one(item, priority) {
                Ok(true) => n += 1,
                Ok(false) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(held);
        step();
        if n > 0 {
            self.header().not_empty.wake(n as u32);
            return Ok(n);
        }
        failure.map_or(Ok(0), Err)
    }

    /// Puts one item when it fits (false when it does not).
    fn put_one(&self, item: &[u8], priority: i64) -> Result<bool> {
        let g = self.geometry();
        let st = self.state(&g)?;
        let k = chunks_for(item.len() as u64);
        if st.count >= u64::from(self.cap) || st.free_count < k {
            return Ok(false);
        }
        let first = st.free_head;
        let last = self.walk(&g, first, k)?;
        let next = self.link(&g, last);
        let rest = st.free_count - k;
        if (rest == 0) != (next == NIL) || (rest > 0 && u64::from(next) >= g.chunks) {
            return Err(corrupted(format!("the free list goes on to {next:#x} with {rest} free chunks left")));
        }
        let seq = self.meta().next_seq.load(Relaxed);
        self.write_item(&g, first, item, priority, seq);
        let mut tx = Tx::new(self);
        tx.set(FREE_HEAD, u64::from(next));
        tx.set(FREE_COUNT, rest);
        tx.set_half(g.links, u64::from(last), NIL);
        tx.set(COUNT, st.count + 1);
        tx.set(NEXT_SEQ, seq + 1);
        self.insert(&g, &mut tx, st.count, first, (priority, seq));
        tx.commit(TAIL, Cursor { seq: st.tail.seq.wrapping_add(1), off: 0 }.word())?;
        Ok(true)
    }

    /// Waits until an item of `k` chunks may fit (or the queue is shut down, or an interrupted
    /// update needs the lock's repair).
    fn wait_room_ordered(&self, k: u64, deadline: Deadline) -> Result<()> {
        if deadline == Deadline::Now {
            return Err(Error::would_block("the queue is full"));
        }
        if deadline.expired() {
            return Err(Error::timeout("timed out waiting for room in the queue"));
        }
        let (h, m) = (self.header(), self.meta());
        let ready = || {
            h.shutdown.load(SeqCst) != OPEN || {
                // Synchronises with the commit of the last get (SeqCst, after its stores).
                let _ = h.head.load(SeqCst);
                let room = m.count.load(Acquire) < u64::from(self.cap) && m.free_count.load(Acquire) >= k;
                // Loaded after the counts: a value an update stored (Release, after making its
                // journal valid) is seen with the journal valid, until the update committed.
                room || journal::in_progress(self)
            }
        };
        if self.spin_put.until(deadline, &ready) {
            return Ok(());
        }
        h.not_full.sleep(deadline, &ready, "timed out waiting for room in the queue")
    }

    // ---- getting -------------------------------------------------------------------------

    /// [`SharedQueue`]'s `try_take` for these kinds: under the lock, offers up to `max` items,
    /// in order, to `visit` (first chunk, length), which copies one out and returns true, or
    /// returns false (or an error) to leave it; one update per item taken.
    pub(super) fn try_take_ordered(
        &self,
        max: usize,
        deadline: Deadline,
        visit: &mut dyn FnMut(u64, usize) -> Result<bool>,
    ) -> Result<Take> {
        let held = self.lock(Side::Producers, deadline, Interrupt::Cancellable)?;
        step();
        let state = self.shutdown_state()?;
        if state == SHUT_NOW {
            return Ok(Take::Closed);
        }
        let (mut n, mut stop, mut failure) = (0, One::Took, None);
        while n < max {
            match self.take_one(visit) {
                Ok(One::Took) => n += 1,
                Ok(other) => {
                    stop = other;
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(held);
        step();
        if n > 0 {
            self.header().not_full.wake(u32::MAX);
            return Ok(Take::Took(n));
        }
        match (failure, stop) {
            (Some(e), _) => Err(e),
            (None, One::Empty) if state == OPEN => Ok(Take::Empty),
            (None, One::Empty) => Ok(Take::Closed),
            _ => Ok(Take::Refused),
        }
    }

    /// Takes the next item through `visit`, when there is one.
    fn take_one(&self, visit: &mut dyn FnMut(u64, usize) -> Result<bool>) -> Result<One> {
        let g = self.geometry();
        let st = self.state(&g)?;
        if st.count == 0 {
            return Ok(One::Empty);
        }
        let pos = if self.opts.kind == Kind::Lifo { st.count - 1 } else { 0 };
        let c = self.half(INDEX, pos);
        let it = self.item(&g, &st, c)?;
        if !visit(u64::from(c), it.len as usize)? {
            return Ok(One::Refused);
        }
        step();
        let mut tx = Tx::new(self);
        tx.set_half(g.links, u64::from(it.last), st.free_head); // NIL when none is free
        tx.set(FREE_HEAD, u64::from(c));
        tx.set(FREE_COUNT, st.free_count + it.chunks);
        tx.set(COUNT, st.count - 1);
        self.remove(&g, &mut tx, st.count);
        tx.commit(HEAD, Cursor { seq: st.head.seq.wrapping_add(1), off: 0 }.word())?;
        Ok(One::Took)
    }
}
