//! Semaphore and BoundedSemaphore (Python's `threading.Semaphore` / `BoundedSemaphore`).

use super::{get, out_ptr, publish, Object, Tag};
use crate::futex::Interrupt;
use crate::status::{guard, guard_value, weft_status};
use crate::sync::Semaphore;
use crate::time::Deadline;

/// A counting semaphore, optionally bounded. Thread-safe; it has no owner, so any thread may
/// release it.
pub struct weft_semaphore {
    tag: Tag,
    sem: Semaphore,
}

impl Object for weft_semaphore {
    const NAME: &'static str = "weft_semaphore";
    const MAGIC: u64 = 0x7765_6674_7365_6d61;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

fn create(value: u32, bounded: bool, out: *mut *mut weft_semaphore) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        publish(weft_semaphore { tag: Tag::of::<weft_semaphore>(), sem: Semaphore::new(value, bounded) }, out)
    })
}

/// Creates a semaphore holding `value` permits (Python's `Semaphore(value)`), in `*out`.
/// Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_new(value: u32, out: *mut *mut weft_semaphore) -> weft_status {
    create(value, false, out)
}

/// Creates a bounded semaphore (Python's `BoundedSemaphore(value)`): releasing it above
/// `value` permits fails with WEFT_INVALID_STATE. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_new_bounded(value: u32, out: *mut *mut weft_semaphore) -> weft_status {
    create(value, true, out)
}

/// Takes one permit, blocking up to `timeout_ns` while there is none. Errors:
/// WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK (timeout 0), WEFT_TIMEOUT, WEFT_CANCELLED.
///
/// # Safety
/// `sem` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_acquire(sem: *mut weft_semaphore, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(sem) }?.sem.acquire(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable))
}

/// Adds `n` permits, waking up to `n` waiters (Python's `release(n)`). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (`n` is 0 or the count would pass 2^32 - 1),
/// WEFT_INVALID_STATE (a bounded semaphore would exceed its initial value; nothing is added;
/// Python raises ValueError).
///
/// # Safety
/// `sem` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_release(sem: *mut weft_semaphore, n: u32) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(sem) }?.sem.release(n))
}

/// The current number of permits (a snapshot; 0 for NULL).
///
/// # Safety
/// `sem` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_value(sem: *const weft_semaphore) -> u32 {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(sem) }.map_or(0, |s| s.sem.value()))
}

/// True for a bounded semaphore (false for NULL).
///
/// # Safety
/// `sem` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_is_bounded(sem: *const weft_semaphore) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(sem) }.is_ok_and(|s| s.sem.is_bounded()))
}

/// Frees the semaphore. NULL is a no-op.
///
/// # Safety
/// `sem` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_free(sem: *mut weft_semaphore) {
    // SAFETY: forwarded contract.
    unsafe { super::free(sem) }
}
