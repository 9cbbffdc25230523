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

use super::{Cursor, SharedQueue, OPEN};
use crate::queue::poll::Poll;
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
    _poll: Arc<Poll>,
    stop: Arc<AtomicBool>,
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
        let queue = SharedQueue::from_token(token)?;
        let poll = Arc::new(Poll::default());
        let fd = poll.fd(|| readable(&queue))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (poll.clone(), stop.clone());
        std::thread::Builder::new()
            .name("weft-queue-fd".into())
            .spawn(move || follow(&queue, &p, &s))
            .map_err(|e| Error::io("spawning the queue's watcher thread", &e))?;
        Ok(Watcher { fd, _poll: poll, stop })
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
        if let Some(w) = self.watcher.get() {
            return Ok(w.fd());
        }
        let w = Watcher::start(&self.token())?;
        // A racing call may have installed its own: keep the first (dropping ours stops it).
        let _ = self.watcher.set(w);
        self.watcher.get().map(Watcher::fd).ok_or_else(|| Error::new(crate::status::WEFT_OS_ERROR, "no watcher"))
    }
}
