//! Collecting a child's exit status through its pidfd (`waitid(P_PIDFD)`: never
//! `waitpid(-1)`, never a SIGCHLD handler), and the children — processes and commands alike —
//! whose handle was dropped while they still ran.
//!
//! Dropping a running child does not kill it (Python's `Popen.__del__` does not either): its
//! pidfd moves to a process-wide list, and every later start or drop of a process or command
//! collects the ones that have exited since (without blocking), so they stay zombies only
//! until then.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl ExitStatus {
    /// Python's `exitcode` / `returncode`: the code, or minus the signal.
    pub fn exitcode(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => -s,
        }
    }
}

/// One `waitid(P_PIDFD, WEXITED)` (with WNOHANG unless `block`). `Ok(Some(status))` when the
/// child was collected now, `Ok(None)` while it runs (only without `block`), `Err(errno)`
/// otherwise — ECHILD when something else already collected it. EINTR is retried.
pub fn reap(pidfd: RawFd, block: bool) -> Result<Option<ExitStatus>, i32> {
    let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: a zeroed siginfo_t is a valid output buffer.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes one siginfo_t through a valid pointer.
        let r = unsafe { libc::waitid(libc::P_PIDFD, pidfd as libc::id_t, &mut info, flags) };
        if r < 0 {
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled a SIGCHLD siginfo (or left it zeroed when nothing changed).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(status_of(info.si_code, status)));
    }
}

/// [`reap`], as Python's return code.
pub fn returncode(pidfd: RawFd, block: bool) -> Result<Option<i32>, i32> {
    reap(pidfd, block).map(|s| s.map(ExitStatus::exitcode))
}

fn status_of(code: libc::c_int, status: libc::c_int) -> ExitStatus {
    match code {
        libc::CLD_EXITED => ExitStatus::Code(status),
        _ => ExitStatus::Signal(status), // CLD_KILLED, CLD_DUMPED
    }
}

/// pidfds of running children whose handle was dropped.
static ORPHANS: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());
/// Length of ORPHANS, read without the lock on the hot path.
static ORPHAN_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Keeps the pidfd of a still-running child whose handle is gone, to collect it later.
pub fn adopt(pidfd: OwnedFd) {
    let mut list = ORPHANS.lock().unwrap_or_else(|e| e.into_inner());
    list.push(pidfd);
    ORPHAN_COUNT.store(list.len(), Ordering::Relaxed);
}

/// Collects the adopted children that have exited, without blocking (skipped when another
/// thread is at it).
pub fn sweep() {
    if ORPHAN_COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Ok(mut list) = ORPHANS.try_lock() {
        list.retain(|fd| reap(fd.as_raw_fd(), false) == Ok(None));
        ORPHAN_COUNT.store(list.len(), Ordering::Relaxed);
    }
}

/// How many dropped children are still waiting to be collected.
pub fn orphans() -> usize {
    ORPHAN_COUNT.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_follow_python() {
        assert_eq!(status_of(libc::CLD_EXITED, 3).exitcode(), 3);
        assert_eq!(status_of(libc::CLD_KILLED, libc::SIGKILL).exitcode(), -libc::SIGKILL);
        assert_eq!(status_of(libc::CLD_DUMPED, libc::SIGABRT).exitcode(), -libc::SIGABRT);
    }
}
