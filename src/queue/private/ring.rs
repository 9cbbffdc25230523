//! The lock-free bounded ring behind private bounded FIFO queues: Dmitry Vyukov's bounded MPMC
//! queue in the form of crossbeam's `ArrayQueue` / bounded channel, with the item stored inline.
//!
//! # Layout
//!
//! `cap` slots of 16 bytes, each `{ stamp, data }`, and two positions, `head` (next to get)
//! and `tail` (next to put), each alone on its cache lines. A position packs a lap and an
//! index: `pos = lap * one_lap + index` with `index < cap`, `mark_bit = (cap +
//! 1).next_power_of_two()` and `one_lap = 2 * mark_bit`, so that the bit `mark_bit` of `tail`
//! is free: it is the shut-down mark. Positions only grow (wrapping after 2^64 / one_lap laps),
//! so a stale position never compares equal to a current one.
//!
//! A slot's `stamp` is one 64-bit atomic: the low 32 bits of a position (the "turn", below) in
//! its high half and the item's length in its low half; `data` holds the item's bytes (up to 8)
//! or the address of its heap block. Since the turn and the length travel together, a get that
//! reads the stamp also knows the length of the item it is about to take, with no extra load.
//!
//! # Turns
//!
//! A slot's turn says whose turn the slot is. Initially slot `i` has turn `i`: empty, for the
//! put at position `i`. A put at position `t` may use the slot when `turn == t`; after writing
//! `data` it stores the stamp `{ turn: t + 1, len }` (Release): full, for the get at position
//! `t`. A get at position `h` may use the slot when `turn == h + 1`; after reading `data` it
//! stores `turn = h + one_lap` (Release): empty, for the put one lap later. The Release store
//! and the Acquire load of the stamp hand `data` over.
//!
//! Turns are compared on their low 32 bits. A slot's real turn is always within a lap or two of
//! the current head and tail (`one_lap <= 2^29`), so for a current position the comparison is
//! exact. (Positions are loaded with Acquire: the chain of claims that produced a position
//! then happens before the load, and with it every stamp of the slot older than a lap, so the
//! stamp read cannot be older either.) For a stale position (read long ago) it may match by accident; the claim that
//! follows is a compare-and-exchange of the full 64-bit position, which then fails, so the only
//! cost is a retry (and a refusal re-checks its position, see "Peeking").
//!
//! # Put (get is symmetric)
//!
//! 1. Load `tail`. If it carries the mark: `WEFT_CLOSED`.
//! 2. `turn == tail`: claim the position with a compare-and-exchange of `tail` to the next
//!    position (SeqCst); the winner alone writes `data`, then publishes the stamp.
//! 3. `turn + one_lap == tail + 1` (the slot still holds the item of the previous lap): after a
//!    SeqCst fence, if `head + one_lap == tail` the ring is full (or shut down, if `tail`
//!    re-read after the fence carries the mark); otherwise a get is in the middle of emptying
//!    the slot: back off and retry.
//! 4. Anything else: another put claimed the position first; back off, reload, retry.
//!
//! A get that finds `turn == head` checks `tail` the same way: equal (without the mark) means
//! empty (or shut down, with the mark); otherwise a put is writing the slot: it waits for it.
//!
//! # Peeking
//!
//! Before claiming a full slot, a get shows the length from the stamp to its [`Taker`], which
//! may refuse the item (too small a buffer, not a word). A refused item is never claimed, so
//! it stays where it is. A refusal is only reported after checking that `head` still is the
//! get's position: if the stamp belonged to another lap (a stale position whose turn matched
//! by accident), the Acquire load of that stamp made the claims of `head` before it visible,
//! so the check fails and the get starts over.
//!
//! # Quick attempts
//!
//! Deciding "full" needs `head`, the getters' cache line, and deciding "empty" needs `tail`,
//! the putters'. A quick (not `precise`) attempt skips that: a slot that is not its turn yet
//! means full (empty) for it. The blocking loop makes quick attempts while it spins, so that a
//! putter waiting for room does not keep stealing the line of the getter making it (and the
//! other way round); attempts that decide whether to sleep or report `WEFT_WOULD_BLOCK` and
//! `WEFT_CLOSED` are precise.
//!
//! # Waiting
//!
//! The ring never blocks; `fifo.rs` puts the waiting around it. The SeqCst claims of `head`
//! and `tail`, the SeqCst mark, and the SeqCst fence before the empty/full checks are one half
//! of the Dekker handshakes with sleeping threads: a put claims `tail` then reads the count of
//! sleeping getters (SeqCst); a getter about to sleep bumps that count (SeqCst), then checks
//! `tail` after the fence. If the check missed the claim, the fence precedes the claim in the
//! single SeqCst order, hence so does the bump, and the put's read of the count sees it: one of
//! the two always sees the other, so a put never skips the wake-up of a getter that is about to
//! sleep on an empty ring. Gets and sleeping putters, and the shutdown mark and both, pair up
//! the same way.

use super::item::{Data, Item, Taker};
use super::shim::{Atomic, Backoff, DataCell, Padded, Shim};
use crate::status::Result;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

/// The largest capacity: keeps `one_lap` far below 2^32 (see "Turns").
pub(crate) const MAX_CAP: usize = 1 << 28;

/// One slot: see the module documentation.
struct Slot<S: Shim> {
    stamp: S::Stamp,
    data: S::Cell,
}

/// A stamp: the low 32 bits of `turn` and the length.
#[inline]
fn stamp(turn: usize, len: usize) -> u64 {
    ((turn as u32 as u64) << 32) | len as u32 as u64
}

/// The turn of a stamp (low 32 bits of a position).
#[inline]
fn turn_of(stamp: u64) -> u32 {
    (stamp >> 32) as u32
}

/// The item length of a stamp.
#[inline]
fn len_of(stamp: u64) -> usize {
    stamp as u32 as usize
}

/// The outcome of one put attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// The item is in.
    Done,
    /// The ring is full.
    Full,
    /// The ring is shut down.
    Closed,
}

/// The outcome of one get attempt.
pub(crate) enum Pop<O> {
    /// The item was removed and taken.
    Taken(O),
    /// The taker refused the next item (it stays); the get ends with this.
    Refused(Result<O>),
    /// The ring is empty.
    Empty,
    /// The ring is empty and shut down.
    Closed,
}

/// A bounded lock-free MPMC ring of items: see the module documentation.
pub(crate) struct Ring<S: Shim> {
    head: Padded<S::Pos>,
    tail: Padded<S::Pos>,
    slots: Box<[Slot<S>]>,
    cap: usize,
    one_lap: usize,
    mark_bit: usize,
}

// SAFETY: the slots' payload cells are only touched by the thread that claimed the slot through
// the head/tail protocol (exclusive access), and the items they hold are Send; everything else
// is atomics.
unsafe impl<S: Shim> Send for Ring<S> {}
// SAFETY: as for Send: shared access goes through atomics and the claim protocol.
unsafe impl<S: Shim> Sync for Ring<S> {}

impl<S: Shim> Ring<S> {
    /// An empty ring of `cap` slots (`1 <= cap <= MAX_CAP`). The slots are allocated with
    /// `try_reserve`: `None` when memory is short.
    pub(crate) fn new(cap: usize) -> Option<Ring<S>> {
        assert!((1..=MAX_CAP).contains(&cap));
        let mark_bit = (cap + 1).next_power_of_two();
        let mut slots = Vec::new();
        slots.try_reserve_exact(cap).ok()?;
        slots.extend((0..cap).map(|i| Slot { stamp: S::Stamp::new(stamp(i, 0)), data: S::Cell::new(Data::ZERO) }));
        Some(Ring {
            head: Padded(S::Pos::new(0)),
            tail: Padded(S::Pos::new(0)),
            slots: slots.into_boxed_slice(),
            cap,
            one_lap: mark_bit * 2,
            mark_bit,
        })
    }

    /// The number of slots.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// The slot of a position (which may carry the mark) and its index.
    #[inline]
    fn slot(&self, pos: usize) -> (&Slot<S>, usize) {
        let index = pos & (self.mark_bit - 1);
        debug_assert!(index < self.cap);
        // SAFETY: every position is made by `next` from 0, so its index is below `cap`.
        (unsafe { self.slots.get_unchecked(index) }, index)
    }

    /// The position after `pos`, whose slot index is `index`.
    #[inline]
    fn next(&self, pos: usize, index: usize) -> usize {
        if index + 1 < self.cap {
            pos + 1
        } else {
            (pos & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// One put attempt. `claimed` runs after the position is won and before the item becomes
    /// visible to gets (the joinable count is raised there). On `Done` the ring owns the item's
    /// payload and the caller must forget `item` (`mem::forget`); otherwise it still owns it.
    /// Without `precise`, a slot still holding the previous lap's item gives `Full` at once,
    /// without looking at `head` (see "Quick attempts" in the module documentation).
    #[inline(always)]
    pub(crate) fn try_push(&self, item: &Item, precise: bool, claimed: impl FnOnce()) -> Push {
        let mut backoff = Backoff::<S>::new();
        let mut tail = self.tail.load(Acquire);
        loop {
            if tail & self.mark_bit != 0 {
                return Push::Closed;
            }
            let (slot, index) = self.slot(tail);
            let turn = turn_of(slot.stamp.load(Acquire));
            if turn == tail as u32 {
                match self.tail.compare_exchange_weak(tail, self.next(tail, index), SeqCst, Acquire) {
                    Ok(_) => {
                        claimed();
                        // SAFETY: winning the claim of position `tail` while the slot's turn was
                        // `tail` (exact for the current position) gives this thread the slot
                        // alone until it publishes the stamp.
                        unsafe { slot.data.put(item.data()) };
                        slot.stamp.store(stamp(tail + 1, item.len()), Release);
                        return Push::Done;
                    }
                    Err(t) => {
                        tail = t;
                        backoff.spin();
                    }
                }
            } else if turn.wrapping_add(self.one_lap as u32) == (tail + 1) as u32 {
                if !precise {
                    return Push::Full;
                }
                S::fence(SeqCst);
                let head = self.head.load(Acquire);
                if head.wrapping_add(self.one_lap) == tail {
                    // Re-read the mark after the fence: a putter about to sleep on a full ring
                    // must see a shutdown that did not see it (the Dekker handshake again).
                    return if self.tail.load(Relaxed) & self.mark_bit != 0 { Push::Closed } else { Push::Full };
                }
                backoff.spin();
                tail = self.tail.load(Acquire);
            } else {
                backoff.snooze();
                tail = self.tail.load(Acquire);
            }
        }
    }

    /// One get attempt, letting `taker` see the next item's length before it is claimed.
    /// Without `precise`, an empty slot gives `Empty` at once, without looking at `tail`
    /// (empty, shut down, or a put in progress: see "Quick attempts").
    #[inline(always)]
    pub(crate) fn try_pop<T: Taker>(&self, taker: &mut T, precise: bool) -> Pop<T::Out> {
        let mut backoff = Backoff::<S>::new();
        let mut head = self.head.load(Acquire);
        loop {
            let (slot, index) = self.slot(head);
            let st = slot.stamp.load(Acquire);
            let turn = turn_of(st);
            if turn == (head + 1) as u32 {
                let len = len_of(st);
                if let Some(r) = taker.check(len) {
                    if self.head.load(Relaxed) == head {
                        return Pop::Refused(r);
                    }
                    backoff.spin();
                    head = self.head.load(Acquire);
                    continue;
                }
                match self.head.compare_exchange_weak(head, self.next(head, index), SeqCst, Acquire) {
                    Ok(_) => {
                        // SAFETY: winning the claim of position `head` while the slot's turn was
                        // `head + 1` (exact for the current position) gives this thread the slot
                        // alone until it publishes the stamp; `len` came with that turn.
                        let data = unsafe { slot.data.get() };
                        slot.stamp.store(stamp(head.wrapping_add(self.one_lap), 0), Release);
                        // SAFETY: the payload's ownership came with the put that published this
                        // slot, and it is taken out exactly once, by the claim just won.
                        let item = unsafe { Item::from_raw(len, data) };
                        return Pop::Taken(taker.take(item));
                    }
                    Err(h) => {
                        head = h;
                        backoff.spin();
                    }
                }
            } else if turn == head as u32 {
                if !precise {
                    return Pop::Empty;
                }
                S::fence(SeqCst);
                let tail = self.tail.load(Acquire);
                if tail & !self.mark_bit == head {
                    return if tail & self.mark_bit != 0 { Pop::Closed } else { Pop::Empty };
                }
                backoff.spin();
                head = self.head.load(Acquire);
            } else {
                backoff.snooze();
                head = self.head.load(Acquire);
            }
        }
    }

    /// Sets the shut-down mark: every later put fails. Returns false when it was already set.
    pub(crate) fn close(&self) -> bool {
        self.tail.fetch_or(self.mark_bit, SeqCst) & self.mark_bit == 0
    }

    /// True once [`close`](Self::close) ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.tail.load(SeqCst) & self.mark_bit != 0
    }

    /// The number of items (claimed puts count, claimed gets do not).
    pub(crate) fn len(&self) -> usize {
        loop {
            let tail = self.tail.load(SeqCst);
            let head = self.head.load(SeqCst);
            if self.tail.load(SeqCst) == tail {
                return self.distance(head, tail);
            }
        }
    }

    /// Items between `head` and `tail` (either may carry the mark).
    fn distance(&self, head: usize, tail: usize) -> usize {
        let hix = head & (self.mark_bit - 1);
        let tix = tail & (self.mark_bit - 1);
        if hix < tix {
            tix - hix
        } else if hix > tix {
            self.cap - hix + tix
        } else if tail & !self.mark_bit == head {
            0
        } else {
            self.cap
        }
    }

    /// True when there are no items (a claimed put counts as an item).
    pub(crate) fn is_empty(&self) -> bool {
        let head = self.head.load(SeqCst);
        let tail = self.tail.load(SeqCst);
        tail & !self.mark_bit == head
    }
}

impl<S: Shim> Drop for Ring<S> {
    fn drop(&mut self) {
        // With `&mut self` no put or get is in flight, so every slot between head and tail is
        // full and published.
        let head = self.head.load(Acquire);
        let tail = self.tail.load(Acquire);
        let hix = head & (self.mark_bit - 1);
        for i in 0..self.distance(head, tail) {
            let index = if hix + i < self.cap { hix + i } else { hix + i - self.cap };
            let slot = &self.slots[index];
            // SAFETY: exclusive access (`&mut self`); the slot is full, its payload owned by
            // the ring, and dropped once here.
            drop(unsafe { Item::from_raw(len_of(slot.stamp.load(Relaxed)), slot.data.get()) });
        }
    }
}
