//! RLock: Python's `threading.RLock`, a re-entrant lock with an owner and a depth.
//!
//! The owner is the holder's kernel thread id (unique among live threads, and across
//! processes in one PID namespace, which the shared version relies on). Only the owner
//! touches the depth, so it needs no ordering beyond the inner lock's.

use crate::futex::{Interrupt, PrivateWord, Word};
use crate::status::{Error, Result, WEFT_INVALID_ARGUMENT, WEFT_NOT_OWNER};
use crate::sync::Lock;
use crate::thread::current_tid;
use crate::time::Deadline;
use std::sync::atomic::Ordering::Relaxed;

/// A re-entrant lock. Thread-safe; only the owning thread may release it.
#[derive(Debug, Default)]
pub struct RLock<W: Word = PrivateWord> {
    lock: Lock<W>,
    owner: W,
    depth: W,
}

impl<W: Word> RLock<W> {
    /// An unlocked re-entrant lock.
    pub fn new() -> Self {
        RLock { lock: Lock::new(), owner: W::new(0), depth: W::new(0) }
    }

    /// Acquires (again, when the caller already owns it: the depth grows by one).
    /// Errors: as [`Lock::acquire`], and `WEFT_INVALID_ARGUMENT` when the depth would overflow.
    pub fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        let me = current_tid();
        if self.owner.load(Relaxed) == me {
            let d = self.depth.load(Relaxed);
            if d == u32::MAX {
                return Err(Error::new(WEFT_INVALID_ARGUMENT, "rlock recursion depth overflow"));
            }
            self.depth.store(d + 1, Relaxed);
            return Ok(());
        }
        self.lock.acquire(deadline, interrupt)?;
        self.owner.store(me, Relaxed);
        self.depth.store(1, Relaxed);
        Ok(())
    }

    /// Releases one level; the lock is free when the depth reaches zero.
    /// Error: `WEFT_NOT_OWNER` when the caller does not own it.
    pub fn release(&self) -> Result<()> {
        if !self.is_owned() {
            return Err(Error::new(WEFT_NOT_OWNER, "cannot release un-acquired rlock"));
        }
        let d = self.depth.load(Relaxed) - 1;
        self.depth.store(d, Relaxed);
        if d == 0 {
            self.owner.store(0, Relaxed);
            self.lock.release()?;
        }
        Ok(())
    }

    /// True when the calling thread owns the lock.
    pub fn is_owned(&self) -> bool {
        self.owner.load(Relaxed) == current_tid()
    }

    /// How many times the calling thread holds the lock (0 when it does not own it).
    pub fn depth(&self) -> u32 {
        if self.is_owned() {
            self.depth.load(Relaxed)
        } else {
            0
        }
    }

    /// True while any thread holds the lock.
    pub fn locked(&self) -> bool {
        self.lock.locked()
    }

    /// Releases every level at once, returning the depth (for a condition wait).
    pub(crate) fn release_all(&self) -> Result<u32> {
        if !self.is_owned() {
            return Err(Error::new(WEFT_NOT_OWNER, "cannot release un-acquired rlock"));
        }
        let d = self.depth.load(Relaxed);
        self.depth.store(0, Relaxed);
        self.owner.store(0, Relaxed);
        self.lock.release()?;
        Ok(d)
    }

    /// The inner lock (for a condition's wait morphing).
    pub(crate) fn mutex(&self) -> &Lock<W> {
        &self.lock
    }

    /// Re-acquires with a saved depth, ignoring cancel requests (after a condition wait).
    pub(crate) fn acquire_restore(&self, depth: u32) {
        self.lock.acquire_contended();
        self.owner.store(current_tid(), Relaxed);
        self.depth.store(depth, Relaxed);
    }
}
