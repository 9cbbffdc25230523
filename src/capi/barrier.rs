//! Barrier (Python's `threading.Barrier`).

use super::{get, out_ptr, publish, Object, Tag};
use crate::futex::Interrupt;
use crate::status::{guard, guard_value, weft_status, Error, WEFT_OK};
use crate::sync::barrier::Action;
use crate::sync::Barrier;
use crate::time::Deadline;
use std::ffi::c_void;

/// A barrier for a fixed number of threads. Thread-safe.
pub struct weft_barrier {
    tag: Tag,
    barrier: Barrier,
}

impl Object for weft_barrier {
    const NAME: &'static str = "weft_barrier";
    const MAGIC: u64 = 0x7765_6674_6261_7272;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// The action run by one thread when the last party arrives, before any is released. A
/// status other than WEFT_OK breaks the barrier: that thread's wait returns the status, the
/// others get WEFT_BROKEN.
pub type weft_barrier_action = Option<unsafe extern "C" fn(ctx: *mut c_void) -> weft_status>;

/// Creates a barrier for `parties` threads with an optional `action` (NULL for none) called
/// with `ctx`. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (`parties` is 0).
///
/// # Safety
/// `out` must be writable; `action`, if given, callable from any thread with `ctx` for the
/// barrier's lifetime.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_new(
    parties: u32,
    action: weft_barrier_action,
    ctx: *mut c_void,
    out: *mut *mut weft_barrier,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        let ctx = ctx as usize;
        let action: Option<Action> = action.map(|f| {
            Box::new(move || {
                // SAFETY: the caller promised `f` is callable with `ctx`.
                let s = unsafe { f(ctx as *mut c_void) };
                if s == WEFT_OK {
                    Ok(())
                } else {
                    let name = crate::status::name(s).to_string_lossy();
                    Err(Error::new(s, format!("barrier action failed with {name}; the barrier is broken")))
                }
            }) as Action
        });
        publish(weft_barrier { tag: Tag::of::<weft_barrier>(), barrier: Barrier::new(parties, action)? }, out)
    })
}

/// Waits until all parties have called it, up to `timeout_ns`. On WEFT_OK, `*index` (if not
/// NULL) receives the arrival index, 0 to parties - 1; the thread that arrives last (index
/// parties - 1) runs the action. Errors: WEFT_NULL_ARGUMENT, WEFT_BROKEN (the barrier is or
/// became broken: aborted, reset during the wait, another party timed out), WEFT_TIMEOUT (this
/// thread's timeout passed while it waited for the other parties; the barrier is now broken for
/// all, as in Python — so timeout 0 is not a harmless poll here; a timeout that passes while
/// the previous round is still leaving returns WEFT_TIMEOUT without breaking anything),
/// WEFT_CANCELLED (breaks it too), or the action's failure status.
///
/// # Safety
/// `barrier` must be NULL or a handle from weft; `index` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_wait(barrier: *mut weft_barrier, timeout_ns: u64, index: *mut u32) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let b = unsafe { get(barrier) }?;
        let i = b.barrier.wait(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable)?;
        if !index.is_null() {
            // SAFETY: non-null, writable per the contract.
            unsafe { index.write(i) };
        }
        Ok(())
    })
}

/// Returns the barrier to its initial state; threads waiting in it get WEFT_BROKEN.
/// Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `barrier` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_reset(barrier: *mut weft_barrier) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe { get(barrier) }?.barrier.reset();
        Ok(())
    })
}

/// Breaks the barrier: current and later waiters get WEFT_BROKEN until `weft_barrier_reset`.
/// Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `barrier` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_abort(barrier: *mut weft_barrier) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe { get(barrier) }?.barrier.abort();
        Ok(())
    })
}

/// Number of parties (0 for NULL).
///
/// # Safety
/// `barrier` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_parties(barrier: *const weft_barrier) -> u32 {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(barrier) }.map_or(0, |b| b.barrier.parties()))
}

/// Number of threads currently waiting for the barrier to fill (0 for NULL).
///
/// # Safety
/// `barrier` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_n_waiting(barrier: *const weft_barrier) -> u32 {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(barrier) }.map_or(0, |b| b.barrier.n_waiting()))
}

/// True when the barrier is broken (false for NULL).
///
/// # Safety
/// `barrier` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_broken(barrier: *const weft_barrier) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(barrier) }.is_ok_and(|b| b.barrier.broken()))
}

/// Frees the barrier. NULL is a no-op.
///
/// # Safety
/// `barrier` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_free(barrier: *mut weft_barrier) {
    // SAFETY: forwarded contract.
    unsafe { super::free(barrier) }
}
