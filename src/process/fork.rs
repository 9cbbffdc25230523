//! The fork start method: the child is a copy of this process and calls the task pointer.

use super::{child, current, lifeline, warn, Options, Started};
use crate::fd;
use crate::status::{Error, Result};
use std::ffi::CStr;
use std::os::fd::IntoRawFd;

/// Forks a child running `task(arg)`.
pub(super) fn start(task: child::TaskFn, arg: &[u8], opts: &Options, name: &CStr, identity: &str) -> Result<Started> {
    let threads = current::thread_count();
    if threads > 1 {
        warn::fork_with_threads(threads);
    }
    // A pipe, cheaper to make and close than a socket pair; nothing but bytes travel on it.
    let (parent_end, child_end) = fd::pipe_with(libc::O_NONBLOCK)?;
    let life = if opts.daemon { Some(lifeline::read_end_dup()?) } else { None };
    // SAFETY: getpid has no preconditions.
    let me = current::Identity::new(name, identity, unsafe { libc::getpid() });
    // Flush C stdio first, so buffered output is not written twice (by parent and child).
    // SAFETY: fflush(NULL) flushes all streams.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    // SAFETY: fork has no memory-safety preconditions; the child only runs the task and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::last_os("fork"));
    }
    if pid == 0 {
        drop(parent_end);
        if let Some(l) = life {
            if lifeline::arm(l.into_raw_fd()).is_err() {
                // SAFETY: a daemon that cannot be tied to its parent must not outlive it.
                unsafe { libc::_exit(1) };
            }
        }
        // SAFETY: the strings belong to the parent's frames, which this child never returns to
        // (run_and_exit ends with _exit), so they live as long as the child.
        unsafe { me.install() };
        // The task gets its own close-on-exec duplicates, as with the other start methods
        // (the parent's descriptors keep their flags: passing stdout must not make it
        // close-on-exec in the child).
        let fds: Vec<i32> = opts.fds.iter().map(|&f| fd::dup(f).map_or(-1, std::os::fd::IntoRawFd::into_raw_fd)).collect();
        child::run_and_exit(task, arg, &fds, child_end);
    }
    drop(life);
    let pidfd = fd::pidfd_open(pid)?;
    // The parent keeps the child's end open until it has reaped the child: the child's exit
    // then wakes the parent once (pidfd), not twice (channel hang-up, then pidfd).
    Ok(Started { pid, pidfd, channel: parent_end, keep: Some(child_end) })
}
