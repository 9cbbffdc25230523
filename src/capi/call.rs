//! The task signature and its call context.

use super::in_ptr;
use crate::call::Call;
use crate::status::{guard, guard_value, weft_status};
use std::ffi::{c_char, c_void};

/// The context a running task receives: argument bytes in, result bytes or a failure message
/// out, and whether it was asked to cancel. Valid only during the task's call, on the thread
/// running it; not thread-safe.
pub struct weft_call(());

/// The one task signature of weft: the same function runs on a thread, in a pool or in a
/// child process. Return `WEFT_OK` for success (after `weft_call_set_result`, optionally) or
/// any other status for failure (after `weft_call_set_error`, optionally).
pub type weft_task_fn = Option<unsafe extern "C" fn(call: *mut weft_call) -> weft_status>;

/// Runs a C task function on a core call context.
pub(crate) fn run_c_task(f: unsafe extern "C" fn(*mut weft_call) -> weft_status, call: &mut Call) -> weft_status {
    // SAFETY: `call` outlives the call; the C function receives it as an opaque pointer and
    // may only use it through the weft_call_* functions during this call.
    unsafe { f(call as *mut Call as *mut weft_call) }
}

/// WEFT_TASK_FAILED for a task that returned `status` with `message`, naming both (so that,
/// say, a task that returned WEFT_TIMEOUT is not taken for a call that timed out).
pub(crate) fn task_failed(status: weft_status, message: &str) -> crate::status::Error {
    let name = crate::status::name(status).to_string_lossy();
    crate::status::Error::new(crate::status::WEFT_TASK_FAILED, format!("task failed with {name}: {message}"))
}

/// A finished task's outcome as a join returns it: WEFT_OK with the result bytes in `*result`
/// (when `result` is not NULL), or WEFT_TASK_FAILED naming the task's status and message.
/// Shared by thread and process joins.
pub(crate) fn give_outcome(o: crate::call::Outcome, result: *mut *mut super::status::weft_bytes) -> crate::status::Result<()> {
    if o.status != crate::status::WEFT_OK {
        return Err(task_failed(o.status, &o.message));
    }
    if !result.is_null() {
        super::status::give_bytes(o.result, result)?;
    }
    Ok(())
}

/// # Safety
/// `call` must be NULL or the pointer a task received, during that task's call.
unsafe fn call_mut<'a>(call: *mut weft_call) -> crate::status::Result<&'a mut Call<'a>> {
    in_ptr(call, "call")?;
    // SAFETY: per the contract, `call` is the `Call` `run_c_task` passed in, still live.
    Ok(unsafe { &mut *(call as *mut Call) })
}

/// The task's argument bytes: `*data` receives a pointer valid for the duration of the call
/// (NULL for an empty argument), `*len` its length. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `call` must be the context the task received; `data` and `len` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_call_arg(call: *const weft_call, data: *mut *const c_void, len: *mut usize) -> weft_status {
    guard(|| {
        super::out_ptr(data, "data")?;
        super::out_ptr(len, "len")?;
        // SAFETY: forwarded contract; only read.
        let c = unsafe { call_mut(call as *mut weft_call) }?;
        let a = c.arg();
        // SAFETY: both out-pointers were checked non-null.
        unsafe {
            data.write(if a.is_empty() { std::ptr::null() } else { a.as_ptr() as *const c_void });
            len.write(a.len());
        }
        Ok(())
    })
}

/// Sets (replaces) the task's result bytes; `data[0..len]` is copied. The joiner receives
/// them when the task returns WEFT_OK. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `call` must be the context the task received; `data` must point at `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn weft_call_set_result(call: *mut weft_call, data: *const c_void, len: usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let c = unsafe { call_mut(call) }?;
        // SAFETY: forwarded contract.
        let b = unsafe { super::bytes(data, len, "data") }?;
        c.set_result(b);
        Ok(())
    })
}

/// Sets (replaces) the failure message reported when the task returns a status other than
/// WEFT_OK (copied; invalid UTF-8 is replaced). Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `call` must be the context the task received; `message` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn weft_call_set_error(call: *mut weft_call, message: *const c_char) -> weft_status {
    guard(|| {
        in_ptr(message, "message")?;
        // SAFETY: forwarded contract.
        let c = unsafe { call_mut(call) }?;
        // SAFETY: checked non-null; NUL-terminated per the contract.
        let m = unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().into_owned();
        c.set_message(m);
        Ok(())
    })
}

/// True once the task was asked to cancel (`weft_thread_cancel`). Cancellation is
/// cooperative: the task decides when to stop, typically returning WEFT_CANCELLED. False for
/// NULL.
///
/// # Safety
/// `call` must be NULL or the context the task received.
#[no_mangle]
pub unsafe extern "C" fn weft_call_cancelled(call: *const weft_call) -> bool {
    // SAFETY: forwarded contract; only read.
    guard_value(false, || unsafe { call_mut(call as *mut weft_call) }.is_ok_and(|c| c.cancelled()))
}

/// The number of descriptors passed to the task: those of `weft_process_options.fds`, for a
/// task running in a child process; 0 on a thread, for NULL, or for an invalid context.
///
/// # Safety
/// `call` must be NULL or the context the task received.
#[no_mangle]
pub unsafe extern "C" fn weft_call_fd_count(call: *const weft_call) -> usize {
    // SAFETY: forwarded contract; only read.
    guard_value(0, || unsafe { call_mut(call as *mut weft_call) }.map_or(0, |c| c.fds().len()))
}

/// The `index`-th descriptor passed to the task (in the order of `weft_process_options.fds`),
/// as numbered in this process, or -1 when `index` is out of range (or `call` is NULL). The
/// descriptor belongs to the task's process; it stays open after the task returns.
///
/// # Safety
/// `call` must be NULL or the context the task received.
#[no_mangle]
pub unsafe extern "C" fn weft_call_fd(call: *const weft_call, index: usize) -> i32 {
    // SAFETY: forwarded contract; only read.
    guard_value(-1, || unsafe { call_mut(call as *mut weft_call) }.map_or(-1, |c| c.fds().get(index).copied().unwrap_or(-1)))
}
