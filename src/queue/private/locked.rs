//! The other kinds — LIFO, priority, unbounded FIFO and simple queues, and bounded FIFO queues
//! too large for a ring — as a container under a mutex. Waiting uses the same eventcounts as
//! the ring (futex words, cancellable waits): a waiter announces itself, re-checks under the
//! mutex, and sleeps after unlocking; a notifier reads the sleeper count after unlocking. The
//! mutex orders the two, so no wake-up is lost.

use super::fifo::{closed_for_get, closed_for_put};
use super::item::{Item, Taker};
use super::shim::Native;
use super::wait::{block, EventCount, Tasks, Why};
use crate::futex::PrivateWord;
use crate::queue::Kind;
use crate::status::{Error, Result, WEFT_NO_MEMORY};
use crate::time::Deadline;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Mutex, MutexGuard};

const PUT_WHY: Why = ("the queue is full", "timed out waiting for room in the queue");
const GET_WHY: Why = ("the queue is empty", "timed out waiting for an item");

/// A priority queue entry: lowest priority first, then lowest sequence number (FIFO among
/// equals). `BinaryHeap` is a max-heap, so the order is reversed.
struct Entry {
    priority: i64,
    seq: u64,
    item: Item,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.priority, other.seq).cmp(&(self.priority, self.seq))
    }
}

/// The container of one kind.
enum Store {
    Fifo(VecDeque<Item>),
    Lifo(Vec<Item>),
    Priority(BinaryHeap<Entry>),
}

impl Store {
    fn len(&self) -> usize {
        match self {
            Store::Fifo(q) => q.len(),
            Store::Lifo(v) => v.len(),
            Store::Priority(h) => h.len(),
        }
    }
    /// Makes room for one more item. Errors: `WEFT_NO_MEMORY`.
    fn reserve(&mut self) -> Result<()> {
        let r = match self {
            Store::Fifo(q) => q.try_reserve(1),
            Store::Lifo(v) => v.try_reserve(1),
            Store::Priority(h) => h.try_reserve(1),
        };
        r.map_err(|_| Error::new(WEFT_NO_MEMORY, "cannot grow the queue"))
    }
    /// Adds an item (room was reserved).
    fn push(&mut self, item: Item, priority: i64, seq: u64) {
        match self {
            Store::Fifo(q) => q.push_back(item),
            Store::Lifo(v) => v.push(item),
            Store::Priority(h) => h.push(Entry { priority, seq, item }),
        }
    }
    /// The length of the next item.
    fn peek_len(&self) -> Option<usize> {
        match self {
            Store::Fifo(q) => q.front().map(Item::len),
            Store::Lifo(v) => v.last().map(Item::len),
            Store::Priority(h) => h.peek().map(|e| e.item.len()),
        }
    }
    /// Removes the next item.
    fn pop(&mut self) -> Option<Item> {
        match self {
            Store::Fifo(q) => q.pop_front(),
            Store::Lifo(v) => v.pop(),
            Store::Priority(h) => h.pop().map(|e| e.item),
        }
    }
}

struct State {
    store: Store,
    /// Sequence number of the next priority put.
    seq: u64,
    closed: bool,
}

/// A queue under a mutex. Thread-safe.
pub(crate) struct Locked {
    state: Mutex<State>,
    /// 0 = unbounded.
    maxsize: usize,
    getters: EventCount<PrivateWord>,
    putters: EventCount<PrivateWord>,
    tasks: Option<Tasks<Native>>,
}

impl Locked {
    /// An empty queue of `kind` (`Simple` is an unbounded FIFO).
    pub(crate) fn new(kind: Kind, maxsize: usize, joinable: bool) -> Locked {
        let store = match kind {
            Kind::Fifo | Kind::Simple => Store::Fifo(VecDeque::new()),
            Kind::Lifo => Store::Lifo(Vec::new()),
            Kind::Priority => Store::Priority(BinaryHeap::new()),
        };
        Locked {
            state: Mutex::new(State { store, seq: 0, closed: false }),
            maxsize,
            getters: EventCount::new(),
            putters: EventCount::new(),
            tasks: joinable.then(Tasks::new),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held with the state half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One put attempt; takes the item out of `item` on success.
    fn try_put(&self, item: &mut Option<Item>, priority: i64) -> Result<Option<()>> {
        let mut st = self.lock();
        if st.closed {
            return Err(closed_for_put());
        }
        if self.maxsize != 0 && st.store.len() >= self.maxsize {
            return Ok(None);
        }
        st.store.reserve()?;
        let seq = st.seq;
        st.seq = seq.wrapping_add(1);
        if let Some(t) = &self.tasks {
            t.add();
        }
        st.store.push(item.take().expect("the item is put once"), priority, seq);
        drop(st);
        self.getters.notify_one();
        Ok(Some(()))
    }

    /// Puts `item`, waiting for room until `deadline`. Errors: `WEFT_CLOSED`,
    /// `WEFT_NO_MEMORY`, `WEFT_WOULD_BLOCK`, `WEFT_TIMEOUT`, `WEFT_CANCELLED`.
    pub(crate) fn put(&self, item: Item, priority: i64, deadline: Deadline) -> Result<()> {
        let mut item = Some(item);
        match self.try_put(&mut item, priority)? {
            Some(()) => Ok(()),
            None => block::<Native, ()>(&self.putters, deadline, PUT_WHY, || self.has_room(), |_| self.try_put(&mut item, priority)),
        }
    }

    /// One get attempt.
    fn try_get<T: Taker>(&self, taker: &mut T) -> Result<Option<T::Out>> {
        let mut st = self.lock();
        let Some(len) = st.store.peek_len() else {
            return if st.closed { Err(closed_for_get()) } else { Ok(None) };
        };
        if let Some(r) = taker.check(len) {
            return r.map(Some);
        }
        let item = st.store.pop().expect("peeked");
        drop(st);
        self.putters.notify_one();
        Ok(Some(taker.take(item)))
    }

    /// Gets the next item through `taker`, waiting until `deadline`. Errors: `WEFT_CLOSED`
    /// (shut down and drained), `WEFT_WOULD_BLOCK`, `WEFT_TIMEOUT`, `WEFT_CANCELLED`, and
    /// the taker's refusals.
    pub(crate) fn get<T: Taker>(&self, taker: &mut T, deadline: Deadline) -> Result<T::Out> {
        match self.try_get(taker)? {
            Some(v) => Ok(v),
            None => block::<Native, T::Out>(&self.getters, deadline, GET_WHY, || self.len() > 0, |_| self.try_get(taker)),
        }
    }

    /// Gets the next item if there is one now (not refused).
    pub(crate) fn get_now<T: Taker>(&self, taker: &mut T) -> Option<T::Out> {
        self.try_get(taker).ok().flatten()
    }

    /// The number of items.
    pub(crate) fn len(&self) -> usize {
        self.lock().store.len()
    }

    /// True when a put would not have to wait (room, or shut down: the put then fails).
    fn has_room(&self) -> bool {
        let st = self.lock();
        self.maxsize == 0 || st.store.len() < self.maxsize || st.closed
    }

    /// The joinable count (`None` for a queue that is not joinable).
    pub(crate) fn tasks(&self) -> Option<&Tasks<Native>> {
        self.tasks.as_ref()
    }

    /// Shuts down (see `RingQueue::shutdown`).
    pub(crate) fn shutdown(&self, immediate: bool) {
        let mut st = self.lock();
        st.closed = true;
        if immediate {
            while st.store.pop().is_some() {
                if let Some(t) = &self.tasks {
                    t.discard();
                }
            }
        }
        drop(st);
        self.putters.notify_all();
        self.getters.notify_all();
    }

    /// True once shut down.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.lock().closed
    }
}
