//! Status codes, the thread-local last-error message and the FFI panic boundary.
//!
//! Every fallible C function returns a [`weft_status`]. The codes below are the one table of
//! the library: `weft_status_name` and `weft_status_str` are generated from [`TABLE`], and a
//! unit test checks that every constant appears there exactly once. Codes never change
//! meaning; retired numbers stay reserved.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Result of every fallible weft function: `WEFT_OK` (zero) or one of the `WEFT_*` codes.
#[allow(non_camel_case_types)]
pub type weft_status = i32;

/// Success.
pub const WEFT_OK: weft_status = 0;
/// A blocking call reached its deadline before it could complete.
pub const WEFT_TIMEOUT: weft_status = 1;
/// A non-blocking attempt (timeout 0) could not complete now: a failed try-acquire, an empty
/// or full queue (Python's `queue.Empty` / `queue.Full`).
pub const WEFT_WOULD_BLOCK: weft_status = 2;
/// The object was closed or shut down (queue shut down, pipe end-of-file).
pub const WEFT_CLOSED: weft_status = 3;
/// The calling thread or task was asked to cancel; the wait was abandoned.
pub const WEFT_CANCELLED: weft_status = 4;
/// A shared lock was acquired, but its previous holder died while holding it.
pub const WEFT_OWNER_DEAD: weft_status = 5;
/// A lock whose dead owner's state was never marked consistent can no longer be used.
pub const WEFT_NOT_RECOVERABLE: weft_status = 6;
/// A barrier is broken (aborted, reset while waited on, or a wait timed out).
pub const WEFT_BROKEN: weft_status = 7;
/// The calling thread does not hold the lock it tried to use or release.
pub const WEFT_NOT_OWNER: weft_status = 8;
/// A worker process died while running the task.
pub const WEFT_WORKER_DIED: weft_status = 9;
/// The task reported a failure; its own status and message are available.
pub const WEFT_TASK_FAILED: weft_status = 10;
/// An argument has a bad value (size, count, enum, flag).
pub const WEFT_INVALID_ARGUMENT: weft_status = 11;
/// A required pointer argument was NULL.
pub const WEFT_NULL_ARGUMENT: weft_status = 12;
/// The caller's buffer is too small; the needed size is reported.
pub const WEFT_BUFFER_TOO_SMALL: weft_status = 13;
/// Memory could not be allocated.
pub const WEFT_NO_MEMORY: weft_status = 14;
/// The object already exists.
pub const WEFT_EXISTS: weft_status = 15;
/// The object does not exist.
pub const WEFT_NOT_FOUND: weft_status = 16;
/// Shared state failed validation (a corrupted segment, a handle that is not a live object).
pub const WEFT_CORRUPTED: weft_status = 17;
/// The operation is not supported on this platform or for this object.
pub const WEFT_UNSUPPORTED: weft_status = 18;
/// An operating-system call failed; the message names the call and its errno.
pub const WEFT_OS_ERROR: weft_status = 19;
/// weft itself panicked; the message holds the panic text. The process can continue.
pub const WEFT_PANIC: weft_status = 20;
/// The object is not in a state that allows the call (releasing an unlocked lock, releasing a
/// bounded semaphore above its initial value, joining the calling thread itself).
pub const WEFT_INVALID_STATE: weft_status = 21;
/// The peer failed authentication (a listener or client given a different authkey).
pub const WEFT_AUTH_FAILED: weft_status = 22;
/// The operating system refused permission (a program that is not executable, a file or
/// directory that may not be opened); `weft_last_error_errno` gives the errno.
pub const WEFT_PERMISSION_DENIED: weft_status = 23;

/// Name, description of each status code: the one table behind `weft_status_name/str`.
pub(crate) const TABLE: &[(weft_status, &CStr, &CStr)] = &[
    (WEFT_OK, c"WEFT_OK", c"success"),
    (WEFT_TIMEOUT, c"WEFT_TIMEOUT", c"timed out"),
    (WEFT_WOULD_BLOCK, c"WEFT_WOULD_BLOCK", c"operation would block"),
    (WEFT_CLOSED, c"WEFT_CLOSED", c"closed or shut down"),
    (WEFT_CANCELLED, c"WEFT_CANCELLED", c"cancelled"),
    (WEFT_OWNER_DEAD, c"WEFT_OWNER_DEAD", c"previous owner died holding the lock"),
    (WEFT_NOT_RECOVERABLE, c"WEFT_NOT_RECOVERABLE", c"lock state is not recoverable"),
    (WEFT_BROKEN, c"WEFT_BROKEN", c"barrier is broken"),
    (WEFT_NOT_OWNER, c"WEFT_NOT_OWNER", c"caller does not own the lock"),
    (WEFT_WORKER_DIED, c"WEFT_WORKER_DIED", c"worker died while running the task"),
    (WEFT_TASK_FAILED, c"WEFT_TASK_FAILED", c"task failed"),
    (WEFT_INVALID_ARGUMENT, c"WEFT_INVALID_ARGUMENT", c"invalid argument"),
    (WEFT_NULL_ARGUMENT, c"WEFT_NULL_ARGUMENT", c"required pointer argument is NULL"),
    (WEFT_BUFFER_TOO_SMALL, c"WEFT_BUFFER_TOO_SMALL", c"buffer too small"),
    (WEFT_NO_MEMORY, c"WEFT_NO_MEMORY", c"out of memory"),
    (WEFT_EXISTS, c"WEFT_EXISTS", c"already exists"),
    (WEFT_NOT_FOUND, c"WEFT_NOT_FOUND", c"not found"),
    (WEFT_CORRUPTED, c"WEFT_CORRUPTED", c"state failed validation"),
    (WEFT_UNSUPPORTED, c"WEFT_UNSUPPORTED", c"operation not supported"),
    (WEFT_OS_ERROR, c"WEFT_OS_ERROR", c"operating-system call failed"),
    (WEFT_PANIC, c"WEFT_PANIC", c"internal panic caught at the API boundary"),
    (WEFT_INVALID_STATE, c"WEFT_INVALID_STATE", c"object is not in a state that allows this call"),
    (WEFT_AUTH_FAILED, c"WEFT_AUTH_FAILED", c"authentication failed"),
    (WEFT_PERMISSION_DENIED, c"WEFT_PERMISSION_DENIED", c"permission denied"),
];

/// Name of a status code (`"WEFT_TIMEOUT"`), or `"WEFT_UNKNOWN_STATUS"`.
pub(crate) fn name(code: weft_status) -> &'static CStr {
    TABLE.iter().find(|e| e.0 == code).map_or(c"WEFT_UNKNOWN_STATUS", |e| e.1)
}

/// One-line description of a status code, or `"unknown status"`.
pub(crate) fn describe(code: weft_status) -> &'static CStr {
    TABLE.iter().find(|e| e.0 == code).map_or(c"unknown status", |e| e.2)
}

/// A failure: a status code and a human-readable message.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    /// One of the `WEFT_*` codes other than `WEFT_OK`.
    pub code: weft_status,
    /// What went wrong, for `weft_last_error_message`.
    pub message: Cow<'static, str>,
    /// The OS error number behind the failure, 0 when there is none (`weft_last_error_errno`).
    pub errno: i32,
}

impl Error {
    /// An error with a status and a message.
    pub fn new(code: weft_status, message: impl Into<Cow<'static, str>>) -> Self {
        debug_assert_ne!(code, WEFT_OK);
        Error { code, message: message.into(), errno: 0 }
    }
    /// The same error carrying an OS error number.
    pub fn with_errno(mut self, errno: i32) -> Self {
        self.errno = errno;
        self
    }
    /// `WEFT_TIMEOUT` (the message is static: no allocation on this path).
    pub fn timeout(message: &'static str) -> Self {
        Error::new(WEFT_TIMEOUT, message)
    }
    /// `WEFT_WOULD_BLOCK` (static message).
    pub fn would_block(message: &'static str) -> Self {
        Error::new(WEFT_WOULD_BLOCK, message)
    }
    /// `WEFT_CANCELLED`.
    pub fn cancelled() -> Self {
        Error::new(WEFT_CANCELLED, "the calling thread was asked to cancel")
    }
    /// Maps the end of a wait that did not succeed: timed out (or `would_block` when the
    /// caller asked not to block) or cancelled.
    pub fn from_wait(w: crate::futex::Wait, deadline: crate::time::Deadline, what: &'static str) -> Self {
        match (w, deadline) {
            (crate::futex::Wait::Cancelled, _) => Error::cancelled(),
            (_, crate::time::Deadline::Now) => Error::would_block(what),
            _ => Error::timeout(what),
        }
    }
    /// `WEFT_INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(WEFT_INVALID_ARGUMENT, message)
    }
    /// `WEFT_OS_ERROR` from the current `errno`.
    pub fn last_os(call: &str) -> Self {
        Self::os(call, std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
    /// `WEFT_OS_ERROR` from an errno value.
    pub fn os(call: &str, errno: i32) -> Self {
        let text = std::io::Error::from_raw_os_error(errno);
        Error::new(WEFT_OS_ERROR, format!("{call} failed: {text}")).with_errno(errno)
    }
    /// An error for an `std::io::Error` from `call`: `WEFT_OS_ERROR` with its errno, or
    /// `WEFT_NO_MEMORY` for ENOMEM.
    pub fn io(call: &str, e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOMEM) => Error::new(WEFT_NO_MEMORY, format!("{call} failed: {e}")).with_errno(libc::ENOMEM),
            Some(n) => Self::os(call, n),
            None => Error::new(WEFT_OS_ERROR, format!("{call} failed: {e}")),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", name(self.code).to_string_lossy(), self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for Error {}

/// Result type of the Rust core.
pub type Result<T> = std::result::Result<T, Error>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_ERRNO: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// The errno of this thread's last failure (0 when it had none).
pub(crate) fn last_errno() -> i32 {
    LAST_ERRNO.try_with(|c| c.get()).unwrap_or(0)
}

/// Records `message` as this thread's last error message.
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // try_with: during thread teardown the slot may be gone; losing the message is harmless.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = c);
}

/// Pointer to this thread's last error message (empty string when none).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| slot.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Records an error and returns its code: the one way a C function reports failure.
pub(crate) fn report(err: Error) -> weft_status {
    set_last_error(&err.message);
    let _ = LAST_ERRNO.try_with(|c| c.set(err.errno));
    err.code
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The panic boundary for functions that return a status: runs `f`, maps its error to a
/// status (recording the message) and turns a panic into `WEFT_PANIC`.
pub(crate) fn guard<F: FnOnce() -> Result<()>>(f: F) -> weft_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => WEFT_OK,
        Ok(Err(e)) => report(e),
        Err(p) => report(Error::new(WEFT_PANIC, format!("weft panicked: {}", panic_text(&*p)))),
    }
}

/// The panic boundary for functions that return a plain value: a panic yields `fallback`
/// (and records the panic message).
pub(crate) fn guard_value<T, F: FnOnce() -> T>(fallback: T, f: F) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            set_last_error(&format!("weft panicked: {}", panic_text(&*p)));
            fallback
        }
    }
}

/// Runs `f`, converting a panic into `Err(WEFT_PANIC)`: used around user callbacks' callers
/// and thread bodies, where an unwind must stop.
pub(crate) fn catch<T, F: FnOnce() -> Result<T>>(f: F) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(Error::new(WEFT_PANIC, format!("weft panicked: {}", panic_text(&*p)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_dense_and_unique() {
        for (i, e) in TABLE.iter().enumerate() {
            assert_eq!(e.0 as usize, i, "codes are listed in order without gaps");
            assert!(e.1.to_str().unwrap().starts_with("WEFT_"));
        }
        assert_eq!(name(999), c"WEFT_UNKNOWN_STATUS");
        assert_eq!(name(WEFT_INVALID_STATE), c"WEFT_INVALID_STATE");
    }

    #[test]
    fn guard_maps_errors_and_panics() {
        assert_eq!(guard(|| Ok(())), WEFT_OK);
        assert_eq!(guard(|| Err(Error::invalid("bad size 3"))), WEFT_INVALID_ARGUMENT);
        // SAFETY: last_error_ptr points at this thread's live, NUL-terminated message.
        let msg = unsafe { CStr::from_ptr(last_error_ptr()) };
        assert_eq!(msg.to_str().unwrap(), "bad size 3");
        assert_eq!(guard(|| panic!("boom")), WEFT_PANIC);
        // SAFETY: as above.
        let msg = unsafe { CStr::from_ptr(last_error_ptr()) };
        assert!(msg.to_str().unwrap().contains("boom"));
    }
}
