//! The fork server: a single-threaded process, spawned as a fresh image of this program on
//! first use, that forks the children of the forkserver start method.
//!
//! Protocol on the control socket (a stream socket pair): the parent sends a job frame with its
//! descriptors; the server forks, and replies with a frame `[status i32][pid i32][message]`
//! carrying the child's pidfd. The server reaps its children and writes each one's exit frame
//! on the child's result channel (a copy of which it keeps), so the parent learns the exit
//! status without being the child's parent. When the control socket closes (the parent ended,
//! however it ended) the server exits; its non-daemon children live on, daemon children die
//! through their lifelines.

use super::{spawn, wire};
use crate::fd;
use crate::status::{Error, Result, WEFT_CLOSED, WEFT_OK};
use crate::sync::Lock;
use crate::futex::Interrupt;
use crate::time::Deadline;
use std::cell::UnsafeCell;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// This process's server: control socket, pid and pidfd.
struct Server {
    control: OwnedFd,
    pidfd: OwnedFd,
}

struct Slot {
    lock: Lock,
    server: UnsafeCell<Option<Server>>,
}

// SAFETY: `server` is only touched with `lock` held (or in a fork child, alone).
unsafe impl Sync for Slot {}

static SLOT: Slot = Slot { lock: Lock::new_const(), server: UnsafeCell::new(None) };

extern "C" fn before_fork() {
    let _ = SLOT.lock.acquire(Deadline::Never, Interrupt::Uninterruptible);
}

extern "C" fn after_fork_parent() {
    let _ = SLOT.lock.release();
}

extern "C" fn after_fork_child() {
    // The server belongs to the parent: the child closes its copies and starts its own on
    // first use.
    // SAFETY: the lock was taken in `before_fork`; this thread is the only one in the child.
    unsafe { *SLOT.server.get() = None };
    let _ = SLOT.lock.release();
}

/// Sends the job `body` with `fds` to the server (starting or restarting it if needed) and
/// returns the child's pid and pidfd.
pub(super) fn start(body: &[u8], fds: &[RawFd]) -> Result<(i32, OwnedFd)> {
    static HOOKS: std::sync::Once = std::sync::Once::new();
    HOOKS.call_once(|| {
        // SAFETY: registers plain extern "C" functions that live as long as the library.
        unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork_parent), Some(after_fork_child)) };
    });
    SLOT.lock.acquire(Deadline::Never, Interrupt::Uninterruptible)?;
    // SAFETY: the lock is held until the release below.
    let server = unsafe { &mut *SLOT.server.get() };
    let r = request_with_restart(server, body, fds);
    let _ = SLOT.lock.release();
    r
}

fn request_with_restart(server: &mut Option<Server>, body: &[u8], fds: &[RawFd]) -> Result<(i32, OwnedFd)> {
    for attempt in 0..2 {
        if server.is_none() {
            *server = Some(launch()?);
        }
        let s = server.as_ref().ok_or_else(|| Error::invalid("no fork server"))?;
        match request(s, body, fds) {
            Err(e) if e.code == WEFT_CLOSED && attempt == 0 => {
                // The server died (killed?): reap it and start another.
                if let Some(old) = server.take() {
                    drop(old.control);
                    let _ = fd::wait_ready(old.pidfd.as_raw_fd(), libc::POLLIN, Deadline::from_timeout_ns(1_000_000_000), "");
                    let _ = super::try_reap(old.pidfd.as_raw_fd());
                }
            }
            r => return r,
        }
    }
    Err(Error::new(
        WEFT_CLOSED,
        "the fork server ended at start-up twice: a fresh image of this program could not take weft's start-up path (see its stderr)",
    ))
}

fn launch() -> Result<Server> {
    let (_pid, pidfd, control) = spawn::boot(&[wire::BOOT_SERVER], &[])?;
    Ok(Server { control, pidfd })
}

fn request(s: &Server, body: &[u8], fds: &[RawFd]) -> Result<(i32, OwnedFd)> {
    wire::send_frame(s.control.as_raw_fd(), body, fds)?;
    let (reply, mut got) = wire::recv_frame(s.control.as_raw_fd(), 1)?;
    let mut r = wire::Reader::new(&reply);
    let status = r.i32()?;
    let pid = r.i32()?;
    if status != WEFT_OK {
        return Err(Error::new(status, format!("fork server: {}", String::from_utf8_lossy(&reply[8..]))));
    }
    let pidfd = got.pop().ok_or_else(|| Error::new(crate::status::WEFT_CORRUPTED, "fork server reply without a pidfd"))?;
    Ok((pid, pidfd))
}

// ---- the server's side -----------------------------------------------------------------------

/// A child of the server.
struct Child {
    pidfd: OwnedFd,
    result: OwnedFd,
    /// The exit frame, once the child ended, until it is written.
    pending: Option<Vec<u8>>,
}

/// The server's loop; returns only when the control socket fails in an unexpected way.
pub(super) fn serve(control: OwnedFd) -> Result<()> {
    // Ctrl-C reaches the whole process group: the server is not the one to stop. SIGINT is
    // blocked as well as ignored, so one sent to a child between its fork and its restoring the
    // default disposition stays pending there instead of being discarded.
    set_sigint_blocked(true);
    // SAFETY: setting a signal disposition to SIG_IGN has no memory effects.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let mut children: Vec<Child> = Vec::new();
    loop {
        let mut pfds = vec![libc::pollfd { fd: control.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        for c in &children {
            let (fd, events) = match c.pending {
                None => (c.pidfd.as_raw_fd(), libc::POLLIN),
                Some(_) => (c.result.as_raw_fd(), libc::POLLOUT),
            };
            pfds.push(libc::pollfd { fd, events, revents: 0 });
        }
        fd::poll(&mut pfds, Deadline::Never)?;
        let mut i = children.len();
        while i > 0 {
            i -= 1;
            if pfds[i + 1].revents != 0 && advance(&mut children[i]) {
                children.swap_remove(i);
            }
        }
        if pfds[0].revents != 0 {
            match wire::recv_frame(control.as_raw_fd(), fd::MAX_FDS_PER_MESSAGE) {
                Ok((body, fds)) => handle(&control, &mut children, &body, fds),
                // The parent is gone: so is the server.
                Err(_) => {
                    // SAFETY: ending the server process.
                    unsafe { libc::_exit(0) }
                }
            }
        }
    }
}

/// Moves one child on: reap it when it ended, then deliver its exit frame. True when done.
fn advance(c: &mut Child) -> bool {
    if c.pending.is_none() {
        match super::try_reap(c.pidfd.as_raw_fd()) {
            Ok(Some(status)) => c.pending = Some(wire::exit_frame(status)),
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
    let Some(body) = c.pending.as_ref() else { return true };
    let mut msg = (body.len() as u64).to_le_bytes().to_vec();
    msg.extend_from_slice(body);
    // SAFETY: sending from a live buffer; MSG_DONTWAIT leaves the shared description blocking
    // for the child's sake.
    let n = unsafe { libc::send(c.result.as_raw_fd(), msg.as_ptr().cast(), msg.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
        return false; // the parent has not read the result yet: try again when writable
    }
    // Written (the frame is tiny: a stream socket with room takes it whole) or the parent is
    // gone; either way this child is done.
    true
}

/// Blocks or unblocks SIGINT for the calling (single) thread.
fn set_sigint_blocked(blocked: bool) {
    // SAFETY: the set is initialised by sigemptyset before use; sigprocmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        let how = if blocked { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
        libc::sigprocmask(how, &set, std::ptr::null_mut());
    }
}

fn reply(control: &OwnedFd, status: i32, pid: i32, message: &str, pidfd: Option<RawFd>) {
    let mut body = status.to_le_bytes().to_vec();
    body.extend_from_slice(&pid.to_le_bytes());
    body.extend_from_slice(message.as_bytes());
    let fds: Vec<RawFd> = pidfd.into_iter().collect();
    let _ = wire::send_frame(control.as_raw_fd(), &body, &fds);
}

fn handle(control: &OwnedFd, children: &mut Vec<Child>, body: &[u8], fds: Vec<OwnedFd>) {
    let mut r = wire::Reader::new(body);
    let job = match r.u8().and_then(|t| if t == wire::BOOT_JOB { wire::Job::decode(&mut r) } else { Err(Error::invalid("not a job")) }) {
        Ok(j) if j.fd_count() == fds.len() => j,
        Ok(_) => return reply(control, crate::status::WEFT_INVALID_ARGUMENT, 0, "descriptor count mismatch", None),
        Err(e) => return reply(control, e.code, 0, &e.message, None),
    };
    // SAFETY: the server is single-threaded; the child only runs the job and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = Error::last_os("fork");
        return reply(control, e.code, 0, &e.message, None);
    }
    if pid == 0 {
        // The child keeps only its job's descriptors.
        // SAFETY: restoring the default SIGINT disposition.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
        // A SIGINT that arrived since the fork is delivered now, with its default action.
        set_sigint_blocked(false);
        children.clear();
        // SAFETY: closing the control socket's number in this child; the OwnedFd is never
        // used again here (run_job does not return).
        unsafe { libc::close(control.as_raw_fd()) };
        spawn::run_job(job, fds);
    }
    let result = fds.into_iter().next();
    match (fd::pidfd_open(pid), result) {
        (Ok(pidfd), Some(result)) => {
            reply(control, WEFT_OK, pid, "", Some(pidfd.as_raw_fd()));
            children.push(Child { pidfd, result, pending: None });
        }
        (Err(e), _) => reply(control, e.code, pid, &e.message, None),
        (Ok(_), None) => reply(control, crate::status::WEFT_INVALID_ARGUMENT, pid, "no result channel", None),
    }
}
