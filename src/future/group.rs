//! Task groups (asyncio's `TaskGroup`, for futures): the first failure cancels the rest.
//!
//! A group keeps its unfinished members and counts them in a futex word (members × 2, bit 0 set
//! once a thread sleeps in [`Group::wait`]). Each member carries a hook that the completing
//! thread runs: it records the first failure (a failed future; a cancelled one is not a
//! failure), cancels every other member — pending ones at once, running ones by a cooperative
//! request — and only then removes the member from the count, so that a waiter released by the
//! last member sees the failure. The hook holds the group weakly: a dropped group leaves
//! nothing behind but inert hooks that go with their futures.

use super::Future;
use crate::futex::{Interrupt, PrivateWord, Wait, Word};
use crate::status::{Error, Result, WEFT_CANCELLED};
use crate::time::Deadline;
use std::collections::HashMap;
use std::sync::atomic::Ordering::{AcqRel, Acquire};
use std::sync::{Arc, Mutex};

const SLEEPING: u32 = 1;
const ONE: u32 = 2;

#[derive(Default)]
struct Members {
    /// Unfinished members, by address.
    live: HashMap<usize, Future>,
    /// The first failure: its status and message.
    failure: Option<Error>,
    /// `Group::cancel` was called.
    cancelled: bool,
}

/// The state a group's members point at (weakly).
pub(crate) struct Shared {
    members: Mutex<Members>,
    /// Unfinished members × 2, bit 0 `SLEEPING` (never cleared).
    count: PrivateWord,
}

impl Shared {
    fn members(&self) -> std::sync::MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A member finished (the hook, on the completing thread; or `add` for one already final).
    pub(crate) fn finished(&self, f: &Future) {
        let key = f.as_raw() as usize;
        let mut m = self.members();
        if m.live.remove(&key).is_none() {
            return; // not a member (counted once only)
        }
        let mut doomed = Vec::new();
        if m.failure.is_none() {
            if let Some((status, message)) = f.failure() {
                m.failure = Some(Error::new(status, message.to_string_lossy().into_owned()));
                doomed = m.live.values().cloned().collect();
            }
        }
        drop(m);
        cancel_all(doomed);
        // A waiter sets SLEEPING with a compare-and-exchange on the count: either this
        // subtraction sees the bit, or that exchange fails on the changed count.
        let prev = self.count.fetch_sub(ONE, AcqRel);
        if prev >> 1 == 1 && prev & SLEEPING != 0 {
            self.count.wake(u32::MAX);
        }
    }
}

/// A group of futures (asyncio's `TaskGroup`): the first member that fails cancels every other
/// member, and those added later; [`Group::wait`] waits for all and reports that first failure.
/// Thread-safe; cloning makes another handle to the same group.
#[derive(Clone)]
pub struct Group {
    shared: Arc<Shared>,
}

impl Default for Group {
    fn default() -> Self {
        Group::new()
    }
}

impl Group {
    /// An empty group.
    pub fn new() -> Group {
        Group { shared: Arc::new(Shared { members: Mutex::new(Members::default()), count: PrivateWord::new(0) }) }
    }

    /// Adds `f` (the group keeps a handle until it finishes). After a failure, or after
    /// [`Group::cancel`], the new member is cancelled at once. Adding a member that is still
    /// unfinished again does nothing.
    pub fn add(&self, f: &Future) {
        let doomed = {
            let mut m = self.shared.members();
            if m.live.insert(f.as_raw() as usize, f.clone()).is_some() {
                return;
            }
            self.shared.count.fetch_add(ONE, AcqRel);
            m.failure.is_some() || m.cancelled
        };
        if !f.join_group(Arc::downgrade(&self.shared)) {
            self.shared.finished(f);
        } else if doomed {
            f.cancel();
        }
    }

    /// Cancels every unfinished member (running ones get a cancel request) and every member
    /// added later.
    pub fn cancel(&self) {
        let all: Vec<Future> = {
            let mut m = self.shared.members();
            m.cancelled = true;
            m.live.values().cloned().collect()
        };
        cancel_all(all);
    }

    /// The number of unfinished members.
    pub fn len(&self) -> usize {
        self.shared.members().live.len()
    }

    /// True when no member is unfinished.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every member is finished, then returns `Ok` — or the first failure's status
    /// and message, or `WEFT_CANCELLED` when [`Group::cancel`] was called and nothing failed.
    /// Errors besides: `WEFT_TIMEOUT` (members still unfinished at the deadline;
    /// `Deadline::Now` checks once), `WEFT_CANCELLED` (the calling weft thread was asked to
    /// cancel, with `Interrupt::Cancellable`).
    pub fn wait(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        let count = &self.shared.count;
        let mut w = count.load(Acquire);
        while w >> 1 != 0 {
            if deadline == Deadline::Now {
                return Err(Error::timeout("members of the group are unfinished"));
            }
            if w & SLEEPING == 0 {
                if let Err(now) = count.compare_exchange(w, w | SLEEPING, Acquire, Acquire) {
                    w = now;
                    continue;
                }
                w |= SLEEPING;
            }
            let r = count.wait(w, deadline, interrupt);
            w = count.load(Acquire);
            if w >> 1 != 0 && r != Wait::Woken {
                return Err(Error::from_wait(r, deadline, "timed out waiting for the group"));
            }
        }
        let m = self.shared.members();
        match (&m.failure, m.cancelled) {
            (Some(e), _) => Err(e.clone()),
            (None, true) => Err(Error::new(WEFT_CANCELLED, "the group was cancelled")),
            (None, false) => Ok(()),
        }
    }
}

/// Cancels `futures`: the pending ones first, then the running ones get their requests — so
/// that a running member that stops at once cannot free a worker for a pending member not yet
/// cancelled.
fn cancel_all(futures: Vec<Future>) {
    let (pending, rest): (Vec<Future>, Vec<Future>) = futures.into_iter().partition(|f| f.state() == super::State::Pending);
    for f in pending.into_iter().chain(rest) {
        f.cancel();
    }
}
