//! Starting a program: one `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`, the way glibc's
//! `posix_spawn` starts one, plus the pidfd in the same system call (no window in which the
//! child is known only by a pid that another `waitpid` could collect and the kernel reuse).
//!
//! The child shares this process's memory and runs on a stack of its own while the calling
//! thread is suspended (CLONE_VFORK) until the child execs or exits. So the child does only
//! raw system calls on data prepared here, and reports a failure by writing the step and the
//! errno into that prepared data before it exits with 127; the parent reads them when it
//! resumes, reaps the child and returns the failure as a status — never as exit code 127.
//!
//! Signals: the calling thread blocks every signal around the clone, so no handler of this
//! process runs in the child on the shared memory; the child resets every caught signal to
//! its default (as exec would), then restores the caller's mask and execs.

use crate::status::{Error, Result, WEFT_NOT_FOUND, WEFT_OS_ERROR, WEFT_PERMISSION_DENIED, WEFT_UNSUPPORTED};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// Stack of the short-lived child between clone and exec, which only makes system calls.
const CHILD_STACK: usize = 64 * 1024;

/// What the child does with one of its descriptors 0, 1 and 2 before exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    /// Leave it as inherited from this process.
    Keep,
    /// Make it a copy of this descriptor (3 or above, so no slot set up earlier clobbers it).
    Copy(RawFd),
    /// It already is the caller's descriptor: only clear its close-on-exec flag.
    Inherit,
    /// Make it a copy of the child's stdout, once that is set up (stderr merged into stdout).
    Stdout,
}

/// Everything the child needs, prepared by the parent.
pub(super) struct Plan<'a> {
    /// Program and arguments; not empty.
    pub argv: &'a [CString],
    /// Replacement environment (`KEY=VALUE` entries), None to inherit this process's.
    pub env: Option<&'a [CString]>,
    /// Working directory of the child.
    pub cwd: Option<&'a CStr>,
    /// Descriptors 0, 1, 2.
    pub slots: [Slot; 3],
    /// Call `setsid()` in the child.
    pub new_session: bool,
}

/// A started child.
pub(super) struct Spawned {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
}

/// Steps of the child that can fail (0: none failed).
const STEP_STDIO: i32 = 1;
const STEP_SESSION: i32 = 2;
const STEP_CWD: i32 = 3;
const STEP_EXEC: i32 = 4;

/// What the child reads, and where it writes its failure. Lives on the parent's stack.
struct ChildArgs {
    argv: *const *const c_char,
    envp: *const *const c_char,
    /// NULL-terminated list of paths to try.
    paths: *const *const c_char,
    cwd: *const c_char,
    slots: [Slot; 3],
    new_session: bool,
    /// The calling thread's signal mask (a kernel sigset: 64 signals).
    parent_mask: u64,
    /// The highest signal number.
    max_signal: c_int,
    failed_step: i32,
    failed_errno: i32,
}

extern "C" {
    static environ: *const *const c_char;
}

/// Starts the program described by `plan`.
pub(super) fn spawn(plan: &Plan) -> Result<Spawned> {
    let paths = super::search::candidates(&plan.argv[0], plan.env);
    let path_ptrs = nul_terminated(&paths);
    let argv_ptrs = nul_terminated(plan.argv);
    let env_ptrs = plan.env.map(nul_terminated);
    let envp = match &env_ptrs {
        Some(v) => v.as_ptr(),
        // SAFETY: reading the pointer value of `environ`, which libc keeps valid.
        None => unsafe { environ },
    };
    let mut args = ChildArgs {
        argv: argv_ptrs.as_ptr(),
        envp,
        paths: path_ptrs.as_ptr(),
        cwd: plan.cwd.map_or(ptr::null(), CStr::as_ptr),
        slots: plan.slots,
        new_session: plan.new_session,
        parent_mask: 0,
        max_signal: libc::SIGRTMAX(),
        failed_step: 0,
        failed_errno: 0,
    };
    let stack = Stack::new()?;
    let mut pidfd: c_int = -1;
    let all_signals: u64 = !0;
    // SAFETY: blocks every signal of the calling thread (raw call: glibc would keep its
    // internal ones unblocked), saving the old mask in `args`; no memory effects otherwise.
    unsafe { libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all_signals, &mut args.parent_mask, 8) };
    // SAFETY: the child runs `child_main` on `stack` (alive until after clone returns: this
    // thread is suspended until the child execs or exits) with `args`, which it only reads
    // and whose two failure fields it writes; the kernel writes the pidfd into `pidfd`.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
            (&mut args as *mut ChildArgs).cast::<c_void>(),
            &mut pidfd as *mut c_int,
        )
    };
    let clone_errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: restores the mask saved above.
    unsafe { libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &args.parent_mask, ptr::null_mut::<u64>(), 8) };
    drop(stack);
    if pid < 0 {
        return Err(Error::io("clone", &std::io::Error::from_raw_os_error(clone_errno)));
    }
    if pidfd < 0 {
        // A kernel older than 5.2 ignores CLONE_PIDFD: the child runs but cannot be tracked.
        // SAFETY: kills and reaps our own child by pid; nobody else knows it yet.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, ptr::null_mut(), 0);
        }
        return Err(Error::new(WEFT_UNSUPPORTED, "commands need Linux 5.4 or later (pidfd)"));
    }
    // SAFETY: the kernel just created this descriptor for us.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // SAFETY: the child has exec'd or exited; these fields are no longer written.
    let (step, errno) = unsafe { (ptr::read_volatile(&args.failed_step), ptr::read_volatile(&args.failed_errno)) };
    if step != 0 {
        // The child exited with 127 right after writing the failure: collect it (ECHILD when
        // SIGCHLD is ignored and the kernel already did).
        let _ = crate::reap::returncode(std::os::fd::AsRawFd::as_raw_fd(&pidfd), true);
        return Err(failure(step, errno, plan));
    }
    Ok(Spawned { pid, pidfd })
}

/// The status and message of a child that failed at `step` with `errno`.
fn failure(step: i32, errno: i32, plan: &Plan) -> Error {
    let program = super::search::display(&plan.argv[0]);
    let why = std::io::Error::from_raw_os_error(errno);
    let cwd = plan.cwd.map(super::search::display);
    let message = match step {
        STEP_CWD => format!("cannot start '{program}': cannot change to directory '{}': {why}", cwd.unwrap_or_default()),
        STEP_EXEC => {
            let searched = if super::search::is_searched(&plan.argv[0]) { " (searched in PATH)" } else { "" };
            let relative = !plan.argv[0].to_bytes().starts_with(b"/");
            let place = match cwd {
                Some(dir) if relative => format!(" (in directory '{dir}')"),
                _ => String::new(),
            };
            format!("cannot execute '{program}'{searched}{place}: {why}")
        }
        STEP_SESSION => format!("cannot start '{program}': setsid failed: {why}"),
        _ => format!("cannot start '{program}': setting up its stdin/stdout/stderr failed: {why}"),
    };
    let code = match errno {
        libc::ENOENT if step == STEP_EXEC || step == STEP_CWD => WEFT_NOT_FOUND,
        libc::EACCES | libc::EPERM if step == STEP_EXEC || step == STEP_CWD => WEFT_PERMISSION_DENIED,
        _ => WEFT_OS_ERROR,
    };
    Error::new(code, message).with_errno(errno)
}

/// Pointers to `strings` followed by NULL (borrowing them).
fn nul_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(ptr::null())).collect()
}

/// The child's stack: an anonymous mapping, unmapped on drop.
struct Stack {
    base: *mut c_void,
}

impl Stack {
    fn new() -> Result<Stack> {
        // SAFETY: a fresh private anonymous mapping; checked below.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                CHILD_STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error::last_os("mmap (child stack)"));
        }
        Ok(Stack { base })
    }

    /// The highest address (stacks grow down); page-aligned, so 16-byte aligned.
    fn top(&self) -> *mut c_void {
        // SAFETY: one past the end of the mapping.
        unsafe { self.base.cast::<u8>().add(CHILD_STACK) }.cast()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.base, CHILD_STACK) };
    }
}

// ---- the child: from here on only raw system calls, no allocation, no locks, no panics ----

/// The errno of the last failed call (the child shares the suspended parent thread's TLS).
fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Ok for a successful raw system call, Err(errno) for a failed one.
fn checked(r: libc::c_long) -> std::result::Result<(), i32> {
    if r == -1 {
        Err(errno())
    } else {
        Ok(())
    }
}

extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the ChildArgs of `spawn`, whose thread is suspended until this child
    // execs or exits, so nothing else uses it meanwhile.
    let args = unsafe { &mut *arg.cast::<ChildArgs>() };
    let (step, errno) = prepare_and_exec(args);
    // SAFETY: plain writes to the parent's ChildArgs (see above), volatile so they are not
    // optimised away before the exit.
    unsafe {
        ptr::write_volatile(&mut args.failed_step, step);
        ptr::write_volatile(&mut args.failed_errno, errno);
        libc::syscall(libc::SYS_exit_group, 127);
    }
    127
}

/// Sets up the child and execs; returns only on failure, with the step and errno.
fn prepare_and_exec(args: &ChildArgs) -> (i32, i32) {
    reset_signal_handlers(args.max_signal);
    for (target, slot) in (0..).zip(args.slots) {
        // SAFETY (all three): descriptor operations on the child's own descriptor table.
        let r = match slot {
            Slot::Keep => continue,
            Slot::Copy(src) => unsafe { libc::syscall(libc::SYS_dup3, src, target as c_int, 0) },
            Slot::Stdout => unsafe { libc::syscall(libc::SYS_dup3, 1, target as c_int, 0) },
            Slot::Inherit => unsafe { libc::syscall(libc::SYS_fcntl, target as c_int, libc::F_SETFD, 0) },
        };
        if let Err(e) = checked(r) {
            return (STEP_STDIO, e);
        }
    }
    // Nothing but 0, 1 and 2 crosses the exec (Python's close_fds). Needs Linux 5.11; on an
    // older kernel only weft's own descriptors (all close-on-exec) are sure to stay behind.
    // SAFETY: marks the child's descriptors 3 and up close-on-exec.
    unsafe { libc::syscall(libc::SYS_close_range, 3 as c_int, c_int::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if args.new_session {
        // SAFETY: no memory effects.
        if let Err(e) = checked(unsafe { libc::syscall(libc::SYS_setsid) }) {
            return (STEP_SESSION, e);
        }
    }
    if !args.cwd.is_null() {
        // SAFETY: `cwd` is a NUL-terminated string of the parent's plan.
        if let Err(e) = checked(unsafe { libc::syscall(libc::SYS_chdir, args.cwd) }) {
            return (STEP_CWD, e);
        }
    }
    // SAFETY: restores the caller's signal mask from the parent's data.
    unsafe { libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &args.parent_mask, ptr::null_mut::<u64>(), 8) };
    (STEP_EXEC, exec_first_found(args))
}

/// Tries each candidate path like `execvp`: a missing one (ENOENT, ENOTDIR, ...) moves on, a
/// non-executable one is remembered (EACCES if nothing else runs), any other error stops.
/// Returns the errno to report.
fn exec_first_found(args: &ChildArgs) -> i32 {
    let mut denied = false;
    let mut last = libc::ENOENT;
    let mut p = args.paths;
    // SAFETY: `paths` is a NULL-terminated array of C strings of the parent's plan, and so
    // are `argv` and `envp`.
    unsafe {
        while !(*p).is_null() {
            libc::syscall(libc::SYS_execve, *p, args.argv, args.envp);
            last = errno();
            match last {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => return last,
            }
            p = p.add(1);
        }
    }
    if denied {
        libc::EACCES
    } else {
        last
    }
}

/// Resets every caught signal to its default disposition (ignored ones stay ignored, as
/// across exec), so that no handler of the parent can run on the shared memory.
fn reset_signal_handlers(max_signal: c_int) {
    // A kernel `struct sigaction` (handler, flags, restorer, mask on x86_64 and aarch64) fits
    // in 4 words; all zeros is SIG_DFL with no flags and an empty mask on every layout.
    let default = [0u64; 4];
    for sig in 1..=max_signal {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut old = [0u64; 4];
        // SAFETY: queries the disposition into a buffer large enough for the kernel struct.
        let r = unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, ptr::null::<u64>(), old.as_mut_ptr(), 8) };
        let handler = old[0] as usize;
        if r == 0 && handler != libc::SIG_DFL && handler != libc::SIG_IGN {
            // SAFETY: installs SIG_DFL from a zeroed kernel struct.
            unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, default.as_ptr(), ptr::null_mut::<u64>(), 8) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::WEFT_NOT_FOUND;

    fn args(v: &[&str]) -> Vec<CString> {
        v.iter().map(|s| CString::new(*s).unwrap()).collect()
    }

    #[test]
    fn starts_and_reports_exec_failures_with_errno() {
        let argv = args(&["/nonexistent/program"]);
        let plan = Plan { argv: &argv, env: None, cwd: None, slots: [Slot::Keep; 3], new_session: false };
        let e = spawn(&plan).err().unwrap();
        assert_eq!(e.code, WEFT_NOT_FOUND);
        assert_eq!(e.errno, libc::ENOENT);
        assert!(e.message.contains("/nonexistent/program"), "{}", e.message);

        let argv = args(&["true"]);
        let plan = Plan { argv: &argv, env: None, cwd: Some(c"/nonexistent-dir"), slots: [Slot::Keep; 3], new_session: false };
        let e = spawn(&plan).err().unwrap();
        assert_eq!((e.code, e.errno), (WEFT_NOT_FOUND, libc::ENOENT));
        assert!(e.message.contains("/nonexistent-dir"), "{}", e.message);

        let plan = Plan { argv: &argv, env: None, cwd: None, slots: [Slot::Keep; 3], new_session: false };
        let s = spawn(&plan).unwrap();
        assert_eq!(crate::reap::returncode(std::os::fd::AsRawFd::as_raw_fd(&s.pidfd), true), Ok(Some(0)));
    }
}
