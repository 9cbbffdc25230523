//! Private (one process) queues: [`PrivateQueue`].
//!
//! Two engines sit behind the one type:
//! - Bounded FIFO queues (`Kind::Fifo`, `1 <= maxsize <= RING_MAX` = 65536) are a lock-free
//!   MPMC ring in the style of Dmitry Vyukov's bounded queue and crossbeam's `ArrayQueue`: head
//!   and tail positions on cache lines of their own, and 16-byte slots, each a stamp (whose
//!   turn the slot is, and the item's length) and the item inline (up to 8 bytes; longer ones
//!   as the address of an owned heap block). A put claims the tail position with one
//!   compare-and-exchange, writes the slot and publishes it by storing the stamp; a get does
//!   the same at the head, after showing the length to the caller's check (a too-small buffer
//!   or a non-word item is refused without being taken). The shut-down mark is a bit of the
//!   tail, so a put either lands before the shutdown or fails. `ring.rs` describes the
//!   protocol.
//! - Every other kind (LIFO, priority, unbounded FIFO, simple, and bounded FIFO above
//!   `RING_MAX`) is a `VecDeque`, `Vec` or `BinaryHeap` (keyed by priority and a sequence
//!   number) under a mutex (`locked.rs`).
//!
//! Both block the same way (`wait.rs`): a full (empty) queue makes a putter (getter) spin and
//! yield briefly, as crossbeam's channels do, then sleep on an eventcount — a futex word and a
//! count of sleepers. Every put reads the count of sleeping getters, every get that of
//! sleeping putters, and makes a system call only when someone sleeps and no wake-up is
//! already on its way. Waits are cancellable on weft threads and never return before their
//! deadline. A joinable queue counts unfinished tasks with one atomic per put and
//! `task_done`; other queues do not pay for it.
//!
//! A queue's [`fd`](PrivateQueue::fd) is an eventfd created on first use (`queue/poll.rs`).
//!
//! Loom models of the ring and its waiting are in `models.rs`.

mod fifo;
mod item;
mod locked;
#[cfg(test)]
mod models;
mod ring;
mod shim;
#[cfg(test)]
mod tests;
pub(crate) mod wait;

use crate::queue::{Filled, Kind, Options};
use crate::status::{Error, Result, WEFT_INVALID_STATE, WEFT_NO_MEMORY};
use crate::time::Deadline;
use fifo::RingQueue;
use item::{AsWord, IntoBuf, IntoVec, Item, Taker};
use locked::Locked;
use super::poll::Poll;
use shim::Native;
use std::os::fd::RawFd;
use wait::Tasks;

/// The largest bound served by the lock-free ring, whose slots (16 bytes each) are allocated
/// up front. Bounded FIFO queues above it use the locked deque, whose memory follows the
/// items actually held.
pub(crate) const RING_MAX: usize = 1 << 16;

/// The engine of a queue. The ring is large by design (head, tail and the sleeper counts on
/// cache lines of their own); boxing it would add an indirection to every operation.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Ring(RingQueue<Native>),
    Locked(Locked),
}

/// A queue in private memory: Python's `queue.Queue`, `LifoQueue`, `PriorityQueue` and
/// `SimpleQueue`, with `task_done`/`join` when joinable and `shutdown` as in Python 3.13.
///
/// Items are byte strings, copied in and out; items of at most 8 bytes are stored without
/// allocation. Thread safety: `Send + Sync`; any number of threads may put and get at once.
/// Dropping the queue frees the items left in it and closes its descriptor.
pub struct PrivateQueue {
    engine: Engine,
    opts: Options,
    poll: Poll,
}

fn not_joinable() -> Error {
    Error::new(WEFT_INVALID_STATE, "the queue is not joinable (task_done/join need a joinable queue)")
}

impl PrivateQueue {
    /// A new empty queue. Errors: `WEFT_INVALID_ARGUMENT` for a bad combination of options
    /// (see [`Options::check`]), `WEFT_NO_MEMORY` when the ring's slots cannot be allocated.
    pub fn new(opts: Options) -> Result<PrivateQueue> {
        opts.check()?;
        let engine = if opts.kind == Kind::Fifo && (1..=RING_MAX).contains(&opts.maxsize) {
            let ring = RingQueue::new(opts.maxsize, opts.joinable)
                .ok_or_else(|| Error::new(WEFT_NO_MEMORY, format!("cannot allocate a queue of {} slots", opts.maxsize)))?;
            Engine::Ring(ring)
        } else {
            Engine::Locked(Locked::new(opts.kind, opts.maxsize, opts.joinable))
        };
        Ok(PrivateQueue { engine, opts, poll: Poll::default() })
    }

    /// The options the queue was made with.
    pub fn options(&self) -> Options {
        self.opts
    }

    /// After a change: re-syncs the descriptor's level, once one was handed out.
    #[inline]
    fn changed(&self) {
        if self.poll.enabled() {
            self.poll.sync(|| self.readable());
        }
    }

    /// What the descriptor's level should be.
    fn readable(&self) -> bool {
        !self.empty() || self.is_shut_down()
    }

    #[inline]
    fn put_item(&self, item: Item, priority: i64, deadline: Deadline) -> Result<()> {
        match &self.engine {
            Engine::Ring(q) => q.put(item, deadline)?,
            Engine::Locked(q) => q.put(item, priority, deadline)?,
        }
        self.changed();
        Ok(())
    }

    #[inline]
    fn get_with<T: Taker>(&self, taker: &mut T, deadline: Deadline) -> Result<T::Out> {
        let out = match &self.engine {
            Engine::Ring(q) => q.get(taker, deadline)?,
            Engine::Locked(q) => q.get(taker, deadline)?,
        };
        self.changed();
        Ok(out)
    }

    /// Puts a copy of `item`, waiting until `deadline` while a bounded queue is full.
    /// `priority` orders priority queues (lowest first, FIFO among equals); other kinds ignore
    /// it. Errors: `WEFT_CLOSED` (shut down, also for a putter blocked when the shutdown
    /// came), `WEFT_WOULD_BLOCK` (full, deadline now), `WEFT_TIMEOUT`, `WEFT_CANCELLED` (a
    /// cancel request on the calling weft thread), `WEFT_INVALID_ARGUMENT` (more than
    /// `u32::MAX` bytes), `WEFT_NO_MEMORY`.
    pub fn put(&self, item: &[u8], priority: i64, deadline: Deadline) -> Result<()> {
        self.put_item(Item::copy_of(item)?, priority, deadline)
    }

    /// Puts the 8 native-endian bytes of `word`, stored inline (no allocation). As
    /// [`put`](Self::put) otherwise.
    #[inline]
    pub fn put_word(&self, word: usize, priority: i64, deadline: Deadline) -> Result<()> {
        self.put_item(Item::word(word), priority, deadline)
    }

    /// Puts `items` in order, each waiting until `deadline`. Returns how many went in, and
    /// `Ok` when all did, else the error that stopped it (see [`put`](Self::put)).
    pub fn put_many(&self, items: &[&[u8]], priority: i64, deadline: Deadline) -> (usize, Result<()>) {
        for (i, item) in items.iter().enumerate() {
            if let Err(e) = self.put(item, priority, deadline) {
                return (i, Err(e));
            }
        }
        (items.len(), Ok(()))
    }

    /// Removes and returns the next item, waiting until `deadline` while the queue is empty.
    /// Errors: `WEFT_CLOSED` (shut down and drained, also for a getter blocked when the
    /// shutdown came), `WEFT_WOULD_BLOCK` (empty, deadline now), `WEFT_TIMEOUT`,
    /// `WEFT_CANCELLED`, `WEFT_NO_MEMORY` (the item stays in the queue).
    pub fn get(&self, deadline: Deadline) -> Result<Vec<u8>> {
        self.get_with(&mut IntoVec::default(), deadline)
    }

    /// Removes the next item, which must be exactly 8 bytes (a [`put_word`](Self::put_word)),
    /// and returns it as a word. Errors: as [`get`](Self::get), and `WEFT_INVALID_STATE` when
    /// the next item has another size (it stays in the queue).
    #[inline]
    pub fn get_word(&self, deadline: Deadline) -> Result<usize> {
        self.get_with(&mut AsWord, deadline)
    }

    /// Copies the next item into `buf` and removes it: `Filled::Item(len)`; or, when `buf`
    /// is shorter than the item, `Filled::TooSmall(len)` and the item stays in the queue.
    /// Waits as [`get`](Self::get); errors as `get`.
    pub fn get_into(&self, buf: &mut [u8], deadline: Deadline) -> Result<Filled> {
        self.get_with(&mut IntoBuf { buf }, deadline)
    }

    /// Waits until `deadline` for at least one item, then also takes the items that are there
    /// now, up to `max` in all (without waiting more). Errors: `WEFT_INVALID_ARGUMENT` when
    /// `max` is 0; otherwise as [`get`](Self::get), for the first item only.
    pub fn get_many(&self, max: usize, deadline: Deadline) -> Result<Vec<Vec<u8>>> {
        if max == 0 {
            return Err(Error::invalid("get_many needs max >= 1"));
        }
        let mut out = Vec::new();
        let first = self.qsize().clamp(1, max);
        out.try_reserve_exact(first).map_err(|_| Error::new(WEFT_NO_MEMORY, "cannot allocate the list of items"))?;
        out.push(self.get(deadline)?);
        while out.len() < max && out.try_reserve(1).is_ok() {
            let next = match &self.engine {
                Engine::Ring(q) => q.get_now(&mut IntoVec::default()),
                Engine::Locked(q) => q.get_now(&mut IntoVec::default()),
            };
            match next {
                Some(item) => out.push(item),
                None => break,
            }
        }
        self.changed();
        Ok(out)
    }

    /// The number of items (a snapshot: other threads may change it at once).
    pub fn qsize(&self) -> usize {
        match &self.engine {
            Engine::Ring(q) => q.len(),
            Engine::Locked(q) => q.len(),
        }
    }

    /// True when the queue holds no item (a snapshot).
    pub fn empty(&self) -> bool {
        match &self.engine {
            Engine::Ring(q) => q.is_empty(),
            Engine::Locked(q) => q.len() == 0,
        }
    }

    /// True when a bounded queue holds `maxsize` items or more (a snapshot); always false for
    /// unbounded queues.
    pub fn full(&self) -> bool {
        match &self.engine {
            Engine::Ring(q) => q.len() >= q.capacity(),
            Engine::Locked(q) => self.opts.maxsize > 0 && q.len() >= self.opts.maxsize,
        }
    }

    fn tasks(&self) -> Option<&Tasks<Native>> {
        match &self.engine {
            Engine::Ring(q) => q.tasks(),
            Engine::Locked(q) => q.tasks(),
        }
    }

    /// Marks one item got earlier as processed (joinable queues). Errors:
    /// `WEFT_INVALID_STATE` when the queue is not joinable, or when called more times than
    /// items were put.
    pub fn task_done(&self) -> Result<()> {
        self.tasks().ok_or_else(not_joinable)?.task_done()
    }

    /// The number of items put and not yet marked done (0 for a queue that is not joinable).
    pub fn unfinished(&self) -> usize {
        self.tasks().map_or(0, Tasks::unfinished)
    }

    /// Waits until every item put has been marked done (immediately when none is
    /// unfinished). Errors: `WEFT_INVALID_STATE` when the queue is not joinable,
    /// `WEFT_WOULD_BLOCK` (deadline now), `WEFT_TIMEOUT`, `WEFT_CANCELLED`.
    pub fn join(&self, deadline: Deadline) -> Result<()> {
        self.tasks().ok_or_else(not_joinable)?.join(deadline)
    }

    /// Shuts the queue down (Python 3.13's `Queue.shutdown`): puts fail with `WEFT_CLOSED` from
    /// now on, and blocked putters wake with it; gets drain the items left, then fail with
    /// `WEFT_CLOSED`, and blocked getters wake. `immediate` also discards the items left,
    /// counting each as done for `join` (never below zero), which wakes joiners when the count
    /// reaches zero. Calling it again is harmless (a later immediate call still discards).
    pub fn shutdown(&self, immediate: bool) {
        match &self.engine {
            Engine::Ring(q) => q.shutdown(immediate),
            Engine::Locked(q) => q.shutdown(immediate),
        }
        self.changed();
    }

    /// True once [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        match &self.engine {
            Engine::Ring(q) => q.is_shut_down(),
            Engine::Locked(q) => q.is_shut_down(),
        }
    }

    /// A descriptor for `poll`/`epoll`: readable (POLLIN) exactly while the queue holds an
    /// item, and always once it is shut down (so that a poller wakes to find `WEFT_CLOSED`).
    /// Created on the first call (an eventfd, close-on-exec, non-blocking); later calls return
    /// the same descriptor. The queue owns it and closes it when dropped: the caller must not
    /// close it, nor read or write it (only poll it). Until the first call, queue operations pay
    /// nothing for it; afterwards each change of the queue re-syncs it. Errors:
    /// `WEFT_OS_ERROR` (or `WEFT_NO_MEMORY`) when the eventfd cannot be created.
    pub fn fd(&self) -> Result<RawFd> {
        self.poll.fd(|| self.readable())
    }
}
