//! Status names, the last-error message, the version, and byte buffers weft hands out.

use super::{get, publish, out_ptr, Object, Tag};
use crate::status::{self, guard, guard_value, weft_status};
use std::ffi::{c_char, c_void};

/// Name of a status code, such as `"WEFT_TIMEOUT"`; `"WEFT_UNKNOWN_STATUS"` for codes weft does
/// not define. Never NULL; the string is static. Thread-safe.
#[no_mangle]
pub extern "C" fn weft_status_name(status: weft_status) -> *const c_char {
    status::name(status).as_ptr()
}

/// One-line English description of a status code (static, never NULL). Thread-safe.
#[no_mangle]
pub extern "C" fn weft_status_str(status: weft_status) -> *const c_char {
    status::describe(status).as_ptr()
}

/// The message of the last failure on the calling thread: which argument, which state, which
/// OS call. Empty string when there was none. Successful calls do not clear it. The pointer
/// stays valid until the next failing weft call on this thread. Never NULL.
#[no_mangle]
pub extern "C" fn weft_last_error_message() -> *const c_char {
    status::last_error_ptr()
}

/// The OS error number (errno) behind the last failure on the calling thread: set with
/// WEFT_OS_ERROR, WEFT_PERMISSION_DENIED and the WEFT_NOT_FOUND of a program that could not be
/// executed; 0 when the last failure had no OS cause. Updated by every failing weft call, like
/// `weft_last_error_message`.
#[no_mangle]
pub extern "C" fn weft_last_error_errno() -> i32 {
    status::last_errno()
}

/// The version of the loaded library, such as `"0.1.0"` (static, never NULL). Compare with
/// `WEFT_VERSION_STRING` to detect a header/library mismatch.
#[no_mangle]
pub extern "C" fn weft_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The version of the loaded library as `major * 10000 + minor * 100 + patch`.
#[no_mangle]
pub extern "C" fn weft_version_number() -> u32 {
    let v = |s: &str| s.parse::<u32>().unwrap_or(0);
    v(env!("CARGO_PKG_VERSION_MAJOR")) * 10000 + v(env!("CARGO_PKG_VERSION_MINOR")) * 100 + v(env!("CARGO_PKG_VERSION_PATCH"))
}

/// An immutable byte buffer owned by the caller (task results, messages). Free it with
/// `weft_bytes_free`. Thread-safe to read from any thread.
pub struct weft_bytes {
    tag: Tag,
    data: Vec<u8>,
}

impl Object for weft_bytes {
    const NAME: &'static str = "weft_bytes";
    const MAGIC: u64 = 0x7765_6674_6279_7465;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// Wraps bytes for C.
pub(crate) fn give_bytes(data: Vec<u8>, out: *mut *mut weft_bytes) -> crate::status::Result<()> {
    publish(weft_bytes { tag: Tag::of::<weft_bytes>(), data }, out)
}

/// Wraps byte strings for C as one packed buffer: for each its length as a native-endian
/// `uint64_t`, then its bytes, with no padding (the format of `weft_list_items` and
/// `weft_queue_get_many`). Errors: WEFT_NO_MEMORY.
pub(crate) fn give_packed(items: &[Vec<u8>], out: *mut *mut weft_bytes) -> crate::status::Result<()> {
    let mut packed = Vec::new();
    packed
        .try_reserve_exact(items.iter().map(|v| 8 + v.len()).sum())
        .map_err(|_| crate::status::Error::new(crate::status::WEFT_NO_MEMORY, "cannot pack the items"))?;
    for v in items {
        packed.extend_from_slice(&(v.len() as u64).to_ne_bytes());
        packed.extend_from_slice(v);
    }
    give_bytes(packed, out)
}

/// Makes a weft_bytes holding a copy of `data[0..len]` (for tests and bindings that build
/// results themselves). Errors: WEFT_NULL_ARGUMENT (`out` NULL, or `data` NULL with len > 0).
///
/// # Safety
/// `data` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn weft_bytes_new(data: *const c_void, len: usize, out: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let b = unsafe { super::bytes(data, len, "data") }?;
        give_bytes(b.to_vec(), out)
    })
}

/// Pointer to the buffer's bytes (valid until `weft_bytes_free`); NULL for a NULL or invalid
/// buffer. A zero-length buffer returns a non-NULL pointer that must not be read.
///
/// # Safety
/// `bytes` must be NULL or a buffer from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_bytes_data(bytes: *const weft_bytes) -> *const c_void {
    // SAFETY: forwarded contract.
    guard_value(std::ptr::null(), || unsafe { get(bytes) }.map_or(std::ptr::null(), |b| b.data.as_ptr() as *const c_void))
}

/// Length of the buffer in bytes (0 for NULL or an invalid buffer).
///
/// # Safety
/// `bytes` must be NULL or a buffer from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_bytes_len(bytes: *const weft_bytes) -> usize {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(bytes) }.map_or(0, |b| b.data.len()))
}

/// Frees a buffer. NULL is a no-op; a double free is detected where possible and ignored.
///
/// # Safety
/// `bytes` must be NULL or a buffer from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_bytes_free(bytes: *mut weft_bytes) {
    // SAFETY: forwarded contract.
    unsafe { super::free(bytes) }
}
