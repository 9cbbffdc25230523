//! Futures (Python's `concurrent.futures.Future`): the result of a task that runs elsewhere,
//! completed by a pool worker, a process pool's collector, or the program itself.
//!
//! A [`Future`] is a cheap cloneable handle (one `Arc`; creating, completing and reading a
//! future allocates once). It is pending, running, then finally done (result bytes), failed (a
//! status and a message) or cancelled; the final state never changes again, so the result
//! bytes may be borrowed for as long as a handle lives.
//!
//! Completion is a futex state machine (`core.rs`): a completion that nobody waits for and
//! that has no callbacks costs two atomic operations and no system call. Waiters sleep on the
//! future's word; done callbacks, the waiters of [`wait`] and [`AsCompleted`], and the
//! membership of a [`Group`] are hooks that the completing thread runs once the state is
//! published. A pollable descriptor (an eventfd) is created on request and closed with the last
//! handle.

mod core;
pub mod group;
pub mod wait;

#[cfg(test)]
mod models;
#[cfg(test)]
mod tests;

use self::core::{is_final, phase, Core, Native, Value, DONE, FAILED, PENDING, RUNNING};
use crate::call::{Call, Outcome};
use crate::futex::Interrupt;
use crate::status::{self, weft_status, Error, Result, WEFT_CANCELLED, WEFT_INVALID_ARGUMENT, WEFT_OK, WEFT_PANIC};
use crate::time::Deadline;
use std::ffi::{c_void, CStr, CString};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

pub use group::Group;
pub use wait::{wait, AsCompleted, Mode};

/// The state of a future. The numbers are those of the C constants `WEFT_FUTURE_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum State {
    /// Created, not started (and not cancelled).
    Pending = 0,
    /// A runner started it (`set_running`).
    Running = 1,
    /// Finished with result bytes.
    Done = 2,
    /// Finished with a failure status and message.
    Failed = 3,
    /// Cancelled.
    Cancelled = 4,
}

impl State {
    /// True for the final states (done, failed, cancelled).
    pub fn is_final(self) -> bool {
        self as i32 >= State::Done as i32
    }
}

pub(crate) type NativeWaiter = wait::Waiter<Native>;

/// What the completing thread runs once a future is final.
pub(crate) enum Hook {
    /// A done callback.
    Callback(Box<dyn FnOnce(&Future) + Send>),
    /// A waiter of `wait` (`false`) or `AsCompleted` (`true`), with the future's index.
    Waiter(Arc<NativeWaiter>, usize, bool),
    /// Membership of a group.
    Group(Weak<group::Shared>),
}

impl wait::WaiterHook<Native> for Hook {
    fn waiter(waiter: &Arc<NativeWaiter>, token: usize, collect: bool) -> Self {
        Hook::Waiter(waiter.clone(), token, collect)
    }
    fn is_waiter(&self, w: &Arc<NativeWaiter>) -> bool {
        matches!(self, Hook::Waiter(x, ..) if Arc::ptr_eq(x, w))
    }
}

/// Tag of a live future's allocation (checked when C hands a pointer back).
const LIVE: u64 = 0x7765_6674_6675_7475;
const DEAD: u64 = 0xdead_dead_dead_dead;

#[repr(C)]
pub(crate) struct Inner {
    /// `LIVE` until the last handle is dropped: the C handle is this allocation itself.
    magic: AtomicU64,
    core: Core<Native, Hook>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.magic.store(DEAD, Ordering::Relaxed);
    }
}

/// A future: a handle to the eventual outcome of a task. Cloning makes another handle to the
/// same future. Thread-safe (`Send + Sync`): any thread may complete, cancel, wait for or read
/// it.
#[derive(Clone)]
pub struct Future {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Future {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Future({:p}, {:?})", Arc::as_ptr(&self.inner), self.state())
    }
}

impl Default for Future {
    fn default() -> Self {
        Future::new()
    }
}

impl Future {
    /// A pending future, for a program (or a binding) that completes it itself.
    pub fn new() -> Future {
        Future { inner: Arc::new(Inner { magic: AtomicU64::new(LIVE), core: Core::new() }) }
    }

    /// The current state.
    pub fn state(&self) -> State {
        match phase(self.inner.core.load()) {
            PENDING => State::Pending,
            RUNNING => State::Running,
            DONE => State::Done,
            FAILED => State::Failed,
            _ => State::Cancelled,
        }
    }

    /// True once the future is final: done, failed or cancelled (Python's `done()`).
    #[inline]
    pub fn is_done(&self) -> bool {
        is_final(self.inner.core.load())
    }

    /// True when both handles refer to the same future.
    pub fn ptr_eq(&self, other: &Future) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Python's `set_running_or_notify_cancel`: marks a pending future running and returns
    /// true; returns false when it was cancelled, and the task must then not run.
    /// Errors: `WEFT_INVALID_STATE` (already running, being completed, or finished).
    pub fn set_running(&self) -> Result<bool> {
        self.inner.core.set_running()
    }

    /// Finishes the future with a copy of `bytes` as its result and runs its callbacks.
    /// Errors: `WEFT_INVALID_STATE` (already finished or cancelled).
    pub fn set_result(&self, bytes: &[u8]) -> Result<()> {
        self.set_result_vec(bytes.to_vec())
    }

    /// [`Future::set_result`], taking the bytes without a copy.
    pub fn set_result_vec(&self, bytes: Vec<u8>) -> Result<()> {
        self.finish(Value::Result(bytes))
    }

    /// Finishes the future as failed with `status` (not `WEFT_OK`) and `message` (a NUL in it
    /// becomes `\0`) and runs its callbacks. Errors: `WEFT_INVALID_ARGUMENT` (status
    /// `WEFT_OK`), `WEFT_INVALID_STATE` (already finished or cancelled).
    pub fn set_failure(&self, status: weft_status, message: impl Into<String>) -> Result<()> {
        if status == WEFT_OK {
            return Err(Error::new(WEFT_INVALID_ARGUMENT, "a failure status must not be WEFT_OK"));
        }
        let message = message.into();
        let message = CString::new(message).unwrap_or_else(|e| {
            let s = String::from_utf8_lossy(&e.into_vec()).replace('\0', "\\0");
            CString::new(s).unwrap_or_default()
        });
        self.finish(Value::Failure(status, message))
    }

    fn finish(&self, value: Value) -> Result<()> {
        let hooks = self.inner.core.complete(value)?;
        self.run_hooks(hooks);
        Ok(())
    }

    /// Finishes the future with a task's outcome: its result bytes (`WEFT_OK`) or its failure;
    /// a task that returned `WEFT_CANCELLED` after a cancel was requested makes the future
    /// cancelled. Errors: `WEFT_INVALID_STATE` (already finished or cancelled).
    pub fn complete(&self, outcome: Outcome) -> Result<()> {
        if outcome.status == WEFT_OK {
            return self.set_result_vec(outcome.result);
        }
        if outcome.status == WEFT_CANCELLED && self.cancel_requested() {
            if let Ok(hooks) = self.inner.core.to_cancelled(true) {
                self.run_hooks(hooks);
                return Ok(());
            }
        }
        self.set_failure(outcome.status, outcome.message)
    }

    /// Python's `cancel`: a pending future becomes cancelled and its callbacks run (true); an
    /// already cancelled one answers true. A running future gets a cooperative cancel request
    /// (its task sees `weft_call_cancelled`) and answers false; a finished one answers false.
    pub fn cancel(&self) -> bool {
        let (cancelled, hooks) = self.inner.core.cancel();
        self.run_hooks(hooks);
        cancelled
    }

    /// True once a cancel was requested while the future was running.
    pub fn cancel_requested(&self) -> bool {
        self.inner.core.cancel_word().load(Ordering::Acquire) != 0
    }

    /// The cancel word a runner passes to [`Call::new`] so that the task's
    /// `weft_call_cancelled` sees [`Future::cancel`] requests.
    pub fn cancel_word(&self) -> &AtomicU32 {
        self.inner.core.cancel_word()
    }

    /// Runs `task` for this future on the calling thread, as a pool worker does: marks it
    /// running, calls the task with `arg` and the future's cancel word, and completes the
    /// future with the outcome (a panicking task fails it with `WEFT_PANIC`). Returns false,
    /// without running the task, when the future was cancelled. Errors: `WEFT_INVALID_STATE`
    /// (already running or finished).
    pub fn run(&self, arg: &[u8], task: impl FnOnce(&mut Call) -> weft_status) -> Result<bool> {
        if !self.set_running()? {
            return Ok(false);
        }
        let mut call = Call::new(arg, self.cancel_word());
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(&mut call))) {
            Ok(status) => call.finish(status),
            Err(p) => {
                let text = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
                let message = format!("the task panicked: {}", text.as_deref().unwrap_or("non-string panic payload"));
                Outcome { status: WEFT_PANIC, result: Vec::new(), message }
            }
        };
        // Nobody else completes a running future unless the program calls set_result itself;
        // then the first completion stands.
        let _ = self.complete(outcome);
        Ok(true)
    }

    /// Waits until the future is final. Errors: `WEFT_TIMEOUT` (the deadline passed;
    /// `Deadline::Now` checks once), `WEFT_CANCELLED` (the calling weft thread was asked to
    /// cancel, with `Interrupt::Cancellable`).
    pub fn wait(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        self.inner.core.wait(deadline, interrupt)
    }

    /// Waits (cancellable) and returns the result bytes, borrowed from the future (they never
    /// change once set). Errors: the failure's own status and message (failed),
    /// `WEFT_CANCELLED` (cancelled, or the calling weft thread was asked to cancel),
    /// `WEFT_TIMEOUT` (not finished by the deadline; `Deadline::Now` checks once).
    pub fn result(&self, deadline: Deadline) -> Result<&[u8]> {
        self.wait(deadline, Interrupt::Cancellable)?;
        match self.value() {
            Value::Result(v) => Ok(v),
            Value::Failure(status, message) => Err(Error::new(*status, message.to_string_lossy().into_owned())),
            Value::Empty => Err(Error::new(WEFT_CANCELLED, "the future was cancelled")),
        }
    }

    /// Python's `exception`: waits (cancellable), then `None` for a future that succeeded, or
    /// its failure status and message. Errors: `WEFT_CANCELLED` (cancelled, or the calling
    /// weft thread was asked to cancel), `WEFT_TIMEOUT`.
    pub fn exception(&self, deadline: Deadline) -> Result<Option<(weft_status, &str)>> {
        self.wait(deadline, Interrupt::Cancellable)?;
        match self.value() {
            Value::Result(_) => Ok(None),
            Value::Failure(status, message) => Ok(Some((*status, message.to_str().unwrap_or("")))),
            Value::Empty => Err(Error::new(WEFT_CANCELLED, "the future was cancelled")),
        }
    }

    /// The failure status and message (NUL-terminated) of a failed future; `None` otherwise.
    /// Does not wait.
    pub fn failure(&self) -> Option<(weft_status, &CStr)> {
        if !self.is_done() {
            return None;
        }
        match self.value() {
            Value::Failure(status, message) => Some((*status, message.as_c_str())),
            _ => None,
        }
    }

    /// The value of a future seen final; `Value::Empty` for one that is not.
    fn value(&self) -> &Value {
        if !self.is_done() {
            return &Value::Empty;
        }
        // SAFETY: `is_done` made an acquire load that saw a final phase; the borrow is tied to
        // this handle, which keeps the allocation alive.
        unsafe { self.inner.core.value() }
    }

    /// Python's `add_done_callback`: `f` runs exactly once with this future — right now on the
    /// calling thread when it is already final, else on the thread that finishes it, after the
    /// final state is visible. A panic in `f` is reported on stderr and otherwise ignored (as
    /// Python logs a callback's exception); the future and the other callbacks are unaffected.
    pub fn add_done_callback(&self, f: impl FnOnce(&Future) + Send + 'static) {
        if let Err(hook) = self.inner.core.register(Hook::Callback(Box::new(f))) {
            self.run_hook(hook);
        }
    }

    /// A descriptor that becomes readable (and stays so) once the future is final, for epoll,
    /// libuv or asyncio; created on the first call, owned by the future and closed with its
    /// last handle. It must not be read. Errors: `WEFT_OS_ERROR`, `WEFT_NO_MEMORY`.
    pub fn fd(&self) -> Result<RawFd> {
        self.inner.core.fd()
    }

    /// Registers a group's membership hook; `false` when the future is final already (the
    /// caller accounts for it).
    pub(crate) fn join_group(&self, g: Weak<group::Shared>) -> bool {
        self.inner.core.register(Hook::Group(g)).is_ok()
    }

    fn run_hooks(&self, hooks: Vec<Hook>) {
        for h in hooks {
            self.run_hook(h);
        }
    }

    fn run_hook(&self, hook: Hook) {
        match hook {
            Hook::Callback(f) => {
                if let Err(e) = status::catch(|| {
                    f(self);
                    Ok(())
                }) {
                    eprintln!("weft: a done callback of a future panicked (ignored): {}", e.message);
                }
            }
            Hook::Waiter(w, token, collect) => w.notify(token, self.state() == State::Failed, collect),
            Hook::Group(g) => {
                if let Some(g) = g.upgrade() {
                    g.finished(self);
                }
            }
        }
    }

    /// The C handle: the future's own allocation, carrying one reference.
    pub(crate) fn into_raw(self) -> *mut c_void {
        Arc::into_raw(self.inner) as *mut c_void
    }

    /// The C handle of this future, borrowed (no reference is transferred).
    pub(crate) fn as_raw(&self) -> *mut c_void {
        Arc::as_ptr(&self.inner) as *mut c_void
    }

    /// Checks a C handle: true when it points at a live future (best effort: the memory of a
    /// freed future may have been reused).
    ///
    /// # Safety
    /// `p` must be non-null and come from [`Future::into_raw`] or [`Future::as_raw`].
    pub(crate) unsafe fn raw_is_live(p: *const c_void) -> bool {
        // SAFETY: per the contract `p` points at an `Inner` (or its freed memory).
        unsafe { &*(p as *const Inner) }.magic.load(Ordering::Relaxed) == LIVE
    }

    /// A borrowed handle for a C handle, without taking a reference.
    ///
    /// # Safety
    /// `p` must be a live handle (see [`Future::raw_is_live`]) that stays referenced while the
    /// result is used.
    pub(crate) unsafe fn borrow_raw(p: *const c_void) -> std::mem::ManuallyDrop<Future> {
        // SAFETY: per the contract `p` came from `Arc::into_raw`/`as_ptr` of a live `Inner`; the
        // ManuallyDrop never releases the reference it did not take.
        std::mem::ManuallyDrop::new(Future { inner: unsafe { Arc::from_raw(p as *const Inner) } })
    }

    /// Takes back the reference a C handle carries.
    ///
    /// # Safety
    /// `p` must be a live handle whose reference the caller owns and gives up.
    pub(crate) unsafe fn from_raw(p: *const c_void) -> Future {
        // SAFETY: per the contract.
        Future { inner: unsafe { Arc::from_raw(p as *const Inner) } }
    }
}
