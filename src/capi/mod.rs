//! THE C ABI. Every `extern "C"` function of weft lives in this module, one file per domain.
//! Each export is thin: check arguments, call the core, map errors, catch panics.
//!
//! Objects are handed to C as pointers to reference-counted Rust values carrying a tag. A
//! handle is checked on every call: NULL gives `WEFT_NULL_ARGUMENT`, and a pointer whose tag is
//! not that of a live object of the expected type (a freed handle, a handle of another type)
//! gives `WEFT_INVALID_ARGUMENT` instead of a crash where the memory is still readable —
//! a best-effort guard, not a guarantee: using a freed handle is a caller bug.

#![allow(non_camel_case_types)]

pub mod array;
pub mod barrier;
pub mod call;
pub mod command;
pub mod condition;
pub mod dict;
pub mod event;
pub mod future;
pub mod list;
pub mod pipe;
pub mod pool;
pub mod local;
pub mod lock;
pub(crate) mod placed;
pub mod process;
pub mod queue;
pub mod semaphore;
pub mod shm;
pub mod space;
pub mod status;
pub mod thread;

use crate::status::{set_last_error, Error, Result, WEFT_INVALID_ARGUMENT, WEFT_NULL_ARGUMENT};
use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const DEAD: u64 = 0xdead_dead_dead_dead;

/// The tag at the start of every object handed to C.
#[derive(Debug)]
pub(crate) struct Tag(AtomicU64);

impl Tag {
    pub(crate) fn of<T: Object>() -> Tag {
        Tag(AtomicU64::new(T::MAGIC))
    }
}

/// A type whose values C holds through opaque pointers.
pub(crate) trait Object: Sized + Send + Sync + 'static {
    /// C type name, for messages.
    const NAME: &'static str;
    /// Tag value of live objects of this type.
    const MAGIC: u64;
    /// The object's tag.
    fn tag(&self) -> &Tag;
    /// Called once when the C handle is freed, before the reference is dropped.
    fn on_free(&self) {}
}

/// Gives `obj` to C through `out`. `out` must have been checked with [`out_ptr`].
pub(crate) fn publish<T: Object>(obj: T, out: *mut *mut T) -> Result<()> {
    let raw = Arc::into_raw(Arc::new(obj)) as *mut T;
    // SAFETY: `out` was checked non-null by the caller and points at writable storage for a
    // pointer (the C API contract).
    unsafe { out.write(raw) };
    Ok(())
}

/// Checks an out-pointer before any work is done.
pub(crate) fn out_ptr<T>(out: *mut T, name: &'static str) -> Result<()> {
    if out.is_null() {
        Err(Error::new(WEFT_NULL_ARGUMENT, format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

/// Checks a required input pointer.
pub(crate) fn in_ptr<T>(p: *const T, name: &'static str) -> Result<()> {
    if p.is_null() {
        Err(Error::new(WEFT_NULL_ARGUMENT, format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

/// Borrows the object behind a C handle.
///
/// # Safety
/// `p` must be NULL or a pointer obtained from weft for type `T` (possibly already freed, in
/// which case the tag check usually catches it).
pub(crate) unsafe fn get<'a, T: Object>(p: *const T) -> Result<&'a T> {
    if p.is_null() {
        return Err(Error::new(WEFT_NULL_ARGUMENT, format!("{} handle is NULL", T::NAME)));
    }
    // SAFETY: per the contract `p` points at a T created by `publish`.
    let obj = unsafe { &*p };
    if obj.tag().0.load(Ordering::Relaxed) != T::MAGIC {
        return Err(Error::new(WEFT_INVALID_ARGUMENT, format!("not a live {} (freed or of another type)", T::NAME)));
    }
    Ok(obj)
}

/// A new strong reference to the object behind a C handle.
///
/// # Safety
/// As [`get`].
pub(crate) unsafe fn share<T: Object>(p: *const T) -> Result<Arc<T>> {
    // SAFETY: forwarded contract.
    unsafe { get(p) }?;
    // SAFETY: `p` came from Arc::into_raw in `publish` and the object is live.
    unsafe {
        Arc::increment_strong_count(p);
        Ok(Arc::from_raw(p))
    }
}

/// Frees a C handle: NULL is a no-op; a second free is reported in the last-error message
/// and otherwise ignored.
///
/// # Safety
/// As [`get`].
pub(crate) unsafe fn free<T: Object>(p: *mut T) {
    if p.is_null() {
        return;
    }
    crate::status::guard_value((), || {
        // SAFETY: per the contract `p` points at a T created by `publish`.
        let obj = unsafe { &*p };
        if obj.tag().0.compare_exchange(T::MAGIC, DEAD, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            set_last_error(&format!("{}_free: not a live {} (double free?); ignored", T::NAME, T::NAME));
            return;
        }
        obj.on_free();
        // SAFETY: the tag swap above makes this the one release of the C reference.
        drop(unsafe { Arc::from_raw(p as *const T) });
    })
}

/// Reads an optional NUL-terminated UTF-8 string.
///
/// # Safety
/// `s` must be NULL or point at a NUL-terminated string.
pub(crate) unsafe fn opt_str(s: *const c_char, name: &'static str) -> Result<Option<String>> {
    if s.is_null() {
        return Ok(None);
    }
    // SAFETY: per the contract.
    let c = unsafe { CStr::from_ptr(s) };
    c.to_str()
        .map(|s| Some(s.to_owned()))
        .map_err(|_| Error::new(WEFT_INVALID_ARGUMENT, format!("{name} is not valid UTF-8")))
}

/// Borrows `(data, len)` as a slice; `data` may be NULL only when `len` is 0.
///
/// # Safety
/// `data` must point at `len` readable bytes (or be NULL with `len == 0`).
pub(crate) unsafe fn bytes<'a>(data: *const std::ffi::c_void, len: usize, name: &'static str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Error::new(WEFT_NULL_ARGUMENT, format!("{name} is NULL but its length is {len}")));
    }
    // SAFETY: per the contract.
    Ok(unsafe { std::slice::from_raw_parts(data as *const u8, len) })
}

/// Borrows `(data, cap)` as a writable slice; `data` may be NULL only when `cap` is 0.
///
/// # Safety
/// `data` must point at `cap` writable bytes (or be NULL with `cap == 0`), not otherwise
/// accessed while the slice lives.
pub(crate) unsafe fn bytes_mut<'a>(data: *mut std::ffi::c_void, cap: usize, name: &'static str) -> Result<&'a mut [u8]> {
    if cap == 0 {
        return Ok(&mut []);
    }
    if data.is_null() {
        return Err(Error::new(WEFT_NULL_ARGUMENT, format!("{name} is NULL but its length is {cap}")));
    }
    // SAFETY: per the contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(data as *mut u8, cap) })
}
