//! Condition: Python's `threading.Condition`, over a Lock or an RLock.
//!
//! Each waiter queues a node with its own futex word, releases the lock (all levels of an
//! RLock) and sleeps on the node; `notify(n)` hands the first `n` queued nodes their wake-up,
//! so exactly `n` waiters wake, in arrival order, as in CPython. A waiter that times out
//! removes its node; one notified while timing out counts as notified, so a notification is
//! never lost.
//!
//! Notify does not wake a sleeping waiter: it moves it from its node onto the lock's futex
//! (`FUTEX_CMP_REQUEUE`, "wait morphing"), so it wakes once, when the notifier releases the
//! lock, instead of waking only to sleep again on the lock the notifier still holds.

use crate::futex::{Interrupt, PrivateWord, Wait, Word};
use crate::status::{Error, Result, WEFT_CANCELLED, WEFT_NOT_OWNER};
use crate::sync::{Lock, RLock};
use crate::time::Deadline;
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::Arc;

/// A lock a condition can be built over.
pub trait CondLock: Send + Sync {
    /// The futex word type of the lock.
    type W: Word;
    /// The mutex underneath (the one waiters are requeued onto).
    fn mutex(&self) -> &Lock<Self::W>;
    /// Acquires the lock.
    fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()>;
    /// Releases the lock (one level of an RLock).
    fn release(&self) -> Result<()>;
    /// True when the caller may wait and notify: owner of an RLock; for a Lock, which has no
    /// owner, "locked" (Python's rule).
    fn is_owned(&self) -> bool;
    /// Releases completely, returning what `acquire_restore` needs.
    fn release_save(&self) -> Result<u32>;
    /// Re-acquires (ignoring cancel requests) and restores the saved state.
    fn acquire_restore(&self, saved: u32);
}

impl<W: Word> CondLock for Lock<W> {
    type W = W;
    fn mutex(&self) -> &Lock<W> {
        self
    }
    fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        Lock::acquire(self, deadline, interrupt)
    }
    fn release(&self) -> Result<()> {
        Lock::release(self)
    }
    fn is_owned(&self) -> bool {
        self.locked()
    }
    fn release_save(&self) -> Result<u32> {
        Lock::release(self).map(|_| 0)
    }
    fn acquire_restore(&self, _saved: u32) {
        self.acquire_contended();
    }
}

impl<W: Word> CondLock for RLock<W> {
    type W = W;
    fn mutex(&self) -> &Lock<W> {
        RLock::mutex(self)
    }
    fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        RLock::acquire(self, deadline, interrupt)
    }
    fn release(&self) -> Result<()> {
        RLock::release(self)
    }
    fn is_owned(&self) -> bool {
        RLock::is_owned(self)
    }
    fn release_save(&self) -> Result<u32> {
        self.release_all()
    }
    fn acquire_restore(&self, saved: u32) {
        RLock::acquire_restore(self, saved)
    }
}

impl<T: CondLock + ?Sized> CondLock for Arc<T> {
    type W = T::W;
    fn mutex(&self) -> &Lock<T::W> {
        (**self).mutex()
    }
    fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        (**self).acquire(deadline, interrupt)
    }
    fn release(&self) -> Result<()> {
        (**self).release()
    }
    fn is_owned(&self) -> bool {
        (**self).is_owned()
    }
    fn release_save(&self) -> Result<u32> {
        (**self).release_save()
    }
    fn acquire_restore(&self, saved: u32) {
        (**self).acquire_restore(saved)
    }
}

/// Data behind a weft lock of its own. Needed because a Condition over a plain Lock cannot
/// prove that its caller holds the user's lock.
struct Guarded<T, W: Word> {
    lock: Lock<W>,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is only reached through `with`, which holds `lock` for the whole access.
unsafe impl<T: Send, W: Word> Sync for Guarded<T, W> {}

impl<T, W: Word> Guarded<T, W> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let _ = self.lock.acquire(Deadline::Never, Interrupt::Uninterruptible);
        // SAFETY: the lock is held, so this is the only reference to `data`.
        let r = f(unsafe { &mut *self.data.get() });
        let _ = self.lock.release();
        r
    }
}

/// A condition variable over a lock `L`. Thread-safe.
pub struct Condition<L: CondLock<W = W>, W: Word = PrivateWord> {
    lock: L,
    waiters: Guarded<VecDeque<Arc<W>>, W>,
}

const WAITING: u32 = 0;
const NOTIFIED: u32 = 1;

impl<L: CondLock<W = W>, W: Word> Condition<L, W> {
    /// A condition over `lock`.
    pub fn new(lock: L) -> Self {
        Condition { lock, waiters: Guarded { lock: Lock::new(), data: UnsafeCell::new(VecDeque::new()) } }
    }

    /// The underlying lock.
    pub fn lock(&self) -> &L {
        &self.lock
    }

    /// Releases the lock, waits for a notification, re-acquires the lock (always, even on
    /// timeout or cancel). Errors: `WEFT_NOT_OWNER` (lock not held), `WEFT_WOULD_BLOCK`
    /// (deadline now), `WEFT_TIMEOUT`, `WEFT_CANCELLED`.
    pub fn wait(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        if !self.lock.is_owned() {
            return Err(Error::new(WEFT_NOT_OWNER, "cannot wait on un-acquired lock"));
        }
        let node = Arc::new(W::new(WAITING));
        self.waiters.with(|q| q.push_back(node.clone()));
        let saved = match self.lock.release_save() {
            Ok(s) => s,
            Err(e) => {
                self.remove(&node);
                return Err(e);
            }
        };
        let mut outcome = Wait::Woken;
        while node.load(Acquire) == WAITING {
            outcome = node.wait(WAITING, deadline, interrupt);
            if outcome != Wait::Woken {
                break;
            }
        }
        self.lock.acquire_restore(saved);
        if node.load(Acquire) == NOTIFIED || !self.remove(&node) {
            // Notified, possibly just as the wait timed out: the notification is honoured.
            return Ok(());
        }
        Err(Error::from_wait(outcome, deadline, "timed out waiting on the condition"))
    }

    fn remove(&self, node: &Arc<W>) -> bool {
        self.waiters.with(|q| match q.iter().position(|n| Arc::ptr_eq(n, node)) {
            Some(i) => {
                q.remove(i);
                true
            }
            None => false,
        })
    }

    /// Waits until `predicate` returns true (it is evaluated with the lock held), as Python's
    /// `wait_for`. Ok when the predicate became true; `WEFT_TIMEOUT`/`WEFT_WOULD_BLOCK` when
    /// the deadline passed first; `WEFT_NOT_OWNER`, `WEFT_CANCELLED`.
    pub fn wait_for(&self, deadline: Deadline, interrupt: Interrupt, predicate: &mut dyn FnMut() -> bool) -> Result<()> {
        if !self.lock.is_owned() {
            return Err(Error::new(WEFT_NOT_OWNER, "cannot wait on un-acquired lock"));
        }
        let mut first = true;
        while !predicate() {
            if !first && deadline.expired() {
                return Err(Error::from_wait(Wait::TimedOut, deadline, "timed out waiting for the predicate"));
            }
            first = false;
            if let Err(e) = self.wait(deadline, interrupt) {
                if e.code == WEFT_CANCELLED || e.code == WEFT_NOT_OWNER {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Wakes up to `n` waiters, oldest first. Error: `WEFT_NOT_OWNER`.
    pub fn notify(&self, n: usize) -> Result<()> {
        if !self.lock.is_owned() {
            return Err(Error::new(WEFT_NOT_OWNER, "cannot notify on un-acquired lock"));
        }
        let mutex = self.lock.mutex();
        self.waiters.with(|q| {
            for _ in 0..n {
                let Some(node) = q.pop_front() else { break };
                node.store(NOTIFIED, Release);
                // A waiter already asleep is moved onto the (held) lock; one not yet asleep
                // sees NOTIFIED by itself.
                if !(mutex.mark_contended() && node.requeue_one(NOTIFIED, mutex.word())) {
                    node.wake(1);
                } else if !mutex.contended() {
                    // A Lock has no owner: another thread may have released it between
                    // mark_contended and the requeue, and then nobody would wake the moved
                    // waiter. Wake one sleeper of the lock (a spurious wake-up is harmless).
                    mutex.word().wake(1);
                }
            }
        });
        Ok(())
    }

    /// Wakes every waiter. Error: `WEFT_NOT_OWNER`.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }

    /// Number of threads currently waiting (not yet notified).
    pub fn waiting(&self) -> usize {
        self.waiters.with(|q| q.len())
    }
}
