//! The undo journal of the LIFO and priority queues (see `ordered.rs`): how an update of
//! several words of shared memory — a heap sift, the free list, the counts — is made
//! all-or-nothing, whatever the instant its process is killed at.
//!
//! An update is planned in private memory first: a [`Tx`] collects the new values of the words
//! it changes (the reads of a heap sift see its own planned writes). Then, under the queue's
//! lock, it is written:
//!
//! 1. the old value of every word it changes goes into the journal, with the offset and the old
//!    value of its *commit word* (`tail` for a put, `head` for a get);
//! 2. one store of `len` makes the journal valid;
//! 3. the new values are stored;
//! 4. one store of the commit word (its count moves on by one) commits;
//! 5. one store of `len` = 0 retires the journal.
//!
//! Recovery, by the next holder of the lock after a holder died, finds `len` 0 — nothing was
//! changed yet (1) or the update is complete (5) — or a valid journal: when the commit word
//! still holds its old value, the update did not commit (2-4) and every journaled word gets its
//! old value back; otherwise it committed (between 4 and 5) and stands. Either way the journal
//! is then retired. A recovery that is itself killed is repeated by the next holder: restoring
//! the old values twice is restoring them once. The commit word cannot come back to its old
//! value before the journal is retired: it only moves on, one update at a time, under the lock.
//!
//! Bytes written into free chunks before an update (an item's copy) need no journal: nobody
//! reads a free chunk, before the commit or after a rollback.

use super::ordered::{HEAD, TAIL};
use super::{corrupted, SharedQueue};
use crate::space::dict::step;
use crate::status::Result;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

/// The most words one update may change (checked against the deepest heap in `ordered.rs`).
pub(super) const JOURNAL_MAX: usize = 58;

/// The journal in shared memory: all atomics (see the module documentation).
#[repr(C)]
pub(super) struct Journal {
    /// Valid entries; 0 when no update is in progress.
    len: AtomicU64,
    /// Payload offset of the update's commit word.
    commit: AtomicU64,
    /// The commit word's value before the update.
    before: AtomicU64,
    _r: AtomicU64,
    /// `{payload offset, old value}` of each word the update changes.
    entries: [[AtomicU64; 2]; JOURNAL_MAX],
}

/// Entry `i` of a word holding the u32 entries `i & !1` (low half) and `i | 1` (high half).
pub(super) fn half_of(w: u64, i: u64) -> u32 {
    (w >> (32 * (i & 1))) as u32
}

/// `w` with entry `i` (see [`half_of`]) replaced by `v`.
fn with_half(w: u64, i: u64, v: u32) -> u64 {
    let shift = 32 * (i & 1);
    (w & !(0xffff_ffff << shift)) | u64::from(v) << shift
}

/// An update being planned: the new values of the words it changes (payload offsets, each
/// 8-aligned), distinct, in a fixed array (no allocation under the lock).
pub(super) struct Tx<'q> {
    q: &'q SharedQueue,
    w: [(u64, u64); JOURNAL_MAX],
    n: usize,
    /// Set when the update would change more than JOURNAL_MAX words (never, by construction):
    /// the commit refuses it.
    overflow: bool,
}

impl<'q> Tx<'q> {
    /// An empty plan for an update of `q`.
    pub(super) fn new(q: &'q SharedQueue) -> Tx<'q> {
        Tx { q, w: [(0, 0); JOURNAL_MAX], n: 0, overflow: false }
    }

    /// The word at `off`, as this plan leaves it.
    pub(super) fn get(&self, off: u64) -> u64 {
        match self.w[..self.n].iter().find(|e| e.0 == off) {
            Some(e) => e.1,
            None => self.q.word(off).load(Relaxed),
        }
    }

    /// Plans the store of `v` into the word at `off`.
    pub(super) fn set(&mut self, off: u64, v: u64) {
        if let Some(e) = self.w[..self.n].iter_mut().find(|e| e.0 == off) {
            e.1 = v;
        } else if self.n < JOURNAL_MAX {
            self.w[self.n] = (off, v);
            self.n += 1;
        } else {
            self.overflow = true;
        }
    }

    /// Entry `i` of the u32 array at `base`, as this plan leaves it.
    pub(super) fn get_half(&self, base: u64, i: u64) -> u32 {
        half_of(self.get(base + 8 * (i / 2)), i)
    }

    /// Plans the store of `v` into entry `i` of the u32 array at `base`.
    pub(super) fn set_half(&mut self, base: u64, i: u64, v: u32) {
        let off = base + 8 * (i / 2);
        let w = self.get(off);
        self.set(off, with_half(w, i, v));
    }

    /// Writes the plan and commits it with the store of `new` into the commit word at `at`
    /// (see the module documentation). The caller holds the queue's lock.
    ///
    /// Errors: `WEFT_CORRUPTED` when the plan overflowed the journal (nothing is written).
    pub(super) fn commit(&self, at: u64, new: u64) -> Result<()> {
        if self.overflow {
            return Err(corrupted(format!("an update changes more than {JOURNAL_MAX} words")));
        }
        let (q, j) = (self.q, self.q.journal());
        let planned = &self.w[..self.n];
        for (e, &(off, _)) in j.entries.iter().zip(planned) {
            e[0].store(off, Relaxed);
            e[1].store(q.word(off).load(Relaxed), Relaxed);
        }
        j.commit.store(at, Relaxed);
        j.before.store(q.word(at).load(Relaxed), Relaxed);
        step();
        j.len.store(self.n as u64, Release); // the journal is valid
        step();
        for &(off, v) in planned {
            // Release: a reader outside the lock that sees a new value sees the journal valid
            // (see `ordered::wait_room_ordered`).
            q.word(off).store(v, Release);
            step();
        }
        q.word(at).store(new, SeqCst); // the commit
        step();
        j.len.store(0, Release); // retired
        Ok(())
    }
}

/// After a holder of the lock died: rolls an uncommitted update back, or retires the journal of
/// a committed one (see the module documentation). `journaled` tells the offsets an update may
/// change; a journal naming another gives `WEFT_CORRUPTED` and nothing is restored.
pub(super) fn recover(q: &SharedQueue, journaled: &dyn Fn(u64) -> bool) -> Result<()> {
    let j = q.journal();
    let n = j.len.load(Acquire);
    if n == 0 {
        return Ok(());
    }
    let at = j.commit.load(Relaxed);
    if n > JOURNAL_MAX as u64 || (at != TAIL && at != HEAD) {
        return Err(corrupted(format!("a journal of {n} words committed by offset {at} is not one an update writes")));
    }
    if q.word(at).load(Relaxed) == j.before.load(Relaxed) {
        let entries = &j.entries[..n as usize];
        if let Some(off) = entries.iter().map(|e| e[0].load(Relaxed)).find(|&off| !journaled(off)) {
            return Err(corrupted(format!("the journal names offset {off:#x}, not a word an update changes")));
        }
        for e in entries.iter().rev() {
            q.word(e[0].load(Relaxed)).store(e[1].load(Relaxed), Release);
        }
    }
    j.len.store(0, Release);
    Ok(())
}

/// True while an update is in progress, or was interrupted and awaits recovery (a hint, when
/// read outside the lock).
pub(super) fn in_progress(q: &SharedQueue) -> bool {
    q.journal().len.load(Acquire) != 0
}
