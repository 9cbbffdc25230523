//! Commands (`weft_command_*`): Python's `subprocess` — `Popen`, `communicate`, `run`.

use super::status::{give_bytes, weft_bytes};
use super::{get, in_ptr, out_ptr, publish, Object, Tag};
use crate::command::{self, Child, Stdio};
use crate::status::{guard, guard_value, weft_status, Error, Result, WEFT_INVALID_ARGUMENT};
use crate::time::Deadline;
use std::ffi::{c_char, c_int, c_void, CStr, CString};

/// Stream mode: the child uses this process's stream (the default).
pub const WEFT_STDIO_INHERIT: u32 = 0;
/// Stream mode: a pipe to this process (`weft_command_communicate`, or the descriptor from
/// `weft_command_stdin_fd` / `_stdout_fd` / `_stderr_fd`).
pub const WEFT_STDIO_PIPE: u32 = 1;
/// Stream mode: `/dev/null`.
pub const WEFT_STDIO_NULL: u32 = 2;
/// Stream mode: a copy of the caller's descriptor in `stdin_fd` / `stdout_fd` / `stderr_fd`.
pub const WEFT_STDIO_FD: u32 = 3;
/// Stream mode, stderr only: wherever stdout goes (`2>&1`, Python's `subprocess.STDOUT`).
pub const WEFT_STDIO_STDOUT: u32 = 4;

/// Flag of `weft_command_run`: a non-zero return code is an error (Python's `check=True`).
pub const WEFT_RUN_CHECK: u32 = 1;

/// A started program (Python's `Popen`). Created by `weft_command_start`, freed with
/// `weft_command_free`. Thread-safe: several threads may wait for it (each sees the return
/// code), poll it, signal it and read its descriptors; one thread at a time may
/// communicate with it (a second gets WEFT_INVALID_STATE).
///
/// The child is tracked by a pidfd: weft installs no SIGCHLD handler and never calls
/// `waitpid(-1)`. Code that collects children itself (`waitpid(-1)`, a SIGCHLD handler,
/// SIGCHLD set to SIG_IGN) takes the exit status away from weft: the wait functions then
/// return WEFT_OS_ERROR with errno ECHILD and say so, never a made-up return code.
///
/// Return codes follow Python: the exit code, or minus the signal number that ended the
/// child (-9 after `weft_command_kill`).
pub struct weft_command {
    tag: Tag,
    child: Child,
}

impl Object for weft_command {
    const NAME: &'static str = "weft_command";
    const MAGIC: u64 = 0x7765_6674_636d_6e64;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// How to start a program. Zero-initialise (`weft_command_options o = {0};`) and set what you
/// need; NULL options mean all defaults (inherit everything).
#[repr(C)]
pub struct weft_command_options {
    /// The child's whole environment: a NULL-terminated array of `"KEY=VALUE"` strings
    /// (copied), or NULL to inherit this process's. A program name without `/` is searched
    /// in the `PATH` of this environment (`/bin:/usr/bin` when it has none).
    pub env: *const *const c_char,
    /// Working directory of the child (copied), or NULL for this process's. A relative
    /// program path is resolved in it.
    pub cwd: *const c_char,
    /// WEFT_STDIO_INHERIT, _PIPE, _NULL or _FD.
    pub stdin_mode: u32,
    /// WEFT_STDIO_INHERIT, _PIPE, _NULL or _FD.
    pub stdout_mode: u32,
    /// WEFT_STDIO_INHERIT, _PIPE, _NULL, _FD or _STDOUT.
    pub stderr_mode: u32,
    /// With WEFT_STDIO_FD: the descriptor the child's stdin copies (it stays the caller's).
    pub stdin_fd: c_int,
    /// With WEFT_STDIO_FD: the descriptor the child's stdout copies (it stays the caller's).
    pub stdout_fd: c_int,
    /// With WEFT_STDIO_FD: the descriptor the child's stderr copies (it stays the caller's).
    pub stderr_fd: c_int,
    /// Start the child in a new session (`setsid()`, Python's `start_new_session`).
    pub start_new_session: bool,
    /// Reserved for future options; must be zero.
    pub reserved: [u64; 4],
}

/// Copies a NULL-terminated array of C strings.
///
/// # Safety
/// `list` must be a NULL-terminated array of NUL-terminated strings.
unsafe fn strings(list: *const *const c_char) -> Vec<CString> {
    let mut v = Vec::new();
    let mut p = list;
    // SAFETY: per the contract, every entry up to the NULL is a valid string.
    unsafe {
        while !(*p).is_null() {
            v.push(CStr::from_ptr(*p).to_owned());
            p = p.add(1);
        }
    }
    v
}

/// One stream's mode as a `Stdio`.
fn stdio(mode: u32, fd: c_int, stream: &str) -> Result<Stdio> {
    Ok(match mode {
        WEFT_STDIO_INHERIT => Stdio::Inherit,
        WEFT_STDIO_PIPE => Stdio::Pipe,
        WEFT_STDIO_NULL => Stdio::Null,
        WEFT_STDIO_FD if fd >= 0 => Stdio::Fd(fd),
        WEFT_STDIO_FD => return Err(Error::invalid(format!("{stream}_fd {fd} is not a descriptor"))),
        WEFT_STDIO_STDOUT if stream == "stderr" => Stdio::Stdout,
        _ => return Err(Error::invalid(format!("{stream}_mode {mode} is not a WEFT_STDIO_* value for {stream}"))),
    })
}

/// Reads the program and the options.
///
/// # Safety
/// `argv` NULL or a NULL-terminated string array; `opts` NULL or a valid struct.
unsafe fn inputs(argv: *const *const c_char, opts: *const weft_command_options) -> Result<(Vec<CString>, command::Options)> {
    in_ptr(argv, "argv")?;
    // SAFETY: forwarded contract.
    let argv = unsafe { strings(argv) };
    if argv.is_empty() {
        return Err(Error::invalid("argv is empty: argv[0] must name the program"));
    }
    let mut o = command::Options::default();
    if opts.is_null() {
        return Ok((argv, o));
    }
    // SAFETY: non-null options point at a valid struct per the contract.
    let c = unsafe { &*opts };
    if c.reserved.iter().any(|&r| r != 0) {
        return Err(Error::invalid("weft_command_options.reserved must be zero"));
    }
    if !c.env.is_null() {
        // SAFETY: forwarded contract.
        let env = unsafe { strings(c.env) };
        if let Some(bad) = env.iter().find(|v| !v.to_bytes().contains(&b'=')) {
            return Err(Error::invalid(format!("environment entry '{}' is not KEY=VALUE", bad.to_string_lossy())));
        }
        o.env = Some(env);
    }
    if !c.cwd.is_null() {
        // SAFETY: per the contract `cwd` is a NUL-terminated string.
        o.cwd = Some(unsafe { CStr::from_ptr(c.cwd) }.to_owned());
    }
    o.stdio = [
        stdio(c.stdin_mode, c.stdin_fd, "stdin")?,
        stdio(c.stdout_mode, c.stdout_fd, "stdout")?,
        stdio(c.stderr_mode, c.stderr_fd, "stderr")?,
    ];
    o.start_new_session = c.start_new_session;
    Ok((argv, o))
}

/// Writes an output stream: a new buffer, or NULL for a stream that was not a pipe.
fn give_output(data: Option<Vec<u8>>, out: *mut *mut weft_bytes) -> Result<()> {
    match data {
        Some(d) => give_bytes(d, out),
        None => {
            // SAFETY: the caller checked `out` non-null; it points at writable storage.
            unsafe { out.write(std::ptr::null_mut()) };
            Ok(())
        }
    }
}

/// Starts `argv[0]` with the arguments `argv` (a NULL-terminated array; copied). A program
/// without `/` is searched in `PATH` like `execvp`. The child gets only descriptors 0, 1
/// and 2 (Python's `close_fds`); every descriptor weft creates is close-on-exec. On success
/// `*out` receives the handle. Returns once the program runs: a program that cannot be
/// executed is an error here, never a child exiting with 127 — WEFT_NOT_FOUND (no such
/// program: errno ENOENT, or no such working directory), WEFT_PERMISSION_DENIED (not
/// executable or directory not accessible: EACCES/EPERM), WEFT_OS_ERROR (other failures);
/// `weft_last_error_errno` gives the errno and the message names the program (and the
/// directory). Other errors: WEFT_NULL_ARGUMENT (`argv`, `out`), WEFT_INVALID_ARGUMENT
/// (empty argv, a bad mode or descriptor, an environment entry without `=`, reserved
/// options not zero). Needs Linux 5.4 (pidfd); thread-safe.
///
/// # Safety
/// `argv` must be a NULL-terminated array of strings; `opts` NULL or a valid struct whose
/// `env` is NULL or a NULL-terminated string array; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_command_start(
    argv: *const *const c_char,
    opts: *const weft_command_options,
    out: *mut *mut weft_command,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let (argv, opts) = unsafe { inputs(argv, opts) }?;
        let child = Child::start(&argv, &opts)?;
        publish(weft_command { tag: Tag::of::<weft_command>(), child }, out)
    })
}

/// Waits up to `timeout_ns` for the child to exit (Python's `wait`) and writes its return
/// code to `*returncode` (if not NULL). Once collected, every later wait returns the same
/// code at once. 0 polls (see `weft_command_poll`), WEFT_FOREVER waits forever; a weft
/// thread asked to cancel stops waiting. Several threads may wait at once. Errors:
/// WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK (timeout 0, still running), WEFT_TIMEOUT,
/// WEFT_CANCELLED, WEFT_OS_ERROR (errno ECHILD: another waitpid collected the child).
///
/// # Safety
/// `c` must be NULL or a handle from weft; `returncode` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_command_wait(c: *mut weft_command, timeout_ns: u64, returncode: *mut c_int) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let cmd = unsafe { get(c) }?;
        let rc = cmd.child.wait(Deadline::from_timeout_ns(timeout_ns))?;
        if !returncode.is_null() {
            // SAFETY: checked non-null; writable per the contract.
            unsafe { returncode.write(rc) };
        }
        Ok(())
    })
}

/// Python's `poll`: the return code in `*returncode` (if not NULL) when the child has
/// exited, WEFT_WOULD_BLOCK while it runs. Never blocks. Errors as `weft_command_wait`.
///
/// # Safety
/// As `weft_command_wait`.
#[no_mangle]
pub unsafe extern "C" fn weft_command_poll(c: *mut weft_command, returncode: *mut c_int) -> weft_status {
    // SAFETY: forwarded contract.
    unsafe { weft_command_wait(c, 0, returncode) }
}

/// Python's `communicate`: writes `input[0..input_len]` to the child's stdin and closes it,
/// reads its stdout and stderr until end of file, waits for the child, then gives
/// `*out` and `*err` (each may be NULL to discard) a new buffer with what it wrote (free with
/// `weft_bytes_free`), or NULL for a stream that is not a pipe. One poll loop on the calling
/// thread moves all streams at once, so no amount of data in either direction deadlocks. A
/// child that stops reading its input is no error (the rest is dropped); the SIGPIPE of
/// that write never reaches this process.
///
/// Up to `timeout_ns` (0: only what can be done without blocking; WEFT_FOREVER). When it
/// runs out the call returns WEFT_TIMEOUT (WEFT_WOULD_BLOCK for 0) and keeps the output read
/// so far and the input not yet written: call again, with no input, to continue (Python's
/// TimeoutExpired). A call after a completed one returns empty output. Errors:
/// WEFT_NULL_ARGUMENT (`c`; `input` NULL with input_len > 0), WEFT_INVALID_STATE (input for
/// a stdin that is not a pipe or was closed, input on a later call, another thread
/// communicating), WEFT_TIMEOUT, WEFT_WOULD_BLOCK, WEFT_CANCELLED, WEFT_OS_ERROR.
///
/// # Safety
/// `c` must be NULL or a handle from weft; `input` readable for `input_len` bytes; `out`
/// and `err` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_command_communicate(
    c: *mut weft_command,
    input: *const c_void,
    input_len: usize,
    timeout_ns: u64,
    out: *mut *mut weft_bytes,
    err: *mut *mut weft_bytes,
) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let cmd = unsafe { get(c) }?;
        // SAFETY: forwarded contract.
        let input = unsafe { super::bytes(input, input_len, "input") }?;
        let output = cmd.child.communicate(input, Deadline::from_timeout_ns(timeout_ns))?;
        if !out.is_null() {
            give_output(output.stdout, out)?;
        }
        if !err.is_null() {
            give_output(output.stderr, err)?;
        }
        Ok(())
    })
}

/// Sends signal `sig` to the child (0 only checks). Does nothing once the return code was
/// collected (Python); the pidfd never reaches an unrelated process that reused the pid.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (not a signal number), WEFT_OS_ERROR.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_command_send_signal(c: *mut weft_command, sig: c_int) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(c) }?.child.send_signal(sig))
}

/// Sends SIGTERM (Python's `terminate`). Errors as `weft_command_send_signal`.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_command_terminate(c: *mut weft_command) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(c) }?.child.terminate())
}

/// Sends SIGKILL (Python's `kill`). Errors as `weft_command_send_signal`.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_command_kill(c: *mut weft_command) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(c) }?.child.kill())
}

/// The child's process id (still given after it was collected, like Python's `pid`; use the
/// pidfd to signal or watch it). -1 for NULL or an invalid handle.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_command_pid(c: *const weft_command) -> c_int {
    // SAFETY: forwarded contract.
    guard_value(-1, || unsafe { get(c) }.map_or(-1, |c| c.child.pid()))
}

/// The child's pidfd: becomes readable (POLLIN) when the child exits, for epoll, libuv or
/// asyncio. Owned by the handle (do not close it); valid until `weft_command_free`. -1 for
/// NULL or an invalid handle.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_command_fd(c: *const weft_command) -> c_int {
    // SAFETY: forwarded contract.
    guard_value(-1, || unsafe { get(c) }.map_or(-1, |c| c.child.pidfd()))
}

/// Reads one of weft's pipe ends; -1 when not piped, closed, or for a bad handle.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
unsafe fn pipe_fd(c: *const weft_command, stream: usize) -> c_int {
    // SAFETY: forwarded contract.
    guard_value(-1, || unsafe { get(c) }.map_or(-1, |c| c.child.pipe_fd(stream)))
}

/// The write end of the child's stdin pipe (Python's `Popen.stdin`), owned by the handle:
/// write to it, but close it only with `weft_command_close_stdin`. -1 when stdin is not a
/// pipe, after it was closed (by `weft_command_close_stdin` or `weft_command_communicate`),
/// or for NULL. Writing to it after the child stopped reading raises SIGPIPE as usual.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_command_stdin_fd(c: *const weft_command) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { pipe_fd(c, 0) }
}

/// The read end of the child's stdout pipe (Python's `Popen.stdout`), owned by the handle
/// (do not close it). -1 when stdout is not a pipe, after `weft_command_communicate` read it
/// to the end, or for NULL.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_command_stdout_fd(c: *const weft_command) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { pipe_fd(c, 1) }
}

/// The read end of the child's stderr pipe, as `weft_command_stdout_fd`.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_command_stderr_fd(c: *const weft_command) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { pipe_fd(c, 2) }
}

/// Closes weft's end of the child's stdin pipe so the child reads end of file. Closing it
/// again is fine. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE (stdin is not a pipe;
/// another thread is communicating).
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_command_close_stdin(c: *mut weft_command) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(c) }?.child.close_stdin())
}

/// Frees the handle and closes its pipes and pidfd. NULL is a no-op. A child that has exited
/// is collected now. A child still running is neither killed nor waited for (as Python's
/// `Popen` when it is garbage-collected): weft keeps its pidfd on a process-wide list and
/// collects it, without blocking, at every later `weft_command_start`, `weft_command_run`
/// and `weft_command_free` after it exits — so it is a zombie at most until the next of
/// those calls. Kill and wait first to end it now.
///
/// # Safety
/// `c` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_command_free(c: *mut weft_command) {
    // SAFETY: forwarded contract.
    unsafe { super::free(c) }
}

/// Python's `subprocess.run`: starts `argv` with `opts`, writes `input`, reads the output,
/// waits for the child, and writes its return code to `*returncode` (if not NULL).
///
/// - `input` non-NULL (even with `input_len` 0) makes a stdin left at WEFT_STDIO_INHERIT a
///   pipe; with stdin WEFT_STDIO_NULL or _FD it is WEFT_INVALID_ARGUMENT.
/// - `out` / `err` non-NULL capture stdout / stderr (Python's `capture_output`): a stream left
///   at WEFT_STDIO_INHERIT becomes a pipe, and the buffer it filled is written there (free
///   with `weft_bytes_free`); a stream that is not a pipe (null, a descriptor, stderr merged
///   into stdout) gives NULL. A piped stream whose pointer is NULL is read and dropped.
/// - `flags`: 0 or WEFT_RUN_CHECK.
///
/// The whole run takes up to `timeout_ns` (WEFT_FOREVER: no limit). When the time runs out
/// the child is killed (SIGKILL) and collected, and WEFT_TIMEOUT is returned (Python's
/// TimeoutExpired); any other failure after the start also kills and collects it. With
/// WEFT_RUN_CHECK a non-zero return code returns WEFT_TASK_FAILED naming the program and the
/// code (Python's CalledProcessError) — and, unlike other failures, still writes
/// `*returncode`, `*out` and `*err`. Errors: those of `weft_command_start` and
/// `weft_command_communicate`, WEFT_INVALID_ARGUMENT (unknown flags), WEFT_TIMEOUT,
/// WEFT_TASK_FAILED. Thread-safe.
///
/// # Safety
/// As `weft_command_start`; `input` readable for `input_len` bytes; `returncode`, `out` and
/// `err` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_command_run(
    argv: *const *const c_char,
    opts: *const weft_command_options,
    input: *const c_void,
    input_len: usize,
    timeout_ns: u64,
    flags: u32,
    returncode: *mut c_int,
    out: *mut *mut weft_bytes,
    err: *mut *mut weft_bytes,
) -> weft_status {
    guard(|| {
        if flags & !WEFT_RUN_CHECK != 0 {
            return Err(Error::new(WEFT_INVALID_ARGUMENT, format!("unknown flags {flags:#x} (only WEFT_RUN_CHECK)")));
        }
        // SAFETY: forwarded contract.
        let (argv, opts) = unsafe { inputs(argv, opts) }?;
        // SAFETY: forwarded contract.
        let input = if input.is_null() && input_len == 0 { None } else { Some(unsafe { super::bytes(input, input_len, "input") }?) };
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        let done = command::run(&argv, &opts, input, [!out.is_null(), !err.is_null()], deadline)?;
        if !returncode.is_null() {
            // SAFETY: checked non-null; writable per the contract.
            unsafe { returncode.write(done.returncode) };
        }
        if !out.is_null() {
            give_output(done.output.stdout, out)?;
        }
        if !err.is_null() {
            give_output(done.output.stderr, err)?;
        }
        if flags & WEFT_RUN_CHECK != 0 {
            command::check_returncode(&argv[0].to_string_lossy(), done.returncode)?;
        }
        Ok(())
    })
}
