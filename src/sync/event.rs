//! Event: Python's `threading.Event`.
//!
//! The word holds the flag in bit 0 and a generation above it. `set` bumps the generation, so
//! a waiter that slept through a `set` quickly followed by `clear` still returns success, as
//! Python's waiters do (they were notified while the flag was true).

use crate::futex::{Interrupt, PrivateWord, Wait, Word};
use crate::status::{Error, Result};
use crate::time::Deadline;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};

const FLAG: u32 = 1;

/// A flag threads can wait for. Thread-safe; process-safe with `W = SharedWord`.
/// `#[repr(C)]` and all atomics, so it may live in shared memory. A waiter that dies never
/// blocks `set`: setting wakes every sleeper and waits for none.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Event<W: Word = PrivateWord> {
    word: W,
    waiters: W,
}

impl<W: Word> Event<W> {
    /// A cleared event.
    pub fn new() -> Self {
        Event { word: W::new(0), waiters: W::new(0) }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut w = self.word.load(Relaxed);
        loop {
            if w & FLAG != 0 {
                return;
            }
            // Bump the generation (bits 1..) and set the flag.
            match self.word.compare_exchange(w, w.wrapping_add(2) | FLAG, SeqCst, Relaxed) {
                Ok(_) => break,
                Err(actual) => w = actual,
            }
        }
        if self.waiters.load(SeqCst) > 0 {
            self.word.wake(u32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        let mut w = self.word.load(Relaxed);
        while w & FLAG != 0 {
            match self.word.compare_exchange(w, w & !FLAG, SeqCst, Relaxed) {
                Ok(_) => return,
                Err(actual) => w = actual,
            }
        }
    }

    /// True while the flag is set.
    pub fn is_set(&self) -> bool {
        self.word.load(Acquire) & FLAG != 0
    }

    /// Waits until the flag is set (or was set while waiting). Errors: `WEFT_WOULD_BLOCK`
    /// (deadline now and not set), `WEFT_TIMEOUT`, `WEFT_CANCELLED`.
    pub fn wait(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        let start = self.word.load(Acquire);
        if start & FLAG != 0 {
            return Ok(());
        }
        if deadline == Deadline::Now {
            return Err(Error::would_block("event is not set"));
        }
        let mut seen = start;
        loop {
            self.waiters.fetch_add(1, SeqCst);
            let w = self.word.wait(seen, deadline, interrupt);
            self.waiters.fetch_sub(1, SeqCst);
            let now = self.word.load(Acquire);
            if now & FLAG != 0 || (now >> 1) != (start >> 1) {
                return Ok(());
            }
            if w != Wait::Woken {
                return Err(Error::from_wait(w, deadline, "timed out waiting for the event"));
            }
            seen = now;
        }
    }
}
