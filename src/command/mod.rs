//! Running external programs (Python's `subprocess`): start a program with its arguments,
//! environment, working directory and stdin/stdout/stderr; wait for it with a timeout;
//! signal it; exchange data with it without deadlock (`communicate`); or all at once (`run`).
//!
//! - Start (`spawn`): one `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` and exec, so a
//!   program that cannot run (missing, not executable, a bad working directory) is an error
//!   of [`Child::start`] carrying the child's errno — never a child exiting with 127.
//! - Tracking (`reap`): by pidfd only. No SIGCHLD handler, no `waitpid(-1)`; a child some
//!   other code collected is reported as such (ECHILD), never with a made-up return code.
//! - Return codes follow Python: the exit code, or minus the signal that ended the child.
//! - Dropping a running child leaves it running and collects it later (`reap`).

mod communicate;
mod search;
mod spawn;
mod stdio;

pub use communicate::Output;
pub use crate::reap::orphans;

use crate::reap;
use crate::status::{Error, Result, WEFT_INVALID_ARGUMENT, WEFT_INVALID_STATE, WEFT_OS_ERROR, WEFT_TASK_FAILED};
use crate::time::Deadline;
use communicate::Io;
use std::ffi::CString;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};

/// What one of the child's stdin, stdout and stderr is connected to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stdio {
    /// The same as this process's.
    #[default]
    Inherit,
    /// A pipe to this process ([`Child::communicate`], or the raw descriptor).
    Pipe,
    /// `/dev/null`.
    Null,
    /// A copy of this descriptor of the caller (which stays the caller's).
    Fd(RawFd),
    /// stderr only: wherever stdout goes (`2>&1`).
    Stdout,
}

/// How to start a program.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The child's whole environment as `KEY=VALUE` entries; None inherits this process's.
    pub env: Option<Vec<CString>>,
    /// Working directory of the child; None keeps this process's.
    pub cwd: Option<CString>,
    /// stdin, stdout and stderr.
    pub stdio: [Stdio; 3],
    /// Start the child in a new session (`setsid()`), away from this process's terminal
    /// signals.
    pub start_new_session: bool,
}

/// Where a child's exit status stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Running,
    Done(i32),
    /// Collected by some other `waitpid` of this process: the return code is lost.
    CollectedElsewhere,
}

/// A started program (Python's `Popen`). Thread-safe: several threads may wait for it (all
/// see the return code), signal it, or read its descriptors; one at a time may communicate.
pub struct Child {
    pid: libc::pid_t,
    /// Moved to the orphan list when the child is dropped while running.
    pidfd: ManuallyDrop<OwnedFd>,
    program: String,
    exit: Mutex<Exit>,
    io: Mutex<Io>,
    /// The numbers of the pipes in `io` (-1: none or closed), readable without the lock.
    raw: [AtomicI32; 3],
    /// Which streams were created as pipes.
    piped: [bool; 3],
}

/// The outcome of [`run`]: Python's `CompletedProcess`.
#[derive(Debug, PartialEq, Eq)]
pub struct Completed {
    /// Exit code, or minus the signal that ended the program.
    pub returncode: i32,
    /// Captured stdout and stderr (None for a stream that was not captured).
    pub output: Output,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Child {
    /// Starts `argv[0]` (searched in `PATH` when it has no `/`) with `argv`.
    /// Errors: WEFT_INVALID_ARGUMENT (empty argv, bad stdio), WEFT_NOT_FOUND (no such program
    /// or working directory), WEFT_PERMISSION_DENIED (not executable, directory not
    /// accessible), WEFT_OS_ERROR; each from the child carries its errno.
    pub fn start(argv: &[CString], opts: &Options) -> Result<Child> {
        reap::sweep();
        if argv.is_empty() {
            return Err(Error::invalid("argv is empty: it needs at least the program"));
        }
        let setup = stdio::setup(opts.stdio)?;
        let plan = spawn::Plan {
            argv,
            env: opts.env.as_deref(),
            cwd: opts.cwd.as_deref(),
            slots: setup.slots,
            new_session: opts.start_new_session,
        };
        let spawned = spawn::spawn(&plan)?;
        drop(setup.child_ends);
        let raw = std::array::from_fn(|i| AtomicI32::new(setup.ours[i].as_ref().map_or(-1, |f| f.as_raw_fd())));
        let piped = std::array::from_fn(|i| setup.ours[i].is_some());
        Ok(Child {
            pid: spawned.pid,
            pidfd: ManuallyDrop::new(spawned.pidfd),
            program: search::display(&argv[0]),
            exit: Mutex::new(Exit::Running),
            io: Mutex::new(Io::new(setup.ours)),
            raw,
            piped,
        })
    }

    /// The child's process id (still reported after it was collected).
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The pidfd: readable once the child has exited. Owned by the child handle.
    pub fn pidfd(&self) -> RawFd {
        self.pidfd.as_raw_fd()
    }

    /// The program as given in `argv[0]`.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// weft's end of the stdin (0), stdout (1) or stderr (2) pipe; -1 when that stream is
    /// not a pipe or was closed.
    pub fn pipe_fd(&self, stream: usize) -> RawFd {
        self.raw.get(stream).map_or(-1, |r| r.load(Ordering::Acquire))
    }

    /// The return code once collected (Python's `returncode`).
    pub fn returncode(&self) -> Option<i32> {
        match *lock(&self.exit) {
            Exit::Done(rc) => Some(rc),
            _ => None,
        }
    }

    /// Collects the exit status if the child has exited; never blocks.
    fn try_collect(&self) -> Result<Option<i32>> {
        let mut exit = lock(&self.exit);
        match *exit {
            Exit::Done(rc) => return Ok(Some(rc)),
            Exit::CollectedElsewhere => return Err(self.collected_elsewhere()),
            Exit::Running => {}
        }
        match reap::returncode(self.pidfd(), false) {
            Ok(Some(rc)) => {
                *exit = Exit::Done(rc);
                Ok(Some(rc))
            }
            Ok(None) => Ok(None),
            Err(libc::ECHILD) => {
                *exit = Exit::CollectedElsewhere;
                Err(self.collected_elsewhere())
            }
            Err(e) => Err(Error::os("waitid(P_PIDFD)", e)),
        }
    }

    fn collected_elsewhere(&self) -> Error {
        Error::new(
            WEFT_OS_ERROR,
            format!(
                "the exit status of '{}' (pid {}) was collected by another waitpid() in this process \
                 (waitpid(-1), a SIGCHLD handler, or SIGCHLD set to SIG_IGN): its return code is unknown",
                self.program, self.pid
            ),
        )
        .with_errno(libc::ECHILD)
    }

    /// Waits for the child to exit and returns its return code (Python's `wait`). With
    /// `Deadline::Now` this is Python's `poll`: WEFT_WOULD_BLOCK while it runs. Errors:
    /// WEFT_TIMEOUT, WEFT_CANCELLED (a weft thread asked to cancel), WEFT_OS_ERROR with
    /// ECHILD when another `waitpid` collected the child.
    pub fn wait(&self, deadline: Deadline) -> Result<i32> {
        loop {
            if let Some(rc) = self.try_collect()? {
                return Ok(rc);
            }
            crate::fd::wait_ready(self.pidfd(), libc::POLLIN, deadline, "the command is still running")?;
        }
    }

    /// Waits without a deadline and without cancellation (for a child no other thread knows).
    fn wait_private(&self) -> Result<i32> {
        let mut exit = lock(&self.exit);
        if *exit == Exit::Running {
            *exit = match reap::returncode(self.pidfd(), true) {
                Ok(Some(rc)) => Exit::Done(rc),
                Err(libc::ECHILD) => Exit::CollectedElsewhere,
                Err(e) => return Err(Error::os("waitid(P_PIDFD)", e)),
                Ok(None) => Exit::Running,
            };
        }
        drop(exit);
        self.try_collect()?.ok_or_else(|| Error::new(WEFT_OS_ERROR, "the child was not collected"))
    }

    /// Sends `sig` (0 only checks). Nothing happens once the return code was collected
    /// (Python); a pidfd never reaches another process that reused the pid.
    /// Errors: WEFT_INVALID_ARGUMENT (not a signal number), WEFT_OS_ERROR.
    pub fn send_signal(&self, sig: i32) -> Result<()> {
        if !(0..=libc::SIGRTMAX()).contains(&sig) {
            return Err(Error::new(WEFT_INVALID_ARGUMENT, format!("{sig} is not a signal number")));
        }
        if *lock(&self.exit) != Exit::Running {
            return Ok(());
        }
        crate::fd::pidfd_send_signal(self.pidfd(), sig)
    }

    /// SIGTERM (Python's `terminate`).
    pub fn terminate(&self) -> Result<()> {
        self.send_signal(libc::SIGTERM)
    }

    /// SIGKILL (Python's `kill`).
    pub fn kill(&self) -> Result<()> {
        self.send_signal(libc::SIGKILL)
    }

    /// Locks the pipes for one caller; a second caller meanwhile gets WEFT_INVALID_STATE.
    fn io(&self) -> Result<MutexGuard<'_, Io>> {
        match self.io.try_lock() {
            Ok(g) => Ok(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Ok(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                Err(Error::new(WEFT_INVALID_STATE, "another thread is communicating with this command"))
            }
        }
    }

    /// Closes weft's end of the stdin pipe so the child reads end of file. Closing it twice
    /// is fine. Errors: WEFT_INVALID_STATE (stdin is not a pipe; another thread is
    /// communicating).
    pub fn close_stdin(&self) -> Result<()> {
        if !self.piped[0] {
            return Err(Error::new(WEFT_INVALID_STATE, "stdin is not a pipe"));
        }
        self.io()?.close(0, &self.raw);
        Ok(())
    }

    /// Python's `communicate`: writes `input` to stdin (then closes it), reads stdout and
    /// stderr to end of file, waits for the child and returns the output (None for streams
    /// that are not pipes). At the deadline: WEFT_TIMEOUT (WEFT_WOULD_BLOCK for
    /// `Deadline::Now`), keeping the output read and the input not yet written for the next
    /// call, which must pass no input. Errors also: WEFT_INVALID_STATE (input for a stdin
    /// that is not a pipe, input on a later call, another thread communicating),
    /// WEFT_CANCELLED, and those of [`Child::wait`].
    pub fn communicate(&self, input: &[u8], deadline: Deadline) -> Result<Output> {
        let mut io = self.io()?;
        io.exchange(input, self.piped, &self.raw, deadline)?;
        self.wait(deadline)?;
        Ok(io.take_output(self.piped))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: `pidfd` is not used after this point.
        let pidfd = unsafe { ManuallyDrop::take(&mut self.pidfd) };
        let running = *self.exit.get_mut().unwrap_or_else(|e| e.into_inner()) == Exit::Running;
        if running && reap::returncode(pidfd.as_raw_fd(), false) == Ok(None) {
            reap::adopt(pidfd);
        }
        reap::sweep();
    }
}

/// Python's `subprocess.run`: starts `argv`, passes `input`, collects the output and waits,
/// all within `deadline`. `input` Some makes stdin a pipe when it is `Inherit` (and is an
/// error with `Null` or `Fd`); `capture` makes stdout and stderr pipes where they are
/// `Inherit` (Python's `capture_output`); piped output that is not captured is read and
/// dropped. At the deadline the child is killed and collected, then WEFT_TIMEOUT is
/// returned; any other failure also kills and collects it. A non-zero return code is not an
/// error here: see [`check_returncode`].
pub fn run(argv: &[CString], opts: &Options, input: Option<&[u8]>, capture: [bool; 2], deadline: Deadline) -> Result<Completed> {
    let mut opts = opts.clone();
    if input.is_some() {
        match opts.stdio[0] {
            Stdio::Inherit => opts.stdio[0] = Stdio::Pipe,
            Stdio::Pipe => {}
            _ => return Err(Error::invalid("input and a stdin other than a pipe cannot be used together")),
        }
    }
    for (i, wanted) in capture.into_iter().enumerate() {
        if wanted && opts.stdio[i + 1] == Stdio::Inherit {
            opts.stdio[i + 1] = Stdio::Pipe;
        }
    }
    let child = Child::start(argv, &opts)?;
    match child.communicate(input.unwrap_or(&[]), deadline) {
        Ok(mut output) => {
            let returncode = child.returncode().unwrap_or_default();
            if !capture[0] {
                output.stdout = None;
            }
            if !capture[1] {
                output.stderr = None;
            }
            Ok(Completed { returncode, output })
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait_private();
            Err(e)
        }
    }
}

/// Python's `check_returncode`: WEFT_TASK_FAILED naming `program` and the return code (or
/// signal) when `returncode` is not zero.
pub fn check_returncode(program: &str, returncode: i32) -> Result<()> {
    match returncode {
        0 => Ok(()),
        rc if rc < 0 => Err(Error::new(WEFT_TASK_FAILED, format!("'{program}' died of signal {}", -rc))),
        rc => Err(Error::new(WEFT_TASK_FAILED, format!("'{program}' returned non-zero exit status {rc}"))),
    }
}

#[cfg(test)]
mod tests;
