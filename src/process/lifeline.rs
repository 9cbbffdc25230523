//! Daemon children die with their parent, even when the parent is killed with SIGKILL.
//!
//! A process that starts daemon children makes one pipe, its lifeline, and keeps the write end
//! (close-on-exec, and closed in every forked child by a fork hook, so only this process holds
//! it). A daemon child opens its own description of the read end (through `/proc/self/fd`),
//! makes itself its owner and asks for `SIGKILL` as its I/O signal (`F_SETOWN`, `F_SETSIG`,
//! `O_ASYNC`). When the parent's process ends, however it ends, the kernel closes the last
//! write end and signals every reader: the daemon is killed at once, with no thread or
//! polling in the child. Another reader closing does not signal (only the last writer's or the
//! last reader's release does).
//!
//! `PR_SET_PDEATHSIG` alone would not do: it fires when the parent *thread* that forked ends,
//! and a fork-server child's parent is the server, not the process that asked for it.

use crate::fd;
use crate::status::{Error, Result};
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, Once};

/// The lifeline's write end in this process (-1 before the first daemon child).
static WRITE_END: AtomicI32 = AtomicI32::new(-1);
/// The lifeline's read end in this process (-1 before the first daemon child).
static READ_END: AtomicI32 = AtomicI32::new(-1);
static CREATE: Mutex<()> = Mutex::new(());

/// `fcntl` command choosing the I/O signal (Linux `F_SETSIG`, from `<fcntl.h>`).
const F_SETSIG: libc::c_int = 10;

extern "C" fn forget_in_child() {
    // A forked child must not keep its parent's daemons alive, and gets its own lifeline if it
    // starts daemons itself. close() is async-signal-safe.
    let w = WRITE_END.swap(-1, Ordering::Relaxed);
    let r = READ_END.swap(-1, Ordering::Relaxed);
    // SAFETY: both are descriptors this module created and owns; the child closes its copies.
    unsafe {
        if w >= 0 {
            libc::close(w);
        }
        if r >= 0 {
            libc::close(r);
        }
    }
}

/// The read end of this process's lifeline, created on first use. The descriptor stays owned
/// by this module (close-on-exec); pass it to a child, never close it.
pub fn read_end() -> Result<RawFd> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // SAFETY: registers a plain extern "C" function living as long as the library.
        unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
    });
    let r = READ_END.load(Ordering::Acquire);
    if r >= 0 {
        return Ok(r);
    }
    let _g = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    let r = READ_END.load(Ordering::Acquire);
    if r >= 0 {
        return Ok(r);
    }
    let (r, w) = fd::pipe()?;
    WRITE_END.store(w.into_raw_fd(), Ordering::Release);
    let r = r.into_raw_fd();
    READ_END.store(r, Ordering::Release);
    Ok(r)
}

/// In a daemon child: arms the lifeline read end `inherited` so that the parent's end kills
/// this process, then closes `inherited`. If the parent is already gone, exits at once.
/// Uses only async-signal-safe calls (it runs right after fork).
pub fn arm(inherited: RawFd) -> Result<()> {
    let mut path = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
    let mut digits = [0u8; 12];
    let mut n = inherited as u32;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    path[14..14 + len].copy_from_slice(&digits[i..]);
    // SAFETY: `path` is NUL-terminated (the buffer is zero past the digits). Opening a pipe
    // through /proc gives this process its own open file description of the same pipe;
    // O_NONBLOCK keeps the open from waiting for a writer.
    let own = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if own < 0 {
        return Err(Error::last_os("open(lifeline)"));
    }
    // SAFETY: fcntl calls on a descriptor we own; no memory effects.
    unsafe {
        if libc::fcntl(own, libc::F_SETOWN, libc::getpid()) < 0
            || libc::fcntl(own, F_SETSIG, libc::SIGKILL) < 0
            || libc::fcntl(own, libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK) < 0
        {
            return Err(Error::last_os("fcntl(lifeline)"));
        }
        libc::close(inherited);
    }
    // The parent may have died before the signal was armed: check once.
    let mut p = libc::pollfd { fd: own, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd; timeout 0.
    if unsafe { libc::poll(&mut p, 1, 0) } > 0 && p.revents & libc::POLLHUP != 0 {
        // SAFETY: ending this process is the purpose.
        unsafe { libc::_exit(1) };
    }
    // `own` stays open for the life of the process: it is the lifeline.
    Ok(())
}

/// Duplicates the read end for sending to a child (the caller drops the duplicate after).
pub fn read_end_dup() -> Result<OwnedFd> {
    fd::dup(read_end()?)
}
