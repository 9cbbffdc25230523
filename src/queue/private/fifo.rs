//! Bounded FIFO queues: the lock-free [`Ring`] with blocking around it. A put or get first
//! tries the ring; only when it is full (empty) does it spin, yield and finally sleep on the
//! putters' (getters') eventcount. Every successful put notifies the getters, every successful
//! get the putters: one load of a sleeper count when nobody sleeps, so the fast path makes no
//! system call.

use super::item::{Item, Taker};
use super::ring::{Pop, Push, Ring};
use super::shim::{Padded, Shim};
use super::wait::{block, EventCount, Tasks, Why};
use crate::status::{Error, Result, WEFT_CLOSED};
use crate::time::Deadline;

const PUT_WHY: Why = ("the queue is full", "timed out waiting for room in the queue");
const GET_WHY: Why = ("the queue is empty", "timed out waiting for an item");

/// `WEFT_CLOSED` for a put into a shut-down queue.
pub(crate) fn closed_for_put() -> Error {
    Error::new(WEFT_CLOSED, "the queue is shut down")
}

/// `WEFT_CLOSED` for a get from a shut-down, drained queue.
pub(crate) fn closed_for_get() -> Error {
    Error::new(WEFT_CLOSED, "the queue is shut down and empty")
}

/// The two eventcounts, together on their own cache lines: each side reads the other's
/// sleeper count after every operation, and they are written only around sleeps.
struct Waiters<S: Shim> {
    getters: EventCount<S::Word>,
    putters: EventCount<S::Word>,
}

/// A bounded FIFO queue over the ring. Thread-safe (any number of putters and getters).
pub(crate) struct RingQueue<S: Shim> {
    ring: Ring<S>,
    waiters: Padded<Waiters<S>>,
    tasks: Option<Tasks<S>>,
}

impl<S: Shim> RingQueue<S> {
    /// A queue of `cap` items; `None` when the slots cannot be allocated.
    pub(crate) fn new(cap: usize, joinable: bool) -> Option<Self> {
        Some(RingQueue {
            ring: Ring::new(cap)?,
            waiters: Padded(Waiters { getters: EventCount::new(), putters: EventCount::new() }),
            tasks: joinable.then(Tasks::new),
        })
    }

    /// One put attempt (see "Quick attempts" in `ring.rs` for `precise`); the item is
    /// consumed on success.
    #[inline(always)]
    fn try_put(&self, item: &Item, precise: bool) -> Result<Option<()>> {
        let pushed = self.ring.try_push(item, precise, || {
            if let Some(t) = &self.tasks {
                t.add()
            }
        });
        match pushed {
            Push::Done => {
                self.waiters.getters.notify_one();
                Ok(Some(()))
            }
            Push::Full => Ok(None),
            Push::Closed => Err(closed_for_put()),
        }
    }

    /// Puts `item`, waiting for room until `deadline`. Errors: `WEFT_CLOSED`,
    /// `WEFT_WOULD_BLOCK`, `WEFT_TIMEOUT`, `WEFT_CANCELLED`; the item is dropped on error.
    #[inline(always)]
    pub(crate) fn put(&self, item: Item, deadline: Deadline) -> Result<()> {
        let r = match self.try_put(&item, false) {
            Ok(None) => {
                let room = || self.ring.len() < self.ring.capacity();
                block::<S, ()>(&self.waiters.putters, deadline, PUT_WHY, room, |precise| self.try_put(&item, precise))
            }
            r => r.map(|_| ()),
        };
        if r.is_ok() {
            // The ring owns the payload now.
            std::mem::forget(item);
        }
        r
    }

    /// One get attempt (see "Quick attempts" in `ring.rs` for `precise`).
    #[inline(always)]
    fn try_get<T: Taker>(&self, taker: &mut T, precise: bool) -> Result<Option<T::Out>> {
        match self.ring.try_pop(taker, precise) {
            Pop::Taken(v) => {
                self.waiters.putters.notify_one();
                Ok(Some(v))
            }
            Pop::Refused(r) => r.map(Some),
            Pop::Empty => Ok(None),
            Pop::Closed => Err(closed_for_get()),
        }
    }

    /// Gets the next item through `taker`, waiting until `deadline`. Errors: `WEFT_CLOSED`
    /// (shut down and drained), `WEFT_WOULD_BLOCK`, `WEFT_TIMEOUT`, `WEFT_CANCELLED`, and
    /// the taker's refusals.
    #[inline(always)]
    pub(crate) fn get<T: Taker>(&self, taker: &mut T, deadline: Deadline) -> Result<T::Out> {
        match self.try_get(taker, false) {
            Ok(None) => {
                let ready = || !self.ring.is_empty();
                block::<S, T::Out>(&self.waiters.getters, deadline, GET_WHY, ready, |precise| self.try_get(taker, precise))
            }
            r => r.map(|v| v.expect("a get attempt gave a value")),
        }
    }

    /// Gets the next item if there is one now: `None` when empty or shut down, or refused.
    pub(crate) fn get_now<T: Taker>(&self, taker: &mut T) -> Option<T::Out> {
        match self.ring.try_pop(taker, true) {
            Pop::Taken(v) => {
                self.waiters.putters.notify_one();
                Some(v)
            }
            _ => None,
        }
    }

    /// The number of items.
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// True when there are no items.
    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The bound.
    pub(crate) fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// The joinable count (`None` for a queue that is not joinable).
    pub(crate) fn tasks(&self) -> Option<&Tasks<S>> {
        self.tasks.as_ref()
    }

    /// Shuts down: later puts fail; blocked putters and getters wake (getters drain what is
    /// left first). `immediate` also discards the items, counting each as done.
    pub(crate) fn shutdown(&self, immediate: bool) {
        self.ring.close();
        self.waiters.putters.notify_all();
        self.waiters.getters.notify_all();
        if immediate {
            let mut sink = Discard;
            while let Pop::Taken(()) = self.ring.try_pop(&mut sink, true) {
                if let Some(t) = &self.tasks {
                    t.discard();
                }
            }
        }
    }

    /// True once shut down.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.ring.is_closed()
    }
}

/// Takes items only to drop them.
struct Discard;

impl Taker for Discard {
    type Out = ();
    fn check(&mut self, _len: usize) -> Option<Result<()>> {
        None
    }
    fn take(&mut self, _item: Item) {}
}
