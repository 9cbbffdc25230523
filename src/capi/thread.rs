//! Threads: start, join, identity, enumeration, cancellation, the failure hook, shutdown.

use super::call::{run_c_task, weft_task_fn};
use super::status::weft_bytes;
use super::{get, in_ptr, out_ptr, publish, Object, Tag};
use crate::futex::Interrupt;
use crate::status::{guard, guard_value, weft_status, Error, WEFT_BUFFER_TOO_SMALL, WEFT_INVALID_ARGUMENT,
    WEFT_INVALID_STATE, WEFT_NULL_ARGUMENT};
use crate::thread::{self, Thread};
use crate::time::Deadline;
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

/// A handle to a thread (one started by weft, the main thread, or another thread that asked for
/// its own record). Several handles may refer to one thread; each is freed with
/// `weft_thread_free`. Thread-safe: any thread may use a handle.
pub struct weft_thread {
    tag: Tag,
    thread: Arc<Thread>,
}

impl Object for weft_thread {
    const NAME: &'static str = "weft_thread";
    const MAGIC: u64 = 0x7765_6674_7468_7264;
    fn tag(&self) -> &Tag {
        &self.tag
    }
    fn on_free(&self) {
        self.thread.release_handle();
    }
}

fn give(t: Arc<Thread>, out: *mut *mut weft_thread) -> crate::status::Result<()> {
    t.retain_handle();
    publish(weft_thread { tag: Tag::of::<weft_thread>(), thread: t }, out)
}

/// Options for `weft_thread_start`. Zero-initialise (`weft_thread_options o = {0};`) and set
/// what you need; NULL options mean all defaults.
#[repr(C)]
pub struct weft_thread_options {
    /// Thread name (copied, UTF-8), or NULL for Python's default `"Thread-N"`. A given name is
    /// also the OS thread name (`/proc/<pid>/task/<tid>/comm`), which the kernel truncates to
    /// 15 bytes; weft cuts at a UTF-8 character boundary. `weft_thread_name` keeps it whole.
    pub name: *const c_char,
    /// Daemon threads are not joined by `weft_shutdown` nor at process exit. Default false
    /// (unlike Python, the flag is not inherited from the creating thread).
    pub daemon: bool,
    /// Stack size in bytes; 0 for the system default. Smaller than PTHREAD_STACK_MIN (16 KiB
    /// on Linux) gives WEFT_INVALID_ARGUMENT.
    pub stack_size: usize,
    /// Reserved for future options; must be zero.
    pub reserved: [u64; 4],
}

/// Starts `task` on a new thread with a copy of `arg[0..arg_len]` as its argument. On success
/// `*out` receives a handle (free it with `weft_thread_free`; freeing does not stop the
/// thread). By the time this returns the thread is counted by `weft_thread_active_count`.
/// Errors: WEFT_NULL_ARGUMENT (`task`, `out`, or `arg` NULL with arg_len > 0),
/// WEFT_INVALID_ARGUMENT (bad options), WEFT_CLOSED (after `weft_shutdown`), WEFT_OS_ERROR.
///
/// # Safety
/// Pointers must be valid as described; `options` NULL or a valid struct.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_start(
    task: weft_task_fn,
    arg: *const c_void,
    arg_len: usize,
    options: *const weft_thread_options,
    out: *mut *mut weft_thread,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        let f = task.ok_or_else(|| Error::new(WEFT_NULL_ARGUMENT, "task is NULL"))?;
        // SAFETY: forwarded contract.
        let arg = unsafe { super::bytes(arg, arg_len, "arg") }?;
        let mut opts = thread::Options::default();
        if !options.is_null() {
            // SAFETY: non-null options point at a valid struct per the contract.
            let o = unsafe { &*options };
            if o.reserved.iter().any(|&r| r != 0) {
                return Err(Error::new(WEFT_INVALID_ARGUMENT, "weft_thread_options.reserved must be zero"));
            }
            // SAFETY: forwarded contract.
            opts.name = unsafe { super::opt_str(o.name, "options.name") }?;
            opts.daemon = o.daemon;
            opts.stack_size = o.stack_size;
        }
        let t = thread::spawn(Box::new(move |call| run_c_task(f, call)), arg, &opts)?;
        // `spawn` already counted this handle.
        publish(weft_thread { tag: Tag::of::<weft_thread>(), thread: t }, out)
    })
}

/// Waits until the thread finishes. Returns WEFT_OK when its task succeeded, with `*result`
/// (if `result` is not NULL) receiving its result bytes (free with `weft_bytes_free`);
/// WEFT_TASK_FAILED when the task failed — `weft_last_error_message` gives its status and
/// message, `weft_thread_task_status` its status. Blocks up to `timeout_ns` (0 polls,
/// WEFT_FOREVER waits); a weft thread that is asked to cancel stops waiting. Several threads
/// may join one thread. Errors: WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK (timeout 0, still
/// running), WEFT_TIMEOUT, WEFT_CANCELLED, WEFT_INVALID_STATE (joining the calling thread).
///
/// # Safety
/// `thread` must be NULL or a handle from weft; `result` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_join(thread: *mut weft_thread, timeout_ns: u64, result: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let t = unsafe { get(thread) }?;
        t.thread.join(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable)?;
        super::call::give_outcome(t.thread.outcome().unwrap_or_default(), result)
    })
}

/// The status the finished thread's task returned (WEFT_OK for success) in `*status`.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE (still running).
///
/// # Safety
/// `thread` must be NULL or a handle from weft; `status` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_task_status(thread: *const weft_thread, status: *mut weft_status) -> weft_status {
    guard(|| {
        out_ptr(status, "status")?;
        // SAFETY: forwarded contract.
        let t = unsafe { get(thread) }?;
        let o = t.thread.outcome().ok_or_else(|| Error::new(WEFT_INVALID_STATE, "the thread is still running"))?;
        // SAFETY: checked non-null.
        unsafe { status.write(o.status) };
        Ok(())
    })
}

/// True while the thread runs (from start until its task returned and its thread-locals were
/// destroyed); always true for the main thread. False for NULL or an invalid handle.
///
/// # Safety
/// `thread` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_is_alive(thread: *const weft_thread) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(thread) }.is_ok_and(|t| t.thread.is_alive()))
}

/// True for a daemon thread. False for NULL or an invalid handle.
///
/// # Safety
/// `thread` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_is_daemon(thread: *const weft_thread) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(thread) }.is_ok_and(|t| t.thread.daemon()))
}

/// weft's identifier of the thread (Python's `ident`): unique in the process and never
/// reused, even after the thread ends. 0 for NULL or an invalid handle.
///
/// # Safety
/// `thread` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_ident(thread: *const weft_thread) -> u64 {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(thread) }.map_or(0, |t| t.thread.ident()))
}

/// The kernel thread id (Python's `native_id`, `gettid()`), in `*tid`. Waits for a thread that
/// has just been started to publish it (microseconds). Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `thread` must be NULL or a handle from weft; `tid` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_native_id(thread: *const weft_thread, tid: *mut u32) -> weft_status {
    guard(|| {
        out_ptr(tid, "tid")?;
        // SAFETY: forwarded contract.
        let t = unsafe { get(thread) }?;
        let v = t.thread.native_id();
        // SAFETY: checked non-null.
        unsafe { tid.write(v) };
        Ok(())
    })
}

/// The thread's full name (NUL-terminated UTF-8), valid while the handle lives. NULL for NULL
/// or an invalid handle.
///
/// # Safety
/// `thread` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_name(thread: *const weft_thread) -> *const c_char {
    // SAFETY: forwarded contract.
    guard_value(std::ptr::null(), || unsafe { get(thread) }.map_or(std::ptr::null(), |t| t.thread.name().as_ptr()))
}

/// Asks a weft thread to cancel: its `weft_call_cancelled` becomes true, and any weft wait it
/// is in or enters later (lock, condition, event, semaphore, barrier, join) returns
/// WEFT_CANCELLED. Non-blocking attempts that succeed at once still succeed. The request
/// cannot be withdrawn. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (not a thread weft
/// started).
///
/// # Safety
/// `thread` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_cancel(thread: *mut weft_thread) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(thread) }?.thread.cancel())
}

/// A new handle to the calling thread (Python's `current_thread()`): its weft record, the
/// main thread's, or — for a thread weft did not start — a record named "Dummy-N" that is
/// alive until that thread exits. Free with `weft_thread_free`. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_current(out: *mut *mut weft_thread) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        give(thread::current(), out)
    })
}

/// A new handle to the process's main thread (Python's `main_thread()`), named "MainThread".
/// Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_main(out: *mut *mut weft_thread) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        give(thread::main_thread(), out)
    })
}

/// Number of live threads weft knows (Python's `active_count()`): the main thread, every
/// running weft thread, and foreign threads that asked for their record.
#[no_mangle]
pub extern "C" fn weft_thread_active_count() -> usize {
    guard_value(0, thread::active_count)
}

/// Lists the live threads (Python's `enumerate()`), main thread first. Up to `capacity` new
/// handles are written to `out[0..]` (each to be freed with `weft_thread_free`) and `*count`
/// receives the total number of live threads. When `capacity` is smaller than the total, the
/// first `capacity` are written and WEFT_BUFFER_TOO_SMALL is returned (`*count` still holds
/// the total). `out` may be NULL when `capacity` is 0. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_BUFFER_TOO_SMALL.
///
/// # Safety
/// `out` must have room for `capacity` pointers; `count` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_enumerate(out: *mut *mut weft_thread, capacity: usize, count: *mut usize) -> weft_status {
    guard(|| {
        out_ptr(count, "count")?;
        if capacity > 0 {
            in_ptr(out, "out")?;
        }
        let all = thread::enumerate();
        let n = all.len();
        for (i, t) in all.into_iter().take(capacity).enumerate() {
            // SAFETY: `out` has room for `capacity` pointers per the contract; i < capacity.
            give(t, unsafe { out.add(i) })?;
        }
        // SAFETY: checked non-null.
        unsafe { count.write(n) };
        if capacity < n {
            return Err(Error::new(WEFT_BUFFER_TOO_SMALL, format!("{n} threads are alive; capacity is {capacity}")));
        }
        Ok(())
    })
}

/// Frees a handle. The thread keeps running; when a failed thread's last handle is freed
/// before anybody joined it, the failure hook reports it. NULL is a no-op.
///
/// # Safety
/// `thread` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_free(thread: *mut weft_thread) {
    // SAFETY: forwarded contract.
    unsafe { super::free(thread) }
}

/// Hook for failed tasks that nobody joins (Python's `threading.excepthook`). `thread` is a
/// handle borrowed for the call, `message` the task's failure message, `ctx` the pointer given
/// to `weft_thread_set_failure_hook`.
pub type weft_failure_hook =
    Option<unsafe extern "C" fn(thread: *const weft_thread, status: weft_status, message: *const c_char, ctx: *mut c_void)>;

/// Installs the process-wide failure hook; NULL restores the default, which prints
/// `Exception in thread NAME: STATUS: message` to stderr. A failure is reported once: when the
/// thread ends if no handle to it remains, or when its last handle is freed without a join.
/// The hook runs on that thread and must be thread-safe. Always WEFT_OK.
///
/// # Safety
/// `hook` must be callable from any thread with `ctx` until replaced.
#[no_mangle]
pub unsafe extern "C" fn weft_thread_set_failure_hook(hook: weft_failure_hook, ctx: *mut c_void) -> weft_status {
    guard(|| {
        let ctx = ctx as usize;
        thread::hook::set(hook.map(|h| {
            Arc::new(move |t: &Arc<Thread>, o: &crate::call::Outcome| {
                let handle = weft_thread { tag: Tag::of::<weft_thread>(), thread: t.clone() };
                let msg = CString::new(o.message.replace('\0', "")).unwrap_or_default();
                // SAFETY: the caller promised `h` is callable with `ctx`; the handle and the
                // message live until it returns.
                unsafe { h(&handle, o.status, msg.as_ptr(), ctx as *mut c_void) };
            }) as thread::hook::Hook
        }));
        Ok(())
    })
}

/// Joins every live non-daemon weft thread (other than the caller), as Python does at exit,
/// waiting up to `timeout_ns`. Afterwards new threads cannot start (WEFT_CLOSED). weft also
/// does this by itself when the process calls `exit()` (or returns from `main`), with no
/// timeout; daemon threads simply end with the process. Errors: WEFT_TIMEOUT (some threads
/// still run), WEFT_WOULD_BLOCK (timeout 0), WEFT_CANCELLED.
#[no_mangle]
pub extern "C" fn weft_shutdown(timeout_ns: u64) -> weft_status {
    guard(|| thread::shutdown(Deadline::from_timeout_ns(timeout_ns)))
}
