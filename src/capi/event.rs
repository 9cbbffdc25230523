//! Event (Python's `threading.Event`).

use super::placed::{create_in, from_token, on_placed, open_in, Placed};
use super::space::{weft_space, write_token};
use super::{get, out_ptr, publish, Object, Tag};
use crate::futex::{Interrupt, SharedWord};
use crate::space::object::KIND_EVENT;
use crate::status::{guard, guard_value, weft_status};
use crate::sync::Event;
use crate::time::Deadline;
use std::ffi::{c_char, c_void};

/// A flag threads can wait for (Python's `threading.Event`, or `multiprocessing.Event` when
/// created in a space). Thread-safe; a shared one is also process-safe. A waiter that dies
/// never holds up `set`: setting wakes every sleeper and waits for none.
pub struct weft_event {
    tag: Tag,
    event: Placed<Event, Event<SharedWord>>,
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
        publish(weft_event { tag: Tag::of::<weft_event>(), event: Placed::Private(Event::new()) }, out)
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
        on_placed!(unsafe { get(event) }?.event, e => e.set());
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
        on_placed!(unsafe { get(event) }?.event, e => e.clear());
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
    guard_value(false, || unsafe { get(event) }.is_ok_and(|e| on_placed!(e.event, x => x.is_set())))
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
    guard(|| {
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        on_placed!(unsafe { get(event) }?.event, e => e.wait(deadline, Interrupt::Cancellable))
    })
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

fn publish_shared(t: crate::space::shared::Typed<Event<SharedWord>>, out: *mut *mut weft_event) -> crate::status::Result<()> {
    publish(weft_event { tag: Tag::of::<weft_event>(), event: Placed::Shared(t) }, out)
}

/// Creates a cleared shared event in `space` (NULL: the default space), named `name` (NULL:
/// unnamed). Errors: as `weft_lock_new_in`.
///
/// # Safety
/// `space` must be NULL or a handle from weft; `name` NULL or a NUL-terminated string; `out`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn weft_event_new_in(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_event) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        publish_shared(unsafe { create_in(space, name, KIND_EVENT, Event::new()) }?, out)
    })
}

/// Opens the shared event named `name` in `space` (NULL: the default space).
/// Errors: as `weft_lock_open`.
///
/// # Safety
/// As `weft_lock_open`.
#[no_mangle]
pub unsafe extern "C" fn weft_event_open(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_event) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        publish_shared(unsafe { open_in(space, name, KIND_EVENT) }?, out)
    })
}

/// Writes a token for the shared event (see `weft_lock_token`).
///
/// # Safety
/// As `weft_lock_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_event_token(event: *const weft_event, buf: *mut c_void, cap: usize, len: *mut usize) -> weft_status {
    // SAFETY: forwarded contracts.
    guard(|| unsafe { write_token(get(event)?.event.shared(), "event", buf, cap, len) })
}

/// Opens the shared event a token designates (see `weft_lock_from_token`).
///
/// # Safety
/// As `weft_lock_from_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_event_from_token(token: *const c_void, len: usize, out: *mut *mut weft_event) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        publish_shared(unsafe { from_token(token, len, KIND_EVENT) }?, out)
    })
}
