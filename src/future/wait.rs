//! Waiting on many futures: `concurrent.futures.wait` and `as_completed`.
//!
//! Nothing polls. As CPython's `_Waiter`, one [`Waiter`] is registered as a hook with every
//! future that is not done yet; each completion notifies it (a counter increment, plus the
//! future's index when the waiter collects them) and the waiting thread sleeps on the waiter's
//! own futex word until its condition holds. Afterwards the waiter is unregistered from the
//! futures that have not completed, so a future that never completes keeps nothing alive.
//!
//! The waiter's word counts notifications in steps of 2; bit 0 (`SLEEPING`) is set by a thread
//! before it sleeps, and a notification that finds it set wakes the word. The bit is never
//! cleared (several threads may sleep on one `AsCompleted`), so after the first sleep every
//! notification makes one wake call; before it, notifications cost one atomic add.

use super::core::{is_final, phase, Core, Guarded, Shim, FAILED};
use super::{Future, Hook};
use crate::futex::{Interrupt, Wait, Word};
use crate::status::{Error, Result, WEFT_CLOSED};
use crate::time::Deadline;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::Arc;

const SLEEPING: u32 = 1;
const ONE: u32 = 2;

/// When [`wait`] returns (Python's `return_when`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// When every future is done, failed or cancelled.
    AllCompleted,
    /// When any future is done, failed or cancelled.
    FirstCompleted,
    /// When any future fails (cancelled ones do not count), else when all are done.
    FirstException,
}

/// What the notifying futures told a waiting thread.
pub(crate) struct Waiter<S: Shim> {
    /// Notifications × 2, bit 0 `SLEEPING`.
    word: S::Word,
    /// Non-zero once a failed future notified (set before the count is bumped).
    failed: S::Word,
    /// Indices of the notifying futures, in completion order, and how many were taken: for
    /// `AsCompleted` (unused by `wait`).
    ready: S::Lock<(VecDeque<usize>, usize)>,
}

impl<S: Shim> Waiter<S> {
    pub(crate) fn new() -> Self {
        Waiter { word: S::Word::new(0), failed: S::Word::new(0), ready: S::Lock::new((VecDeque::new(), 0)) }
    }

    /// A future finished: `failed` when it failed, `token` its index (pushed when `collect`).
    pub(crate) fn notify(&self, token: usize, failed: bool, collect: bool) {
        if failed {
            self.failed.store(1, Release);
        }
        if collect {
            self.ready.with(|r| r.0.push_back(token));
        }
        if self.word.fetch_add(ONE, AcqRel) & SLEEPING != 0 {
            self.word.wake(u32::MAX);
        }
    }

    /// Notifications so far (acquire: what they published is visible).
    fn count(&self, w: u32) -> u32 {
        w >> 1
    }

    /// Sleeps while the word still holds `seen` (a value of [`Waiter::load`]), until notified,
    /// the deadline or a cancel request; may return `Woken` spuriously.
    fn sleep(&self, seen: u32, deadline: Deadline, interrupt: Interrupt) -> Wait {
        let mut w = seen;
        if w & SLEEPING == 0 {
            match self.word.compare_exchange(w, w | SLEEPING, Acquire, Relaxed) {
                Ok(_) => w |= SLEEPING,
                Err(_) => return Wait::Woken,
            }
        }
        self.word.wait(w, deadline, interrupt)
    }

    fn load(&self) -> u32 {
        self.word.load(Acquire)
    }
}

/// Hooks that can carry a waiter (so that the generic waiting code can register and remove
/// them).
pub(crate) trait WaiterHook<S: Shim>: Send + Sized {
    /// The hook notifying `waiter` with `token` (which the waiter keeps when `collect`).
    fn waiter(waiter: &Arc<Waiter<S>>, token: usize, collect: bool) -> Self;
    /// True for a hook made by `waiter(w, ..)`.
    fn is_waiter(&self, w: &Arc<Waiter<S>>) -> bool;
}

/// Waits on `n` futures (the `core(i)`) until `mode` is satisfied. Errors: `WEFT_TIMEOUT`
/// (the deadline passed, or `Deadline::Now` and not satisfied), `WEFT_CANCELLED`.
pub(crate) fn wait_cores<'a, S: Shim, H: WaiterHook<S> + 'a>(
    n: usize,
    core: impl Fn(usize) -> &'a Core<S, H>,
    mode: Mode,
    deadline: Deadline,
    interrupt: Interrupt,
) -> Result<()> {
    // Futures found finished (before or while registering), and whether one of them failed.
    let (mut done, mut failed) = (0usize, false);
    let scan = |done: &mut usize, failed: &mut bool, w: u32| {
        *done += 1;
        *failed |= phase(w) == FAILED;
    };
    let mut pending = Vec::new();
    for i in 0..n {
        let w = core(i).load();
        if is_final(w) {
            scan(&mut done, &mut failed, w);
        } else {
            pending.push(i);
        }
    }
    let satisfied = |done: usize, failed: bool| match mode {
        Mode::AllCompleted => done == n,
        Mode::FirstCompleted => done > 0 || n == 0,
        Mode::FirstException => failed || done == n,
    };
    if satisfied(done, failed) {
        return Ok(());
    }
    if deadline == Deadline::Now {
        return Err(Error::timeout("the futures are not done"));
    }
    let waiter = Arc::new(Waiter::<S>::new());
    let mut registered = Vec::with_capacity(pending.len());
    for &i in &pending {
        match core(i).register(H::waiter(&waiter, i, false)) {
            Ok(()) => registered.push(i),
            Err(_) => scan(&mut done, &mut failed, core(i).load()),
        }
        if satisfied(done, failed) {
            break;
        }
    }
    let result = loop {
        let w = waiter.load();
        let failed_now = failed || waiter.failed.load(Acquire) != 0;
        if satisfied(done + waiter.count(w) as usize, failed_now) {
            break Ok(());
        }
        match waiter.sleep(w, deadline, interrupt) {
            Wait::Woken => {}
            r => {
                let w = waiter.load();
                let failed_now = failed || waiter.failed.load(Acquire) != 0;
                if satisfied(done + waiter.count(w) as usize, failed_now) {
                    break Ok(());
                }
                break Err(Error::from_wait(r, deadline, "timed out waiting for the futures"));
            }
        }
    };
    for i in registered {
        core(i).unregister(|h| h.is_waiter(&waiter));
    }
    result
}

/// Waits until `mode` holds for `futures` (Python's `concurrent.futures.wait`); returns, for
/// each future in order, whether it was finished (done, failed or cancelled) when the wait
/// ended. An empty slice satisfies every mode at once. Errors: `WEFT_TIMEOUT` (the deadline
/// passed first; `Deadline::Now` checks once), `WEFT_CANCELLED` (the calling weft thread was
/// asked to cancel).
pub fn wait(futures: &[Future], mode: Mode, deadline: Deadline, interrupt: Interrupt) -> Result<Vec<bool>> {
    wait_cores(futures.len(), |i| &futures[i].inner.core, mode, deadline, interrupt)?;
    Ok(futures.iter().map(|f| f.is_done()).collect())
}

/// Yields futures as they finish (Python's `as_completed`): first those already finished when
/// it was made (in the order given), then the others in the order they finish. A future given
/// twice is yielded once. Thread-safe: several threads may take from one `AsCompleted`.
pub struct AsCompleted {
    futures: Vec<Future>,
    waiter: Arc<super::NativeWaiter>,
    /// Indices the waiter is registered with.
    registered: Vec<usize>,
}

impl AsCompleted {
    /// Starts watching `futures`.
    pub fn new(futures: &[Future]) -> AsCompleted {
        let mut seen = HashSet::with_capacity(futures.len());
        let futures: Vec<Future> = futures.iter().filter(|f| seen.insert(Arc::as_ptr(&f.inner) as usize)).cloned().collect();
        let waiter = Arc::new(super::NativeWaiter::new());
        let mut registered = Vec::new();
        // Those finished now come first, in the given order.
        let done: Vec<bool> = futures.iter().map(Future::is_done).collect();
        waiter.ready.with(|r| r.0.extend((0..futures.len()).filter(|&i| done[i])));
        for (i, f) in futures.iter().enumerate().filter(|&(i, _)| !done[i]) {
            match f.inner.core.register(Hook::waiter(&waiter, i, true)) {
                Ok(()) => registered.push(i),
                Err(_) => waiter.ready.with(|r| r.0.push_back(i)),
            }
        }
        AsCompleted { futures, waiter, registered }
    }

    /// The number of distinct futures watched.
    pub fn len(&self) -> usize {
        self.futures.len()
    }

    /// True when it watches no future.
    pub fn is_empty(&self) -> bool {
        self.futures.is_empty()
    }

    /// The next finished future. Errors: `WEFT_CLOSED` (every future was yielded),
    /// `WEFT_TIMEOUT` (none finished before the deadline; `Deadline::Now` checks once),
    /// `WEFT_CANCELLED` (the calling weft thread was asked to cancel).
    pub fn next(&self, deadline: Deadline, interrupt: Interrupt) -> Result<Future> {
        let total = self.futures.len();
        loop {
            let w = self.waiter.load();
            let taken = self.waiter.ready.with(|r| {
                if r.1 == total {
                    return Err(Error::new(WEFT_CLOSED, "every future was yielded"));
                }
                let i = r.0.pop_front();
                r.1 += i.is_some() as usize;
                Ok(i)
            })?;
            if let Some(i) = taken {
                return Ok(self.futures[i].clone());
            }
            if deadline == Deadline::Now {
                return Err(Error::timeout("no future finished"));
            }
            match self.waiter.sleep(w, deadline, interrupt) {
                Wait::Woken => {}
                r => {
                    let last = self.waiter.ready.with(|r| {
                        let i = r.0.pop_front();
                        r.1 += i.is_some() as usize;
                        i
                    });
                    return match last {
                        Some(i) => Ok(self.futures[i].clone()),
                        None => Err(Error::from_wait(r, deadline, "timed out waiting for a future to finish")),
                    };
                }
            }
        }
    }
}

impl Drop for AsCompleted {
    fn drop(&mut self) {
        for &i in &self.registered {
            self.futures[i].inner.core.unregister(|h| h.is_waiter(&self.waiter));
        }
    }
}
