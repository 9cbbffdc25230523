//! Futures (Python's `concurrent.futures.Future`, `wait`, `as_completed`) and task groups
//! (asyncio's `TaskGroup`).

use super::call::{run_c_task, weft_task_fn};
use super::{get, in_ptr, out_ptr, publish, Object, Tag};
use crate::future::{self, AsCompleted, Future, Group, Mode};
use crate::futex::Interrupt;
use crate::status::{self, guard, guard_value, weft_status, Error, Result, WEFT_CANCELLED, WEFT_INVALID_ARGUMENT,
    WEFT_NULL_ARGUMENT};
use crate::time::Deadline;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::mem::ManuallyDrop;

/// State of a future: created, not started (`weft_future_state`).
pub const WEFT_FUTURE_PENDING: i32 = 0;
/// State of a future: a runner started it (`weft_future_set_running`, `weft_future_run`).
pub const WEFT_FUTURE_RUNNING: i32 = 1;
/// State of a future: finished with result bytes. This and the states above it are final.
pub const WEFT_FUTURE_DONE: i32 = 2;
/// State of a future: finished with a failure status and message (final).
pub const WEFT_FUTURE_FAILED: i32 = 3;
/// State of a future: cancelled (final).
pub const WEFT_FUTURE_CANCELLED: i32 = 4;

/// `weft_futures_wait` mode: return when every future is finished (Python's `ALL_COMPLETED`,
/// the default).
pub const WEFT_ALL_COMPLETED: i32 = 0;
/// `weft_futures_wait` mode: return when any future is finished (`FIRST_COMPLETED`).
pub const WEFT_FIRST_COMPLETED: i32 = 1;
/// `weft_futures_wait` mode: return when any future fails (a cancelled one does not count),
/// else when all are finished (`FIRST_EXCEPTION`).
pub const WEFT_FIRST_EXCEPTION: i32 = 2;

/// A future (Python's `concurrent.futures.Future`): the eventual outcome of a task — pending,
/// running, then for good done (result bytes), failed (a status and a message) or cancelled.
/// Pools hand them out; a program may also create one (`weft_future_new`) and complete it
/// itself. Reference counted: `weft_future_ref` takes another reference to the same pointer,
/// and each reference is given back with one `weft_future_free`; the future lives until the
/// last one is. Thread-safe: any thread may complete, cancel, wait for and read it.
pub struct weft_future(());

/// A done callback: `future` is borrowed for the duration of the call (take a reference with
/// `weft_future_ref` to keep it; do not free it), `ctx` the pointer given with the callback.
pub type weft_future_callback = Option<unsafe extern "C" fn(future: *mut weft_future, ctx: *mut c_void)>;

/// Borrows the future behind a C handle.
///
/// # Safety
/// `f` must be NULL or a handle from weft (possibly already freed, which the tag check
/// usually catches).
unsafe fn fut(f: *const weft_future) -> Result<ManuallyDrop<Future>> {
    if f.is_null() {
        return Err(Error::new(WEFT_NULL_ARGUMENT, "weft_future handle is NULL"));
    }
    // SAFETY: per the contract `f` came from `Future::into_raw`.
    if !unsafe { Future::raw_is_live(f.cast()) } {
        return Err(Error::new(WEFT_INVALID_ARGUMENT, "not a live weft_future (freed or of another type)"));
    }
    // SAFETY: live, and the caller's reference keeps it so during the call.
    Ok(unsafe { Future::borrow_raw(f.cast()) })
}

/// Owned handles for an array of C handles; `fs` may be NULL when `n` is 0.
///
/// # Safety
/// `fs` must point at `n` handle pointers (each NULL or a handle from weft).
unsafe fn futures(fs: *const *mut weft_future, n: usize) -> Result<Vec<Future>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    in_ptr(fs, "fs")?;
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: `fs` has `n` entries per the contract.
        let p = unsafe { *fs.add(i) };
        // SAFETY: forwarded contract.
        let f = unsafe { fut(p) }.map_err(|e| Error::new(e.code, format!("fs[{i}]: {}", e.message)))?;
        v.push(Future::clone(&f));
    }
    Ok(v)
}

/// Creates a pending future in `*out` (one reference; free with `weft_future_free`), for a
/// program that completes it itself. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_future_new(out: *mut *mut weft_future) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: checked non-null.
        unsafe { out.write(Future::new().into_raw().cast()) };
        Ok(())
    })
}

/// Takes one more reference to the future (the pointer stays the same); give it back with
/// `weft_future_free`. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (not a live future).
///
/// # Safety
/// `future` must be NULL or a handle from weft on which the caller holds a reference.
#[no_mangle]
pub unsafe extern "C" fn weft_future_ref(future: *mut weft_future) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let f = unsafe { fut(future) }?;
        std::mem::forget(Future::clone(&f));
        Ok(())
    })
}

/// Gives back one reference; the last one frees the future (and closes its descriptor). A
/// pending future freed by everybody never runs its callbacks. NULL is a no-op; a pointer that
/// is not a live future is reported in the last-error message and otherwise ignored.
///
/// # Safety
/// `future` must be NULL or a handle from weft on which the caller holds a reference, not used
/// afterwards through that reference.
#[no_mangle]
pub unsafe extern "C" fn weft_future_free(future: *mut weft_future) {
    if future.is_null() {
        return;
    }
    guard_value((), || {
        // SAFETY: non-null; per the contract a handle from weft.
        if !unsafe { Future::raw_is_live(future.cast()) } {
            status::set_last_error("weft_future_free: not a live weft_future (double free?); ignored");
            return;
        }
        // SAFETY: the caller gives up its reference.
        drop(unsafe { Future::from_raw(future.cast()) });
    })
}

/// The future's state: WEFT_FUTURE_PENDING, _RUNNING, _DONE, _FAILED or _CANCELLED (those from
/// WEFT_FUTURE_DONE up are final and never change). -1 for NULL or an invalid handle (with the
/// last-error message set). Does not wait.
///
/// # Safety
/// `future` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_future_state(future: *const weft_future) -> i32 {
    guard_value(-1, || {
        // SAFETY: forwarded contract.
        match unsafe { fut(future) } {
            Ok(f) => f.state() as i32,
            Err(e) => {
                status::report(e);
                -1
            }
        }
    })
}

/// Python's `set_running_or_notify_cancel`, for a program that runs the future's work itself:
/// marks a pending future running and returns WEFT_OK (run the work, then complete the
/// future); returns WEFT_CANCELLED when the future was cancelled (do not run the work).
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT, WEFT_INVALID_STATE (already running,
/// being completed, or finished).
///
/// # Safety
/// `future` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_future_set_running(future: *mut weft_future) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        if unsafe { fut(future) }?.set_running()? {
            Ok(())
        } else {
            Err(Error::new(WEFT_CANCELLED, "the future was cancelled: its work must not run"))
        }
    })
}

/// Finishes the future with a copy of `data[0..len]` as its result, wakes its waiters and runs
/// its callbacks (on the calling thread, before returning). A pending or running future may be
/// completed. Errors: WEFT_NULL_ARGUMENT (`data` NULL with len > 0), WEFT_INVALID_ARGUMENT,
/// WEFT_INVALID_STATE (already finished, cancelled, or being completed).
///
/// # Safety
/// `future` must be NULL or a handle from weft; `data` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn weft_future_set_result(future: *mut weft_future, data: *const c_void, len: usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (f, b) = unsafe { (fut(future)?, super::bytes(data, len, "data")?) };
        f.set_result(b)
    })
}

/// Finishes the future as failed with `status` and a copy of `message` (NULL: a message naming
/// the status), wakes its waiters and runs its callbacks. `status` is the failure's own code,
/// which `weft_future_result` returns later (any value but WEFT_OK; a weft code keeps
/// `weft_status_name` meaningful). Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (status
/// WEFT_OK, message not UTF-8), WEFT_INVALID_STATE (already finished, cancelled, or being
/// completed).
///
/// # Safety
/// `future` must be NULL or a handle from weft; `message` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn weft_future_set_failure(future: *mut weft_future, status: weft_status, message: *const c_char) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let f = unsafe { fut(future) }?;
        // SAFETY: forwarded contract.
        let m = unsafe { super::opt_str(message, "message") }?;
        let m = m.unwrap_or_else(|| format!("failed with {}", status::name(status).to_string_lossy()));
        f.set_failure(status, m)
    })
}

/// Python's `cancel`. A pending future becomes cancelled: its waiters wake (with
/// WEFT_CANCELLED) and its callbacks run on the calling thread; `*cancelled` (when `cancelled`
/// is not NULL) receives true, as it does for a future cancelled before. A running future
/// cannot be cancelled: it receives a cooperative cancel request (its task sees
/// `weft_call_cancelled`, a weft wait inside the task ends with WEFT_CANCELLED, its runner sees
/// `weft_future_cancel_requested`; a process-pool task gets the request within about 10 ms)
/// and `*cancelled` receives false, as for a finished future. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_INVALID_ARGUMENT.
///
/// # Safety
/// `future` must be NULL or a handle from weft; `cancelled` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_future_cancel(future: *mut weft_future, cancelled: *mut bool) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let done = unsafe { fut(future) }?.cancel();
        if !cancelled.is_null() {
            // SAFETY: non-null and writable per the contract.
            unsafe { cancelled.write(done) };
        }
        Ok(())
    })
}

/// True once a cancel was requested while the future was running (for runners that do not use
/// `weft_future_run`). False for NULL or an invalid handle.
///
/// # Safety
/// `future` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_future_cancel_requested(future: *const weft_future) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { fut(future) }.is_ok_and(|f| f.cancel_requested()))
}

/// Runs `task` for the future on the calling thread, as a pool worker does: marks the future
/// running, calls the task with `arg[0..arg_len]` as its argument (not copied; the task's
/// `weft_call_cancelled` turns true when the future is cancelled while it runs), and completes
/// the future with the outcome: the result bytes (WEFT_OK), the failure (other statuses), or
/// cancelled when the task returned WEFT_CANCELLED after a cancel request. Returns WEFT_OK once
/// the task ran, whatever its outcome. Errors: WEFT_NULL_ARGUMENT (`task`, or `arg` NULL with arg_len > 0),
/// WEFT_INVALID_ARGUMENT, WEFT_CANCELLED (the future was cancelled: the task did not run),
/// WEFT_INVALID_STATE (already running or finished).
///
/// # Safety
/// `future` must be NULL or a handle from weft; `arg` must point at `arg_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn weft_future_run(future: *mut weft_future, task: weft_task_fn, arg: *const c_void, arg_len: usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let f = unsafe { fut(future) }?;
        let task = task.ok_or_else(|| Error::new(WEFT_NULL_ARGUMENT, "task is NULL"))?;
        // SAFETY: forwarded contract.
        let arg = unsafe { super::bytes(arg, arg_len, "arg") }?;
        if f.run(arg, |call| run_c_task(task, call))? {
            Ok(())
        } else {
            Err(Error::new(WEFT_CANCELLED, "the future was cancelled: its task did not run"))
        }
    })
}

/// Waits up to `timeout_ns` for the future and gives its result bytes: `*data` (NULL for an
/// empty result) and `*len`, when not NULL. The bytes are borrowed: they never change and stay
/// valid while the caller holds a reference to the future. Timeout 0 checks once (like
/// Python's `result(timeout=0)`, it gives WEFT_TIMEOUT, not WEFT_WOULD_BLOCK); WEFT_FOREVER
/// waits forever. Errors: the failure's own status for a failed future, with its message in
/// `weft_last_error_message`; WEFT_CANCELLED (the future was cancelled, or the calling weft
/// thread was asked to cancel — the message tells which); WEFT_TIMEOUT; WEFT_NULL_ARGUMENT;
/// WEFT_INVALID_ARGUMENT.
///
/// # Safety
/// `future` must be NULL or a handle from weft; `data` and `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_future_result(future: *mut weft_future, timeout_ns: u64, data: *mut *const c_void, len: *mut usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let f = unsafe { fut(future) }?;
        let r = f.result(Deadline::from_timeout_ns(timeout_ns))?;
        // SAFETY: each is NULL or writable per the contract. The bytes live in the future's
        // allocation, which the caller's reference keeps.
        unsafe {
            if !data.is_null() {
                data.write(if r.is_empty() { std::ptr::null() } else { r.as_ptr().cast() });
            }
            if !len.is_null() {
                len.write(r.len());
            }
        }
        Ok(())
    })
}

/// Python's `exception`: waits up to `timeout_ns` for the future, then `*status` receives
/// WEFT_OK for a future that succeeded, or the failure status of a failed one; `*message`
/// (when `message` is not NULL) its failure message ("" on success), borrowed like result
/// bytes: valid while the caller holds a reference. Timeout 0 checks once. Errors:
/// WEFT_CANCELLED (the future was cancelled, or the calling weft thread was asked to cancel),
/// WEFT_TIMEOUT, WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT.
///
/// # Safety
/// `future` must be NULL or a handle from weft; `status` writable; `message` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_future_exception(future: *mut weft_future, timeout_ns: u64, status: *mut weft_status, message: *mut *const c_char) -> weft_status {
    guard(|| {
        out_ptr(status, "status")?;
        // SAFETY: forwarded contract.
        let f = unsafe { fut(future) }?;
        f.exception(Deadline::from_timeout_ns(timeout_ns))?;
        let (code, text): (weft_status, &CStr) = f.failure().unwrap_or((crate::status::WEFT_OK, c""));
        // SAFETY: `status` checked non-null; `message` NULL or writable per the contract; the
        // text lives in the future's allocation (or is static).
        unsafe {
            status.write(code);
            if !message.is_null() {
                message.write(text.as_ptr());
            }
        }
        Ok(())
    })
}

/// Python's `add_done_callback`: `cb(future, ctx)` runs exactly once — at once, on the calling
/// thread, when the future is already finished (done, failed or cancelled); otherwise on the
/// thread that finishes it (the completer, the canceller), after the final state is visible to
/// every thread. Callbacks run in the order they were added, outside any weft lock, and may
/// call any weft function (including on this future), but should be short: they hold up the
/// completing thread. Errors: WEFT_NULL_ARGUMENT (`future` or `cb`), WEFT_INVALID_ARGUMENT.
///
/// # Safety
/// `future` must be NULL or a handle from weft; `cb` must be callable with `ctx` from any
/// thread until it has run.
#[no_mangle]
pub unsafe extern "C" fn weft_future_add_done_callback(future: *mut weft_future, cb: weft_future_callback, ctx: *mut c_void) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let f = unsafe { fut(future) }?;
        let cb = cb.ok_or_else(|| Error::new(WEFT_NULL_ARGUMENT, "cb is NULL"))?;
        let ctx = ctx as usize;
        f.add_done_callback(move |f| {
            // SAFETY: the caller promised `cb` is callable with `ctx`; the handle is borrowed
            // from the completing thread's reference for the duration of the call.
            unsafe { cb(f.as_raw().cast(), ctx as *mut c_void) }
        });
        Ok(())
    })
}

/// Writes a descriptor to `*fd` that becomes readable (POLLIN), and stays so, once the future
/// is finished, for epoll, libuv, GLib or asyncio. Created on the first call; owned by the
/// future (do not close it, do not read it) and closed when its last reference is freed.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT, WEFT_OS_ERROR.
///
/// # Safety
/// `future` must be NULL or a handle from weft; `fd` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_future_fd(future: *mut weft_future, fd: *mut c_int) -> weft_status {
    guard(|| {
        out_ptr(fd, "fd")?;
        // SAFETY: forwarded contract.
        let v = unsafe { fut(future) }?.fd()?;
        // SAFETY: checked non-null.
        unsafe { fd.write(v) };
        Ok(())
    })
}

fn mode(m: c_int) -> Result<Mode> {
    match m {
        WEFT_ALL_COMPLETED => Ok(Mode::AllCompleted),
        WEFT_FIRST_COMPLETED => Ok(Mode::FirstCompleted),
        WEFT_FIRST_EXCEPTION => Ok(Mode::FirstException),
        _ => Err(Error::invalid(format!(
            "mode {m} is not WEFT_ALL_COMPLETED, WEFT_FIRST_COMPLETED or WEFT_FIRST_EXCEPTION"
        ))),
    }
}

/// Python's `concurrent.futures.wait`: waits up to `timeout_ns` until `mode` holds for the `n`
/// futures of `fs` — WEFT_ALL_COMPLETED (all finished), WEFT_FIRST_COMPLETED (any finished) or
/// WEFT_FIRST_EXCEPTION (any failed, else all finished). Then `done[i]` (when `done` is not
/// NULL; room for `n`) tells whether `fs[i]` was finished (done, failed or cancelled) and
/// `*ndone` (when not NULL) how many were. Waiting sleeps until a completion satisfies the
/// mode (no polling). `fs` may be NULL when `n` is 0, which returns WEFT_OK at once; a future
/// may be given more than once. Timeout 0 checks once. On WEFT_TIMEOUT nothing is written: see
/// `weft_future_state` for which finished. Errors: WEFT_TIMEOUT, WEFT_CANCELLED (the calling
/// weft thread was asked to cancel), WEFT_NULL_ARGUMENT (`fs` NULL with n > 0, or a NULL
/// entry), WEFT_INVALID_ARGUMENT (bad mode or handle).
///
/// # Safety
/// `fs` must point at `n` handles from weft (or be NULL with n 0); `done` NULL or room for
/// `n` bools; `ndone` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_futures_wait(
    fs: *const *mut weft_future,
    n: usize,
    timeout_ns: u64,
    mode: c_int,
    done: *mut bool,
    ndone: *mut usize,
) -> weft_status {
    guard(|| {
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        let m = self::mode(mode)?;
        // SAFETY: forwarded contract.
        let v = unsafe { futures(fs, n) }?;
        let flags = future::wait(&v, m, deadline, Interrupt::Cancellable)?;
        // SAFETY: `done` has room for `n` bools and `ndone` is writable, when not NULL.
        unsafe {
            if !done.is_null() {
                for (i, &d) in flags.iter().enumerate() {
                    done.add(i).write(d);
                }
            }
            if !ndone.is_null() {
                ndone.write(flags.iter().filter(|&&d| d).count());
            }
        }
        Ok(())
    })
}

/// Python's `as_completed`: yields futures as they finish. Thread-safe: several threads may
/// take from one.
pub struct weft_as_completed {
    tag: Tag,
    ac: AsCompleted,
}

impl Object for weft_as_completed {
    const NAME: &'static str = "weft_as_completed";
    const MAGIC: u64 = 0x7765_6674_6173_636d;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// Starts watching the `n` futures of `fs` (taking references to them) in `*out`; free with
/// `weft_as_completed_free`. `weft_as_completed_next` gives first the futures already finished
/// now, in the order of `fs`, then the others as they finish. A future given twice is yielded
/// once. `fs` may be NULL when `n` is 0. Errors: WEFT_NULL_ARGUMENT (`out`, `fs` NULL with n > 0,
/// or a NULL entry), WEFT_INVALID_ARGUMENT (a bad handle).
///
/// # Safety
/// `fs` must point at `n` handles from weft (or be NULL with n 0); `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_as_completed_new(fs: *const *mut weft_future, n: usize, out: *mut *mut weft_as_completed) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let v = unsafe { futures(fs, n) }?;
        publish(weft_as_completed { tag: Tag::of::<weft_as_completed>(), ac: AsCompleted::new(&v) }, out)
    })
}

/// The next finished future in `*out` (a new reference: free it with `weft_future_free`),
/// waiting up to `timeout_ns` (0 checks once, WEFT_FOREVER waits). Errors: WEFT_CLOSED (every
/// future was yielded), WEFT_TIMEOUT (none finished in time), WEFT_CANCELLED (the calling weft
/// thread was asked to cancel), WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT.
///
/// # Safety
/// `ac` must be NULL or a handle from weft; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_as_completed_next(ac: *mut weft_as_completed, timeout_ns: u64, out: *mut *mut weft_future) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        // SAFETY: forwarded contract.
        let f = unsafe { get(ac) }?.ac.next(deadline, Interrupt::Cancellable)?;
        // SAFETY: checked non-null.
        unsafe { out.write(f.into_raw().cast()) };
        Ok(())
    })
}

/// Frees the iterator and its references to the futures (the futures themselves are not
/// affected). NULL is a no-op.
///
/// # Safety
/// `ac` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_as_completed_free(ac: *mut weft_as_completed) {
    // SAFETY: forwarded contract.
    unsafe { super::free(ac) }
}

/// A task group (asyncio's `TaskGroup`, for futures): the first member that fails cancels every
/// other member — pending ones at once, running ones by a cancel request — and every member
/// added later; `weft_group_wait` waits for all and reports that first failure. A cancelled
/// member is not a failure. Thread-safe.
pub struct weft_group {
    tag: Tag,
    group: Group,
}

impl Object for weft_group {
    const NAME: &'static str = "weft_group";
    const MAGIC: u64 = 0x7765_6674_6772_7570;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// Creates an empty group in `*out` (free with `weft_group_free`). Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_group_new(out: *mut *mut weft_group) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        publish(weft_group { tag: Tag::of::<weft_group>(), group: Group::new() }, out)
    })
}

/// Adds `future` to the group (the group takes its own reference until the future finishes;
/// the caller keeps its own). A member already failed when added counts as the group's failure
/// if it is the first; after a failure or `weft_group_cancel` the new member is cancelled at
/// once. Adding an unfinished member again does nothing. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_INVALID_ARGUMENT.
///
/// # Safety
/// `group` and `future` must be NULL or handles from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_group_add(group: *mut weft_group, future: *mut weft_future) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (g, f) = unsafe { (get(group)?, fut(future)?) };
        g.group.add(&f);
        Ok(())
    })
}

/// Waits up to `timeout_ns` until every member has finished, then returns WEFT_OK, or the
/// first failure's own status with its message in `weft_last_error_message`, or WEFT_CANCELLED
/// when the group was cancelled and no member failed. Timeout 0 checks once. Errors besides:
/// WEFT_TIMEOUT (members still unfinished), WEFT_CANCELLED (also: the calling weft thread was
/// asked to cancel), WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT.
///
/// # Safety
/// `group` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_group_wait(group: *mut weft_group, timeout_ns: u64) -> weft_status {
    guard(|| {
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        // SAFETY: forwarded contract.
        unsafe { get(group) }?.group.wait(deadline, Interrupt::Cancellable)
    })
}

/// Cancels every unfinished member (running ones receive a cancel request) and every member
/// added later; `weft_group_wait` then returns WEFT_CANCELLED unless a member failed. Errors:
/// WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT.
///
/// # Safety
/// `group` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_group_cancel(group: *mut weft_group) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe { get(group) }?.group.cancel();
        Ok(())
    })
}

/// Frees the group handle. Unfinished members are not cancelled and keep running; the group's
/// references to them are given back. NULL is a no-op.
///
/// # Safety
/// `group` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_group_free(group: *mut weft_group) {
    // SAFETY: forwarded contract.
    unsafe { super::free(group) }
}
