//! A pollable descriptor for a shared queue: an eventfd that a watcher thread keeps readable
//! while the queue holds an item or is shut down, and drained while it is empty.
//!
//! Items arrive from other processes, which cannot write this process's descriptors, so a
//! thread of this process follows the queue: it sleeps among the getters (`not_empty`) while the
//! queue is empty, and among the putters (`not_full`) while it is not, so every commit that
//! changes the answer wakes it. The thread exists only once `fd` was called, and while it sleeps
//! the queue's fast paths make one wake system call per change of emptiness, not per item.
//! It sleeps in slices of at most [`SLICE_NS`], so it notices that its handle was dropped; it
//! owns its own handle on the queue and a reference to the descriptor, and ends by itself.

use super::{Cursor, SharedQueue, OPEN};
use crate::status::{Error, Result};
use crate::time::Deadline;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Longest sleep of the watcher between checks of its stop flag.
const SLICE_NS: u64 = 100_000_000;

/// The descriptor and the watcher thread of one handle.
pub(super) struct Watcher {
    efd: Arc<OwnedFd>,
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
        // SAFETY: eventfd has no memory effects; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(Error::last_os("eventfd"));
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let efd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let stop = Arc::new(AtomicBool::new(false));
        let queue = SharedQueue::from_token(token)?;
        let (e, s) = (efd.clone(), stop.clone());
        std::thread::Builder::new()
            .name("weft-queue-fd".into())
            .spawn(move || follow(&queue, e.as_raw_fd(), &s))
            .map_err(|e| Error::io("spawning the queue's watcher thread", &e))?;
        Ok(Watcher { efd, stop })
    }

    /// The descriptor.
    pub(super) fn fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }
}

/// True while the queue holds an item or is shut down.
fn readable(q: &SharedQueue) -> bool {
    let h = q.header();
    h.shutdown.load(SeqCst) != OPEN || Cursor::load(&h.tail, SeqCst).seq != Cursor::load(&h.head, SeqCst).seq
}

/// Sets (`on`) or drains the eventfd.
fn level(efd: RawFd, on: bool) {
    let mut v = 0u64;
    // SAFETY: reads or writes one u64 from/to a live local; a non-blocking eventfd never blocks.
    unsafe {
        if on {
            v = 1;
            libc::write(efd, (&v as *const u64).cast(), 8);
        } else {
            libc::read(efd, (&mut v as *mut u64).cast(), 8);
        }
    }
}

/// The watcher's loop.
fn follow(q: &SharedQueue, efd: RawFd, stop: &AtomicBool) {
    let mut on = false;
    level(efd, false);
    while !stop.load(Acquire) {
        let now = readable(q);
        if now != on {
            level(efd, now);
            on = now;
        }
        let h = q.header();
        let deadline = Deadline::from_timeout_ns(SLICE_NS);
        // Sleep until the answer may have changed (or the slice ends); errors (a cancel request
        // cannot reach this thread; a timeout is the slice) only mean: check again.
        let sleepers = if on { &h.not_full } else { &h.not_empty };
        let want = !on;
        let _ = sleepers.sleep(deadline, &|| readable(q) == want || stop.load(Acquire), "");
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

