//! Lock: Python's `threading.Lock`, a three-state futex mutex.
//!
//! The word is 0 (unlocked), 1 (locked, nobody sleeping) or 2 (locked, maybe sleepers), as in
//! Drepper's "Futexes Are Tricky". Like Python's lock it has no owner: any thread may release
//! it. Uncontended acquire and release are one atomic operation each; release makes a system
//! call only when somebody may be asleep.

use crate::futex::{Interrupt, PrivateWord, Wait, Word};
use crate::status::{Error, Result, WEFT_INVALID_STATE};
use crate::time::Deadline;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// A mutual-exclusion lock without an owner. Thread-safe: every method may be called from
/// any thread.
#[derive(Debug, Default)]
pub struct Lock<W: Word = PrivateWord> {
    state: W,
}

impl Lock<PrivateWord> {
    /// An unlocked private lock, usable in `static` initialisers.
    pub const fn new_const() -> Self {
        Lock { state: PrivateWord::new_const(UNLOCKED) }
    }
}

impl<W: Word> Lock<W> {
    /// An unlocked lock.
    pub fn new() -> Self {
        Lock { state: W::new(UNLOCKED) }
    }

    /// Acquires without blocking; true on success.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.state.compare_exchange(UNLOCKED, LOCKED, Acquire, Relaxed).is_ok()
    }

    /// Acquires, waiting until `deadline`. Errors: `WEFT_WOULD_BLOCK` (deadline now),
    /// `WEFT_TIMEOUT`, `WEFT_CANCELLED` (cancellable waits only).
    #[inline]
    pub fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        if self.try_acquire() {
            return Ok(());
        }
        self.acquire_slow(deadline, interrupt)
    }

    #[cold]
    fn acquire_slow(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        if deadline == Deadline::Now {
            return Err(Error::would_block("lock is held"));
        }
        // No spinning: on this class of machine (benches/sync.rs) spinning bought no contended
        // throughput and cost condition ping-pong latency, as glibc's default mutex also finds.
        loop {
            if self.state.swap(CONTENDED, Acquire) == UNLOCKED {
                return Ok(());
            }
            match self.state.wait(CONTENDED, deadline, interrupt) {
                Wait::Woken => continue,
                w => {
                    // One last try: the lock may have been released as the deadline passed.
                    if self.state.swap(CONTENDED, Acquire) == UNLOCKED {
                        return Ok(());
                    }
                    return Err(Error::from_wait(w, deadline, "timed out acquiring the lock"));
                }
            }
        }
    }

    /// Releases. Any thread may release (as in Python). Error: `WEFT_INVALID_STATE` when the
    /// lock is not locked.
    #[inline]
    pub fn release(&self) -> Result<()> {
        match self.state.swap(UNLOCKED, Release) {
            LOCKED => Ok(()),
            CONTENDED => {
                self.state.wake(1);
                Ok(())
            }
            _ => Err(Error::new(WEFT_INVALID_STATE, "release of an unlocked lock")),
        }
    }

    /// Acquires ignoring cancel requests and without a deadline, leaving the word CONTENDED:
    /// for a thread that was requeued onto this lock by a condition's notify, since other
    /// requeued sleepers may still be queued here and the next release must wake one.
    pub(crate) fn acquire_contended(&self) {
        while self.state.swap(CONTENDED, Acquire) != UNLOCKED {
            self.state.wait(CONTENDED, Deadline::Never, Interrupt::Uninterruptible);
        }
    }

    /// Marks a held lock CONTENDED so that its release wakes a sleeper; false when the lock is
    /// not held (then nobody may be moved onto it).
    pub(crate) fn mark_contended(&self) -> bool {
        loop {
            match self.state.load(Relaxed) {
                UNLOCKED => return false,
                CONTENDED => return true,
                s => {
                    if self.state.compare_exchange(s, CONTENDED, Relaxed, Relaxed).is_ok() {
                        return true;
                    }
                }
            }
        }
    }

    /// True while the word is CONTENDED (the next release wakes a sleeper).
    pub(crate) fn contended(&self) -> bool {
        self.state.load(Acquire) == CONTENDED
    }

    /// The futex word, for requeueing condition waiters onto it.
    pub(crate) fn word(&self) -> &W {
        &self.state
    }

    /// True while the lock is held by some thread.
    pub fn locked(&self) -> bool {
        self.state.load(Relaxed) != UNLOCKED
    }
}
