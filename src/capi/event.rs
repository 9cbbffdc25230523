//! Event (Python's `threading.Event`).

use super::{get, out_ptr, publish, Object, Tag};
use crate::futex::Interrupt;
use crate::status::{guard, guard_value, weft_status};
use crate::sync::Event;
use crate::time::Deadline;

/// A flag threads can wait for. Thread-safe.
pub struct weft_event {
    tag: Tag,
    event: Event,
}

impl Object for weft_event {
    const NAME: &'static str = "weft_event";
    const MAGIC: u64 = 0x7765_6674_6576_6e74;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// Creates a cleared event in `*out` (free with `weft_event_free`). Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_event_new(out: *mut *mut weft_event) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        publish(weft_event { tag: Tag::of::<weft_event>(), event: Event::new() }, out)
    })
}

/// Sets the flag and wakes every waiter. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `event` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_event_set(event: *mut weft_event) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe { get(event) }?.event.set();
        Ok(())
    })
}

/// Clears the flag. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `event` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_event_clear(event: *mut weft_event) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe { get(event) }?.event.clear();
        Ok(())
    })
}

/// True while the flag is set (false for NULL).
///
/// # Safety
/// `event` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_event_is_set(event: *const weft_event) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(event) }.is_ok_and(|e| e.event.is_set()))
}

/// Waits until the flag is set, up to `timeout_ns`. WEFT_OK when it is set, or was set while
/// waiting even if cleared again since (Python returns True then). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK (timeout 0, not set), WEFT_TIMEOUT (Python returns
/// False), WEFT_CANCELLED.
///
/// # Safety
/// `event` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_event_wait(event: *mut weft_event, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(event) }?.event.wait(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable))
}

/// Frees the event. NULL is a no-op.
///
/// # Safety
/// `event` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_event_free(event: *mut weft_event) {
    // SAFETY: forwarded contract.
    unsafe { super::free(event) }
}
