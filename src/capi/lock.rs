//! Lock and RLock (Python's `threading.Lock` and `threading.RLock`).

use super::{get, out_ptr, publish, Object, Tag};
use crate::futex::Interrupt;
use crate::status::{guard, guard_value, weft_status};
use crate::sync::{Lock, RLock};
use crate::time::Deadline;

/// A mutual-exclusion lock (Python's `threading.Lock`). It has no owner: any thread may
/// release it. Thread-safe. Freeing it while other threads use it is undefined behaviour.
pub struct weft_lock {
    tag: Tag,
    pub(crate) lock: Lock,
}

impl Object for weft_lock {
    const NAME: &'static str = "weft_lock";
    const MAGIC: u64 = 0x7765_6674_6c6f_636b;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// Creates an unlocked lock in `*out` (free with `weft_lock_free`). Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_new(out: *mut *mut weft_lock) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        publish(weft_lock { tag: Tag::of::<weft_lock>(), lock: Lock::new() }, out)
    })
}

/// Acquires the lock, blocking up to `timeout_ns` (0: try once; WEFT_FOREVER: no limit).
/// Not re-entrant: a thread acquiring a lock it holds waits for itself (until its timeout).
/// Errors: WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK (timeout 0 and held), WEFT_TIMEOUT,
/// WEFT_CANCELLED (the calling weft thread was asked to cancel).
///
/// # Safety
/// `lock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_acquire(lock: *mut weft_lock, timeout_ns: u64) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let l = unsafe { get(lock) }?;
        if l.lock.try_acquire() {
            return Ok(());
        }
        l.lock.acquire(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable)
    })
}

/// Releases the lock; any thread may release it, as in Python. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_INVALID_STATE (the lock is not locked; Python raises RuntimeError).
///
/// # Safety
/// `lock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_release(lock: *mut weft_lock) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(lock) }?.lock.release())
}

/// True while some thread holds the lock (Python's `locked()`). False for NULL.
///
/// # Safety
/// `lock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_locked(lock: *const weft_lock) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(lock) }.is_ok_and(|l| l.lock.locked()))
}

/// Frees the lock handle (a condition built over it keeps the lock alive). NULL is a no-op.
///
/// # Safety
/// `lock` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_free(lock: *mut weft_lock) {
    // SAFETY: forwarded contract.
    unsafe { super::free(lock) }
}

/// A re-entrant lock (Python's `threading.RLock`): the owning thread may acquire it again;
/// it is free when released as many times. Thread-safe; only the owner may release.
pub struct weft_rlock {
    tag: Tag,
    pub(crate) lock: RLock,
}

impl Object for weft_rlock {
    const NAME: &'static str = "weft_rlock";
    const MAGIC: u64 = 0x7765_6674_726c_636b;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// Creates an unlocked re-entrant lock in `*out` (free with `weft_rlock_free`).
/// Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_new(out: *mut *mut weft_rlock) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        publish(weft_rlock { tag: Tag::of::<weft_rlock>(), lock: RLock::new() }, out)
    })
}

/// Acquires the lock, or one more level of it when the caller already owns it (never blocks
/// then). Blocks up to `timeout_ns`. Errors: WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK,
/// WEFT_TIMEOUT, WEFT_CANCELLED, WEFT_INVALID_ARGUMENT (depth overflow at 2^32 - 1).
///
/// # Safety
/// `rlock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_acquire(rlock: *mut weft_rlock, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(rlock) }?.lock.acquire(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable))
}

/// Releases one level. Errors: WEFT_NULL_ARGUMENT, WEFT_NOT_OWNER (the caller does not own
/// it; Python raises RuntimeError).
///
/// # Safety
/// `rlock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_release(rlock: *mut weft_rlock) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(rlock) }?.lock.release())
}

/// True when the calling thread owns the lock. False for NULL.
///
/// # Safety
/// `rlock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_is_owned(rlock: *const weft_rlock) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(rlock) }.is_ok_and(|l| l.lock.is_owned()))
}

/// How many levels the calling thread holds (0 when it does not own the lock, or NULL).
///
/// # Safety
/// `rlock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_depth(rlock: *const weft_rlock) -> u32 {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(rlock) }.map_or(0, |l| l.lock.depth()))
}

/// Frees the handle (a condition built over it keeps the lock alive). NULL is a no-op.
///
/// # Safety
/// `rlock` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_free(rlock: *mut weft_rlock) {
    // SAFETY: forwarded contract.
    unsafe { super::free(rlock) }
}
