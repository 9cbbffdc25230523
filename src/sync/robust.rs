//! RobustLock: the lock for shared memory, which survives the death of its holder.
//!
//! Python's `multiprocessing.Lock` deadlocks everyone when its holder is killed. This lock
//! records who holds it — the holder's kernel thread id in the futex word, its start time next
//! to it — so a waiter can tell a slow holder from a dead one, even after the id was reused
//! (see `space::liveness`). Waiters sleep in slices of [`CHECK_SLICE_NS`]; after each slice
//! they check the holder. When it is dead, one waiter takes the lock over and gets
//! `WEFT_OWNER_DEAD`: it now holds the lock, the data it protects may be half-updated, and it
//! must call [`RobustLock::mark_consistent`] once it has repaired them. Releasing without doing
//! so makes the lock permanently unusable: every later acquire returns
//! `WEFT_NOT_RECOVERABLE` (POSIX robust mutex semantics).
//!
//! The word is 0 when free, else `holder tid | WAITERS`. A release clears the start time before
//! it clears the word, so a waiter never pairs a new holder's tid with an old start time; a
//! holder that dies between taking the word and storing its start time is judged by its tid
//! alone. Like Python's Lock it has no owner for release: any thread may release it.

use crate::futex::{Interrupt, SharedWord, Wait, Word};
use crate::space::liveness::{self, Identity};
use crate::status::{Error, Result, WEFT_INVALID_STATE, WEFT_NOT_RECOVERABLE, WEFT_OWNER_DEAD};
use crate::time::Deadline;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// Bit of the word set while threads may sleep on it.
const WAITERS: u32 = 1 << 31;
/// The holder's tid in the word.
const TID_MASK: u32 = !WAITERS;
/// How long a waiter sleeps before it checks whether the holder is still alive.
pub(crate) const CHECK_SLICE_NS: u64 = 50_000_000;

const CONSISTENT: u32 = 0;
/// Taken over from a dead holder; not yet marked consistent.
const INCONSISTENT: u32 = 1;
/// Released while inconsistent: unusable for good.
const NOT_RECOVERABLE: u32 = 2;

/// A lock that reports the death of its holder. Thread-safe and process-safe when it lives in
/// shared memory (`W = SharedWord`). `#[repr(C)]`, no pointers: it may be placed in a
/// shared mapping and used by every process that maps it.
#[repr(C)]
#[derive(Debug)]
pub struct RobustLock<W: Word = SharedWord> {
    word: W,
    state: W,
    holder_start: AtomicU64,
}

impl<W: Word> Default for RobustLock<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Word> RobustLock<W> {
    /// A free, consistent lock.
    pub fn new() -> Self {
        RobustLock { word: W::new(0), state: W::new(CONSISTENT), holder_start: AtomicU64::new(0) }
    }

    fn not_recoverable() -> Error {
        Error::new(WEFT_NOT_RECOVERABLE, "the lock's holder died and its state was never marked consistent")
    }

    /// Acquires. Errors: `WEFT_OWNER_DEAD` (acquired — the previous holder died holding it),
    /// `WEFT_NOT_RECOVERABLE`, `WEFT_WOULD_BLOCK` (deadline now), `WEFT_TIMEOUT`,
    /// `WEFT_CANCELLED`, or an error reading the caller's own identity.
    pub fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        if self.state.load(Acquire) == NOT_RECOVERABLE {
            return Err(Self::not_recoverable());
        }
        let me = liveness::current_thread()?;
        let mut extra = 0; // WAITERS once we have slept: others may still sleep.
        loop {
            let w = self.word.load(Relaxed);
            if w == 0 {
                if self.word.compare_exchange(0, me.id | extra, Acquire, Relaxed).is_ok() {
                    self.holder_start.store(me.start_time, Release);
                    return self.after_acquire();
                }
                continue;
            }
            if deadline == Deadline::Now {
                // A try-acquire must still notice a dead holder (POSIX trylock reports
                // EOWNERDEAD): check it, at the price of reading the holder's /proc entry.
                if self.take_over_if_dead(w, &me)? {
                    return Err(Error::new(WEFT_OWNER_DEAD, "the lock's previous holder died holding it; it is now held by the caller and must be marked consistent"));
                }
                return Err(Error::would_block("lock is held"));
            }
            if w & WAITERS == 0 && self.word.compare_exchange(w, w | WAITERS, Relaxed, Relaxed).is_err() {
                continue;
            }
            extra = WAITERS;
            let (until, is_slice) = deadline.capped(CHECK_SLICE_NS);
            match self.word.wait(w | WAITERS, until, interrupt) {
                Wait::Woken => {}
                Wait::Cancelled => return Err(Error::cancelled()),
                Wait::TimedOut => {
                    if self.take_over_if_dead(w | WAITERS, &me)? {
                        return Err(Error::new(WEFT_OWNER_DEAD, "the lock's previous holder died holding it; it is now held by the caller and must be marked consistent"));
                    }
                    if !is_slice {
                        return Err(Error::timeout("timed out acquiring the lock"));
                    }
                }
            }
        }
    }

    fn after_acquire(&self) -> Result<()> {
        match self.state.load(Acquire) {
            CONSISTENT => Ok(()),
            NOT_RECOVERABLE => {
                // Made unrecoverable while we raced for it: give it back.
                let _ = self.release();
                Err(Self::not_recoverable())
            }
            _ => Err(Error::new(WEFT_OWNER_DEAD, "the lock was taken over from a dead holder and never marked consistent")),
        }
    }

    /// Takes the lock over when the holder recorded in `seen` is dead. True when taken.
    fn take_over_if_dead(&self, seen: u32, me: &Identity) -> Result<bool> {
        let tid = seen & TID_MASK;
        if tid == 0 || self.word.load(Relaxed) != seen {
            return Ok(false);
        }
        let start = self.holder_start.load(Acquire);
        let alive = if start == 0 {
            // The holder died (or is) between taking the word and recording its start time.
            liveness::of(tid)?.is_some_and(|id| liveness::is_alive(&id))
        } else {
            liveness::is_alive(&Identity { id: tid, start_time: start })
        };
        if alive {
            return Ok(false);
        }
        if self.word.compare_exchange(seen, me.id | WAITERS, AcqRel, Relaxed).is_err() {
            return Ok(false);
        }
        self.holder_start.store(me.start_time, Release);
        let _ = self.state.compare_exchange(CONSISTENT, INCONSISTENT, AcqRel, Relaxed);
        Ok(true)
    }

    /// Marks the protected state repaired after `WEFT_OWNER_DEAD`. Error: `WEFT_INVALID_STATE`
    /// when the lock is not held or not in that state.
    pub fn mark_consistent(&self) -> Result<()> {
        if self.word.load(Relaxed) == 0 {
            return Err(Error::new(WEFT_INVALID_STATE, "mark_consistent on an unlocked lock"));
        }
        self.state
            .compare_exchange(INCONSISTENT, CONSISTENT, AcqRel, Relaxed)
            .map(|_| ())
            .map_err(|_| Error::new(WEFT_INVALID_STATE, "the lock is not waiting to be marked consistent"))
    }

    /// Releases (any thread may). Releasing a lock taken over from a dead holder without
    /// marking it consistent makes it not recoverable. Error: `WEFT_INVALID_STATE` when the
    /// lock is not locked.
    pub fn release(&self) -> Result<()> {
        // `state` only becomes INCONSISTENT while the lock is held (by a take-over), so a plain
        // load decides; the exchange, a locked instruction even when it fails, runs only then.
        let wake_all = self.state.load(Relaxed) == INCONSISTENT
            && self.state.compare_exchange(INCONSISTENT, NOT_RECOVERABLE, AcqRel, Acquire).is_ok();
        self.holder_start.store(0, Release);
        let prev = self.word.swap(0, Release);
        if prev == 0 {
            return Err(Error::new(WEFT_INVALID_STATE, "release of an unlocked lock"));
        }
        if wake_all {
            self.word.wake(u32::MAX);
        } else if prev & WAITERS != 0 {
            self.word.wake(1);
        }
        Ok(())
    }

    /// True while some thread holds the lock.
    pub fn locked(&self) -> bool {
        self.word.load(Relaxed) != 0
    }

    /// The kernel thread id of the holder (0 when free).
    pub fn holder(&self) -> u32 {
        self.word.load(Relaxed) & TID_MASK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::WEFT_TIMEOUT;
    use crate::test_support::{fork_child, wait_child as wait_exit, SharedMap};
    use std::ptr;

    #[repr(C)]
    struct Shared {
        lock: RobustLock,
        counter: u64,
    }

    /// A RobustLock and a counter in an anonymous shared mapping.
    fn mapped() -> SharedMap<Shared> {
        SharedMap::new(Shared { lock: RobustLock::new(), counter: 0 })
    }

    fn counter(m: &SharedMap<Shared>) -> *mut u64 {
        // SAFETY: a field of the mapped value.
        unsafe { ptr::addr_of_mut!((*m.as_ptr()).counter) }
    }

    #[test]
    fn mutual_exclusion_across_processes() {
        let m = mapped();
        let s = m.get();
        let add = || {
            for _ in 0..20_000 {
                s.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
                // SAFETY: the counter is only touched under the lock.
                unsafe { *counter(&m) += 1 };
                s.lock.release().unwrap();
            }
        };
        let pid = fork_child(|| {
            add();
            true
        });
        add();
        let st = wait_exit(pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
        // SAFETY: the child is gone.
        assert_eq!(unsafe { *counter(&m) }, 40_000);
        assert!(!s.lock.locked());
    }

    #[test]
    fn holder_killed_gives_owner_dead_then_recovery() {
        let m = mapped();
        let s = m.get();
        let pid = fork_child(|| {
            s.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
            // SAFETY: the child kills itself while holding the lock.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        let st = wait_exit(pid);
        assert!(libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL);
        assert!(s.lock.locked());
        let e = s.lock.acquire(Deadline::from_timeout_ns(5_000_000_000), Interrupt::Uninterruptible).unwrap_err();
        assert_eq!(e.code, WEFT_OWNER_DEAD);
        assert_eq!(s.lock.holder(), liveness::current_thread().unwrap().id);
        s.lock.mark_consistent().unwrap();
        s.lock.release().unwrap();
        s.lock.acquire(Deadline::Now, Interrupt::Uninterruptible).unwrap();
        s.lock.release().unwrap();
    }

    #[test]
    fn release_without_mark_consistent_is_not_recoverable() {
        let m = mapped();
        let s = m.get();
        let pid = fork_child(|| {
            s.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
            // SAFETY: as above.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        wait_exit(pid);
        let e = s.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap_err();
        assert_eq!(e.code, WEFT_OWNER_DEAD);
        s.lock.release().unwrap();
        for _ in 0..2 {
            let e = s.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap_err();
            assert_eq!(e.code, WEFT_NOT_RECOVERABLE);
        }
    }

    #[test]
    fn live_slow_holder_is_not_taken_over() {
        let m = mapped();
        let s = m.get();
        s.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
        let pid = fork_child(|| {
            let r = s.lock.acquire(Deadline::from_timeout_ns(3 * CHECK_SLICE_NS), Interrupt::Uninterruptible);
            r.is_err_and(|e| e.code == WEFT_TIMEOUT)
        });
        let st = wait_exit(pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "the waiter must time out, not take over");
        s.lock.release().unwrap();
    }

    #[test]
    fn waiter_blocked_when_holder_dies_takes_over() {
        let m = mapped();
        let s = m.get();
        // Child 1 takes the lock and sleeps; the parent waits in acquire; child 1 is killed.
        let holder = fork_child(|| {
            s.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
            // SAFETY: sleeps until killed.
            loop {
                unsafe { libc::pause() };
            }
        });
        while !s.lock.locked() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let killer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            // SAFETY: kills our own child.
            unsafe { libc::kill(holder, libc::SIGKILL) };
        });
        let e = s.lock.acquire(Deadline::from_timeout_ns(10_000_000_000), Interrupt::Uninterruptible).unwrap_err();
        assert_eq!(e.code, WEFT_OWNER_DEAD);
        killer.join().unwrap();
        wait_exit(holder);
        s.lock.mark_consistent().unwrap();
        s.lock.release().unwrap();
        assert!(!s.lock.locked());
    }
}

/// The re-entrant lock for shared memory: a [`RobustLock`] whose holder may take it again.
/// The holder recorded in the robust word is the owner; the depth is only touched by it. When
/// the owner dies — at any depth — the next acquirer gets `WEFT_OWNER_DEAD` and holds the lock
/// at depth 1. `#[repr(C)]`, no pointers: it may live in shared memory.
#[repr(C)]
#[derive(Debug)]
pub struct RobustRLock<W: Word = SharedWord> {
    lock: RobustLock<W>,
    depth: W,
}

impl<W: Word> Default for RobustRLock<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Word> RobustRLock<W> {
    /// A free re-entrant lock.
    pub fn new() -> Self {
        RobustRLock { lock: RobustLock::new(), depth: W::new(0) }
    }

    /// True when the calling thread owns the lock.
    pub fn is_owned(&self) -> bool {
        liveness::current_thread().is_ok_and(|me| self.lock.holder() == me.id)
    }

    /// Acquires, or adds a level when the caller owns it. Errors: as [`RobustLock::acquire`]
    /// (with `WEFT_OWNER_DEAD` the caller holds the lock at depth 1), and
    /// `WEFT_INVALID_ARGUMENT` when the depth would overflow.
    pub fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        if self.is_owned() {
            let d = self.depth.load(Relaxed);
            if d == u32::MAX {
                return Err(Error::invalid("rlock recursion depth overflow"));
            }
            self.depth.store(d + 1, Relaxed);
            return Ok(());
        }
        let r = self.lock.acquire(deadline, interrupt);
        if r.is_ok() || r.as_ref().is_err_and(|e| e.code == WEFT_OWNER_DEAD) {
            self.depth.store(1, Relaxed);
        }
        r
    }

    /// Releases one level. Error: `WEFT_NOT_OWNER` when the caller does not own the lock.
    pub fn release(&self) -> Result<()> {
        if !self.is_owned() {
            return Err(Error::new(crate::status::WEFT_NOT_OWNER, "cannot release un-acquired rlock"));
        }
        // The owner's depth is at least 1; 0 means a peer scribbled on it.
        let d = self.depth.load(Relaxed).checked_sub(1).ok_or_else(|| {
            Error::new(crate::status::WEFT_CORRUPTED, "shared rlock depth is 0 while owned (damaged)")
        })?;
        self.depth.store(d, Relaxed);
        if d == 0 {
            self.lock.release()?;
        }
        Ok(())
    }

    /// Marks the protected state repaired after `WEFT_OWNER_DEAD` (see [`RobustLock`]).
    pub fn mark_consistent(&self) -> Result<()> {
        if !self.is_owned() {
            return Err(Error::new(crate::status::WEFT_NOT_OWNER, "only the owner may mark the rlock consistent"));
        }
        self.lock.mark_consistent()
    }

    /// Releases every level at once and returns the depth it had, for
    /// [`acquire_restore`](Self::acquire_restore) (a condition wait). A depth word that a peer
    /// zeroed counts as 1: the caller owns the lock, so it holds at least one level.
    ///
    /// Errors: `WEFT_NOT_OWNER` when the caller does not own the lock; as
    /// [`RobustLock::release`]. Thread- and process-safe.
    pub fn release_all(&self) -> Result<u32> {
        if !self.is_owned() {
            return Err(Error::new(crate::status::WEFT_NOT_OWNER, "cannot release un-acquired rlock"));
        }
        let saved = self.depth.load(Relaxed).max(1);
        self.depth.store(0, Relaxed);
        self.lock.release()?;
        Ok(saved)
    }

    /// Re-acquires the lock after [`release_all`](Self::release_all) — waiting without a
    /// deadline and ignoring cancel requests — and restores the depth `saved` (at least 1).
    ///
    /// Errors: `WEFT_OWNER_DEAD` (the lock is held, at depth `saved`, and its previous holder
    /// died: repair, then [`mark_consistent`](Self::mark_consistent)); `WEFT_NOT_RECOVERABLE`
    /// (not held); an error reading the caller's identity. Thread- and process-safe.
    pub fn acquire_restore(&self, saved: u32) -> Result<()> {
        let r = self.lock.acquire(Deadline::Never, Interrupt::Uninterruptible);
        if r.is_ok() || r.as_ref().is_err_and(|e| e.code == WEFT_OWNER_DEAD) {
            self.depth.store(saved.max(1), Relaxed);
        }
        r
    }

    /// Levels the calling thread holds (0 when it does not own the lock).
    pub fn depth(&self) -> u32 {
        if self.is_owned() {
            self.depth.load(Relaxed)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod rlock_tests {
    use super::*;
    use crate::status::WEFT_NOT_OWNER;
    use crate::test_support::{fork_child, SharedMap};

    #[test]
    fn owner_killed_at_depth_3_gives_owner_dead_at_depth_1() {
        let m = SharedMap::new(RobustRLock::<SharedWord>::new());
        let l = m.get();
        let pid = fork_child(|| {
            for _ in 0..3 {
                l.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
            }
            // SAFETY: dies holding the lock at depth 3.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        let status = crate::test_support::wait_child(pid);
        assert!(libc::WIFSIGNALED(status));
        assert_eq!(l.release().unwrap_err().code, WEFT_NOT_OWNER);
        let e = l.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap_err();
        assert_eq!(e.code, WEFT_OWNER_DEAD);
        assert_eq!(l.depth(), 1);
        l.acquire(Deadline::Now, Interrupt::Uninterruptible).unwrap();
        assert_eq!(l.depth(), 2);
        l.mark_consistent().unwrap();
        l.release().unwrap();
        l.release().unwrap();
        assert_eq!(l.depth(), 0);
        l.acquire(Deadline::Now, Interrupt::Uninterruptible).unwrap();
        l.release().unwrap();
    }
}
