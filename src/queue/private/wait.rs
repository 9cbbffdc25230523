//! Waiting: an eventcount on a futex word, the blocking loop shared by every queue operation,
//! and the joinable task count.
//!
//! # The eventcount
//!
//! `epoch` is the futex word threads sleep on. `state` counts the prepared waiters (threads
//! between [`EventCount::prepare`] and the end of their sleep) in its low 31 bits, and its top
//! bit, `WAKING`, says that a wake-up was sent and has not arrived yet.
//!
//! A waiter bumps the count (SeqCst), reads `epoch`, re-checks its condition, and sleeps while
//! `epoch` still holds what it read. A notifier first makes the condition true with a SeqCst
//! operation, then reads `state` (SeqCst). The two halves are sequentially consistent, so at
//! least one side sees the other (the Dekker handshake of `sync::Semaphore`): when the count is
//! zero nobody can be on the way to sleep without seeing the condition, and the notifier makes
//! no system call.
//!
//! When the count is not zero, `notify_one` sets `WAKING`, bumps `epoch` and wakes one sleeper.
//! While `WAKING` is set, later notifiers do nothing: without that, a producer would make a
//! `FUTEX_WAKE` call for every item it puts until the consumer it woke is running again, which
//! takes microseconds. The flag is cleared by every waiter that leaves its sleep, and a waiter
//! about to sleep that finds it set clears it and checks its condition once more instead of
//! sleeping (the wake-up may have found nobody asleep). A notifier that did nothing relied on
//! the thread being woken: so a waiter that succeeds after preparing passes the wake-up on
//! ([`EventCount::pass_on`]) when the condition still holds and others wait, which covers
//! several items put while one wake-up was in flight.

use super::shim::{Atomic, Backoff, Shim};
use crate::futex::{Interrupt, Wait, Word};
use crate::status::{Error, Result, WEFT_INVALID_STATE};
use crate::time::Deadline;
use std::sync::atomic::Ordering::{AcqRel, Relaxed, SeqCst};

/// `state`: a wake-up is in flight.
const WAKING: u32 = 1 << 31;

/// Threads waiting for one condition: see the module documentation.
pub(crate) struct EventCount<W: Word> {
    epoch: W,
    state: W,
}

impl<W: Word> EventCount<W> {
    /// Nobody waiting.
    pub(crate) fn new() -> Self {
        EventCount { epoch: W::new(0), state: W::new(0) }
    }

    /// Announces a waiter; returns the key for [`sleep`](Self::sleep). The caller then
    /// re-checks its condition, and calls `sleep` or [`abandon`](Self::abandon).
    #[inline]
    pub(crate) fn prepare(&self) -> u32 {
        self.state.fetch_add(1, SeqCst);
        self.epoch.load(SeqCst)
    }

    /// Withdraws a prepared waiter that will not sleep.
    #[inline]
    pub(crate) fn abandon(&self) {
        self.state.fetch_sub(1, SeqCst);
    }

    /// Sleeps until notified (after `key` was taken), the deadline, or a cancel request; or
    /// returns `Woken` at once when a wake-up is in flight (see the module documentation).
    /// Withdraws the waiter either way.
    pub(crate) fn sleep(&self, key: u32, deadline: Deadline) -> Wait {
        let w = if self.state.load(SeqCst) & WAKING != 0 {
            Wait::Woken
        } else {
            self.epoch.wait(key, deadline, Interrupt::Cancellable)
        };
        let mut s = self.state.load(Relaxed);
        loop {
            match self.state.compare_exchange(s, (s - 1) & !WAKING, SeqCst, Relaxed) {
                Ok(_) => return w,
                Err(actual) => s = actual,
            }
        }
    }

    /// Wakes one waiter, if any is prepared and no wake-up is in flight. Call after making the
    /// condition true with a SeqCst operation. Costs one load when nobody waits.
    #[inline]
    pub(crate) fn notify_one(&self) {
        let s = self.state.load(SeqCst);
        if s != 0 && s & WAKING == 0 {
            self.wake_one(s);
        }
    }

    #[cold]
    fn wake_one(&self, mut s: u32) {
        loop {
            match self.state.compare_exchange(s, s | WAKING, SeqCst, Relaxed) {
                Ok(_) => break,
                Err(actual) if actual != 0 && actual & WAKING == 0 => s = actual,
                Err(_) => return,
            }
        }
        self.epoch.fetch_add(1, SeqCst);
        self.epoch.wake(1);
    }

    /// Wakes every prepared waiter.
    #[inline]
    pub(crate) fn notify_all(&self) {
        if self.state.load(SeqCst) & !WAKING != 0 {
            self.wake_all();
        }
    }

    #[cold]
    fn wake_all(&self) {
        self.epoch.fetch_add(1, SeqCst);
        self.epoch.wake(u32::MAX);
    }

    /// After a waiter's success: wakes another waiter if `ready` (the condition still holds),
    /// for the notifiers that relied on this waiter's wake-up.
    pub(crate) fn pass_on(&self, ready: impl FnOnce() -> bool) {
        if self.state.load(SeqCst) & !WAKING != 0 && ready() {
            self.notify_one();
        }
    }
}

/// What a blocking call says when it gives up: for `Deadline::Now` and for a passed deadline.
pub(crate) type Why = (&'static str, &'static str);

/// Waits until `attempt` gives `Some` (or an error), after one quick attempt that gave `None`.
/// Spins and yields a little first (when the shim spins), then sleeps on `ec`; `ready` tells
/// whether the condition holds (for [`EventCount::pass_on`]). `attempt(precise)` may answer
/// `None` early when not `precise` (the ring's quick attempts); every decision to sleep or give
/// up follows a precise attempt. A deadline of `Now` gives `WEFT_WOULD_BLOCK`; a passed
/// deadline `WEFT_TIMEOUT`; a cancel request `WEFT_CANCELLED` — each after one last attempt, so
/// that an item or a room that came with the deadline or the cancel request is not left behind
/// with a wake-up meant for this thread.
#[inline(never)]
pub(crate) fn block<S: Shim, T>(
    ec: &EventCount<S::Word>,
    deadline: Deadline,
    why: Why,
    ready: impl Fn() -> bool,
    mut attempt: impl FnMut(bool) -> Result<Option<T>>,
) -> Result<T> {
    if deadline == Deadline::Now {
        return attempt(true)?.ok_or_else(|| Error::would_block(why.0));
    }
    let mut backoff = Backoff::<S>::new();
    while !backoff.is_completed() {
        backoff.snooze();
        if let Some(v) = attempt(false)? {
            return Ok(v);
        }
    }
    loop {
        let key = ec.prepare();
        match attempt(true) {
            Ok(None) => {}
            Ok(Some(v)) => {
                ec.abandon();
                ec.pass_on(&ready);
                return Ok(v);
            }
            Err(e) => {
                ec.abandon();
                return Err(e);
            }
        }
        let w = ec.sleep(key, deadline);
        if w != Wait::Woken {
            if let Some(v) = attempt(true)? {
                ec.pass_on(&ready);
                return Ok(v);
            }
            return Err(Error::from_wait(w, deadline, why.1));
        }
    }
}

/// The unfinished-task count of a joinable queue, and its joiners.
pub(crate) struct Tasks<S: Shim> {
    unfinished: S::Pos,
    done: EventCount<S::Word>,
}

impl<S: Shim> Tasks<S> {
    /// No unfinished tasks.
    pub(crate) fn new() -> Self {
        Tasks { unfinished: S::Pos::new(0), done: EventCount::new() }
    }

    /// One more task (a put), counted before the item becomes visible to gets.
    #[inline]
    pub(crate) fn add(&self) {
        self.unfinished.fetch_add(1, AcqRel);
    }

    /// The number of unfinished tasks.
    pub(crate) fn unfinished(&self) -> usize {
        self.unfinished.load(SeqCst)
    }

    /// Subtracts one unless the count is zero; returns whether it did. Wakes the joiners
    /// when the count reaches zero.
    fn sub(&self) -> bool {
        let mut n = self.unfinished.load(Relaxed);
        loop {
            if n == 0 {
                return false;
            }
            match self.unfinished.compare_exchange_weak(n, n - 1, SeqCst, Relaxed) {
                Ok(_) => break,
                Err(actual) => n = actual,
            }
        }
        if n == 1 {
            self.done.notify_all();
        }
        true
    }

    /// One task done. Errors: `WEFT_INVALID_STATE` when no task is unfinished.
    pub(crate) fn task_done(&self) -> Result<()> {
        if self.sub() {
            Ok(())
        } else {
            Err(Error::new(WEFT_INVALID_STATE, "task_done called more times than there were items"))
        }
    }

    /// An item discarded by an immediate shutdown counts as done (never below zero).
    pub(crate) fn discard(&self) {
        self.sub();
    }

    /// Waits until no task is unfinished. Errors: `WEFT_WOULD_BLOCK` (deadline now),
    /// `WEFT_TIMEOUT`, `WEFT_CANCELLED`.
    pub(crate) fn join(&self, deadline: Deadline) -> Result<()> {
        let attempt = |_| Ok((self.unfinished.load(SeqCst) == 0).then_some(()));
        if let Some(()) = attempt(true)? {
            return Ok(());
        }
        block::<S, ()>(&self.done, deadline, ("the queue has unfinished tasks", "timed out joining the queue"), || false, attempt)
    }
}
