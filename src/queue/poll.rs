//! The pollable descriptor of a queue: an eventfd that is readable exactly while the queue is
//! non-empty or shut down. A private queue syncs it after its own operations; a shared queue's
//! watcher thread (`shared/watch.rs`) syncs it when another process's commit wakes it.
//!
//! Nothing exists until the first [`Poll::fd`]; until then the cost on every operation is one
//! load of the `on` flag. Afterwards every operation that changed the queue calls
//! [`Poll::sync`], which takes a small mutex, reads the queue's current state, and writes or
//! drains the eventfd so that its level matches (the level is tracked in a bool, so a sync that
//! finds nothing to change makes no system call). Since each sync reads the state after taking
//! the mutex, the last sync after the last change always leaves the right level.

use crate::status::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Mutex;

#[derive(Default)]
struct Level {
    fd: Option<OwnedFd>,
    /// Whether the eventfd's counter is non-zero.
    readable: bool,
}

/// A lazily created eventfd mirroring "the queue has items or is shut down".
#[derive(Default)]
pub(crate) struct Poll {
    on: AtomicBool,
    level: Mutex<Level>,
}

impl Poll {
    /// True once a descriptor was handed out. SeqCst: pairs with the queue operation's SeqCst
    /// claim before it against `fd`'s store of the flag before its first sync (a plain load on
    /// x86-64).
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.on.load(SeqCst)
    }

    /// The descriptor, created on the first call (`ready` tells the queue's state).
    /// Errors: `WEFT_OS_ERROR` (or `WEFT_NO_MEMORY`) when eventfd fails.
    pub(crate) fn fd(&self, ready: impl FnOnce() -> bool) -> Result<RawFd> {
        let mut level = self.level.lock().unwrap_or_else(|e| e.into_inner());
        let fd = match &level.fd {
            Some(fd) => fd.as_raw_fd(),
            None => {
                // SAFETY: eventfd takes no pointers.
                let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
                if raw < 0 {
                    let e = std::io::Error::last_os_error();
                    return Err(Error::io("eventfd", &e));
                }
                // SAFETY: `raw` is a fresh descriptor that nothing else owns.
                level.fd = Some(unsafe { OwnedFd::from_raw_fd(raw) });
                self.on.store(true, SeqCst);
                raw
            }
        };
        Self::set(&mut level, ready());
        Ok(fd)
    }

    /// Brings the level in line with the queue's state (`ready` is read under the mutex).
    #[cold]
    pub(crate) fn sync(&self, ready: impl FnOnce() -> bool) {
        let mut level = self.level.lock().unwrap_or_else(|e| e.into_inner());
        Self::set(&mut level, ready());
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
