//! [`SharedQueue`]: Python's `multiprocessing.Queue`, `JoinableQueue` and `SimpleQueue` — a FIFO
//! queue of byte strings living in a space, used at once by any number of producer and consumer
//! threads in any number of processes. There is no feeder thread: when `put` returns, the item
//! is in shared memory, and a process that exits (or is killed) right after loses nothing.
//!
//! This page describes the FIFO and simple kinds; the LIFO and priority kinds (Python's
//! `LifoQueue` and `PriorityQueue`, in a space) share the header, the waits and the API, and
//! keep their items in an index and an arena of chunks updated through an undo journal (see
//! `ordered.rs` and `journal.rs`).
//!
//! # Layout
//!
//! The object (kind `KIND_QUEUE`) has a payload of a 512-byte header — eight 64-byte lines, so
//! that what a producer writes for itself, what it publishes to consumers, and the reverse, and
//! where each side sleeps, never share a cache line — followed by the ring of `ring_size`
//! bytes. All header fields are atomics; there are no pointers, only offsets.
//!
//! | offset | field          | type       | written by          | meaning                                        |
//! | ------ | -------------- | ---------- | ------------------- | ---------------------------------------------- |
//! | 0      | `magic`        | u32        | creator             | `b"wfqu"`                                      |
//! | 4      | `version`      | u32        | creator             | 1                                              |
//! | 8      | `kind`         | u32        | creator             | `Kind::code()`: 0 FIFO, 3 simple (1, 2: above) |
//! | 12     | `flags`        | u32        | creator             | bit 0: joinable                                |
//! | 16     | `maxsize`      | u64        | creator             | most items at once, 0 = bounded by bytes only  |
//! | 24     | `ring_size`    | u64        | creator             | bytes of the ring, a multiple of 8             |
//! | 32     | `shutdown`     | u32        | `shutdown`          | 0 open, 1 shut down, 2 shut down immediately   |
//! | 64     | `done`         | u32        | `task_done`         | `task_done` calls so far (mod 2^32)            |
//! | 72     | `joiners`      | Sleepers   | `join`              | where `join` sleeps (see below)                |
//! | 128    | `p_lock`       | RobustLock | producers           | serialises producers                           |
//! | 144    | `head_seen`    | u64 cursor | producers           | a value `head` had (a hint: room known)        |
//! | 192    | `tail`         | u64 cursor | producers           | end of the committed records                   |
//! | 256    | `c_lock`       | RobustLock | consumers           | serialises consumers                           |
//! | 272    | `tail_seen`    | u64 cursor | consumers           | a value `tail` had (a hint: items known)       |
//! | 320    | `head`         | u64 cursor | consumers           | start of the oldest record                     |
//! | 384    | `not_empty`    | Sleepers   | consumers / puts    | where `get` sleeps                             |
//! | 448    | `not_full`     | Sleepers   | producers / gets    | where `put` sleeps                             |
//! | 512    | the ring       | bytes      |                     | records                                        |
//!
//! (A `Sleepers` is `seq: u32` futex word, 4 bytes of padding, `lease: u64`.)
//!
//! A *cursor* is `seq << 32 | off`: `off` is a byte offset in the ring (a multiple of 8, below
//! `ring_size`, so at most 1 GiB of ring) and `seq` counts items modulo 2^32. The queue holds
//! `tail.seq - head.seq` items, occupying the bytes from `head.off` to `tail.off` around the
//! ring (all of it when the offsets are equal and the count is not 0).
//!
//! A *record* is `[len: u32 | tag: u32 | len bytes, padded to a multiple of 8]`, at a cursor's
//! offset. Its 8-byte head never straddles the end of the ring; its bytes may: they continue at
//! offset 0 (so a record never wastes space and any record up to the ring's size fits an empty
//! ring whatever the offsets). `tag` is the item's `seq` xor a constant: a consumer checks that
//! the record is the one its cursor expects.
//!
//! # Operations and crash safety
//!
//! Producers serialise among themselves with `p_lock`, consumers with `c_lock`, so one
//! producer and one consumer never contend. Each update is committed by ONE store:
//!
//! - `put` / `put_many`: under `p_lock`, read `head` (Acquire) when the hint in `head_seen`
//!   does not show room, write the records into free bytes after `tail`, then store the new
//!   `tail` (Release; seq and offset in one word: the count is committed with it). Before that
//!   store the records are invisible, after it they are all there: a producer killed at any
//!   instant, even in the middle of copying a 64 KiB item, leaves the queue as it was or with
//!   its whole items. (Killed between that store and `put` returning, its items are delivered
//!   although its `put` never returned: an item is committed by the store.)
//! - `get` / `get_into` / `get_word` / `get_many`: under `c_lock`, read `tail` (Acquire) when
//!   the hint in `tail_seen` shows no item, check and copy the records out, then store the new
//!   `head` (Release). A consumer killed before that store has taken nothing (the item is
//!   delivered to the next consumer, never twice to callers whose `get` returned); after it,
//!   the item is gone with the consumer — as with any process that dies holding a message.
//! - `shutdown(false)`: under `p_lock`, one store of `shutdown`. `shutdown(true)`: under
//!   `c_lock` then `p_lock` (always that order; nothing else takes both), one store of
//!   `shutdown` = 2, which *is* the discard: from then on no item can be got, `qsize` is 0,
//!   and unfinished tasks are counted from `head` instead of `tail` (see below), so each
//!   discarded item is counted as done.
//! - `task_done`: one compare-and-swap of `done`. Unfinished tasks are `tail.seq - done`
//!   (`head.seq - done` after an immediate shutdown): a put counts one with the same store
//!   that commits it, so no crash can make the counter disagree with the items.
//!
//! The hints `head_seen` and `tail_seen` are only ever set, under their side's lock, to values
//! the cursor really had, and cursors only move forward, so a stale hint under-estimates room
//! or items (and is refreshed) and never lets a producer overwrite an unconsumed record.
//!
//! A holder killed while holding a lock leaves it to the robust lock: the next locker gets
//! `WEFT_OWNER_DEAD` (after a check slice: 50 ms, or 10 ms for a call with a short timeout or
//! none), validates `head` and `tail`, resets
//! its side's hint, marks the lock consistent and carries on; callers never see
//! `WEFT_OWNER_DEAD`. Nothing else needs repair, because nothing is ever half-committed.
//!
//! # Blocking
//!
//! A `get` finding the queue empty (a `put` finding it full) spins watching the cursors —
//! for 1 to 20 µs, a budget each handle adapts (see `Spin`), yielding the CPU between checks
//! after the first 2 µs — then sleeps on a process-shared futex word, `seq` of its
//! `Sleepers`: it loads `seq`, registers in `lease` (a compare-and-swap, SeqCst), checks the
//! queue again (SeqCst) and sleeps while `seq` is unchanged. A committing operation stores its
//! cursor (SeqCst) and loads `lease` (SeqCst): only when it shows sleepers does it bump `seq`
//! and make the wake system call — the fast path makes none. Sleeps last at most 50 ms a
//! slice, so a sleeper whose waker died re-checks.
//!
//! `lease` is `tick: 12 | epoch: 12 | count: 16 | expiry: 24`, the expiry in CLOCK_MONOTONIC
//! milliseconds (modulo 2^24) after which every registered sleeper's slice has ended, the tick
//! bumped by every registration. A waker that woke as many sleepers as are counted, or finds
//! the expiry passed, starts a new epoch with none counted — with a compare-and-swap against
//! the word it loaded, which fails if anybody registered or unregistered since (the tick makes
//! an unregister followed by a register visible) — and sleepers of an old epoch do not
//! unregister. So the consumer of a producer asleep on a full queue makes one wake call, not
//! one per `get` until the producer runs; and a process killed while asleep does not leave a
//! count that would cost every later operation a system call.
//!
//! # Trust
//!
//! The header is validated when the queue is opened (magic, version, kind, flags, ring size
//! consistent with the object's payload size) and the handle keeps what it validated. Every
//! cursor, hint, record length and tag read from shared memory is checked before use (offset
//! in the ring and aligned, count at most the capacity, bytes consistent with the count, record
//! inside the occupied bytes); every ring access is reduced modulo the ring's size. Garbage
//! gives `WEFT_CORRUPTED`, never a wild access, a panic or an unbounded loop.

use crate::futex::{Interrupt, SharedWord, Wait, Word};
use crate::queue::{Filled, Kind, Options};
use crate::space::dict::step;
use crate::space::handle::SpaceHandle;
use crate::space::object::{KIND_QUEUE, OBJECT_HEADER};
use crate::space::shared::{SharedPod, SharedRef};
use crate::status::{
    Error, Result, WEFT_CLOSED, WEFT_CORRUPTED, WEFT_INVALID_ARGUMENT, WEFT_INVALID_STATE, WEFT_OWNER_DEAD,
    WEFT_TIMEOUT,
};
use crate::sync::RobustLock;
use crate::time::{now_ns, Deadline};
use std::mem::{offset_of, size_of};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};
use std::sync::Arc;

mod journal;
mod ordered;
mod watch;

#[cfg(test)]
mod ordered_process_tests;
#[cfg(test)]
mod ordered_tests;
#[cfg(test)]
mod process_tests;
#[cfg(test)]
mod tests;

const MAGIC: u32 = u32::from_le_bytes(*b"wfqu");
const VERSION: u32 = 1;
const FLAG_JOINABLE: u32 = 1;
const OPEN: u32 = 0;
const SHUT: u32 = 1;
const SHUT_NOW: u32 = 2;
/// Xor'ed with an item's seq into its record's tag.
const TAG_KEY: u32 = 0x7771_6d72;
/// Bytes of a record's head (`len`, `tag`).
const RECORD_HEAD: u64 = 8;

/// Bytes of the queue header, before the ring.
pub(crate) const HEADER_SIZE: u64 = 512;
/// The smallest ring.
pub(crate) const MIN_RING: u64 = 64;
/// The largest ring (offsets are 32-bit).
pub(crate) const MAX_RING: u64 = 1 << 30;
/// The ring of a queue made with `max_bytes` 0: the object then takes a 1 MiB block.
pub(crate) const DEFAULT_RING: u64 = (1 << 20) - OBJECT_HEADER - HEADER_SIZE;

/// Longest sleep before a sleeper re-checks (a waker may have died).
const SLEEP_SLICE_NS: u64 = 50_000_000;
/// Most and least time an empty `get` / full `put` watches the cursors before it sleeps; the
/// budget adapts between them (see `Spin`).
const SPIN_MAX_NS: u32 = 20_000;
const SPIN_MIN_NS: u32 = 1_000;
/// At the smallest budget, one wait in this many spins for the largest (see `Spin`).
const SPIN_PROBE_EVERY: u32 = 32;
/// Most pause instructions between two checks of a spin (the first checks come quicker): a
/// spinner that reads the other side's cache line less often lets it run ahead, so that a
/// consumer that keeps up takes items in batches instead of one cache-line hand-off each.
const SPIN_PAUSES_MAX: u32 = 4;
/// How long a spin only spins, before it also yields the CPU between checks.
const SPIN_PURE_NS: u64 = 2_000;
/// How long a locker watches a held lock before it sleeps in the lock.
const LOCK_SPIN_NS: u64 = 10_000;
/// How long a call with a short timeout (or none) waits for a busy lock (see `lock`).
const LOCK_GRACE_NS: u64 = 10_000_000;

/// A place to sleep: a futex word and the lease that tells wakers whether anybody sleeps (see
/// the module documentation).
#[repr(C)]
struct Sleepers {
    seq: SharedWord,
    _pad: AtomicU32,
    lease: AtomicU64,
}

/// A decoded `lease` word: `tick: 12 | epoch: 12 | count: 16 | expiry: 24` (high to low bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    /// Bumped by every registration, so that a waker's reset never undoes one it did not see.
    tick: u64,
    /// Bumped by every reset; a registration of an older epoch is no longer counted.
    epoch: u64,
    /// Registered sleepers of this epoch (saturating).
    count: u64,
    /// CLOCK_MONOTONIC milliseconds, modulo 2^24, after which every counted sleeper's slice
    /// has ended.
    expiry: u32,
}

const EXPIRY_MASK: u32 = (1 << 24) - 1;
const COUNT_MAX: u64 = (1 << 16) - 1;

impl Lease {
    fn unpack(w: u64) -> Lease {
        Lease { tick: w >> 52, epoch: (w >> 40) & 0xfff, count: (w >> 24) & COUNT_MAX, expiry: w as u32 & EXPIRY_MASK }
    }
    fn pack(self) -> u64 {
        let expiry = u64::from(self.expiry & EXPIRY_MASK);
        (self.tick & 0xfff) << 52 | (self.epoch & 0xfff) << 40 | (self.count & COUNT_MAX) << 24 | expiry
    }
}

/// True when millisecond time `a` is after `b` (both modulo 2^24, less than 2^23 apart).
fn after(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b) & EXPIRY_MASK;
    d != 0 && d < 1 << 23
}

fn ms(ns: u64) -> u32 {
    (ns / 1_000_000) as u32 & EXPIRY_MASK
}

impl Sleepers {
    fn new() -> Sleepers {
        Sleepers { seq: SharedWord::new(0), _pad: AtomicU32::new(0), lease: AtomicU64::new(0) }
    }

    /// Counts the caller as a sleeper until `expiry` (ms); returns the epoch to unregister from.
    fn register(&self, expiry: u32) -> u64 {
        let mut w = self.lease.load(Relaxed);
        loop {
            let l = Lease::unpack(w);
            let expiry = if l.count == 0 || after(expiry, l.expiry) { expiry } else { l.expiry };
            let new = Lease { tick: l.tick + 1, count: (l.count + 1).min(COUNT_MAX), expiry, ..l };
            match self.lease.compare_exchange_weak(w, new.pack(), SeqCst, Relaxed) {
                Ok(_) => return l.epoch,
                Err(v) => w = v,
            }
        }
    }

    fn unregister(&self, epoch: u64) {
        let mut w = self.lease.load(Relaxed);
        loop {
            let l = Lease::unpack(w);
            if l.epoch != epoch || l.count == 0 {
                return;
            }
            match self.lease.compare_exchange_weak(w, Lease { count: l.count - 1, ..l }.pack(), SeqCst, Relaxed) {
                Ok(_) => return,
                Err(v) => w = v,
            }
        }
    }

    /// Wakes up to `n` sleepers, if the lease shows any. The caller's commit store (SeqCst)
    /// precedes this.
    fn wake(&self, n: u32) {
        let w = self.lease.load(SeqCst);
        let l = Lease::unpack(w);
        if l.count == 0 {
            return;
        }
        self.seq.fetch_add(1, Release);
        self.seq.wake(n);
        // When every counted sleeper was woken (or its slice has ended: it died asleep, or is
        // about to re-check anyway), and nobody registered or unregistered since the load (the
        // tick and count are in the compared word), start a new epoch with none counted: later
        // commits make no system call until somebody sleeps again. Sleepers of the old epoch do
        // not unregister.
        if l.count <= u64::from(n) || after(ms(now_ns()), l.expiry) {
            let _ = self.lease.compare_exchange(w, Lease { epoch: l.epoch + 1, count: 0, ..l }.pack(), SeqCst, Relaxed);
        }
    }

    /// Wakes every sleeper, counted or not.
    fn wake_all(&self) {
        self.seq.fetch_add(1, Release);
        self.seq.wake(u32::MAX);
    }

    /// Sleeps until woken, the end of a slice or `deadline` (not `Now`), unless `ready()`
    /// (checked after registering, with SeqCst loads). `Ok` means: check again.
    fn sleep(&self, deadline: Deadline, ready: &dyn Fn() -> bool, what: &'static str) -> Result<()> {
        let seq = self.seq.load(Acquire);
        let (until, is_slice) = deadline.capped(SLEEP_SLICE_NS);
        let end = match until {
            Deadline::At(t) => t,
            _ => now_ns() + SLEEP_SLICE_NS,
        };
        // The futex wait ends by `end`; the expiry is the next whole millisecond after it, plus one.
        let epoch = self.register(ms(end).wrapping_add(2) & EXPIRY_MASK);
        let w = if ready() { Wait::Woken } else { self.seq.wait(seq, until, Interrupt::Cancellable) };
        self.unregister(epoch);
        match w {
            Wait::Woken => Ok(()),
            Wait::TimedOut if is_slice => Ok(()),
            w => Err(Error::from_wait(w, deadline, what)),
        }
    }
}

/// The queue's payload header (see the module documentation).
#[repr(C)]
struct QueueHeader {
    magic: AtomicU32,
    version: AtomicU32,
    kind: AtomicU32,
    flags: AtomicU32,
    maxsize: AtomicU64,
    ring_size: AtomicU64,
    shutdown: AtomicU32,
    _r0: [AtomicU32; 7],

    done: SharedWord,
    _r1: AtomicU32,
    joiners: Sleepers,
    _r1b: [AtomicU64; 5],

    p_lock: RobustLock,
    head_seen: AtomicU64,
    _r2: [AtomicU64; 5],

    tail: AtomicU64,
    _r3: [AtomicU64; 7],

    c_lock: RobustLock,
    tail_seen: AtomicU64,
    _r4: [AtomicU64; 5],

    head: AtomicU64,
    _r5: [AtomicU64; 7],

    not_empty: Sleepers,
    _r6: [AtomicU64; 6],

    not_full: Sleepers,
    _r7: [AtomicU64; 6],
}

// SAFETY: #[repr(C)], made only of atomics, futex words and RobustLocks (atomics), no
// pointers, alignment 8.
unsafe impl SharedPod for QueueHeader {}

// Shared with other processes (possibly other builds): pin the layout down.
const _: () = assert!(size_of::<QueueHeader>() as u64 == HEADER_SIZE);
const _: () = assert!(offset_of!(QueueHeader, shutdown) == 32 && offset_of!(QueueHeader, done) == 64);
const _: () = assert!(offset_of!(QueueHeader, joiners) == 72);
const _: () = assert!(offset_of!(QueueHeader, p_lock) == 128 && offset_of!(QueueHeader, head_seen) == 144);
const _: () = assert!(offset_of!(QueueHeader, tail) == 192 && offset_of!(QueueHeader, c_lock) == 256);
const _: () = assert!(offset_of!(QueueHeader, tail_seen) == 272 && offset_of!(QueueHeader, head) == 320);
const _: () = assert!(offset_of!(QueueHeader, not_empty) == 384 && offset_of!(QueueHeader, not_full) == 448);
const _: () = assert!(DEFAULT_RING % 8 == 0);

impl QueueHeader {
    fn new(kind: Kind, joinable: bool, maxsize: u64, ring: u64) -> QueueHeader {
        QueueHeader {
            magic: AtomicU32::new(MAGIC),
            version: AtomicU32::new(VERSION),
            kind: AtomicU32::new(kind.code()),
            flags: AtomicU32::new(if joinable { FLAG_JOINABLE } else { 0 }),
            maxsize: AtomicU64::new(maxsize),
            ring_size: AtomicU64::new(ring),
            shutdown: AtomicU32::new(OPEN),
            _r0: Default::default(),
            done: SharedWord::new(0),
            _r1: AtomicU32::new(0),
            joiners: Sleepers::new(),
            _r1b: Default::default(),
            p_lock: RobustLock::new(),
            head_seen: AtomicU64::new(0),
            _r2: Default::default(),
            tail: AtomicU64::new(0),
            _r3: Default::default(),
            c_lock: RobustLock::new(),
            tail_seen: AtomicU64::new(0),
            _r4: Default::default(),
            head: AtomicU64::new(0),
            _r5: Default::default(),
            not_empty: Sleepers::new(),
            _r6: Default::default(),
            not_full: Sleepers::new(),
            _r7: Default::default(),
        }
    }
}

/// A position in the ring: item sequence number and byte offset, one u64 in shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    seq: u32,
    off: u32,
}

impl Cursor {
    fn load(a: &AtomicU64, order: std::sync::atomic::Ordering) -> Cursor {
        let w = a.load(order);
        Cursor { seq: (w >> 32) as u32, off: w as u32 }
    }
    fn word(self) -> u64 {
        u64::from(self.seq) << 32 | u64::from(self.off)
    }
}

/// Bytes a record of an item of `len` bytes takes.
fn record_size(len: u64) -> u64 {
    RECORD_HEAD + len.div_ceil(8) * 8
}

fn closed() -> Error {
    Error::new(WEFT_CLOSED, "the queue is shut down")
}

fn corrupted(what: String) -> Error {
    Error::new(WEFT_CORRUPTED, format!("shared queue: {what}"))
}

/// Which side's lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Producers,
    Consumers,
}

/// A held queue lock; released when dropped.
struct Held<'a>(&'a RobustLock);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

/// The outcome of one attempt to take items.
enum Take {
    /// This many items were taken (at least 1).
    Took(usize),
    /// The first item is there but the visitor left it.
    Refused,
    /// No item, not shut down.
    Empty,
    /// Shut down, and no item will come (or shut down immediately).
    Closed,
}


/// 0 unknown, 1 spinning pays (several CPUs), 2 it does not.
static SPIN_PAYS: AtomicU8 = AtomicU8::new(0);

fn spinning_pays() -> bool {
    match SPIN_PAYS.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // CPUs online, not this process's affinity: the other side may run on another CPU
            // even when this process is pinned to one.
            // SAFETY: sysconf has no memory-safety preconditions.
            let many = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } > 1;
            SPIN_PAYS.store(if many { 1 } else { 2 }, Relaxed);
            many
        }
    }
}

/// A handle's adaptive spinning budget for one kind of wait: doubled when a spin saw the
/// condition come true, halved when it did not (and the caller slept). Spinning pays when the
/// other side runs on another CPU and answers within microseconds; when it does not (it waits
/// for a CPU, or is idle), the budget shrinks so that waiting costs little more than a sleep.
/// At the smallest budget, one wait in 32 spins for the largest, so that two processes that
/// both took to sleeping (each then answering slowly, which keeps the other's budget small)
/// find their way back to spinning.
#[derive(Debug)]
struct Spin {
    budget: AtomicU32,
    waits: AtomicU32,
}

impl Spin {
    fn new() -> Spin {
        Spin { budget: AtomicU32::new(SPIN_MAX_NS), waits: AtomicU32::new(0) }
    }

    /// Spins within the budget until `ready()` and adapts the budget.
    fn until(&self, deadline: Deadline, ready: &dyn Fn() -> bool) -> bool {
        if ready() {
            return true;
        }
        let budget = self.budget.load(Relaxed);
        let probe = budget <= SPIN_MIN_NS && self.waits.fetch_add(1, Relaxed) % SPIN_PROBE_EVERY == 0;
        let ok = spin_until(deadline, u64::from(if probe { SPIN_MAX_NS } else { budget }), ready);
        let next = if ok { budget.saturating_mul(2) } else { budget / 2 };
        self.budget.store(next.clamp(SPIN_MIN_NS, SPIN_MAX_NS), Relaxed);
        ok
    }
}

/// Spins for about `budget_ns` (never past `deadline`) until `ready()`; returns its last answer.
fn spin_until(deadline: Deadline, budget_ns: u64, ready: &dyn Fn() -> bool) -> bool {
    if ready() {
        return true;
    }
    if !spinning_pays() || deadline == Deadline::Now {
        return false;
    }
    let start = now_ns();
    let end = match deadline {
        Deadline::At(t) => t.min(start + budget_ns),
        _ => start + budget_ns,
    };
    // Past the first microseconds, yield the CPU between checks: when the other side waits
    // for this CPU (the scheduler likes to wake a process on its waker's CPU), it runs now
    // rather than after the spin, and two processes that both spin get separated.
    let pure = start + SPIN_PURE_NS;
    let mut i = 0u32;
    let mut pauses = 1u32;
    loop {
        for _ in 0..pauses {
            std::hint::spin_loop();
        }
        pauses = (pauses * 2).min(SPIN_PAUSES_MAX);
        if ready() {
            return true;
        }
        i = i.wrapping_add(1);
        if i % 32 == 0 {
            let now = now_ns();
            if now >= end {
                return false;
            }
            if now >= pure {
                std::thread::yield_now();
            }
        }
    }
}

/// A queue of byte strings in a space: Python's `multiprocessing.Queue` (and
/// `JoinableQueue`, `SimpleQueue`), and `LifoQueue` and `PriorityQueue` too, with the semantics
/// of Python 3.13's `queue` module (see [`crate::queue`]), crash-safe (see the module
/// documentation, and `ordered.rs` for the LIFO and priority kinds).
///
/// Bounded by items (`maxsize`, 0 = unbounded by count) and always by bytes. A FIFO or simple
/// queue's ring holds `max_bytes` bytes (rounded up to a multiple of 8; when 0, 1 MiB less 576
/// bytes of headers), each item taking 8 bytes plus its length rounded up to a multiple of 8;
/// an item that could never fit (longer than the ring minus 8) is refused with
/// `WEFT_INVALID_ARGUMENT`. A LIFO or priority queue's arena holds `max_bytes` bytes (rounded
/// up to a multiple of 64; when 0, as much as fits a 1 MiB block with the index), each item
/// taking 64 bytes per started 64 of its length plus 24; an item longer than the arena minus
/// 24 is refused.
///
/// The queue's locks are held for the length of one copy; a call waits for a busy one
/// even with `Deadline::Now` or a short timeout, for up to 10 ms (then `WEFT_WOULD_BLOCK` or
/// `WEFT_TIMEOUT`). A lock whose holder died is taken over and the queue checked, silently.
///
/// Every operation may also fail with `WEFT_CORRUPTED` (shared state failed validation),
/// `WEFT_NOT_RECOVERABLE` (a lock was left unrecoverable) and `WEFT_CANCELLED` (a blocking
/// call of a weft thread asked to cancel).
///
/// Thread safety: `Send + Sync`; any number of threads of any number of processes may use the
/// same queue at once, each through its own handle or sharing one.
pub struct SharedQueue {
    r: SharedRef,
    opts: Options,
    ring: u64,
    /// Most items at once: `maxsize` when set, and never more than `ring / 8`.
    cap: u32,
    /// This handle's spinning budgets for an empty `get` and a full `put`.
    spin_get: Spin,
    spin_put: Spin,
    /// The pollable descriptor's watcher, once `fd` was called.
    watcher: std::sync::Mutex<Option<watch::Watcher>>,
}

// The documented thread safety.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SharedQueue>();
};

impl std::fmt::Debug for SharedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedQueue")
            .field("object", self.r.object())
            .field("options", &self.opts)
            .field("qsize", &self.qsize())
            .finish()
    }
}

impl SharedQueue {
    /// Creates an empty queue in the space `handle`, named `name` in its directory (or
    /// unnamed: reach it with a [`token`](Self::token)).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for options that [`Options::check`] refuses or a
    /// `max_bytes` outside 64 bytes..=1 GiB; those of [`SharedRef::create`]
    /// (`WEFT_EXISTS`, `WEFT_NO_MEMORY` when the space is too small...).
    /// Thread safety: callable from any thread of any process.
    pub fn create(handle: Arc<SpaceHandle>, name: Option<&str>, opts: Options) -> Result<SharedQueue> {
        opts.check()?;
        if ordered::is_ordered(opts.kind) {
            return SharedQueue::create_ordered(handle, name, opts);
        }
        let ring = match opts.max_bytes {
            0 => DEFAULT_RING,
            b => b.checked_add(7).map_or(u64::MAX, |b| b / 8 * 8),
        };
        if !(MIN_RING..=MAX_RING).contains(&ring) {
            return Err(Error::invalid(format!(
                "a shared queue holds from {MIN_RING} to {MAX_RING} bytes, not {}",
                opts.max_bytes
            )));
        }
        let mut init = |p: *mut u8| {
            let header = QueueHeader::new(opts.kind, opts.joinable, opts.maxsize as u64, ring);
            // SAFETY: create_object hands over a fresh, zero-filled, 64-aligned payload of
            // HEADER_SIZE + ring bytes that no other thread or process can reach yet; the
            // header fits (HEADER_SIZE bytes, alignment 8).
            unsafe { (p as *mut QueueHeader).write(header) };
            Ok(())
        };
        let r = SharedRef::create(handle, KIND_QUEUE, HEADER_SIZE + ring, name, &mut init)?;
        SharedQueue::from_ref(r)
    }

    /// Opens the queue named `name` in the space `handle`.
    ///
    /// Errors: those of [`SharedRef::open`] (`WEFT_NOT_FOUND`, `WEFT_INVALID_ARGUMENT` when
    /// the object is not a queue); `WEFT_CORRUPTED` when its header fails validation.
    /// Thread safety: callable from any thread of any process.
    pub fn open(handle: Arc<SpaceHandle>, name: &str) -> Result<SharedQueue> {
        SharedQueue::from_ref(SharedRef::open(handle, name, KIND_QUEUE, None)?)
    }

    /// Opens the queue a [`token`](Self::token) designates (in this or another process).
    ///
    /// Errors: those of [`SharedRef::from_token`]; `WEFT_CORRUPTED` when its header fails
    /// validation.
    /// Thread safety: callable from any thread of any process.
    pub fn from_token(token: &[u8]) -> Result<SharedQueue> {
        SharedQueue::from_ref(SharedRef::from_token(token, KIND_QUEUE, None)?)
    }

    /// Opens the queue a token designates without a reference of its own (see
    /// `SharedRef::from_token_borrowed`): whoever holds the token's queue must outlive this
    /// handle.
    pub(crate) fn from_token_borrowed(token: &[u8]) -> Result<SharedQueue> {
        SharedQueue::from_ref(SharedRef::from_token_borrowed(token, KIND_QUEUE, None)?)
    }

    /// Validates the header once and keeps what it validated.
    fn from_ref(r: SharedRef) -> Result<SharedQueue> {
        let size = r.object().size;
        let h = r.get::<QueueHeader>()?;
        let (magic, version) = (h.magic.load(Relaxed), h.version.load(Relaxed));
        if magic != MAGIC || version != VERSION {
            return Err(corrupted(format!("fields `magic` {magic:#010x} / `version` {version} do not describe a queue")));
        }
        let code = h.kind.load(Relaxed);
        let Ok(kind) = Kind::from_code(code) else {
            return Err(corrupted(format!("field `kind` is {code}, not a shared queue kind")));
        };
        let ordered = ordered::is_ordered(kind);
        let flags = h.flags.load(Relaxed);
        let (maxsize, ring) = (h.maxsize.load(Relaxed), h.ring_size.load(Relaxed));
        if flags & !FLAG_JOINABLE != 0 || (kind == Kind::Simple && (maxsize != 0 || flags != 0)) {
            return Err(corrupted(format!("fields `flags` {flags:#x} / `maxsize` {maxsize} are invalid for its kind")));
        }
        let expected = if ordered {
            ordered::payload_size(maxsize, ring)
        } else if ring % 8 == 0 && (MIN_RING..=MAX_RING).contains(&ring) {
            HEADER_SIZE.checked_add(ring)
        } else {
            None
        };
        if expected != Some(size) {
            return Err(corrupted(format!("a ring of {ring} bytes does not match a payload of {size} bytes")));
        }
        let maxsize = usize::try_from(maxsize).map_err(|_| corrupted(format!("field `maxsize` is {maxsize}")))?;
        let cap = if ordered {
            ordered::capacity(maxsize as u64, ring)
        } else {
            match maxsize as u64 {
                0 => ring / 8,
                m => m.min(ring / 8),
            }
        } as u32;
        let opts = Options { kind, maxsize, max_bytes: ring, joinable: flags & FLAG_JOINABLE != 0 };
        Ok(SharedQueue { r, opts, ring, cap, spin_get: Spin::new(), spin_put: Spin::new(), watcher: std::sync::Mutex::new(None) })
    }

    /// The token designating this queue, for [`from_token`](Self::from_token) in another
    /// process.
    pub fn token(&self) -> Vec<u8> {
        self.r.token()
    }

    /// The reference to the queue object (its space, offset, serial).
    pub fn shared(&self) -> &SharedRef {
        &self.r
    }

    /// The queue's options, as created (`max_bytes` is the ring's actual size).
    pub fn options(&self) -> Options {
        self.opts
    }

    fn header(&self) -> &QueueHeader {
        // SAFETY: `from_ref` checked (SharedRef::get) that the payload holds a QueueHeader; the
        // payload is 64-aligned, all atomics (any bit pattern valid, shared mutation through `&`
        // allowed), and mapped while `self.r` lives.
        unsafe { &*(self.r.payload() as *const QueueHeader) }
    }

    fn ring_ptr(&self) -> *mut u8 {
        // SAFETY: the payload holds HEADER_SIZE + ring bytes (checked by `from_ref`).
        unsafe { self.r.payload().add(HEADER_SIZE as usize) }
    }

    /// `x` modulo the ring's size (offsets past the end are rare: no division on the way).
    #[inline]
    fn wrap(&self, x: u64) -> u64 {
        if x < self.ring {
            x
        } else if x < 2 * self.ring {
            x - self.ring
        } else {
            x % self.ring
        }
    }

    /// The 32-bit word at ring offset `off` (reduced to an aligned offset inside the ring).
    fn ring_word(&self, off: u64) -> &AtomicU32 {
        let off = self.wrap(off) & !3;
        // SAFETY: `off + 4 <= ring` (ring is a multiple of 8, `off` a multiple of 4 below it),
        // the ring starts 64-aligned, so the word is aligned and inside the mapping kept alive
        // by `self.r`; AtomicU32 accepts any bits and shared mutation.
        unsafe { &*(self.ring_ptr().add(off as usize) as *const AtomicU32) }
    }

    /// Copies `src` into the ring from offset `off`, continuing at 0 past the end.
    fn copy_in(&self, off: u64, src: &[u8]) {
        let off = self.wrap(off);
        let len = (src.len() as u64).min(self.ring);
        let first = len.min(self.ring - off);
        // SAFETY: [off, off + first) and [0, len - first) lie inside the ring (len <= ring,
        // first <= ring - off); `src` is caller memory, not the ring. The bytes are free (no
        // consumer reads them before the commit that follows).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ring_ptr().add(off as usize), first as usize);
            step();
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first as usize), self.ring_ptr(), (len - first) as usize);
        }
    }

    /// Copies `dst.len()` bytes out of the ring from offset `off`, continuing at 0 past the end.
    fn copy_out(&self, off: u64, dst: &mut [u8]) {
        let off = self.wrap(off);
        let len = (dst.len() as u64).min(self.ring);
        let first = len.min(self.ring - off);
        // SAFETY: as in `copy_in`, the ranges lie inside the ring and `dst` is caller memory.
        // The bytes belong to a committed record no producer writes before `head` moves.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ring_ptr().add(off as usize), dst.as_mut_ptr(), first as usize);
            step();
            std::ptr::copy_nonoverlapping(self.ring_ptr(), dst.as_mut_ptr().add(first as usize), (len - first) as usize);
        }
    }

    /// Copies `dst.len()` bytes of the item a visitor was offered at `at` (a ring offset, or an
    /// ordered queue's first chunk).
    fn copy_item(&self, at: u64, dst: &mut [u8]) {
        if ordered::is_ordered(self.opts.kind) {
            self.copy_chunks(at as u32, dst);
        } else {
            self.copy_out(at, dst);
        }
    }

    /// Checks a (head, tail) pair; returns the items and bytes between them.
    fn span(&self, head: Cursor, tail: Cursor) -> Result<(u32, u64)> {
        let (h, t) = (u64::from(head.off), u64::from(tail.off));
        if h >= self.ring || t >= self.ring || h % 8 != 0 || t % 8 != 0 {
            return Err(corrupted(format!("cursor offsets {h} / {t} are not 8-aligned offsets of a {}-byte ring", self.ring)));
        }
        let count = tail.seq.wrapping_sub(head.seq);
        let mut used = self.wrap(t + self.ring - h);
        if used == 0 && count > 0 {
            used = self.ring;
        }
        if count > self.cap || (count == 0 && used != 0) || used < RECORD_HEAD * u64::from(count) {
            return Err(corrupted(format!(
                "cursors ({}, {h}) / ({}, {t}): {count} items in {used} bytes (at most {} items)",
                head.seq, tail.seq, self.cap
            )));
        }
        Ok((count, used))
    }

    fn fits(&self, count: u32, used: u64, rec: u64) -> bool {
        count < self.cap && used + rec <= self.ring
    }

    fn check_size(&self, len: usize) -> Result<u64> {
        let rec = record_size(len as u64);
        if rec > self.ring {
            return Err(Error::new(
                WEFT_INVALID_ARGUMENT,
                format!("an item of {len} bytes never fits this queue's {}-byte ring (at most {} bytes)", self.ring, self.ring - 8),
            ));
        }
        Ok(rec)
    }

    fn shutdown_state(&self) -> Result<u32> {
        match self.header().shutdown.load(Acquire) {
            s @ (OPEN | SHUT | SHUT_NOW) => Ok(s),
            s => Err(corrupted(format!("field `shutdown` is {s}"))),
        }
    }

    /// Takes one side's lock, spinning briefly on a held one first. A dead holder's lock is
    /// repaired (checked cursors, reset hint) and marked consistent.
    ///
    /// A lock is held for one copy, so, as for the mutex inside Python's queues, a caller with
    /// a short timeout (or none) still waits up to `LOCK_GRACE_NS` for a busy one: its timeout
    /// governs the wait for items or room. Past the grace, `Deadline::Now` gives
    /// `WEFT_WOULD_BLOCK`.
    fn lock(&self, side: Side, deadline: Deadline, interrupt: Interrupt) -> Result<Held<'_>> {
        let h = self.header();
        let lock = if side == Side::Producers { &h.p_lock } else { &h.c_lock };
        if lock.locked() {
            spin_until(Deadline::Never, LOCK_SPIN_NS, &|| !lock.locked());
        }
        let lock_deadline = match deadline {
            Deadline::Never => Deadline::Never,
            Deadline::At(t) if t > now_ns().saturating_add(LOCK_GRACE_NS) => deadline,
            _ => Deadline::from_timeout_ns(LOCK_GRACE_NS),
        };
        match lock.acquire(lock_deadline, interrupt) {
            Ok(()) => Ok(Held(lock)),
            Err(e) if e.code == WEFT_OWNER_DEAD => {
                let held = Held(lock);
                let checked = self.repair(side);
                lock.mark_consistent()?;
                checked.map(|_| held)
            }
            Err(e) if e.code == WEFT_TIMEOUT && deadline == Deadline::Now => {
                Err(Error::would_block("another thread holds the queue's lock"))
            }
            Err(e) => Err(e),
        }
    }

    /// After a holder of `side`'s lock died: nothing is half-committed (see the module
    /// documentation); check the cursors and reset the side's hint.
    fn repair(&self, side: Side) -> Result<()> {
        if ordered::is_ordered(self.opts.kind) {
            return self.repair_ordered(side);
        }
        let h = self.header();
        let head = Cursor::load(&h.head, Acquire);
        let tail = Cursor::load(&h.tail, Acquire);
        self.span(head, tail)?;
        match side {
            Side::Producers => h.head_seen.store(head.word(), Relaxed),
            Side::Consumers => h.tail_seen.store(tail.word(), Relaxed),
        }
        Ok(())
    }

    // ---- putting -------------------------------------------------------------------------

    /// Puts `item` into the queue, waiting while it is full (by count or by bytes) until
    /// `deadline`. `priority` orders a priority queue (the lowest first, first in first out
    /// among equals); the other kinds ignore it.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for an item that never fits the queue's storage;
    /// `WEFT_CLOSED` once the queue is shut down; `WEFT_WOULD_BLOCK` (`Deadline::Now`, full) and
    /// `WEFT_TIMEOUT`; `WEFT_CANCELLED`; `WEFT_CORRUPTED`.
    /// Thread safety: callable from any thread of any process.
    pub fn put(&self, item: &[u8], priority: i64, deadline: Deadline) -> Result<()> {
        self.put_many(&[item], priority, deadline).1
    }

    /// Puts the 8 native-endian bytes of `word` (see [`put`](Self::put)).
    ///
    /// Errors: as [`put`](Self::put).
    pub fn put_word(&self, word: usize, priority: i64, deadline: Deadline) -> Result<()> {
        self.put(&word.to_ne_bytes(), priority, deadline)
    }

    /// Puts `items` in order, as [`put`](Self::put) would one by one (waiting for room as
    /// needed, until `deadline`), but writing as many as fit under one lock (and, for the FIFO
    /// and simple kinds, one commit; the LIFO and priority kinds commit each item).
    /// Returns how many were put and `Ok`, or the error that stopped it after that many. An
    /// item that never fits is refused before anything is put: `(0, WEFT_INVALID_ARGUMENT)`.
    ///
    /// Errors: as [`put`](Self::put).
    /// Thread safety: callable from any thread of any process (another producer's items may
    /// come between two of these when it has to wait for room).
    pub fn put_many(&self, items: &[&[u8]], priority: i64, deadline: Deadline) -> (usize, Result<()>) {
        if ordered::is_ordered(self.opts.kind) {
            return self.put_many_ordered(items, priority, deadline);
        }
        for item in items {
            if let Err(e) = self.check_size(item.len()) {
                return (0, Err(e));
            }
        }
        let mut done = 0;
        while done < items.len() {
            match self.try_put(&items[done..], deadline) {
                Ok(n) => done += n,
                Err(e) => return (done, Err(e)),
            }
            if done == items.len() {
                break;
            }
            let rec = record_size(items[done].len() as u64);
            if let Err(e) = self.wait_room(rec, deadline) {
                return (done, Err(e));
            }
        }
        (done, Ok(()))
    }

    /// One attempt: writes as many of `items` as fit, commits them with one store of `tail`.
    fn try_put(&self, items: &[&[u8]], deadline: Deadline) -> Result<usize> {
        let h = self.header();
        let held = self.lock(Side::Producers, deadline, Interrupt::Cancellable)?;
        step();
        if self.shutdown_state()? != OPEN {
            return Err(closed());
        }
        let mut tail = Cursor::load(&h.tail, Relaxed);
        let hint = Cursor::load(&h.head_seen, Relaxed);
        let (mut count, mut used, mut fresh) = match self.span(hint, tail) {
            Ok((c, u)) => (c, u, false),
            Err(_) => (self.cap, self.ring, false), // a damaged hint: look at `head` itself
        };
        let mut n = 0;
        for item in items {
            let rec = record_size(item.len() as u64);
            if !self.fits(count, used, rec) {
                if fresh {
                    break;
                }
                let head = Cursor::load(&h.head, Acquire);
                (count, used) = self.span(head, tail)?;
                h.head_seen.store(head.word(), Relaxed);
                fresh = true;
                if !self.fits(count, used, rec) {
                    break;
                }
            }
            self.ring_word(u64::from(tail.off)).store(item.len() as u32, Relaxed);
            self.ring_word(u64::from(tail.off) + 4).store(tail.seq ^ TAG_KEY, Relaxed);
            step();
            self.copy_in(u64::from(tail.off) + RECORD_HEAD, item);
            step();
            tail = Cursor { seq: tail.seq.wrapping_add(1), off: self.wrap(u64::from(tail.off) + rec) as u32 };
            count += 1;
            used += rec;
            n += 1;
        }
        if n > 0 {
            h.tail.store(tail.word(), SeqCst); // the commit
            step();
        }
        drop(held);
        step();
        if n > 0 {
            h.not_empty.wake(n as u32);
        }
        Ok(n)
    }

    /// Waits until a record of `rec` bytes may fit (or the queue is shut down).
    fn wait_room(&self, rec: u64, deadline: Deadline) -> Result<()> {
        if deadline == Deadline::Now {
            return Err(Error::would_block("the queue is full"));
        }
        if deadline.expired() {
            return Err(Error::timeout("timed out waiting for room in the queue"));
        }
        let h = self.header();
        let ready = || {
            h.shutdown.load(SeqCst) != OPEN || {
                let head = Cursor::load(&h.head, SeqCst);
                let tail = Cursor::load(&h.tail, SeqCst);
                self.span(head, tail).map_or(true, |(c, u)| self.fits(c, u, rec))
            }
        };
        if self.spin_put.until(deadline, &ready) {
            return Ok(());
        }
        h.not_full.sleep(deadline, &ready, "timed out waiting for room in the queue")
    }

    // ---- getting -------------------------------------------------------------------------

    /// One attempt: under the consumers' lock, offers up to `max` items present to `visit`
    /// (data offset, length), which copies one out and returns true, or returns false (or an
    /// error) to leave it; commits the taken ones with one store of `head`.
    fn try_take(
        &self,
        max: usize,
        deadline: Deadline,
        visit: &mut dyn FnMut(u64, usize) -> Result<bool>,
    ) -> Result<Take> {
        let h = self.header();
        let held = self.lock(Side::Consumers, deadline, Interrupt::Cancellable)?;
        step();
        // Read before `tail`: when shut down, every item put before it is visible below.
        let state = self.shutdown_state()?;
        if state == SHUT_NOW {
            return Ok(Take::Closed);
        }
        let mut head = Cursor::load(&h.head, Relaxed);
        let hint = Cursor::load(&h.tail_seen, Relaxed);
        let (mut count, mut used) = match self.span(head, hint) {
            Ok((c, u)) if c as usize >= max => (c, u),
            _ => {
                let tail = Cursor::load(&h.tail, Acquire);
                let s = self.span(head, tail)?;
                h.tail_seen.store(tail.word(), Relaxed);
                s
            }
        };
        if count == 0 {
            return Ok(if state == OPEN { Take::Empty } else { Take::Closed });
        }
        let mut n = 0;
        let mut failure = None;
        while n < max && count > 0 {
            let off = u64::from(head.off);
            let len = self.ring_word(off).load(Relaxed);
            let tag = self.ring_word(off + 4).load(Relaxed);
            let rec = record_size(u64::from(len));
            if tag != head.seq ^ TAG_KEY || rec > used || (count == 1 && rec != used) {
                failure = Some(corrupted(format!(
                    "record {} at offset {off}: length {len} / tag {tag:#x} do not fit its {used} occupied bytes",
                    head.seq
                )));
                break;
            }
            match visit(off + RECORD_HEAD, len as usize) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            step();
            head = Cursor { seq: head.seq.wrapping_add(1), off: self.wrap(off + rec) as u32 };
            count -= 1;
            used -= rec;
            n += 1;
        }
        if n > 0 {
            h.head.store(head.word(), SeqCst); // the commit
            step();
        }
        drop(held);
        step();
        if n > 0 {
            h.not_full.wake(u32::MAX);
            return Ok(Take::Took(n));
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(Take::Refused),
        }
    }

    /// Waits until an item may be there (or the queue is shut down).
    fn wait_items(&self, deadline: Deadline) -> Result<()> {
        if deadline == Deadline::Now {
            return Err(Error::would_block("the queue is empty"));
        }
        if deadline.expired() {
            return Err(Error::timeout("timed out waiting for an item"));
        }
        let h = self.header();
        let ready = || {
            h.shutdown.load(SeqCst) != OPEN || Cursor::load(&h.tail, SeqCst).seq != Cursor::load(&h.head, SeqCst).seq
        };
        if self.spin_get.until(deadline, &ready) {
            return Ok(());
        }
        h.not_empty.sleep(deadline, &ready, "timed out waiting for an item")
    }

    /// Takes up to `max` items through `visit`, waiting for the first until `deadline`.
    /// Returns how many were taken (0: the first was refused).
    fn take(&self, max: usize, deadline: Deadline, visit: &mut dyn FnMut(u64, usize) -> Result<bool>) -> Result<usize> {
        loop {
            let attempt = if ordered::is_ordered(self.opts.kind) {
                self.try_take_ordered(max, deadline, visit)
            } else {
                self.try_take(max, deadline, visit)
            };
            let r = match attempt {
                Ok(Take::Took(n)) => return Ok(n),
                Ok(Take::Refused) => Ok(0),
                Ok(Take::Closed) => Err(closed()),
                Ok(Take::Empty) => match self.wait_items(deadline) {
                    Ok(()) => continue,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            // Leaving without an item: a wake meant for an item may have come to this caller;
            // pass it on to another sleeper.
            self.header().not_empty.wake(1);
            return r;
        }
    }

    /// Removes and returns the next item (the oldest, the newest for LIFO, the lowest priority
    /// for priority), waiting until `deadline` while the queue is empty.
    ///
    /// Errors: `WEFT_WOULD_BLOCK` (`Deadline::Now`, empty) and `WEFT_TIMEOUT`; `WEFT_CLOSED`
    /// when shut down and empty (at once after an immediate shutdown); `WEFT_CANCELLED`;
    /// `WEFT_CORRUPTED`.
    /// Thread safety: callable from any thread of any process.
    pub fn get(&self, deadline: Deadline) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.take(1, deadline, &mut |off, len| {
            out = vec![0; len];
            self.copy_item(off, &mut out);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Removes the next item, which must be exactly 8 bytes, and returns it as a native-endian
    /// word.
    ///
    /// Errors: as [`get`](Self::get); `WEFT_INVALID_STATE` when the next item is not 8 bytes
    /// long (it stays in the queue).
    pub fn get_word(&self, deadline: Deadline) -> Result<usize> {
        let mut word = [0u8; 8];
        self.take(1, deadline, &mut |off, len| {
            if len != 8 {
                return Err(Error::new(WEFT_INVALID_STATE, format!("the next item is {len} bytes, not a word")));
            }
            self.copy_item(off, &mut word);
            Ok(true)
        })?;
        Ok(usize::from_ne_bytes(word))
    }

    /// Removes the next item into `buf`: `Filled::Item(len)`; or, when `buf` is too small,
    /// leaves it in the queue and returns `Filled::TooSmall(len)`.
    ///
    /// Errors: as [`get`](Self::get).
    pub fn get_into(&self, buf: &mut [u8], deadline: Deadline) -> Result<Filled> {
        let mut size = 0;
        let n = self.take(1, deadline, &mut |off, len| {
            size = len;
            if len > buf.len() {
                return Ok(false);
            }
            self.copy_item(off, &mut buf[..len]);
            Ok(true)
        })?;
        Ok(if n == 1 { Filled::Item(size) } else { Filled::TooSmall(size) })
    }

    /// Waits until `deadline` for at least one item, then removes and returns up to `max`
    /// items present, in order, under one lock (and one commit for the FIFO and simple kinds).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` when `max` is 0; as [`get`](Self::get).
    pub fn get_many(&self, max: usize, deadline: Deadline) -> Result<Vec<Vec<u8>>> {
        if max == 0 {
            return Err(Error::invalid("get_many needs a maximum of at least 1 item"));
        }
        let mut out = Vec::new();
        self.take(max, deadline, &mut |off, len| {
            let mut item = vec![0; len];
            self.copy_item(off, &mut item);
            out.push(item);
            Ok(true)
        })?;
        Ok(out)
    }

    // ---- state ---------------------------------------------------------------------------

    /// The number of items (approximate while others put and get; 0 after an immediate
    /// shutdown).
    pub fn qsize(&self) -> usize {
        let h = self.header();
        if h.shutdown.load(Acquire) == SHUT_NOW {
            return 0;
        }
        // head first: tail never passes it in between, so the difference is not negative.
        let head = Cursor::load(&h.head, Acquire);
        let tail = Cursor::load(&h.tail, Acquire);
        tail.seq.wrapping_sub(head.seq).min(self.cap) as usize
    }

    /// True when [`qsize`](Self::qsize) is 0.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// True when the queue is bounded by count and holds `maxsize` items (Python's `full()`;
    /// a queue may also be full by bytes, which depends on the next item's size).
    pub fn full(&self) -> bool {
        self.opts.maxsize > 0 && self.qsize() >= self.opts.maxsize
    }

    fn not_joinable(&self) -> Error {
        Error::new(WEFT_INVALID_STATE, "the queue was not created joinable (no task_done/join)")
    }

    /// Unfinished tasks with `done` task_done calls: every item put, minus those done (and
    /// after an immediate shutdown, minus those discarded).
    fn unfinished_with(&self, done: u32) -> u32 {
        let h = self.header();
        let top = if h.shutdown.load(SeqCst) == SHUT_NOW { &h.head } else { &h.tail };
        let u = Cursor::load(top, SeqCst).seq.wrapping_sub(done);
        // Above 2^31: task_done raced with an immediate shutdown (or garbage): none left.
        if u > i32::MAX as u32 {
            0
        } else {
            u
        }
    }

    /// Marks one item got earlier as processed (joinable queues).
    ///
    /// Errors: `WEFT_INVALID_STATE` when called more times than items were put;
    /// `WEFT_INVALID_STATE` for a queue that is not joinable.
    /// Thread safety: callable from any thread of any process.
    pub fn task_done(&self) -> Result<()> {
        if !self.opts.joinable {
            return Err(self.not_joinable());
        }
        let h = self.header();
        let mut d = h.done.load(SeqCst);
        loop {
            if self.unfinished_with(d) == 0 {
                return Err(Error::new(WEFT_INVALID_STATE, "task_done called more times than items were put"));
            }
            match h.done.compare_exchange(d, d.wrapping_add(1), SeqCst, SeqCst) {
                Ok(_) => break,
                Err(v) => d = v,
            }
        }
        if self.unfinished_with(d.wrapping_add(1)) == 0 {
            h.joiners.wake(u32::MAX);
        }
        Ok(())
    }

    /// Unfinished tasks: items put and not yet marked done (0 for a queue that is not
    /// joinable).
    pub fn unfinished(&self) -> usize {
        if !self.opts.joinable {
            return 0;
        }
        self.unfinished_with(self.header().done.load(SeqCst)) as usize
    }

    /// Waits until every item put has been marked done (or discarded by an immediate
    /// shutdown), until `deadline`.
    ///
    /// Errors: `WEFT_WOULD_BLOCK` (`Deadline::Now`) and `WEFT_TIMEOUT` while tasks remain;
    /// `WEFT_CANCELLED`; `WEFT_INVALID_STATE` for a queue that is not joinable.
    /// Thread safety: callable from any thread of any process.
    pub fn join(&self, deadline: Deadline) -> Result<()> {
        if !self.opts.joinable {
            return Err(self.not_joinable());
        }
        let h = self.header();
        let ready = || self.unfinished_with(h.done.load(SeqCst)) == 0;
        loop {
            if ready() {
                return Ok(());
            }
            if deadline == Deadline::Now {
                return Err(Error::would_block("the queue has unfinished tasks"));
            }
            if deadline.expired() {
                return Err(Error::timeout("timed out joining the queue"));
            }
            h.joiners.sleep(deadline, &ready, "timed out joining the queue")?;
        }
    }

    /// Shuts the queue down (Python 3.13): later puts, and blocked putters, get
    /// `WEFT_CLOSED`; gets drain the items left, then get `WEFT_CLOSED`. With `immediate`,
    /// the items left are discarded at once (each counted as done for [`join`](Self::join))
    /// and gets get `WEFT_CLOSED` at once. Wakes every waiter. Shutting down again is allowed
    /// (and may make a shutdown immediate).
    ///
    /// Errors: `WEFT_CORRUPTED`, `WEFT_NOT_RECOVERABLE` (from the locks it takes).
    /// Thread safety: callable from any thread of any process.
    pub fn shutdown(&self, immediate: bool) -> Result<()> {
        let h = self.header();
        if immediate {
            let c = self.lock(Side::Consumers, Deadline::Never, Interrupt::Uninterruptible)?;
            step();
            let p = self.lock(Side::Producers, Deadline::Never, Interrupt::Uninterruptible)?;
            step();
            h.shutdown.store(SHUT_NOW, SeqCst);
            step();
            drop(p);
            drop(c);
            step();
        } else {
            let p = self.lock(Side::Producers, Deadline::Never, Interrupt::Uninterruptible)?;
            let _ = h.shutdown.compare_exchange(OPEN, SHUT, SeqCst, Relaxed);
            drop(p);
        }
        h.not_empty.wake_all();
        h.not_full.wake_all();
        h.joiners.wake_all();
        Ok(())
    }

    /// True once [`shutdown`](Self::shutdown) was called (by any process).
    pub fn is_shut_down(&self) -> bool {
        self.header().shutdown.load(Acquire) != OPEN
    }
}
