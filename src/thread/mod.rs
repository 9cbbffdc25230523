//! Threads: Python's `threading.Thread` for a task function, on raw pthreads.
//!
//! A [`Thread`] record is shared (`Arc`) by the running thread, the registry of live threads
//! and every handle a caller holds. The thread itself publishes its kernel id, runs the task
//! inside a panic boundary, runs thread-local destructors, then stores the outcome and marks
//! itself done — so a join that returns sees the destructors' effects.
//!
//! Joining with no deadline from a thread that cannot be cancelled goes straight to
//! `pthread_join` (one wake-up, as cheap as pthreads); other joins wait on the `done` futex
//! word with their deadline and cancel request, then reap with `pthread_join`.

pub mod hook;
pub mod local;
mod registry;

use crate::call::{Call, Outcome};
use crate::futex::{self, Interrupt, PrivateWord, Wait, Word};
use crate::status::{Error, Result, WEFT_CLOSED, WEFT_INVALID_ARGUMENT, WEFT_INVALID_STATE, WEFT_OK};
use crate::time::Deadline;
use std::cell::{Cell, RefCell};
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use registry::{active_count, enumerate};

/// A task body as the core sees it.
pub type Task = Box<dyn FnOnce(&mut Call) -> crate::status::weft_status + Send>;

/// Longest name the kernel keeps (`/proc/<pid>/task/<tid>/comm`): 15 bytes.
pub const WEFT_THREAD_OS_NAME_MAX: usize = 15;

/// Options for starting a thread.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Name; `None` gives Python's default "Thread-N". A given name is also set as the OS
    /// thread name, truncated to 15 bytes at a character boundary.
    pub name: Option<String>,
    /// Daemon threads are not joined by [`shutdown`] nor at process exit.
    pub daemon: bool,
    /// Stack size in bytes; 0 takes the system default.
    pub stack_size: usize,
}

/// What kind of thread a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Started by weft.
    Weft,
    /// The process's main thread.
    Main,
    /// A thread weft did not start that asked for its own record (Python's dummy thread).
    Foreign,
}

#[derive(Debug)]
enum JoinState {
    /// A pthread nobody has joined yet.
    Joinable(libc::pthread_t),
    /// Somebody is inside `pthread_join`.
    Joining,
    /// Reaped (or not a weft thread).
    Reaped,
}

/// Outcome bookkeeping, guarded together.
#[derive(Debug, Default)]
struct Fate {
    outcome: Option<Outcome>,
    /// A join (or status query) saw the outcome, or the hook already reported it.
    observed: bool,
}

/// One thread's shared record. Thread-safe.
#[derive(Debug)]
pub struct Thread {
    ident: u64,
    name: CString,
    daemon: bool,
    kind: Kind,
    tid: PrivateWord,
    done: PrivateWord,
    cancel: AtomicU32,
    join: Mutex<JoinState>,
    fate: Mutex<Fate>,
    /// Caller handles outstanding (C handles, Rust `Handle`s).
    handles: AtomicUsize,
}

static NEXT_IDENT: AtomicU64 = AtomicU64::new(1);
static NEXT_DEFAULT_NAME: AtomicU64 = AtomicU64::new(1);
static SHUT_DOWN: AtomicBool = AtomicBool::new(false);

thread_local! {
    static TID: Cell<u32> = const { Cell::new(0) };
    /// The calling thread's record, as an owned `Arc::into_raw` pointer (null when unknown).
    /// No destructor, so it stays readable while other thread-local destructors run: weft
    /// threads take it back at the end of their run, foreign threads through `ForeignGuard`,
    /// the main thread's count is simply kept for the life of the process.
    static CURRENT: Cell<*const Thread> = const { Cell::new(std::ptr::null()) };
    /// Present in foreign threads that asked for their record: ends it at thread exit.
    static FOREIGN: RefCell<Option<ForeignGuard>> = const { RefCell::new(None) };
}

/// The kernel thread id of the caller (cached; reset in a forked child).
#[inline]
pub fn current_tid() -> u32 {
    TID.try_with(|c| {
        let t = c.get();
        if t != 0 {
            return t;
        }
        // SAFETY: gettid has no preconditions.
        let t = unsafe { libc::gettid() } as u32;
        c.set(t);
        t
    })
    // SAFETY: as above, during thread teardown.
    .unwrap_or_else(|_| unsafe { libc::gettid() } as u32)
}

/// Marks a foreign thread's record done when the OS thread exits.
struct ForeignGuard;

impl Drop for ForeignGuard {
    fn drop(&mut self) {
        if let Some(t) = take_current() {
            registry::remove(&t);
            t.finish(Outcome::default());
        }
    }
}

/// Installs `t` as the calling thread's record (the thread-local owns one count).
fn set_current(t: &Arc<Thread>) {
    let raw = Arc::into_raw(t.clone());
    let _ = CURRENT.try_with(|c| c.set(raw));
}

/// Removes and returns the calling thread's record.
fn take_current() -> Option<Arc<Thread>> {
    let raw = CURRENT.try_with(|c| c.replace(std::ptr::null())).ok()?;
    // SAFETY: a non-null CURRENT is a count owned by the thread-local, made by `set_current`.
    (!raw.is_null()).then(|| unsafe { Arc::from_raw(raw) })
}

/// `done`: the task still runs, nobody sleeps on the word.
const RUNNING: u32 = 0;
/// `done`: finished (outcome stored, thread-locals destroyed).
const DONE: u32 = 1;
/// `done`: still running, and a joiner sleeps on the word (so `finish` must wake).
const RUNNING_WATCHED: u32 = 2;
/// `tid`: not published yet, and somebody sleeps on the word. Kernel ids never use bit 31.
const TID_WATCHED: u32 = 1 << 31;

impl Thread {
    fn new(kind: Kind, name: String, daemon: bool, tid: u32) -> Thread {
        Thread {
            ident: NEXT_IDENT.fetch_add(1, Ordering::Relaxed),
            name: CString::new(name.replace('\0', "")).unwrap_or_default(),
            daemon,
            kind,
            tid: PrivateWord::new(tid),
            done: PrivateWord::new(0),
            cancel: AtomicU32::new(0),
            join: Mutex::new(JoinState::Reaped),
            fate: Mutex::new(Fate::default()),
            handles: AtomicUsize::new(0),
        }
    }

    /// Weft's own identifier of this thread: unique in the process, never reused.
    pub fn ident(&self) -> u64 {
        self.ident
    }

    /// The thread's name.
    pub fn name(&self) -> &std::ffi::CStr {
        &self.name
    }

    /// True for daemon threads.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// What kind of thread this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The kernel thread id, waiting (briefly) until a just-started thread has published it.
    pub fn native_id(&self) -> u32 {
        loop {
            match self.tid.load(Ordering::Acquire) {
                0 => {
                    let _ = self.tid.compare_exchange(0, TID_WATCHED, Ordering::Relaxed, Ordering::Relaxed);
                }
                TID_WATCHED => {
                    self.tid.wait(TID_WATCHED, Deadline::Never, Interrupt::Uninterruptible);
                }
                t => return t,
            }
        }
    }

    /// Publishes the kernel id; a system call only when somebody waits for it.
    fn publish_tid(&self, tid: u32) {
        if self.tid.swap(tid, Ordering::Release) == TID_WATCHED {
            self.tid.wake(u32::MAX);
        }
    }

    /// True from start until the task has returned and its thread-local destructors ran.
    pub fn is_alive(&self) -> bool {
        self.done.load(Ordering::Acquire) != DONE
    }

    /// Asks the thread to cancel: its `Call` reports cancelled and any cancellable weft wait
    /// it is in (or enters later) returns `WEFT_CANCELLED`. Error: `WEFT_INVALID_ARGUMENT`
    /// for threads weft did not start.
    pub fn cancel(&self) -> Result<()> {
        if self.kind != Kind::Weft {
            return Err(Error::new(WEFT_INVALID_ARGUMENT, "only threads started by weft can be cancelled"));
        }
        futex::raise_cancel(&self.cancel);
        Ok(())
    }

    /// True when the calling thread is this thread. Compares kernel thread ids, which stay
    /// valid while `exit()` runs handlers after thread-locals were destroyed; a finished
    /// thread's id may be reused, so only a live record can match.
    pub(crate) fn is_caller(&self) -> bool {
        self.is_alive() && self.tid.load(Ordering::Acquire) == current_tid()
    }

    /// True once a cancel request was made.
    pub fn cancel_requested(&self) -> bool {
        self.cancel.load(Ordering::Acquire) != 0
    }

    /// Waits until the thread has finished (and reaps it). Errors: `WEFT_INVALID_STATE`
    /// (joining oneself), `WEFT_WOULD_BLOCK`, `WEFT_TIMEOUT`, `WEFT_CANCELLED`.
    pub fn join(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        if self.is_caller() {
            return Err(Error::new(WEFT_INVALID_STATE, "cannot join the current thread"));
        }
        let cancellable = interrupt == Interrupt::Cancellable && current_is_weft();
        if deadline == Deadline::Never && !cancellable {
            if let Some(pt) = self.take_joinable() {
                // SAFETY: `pt` is a joinable pthread that only this caller may join (taken
                // under the mutex); weft threads never detach themselves while joinable.
                unsafe { libc::pthread_join(pt, std::ptr::null_mut()) };
                self.mark_reaped();
            }
        }
        loop {
            match self.done.load(Ordering::Acquire) {
                DONE => break,
                RUNNING => {
                    let _ = self.done.compare_exchange(RUNNING, RUNNING_WATCHED, Ordering::Relaxed, Ordering::Relaxed);
                    continue;
                }
                _ => {}
            }
            match self.done.wait(RUNNING_WATCHED, deadline, interrupt) {
                Wait::Woken => {}
                w => {
                    if !self.is_alive() {
                        break;
                    }
                    return Err(Error::from_wait(w, deadline, "timed out joining the thread"));
                }
            }
        }
        if let Some(pt) = self.take_joinable() {
            // SAFETY: as above; the thread has finished its task and is exiting.
            unsafe { libc::pthread_join(pt, std::ptr::null_mut()) };
            self.mark_reaped();
        }
        Ok(())
    }

    fn take_joinable(&self) -> Option<libc::pthread_t> {
        let mut j = self.join.lock().unwrap_or_else(|e| e.into_inner());
        match *j {
            JoinState::Joinable(pt) => {
                *j = JoinState::Joining;
                Some(pt)
            }
            _ => None,
        }
    }

    fn mark_reaped(&self) {
        *self.join.lock().unwrap_or_else(|e| e.into_inner()) = JoinState::Reaped;
    }

    /// The task's outcome once the thread finished (marks the failure as observed), or
    /// `None` while it runs.
    pub fn outcome(&self) -> Option<Outcome> {
        let mut f = self.fate.lock().unwrap_or_else(|e| e.into_inner());
        let o = f.outcome.clone()?;
        f.observed = true;
        Some(o)
    }

    /// Stores the outcome, marks the thread done and wakes joiners.
    fn finish(self: &Arc<Self>, outcome: Outcome) {
        let report = {
            let mut f = self.fate.lock().unwrap_or_else(|e| e.into_inner());
            let failed = outcome.status != WEFT_OK;
            f.outcome = Some(outcome.clone());
            let unobserved = failed && self.handles.load(Ordering::Acquire) == 0;
            if unobserved {
                f.observed = true;
            }
            unobserved
        };
        if self.done.swap(DONE, Ordering::Release) == RUNNING_WATCHED {
            self.done.wake(u32::MAX);
        }
        if report {
            hook::report(self, &outcome);
        }
    }

    /// Counts a new caller handle.
    pub fn retain_handle(&self) {
        self.handles.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops a caller handle; the last one to go reports a failure nobody observed.
    pub fn release_handle(self: &Arc<Self>) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let report = {
            let mut f = self.fate.lock().unwrap_or_else(|e| e.into_inner());
            let unobserved = f.outcome.as_ref().filter(|o| o.status != WEFT_OK && !f.observed).cloned();
            if unobserved.is_some() {
                f.observed = true;
            }
            unobserved
        };
        if let Some(o) = report {
            hook::report(self, &o);
        }
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        if let JoinState::Joinable(pt) = *self.join.get_mut().unwrap_or_else(|e| e.into_inner()) {
            // SAFETY: nobody joined this pthread and nobody can any more (last reference).
            unsafe { libc::pthread_detach(pt) };
        }
    }
}

fn current_record() -> Option<Arc<Thread>> {
    let raw = CURRENT.try_with(|c| c.get()).ok()?;
    if raw.is_null() {
        return None;
    }
    // SAFETY: a non-null CURRENT holds a count owned by the thread-local (`set_current`), so
    // the record is alive; we add a count of our own.
    unsafe {
        Arc::increment_strong_count(raw);
        Some(Arc::from_raw(raw))
    }
}

fn current_is_weft() -> bool {
    let raw = CURRENT.try_with(|c| c.get()).unwrap_or(std::ptr::null());
    // SAFETY: as in `current_record`.
    !raw.is_null() && unsafe { (*raw).kind } == Kind::Weft
}

/// The process's main thread (Python's `main_thread()`). In a forked child, the thread that
/// called `fork` becomes the main thread, as in Python.
pub fn main_thread() -> Arc<Thread> {
    registry::main_record(|| {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() } as u32;
        Arc::new(Thread::new(Kind::Main, "MainThread".into(), false, pid))
    })
}

/// The calling thread's record (Python's `current_thread()`): a weft thread's own, the main
/// thread's, or a record made now for a foreign thread (alive until that thread exits).
pub fn current() -> Arc<Thread> {
    if let Some(t) = current_record() {
        return t;
    }
    // SAFETY: getpid has no preconditions.
    let t = if current_tid() == unsafe { libc::getpid() } as u32 {
        main_thread()
    } else {
        let n = NEXT_DEFAULT_NAME.fetch_add(1, Ordering::Relaxed);
        let t = Arc::new(Thread::new(Kind::Foreign, format!("Dummy-{n}"), true, current_tid()));
        registry::insert(&t);
        let _ = FOREIGN.try_with(|g| *g.borrow_mut() = Some(ForeignGuard));
        t
    };
    set_current(&t);
    t
}

struct Boot {
    thread: Arc<Thread>,
    task: Task,
    arg: Vec<u8>,
    os_name: Option<CString>,
}

/// Truncates a name to what the kernel keeps, at a character boundary.
fn os_name(name: &str) -> CString {
    let mut end = name.len().min(WEFT_THREAD_OS_NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    CString::new(name[..end].replace('\0', "")).unwrap_or_default()
}

/// Starts `task` with a copy of `arg` on a new thread. The returned record already counts one
/// caller handle (see [`Thread::retain_handle`]); release it with [`Thread::release_handle`]
/// when done with the thread. Errors: `WEFT_CLOSED` after
/// [`shutdown`], `WEFT_INVALID_ARGUMENT` (stack size too small), `WEFT_OS_ERROR`.
pub fn spawn(task: Task, arg: &[u8], options: &Options) -> Result<Arc<Thread>> {
    if SHUT_DOWN.load(Ordering::Acquire) {
        return Err(Error::new(WEFT_CLOSED, "cannot start a thread after weft_shutdown"));
    }
    if options.stack_size != 0 && options.stack_size < libc::PTHREAD_STACK_MIN {
        return Err(Error::new(
            WEFT_INVALID_ARGUMENT,
            format!("stack size {} is below the minimum {}", options.stack_size, libc::PTHREAD_STACK_MIN),
        ));
    }
    registry::ensure_process_hooks();
    let name = match &options.name {
        Some(n) => n.clone(),
        None => format!("Thread-{}", NEXT_DEFAULT_NAME.fetch_add(1, Ordering::Relaxed)),
    };
    let thread = Arc::new(Thread::new(Kind::Weft, name, options.daemon, 0));
    // The caller's handle counts before the thread runs: a task that fails at once must not
    // be reported as unobserved while its starter still holds the handle.
    thread.retain_handle();
    let boot = Box::new(Boot {
        thread: thread.clone(),
        task,
        arg: arg.to_vec(),
        os_name: options.name.as_deref().map(os_name),
    });
    registry::insert(&thread);

    // SAFETY: the attr is initialised before use and destroyed after; `boot` is leaked into
    // the new thread, which takes ownership in `trampoline`, or reclaimed here on failure.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        if options.stack_size != 0 {
            let r = libc::pthread_attr_setstacksize(&mut attr, options.stack_size);
            if r != 0 {
                libc::pthread_attr_destroy(&mut attr);
                registry::remove(&thread);
                return Err(Error::new(WEFT_INVALID_ARGUMENT, format!("stack size {} rejected", options.stack_size)));
            }
        }
        let mut pt: libc::pthread_t = 0;
        // Hold the join mutex so the record knows its pthread before anyone can join.
        let mut j = thread.join.lock().unwrap_or_else(|e| e.into_inner());
        let raw = Box::into_raw(boot) as *mut c_void;
        let r = libc::pthread_create(&mut pt, &attr, trampoline, raw);
        libc::pthread_attr_destroy(&mut attr);
        if r != 0 {
            drop(Box::from_raw(raw as *mut Boot));
            drop(j);
            registry::remove(&thread);
            return Err(Error::os("pthread_create", r));
        }
        *j = JoinState::Joinable(pt);
    }
    Ok(thread)
}

extern "C" fn trampoline(raw: *mut c_void) -> *mut c_void {
    // SAFETY: `raw` is the Box<Boot> leaked by `spawn` for this thread alone.
    let boot = unsafe { Box::from_raw(raw as *mut Boot) };
    // Nothing may unwind out of a thread start routine.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || run(*boot)));
    std::ptr::null_mut()
}

fn run(boot: Boot) {
    let Boot { thread, task, arg, os_name } = boot;
    thread.publish_tid(current_tid());
    if let Some(n) = &os_name {
        // SAFETY: names the calling thread; the string is NUL-terminated and at most 15 bytes.
        unsafe { libc::pthread_setname_np(libc::pthread_self(), n.as_ptr()) };
    }
    set_current(&thread);
    futex::set_cancel_word(&thread.cancel);

    let outcome = {
        let mut call = Call::new(&arg, &thread.cancel);
        match crate::status::catch(|| Ok(task(&mut call))) {
            Ok(status) => call.finish(status),
            Err(e) => Outcome { status: e.code, result: Vec::new(), message: e.message.into_owned() },
        }
    };
    local::run_thread_exit();
    futex::set_cancel_word(std::ptr::null());
    registry::remove(&thread);
    thread.finish(outcome);
    drop(take_current());
}

/// Joins every live non-daemon weft thread (other than the caller) until `deadline`, like
/// Python does at interpreter exit; afterwards new threads cannot start (`WEFT_CLOSED`).
/// Errors: `WEFT_TIMEOUT` (some threads still run), `WEFT_CANCELLED`.
pub fn shutdown(deadline: Deadline) -> Result<()> {
    SHUT_DOWN.store(true, Ordering::Release);
    loop {
        // Straight from the registry: no main-thread record is made (a forked child ending
        // through here should touch as few copy-on-write pages as it can).
        let pending = registry::live_where(|t| t.kind == Kind::Weft && !t.daemon && !t.is_caller());
        if pending.is_empty() {
            return Ok(());
        }
        for t in pending {
            t.join(deadline, Interrupt::Cancellable)?;
        }
    }
}

/// True after [`shutdown`] began.
pub fn is_shut_down() -> bool {
    SHUT_DOWN.load(Ordering::Acquire)
}
