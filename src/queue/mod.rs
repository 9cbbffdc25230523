//! Queues: Python's `queue.Queue`, `LifoQueue`, `PriorityQueue`, `SimpleQueue` and
//! `multiprocessing.Queue`, `JoinableQueue`, `SimpleQueue` as one type with kinds, living either
//! in private memory ([`private`]) or in a shared-memory space ([`shared`]).
//!
//! Items are byte strings, copied in and out. Items of at most 8 bytes (and every
//! [`put_word`](private::PrivateQueue::put_word)) are stored inline, with no allocation.
//!
//! Semantics common to both homes (Python 3.13's `queue` module):
//! - `put` blocks while the queue is full (bounded queues), `get` while it is empty; a
//!   `Deadline::Now` attempt gives `WEFT_WOULD_BLOCK` (Python's `Full`/`Empty`), a passed
//!   deadline `WEFT_TIMEOUT`, a cancel request on a weft thread `WEFT_CANCELLED`.
//! - FIFO and simple queues deliver in put order; LIFO the last put first; priority the lowest
//!   priority value first, FIFO among equal priorities. Other kinds ignore the priority.
//! - Joinable queues count unfinished tasks: each put adds one, `task_done` removes one (one
//!   too many is `WEFT_INVALID_STATE`), `join` waits until the count is zero.
//! - `shutdown(false)`: later puts, and blocked putters, get `WEFT_CLOSED`; gets drain what is
//!   left, then get `WEFT_CLOSED`. `shutdown(true)` also discards the items (counting each as
//!   done for `join`) and wakes every waiter.
//! - A receive into a buffer that is too small gives `WEFT_BUFFER_TOO_SMALL` with the needed
//!   size and leaves the item in the queue.

mod poll;
pub mod private;
pub mod shared;

use crate::status::{Error, Result};

/// The order in which a queue delivers its items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// First in, first out (`queue.Queue`, `multiprocessing.Queue`).
    Fifo,
    /// Last in, first out (`queue.LifoQueue`).
    Lifo,
    /// Lowest priority value first, FIFO among equals (`queue.PriorityQueue`).
    Priority,
    /// First in, first out, unbounded, never joinable (`queue.SimpleQueue`).
    Simple,
}

impl Kind {
    /// The kind for a C constant (`WEFT_QUEUE_FIFO` = 0, `LIFO` = 1, `PRIORITY` = 2,
    /// `SIMPLE` = 3).
    pub fn from_code(code: u32) -> Result<Kind> {
        match code {
            0 => Ok(Kind::Fifo),
            1 => Ok(Kind::Lifo),
            2 => Ok(Kind::Priority),
            3 => Ok(Kind::Simple),
            _ => Err(Error::invalid(format!("unknown queue kind {code}"))),
        }
    }
    /// The C constant of this kind.
    pub fn code(self) -> u32 {
        match self {
            Kind::Fifo => 0,
            Kind::Lifo => 1,
            Kind::Priority => 2,
            Kind::Simple => 3,
        }
    }
}

/// How a queue is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Delivery order.
    pub kind: Kind,
    /// Most items held at once; 0 = unbounded (always 0 for `Simple`).
    pub maxsize: usize,
    /// Shared queues: bytes of item storage (0 = a default); private queues ignore it.
    pub max_bytes: u64,
    /// Counts unfinished tasks (`task_done`/`join`); not allowed for `Simple`.
    pub joinable: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { kind: Kind::Fifo, maxsize: 0, max_bytes: 0, joinable: false }
    }
}

impl Options {
    /// Checks the combination: `Simple` is unbounded and not joinable.
    pub fn check(&self) -> Result<()> {
        if self.kind == Kind::Simple && (self.maxsize != 0 || self.joinable) {
            return Err(Error::invalid("a simple queue is unbounded and not joinable"));
        }
        Ok(())
    }
}

/// The outcome of receiving into a caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filled {
    /// The next item (this many bytes) was written to the buffer and removed from the queue.
    Item(usize),
    /// The next item needs this many bytes; it stays in the queue.
    TooSmall(usize),
}

/// A queue, private or shared: one API for both homes (see the module documentation).
///
/// Thread-safe: any number of threads (and, for a shared queue, processes) may put and get at
/// once.
pub enum Queue {
    /// In this process's memory (boxed: the ring's cache-padded cursors make it large).
    Private(Box<private::PrivateQueue>),
    /// In a shared-memory space.
    Shared(shared::SharedQueue),
}

/// Forwards a call to whichever home the queue has.
macro_rules! both {
    ($self:ident, $q:ident => $e:expr) => {
        match $self {
            Queue::Private($q) => $e,
            Queue::Shared($q) => $e,
        }
    };
}

impl Queue {
    /// A private queue.
    pub fn new(opts: Options) -> Result<Queue> {
        Ok(Queue::Private(Box::new(private::PrivateQueue::new(opts)?)))
    }
    /// How the queue was made.
    pub fn options(&self) -> Options {
        both!(self, q => q.options())
    }
    /// The shared queue, when it lives in a space.
    pub fn as_shared(&self) -> Option<&shared::SharedQueue> {
        match self {
            Queue::Private(_) => None,
            Queue::Shared(q) => Some(q),
        }
    }
    /// Puts a copy of `item` (blocking while full, until `deadline`).
    pub fn put(&self, item: &[u8], priority: i64, deadline: crate::time::Deadline) -> Result<()> {
        both!(self, q => q.put(item, priority, deadline))
    }
    /// Puts the 8 native-endian bytes of `word`, with no allocation in a private queue.
    pub fn put_word(&self, word: usize, priority: i64, deadline: crate::time::Deadline) -> Result<()> {
        both!(self, q => q.put_word(word, priority, deadline))
    }
    /// Puts `items` in order; how many went in, and why it stopped early.
    pub fn put_many(&self, items: &[&[u8]], priority: i64, deadline: crate::time::Deadline) -> (usize, Result<()>) {
        both!(self, q => q.put_many(items, priority, deadline))
    }
    /// Takes the next item (blocking while empty, until `deadline`).
    pub fn get(&self, deadline: crate::time::Deadline) -> Result<Vec<u8>> {
        both!(self, q => q.get(deadline))
    }
    /// Takes the next item, which must be 8 bytes, as a word (otherwise it stays).
    pub fn get_word(&self, deadline: crate::time::Deadline) -> Result<usize> {
        both!(self, q => q.get_word(deadline))
    }
    /// Takes the next item into `buf`, or says how big it is (then it stays).
    pub fn get_into(&self, buf: &mut [u8], deadline: crate::time::Deadline) -> Result<Filled> {
        both!(self, q => q.get_into(buf, deadline))
    }
    /// Waits for at least one item, then takes up to `max` of those present.
    pub fn get_many(&self, max: usize, deadline: crate::time::Deadline) -> Result<Vec<Vec<u8>>> {
        both!(self, q => q.get_many(max, deadline))
    }
    /// Items held now.
    pub fn qsize(&self) -> usize {
        both!(self, q => q.qsize())
    }
    /// True when no item is held.
    pub fn empty(&self) -> bool {
        both!(self, q => q.empty())
    }
    /// True when a bounded queue holds `maxsize` items.
    pub fn full(&self) -> bool {
        both!(self, q => q.full())
    }
    /// Marks one task gotten from a joinable queue done.
    pub fn task_done(&self) -> Result<()> {
        both!(self, q => q.task_done())
    }
    /// Items put and not yet marked done (joinable queues).
    pub fn unfinished(&self) -> usize {
        both!(self, q => q.unfinished())
    }
    /// Waits until every item put was marked done.
    pub fn join(&self, deadline: crate::time::Deadline) -> Result<()> {
        both!(self, q => q.join(deadline))
    }
    /// Shuts the queue down (see the module documentation).
    pub fn shutdown(&self, immediate: bool) -> Result<()> {
        match self {
            Queue::Private(q) => {
                q.shutdown(immediate);
                Ok(())
            }
            Queue::Shared(q) => q.shutdown(immediate),
        }
    }
    /// True once shut down.
    pub fn is_shut_down(&self) -> bool {
        both!(self, q => q.is_shut_down())
    }
    /// A descriptor readable while the queue holds an item or is shut down; owned by the queue
    /// (or, for a shared queue, by this handle on it).
    pub fn fd(&self) -> Result<std::os::fd::RawFd> {
        both!(self, q => q.fd())
    }
}
