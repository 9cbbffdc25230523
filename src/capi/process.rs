//! Processes (`weft_process_*`): Python's `multiprocessing.Process` for C tasks, and the
//! current process (`weft_process_current_*`, `weft_cpu_count`).

use super::call::weft_task_fn;
use super::status::weft_bytes;
use super::{get, out_ptr, publish, Object, Tag};
use crate::process::{self, current, Process, StartMethod};
use crate::status::{guard, guard_value, weft_status, Error, WEFT_INVALID_ARGUMENT, WEFT_NULL_ARGUMENT,
    WEFT_WOULD_BLOCK};
use crate::time::Deadline;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// Start method: the process-wide default (forkserver unless `weft_process_set_start_method`
/// changed it).
pub const WEFT_START_DEFAULT: u32 = 0;
/// Start method fork: the child is a copy of the parent and calls the task pointer directly.
/// Fast, and the child sees the parent's memory; unsafe when the parent has other threads
/// (locks they hold stay held in the child), which weft detects and reports through the
/// warning hook (`weft_set_warning_hook`).
pub const WEFT_START_FORK: u32 = 1;
/// Start method forkserver (the default): a single-threaded server process, started on first
/// use as a fresh image of the program, forks each child. Safe in threaded programs. The task
/// is found again by its library and symbol (or its offset in the executable), so it must be a
/// function of a loaded object, and it sees only its argument bytes, passed descriptors and
/// shared objects — not the parent's memory.
pub const WEFT_START_FORKSERVER: u32 = 2;
/// Start method spawn: a fresh image of the program for each child (its `main` never runs;
/// weft takes over at load time). Slowest; the task is found as for forkserver.
pub const WEFT_START_SPAWN: u32 = 3;

/// A child process. Thread-safe: any thread may join, poll or signal it. Free with
/// `weft_process_free`.
pub struct weft_process {
    tag: Tag,
    process: Arc<Process>,
}

impl Object for weft_process {
    const NAME: &'static str = "weft_process";
    const MAGIC: u64 = 0x7765_6674_7072_6f63;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// Options for `weft_process_start`. Zero-initialise (`weft_process_options o = {0};`) and set
/// what you need; NULL options mean all defaults.
#[repr(C)]
pub struct weft_process_options {
    /// Process name (copied, UTF-8), or NULL for Python's default `"Process-N"` (`"Process-1:2"`
    /// for the second child of process 1).
    pub name: *const c_char,
    /// `WEFT_START_*`; 0 is the default method.
    pub start_method: u32,
    /// A daemon child is killed (SIGKILL) when this process ends, however it ends — exit,
    /// crash or SIGKILL — through a lifeline the kernel signals, not `PR_SET_PDEATHSIG`.
    pub daemon: bool,
    /// Descriptors to pass to the child, or NULL. The task reads them with `weft_call_fd`, in
    /// this order (numbered as in the child; close-on-exec there unless the task changes it).
    /// They stay open here. Pass a `weft_connection_fd` to hand a connection to the child.
    pub fds: *const i32,
    /// Number of entries of `fds` (at most 200).
    pub fd_count: usize,
    /// Reserved for future options; must be zero.
    pub reserved: [u64; 4],
}

/// Starts `task` in a new child process with a copy of `arg[0..arg_len]` as its argument. The
/// child runs the task, sends its result bytes (or failure message) to the parent, and exits
/// with code 0 (the task returned WEFT_OK) or 1. On success `*out` receives a handle (free it
/// with `weft_process_free`). The objects of the default space (`weft_space_default`) are
/// shared with the child for every start method; named spaces can be opened by name.
/// Errors: WEFT_NULL_ARGUMENT (`task`, `out`, `arg` NULL with arg_len > 0, `fds` NULL with a
/// count), WEFT_INVALID_ARGUMENT (bad options, a descriptor that is not open, a task that is not
/// in a loaded object with forkserver/spawn), WEFT_OS_ERROR (fork, spawn or the server failed),
/// WEFT_NO_MEMORY.
///
/// # Safety
/// Pointers must be valid as described; `options` NULL or a valid struct.
#[no_mangle]
pub unsafe extern "C" fn weft_process_start(
    task: weft_task_fn,
    arg: *const c_void,
    arg_len: usize,
    options: *const weft_process_options,
    out: *mut *mut weft_process,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        let f = task.ok_or_else(|| Error::new(WEFT_NULL_ARGUMENT, "task is NULL"))?;
        // SAFETY: forwarded contract.
        unsafe { start_task(f, arg, arg_len, options, out) }
    })
}

/// Like `weft_process_start` for a task named by `symbol` in the shared library `library`
/// (loaded if needed; NULL searches the program and the libraries loaded with it). For callers
/// that hold a name rather than a pointer (bindings).
/// Errors: those of `weft_process_start`, WEFT_NOT_FOUND (no such library or symbol).
///
/// # Safety
/// `library` NULL or NUL-terminated; `symbol` NUL-terminated; the rest as for
/// `weft_process_start`. The symbol must be a `weft_task_fn`.
#[no_mangle]
pub unsafe extern "C" fn weft_process_start_symbol(
    library: *const c_char,
    symbol: *const c_char,
    arg: *const c_void,
    arg_len: usize,
    options: *const weft_process_options,
    out: *mut *mut weft_process,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let library = unsafe { super::opt_str(library, "library") }?;
        // SAFETY: forwarded contract.
        let symbol = unsafe { super::opt_str(symbol, "symbol") }?.ok_or_else(|| Error::new(WEFT_NULL_ARGUMENT, "symbol is NULL"))?;
        let addr = process::target::lookup(library.as_deref(), &symbol)?;
        // SAFETY: the caller promises the symbol is a weft_task_fn.
        let f: process::child::TaskFn = unsafe { std::mem::transmute::<usize, process::child::TaskFn>(addr) };
        // SAFETY: forwarded contract.
        unsafe { start_task(f, arg, arg_len, options, out) }
    })
}

/// The common tail of the two start functions.
///
/// # Safety
/// As for `weft_process_start`; `out` already checked.
unsafe fn start_task(
    f: process::child::TaskFn,
    arg: *const c_void,
    arg_len: usize,
    options: *const weft_process_options,
    out: *mut *mut weft_process,
) -> crate::status::Result<()> {
    // SAFETY: forwarded contract.
    let arg = unsafe { super::bytes(arg, arg_len, "arg") }?;
    // SAFETY: forwarded contract.
    let opts = unsafe { read_options(options) }?;
    let p = process::start(f, arg, &opts)?;
    publish(weft_process { tag: Tag::of::<weft_process>(), process: p }, out)
}

/// The start method for a `WEFT_START_*` constant (`WEFT_START_DEFAULT`: the process-wide
/// default). Errors: WEFT_INVALID_ARGUMENT.
pub(crate) fn start_method(code: u32) -> crate::status::Result<StartMethod> {
    match code {
        WEFT_START_DEFAULT => Ok(StartMethod::default_method()),
        WEFT_START_FORK => Ok(StartMethod::Fork),
        WEFT_START_FORKSERVER => Ok(StartMethod::ForkServer),
        WEFT_START_SPAWN => Ok(StartMethod::Spawn),
        m => Err(Error::invalid(format!("unknown start method {m}"))),
    }
}

/// # Safety
/// `options` NULL or a valid struct whose pointers are valid.
unsafe fn read_options(options: *const weft_process_options) -> crate::status::Result<process::Options> {
    let mut opts = process::Options::default();
    if options.is_null() {
        return Ok(opts);
    }
    // SAFETY: non-null options point at a valid struct per the contract.
    let o = unsafe { &*options };
    if o.reserved.iter().any(|&r| r != 0) {
        return Err(Error::invalid("weft_process_options.reserved must be zero"));
    }
    // SAFETY: forwarded contract.
    opts.name = unsafe { super::opt_str(o.name, "options.name") }?;
    opts.method = (o.start_method != WEFT_START_DEFAULT).then(|| start_method(o.start_method)).transpose()?;
    opts.daemon = o.daemon;
    if o.fd_count > 200 {
        return Err(Error::invalid(format!("at most 200 descriptors may be passed, got {}", o.fd_count)));
    }
    if o.fd_count > 0 {
        if o.fds.is_null() {
            return Err(Error::new(WEFT_NULL_ARGUMENT, "options.fds is NULL with a non-zero fd_count"));
        }
        // SAFETY: `fds` points at `fd_count` ints per the contract.
        opts.fds = unsafe { std::slice::from_raw_parts(o.fds, o.fd_count) }.to_vec();
    }
    Ok(opts)
}

/// Waits until the process has ended and is reaped. Returns WEFT_OK when its task succeeded,
/// with `*result` (if `result` is not NULL) receiving the result bytes (free with
/// `weft_bytes_free`); WEFT_TASK_FAILED when the task failed (`weft_last_error_message` gives
/// its status and message, `weft_process_task_status` its status); WEFT_WORKER_DIED when the
/// process ended without reporting — it exited on its own with a non-zero status, or a signal
/// killed it (see `weft_process_exitcode`). Exit status 0 is success, as in Python: a task
/// that ends its process with `exit(0)` counts as having returned WEFT_OK with an empty result
/// (a task returning WEFT_OK with no result sends nothing, so that the parent is woken once,
/// by the exit). Blocks up to `timeout_ns` (0 polls, WEFT_FOREVER waits); a weft
/// thread asked to cancel stops waiting. Several threads may join one process; a joined process
/// is never left a zombie. Errors besides those: WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK
/// (timeout 0, still running), WEFT_TIMEOUT, WEFT_CANCELLED.
///
/// # Safety
/// `process` must be NULL or a handle from weft; `result` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_process_join(process: *mut weft_process, timeout_ns: u64, result: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let p = unsafe { get(process) }?;
        p.process.wait(Deadline::from_timeout_ns(timeout_ns))?;
        super::call::give_outcome(p.process.result()?, result)
    })
}

/// The status the process's task returned (WEFT_OK for success) in `*status`.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE (still running), WEFT_WORKER_DIED (the
/// process ended without reporting).
///
/// # Safety
/// `process` must be NULL or a handle from weft; `status` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_process_task_status(process: *const weft_process, status: *mut weft_status) -> weft_status {
    guard(|| {
        out_ptr(status, "status")?;
        // SAFETY: forwarded contract.
        let p = unsafe { get(process) }?;
        let o = p.process.result()?;
        // SAFETY: checked non-null.
        unsafe { status.write(o.status) };
        Ok(())
    })
}

/// The process's exit code in `*code` (Python's `exitcode`): its exit status, or minus the
/// signal that ended it (-9 for SIGKILL, -15 for SIGTERM). Reaps a process that has just ended.
/// Errors: WEFT_NULL_ARGUMENT; WEFT_WOULD_BLOCK while it runs (Python's None); WEFT_OS_ERROR
/// with errno ECHILD when other code in this process collected the exit status first (its own
/// `waitpid(-1)`, or SIGCHLD set to SIG_IGN) — weft never invents a code; the task's result,
/// which travels separately, is still available from `weft_process_join`.
///
/// # Safety
/// `process` must be NULL or a handle from weft; `code` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_process_exitcode(process: *const weft_process, code: *mut i32) -> weft_status {
    guard(|| {
        out_ptr(code, "code")?;
        // SAFETY: forwarded contract.
        let p = unsafe { get(process) }?;
        let s = p.process.exit_status()?.ok_or_else(|| Error::new(WEFT_WOULD_BLOCK, "the process is still running"))?;
        // SAFETY: checked non-null.
        unsafe { code.write(s.exitcode()) };
        Ok(())
    })
}

/// True while the process runs; false once it ended (it is reaped then), and for NULL or an
/// invalid handle.
///
/// # Safety
/// `process` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_process_is_alive(process: *const weft_process) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(process) }.is_ok_and(|p| p.process.is_alive()))
}

/// The process id; 0 for NULL or an invalid handle.
///
/// # Safety
/// `process` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_process_pid(process: *const weft_process) -> i32 {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(process) }.map_or(0, |p| p.process.pid()))
}

/// A pidfd of the process (Python's `sentinel`): becomes readable when the process ends, for
/// poll/epoll/libuv. Owned by the handle (do not close it); -1 for NULL or an invalid handle.
///
/// # Safety
/// `process` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_process_fd(process: *const weft_process) -> i32 {
    // SAFETY: forwarded contract.
    guard_value(-1, || unsafe { get(process) }.map_or(-1, |p| p.process.pidfd()))
}

/// The process's name (NUL-terminated UTF-8), valid while the handle lives; NULL for NULL or an
/// invalid handle.
///
/// # Safety
/// `process` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_process_name(process: *const weft_process) -> *const c_char {
    // SAFETY: forwarded contract.
    guard_value(std::ptr::null(), || unsafe { get(process) }.map_or(std::ptr::null(), |p| p.process.name().as_ptr()))
}

/// True for a daemon process; false for NULL or an invalid handle.
///
/// # Safety
/// `process` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_process_is_daemon(process: *const weft_process) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(process) }.is_ok_and(|p| p.process.daemon()))
}

/// The start method the process was started with (`WEFT_START_FORK`, `_FORKSERVER`, `_SPAWN`);
/// 0 for NULL or an invalid handle.
///
/// # Safety
/// `process` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_process_start_method(process: *const weft_process) -> u32 {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(process) }.map_or(0, |p| method_code(p.process.method())))
}

fn method_code(m: StartMethod) -> u32 {
    match m {
        StartMethod::Fork => WEFT_START_FORK,
        StartMethod::ForkServer => WEFT_START_FORKSERVER,
        StartMethod::Spawn => WEFT_START_SPAWN,
    }
}

/// Sends signal `sig` to the process (through its pidfd, so never to a reused pid). A process
/// that already ended is not an error. Errors: WEFT_NULL_ARGUMENT, WEFT_OS_ERROR (EINVAL for a
/// bad signal number).
///
/// # Safety
/// `process` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_process_send_signal(process: *mut weft_process, sig: i32) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(process) }?.process.signal(sig))
}

/// Asks the process to end with SIGTERM (Python's `terminate`). Its exit code becomes -15
/// unless it handles the signal. See `weft_process_send_signal`.
///
/// # Safety
/// `process` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_process_terminate(process: *mut weft_process) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(process) }?.process.signal(libc::SIGTERM))
}

/// Ends the process with SIGKILL (Python's `kill`); its exit code becomes -9.
///
/// # Safety
/// `process` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_process_kill(process: *mut weft_process) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(process) }?.process.signal(libc::SIGKILL))
}

/// Releases the resources of a process that has ended (Python's `close`); the handle stays
/// valid for its name, pid and exit code. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE (still
/// running: join it first).
///
/// # Safety
/// `process` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_process_close(process: *mut weft_process) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(process) }?.process.close())
}

/// Frees a process handle; NULL is a no-op. Freeing does not stop the process. A process
/// freed while it runs is detached: it keeps running, and weft reaps it after it ends (checked
/// at every later process start and handle free), so it is not left a zombie for long. A daemon
/// still dies with this process.
///
/// # Safety
/// `process` must be NULL or a handle from weft, not used after this call.
#[no_mangle]
pub unsafe extern "C" fn weft_process_free(process: *mut weft_process) {
    // SAFETY: forwarded contract.
    unsafe { super::free(process) }
}

/// Sets the process-wide default start method (`WEFT_START_FORK`, `_FORKSERVER` or `_SPAWN`;
/// Python's `set_start_method`). Errors: WEFT_INVALID_ARGUMENT for anything else.
#[no_mangle]
pub extern "C" fn weft_process_set_start_method(method: u32) -> weft_status {
    guard(|| {
        let m = match method {
            WEFT_START_FORK => StartMethod::Fork,
            WEFT_START_FORKSERVER => StartMethod::ForkServer,
            WEFT_START_SPAWN => StartMethod::Spawn,
            m => return Err(Error::new(WEFT_INVALID_ARGUMENT, format!("unknown start method {m}"))),
        };
        StartMethod::set_default(m);
        Ok(())
    })
}

/// The process-wide default start method (`WEFT_START_FORKSERVER` unless changed).
#[no_mangle]
pub extern "C" fn weft_process_get_start_method() -> u32 {
    guard_value(WEFT_START_FORKSERVER, || method_code(StartMethod::default_method()))
}

/// The calling process's id (`getpid`).
#[no_mangle]
pub extern "C" fn weft_process_current_pid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// The id of the process that started this one through weft (Python's `parent_process().pid`;
/// for a forkserver child, the process that asked, not the server), else `getppid()`.
#[no_mangle]
pub extern "C" fn weft_process_parent_pid() -> i32 {
    guard_value(0, current::parent_pid)
}

/// The calling process's name: `"MainProcess"`, or the name its weft parent gave it
/// (NUL-terminated, static for the life of the process). Never NULL.
#[no_mangle]
pub extern "C" fn weft_process_current_name() -> *const c_char {
    guard_value(c"MainProcess".as_ptr(), || current::name().as_ptr())
}

/// The number of CPUs this process may use (Python 3.13's `process_cpu_count`): the CPUs of
/// its affinity mask, further limited by a cgroup v2 CPU quota (rounded up); at least 1.
#[no_mangle]
pub extern "C" fn weft_cpu_count() -> u32 {
    guard_value(1, current::cpu_count)
}

/// Receives weft's warnings (such as forking a process that has other threads): `hook(message,
/// user)` is called on the thread that triggered the warning. NULL silences warnings. By
/// default the first warning is printed to stderr. Thread-safe.
pub type weft_warning_fn = Option<unsafe extern "C" fn(message: *const c_char, user: *mut c_void)>;

/// Installs the warning hook (see `weft_warning_fn`); `hook` NULL silences warnings.
///
/// # Safety
/// `hook` must stay callable, and `user` valid for it, until replaced.
#[no_mangle]
pub unsafe extern "C" fn weft_set_warning_hook(hook: weft_warning_fn, user: *mut c_void) {
    struct User(*mut c_void);
    // SAFETY: the caller promises `user` may be used from any thread by its hook.
    unsafe impl Send for User {}
    // SAFETY: as above.
    unsafe impl Sync for User {}
    let user = User(user);
    guard_value((), || match hook {
        None => process::warn::set_hook(None),
        Some(f) => process::warn::set_hook(Some(Box::new(move |text: &str| {
            let c = std::ffi::CString::new(text.replace('\0', "?")).unwrap_or_default();
            let u = &user;
            // SAFETY: the caller's hook with its own user pointer and a NUL-terminated message
            // valid for the call.
            unsafe { f(c.as_ptr(), u.0) }
        }))),
    })
}
