//! Barrier: Python's `threading.Barrier`, state machine for state machine.
//!
//! States: filling (threads arriving), draining (released threads leaving), resetting
//! (a reset while threads wait), broken. Every state change bumps a futex word that waiters
//! sleep on; all of it is guarded by an internal lock.

use crate::futex::{Interrupt, PrivateWord, Wait, Word};
use crate::status::{Error, Result, WEFT_BROKEN, WEFT_INVALID_ARGUMENT, WEFT_TIMEOUT};
use crate::sync::Lock;
use crate::time::Deadline;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

const FILLING: u32 = 0;
const DRAINING: u32 = 1;
const RESETTING: u32 = 2;
const BROKEN: u32 = 3;

/// The action one thread runs when the last party arrives; an error breaks the barrier.
pub type Action = Box<dyn Fn() -> Result<()> + Send + Sync>;

/// A barrier for a fixed number of parties. Thread-safe.
pub struct Barrier<W: Word = PrivateWord> {
    lock: Lock<W>,
    changed: W,
    state: W,
    count: W,
    parties: u32,
    action: Option<Action>,
}

impl<W: Word> Barrier<W> {
    /// A barrier for `parties` threads (at least 1) with an optional action.
    pub fn new(parties: u32, action: Option<Action>) -> Result<Self> {
        if parties == 0 {
            return Err(Error::new(WEFT_INVALID_ARGUMENT, "parties must be at least 1"));
        }
        Ok(Barrier { lock: Lock::new(), changed: W::new(0), state: W::new(FILLING), count: W::new(0), parties, action })
    }

    fn lock(&self) {
        let _ = self.lock.acquire(Deadline::Never, Interrupt::Uninterruptible);
    }

    fn unlock(&self) {
        let _ = self.lock.release();
    }

    fn notify_all(&self) {
        self.changed.fetch_add(1, Release);
        self.changed.wake(u32::MAX);
    }

    /// Sleeps (lock released) until the state changes or the deadline passes; returns with the
    /// lock held again.
    fn wait_changed(&self, deadline: Deadline, interrupt: Interrupt) -> Wait {
        let seen = self.changed.load(Acquire);
        self.unlock();
        let w = self.changed.wait(seen, deadline, interrupt);
        self.lock();
        w
    }

    fn set_state(&self, s: u32) {
        self.state.store(s, Relaxed);
    }

    fn state(&self) -> u32 {
        self.state.load(Relaxed)
    }

    fn break_barrier(&self) {
        self.set_state(BROKEN);
        self.notify_all();
    }

    /// Waits for all parties. Returns this thread's arrival index (0 for the first to arrive,
    /// `parties - 1` for the one that releases the others). Errors: `WEFT_BROKEN` (the barrier
    /// is or becomes broken), `WEFT_TIMEOUT` (this thread's deadline passed; the barrier is now
    /// broken for everyone), `WEFT_CANCELLED` (also breaks it), or the action's error.
    pub fn wait(&self, deadline: Deadline, interrupt: Interrupt) -> Result<u32> {
        self.lock();
        let r = self.wait_locked(deadline, interrupt);
        self.unlock();
        r
    }

    fn wait_locked(&self, deadline: Deadline, interrupt: Interrupt) -> Result<u32> {
        // Wait while a previous round drains or a reset completes.
        while matches!(self.state(), DRAINING | RESETTING) {
            match self.wait_changed(deadline, interrupt) {
                Wait::Woken => {}
                w => return Err(Error::from_wait(w, deadline, "timed out waiting for the barrier to drain")),
            }
        }
        if self.state() == BROKEN {
            return Err(broken());
        }
        let index = self.count.fetch_add(1, Relaxed);
        let result = if index + 1 == self.parties {
            self.release_round().map(|_| index)
        } else {
            self.wait_round(deadline, interrupt).map(|_| index)
        };
        // Leave: the last one out of a draining or resetting round refills the barrier.
        if self.count.fetch_sub(1, Relaxed) == 1 && matches!(self.state(), DRAINING | RESETTING) {
            self.set_state(FILLING);
            self.notify_all();
        }
        result
    }

    fn release_round(&self) -> Result<()> {
        if let Some(action) = &self.action {
            if let Err(e) = crate::status::catch(action) {
                self.break_barrier();
                return Err(e);
            }
        }
        self.set_state(DRAINING);
        self.notify_all();
        Ok(())
    }

    fn wait_round(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        while self.state() == FILLING {
            match self.wait_changed(deadline, interrupt) {
                Wait::Woken => {}
                w => {
                    if self.state() != FILLING {
                        break;
                    }
                    self.break_barrier();
                    let e = Error::from_wait(w, deadline, "timed out at the barrier; it is now broken");
                    let code = if e.code == crate::status::WEFT_WOULD_BLOCK { WEFT_TIMEOUT } else { e.code };
                    return Err(Error::new(code, e.message));
                }
            }
        }
        if matches!(self.state(), BROKEN | RESETTING) {
            return Err(broken());
        }
        Ok(())
    }

    /// Returns the barrier to its initial state; threads waiting on it get `WEFT_BROKEN`.
    pub fn reset(&self) {
        self.lock();
        if self.count.load(Relaxed) > 0 {
            if matches!(self.state(), FILLING | BROKEN) {
                self.set_state(RESETTING);
            }
        } else {
            self.set_state(FILLING);
        }
        self.notify_all();
        self.unlock();
    }

    /// Breaks the barrier: current and future waiters get `WEFT_BROKEN` until `reset`.
    pub fn abort(&self) {
        self.lock();
        self.break_barrier();
        self.unlock();
    }

    /// Number of parties.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// Threads currently waiting in the filling phase. Takes no lock (as in Python), so the
    /// barrier's action may call it.
    pub fn n_waiting(&self) -> u32 {
        if self.state() == FILLING {
            self.count.load(Relaxed)
        } else {
            0
        }
    }

    /// True when the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state.load(Relaxed) == BROKEN
    }
}

fn broken() -> Error {
    Error::new(WEFT_BROKEN, "the barrier is broken")
}
