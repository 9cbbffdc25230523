//! Condition (Python's `threading.Condition`), over a weft_lock or a weft_rlock.

use super::lock::{weft_lock, weft_rlock};
use super::placed::Placed;
use super::{get, out_ptr, publish, share, Object, Tag};
use crate::futex::{Interrupt, PrivateWord};
use crate::status::{guard, weft_status, Error, Result, WEFT_NULL_ARGUMENT};
use crate::sync::{CondLock, Condition, Lock, RLock};
use crate::time::Deadline;
use std::ffi::c_void;
use std::sync::Arc;

/// The lock a condition was built over; it keeps the lock alive.
pub(crate) enum LockRef {
    Lock(Arc<weft_lock>),
    RLock(Arc<weft_rlock>),
    Own(RLock),
}

impl LockRef {
    fn get(&self) -> &dyn CondLock<W = PrivateWord> {
        match self {
            // Only private locks are accepted when a private condition is created.
            LockRef::Lock(l) => match &l.inner {
                Placed::Private(p) => p,
                Placed::Shared(_) => unreachable!("private condition over a shared lock"),
            },
            LockRef::RLock(r) => match &r.inner {
                Placed::Private(p) => p,
                Placed::Shared(_) => unreachable!("private condition over a shared rlock"),
            },
            LockRef::Own(r) => r,
        }
    }
}

impl CondLock for LockRef {
    type W = PrivateWord;
    fn mutex(&self) -> &Lock {
        self.get().mutex()
    }
    fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        self.get().acquire(deadline, interrupt)
    }
    fn release(&self) -> Result<()> {
        self.get().release()
    }
    fn is_owned(&self) -> bool {
        self.get().is_owned()
    }
    fn release_save(&self) -> Result<u32> {
        self.get().release_save()
    }
    fn acquire_restore(&self, saved: u32) {
        self.get().acquire_restore(saved)
    }
}

/// A condition variable (Python's `threading.Condition`). Thread-safe. `wait`, `wait_for`,
/// `notify` and `notify_all` require the lock: for an RLock the caller must own it; for a
/// Lock, which has no owner, it must be locked (Python's rule).
pub struct weft_condition {
    tag: Tag,
    cond: Condition<LockRef>,
}

impl Object for weft_condition {
    const NAME: &'static str = "weft_condition";
    const MAGIC: u64 = 0x7765_6674_636f_6e64;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

fn create(lock: LockRef, out: *mut *mut weft_condition) -> Result<()> {
    publish(weft_condition { tag: Tag::of::<weft_condition>(), cond: Condition::new(lock) }, out)
}

/// Creates a condition with a new re-entrant lock of its own (Python's `Condition()`).
/// Use `weft_condition_acquire`/`release` for the lock. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_new(out: *mut *mut weft_condition) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        create(LockRef::Own(RLock::new()), out)
    })
}

/// Creates a condition over `lock` (Python's `Condition(Lock())`); the condition keeps the
/// lock alive, and the lock may be used directly too. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `lock` must be NULL or a handle from weft; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_new_with_lock(lock: *mut weft_lock, out: *mut *mut weft_condition) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let l = unsafe { share(lock) }?;
        if l.inner.shared().is_some() {
            return Err(Error::invalid("a condition over a shared lock is created with weft_condition_new_in"));
        }
        create(LockRef::Lock(l), out)
    })
}

/// Creates a condition over `rlock` (Python's `Condition(RLock())`); waiting releases every
/// level the caller holds and restores them afterwards. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `rlock` must be NULL or a handle from weft; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_new_with_rlock(rlock: *mut weft_rlock, out: *mut *mut weft_condition) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let l = unsafe { share(rlock) }?;
        if l.inner.shared().is_some() {
            return Err(Error::invalid("a condition over a shared rlock is created with weft_condition_new_in"));
        }
        create(LockRef::RLock(l), out)
    })
}

/// Acquires the condition's lock (as `weft_lock_acquire` / `weft_rlock_acquire`).
///
/// # Safety
/// `cond` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_acquire(cond: *mut weft_condition, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(cond) }?.cond.lock().acquire(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable))
}

/// Releases the condition's lock (as `weft_lock_release` / `weft_rlock_release`).
///
/// # Safety
/// `cond` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_release(cond: *mut weft_condition) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(cond) }?.cond.lock().release())
}

/// Releases the lock, waits until notified or `timeout_ns` passes, and re-acquires the lock
/// before returning — always, even on timeout or cancellation. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_NOT_OWNER (lock not held; Python raises RuntimeError), WEFT_WOULD_BLOCK (timeout 0),
/// WEFT_TIMEOUT (Python returns False), WEFT_CANCELLED.
///
/// # Safety
/// `cond` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_wait(cond: *mut weft_condition, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(cond) }?.cond.wait(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable))
}

/// A predicate for `weft_condition_wait_for`, called with the lock held.
pub type weft_predicate = Option<unsafe extern "C" fn(ctx: *mut c_void) -> bool>;

/// Waits until `predicate(ctx)` returns true (Python's `wait_for`): the predicate is checked
/// first, then after every wake-up, with the lock held. WEFT_OK when it became true. Errors:
/// WEFT_NULL_ARGUMENT (`cond` or `predicate`), WEFT_NOT_OWNER, WEFT_WOULD_BLOCK / WEFT_TIMEOUT
/// (the predicate was still false when `timeout_ns` passed; Python returns the predicate's last
/// value), WEFT_CANCELLED.
///
/// # Safety
/// `cond` must be NULL or a handle from weft; `predicate` callable with `ctx`.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_wait_for(
    cond: *mut weft_condition,
    predicate: weft_predicate,
    ctx: *mut c_void,
    timeout_ns: u64,
) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let c = unsafe { get(cond) }?;
        let p = predicate.ok_or_else(|| Error::new(WEFT_NULL_ARGUMENT, "predicate is NULL"))?;
        // SAFETY: the caller promised `p` is callable with `ctx`.
        let mut pred = || unsafe { p(ctx) };
        c.cond.wait_for(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable, &mut pred)
    })
}

/// Wakes up to `n` waiting threads, longest-waiting first. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_NOT_OWNER.
///
/// # Safety
/// `cond` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_notify(cond: *mut weft_condition, n: usize) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(cond) }?.cond.notify(n))
}

/// Wakes every waiting thread. Errors: WEFT_NULL_ARGUMENT, WEFT_NOT_OWNER.
///
/// # Safety
/// `cond` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_notify_all(cond: *mut weft_condition) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(cond) }?.cond.notify_all())
}

/// Frees the condition (and its reference to the lock). NULL is a no-op.
///
/// # Safety
/// `cond` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_free(cond: *mut weft_condition) {
    // SAFETY: forwarded contract.
    unsafe { super::free(cond) }
}
