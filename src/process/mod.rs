//! Child processes running a C task (Python's `multiprocessing.Process`), started by one of
//! three methods and tracked by pidfd.
//!
//! - **fork**: the child is a copy of this process and calls the task's function pointer
//!   directly. Fast, and the child sees this process's memory as it was; but forking a process
//!   that has other threads copies locks those threads may hold (in malloc, stdio, anywhere),
//!   so weft warns (see [`warn`]) when it detects other threads.
//! - **forkserver** (the default): a clean single-threaded server process, started on first
//!   use as a fresh image of this program, forks the children. Safe in threaded programs and
//!   nearly as fast as fork. The task is found by symbol (see [`target`]).
//! - **spawn**: a fresh image of this program for every child. Slowest, safest.
//!
//! The default is forkserver, as in Python 3.14: it is safe whatever threads the program runs,
//! and a task that depends only on its argument bytes and shared objects is the same task on a
//! thread, in a pool, in a child, or later on another machine (DESIGN.md's one task signature).
//!
//! Exit statuses: weft never installs a SIGCHLD handler and never calls `waitpid(-1)`; it
//! reaps only its own children, through their pidfds (`waitid(P_PIDFD)`). If other code in the
//! process reaps a weft child first (its own `waitpid(-1)`, or SIGCHLD set to `SIG_IGN`), weft
//! reports the exit status as unknown (`WEFT_OS_ERROR`, errno `ECHILD`) instead of inventing
//! one; the task's result travels on its own channel and is still delivered. Children of the
//! fork server are reaped by the server, which sends their exit status on that channel, so
//! other code in this process cannot take it.

pub mod child;
pub mod current;
mod fork;
pub mod lifeline;
mod server;
mod spawn;
pub mod target;
pub mod warn;
pub mod wire;

use crate::call::Outcome;
use crate::fd;
use crate::status::{Error, Result, WEFT_CORRUPTED, WEFT_INVALID_STATE, WEFT_OS_ERROR, WEFT_WORKER_DIED};
use crate::time::Deadline;
use child::TaskFn;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// How a child process is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMethod {
    /// A copy of this process calls the task pointer.
    Fork,
    /// The fork server forks the child; the task is found by symbol.
    ForkServer,
    /// A fresh image of this program; the task is found by symbol.
    Spawn,
}

static DEFAULT_METHOD: AtomicU32 = AtomicU32::new(0);

impl StartMethod {
    fn code(self) -> u32 {
        match self {
            StartMethod::Fork => 1,
            StartMethod::ForkServer => 2,
            StartMethod::Spawn => 3,
        }
    }
    fn from_code(c: u32) -> Option<StartMethod> {
        match c {
            1 => Some(StartMethod::Fork),
            2 => Some(StartMethod::ForkServer),
            3 => Some(StartMethod::Spawn),
            _ => None,
        }
    }
    /// The process-wide default (forkserver unless [`StartMethod::set_default`] changed it).
    pub fn default_method() -> StartMethod {
        StartMethod::from_code(DEFAULT_METHOD.load(Ordering::Relaxed)).unwrap_or(StartMethod::ForkServer)
    }
    /// Changes the process-wide default.
    pub fn set_default(m: StartMethod) {
        DEFAULT_METHOD.store(m.code(), Ordering::Relaxed);
    }
}

/// Options of [`start`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The child's name (default `Process-N`).
    pub name: Option<String>,
    /// The start method (default [`StartMethod::default_method`]).
    pub method: Option<StartMethod>,
    /// The child dies when this process ends, however it ends.
    pub daemon: bool,
    /// Descriptors the child receives (in order) through its call context.
    pub fds: Vec<RawFd>,
}

pub use crate::reap::ExitStatus;

/// A started child process. Thread-safe: any thread may join, poll or signal it.
pub struct Process {
    pid: i32,
    pidfd: Option<OwnedFd>,
    name: CString,
    daemon: bool,
    method: StartMethod,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Our end of the result channel (non-blocking, as is the child's: its sends wait for
    /// room with poll); None after close.
    channel: Option<OwnedFd>,
    /// The child's end of the channel, held until the child is reaped (see fork.rs).
    keep: Option<OwnedFd>,
    /// Bytes received and not yet parsed into frames.
    buf: Vec<u8>,
    /// End of file seen on the channel.
    eof: bool,
    /// The task's outcome, once its frame arrived.
    outcome: Option<Outcome>,
    /// How the child ended, once known (`Err` when its status was lost).
    exit: Option<std::result::Result<ExitStatus, Error>>,
}

/// Starts `task(arg)` in a new child process.
///
/// Errors: `WEFT_INVALID_ARGUMENT` (a descriptor to pass is not open; a task that cannot be
/// found by symbol for forkserver/spawn), `WEFT_OS_ERROR`, `WEFT_NO_MEMORY`.
pub fn start(task: TaskFn, arg: &[u8], opts: &Options) -> Result<Arc<Process>> {
    child::check_fds(&opts.fds)?;
    crate::reap::sweep();
    let (identity, default_name) = current::next_child();
    let name = opts.name.clone().unwrap_or(default_name);
    let method = opts.method.unwrap_or_else(StartMethod::default_method);
    // Bring the default space up first, so every child shares it.
    let space = crate::space::handle::default_space().ok();
    // Made before a fork and filled in after it: memory allocated while the child runs costs
    // the parent copy-on-write faults.
    let mut process = Arc::new(Process {
        pid: 0,
        pidfd: None,
        name: CString::new(name.replace('\0', "?")).unwrap_or_default(),
        daemon: opts.daemon,
        method,
        state: Mutex::new(State::default()),
    });
    let started = match method {
        StartMethod::Fork => fork::start(task, arg, opts, &process.name, &identity)?,
        StartMethod::ForkServer | StartMethod::Spawn => {
            let job = wire::Job {
                target: target::locate(task as *const () as usize)?,
                arg: arg.to_vec(),
                name: name.clone(),
                identity,
                // SAFETY: getpid has no preconditions.
                parent_pid: unsafe { libc::getpid() },
                daemon: opts.daemon,
                has_space: space.is_some(),
                user_fds: opts.fds.len() as u32,
            };
            let (parent_end, child_end) = fd::socketpair(libc::SOCK_STREAM | libc::SOCK_NONBLOCK)?;
            let life = if opts.daemon { Some(lifeline::read_end_dup()?) } else { None };
            let mut fds = vec![child_end.as_raw_fd()];
            fds.extend(life.as_ref().map(|l| l.as_raw_fd()));
            fds.extend(space.as_ref().map(|s| s.space().segment().fd().as_raw_fd()));
            fds.extend_from_slice(&opts.fds);
            let body = job.encode(wire::BOOT_JOB);
            let (pid, pidfd) =
                if method == StartMethod::Spawn { spawn::start(&body, &fds)? } else { server::start(&body, &fds)? };
            // As for fork: a spawned child's exit should wake us once. The fork server's
            // channel must see end of file when the server dies, so that one is not kept.
            let keep = (method == StartMethod::Spawn).then_some(child_end);
            Started { pid, pidfd, channel: parent_end, keep }
        }
    };
    // Nothing else holds the new handle, so this is always the unique reference.
    let Some(p) = Arc::get_mut(&mut process) else {
        return Err(Error::new(WEFT_INVALID_STATE, "a new process handle was shared"));
    };
    p.pid = started.pid;
    p.pidfd = Some(started.pidfd);
    let st = p.state.get_mut().unwrap_or_else(|e| e.into_inner());
    st.channel = Some(started.channel);
    st.keep = started.keep;
    Ok(process)
}

/// What a start method hands back.
pub(crate) struct Started {
    pid: i32,
    pidfd: OwnedFd,
    channel: OwnedFd,
    /// The child's end of the channel, kept until the child is reaped (direct children).
    keep: Option<OwnedFd>,
}

/// `waitid(P_PIDFD, WEXITED | WNOHANG)`: `Ok(None)` while the child runs; a status collected
/// by other code (ECHILD) is reported as lost, not invented.
fn try_reap(pidfd: RawFd) -> Result<Option<ExitStatus>> {
    crate::reap::reap(pidfd, false).map_err(|e| {
        if e == libc::ECHILD {
            Error::new(
                WEFT_OS_ERROR,
                "the child's exit status was collected by other code in this process (waitpid(-1) or SIGCHLD ignored)",
            )
            .with_errno(libc::ECHILD)
        } else {
            Error::os("waitid(P_PIDFD)", e)
        }
    })
}

impl Process {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }
    /// The pidfd: readable once the child has ended.
    pub fn pidfd(&self) -> RawFd {
        self.pidfd.as_ref().map_or(-1, |p| p.as_raw_fd())
    }
    /// The child's name.
    pub fn name(&self) -> &std::ffi::CStr {
        &self.name
    }
    /// True for a daemon child.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
    /// How it was started.
    pub fn method(&self) -> StartMethod {
        self.method
    }
    /// Whether this process reaps the child itself (fork, spawn) or the fork server does.
    fn direct(&self) -> bool {
        self.method != StartMethod::ForkServer
    }

    /// Reads what the channel has now and parses complete frames. The first read goes to a
    /// small stack buffer: most children have nothing to say, and a heap buffer made right
    /// after a fork costs copy-on-write faults. A channel with more to read gets a large one.
    fn pump(&self, st: &mut State) -> Result<()> {
        let Some(ch) = st.channel.as_ref().map(|c| c.as_raw_fd()) else { return Ok(()) };
        let mut small = [0u8; 512];
        let mut big = false;
        while !st.eof {
            let len = st.buf.len();
            let n = if big {
                if st.buf.capacity() - len < 65536 {
                    st.buf.try_reserve(65536).map_err(|_| Error::new(crate::status::WEFT_NO_MEMORY, "result too large"))?;
                }
                let spare = st.buf.capacity() - len;
                // SAFETY: reading into the vector's spare capacity, then setting the length to
                // what the kernel wrote.
                let n = unsafe { libc::read(ch, st.buf.as_mut_ptr().add(len).cast(), spare) };
                if n > 0 {
                    // SAFETY: `n` bytes past `len` were initialised by read.
                    unsafe { st.buf.set_len(len + n as usize) };
                }
                n
            } else {
                // SAFETY: reading into a stack buffer of the size passed.
                let n = unsafe { libc::read(ch, small.as_mut_ptr().cast(), small.len()) };
                if n > 0 {
                    st.buf.try_reserve(n as usize).map_err(|_| Error::new(crate::status::WEFT_NO_MEMORY, "result too large"))?;
                    st.buf.extend_from_slice(&small[..n as usize]);
                    big = n as usize == small.len();
                }
                n
            };
            if n == 0 {
                st.eof = true;
            } else if n < 0 {
                match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
                    libc::EINTR => continue,
                    libc::EAGAIN => break,
                    libc::ECONNRESET => st.eof = true,
                    e => return Err(Error::os("read(result channel)", e)),
                }
            }
        }
        self.parse(st)
    }

    fn parse(&self, st: &mut State) -> Result<()> {
        let mut at = 0;
        while st.buf.len() - at >= 8 {
            let len = u64::from_le_bytes(st.buf[at..at + 8].try_into().unwrap_or_default()) as usize;
            if st.buf.len() - at - 8 < len {
                break;
            }
            let body = &st.buf[at + 8..at + 8 + len];
            let mut r = wire::Reader::new(body);
            match r.u8()? {
                wire::FRAME_OUTCOME => {
                    let status = r.i32()?;
                    let payload = &body[5..];
                    st.outcome = Some(if status == crate::status::WEFT_OK {
                        Outcome { status, result: payload.to_vec(), message: String::new() }
                    } else {
                        Outcome { status, result: Vec::new(), message: String::from_utf8_lossy(payload).into_owned() }
                    });
                }
                wire::FRAME_EXIT if !self.direct() => {
                    let kind = r.u8()?;
                    let v = r.i32()?;
                    st.exit = Some(Ok(if kind == 0 { ExitStatus::Code(v) } else { ExitStatus::Signal(v) }));
                }
                t => return Err(Error::new(WEFT_CORRUPTED, format!("unexpected frame {t:#x} on a result channel"))),
            }
            at += 8 + len;
        }
        st.buf.drain(..at);
        Ok(())
    }

    /// Advances what is known without blocking: reads the channel, reaps a direct child
    /// that ended. True once the child's end is known.
    fn refresh(&self, st: &mut State) -> Result<bool> {
        if st.exit.is_some() {
            return Ok(true);
        }
        if self.direct() {
            match try_reap(self.pidfd()) {
                Ok(None) => {
                    // Still running: take what it wrote so far, so a large result never
                    // leaves it blocked on a full channel.
                    self.pump(st)?;
                    return Ok(false);
                }
                Ok(Some(s)) => st.exit = Some(Ok(s)),
                Err(e) => st.exit = Some(Err(e)),
            }
            // Everything the child wrote is in the channel now.
            self.pump(st)?;
            st.keep = None;
            return Ok(true);
        }
        self.pump(st)?;
        if st.exit.is_some() {
            return Ok(true);
        }
        if !pidfd_ready(self.pidfd()) {
            return Ok(false);
        }
        // The child has ended; the server reaps it and sends its status right after. Wait for
        // that frame (briefly: a server that does not send it within the bound has died or
        // hangs, and the status is reported lost).
        let bound = Deadline::from_timeout_ns(2_000_000_000);
        while st.exit.is_none() && !st.eof {
            let ch = st.channel.as_ref().map_or(-1, |c| c.as_raw_fd());
            if ch < 0 || fd::wait_ready(ch, libc::POLLIN, bound, "").is_err() {
                break;
            }
            self.pump(st)?;
        }
        if st.exit.is_none() {
            st.exit = Some(Err(Error::new(WEFT_OS_ERROR, "the fork server ended before reporting the child's exit status")));
        }
        Ok(true)
    }

    /// Waits until the child has ended (and is reaped) or the deadline passes.
    ///
    /// Errors: `WEFT_TIMEOUT`, `WEFT_WOULD_BLOCK` (deadline `Now`), `WEFT_CANCELLED` (a weft
    /// thread asked to cancel), `WEFT_OS_ERROR`.
    pub fn wait(&self, deadline: Deadline) -> Result<()> {
        // The first round polls before reading anything: a child just started has nothing to
        // say yet, and poll answers at once for one that has.
        let mut first = true;
        loop {
            let (channel, eof) = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.exit.is_some() || (!first && self.refresh(&mut st)?) {
                    return Ok(());
                }
                (st.channel.as_ref().map_or(-1, |c| c.as_raw_fd()), st.eof)
            };
            if first && deadline == Deadline::Now {
                // A poll that may not wait: refresh directly.
                first = false;
                continue;
            }
            first = false;
            // On the stack: the parent's heap pages are copy-on-write while a fork child runs.
            let none = libc::pollfd { fd: -1, events: 0, revents: 0 };
            let mut fds = [none; 2];
            let mut n = 0;
            if self.direct() || eof || channel < 0 {
                fds[n] = libc::pollfd { fd: self.pidfd(), events: libc::POLLIN, revents: 0 };
                n += 1;
            }
            if !eof && channel >= 0 {
                fds[n] = libc::pollfd { fd: channel, events: libc::POLLIN, revents: 0 };
                n += 1;
            }
            if fd::poll(&mut fds[..n], deadline)? == 0 {
                return Err(if deadline == Deadline::Now {
                    Error::would_block("the process is still running")
                } else {
                    Error::timeout("timed out waiting for the process")
                });
            }
        }
    }

    /// How the child ended: `Ok(None)` while it runs (reaping it if it just ended).
    pub fn exit_status(&self) -> Result<Option<ExitStatus>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !self.refresh(&mut st)? {
            return Ok(None);
        }
        match st.exit.clone() {
            Some(Ok(s)) => Ok(Some(s)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// The join result: the task's outcome, or why there is none.
    pub fn result(&self) -> Result<Outcome> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = &st.outcome {
            return Ok(o.clone());
        }
        match &st.exit {
            None => Err(Error::new(WEFT_INVALID_STATE, "the process is still running")),
            // A task that succeeded with an empty result sends no frame (see child.rs).
            Some(Ok(ExitStatus::Code(0))) => Ok(Outcome::default()),
            Some(Ok(ExitStatus::Code(c))) => {
                Err(Error::new(WEFT_WORKER_DIED, format!("process {} exited with code {c} before its task returned", self.pid)))
            }
            Some(Ok(ExitStatus::Signal(s))) => Err(Error::new(
                WEFT_WORKER_DIED,
                format!("process {} was killed by signal {s} ({}) before its task returned", self.pid, signal_name(*s)),
            )),
            Some(Err(e)) => Err(Error::new(WEFT_WORKER_DIED, format!("process {} ended without reporting: {}", self.pid, e.message))),
        }
    }

    /// True until the child has ended.
    pub fn is_alive(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        !self.refresh(&mut st).unwrap_or(true) && !pidfd_ready(self.pidfd())
    }

    /// Sends `sig`; a child that already ended is not an error.
    pub fn signal(&self, sig: i32) -> Result<()> {
        if self.state.lock().unwrap_or_else(|e| e.into_inner()).exit.is_some() {
            return Ok(());
        }
        fd::pidfd_send_signal(self.pidfd(), sig)
    }

    /// Releases the result channel of a finished child (Python's `close`).
    ///
    /// Errors: `WEFT_INVALID_STATE` while the child runs.
    pub fn close(&self) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !self.refresh(&mut st)? {
            return Err(Error::new(WEFT_INVALID_STATE, "cannot close a process that is still running; join it first"));
        }
        st.channel = None;
        st.eof = true;
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if self.method != StartMethod::ForkServer && st.exit.is_none() {
            if let Some(p) = self.pidfd.take() {
                if matches!(try_reap(p.as_raw_fd()), Ok(None)) {
                    crate::reap::adopt(p);
                }
            }
        }
        crate::reap::sweep();
    }
}

fn pidfd_ready(pidfd: RawFd) -> bool {
    let mut p = [libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 }];
    matches!(fd::poll(&mut p, Deadline::Now), Ok(n) if n > 0)
}

/// The name of signal `s` ("SIGKILL"), or "signal N".
pub fn signal_name(s: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string.
    let p = unsafe { libc::strsignal(s) };
    if p.is_null() {
        return format!("signal {s}");
    }
    // SAFETY: non-null, NUL-terminated.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}
