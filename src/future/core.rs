//! The state machine of one future: a futex word, the value cell, and a small mutex guarding
//! the hooks (done callbacks, registered waiters, the pollable descriptor).
//!
//! # The word
//!
//! Bits 0..3 hold the phase (`PENDING`, `RUNNING`, then one of the final `DONE`, `FAILED`,
//! `CANCELLED`); above it three flags:
//! - `CLAIMED`: a completer owns the value cell (it won the race to finish a pending or running
//!   future) and is writing the value; the phase is still the one it claimed from.
//! - `WATCHED`: a thread sleeps (or is about to) on the word: the publisher must `wake`.
//! - `HOOKS`: the hook list or the descriptor is in use: the publisher must take the mutex.
//!
//! Every phase change is one read-modify-write of the word, so the flags a waiter or a
//! registrant sets are either seen by the completer's publishing RMW or make the waiter's own
//! RMW fail on the changed word; there is no window for a lost wake-up or a lost callback, and
//! no Dekker handshake (no SeqCst) anywhere. A completion that nobody watches costs a
//! compare-and-exchange and a subtraction: no system call, no lock.
//!
//! # The value
//!
//! The value cell is written once, by the thread holding `CLAIMED`, and published by the
//! release RMW that makes the phase final; it is read only after an acquire load saw a final
//! phase, and never written again, so readers may keep plain references into it for as long as
//! the future lives.
//!
//! # Hooks
//!
//! A registrant takes the mutex, then (still holding it) either finds the phase final — and
//! runs its hook itself — or sets `HOOKS` and pushes the hook. The completer that sees `HOOKS`
//! in the word its publishing RMW replaced takes the mutex after that registrant released it
//! and drains the list. Either way each hook runs exactly once, and always after the value is
//! published. Hooks run outside the mutex, so they may use the future freely.
//!
//! The state machine is generic over a [`Shim`] (the futex word, the mutex and the cell) so
//! that `models.rs` checks it under loom with the very code that runs here.

use crate::futex::{Interrupt, PrivateWord, Wait, Word};
use crate::status::{weft_status, Error, Result, WEFT_INVALID_STATE};
use crate::time::Deadline;
use std::cell::UnsafeCell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::Mutex;

/// Phase: created, not started.
pub(crate) const PENDING: u32 = 0;
/// Phase: a runner called `set_running`.
pub(crate) const RUNNING: u32 = 1;
/// Final phase: finished with result bytes.
pub(crate) const DONE: u32 = 2;
/// Final phase: finished with a failure status and message.
pub(crate) const FAILED: u32 = 3;
/// Final phase: cancelled before it ran (or a running task honoured a cancel request).
pub(crate) const CANCELLED: u32 = 4;
const PHASE: u32 = 7;
const CLAIMED: u32 = 8;
const WATCHED: u32 = 16;
const HOOKS: u32 = 32;

/// The phase of a word.
#[inline]
pub(crate) fn phase(w: u32) -> u32 {
    w & PHASE
}

/// True when a word's phase is final (done, failed or cancelled).
#[inline]
pub(crate) fn is_final(w: u32) -> bool {
    w & PHASE >= DONE
}

/// The building blocks of [`Core`], real ([`Native`]) or loom's (`models.rs`).
pub(crate) trait Shim: Send + Sync + 'static {
    /// The state word.
    type Word: Word;
    /// The mutex guarding the hooks.
    type Lock<T: Send>: Guarded<T>;
    /// The value cell.
    type Cell<T: Send>: Slot<T>;
}

/// A mutex, used through a closure.
pub(crate) trait Guarded<T>: Send + Sync {
    /// A mutex holding `v`.
    fn new(v: T) -> Self;
    /// Runs `f` on the guarded value. A poisoned mutex is used anyway (nothing that runs under
    /// it can leave it inconsistent: hooks run outside).
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

/// A cell whose accesses the caller orders.
pub(crate) trait Slot<T>: Send {
    /// A cell holding `v`.
    fn new(v: T) -> Self;
    /// Reads through a pointer, valid during `f` (for the native cell, as long as the cell).
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R;
    /// Writes through a pointer, valid during `f`.
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R;
}

/// The real thing: a process-private futex word, `std::sync::Mutex`, `UnsafeCell`.
pub(crate) struct Native;

impl Shim for Native {
    type Word = PrivateWord;
    type Lock<T: Send> = Mutex<T>;
    type Cell<T: Send> = UnsafeCell<T>;
}

impl<T: Send> Guarded<T> for Mutex<T> {
    #[inline]
    fn new(v: T) -> Self {
        Mutex::new(v)
    }
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<T: Send> Slot<T> for UnsafeCell<T> {
    #[inline]
    fn new(v: T) -> Self {
        UnsafeCell::new(v)
    }
    #[inline]
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.get())
    }
    #[inline]
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.get())
    }
}

/// What a finished future holds.
#[derive(Debug, Default)]
pub(crate) enum Value {
    /// Nothing yet (and forever, for a cancelled future).
    #[default]
    Empty,
    /// Result bytes.
    Result(Vec<u8>),
    /// A failure status (never `WEFT_OK`) and its message.
    Failure(weft_status, CString),
}

/// What the mutex guards.
pub(crate) struct Hooks<H> {
    /// Hooks to run once the future is final, in registration order.
    pub(crate) list: Vec<H>,
    /// The pollable descriptor, once somebody asked for it: an eventfd signalled on completion
    /// and never drained, so it stays readable.
    pub(crate) fd: Option<OwnedFd>,
}

/// One future's state. `H` is what the hook list holds (callbacks, waiters).
pub(crate) struct Core<S: Shim, H: Send> {
    word: S::Word,
    /// The cooperative cancel request the running task sees through `weft_call_cancelled`.
    cancel: AtomicU32,
    value: S::Cell<Value>,
    hooks: S::Lock<Hooks<H>>,
}

// SAFETY: the value cell is written only by the thread holding `CLAIMED`, before the release
// RMW that publishes a final phase, and read only after an acquire load saw that final phase
// (see the module documentation); everything else is atomics and a mutex.
unsafe impl<S: Shim, H: Send> Sync for Core<S, H> {}

/// Writes 1 to an eventfd (making it readable; done futures stay readable for good).
fn signal(fd: &OwnedFd) {
    let v: u64 = 1;
    // SAFETY: `fd` is our live eventfd and the buffer is 8 bytes on this stack frame; the
    // descriptor is non-blocking and its counter is at most 1, so the write cannot block.
    unsafe { libc::write(fd.as_raw_fd(), (&v as *const u64).cast(), 8) };
}

impl<S: Shim, H: Send> Core<S, H> {
    /// A pending future.
    pub(crate) fn new() -> Self {
        Core {
            word: S::Word::new(PENDING),
            cancel: AtomicU32::new(0),
            value: S::Cell::new(Value::Empty),
            hooks: S::Lock::new(Hooks { list: Vec::new(), fd: None }),
        }
    }

    /// The current word (acquire: a final phase makes the value readable).
    #[inline]
    pub(crate) fn load(&self) -> u32 {
        self.word.load(Acquire)
    }

    /// The cancel word a runner passes to `Call::new`.
    #[inline]
    pub(crate) fn cancel_word(&self) -> &AtomicU32 {
        &self.cancel
    }

    /// Python's `set_running_or_notify_cancel`: pending → running (true); false when it was
    /// cancelled (the task must not run). Errors: `WEFT_INVALID_STATE` (running, being
    /// completed, or finished).
    pub(crate) fn set_running(&self) -> Result<bool> {
        let mut w = self.word.load(Relaxed);
        loop {
            match phase(w) {
                PENDING if w & CLAIMED == 0 => {}
                CANCELLED => return Ok(false),
                PENDING => return Err(Error::new(WEFT_INVALID_STATE, "the future is being completed")),
                RUNNING => return Err(Error::new(WEFT_INVALID_STATE, "the future is already running")),
                _ => return Err(Error::new(WEFT_INVALID_STATE, "the future is already finished")),
            }
            match self.word.compare_exchange(w, w - PENDING + RUNNING, AcqRel, Relaxed) {
                Ok(_) => return Ok(true),
                Err(now) => w = now,
            }
        }
    }

    /// Claims the value cell of a pending or running future; returns the phase it claimed
    /// from. Errors: `WEFT_INVALID_STATE`.
    fn claim(&self) -> Result<u32> {
        let mut w = self.word.load(Relaxed);
        loop {
            match phase(w) {
                PENDING | RUNNING if w & CLAIMED == 0 => {}
                CANCELLED => return Err(Error::new(WEFT_INVALID_STATE, "the future was cancelled")),
                PENDING | RUNNING => return Err(Error::new(WEFT_INVALID_STATE, "the future is already being completed")),
                _ => return Err(Error::new(WEFT_INVALID_STATE, "the future is already finished")),
            }
            match self.word.compare_exchange(w, w | CLAIMED, Acquire, Relaxed) {
                Ok(_) => return Ok(phase(w)),
                Err(now) => w = now,
            }
        }
    }

    /// Finishes with a result or a failure: claim, write, publish. Returns the hooks the caller
    /// must run (outside any lock). Errors: `WEFT_INVALID_STATE` (already finished, cancelled,
    /// or being completed by another thread); the value is dropped then.
    pub(crate) fn complete(&self, value: Value) -> Result<Vec<H>> {
        let to = match value {
            Value::Result(_) => DONE,
            Value::Failure(..) => FAILED,
            Value::Empty => unreachable!("complete() needs a result or a failure"),
        };
        let from = self.claim()?;
        // SAFETY: holding CLAIMED makes this thread the only one to touch the cell until the
        // publishing RMW below; no reader looks at it before the phase is final.
        self.value.with_mut(|p| unsafe { *p = value });
        // The phase bits and CLAIMED are ours; other threads may only add WATCHED or HOOKS
        // meanwhile, which the subtraction leaves alone.
        let prev = self.word.fetch_sub(from + CLAIMED - to, AcqRel);
        Ok(self.fired(prev))
    }

    /// Moves a pending (or, with `running`, a running) future that nobody is completing to
    /// `CANCELLED`. Returns `Ok(hooks)` when this call cancelled it, `Err(true)` when it was
    /// cancelled already, `Err(false)` otherwise (running, being completed, finished).
    pub(crate) fn to_cancelled(&self, running: bool) -> std::result::Result<Vec<H>, bool> {
        let mut w = self.word.load(Relaxed);
        loop {
            match phase(w) {
                PENDING if w & CLAIMED == 0 => {}
                RUNNING if running && w & CLAIMED == 0 => {}
                CANCELLED => return Err(true),
                _ => return Err(false),
            }
            match self.word.compare_exchange(w, w - phase(w) + CANCELLED, AcqRel, Relaxed) {
                Ok(prev) => return Ok(self.fired(prev)),
                Err(now) => w = now,
            }
        }
    }

    /// Python's `cancel`: a pending future is cancelled (true, with the hooks to run); a
    /// cancelled one answers true; a running one gets a cancel request and answers false; a
    /// finished (or finishing) one answers false.
    pub(crate) fn cancel(&self) -> (bool, Vec<H>) {
        match self.to_cancelled(false) {
            Ok(hooks) => (true, hooks),
            Err(already) => {
                if !already && phase(self.word.load(Relaxed)) == RUNNING {
                    // Also wakes the runner out of a weft wait that watches this word (a
                    // pool worker installs it as the thread's cancel word for the task).
                    crate::futex::raise_cancel(&self.cancel);
                }
                (already, Vec::new())
            }
        }
    }

    /// After the publishing RMW that replaced `prev`: wakes sleepers and takes the hooks.
    fn fired(&self, prev: u32) -> Vec<H> {
        if prev & WATCHED != 0 {
            self.word.wake(u32::MAX);
        }
        if prev & HOOKS == 0 {
            return Vec::new();
        }
        self.hooks.with(|h| {
            if let Some(fd) = &h.fd {
                signal(fd);
            }
            std::mem::take(&mut h.list)
        })
    }

    /// Under the hooks mutex: sets `HOOKS` unless the phase is already final. True when set
    /// (the completer will take the mutex), false when final (the caller acts now).
    fn arm(&self) -> bool {
        let mut w = self.word.load(Acquire);
        loop {
            if is_final(w) {
                return false;
            }
            if w & HOOKS != 0 {
                return true;
            }
            match self.word.compare_exchange(w, w | HOOKS, AcqRel, Acquire) {
                Ok(_) => return true,
                Err(now) => w = now,
            }
        }
    }

    /// Registers a hook to run once the future is final. `Err(hook)` when it is final already:
    /// the caller runs the hook itself.
    pub(crate) fn register(&self, hook: H) -> std::result::Result<(), H> {
        self.hooks.with(|h| {
            if self.arm() {
                h.list.push(hook);
                Ok(())
            } else {
                Err(hook)
            }
        })
    }

    /// Removes (and returns) the first registered hook matching `pred`; `None` when none does
    /// (never registered, or already taken by the completer).
    pub(crate) fn unregister(&self, pred: impl Fn(&H) -> bool) -> Option<H> {
        self.hooks.with(|h| h.list.iter().position(pred).map(|i| h.list.remove(i)))
    }

    /// The pollable descriptor, created on the first call: an eventfd readable once the future
    /// is final. Errors: `WEFT_OS_ERROR` (or `WEFT_NO_MEMORY`) when eventfd fails.
    pub(crate) fn fd(&self) -> Result<RawFd> {
        self.hooks.with(|h| {
            if let Some(fd) = &h.fd {
                return Ok(fd.as_raw_fd());
            }
            // SAFETY: eventfd takes no pointers.
            let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if raw < 0 {
                return Err(Error::io("eventfd", &std::io::Error::last_os_error()));
            }
            // SAFETY: `raw` is a fresh descriptor nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            if !self.arm() {
                signal(&fd);
            }
            h.fd = Some(fd);
            Ok(raw)
        })
    }

    /// Waits until the phase is final. Errors: `WEFT_TIMEOUT` (also for `Deadline::Now` on a
    /// future that is not final, as Python's `result(timeout=0)` raises `TimeoutError`),
    /// `WEFT_CANCELLED` (the calling weft thread was asked to cancel).
    pub(crate) fn wait(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        let mut w = self.word.load(Acquire);
        loop {
            if is_final(w) {
                return Ok(());
            }
            if deadline == Deadline::Now {
                return Err(Error::timeout("the future is not done"));
            }
            if w & WATCHED == 0 {
                if let Err(now) = self.word.compare_exchange(w, w | WATCHED, Acquire, Acquire) {
                    w = now;
                    continue;
                }
                w |= WATCHED;
            }
            let r = self.word.wait(w, deadline, interrupt);
            w = self.word.load(Acquire);
            match r {
                _ if is_final(w) => return Ok(()),
                Wait::Woken => {}
                Wait::TimedOut => return Err(Error::timeout("timed out waiting for the future")),
                Wait::Cancelled => return Err(Error::cancelled()),
            }
        }
    }

    /// The value, to be read only once an acquire load saw a final phase.
    ///
    /// # Safety
    /// The caller saw a final phase (with acquire ordering); the reference must not outlive
    /// the core. (The loom cell does not track accesses made through the returned reference;
    /// models read through [`Core::with_value`].)
    #[inline]
    pub(crate) unsafe fn value(&self) -> &Value {
        // SAFETY: per the contract the value is published and never written again.
        self.value.with(|p| unsafe { &*p })
    }

    /// Runs `f` on the value (a tracked access under loom).
    ///
    /// # Safety
    /// As [`Core::value`].
    #[cfg(test)]
    pub(crate) unsafe fn with_value<R>(&self, f: impl FnOnce(&Value) -> R) -> R {
        // SAFETY: per the contract the value is published and never written again.
        self.value.with(|p| f(unsafe { &*p }))
    }
}
