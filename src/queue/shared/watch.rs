//! A pollable descriptor for a shared queue: the queue's [`Poll`] eventfd, kept readable by a
//! watcher thread while the queue holds an item or is shut down, and drained while it is empty.
//!
//! Items arrive from other processes, which cannot write this process's descriptors, so a
//! thread of this process follows the queue: it sleeps among the getters (`not_empty`) while the
//! queue is empty, and among the putters (`not_full`) while it is not, so every commit that
//! changes the answer wakes it. The thread exists only once `fd` was called, and while it sleeps
//! the queue's fast paths make one wake system call per change of emptiness, not per item.
//! It sleeps in slices of at most [`SLICE_NS`], so it notices that its handle was dropped; it
//! owns its own handle on the queue and a reference to the descriptor, and ends by itself.
//!
//! A forked child inherits the handle but not the thread: its next `fd` starts a thread of its
//! own, on the same descriptor number, which the `Poll` points at an eventfd of the child's
//! (see `queue/poll.rs`) — the parent's descriptor and thread are left alone.

use super::{Cursor, SharedQueue, OPEN};
use crate::queue::poll::Poll;
use crate::space::liveness::generation;
use crate::status::{Error, Result};
use crate::time::Deadline;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};
use std::sync::Arc;

/// Longest sleep of the watcher between checks of its stop flag.
const SLICE_NS: u64 = 100_000_000;

/// The descriptor and the watcher thread of one handle.
pub(super) struct Watcher {
    fd: RawFd,
    /// Keeps the eventfd open for the handle (the thread holds its own reference).
    poll: Arc<Poll>,
    stop: Arc<AtomicBool>,
    /// The fork generation whose thread follows the queue.
    generation: u32,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // The thread sees the flag within a slice and ends, closing its handle; the descriptor
        // goes with the last reference.
        self.stop.store(true, Release);
    }
}

impl Watcher {
    /// Starts watching the queue `token` designates.
    pub(super) fn start(token: &[u8]) -> Result<Watcher> {
        Self::start_on(token, Arc::new(Poll::default()))
    }

    /// Starts watching the queue `token` designates, keeping `poll` current.
    fn start_on(token: &[u8], poll: Arc<Poll>) -> Result<Watcher> {
        let queue = SharedQueue::from_token(token)?;
        let fd = poll.fd(|| readable(&queue))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (poll.clone(), stop.clone());
        std::thread::Builder::new()
            .name("weft-queue-fd".into())
            .spawn(move || follow(&queue, &p, &s))
            .map_err(|e| Error::io("spawning the queue's watcher thread", &e))?;
        Ok(Watcher { fd, poll, stop, generation: generation() })
    }

    /// True when this watcher's thread runs in this process (false in a forked child).
    fn here(&self) -> bool {
        self.generation == generation()
    }

    /// The descriptor.
    pub(super) fn fd(&self) -> RawFd {
        self.fd
    }
}

/// True while the queue holds an item or is shut down.
fn readable(q: &SharedQueue) -> bool {
    let h = q.header();
    h.shutdown.load(SeqCst) != OPEN || Cursor::load(&h.tail, SeqCst).seq != Cursor::load(&h.head, SeqCst).seq
}

/// The watcher's loop.
fn follow(q: &SharedQueue, poll: &Poll, stop: &AtomicBool) {
    while !stop.load(Acquire) {
        let on = readable(q);
        poll.sync(|| on);
        let h = q.header();
        let deadline = Deadline::from_timeout_ns(SLICE_NS);
        // Sleep until the answer may have changed (or the slice ends); errors (a cancel request
        // cannot reach this thread; a timeout is the slice) only mean: check again.
        let sleepers = if on { &h.not_full } else { &h.not_empty };
        let _ = sleepers.sleep(deadline, &|| readable(q) != on || stop.load(Acquire), "");
        // A commit wakes as many sleepers as it made room or items for; this one may have taken
        // a wake meant for a blocked getter or putter: pass one on (no system call when nobody
        // else sleeps).
        sleepers.wake(1);
    }
}

impl SharedQueue {
    /// A descriptor readable (POLLIN) while the queue holds an item or is shut down, owned by
    /// this handle (valid until it is dropped). Another consumer may take the item first: a
    /// `get` with `Deadline::Now` then gives `WEFT_WOULD_BLOCK`. The first call starts a
    /// watcher thread (see the module documentation).
    ///
    /// Errors: `WEFT_OS_ERROR` (no descriptor or thread could be made).
    pub fn fd(&self) -> Result<RawFd> {
        let mut slot = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        let w = match slot.take() {
            Some(w) if w.here() => w,
            // Forked: a thread of this process, on the same descriptor number.
            Some(w) => Watcher::start_on(&self.token(), w.poll.clone())?,
            None => Watcher::start(&self.token())?,
        };
        let fd = w.fd();
        *slot = Some(w);
        Ok(fd)
    }
}
