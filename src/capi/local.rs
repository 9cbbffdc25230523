//! Thread-local storage (Python's `threading.local`).

use super::{get, out_ptr, publish, Object, Tag};
use crate::status::{guard, guard_value, weft_status, Error, WEFT_INVALID_STATE};
use crate::thread::local::{Destructor, Local};
use std::ffi::c_void;

/// A thread-local slot: each thread sees its own pointer, NULL until it sets one.
/// Thread-safe.
pub struct weft_local {
    tag: Tag,
    local: Local,
}

impl Object for weft_local {
    const NAME: &'static str = "weft_local";
    const MAGIC: u64 = 0x7765_6674_6c6f_636c;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// Destroys a thread's non-NULL value.
pub type weft_destructor = Option<unsafe extern "C" fn(value: *mut c_void)>;

/// Creates a slot in `*out`. `destructor` (may be NULL) is called with each non-NULL value
/// when its thread exits (before a join of a weft thread returns; foreign threads too), when a
/// thread replaces its value with a different one, and for every remaining value when the slot
/// is freed. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable; `destructor` callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn weft_local_new(destructor: weft_destructor, out: *mut *mut weft_local) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        let d = destructor.map(|f| {
            // SAFETY: the caller promised `f` accepts the values it stored.
            Box::new(move |v: usize| unsafe { f(v as *mut c_void) }) as Destructor
        });
        publish(weft_local { tag: Tag::of::<weft_local>(), local: Local::new(d) }, out)
    })
}

/// Sets the calling thread's value (NULL clears it without calling the destructor).
/// Errors: WEFT_NULL_ARGUMENT (`local`), WEFT_INVALID_STATE (the thread is exiting).
///
/// # Safety
/// `local` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_local_set(local: *mut weft_local, value: *mut c_void) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        if unsafe { get(local) }?.local.set(value as usize) {
            Ok(())
        } else {
            Err(Error::new(WEFT_INVALID_STATE, "the calling thread is exiting"))
        }
    })
}

/// The calling thread's value, or NULL when unset (or `local` is NULL).
///
/// # Safety
/// `local` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_local_get(local: *const weft_local) -> *mut c_void {
    // SAFETY: forwarded contract.
    guard_value(std::ptr::null_mut(), || unsafe { get(local) }.map_or(0, |l| l.local.get()) as *mut c_void)
}

/// Frees the slot, destroying every thread's remaining value on the calling thread. No other
/// thread may use the slot during or after this call. NULL is a no-op.
///
/// # Safety
/// `local` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_local_free(local: *mut weft_local) {
    // SAFETY: forwarded contract.
    unsafe { super::free(local) }
}
