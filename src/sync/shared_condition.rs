//! SharedCondition: Python's `multiprocessing.Condition` for shared memory, over a
//! [`RobustLock`] or a [`RobustRLock`], robust against the death of any process using it.
//!
//! Python's shared condition counts sleepers and wakers in semaphores: a waiter killed inside
//! `wait()` leaves a count behind, and later `notify()` calls are spent on it. Here every
//! waiter owns a slot of a fixed table (`CONDITION_WAITERS` slots) holding its state word
//! (FREE / WAITING / NOTIFIED, which the waiter futex-sleeps on), a ticket (arrival order) and
//! its thread's [`Identity`]. `notify(n)` picks WAITING slots oldest ticket first and checks
//! that each picked waiter still lives: a dead one is freed and does not count as one of the
//! `n`. `notify_all` marks every WAITING slot without checking; slots of dead waiters (WAITING
//! or NOTIFIED) are reclaimed when the table is full.
//!
//! # Shared memory and peer faults
//!
//! `#[repr(C)]`, only atomics and a [`RobustLock`]: any bit pattern is a valid value and the
//! object may be mapped at different addresses by several processes. The slot table is
//! guarded by an internal robust lock, held only for short, bounded updates. Every state word
//! read is range-checked: a value a peer scribbled is answered with `WEFT_CORRUPTED`, never a
//! panic or an out-of-bounds access. Updates are ordered so that a process killed at any
//! instruction leaves a valid table (a slot's identity and ticket are written before it turns
//! WAITING). When the internal lock's holder died, the next caller re-validates the table and
//! marks the lock consistent; if the table fails validation it returns `WEFT_CORRUPTED` and the
//! condition stays unusable (`WEFT_NOT_RECOVERABLE` from then on).

use crate::futex::{Interrupt, SharedWord, Wait, Word};
use crate::space::liveness::{self, Identity};
use crate::status::{
    Error, Result, WEFT_CORRUPTED, WEFT_NOT_OWNER, WEFT_NO_MEMORY, WEFT_OWNER_DEAD, WEFT_TIMEOUT, WEFT_WOULD_BLOCK,
};
use crate::sync::robust::{RobustLock, RobustRLock};
use crate::time::Deadline;
use std::fmt;
use std::mem::{align_of, size_of};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// Slots in a [`SharedCondition`]'s waiter table: at most this many threads wait at once.
pub(crate) const CONDITION_WAITERS: usize = 128;

/// Slot state: unused.
const FREE: u32 = 0;
/// Slot state: its thread sleeps in `wait`.
const WAITING: u32 = 1;
/// Slot state: notified; its thread has not yet collected the notification.
const NOTIFIED: u32 = 2;

/// A lock a [`SharedCondition`] can be used with: a robust lock living in shared memory.
/// Implemented for [`RobustLock`] and [`RobustRLock`].
pub trait RobustCondLock: Send + Sync {
    /// True when the caller may wait and notify: for a [`RobustRLock`], the calling thread
    /// owns it; for a [`RobustLock`], which has no owner, it is locked (Python's rule).
    fn is_owned(&self) -> bool;
    /// Releases the lock completely and returns what [`acquire_restore`](Self::acquire_restore)
    /// needs (an RLock's depth; 0 for a Lock). Errors: those of the lock's release.
    fn release_save(&self) -> Result<u32>;
    /// Re-acquires the lock without a deadline, ignoring cancel requests, and restores the
    /// saved state. Errors: `WEFT_OWNER_DEAD` (the lock is held — an RLock at the saved depth —
    /// and its previous holder died), `WEFT_NOT_RECOVERABLE` (not held).
    fn acquire_restore(&self, saved: u32) -> Result<()>;
}

impl<W: Word> RobustCondLock for RobustLock<W> {
    fn is_owned(&self) -> bool {
        self.locked()
    }
    fn release_save(&self) -> Result<u32> {
        self.release().map(|_| 0)
    }
    fn acquire_restore(&self, _saved: u32) -> Result<()> {
        self.acquire(Deadline::Never, Interrupt::Uninterruptible)
    }
}

impl<W: Word> RobustCondLock for RobustRLock<W> {
    fn is_owned(&self) -> bool {
        RobustRLock::is_owned(self)
    }
    fn release_save(&self) -> Result<u32> {
        self.release_all()
    }
    fn acquire_restore(&self, saved: u32) -> Result<()> {
        RobustRLock::acquire_restore(self, saved)
    }
}

/// One waiter. Identity and ticket are written before `state` turns WAITING (Release).
#[repr(C)]
struct Slot<W: Word> {
    /// FREE / WAITING / NOTIFIED; the waiter sleeps on it.
    state: W,
    /// The waiter's kernel thread id.
    tid: AtomicU32,
    /// Arrival order (from `next_ticket`).
    ticket: AtomicU64,
    /// The waiter thread's start time (see [`Identity`]).
    start_time: AtomicU64,
}

impl<W: Word> Slot<W> {
    fn new() -> Self {
        Slot { state: W::new(FREE), tid: AtomicU32::new(0), ticket: AtomicU64::new(0), start_time: AtomicU64::new(0) }
    }

    fn identity(&self) -> Identity {
        Identity { id: self.tid.load(Relaxed), start_time: self.start_time.load(Relaxed) }
    }
}

/// A condition variable for shared memory, used together with a [`RobustCondLock`] the
/// caller passes to each call (Python's `multiprocessing.Condition(lock)`).
///
/// Thread-safe and process-safe: every method may be called at the same time from any thread
/// of any process that maps it (`W = SharedWord`). `#[repr(C)]`, no pointers; create it with
/// [`new`](Self::new) and move it into fresh shared memory. Always use it with the same lock.
/// At most `CONDITION_WAITERS` (128) threads can wait at once.
#[repr(C)]
pub struct SharedCondition<W: Word = SharedWord> {
    lock: RobustLock<W>,
    next_ticket: AtomicU64,
    slots: [Slot<W>; CONDITION_WAITERS],
}

// Shared with other processes (possibly other builds of weft): pin the layout down.
const _: () = assert!(size_of::<Slot<SharedWord>>() == 24);
const _: () = assert!(size_of::<SharedCondition<SharedWord>>() == 16 + 8 + 24 * CONDITION_WAITERS);
const _: () = assert!(size_of::<SharedCondition<SharedWord>>() == 3096);
const _: () = assert!(align_of::<SharedCondition<SharedWord>>() == 8);

/// Holds the internal lock; releases it when dropped.
struct Guard<'a, W: Word>(&'a RobustLock<W>);

impl<W: Word> Drop for Guard<'_, W> {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

fn corrupted_state(index: usize, state: u32) -> Error {
    Error::new(
        WEFT_CORRUPTED,
        format!("shared condition: waiter slot {index} has state {state} (expected 0, 1 or 2)"),
    )
}

fn not_owner(what: &'static str) -> Error {
    Error::new(WEFT_NOT_OWNER, what)
}

impl<W: Word> Default for SharedCondition<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Word> fmt::Debug for SharedCondition<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedCondition").field("waiting", &self.waiting()).finish_non_exhaustive()
    }
}

impl<W: Word> SharedCondition<W> {
    /// A condition with no waiters, to be moved into fresh shared memory
    /// (`ptr.write(SharedCondition::new())`) before any other process can see it.
    pub fn new() -> Self {
        SharedCondition {
            lock: RobustLock::new(),
            next_ticket: AtomicU64::new(0),
            slots: std::array::from_fn(|_| Slot::new()),
        }
    }

    /// Takes the internal lock. After a holder's death, re-validates the table and marks the
    /// lock consistent; a table that fails validation gives `WEFT_CORRUPTED` and leaves the
    /// lock released unrepaired (`WEFT_NOT_RECOVERABLE` for every later call).
    fn lock_internal(&self) -> Result<Guard<'_, W>> {
        match self.lock.acquire(Deadline::Never, Interrupt::Uninterruptible) {
            Ok(()) => Ok(Guard(&self.lock)),
            Err(e) if e.code == WEFT_OWNER_DEAD => {
                let guard = Guard(&self.lock);
                if let Some((i, s)) = self.slots.iter().enumerate().map(|(i, s)| (i, s.state.load(Acquire))).find(|p| p.1 > NOTIFIED) {
                    let e = corrupted_state(i, s);
                    return Err(Error::new(
                        e.code,
                        format!("{} after a process died holding its internal lock; the condition is unusable", e.message),
                    ));
                }
                // Slot updates are single stores of valid values: the table is valid as it is.
                self.lock.mark_consistent()?;
                Ok(guard)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes a slot for `me` and marks it WAITING; returns its index and ticket. Requires no
    /// lock beyond the internal one it takes.
    fn enqueue(&self, me: &Identity) -> Result<(usize, u64)> {
        let _guard = self.lock_internal()?;
        let mut free = None;
        for (i, slot) in self.slots.iter().enumerate() {
            match slot.state.load(Acquire) {
                FREE => {
                    free.get_or_insert(i);
                }
                // A slot with the caller's own identity was left behind by an earlier wait of
                // this thread that could not clean up (a thread waits once at a time).
                WAITING | NOTIFIED => {
                    if slot.identity() == *me {
                        slot.state.store(FREE, Release);
                        free.get_or_insert(i);
                    }
                }
                s => return Err(corrupted_state(i, s)),
            }
        }
        if free.is_none() {
            // Full: reclaim the slots of dead waiters, notified or not.
            for (i, slot) in self.slots.iter().enumerate() {
                if !liveness::is_alive(&slot.identity()) {
                    slot.state.store(FREE, Release);
                    free.get_or_insert(i);
                }
            }
        }
        let Some(i) = free else {
            return Err(Error::new(WEFT_NO_MEMORY, format!("condition has {CONDITION_WAITERS} waiters")));
        };
        let slot = &self.slots[i];
        let ticket = self.next_ticket.fetch_add(1, Relaxed);
        slot.tid.store(me.id, Relaxed);
        slot.start_time.store(me.start_time, Relaxed);
        slot.ticket.store(ticket, Relaxed);
        slot.state.store(WAITING, Release);
        Ok((i, ticket))
    }

    /// Frees the caller's slot; true when it had been notified.
    fn dequeue(&self, index: usize, ticket: u64, me: &Identity) -> Result<bool> {
        let _guard = self.lock_internal()?;
        let slot = &self.slots[index];
        let state = slot.state.load(Acquire);
        if state > NOTIFIED {
            return Err(corrupted_state(index, state));
        }
        if state == FREE || slot.identity() != *me || slot.ticket.load(Relaxed) != ticket {
            return Err(Error::new(
                WEFT_CORRUPTED,
                format!("shared condition: waiter slot {index} was overwritten while its thread waited"),
            ));
        }
        slot.state.store(FREE, Release);
        Ok(state == NOTIFIED)
    }

    /// Releases `lock`, sleeps until notified, the deadline or (when `interrupt` is
    /// `Cancellable`) a cancel request, then re-acquires `lock` — always, with no deadline —
    /// and frees the caller's slot. The caller holds `lock` when this returns, whatever it
    /// returns. A notification that races with the deadline counts: the call returns Ok.
    ///
    /// Errors, by precedence:
    /// 1. `WEFT_OWNER_DEAD` — re-acquiring found that `lock`'s holder died: the caller now holds
    ///    the lock (an RLock at its old depth), must repair what it protects and mark it
    ///    consistent; whether this waiter was notified is not reported (re-check the
    ///    predicate). `WEFT_NOT_RECOVERABLE` — `lock` is unusable (and not held).
    /// 2. `WEFT_CORRUPTED` — the waiter table failed validation (a peer wrote garbage).
    /// 3. `WEFT_TIMEOUT` (`WEFT_WOULD_BLOCK` for `Deadline::Now`) or `WEFT_CANCELLED`.
    ///
    /// Before sleeping: `WEFT_NOT_OWNER` when the caller may not wait on `lock` (see
    /// [`RobustCondLock::is_owned`]); `WEFT_NO_MEMORY` when `CONDITION_WAITERS` threads
    /// already wait; `WEFT_CORRUPTED`; the lock's release errors. Thread- and process-safe.
    pub fn wait<L: RobustCondLock + ?Sized>(&self, lock: &L, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        if !lock.is_owned() {
            return Err(not_owner("cannot wait on un-acquired lock"));
        }
        let me = liveness::current_thread()?;
        let (index, ticket) = self.enqueue(&me)?;
        let saved = match lock.release_save() {
            Ok(s) => s,
            Err(e) => {
                let _ = self.dequeue(index, ticket, &me);
                return Err(e);
            }
        };
        let slot = &self.slots[index];
        let mut outcome = Wait::Woken;
        while slot.state.load(Acquire) == WAITING {
            outcome = slot.state.wait(WAITING, deadline, interrupt);
            if outcome != Wait::Woken {
                break;
            }
        }
        let restored = lock.acquire_restore(saved);
        let notified = self.dequeue(index, ticket, &me);
        restored?;
        if notified? {
            Ok(())
        } else {
            Err(Error::from_wait(outcome, deadline, "timed out waiting on the condition"))
        }
    }

    /// Waits until `predicate` returns true (evaluated with `lock` held), as Python's
    /// `wait_for`. Ok when the predicate became true; `WEFT_TIMEOUT` (`WEFT_WOULD_BLOCK` for
    /// `Deadline::Now`) when the deadline passed first; otherwise the first error of
    /// [`wait`](Self::wait) other than a timeout (`WEFT_NOT_OWNER`, `WEFT_CANCELLED`,
    /// `WEFT_OWNER_DEAD` with the lock held, ...). Thread- and process-safe.
    pub fn wait_for<L: RobustCondLock + ?Sized>(
        &self,
        lock: &L,
        deadline: Deadline,
        interrupt: Interrupt,
        predicate: &mut dyn FnMut() -> bool,
    ) -> Result<()> {
        if !lock.is_owned() {
            return Err(not_owner("cannot wait on un-acquired lock"));
        }
        let mut first = true;
        while !predicate() {
            if !first && deadline.expired() {
                return Err(Error::from_wait(Wait::TimedOut, deadline, "timed out waiting for the predicate"));
            }
            first = false;
            match self.wait(lock, deadline, interrupt) {
                Ok(()) => {}
                Err(e) if e.code == WEFT_TIMEOUT || e.code == WEFT_WOULD_BLOCK => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Valid states of every slot, or the first invalid one as an error.
    fn waiting_slots(&self, out: &mut [(u64, usize); CONDITION_WAITERS]) -> Result<usize> {
        let mut len = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            match slot.state.load(Acquire) {
                WAITING => {
                    out[len] = (slot.ticket.load(Relaxed), i);
                    len += 1;
                }
                FREE | NOTIFIED => {}
                s => return Err(corrupted_state(i, s)),
            }
        }
        Ok(len)
    }

    /// Wakes up to `n` waiting threads, oldest first. A picked waiter whose thread has died
    /// is removed and does not count as one of the `n`. Errors: `WEFT_NOT_OWNER` when the
    /// caller may not notify (see [`RobustCondLock::is_owned`]); `WEFT_CORRUPTED` (nothing
    /// is notified); `WEFT_NOT_RECOVERABLE`. Thread- and process-safe; reads `/proc` once per
    /// picked waiter.
    pub fn notify<L: RobustCondLock + ?Sized>(&self, lock: &L, n: usize) -> Result<()> {
        if !lock.is_owned() {
            return Err(not_owner("cannot notify on un-acquired lock"));
        }
        let _guard = self.lock_internal()?;
        let mut order = [(0u64, 0usize); CONDITION_WAITERS];
        let len = self.waiting_slots(&mut order)?;
        order[..len].sort_unstable();
        let mut left = n;
        for &(_, i) in &order[..len] {
            if left == 0 {
                break;
            }
            let slot = &self.slots[i];
            if !liveness::is_alive(&slot.identity()) {
                slot.state.store(FREE, Release);
                continue;
            }
            slot.state.store(NOTIFIED, Release);
            slot.state.wake(u32::MAX);
            left -= 1;
        }
        Ok(())
    }

    /// Wakes every waiting thread (no liveness checks: slots of dead waiters are reclaimed
    /// later). Errors: as [`notify`](Self::notify). Thread- and process-safe.
    pub fn notify_all<L: RobustCondLock + ?Sized>(&self, lock: &L) -> Result<()> {
        if !lock.is_owned() {
            return Err(not_owner("cannot notify on un-acquired lock"));
        }
        let _guard = self.lock_internal()?;
        let mut order = [(0u64, 0usize); CONDITION_WAITERS];
        let len = self.waiting_slots(&mut order)?;
        for &(_, i) in &order[..len] {
            let slot = &self.slots[i];
            slot.state.store(NOTIFIED, Release);
            slot.state.wake(u32::MAX);
        }
        Ok(())
    }

    /// Number of threads currently waiting and not yet notified (including waiters that died
    /// and were not yet noticed). A snapshot taken without the internal lock; slots holding
    /// invalid states are not counted. Thread- and process-safe.
    pub fn waiting(&self) -> usize {
        self.slots.iter().filter(|s| s.state.load(Acquire) == WAITING).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{WEFT_CANCELLED, WEFT_NOT_RECOVERABLE};
    use crate::test_support::{fork_child, wait_child, SharedMap};
    use std::time::{Duration, Instant};

    const LONG_NS: u64 = 20_000_000_000;

    #[repr(C)]
    struct Shared {
        lock: RobustLock,
        rlock: RobustRLock,
        cond: SharedCondition,
        pos: AtomicU32,
        order: [AtomicU32; 8],
    }

    fn mapped() -> SharedMap<Shared> {
        SharedMap::new(Shared {
            lock: RobustLock::new(),
            rlock: RobustRLock::new(),
            cond: SharedCondition::new(),
            pos: AtomicU32::new(0),
            order: std::array::from_fn(|_| AtomicU32::new(u32::MAX)),
        })
    }

    /// Polls `cond` for up to 10 s; fails the test when it never holds.
    fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < end, "gave up waiting for: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn exited_ok(pid: libc::pid_t) -> bool {
        let st = wait_child(pid);
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0
    }

    fn acquire(l: &RobustLock) {
        l.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
    }

    /// A child that waits on the condition, records `tag` in the order table, and releases.
    fn waiter(s: &Shared, tag: u32) -> libc::pid_t {
        fork_child(move || {
            acquire(&s.lock);
            let r = s.cond.wait(&s.lock, Deadline::from_timeout_ns(LONG_NS), Interrupt::Uninterruptible);
            let held = s.lock.locked();
            let p = s.pos.fetch_add(1, Relaxed) as usize;
            s.order[p].store(tag, Relaxed);
            s.lock.release().unwrap();
            r.is_ok() && held
        })
    }

    /// Forks `n` waiters one after the other (so their tickets are in tag order).
    fn waiters(s: &Shared, tags: std::ops::Range<u32>) -> Vec<libc::pid_t> {
        let base = s.cond.waiting();
        tags.enumerate()
            .map(|(k, tag)| {
                let pid = waiter(s, tag);
                until("the waiter sleeps", || s.cond.waiting() == base + k + 1);
                pid
            })
            .collect()
    }

    fn notify(s: &Shared, n: usize) {
        acquire(&s.lock);
        s.cond.notify(&s.lock, n).unwrap();
        s.lock.release().unwrap();
    }

    fn kill(pid: libc::pid_t) {
        // SAFETY: kills our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let st = wait_child(pid);
        assert!(libc::WIFSIGNALED(st));
    }

    fn all_free(c: &SharedCondition) -> bool {
        c.slots.iter().all(|s| s.state.load(Relaxed) == FREE)
    }

    #[test]
    fn notify_one_wakes_exactly_one_in_fifo_order() {
        let m = mapped();
        let s = m.get();
        let pids = waiters(s, 0..3);
        for k in 0..3u32 {
            notify(s, 1);
            assert_eq!(s.cond.waiting(), 2 - k as usize, "notify(1) marks exactly one waiter");
            assert!(exited_ok(pids[k as usize]));
            assert_eq!(s.pos.load(Relaxed), k + 1);
            assert_eq!(s.order[k as usize].load(Relaxed), k, "oldest waiter first");
        }
        assert!(all_free(&s.cond));
    }

    #[test]
    fn notify_all_wakes_everyone() {
        let m = mapped();
        let s = m.get();
        let pids = waiters(s, 0..4);
        acquire(&s.lock);
        s.cond.notify_all(&s.lock).unwrap();
        assert_eq!(s.cond.waiting(), 0);
        s.lock.release().unwrap();
        for pid in pids {
            assert!(exited_ok(pid));
        }
        assert_eq!(s.pos.load(Relaxed), 4);
        assert!(all_free(&s.cond));
    }

    #[test]
    fn timeout_returns_timeout_holding_the_lock_and_frees_the_slot() {
        let m = mapped();
        let s = m.get();
        acquire(&s.lock);
        let d = Deadline::from_timeout_ns(30_000_000);
        let e = s.cond.wait(&s.lock, d, Interrupt::Cancellable).unwrap_err();
        assert_eq!(e.code, WEFT_TIMEOUT);
        assert!(d.expired(), "did not return before the deadline");
        assert!(s.lock.locked());
        assert!(all_free(&s.cond));
        let e = s.cond.wait(&s.lock, Deadline::Now, Interrupt::Cancellable).unwrap_err();
        assert_eq!(e.code, WEFT_WOULD_BLOCK);
        assert!(all_free(&s.cond));
        let mut calls = 0;
        let e = s
            .cond
            .wait_for(&s.lock, Deadline::from_timeout_ns(20_000_000), Interrupt::Cancellable, &mut || {
                calls += 1;
                false
            })
            .unwrap_err();
        assert_eq!(e.code, WEFT_TIMEOUT);
        assert!(calls >= 2);
        s.cond.wait_for(&s.lock, Deadline::Now, Interrupt::Cancellable, &mut || true).unwrap();
        s.lock.release().unwrap();
    }

    #[test]
    fn not_owner_errors() {
        let m = mapped();
        let s = m.get();
        let e = s.cond.wait(&s.lock, Deadline::Never, Interrupt::Cancellable).unwrap_err();
        assert_eq!(e.code, WEFT_NOT_OWNER);
        assert_eq!(s.cond.notify(&s.lock, 1).unwrap_err().code, WEFT_NOT_OWNER);
        assert_eq!(s.cond.notify_all(&s.rlock).unwrap_err().code, WEFT_NOT_OWNER);
        assert!(all_free(&s.cond));
    }

    #[test]
    fn cancel_request_ends_the_wait() {
        let m = mapped();
        let s = m.get();
        let cancel = AtomicU32::new(0);
        let (r, held, free) = std::thread::scope(|sc| {
            let t = sc.spawn(|| {
                crate::futex::set_cancel_word(&cancel);
                acquire(&s.lock);
                let r = s.cond.wait(&s.lock, Deadline::from_timeout_ns(LONG_NS), Interrupt::Cancellable);
                crate::futex::set_cancel_word(std::ptr::null());
                let held = s.lock.locked();
                let free = all_free(&s.cond);
                s.lock.release().unwrap();
                (r, held, free)
            });
            until("the thread waits", || s.cond.waiting() == 1);
            crate::futex::raise_cancel(&cancel);
            t.join().unwrap()
        });
        assert_eq!(r.unwrap_err().code, WEFT_CANCELLED);
        assert!(held && free);
    }

    #[test]
    fn killed_waiter_does_not_stop_notify_all() {
        let m = mapped();
        let s = m.get();
        let pids = waiters(s, 0..3);
        kill(pids[1]);
        acquire(&s.lock);
        s.cond.notify_all(&s.lock).unwrap();
        s.lock.release().unwrap();
        assert!(exited_ok(pids[0]));
        assert!(exited_ok(pids[2]));
        assert_eq!(s.pos.load(Relaxed), 2);
        // The dead waiter's NOTIFIED slot stays until reclaimed.
        assert_eq!(s.cond.slots.iter().filter(|sl| sl.state.load(Relaxed) == NOTIFIED).count(), 1);
    }

    #[test]
    fn notify_one_skips_a_dead_waiter() {
        let m = mapped();
        let s = m.get();
        let pids = waiters(s, 0..3);
        kill(pids[0]); // the oldest waiter dies
        notify(s, 1);
        assert_eq!(s.cond.waiting(), 1, "the dead waiter was dropped and one live waiter notified");
        assert!(exited_ok(pids[1]));
        assert_eq!(s.order[0].load(Relaxed), 1);
        notify(s, 1);
        assert!(exited_ok(pids[2]));
        assert!(all_free(&s.cond), "the dead waiter's slot was freed");
    }

    #[test]
    fn dead_slots_are_reclaimed_when_the_table_is_full() {
        let m = mapped();
        let s = m.get();
        // A reaped child's identity: dead.
        let pid = fork_child(|| true);
        assert!(exited_ok(pid));
        for (i, slot) in s.cond.slots.iter().enumerate() {
            slot.tid.store(pid as u32, Relaxed);
            slot.start_time.store(1, Relaxed);
            slot.ticket.store(i as u64, Relaxed);
            slot.state.store(if i % 2 == 0 { WAITING } else { NOTIFIED }, Relaxed);
        }
        acquire(&s.lock);
        let e = s.cond.wait(&s.lock, Deadline::from_timeout_ns(1_000_000), Interrupt::Cancellable).unwrap_err();
        assert_eq!(e.code, WEFT_TIMEOUT, "a slot was reclaimed");
        assert!(all_free(&s.cond), "every dead slot was reclaimed");
        // A full table of live waiters: WEFT_NO_MEMORY.
        let me = liveness::current_process().unwrap();
        for slot in &s.cond.slots {
            slot.tid.store(me.id, Relaxed);
            slot.start_time.store(me.start_time, Relaxed);
            slot.state.store(WAITING, Relaxed);
        }
        // The main thread of this process is alive; use another thread's identity as caller.
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let e = s.cond.wait(&s.lock, Deadline::Now, Interrupt::Cancellable).unwrap_err();
                assert_eq!(e.code, WEFT_NO_MEMORY);
            });
        });
        assert_eq!(s.cond.waiting(), CONDITION_WAITERS);
        s.lock.release().unwrap();
    }

    #[test]
    fn rlock_depth_is_restored_after_wait() {
        let m = mapped();
        let s = m.get();
        let pid = fork_child(|| {
            s.rlock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
            s.rlock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
            let r = s.cond.wait(&s.rlock, Deadline::from_timeout_ns(LONG_NS), Interrupt::Uninterruptible);
            let ok = r.is_ok() && s.rlock.depth() == 2;
            s.rlock.release().unwrap();
            s.rlock.release().unwrap();
            ok && s.rlock.depth() == 0
        });
        until("the child waits", || s.cond.waiting() == 1);
        assert!(!s.rlock.is_owned());
        s.rlock.acquire(Deadline::from_timeout_ns(LONG_NS), Interrupt::Uninterruptible).unwrap();
        s.cond.notify(&s.rlock, 1).unwrap();
        s.rlock.release().unwrap();
        assert!(exited_ok(pid));
        assert_eq!(s.cond.waiting(), 0);
    }

    #[test]
    fn notifier_killed_holding_the_lock_gives_the_waiter_owner_dead() {
        let m = mapped();
        let s = m.get();
        let w = fork_child(|| {
            acquire(&s.lock);
            let e = s.cond.wait(&s.lock, Deadline::from_timeout_ns(LONG_NS), Interrupt::Uninterruptible).unwrap_err();
            let me = liveness::current_thread().unwrap();
            let ok = e.code == WEFT_OWNER_DEAD && s.lock.holder() == me.id;
            s.lock.mark_consistent().unwrap();
            s.lock.release().unwrap();
            ok
        });
        until("the child waits", || s.cond.waiting() == 1);
        let notifier = fork_child(|| {
            acquire(&s.lock);
            s.cond.notify(&s.lock, 1).unwrap();
            // SAFETY: dies holding the lock, the waiter just woken.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        let st = wait_child(notifier);
        assert!(libc::WIFSIGNALED(st));
        assert!(exited_ok(w), "the waiter got WEFT_OWNER_DEAD holding the lock");
        assert!(!s.lock.locked());
        assert!(all_free(&s.cond));
    }

    #[test]
    fn internal_lock_holder_death_is_recovered() {
        let m = mapped();
        let s = m.get();
        let pid = fork_child(|| {
            s.cond.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
            // SAFETY: dies holding the internal lock.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        assert!(libc::WIFSIGNALED(wait_child(pid)));
        acquire(&s.lock);
        s.cond.notify_all(&s.lock).unwrap();
        let e = s.cond.wait(&s.lock, Deadline::Now, Interrupt::Cancellable).unwrap_err();
        assert_eq!(e.code, WEFT_WOULD_BLOCK);
        s.lock.release().unwrap();
    }

    #[test]
    fn garbage_in_the_table_is_corrupted_not_a_panic() {
        let m = mapped();
        let s = m.get();
        s.cond.slots[77].state.store(0xdead_beef, Relaxed);
        acquire(&s.lock);
        for r in [
            s.cond.wait(&s.lock, Deadline::from_timeout_ns(LONG_NS), Interrupt::Cancellable),
            s.cond.notify(&s.lock, 1),
            s.cond.notify_all(&s.lock),
            s.cond.wait_for(&s.lock, Deadline::Never, Interrupt::Cancellable, &mut || false),
        ] {
            assert_eq!(r.unwrap_err().code, WEFT_CORRUPTED);
        }
        assert!(s.lock.locked(), "the caller still holds its lock");
        assert_eq!(s.cond.waiting(), 0);
        s.cond.slots[77].state.store(FREE, Relaxed);
        s.cond.notify(&s.lock, 1).unwrap();
        s.lock.release().unwrap();
        // A peer scribbling on a sleeping waiter's slot: the waiter wakes on its own timeout,
        // re-acquires the lock and reports the damage.
        let (r, held) = std::thread::scope(|sc| {
            let t = sc.spawn(|| {
                acquire(&s.lock);
                let r = s.cond.wait(&s.lock, Deadline::from_timeout_ns(200_000_000), Interrupt::Cancellable);
                let held = s.lock.locked();
                s.lock.release().unwrap();
                (r, held)
            });
            until("the thread waits", || s.cond.waiting() == 1);
            let i = s.cond.slots.iter().position(|sl| sl.state.load(Relaxed) == WAITING).unwrap();
            s.cond.slots[i].tid.store(1, Relaxed);
            let r = t.join().unwrap();
            assert_eq!(s.cond.slots[i].state.load(Relaxed), WAITING, "a slot that is not the caller's is left alone");
            s.cond.slots[i].state.store(FREE, Relaxed);
            r
        });
        assert_eq!(r.unwrap_err().code, WEFT_CORRUPTED);
        assert!(held);
        // Garbage left by a process that died holding the internal lock: unrecoverable.
        let pid = fork_child(|| {
            s.cond.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
            s.cond.slots[3].state.store(9, Relaxed);
            // SAFETY: dies holding the internal lock.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        assert!(libc::WIFSIGNALED(wait_child(pid)));
        acquire(&s.lock);
        assert_eq!(s.cond.notify(&s.lock, 1).unwrap_err().code, WEFT_CORRUPTED);
        assert_eq!(s.cond.notify(&s.lock, 1).unwrap_err().code, WEFT_NOT_RECOVERABLE);
        s.lock.release().unwrap();
    }
}
