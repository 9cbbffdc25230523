//! Semaphore and BoundedSemaphore (Python's `threading.Semaphore` / `BoundedSemaphore`).

use super::placed::{create_in, from_token, on_placed, open_in, Placed};
use super::space::{weft_space, write_token};
use super::{get, out_ptr, publish, Object, Tag};
use crate::futex::{Interrupt, SharedWord};
use crate::space::object::KIND_SEMAPHORE;
use crate::status::{guard, guard_value, weft_status};
use crate::sync::Semaphore;
use crate::time::Deadline;
use std::ffi::{c_char, c_void};

/// A counting semaphore, optionally bounded (Python's `threading.Semaphore` /
/// `BoundedSemaphore`, or the `multiprocessing` ones when created in a space). Thread-safe; a
/// shared one is also process-safe. It has no owner, so any thread may release it — and so the
/// death of a process that took a permit is not detected: the permit stays taken until someone
/// releases it (Python's and POSIX semaphores behave the same). Guard state that a dead process
/// may leave half-done with a `weft_lock`, which reports its holder's death.
pub struct weft_semaphore {
    tag: Tag,
    sem: Placed<Semaphore, Semaphore<SharedWord>>,
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
        publish(weft_semaphore { tag: Tag::of::<weft_semaphore>(), sem: Placed::Private(Semaphore::new(value, bounded)) }, out)
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
    guard(|| {
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        on_placed!(unsafe { get(sem) }?.sem, s => s.acquire(deadline, Interrupt::Cancellable))
    })
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
    guard(|| on_placed!(unsafe { get(sem) }?.sem, s => s.release(n)))
}

/// The current number of permits (a snapshot; 0 for NULL).
///
/// # Safety
/// `sem` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_value(sem: *const weft_semaphore) -> u32 {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(sem) }.map_or(0, |s| on_placed!(s.sem, x => x.value())))
}

/// True for a bounded semaphore (false for NULL).
///
/// # Safety
/// `sem` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_is_bounded(sem: *const weft_semaphore) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(sem) }.is_ok_and(|s| on_placed!(s.sem, x => x.is_bounded())))
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

fn publish_shared(t: crate::space::shared::Typed<Semaphore<SharedWord>>, out: *mut *mut weft_semaphore) -> crate::status::Result<()> {
    publish(weft_semaphore { tag: Tag::of::<weft_semaphore>(), sem: Placed::Shared(t) }, out)
}

/// Creates a shared semaphore with `value` permits (bounded when `bounded` is true: Python's
/// `multiprocessing.BoundedSemaphore`) in `space` (NULL: the default space), named `name`
/// (NULL: unnamed). Errors: as `weft_lock_new_in`.
///
/// # Safety
/// `space` must be NULL or a handle from weft; `name` NULL or a NUL-terminated string; `out`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_new_in(
    space: *mut weft_space,
    name: *const c_char,
    value: u32,
    bounded: bool,
    out: *mut *mut weft_semaphore,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        publish_shared(unsafe { create_in(space, name, KIND_SEMAPHORE, Semaphore::new(value, bounded)) }?, out)
    })
}

/// Opens the shared semaphore named `name` in `space` (NULL: the default space).
/// Errors: as `weft_lock_open`.
///
/// # Safety
/// As `weft_lock_open`.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_open(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_semaphore) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        publish_shared(unsafe { open_in(space, name, KIND_SEMAPHORE) }?, out)
    })
}

/// Writes a token for the shared semaphore (see `weft_lock_token`).
///
/// # Safety
/// As `weft_lock_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_token(sem: *const weft_semaphore, buf: *mut c_void, cap: usize, len: *mut usize) -> weft_status {
    // SAFETY: forwarded contracts.
    guard(|| unsafe { write_token(get(sem)?.sem.shared(), "semaphore", buf, cap, len) })
}

/// Opens the shared semaphore a token designates (see `weft_lock_from_token`).
///
/// # Safety
/// As `weft_lock_from_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_semaphore_from_token(token: *const c_void, len: usize, out: *mut *mut weft_semaphore) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        publish_shared(unsafe { from_token(token, len, KIND_SEMAPHORE) }?, out)
    })
}
