//! The child's side of every start method: run the task, report its outcome to the parent,
//! do what a normal exit would do for weft (join non-daemon weft threads, leave shared
//! barriers, flush C stdio) and end the process with `_exit` — never returning into the
//! caller's code and never running the parent's `atexit` handlers a forked child inherited.
//!
//! Exit code: 0 when the task succeeded, 1 when it failed (Python's rule for an exception).

use super::wire;
use crate::call::{Call, Outcome};
use crate::capi::call::{run_c_task, weft_call};
use crate::fd;
use crate::status::{weft_status, WEFT_OK};
use crate::time::Deadline;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU32;

/// A C task function by address.
pub type TaskFn = unsafe extern "C" fn(*mut weft_call) -> weft_status;

/// Runs `task(arg)` with the passed descriptors `fds`, writes the outcome frame on `result`
/// and ends the process.
pub fn run_and_exit(task: TaskFn, arg: &[u8], fds: &[RawFd], result: OwnedFd) -> ! {
    let outcome = crate::status::catch(|| {
        let cancel = AtomicU32::new(0);
        let mut call = Call::new(arg, &cancel).with_fds(fds);
        let status = run_c_task(task, &mut call);
        Ok(call.finish(status))
    })
    .unwrap_or_else(|e| Outcome { status: e.code, result: Vec::new(), message: e.message.into_owned() });
    let code = report(&outcome, result.as_raw_fd());
    drop(result);
    exit(code)
}

/// Sends the outcome frame (a vanished parent is ignored) and gives the exit code. A success
/// with an empty result sends nothing: exit code 0 says it all, and the parent is woken once,
/// by the exit, instead of twice.
fn report(o: &Outcome, result: RawFd) -> i32 {
    if o.status == WEFT_OK && o.result.is_empty() {
        return 0;
    }
    let payload = if o.status == WEFT_OK { &o.result[..] } else { o.message.as_bytes() };
    let body = wire::outcome_frame(o.status, payload);
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&(body.len() as u64).to_le_bytes());
    frame.extend_from_slice(&body);
    // A pipe (fork) or a socket (forkserver, spawn); a vanished parent is no signal death.
    let _ = fd::write_all_nosignal(result, &frame, Deadline::Never);
    if o.status == WEFT_OK { 0 } else { 1 }
}

/// Reports a failure that happened before the task could run (its object could not be
/// loaded, say) and ends the process with exit code 1.
pub fn fail_and_exit(err: &crate::status::Error, result: Option<OwnedFd>) -> ! {
    if let Some(r) = result {
        let o = Outcome { status: err.code, result: Vec::new(), message: err.message.to_string() };
        report(&o, r.as_raw_fd());
    }
    exit(1)
}

/// weft's part of a normal exit, then `_exit(code)`.
pub fn exit(code: i32) -> ! {
    let _ = crate::status::catch(|| crate::thread::shutdown(Deadline::Never));
    crate::capi::barrier::leave_shared_barriers_at_exit();
    // SAFETY: fflush(NULL) flushes every C stdio stream; _exit ends the process.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(code)
    }
}

/// Makes sure the descriptors the caller listed exist (a closed one is a caller error).
pub fn check_fds(fds: &[RawFd]) -> crate::status::Result<()> {
    for &f in fds {
        if !fd::is_open(f) {
            return Err(crate::status::Error::invalid(format!("descriptor {f} to pass is not open")));
        }
    }
    Ok(())
}
