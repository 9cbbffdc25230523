//! The pollable descriptor of a queue: an eventfd that is readable exactly while the queue is
//! non-empty or shut down. A private queue syncs it after its own operations; a shared queue's
//! watcher thread (`shared/watch.rs`) syncs it when another process's commit wakes it.
//!
//! Nothing exists until the first [`Poll::fd`]; until then the cost on every operation is one
//! load of the `on` flag. Afterwards every operation that changed the queue calls
//! [`Poll::sync`], which takes a small lock, reads the queue's current state, and writes or
//! drains the eventfd so that its level matches (the level is tracked in a bool, so a sync that
//! finds nothing to change makes no system call). Since each sync reads the state after taking
//! the lock, the last sync after the last change always leaves the right level.
//!
//! # Fork
//!
//! A forked child inherits the descriptor, and with it the parent's eventfd: were the child to
//! write or drain it, the parent's level would be wrong. So the level records the fork
//! generation (`space::liveness::generation`) it belongs to; the first sync or `fd` in a child
//! replaces the descriptor, under the same number (`dup3`, which changes only the child's table),
//! by a fresh eventfd of its own — a number the program already holds stays valid. The lock is
//! a word holding its holder's fork generation, so a child never waits for a lock that a thread
//! of its parent, which does not exist in the child, held at the fork: a holder of an older
//! generation is gone and its lock is taken over (the forking thread itself is never inside the
//! lock, which calls nothing that forks).

use crate::space::liveness::generation;
use crate::status::{Error, Result};
use std::cell::UnsafeCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU32};

#[derive(Default)]
struct Level {
    fd: Option<OwnedFd>,
    /// Whether the eventfd's counter is non-zero.
    readable: bool,
    /// The fork generation the descriptor belongs to.
    generation: u32,
}

/// A lazily created eventfd mirroring "the queue has items or is shut down".
#[derive(Default)]
pub(crate) struct Poll {
    on: AtomicBool,
    /// 0 when free, else the fork generation of the holder (never 0: it has bit 31 set).
    lock: AtomicU32,
    level: UnsafeCell<Level>,
}

// SAFETY: `level` is only touched by the holder of `lock` (see `Locked`).
unsafe impl Sync for Poll {}
// SAFETY: nothing in `Poll` is tied to a thread.
unsafe impl Send for Poll {}

/// `Poll::level`, locked.
struct Locked<'a>(&'a Poll);

impl std::ops::Deref for Locked<'_> {
    type Target = Level;
    fn deref(&self) -> &Level {
        // SAFETY: this guard holds the lock, which gives exclusive access to `level`.
        unsafe { &*self.0.level.get() }
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Level {
        // SAFETY: as for `deref`; `&mut self` makes the borrow unique.
        unsafe { &mut *self.0.level.get() }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.lock.store(0, SeqCst);
    }
}

impl Poll {
    /// True once a descriptor was handed out. SeqCst: pairs with the queue operation's SeqCst
    /// claim before it against `fd`'s store of the flag before its first sync (a plain load on
    /// x86-64).
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.on.load(SeqCst)
    }

    /// Takes the lock, taking it over from a holder of an older fork generation (a thread of a
    /// parent process, absent here). Holds are a few system calls long: waiters yield.
    fn locked(&self) -> Locked<'_> {
        let me = generation();
        loop {
            let cur = self.lock.load(Relaxed);
            if (cur == 0 || cur != me) && self.lock.compare_exchange(cur, me, Acquire, Relaxed).is_ok() {
                return Locked(self);
            }
            std::thread::yield_now();
        }
    }

    /// The descriptor, created on the first call (`ready` tells the queue's state).
    /// Errors: `WEFT_OS_ERROR` (or `WEFT_NO_MEMORY`) when eventfd fails.
    pub(crate) fn fd(&self, ready: impl FnOnce() -> bool) -> Result<RawFd> {
        let mut level = self.locked();
        let fd = match level.fd.as_ref().map(|fd| fd.as_raw_fd()) {
            Some(fd) if level.generation == generation() => fd,
            Some(fd) => {
                Self::replace_inherited(&mut level, fd)?;
                fd
            }
            None => {
                let fresh = Self::eventfd()?;
                let raw = fresh.as_raw_fd();
                level.fd = Some(fresh);
                level.generation = generation();
                self.on.store(true, SeqCst);
                raw
            }
        };
        Self::set(&mut level, ready());
        Ok(fd)
    }

    /// Brings the level in line with the queue's state (`ready` is read under the lock).
    #[cold]
    pub(crate) fn sync(&self, ready: impl FnOnce() -> bool) {
        let mut level = self.locked();
        if level.generation != generation() {
            let Some(fd) = level.fd.as_ref().map(|fd| fd.as_raw_fd()) else { return };
            // Without a descriptor of its own the child leaves the inherited one alone; its
            // next `fd` reports the failure.
            if Self::replace_inherited(&mut level, fd).is_err() {
                return;
            }
        }
        Self::set(&mut level, ready());
    }

    fn eventfd() -> Result<OwnedFd> {
        // SAFETY: eventfd takes no pointers.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            let e = std::io::Error::last_os_error();
            return Err(Error::io("eventfd", &e));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    /// In a forked child: points the number `fd` at a fresh eventfd of this process.
    fn replace_inherited(level: &mut Level, fd: RawFd) -> Result<()> {
        let fresh = Self::eventfd()?;
        // SAFETY: both are open descriptors of this process; dup3 atomically closes the
        // inherited description at `fd` (in this process's table only) and makes `fd` refer to
        // the fresh eventfd, whose own number `fresh` closes when dropped.
        if unsafe { libc::dup3(fresh.as_raw_fd(), fd, libc::O_CLOEXEC) } < 0 {
            let e = std::io::Error::last_os_error();
            return Err(Error::io("dup3 of the queue's eventfd", &e));
        }
        level.readable = false;
        level.generation = generation();
        Ok(())
    }

    fn set(level: &mut Level, want: bool) {
        if want == level.readable {
            return;
        }
        let Some(fd) = &level.fd else { return };
        let fd = fd.as_raw_fd();
        let mut v: u64 = 1;
        // SAFETY: `fd` is our live eventfd; the buffer is 8 bytes on this stack frame. The
        // descriptor is non-blocking: writing 1 to a zero counter and draining cannot block, and
        // cannot fail on a valid eventfd.
        let r = unsafe {
            if want {
                libc::write(fd, (&v as *const u64).cast(), 8)
            } else {
                libc::read(fd, (&mut v as *mut u64).cast(), 8)
            }
        };
        // A failed drain (EAGAIN) means the counter was zero already: someone read the
        // descriptor although they should only poll it.
        if r == 8 || !want {
            level.readable = want;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{fork_child, wait_child};
    use std::sync::mpsc;

    #[test]
    fn a_forked_child_takes_over_a_lock_its_parents_thread_held() {
        let poll = std::sync::Arc::new(Poll::default());
        poll.fd(|| false).unwrap();
        let (held_tx, held_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let p = poll.clone();
        let holder = std::thread::spawn(move || {
            let _guard = p.locked();
            held_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        held_rx.recv().unwrap();
        // In the child the holder does not exist: its lock must not hang the child's sync.
        let pid = fork_child(|| {
            poll.sync(|| true);
            true
        });
        let status = wait_child(pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
        done_tx.send(()).unwrap();
        holder.join().unwrap();
        poll.sync(|| true);
    }
}
