//! Semaphore and BoundedSemaphore: Python's `threading.Semaphore` / `BoundedSemaphore`.
//!
//! The value is a futex word; acquirers sleep while it is zero. A waiter count lets release
//! skip the system call when nobody sleeps. A bounded semaphore refuses a release that would
//! raise the value above its initial value.

use crate::futex::{Interrupt, PrivateWord, Wait, Word};
use crate::status::{Error, Result, WEFT_INVALID_ARGUMENT, WEFT_INVALID_STATE};
use crate::time::Deadline;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};

/// A counting semaphore, optionally bounded. Thread-safe; process-safe with `W =
/// SharedWord`. `#[repr(C)]` and all atomics, so it may live in shared memory (any bit pattern
/// is a valid state).
///
/// A semaphore has no owner, so the death of a process that took a permit is not detected: the
/// permit stays taken (as with Python's and POSIX semaphores). Use a Lock where a holder's death
/// must be reported.
#[derive(Debug)]
#[repr(C)]
pub struct Semaphore<W: Word = PrivateWord> {
    value: W,
    waiters: W,
    /// The largest value a release may reach; `u32::MAX` when unbounded.
    bound: AtomicU32,
    /// 1 for a bounded semaphore.
    bounded: AtomicU32,
}

impl<W: Word> Semaphore<W> {
    /// A semaphore with `value` permits; bounded semaphores may never exceed `value`.
    pub fn new(value: u32, bounded: bool) -> Self {
        Semaphore {
            value: W::new(value),
            waiters: W::new(0),
            bound: AtomicU32::new(if bounded { value } else { u32::MAX }),
            bounded: AtomicU32::new(u32::from(bounded)),
        }
    }

    /// True for a bounded semaphore.
    pub fn is_bounded(&self) -> bool {
        self.bounded.load(Relaxed) != 0
    }

    /// Takes one permit, waiting until `deadline`. Errors: `WEFT_WOULD_BLOCK`,
    /// `WEFT_TIMEOUT`, `WEFT_CANCELLED`.
    pub fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        loop {
            let v = self.value.load(Relaxed);
            if v > 0 {
                if self.value.compare_exchange(v, v - 1, Acquire, Relaxed).is_ok() {
                    return Ok(());
                }
                continue;
            }
            if deadline == Deadline::Now {
                return Err(Error::would_block("semaphore has no permits"));
            }
            self.waiters.fetch_add(1, SeqCst);
            let w = self.value.wait(0, deadline, interrupt);
            self.waiters.fetch_sub(1, SeqCst);
            if w != Wait::Woken {
                // A permit released as the deadline passed is still taken.
                let v = self.value.load(Relaxed);
                if v > 0 && self.value.compare_exchange(v, v - 1, Acquire, Relaxed).is_ok() {
                    return Ok(());
                }
                return Err(Error::from_wait(w, deadline, "timed out acquiring the semaphore"));
            }
        }
    }

    /// Adds `n` permits and wakes up to `n` waiters. Errors: `WEFT_INVALID_ARGUMENT` when
    /// `n` is 0 or the value would overflow; `WEFT_INVALID_STATE` when a bounded semaphore
    /// would exceed its initial value (nothing is added then).
    pub fn release(&self, n: u32) -> Result<()> {
        if n == 0 {
            return Err(Error::new(WEFT_INVALID_ARGUMENT, "release count must be at least 1"));
        }
        let mut v = self.value.load(Relaxed);
        loop {
            let next = match v.checked_add(n) {
                Some(x) if x <= self.bound.load(Relaxed) => x,
                Some(_) => return Err(Error::new(WEFT_INVALID_STATE, "semaphore released too many times")),
                None => return Err(Error::new(WEFT_INVALID_ARGUMENT, "semaphore value would overflow")),
            };
            match self.value.compare_exchange(v, next, SeqCst, Relaxed) {
                Ok(_) => break,
                Err(actual) => v = actual,
            }
        }
        if self.waiters.load(SeqCst) > 0 {
            self.value.wake(n);
        }
        Ok(())
    }

    /// The current number of permits.
    pub fn value(&self) -> u32 {
        self.value.load(Relaxed)
    }
}
