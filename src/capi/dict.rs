//! Shared dict (Python's `Manager().dict()`, without a manager process): bytes keys to bytes
//! values in a space.

use super::space::{required_name, space_or_default, weft_space, write_token};
use super::status::{give_bytes, weft_bytes};
use super::{get, out_ptr, publish, Object, Tag};
use crate::space::dict::SharedDict;
use crate::space::object::KIND_DICT;
use crate::space::shared::SharedRef;
use crate::status::{guard, weft_status, Error, Result, WEFT_BUFFER_TOO_SMALL};
use crate::time::Deadline;
use std::ffi::{c_char, c_void};

/// A dict of byte strings to byte strings living in a space (Python's `Manager().dict()`,
/// without a manager process): every process that opens it reads and updates the same entries.
/// Keys and values are copied in and out; both may be empty and up to 1 GiB. Iteration
/// (`weft_dict_items`) follows insertion order, as in Python.
///
/// Thread-safe and process-safe: every call holds the dict's robust lock. A process killed in
/// the middle of an update leaves the dict as it was before that update or as it is after it —
/// never in between — and the next call repairs it without reporting anything (each update
/// commits with one store; see `src/space/dict.rs`). The entries' memory returns to the space
/// with the last handle on the dict.
pub struct weft_dict {
    tag: Tag,
    r: SharedRef,
}

impl Object for weft_dict {
    const NAME: &'static str = "weft_dict";
    const MAGIC: u64 = 0x7765_6674_6469_6374;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

impl weft_dict {
    fn view(&self) -> Result<SharedDict<'_>> {
        SharedDict::open(self.r.handle().space(), self.r.object())
    }
}

fn publish_dict(r: SharedRef, out: *mut *mut weft_dict) -> Result<()> {
    SharedDict::open(r.handle().space(), r.object())?;
    publish(weft_dict { tag: Tag::of::<weft_dict>(), r }, out)
}

/// Reads a key or value argument.
///
/// # Safety
/// `p` must point at `len` readable bytes (or be NULL with `len == 0`).
unsafe fn arg<'a>(p: *const c_void, len: usize, name: &'static str) -> Result<&'a [u8]> {
    // SAFETY: forwarded contract.
    unsafe { super::bytes(p, len, name) }
}

/// Writes `v` to `*out` as an owned weft_bytes when `out` is not NULL.
fn give_opt(v: Vec<u8>, out: *mut *mut weft_bytes) -> Result<()> {
    if out.is_null() {
        Ok(())
    } else {
        give_bytes(v, out)
    }
}

/// Creates an empty shared dict in `space` (NULL: the default space, inherited by forked
/// children), named `name` (NULL: unnamed). Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT
/// (bad name), WEFT_EXISTS, WEFT_NO_MEMORY, WEFT_CORRUPTED, WEFT_TIMEOUT, WEFT_NOT_RECOVERABLE,
/// WEFT_OS_ERROR.
///
/// # Safety
/// `space` must be NULL or a handle from weft; `name` NULL or a NUL-terminated string; `out`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_new_in(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_dict) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contracts.
        let (h, name) = unsafe { (space_or_default(space)?, super::opt_str(name, "name")?) };
        let mut init = |p: *mut u8| {
            // SAFETY: a fresh, 64-aligned payload of payload_size() bytes nobody else reaches.
            unsafe { SharedDict::init(p) }
        };
        let r = SharedRef::create(h, KIND_DICT, SharedDict::payload_size(), name.as_deref(), &mut init)?;
        publish_dict(r, out)
    })
}

/// Opens the shared dict named `name` in `space` (NULL: the default space). Errors: as
/// `weft_lock_open`.
///
/// # Safety
/// `space` must be NULL or a handle from weft; `name` a NUL-terminated string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_open(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_dict) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contracts.
        let (h, name) = unsafe { (space_or_default(space)?, required_name(name)?) };
        publish_dict(SharedRef::open(h, &name, KIND_DICT, Some(SharedDict::payload_size()))?, out)
    })
}

/// Writes a token for the dict (see `weft_lock_token`).
///
/// # Safety
/// As `weft_lock_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_token(dict: *const weft_dict, buf: *mut c_void, cap: usize, len: *mut usize) -> weft_status {
    // SAFETY: forwarded contracts.
    guard(|| unsafe { write_token(Some(&get(dict)?.r), "dict", buf, cap, len) })
}

/// Opens the dict a token designates (see `weft_lock_from_token`).
///
/// # Safety
/// As `weft_lock_from_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_from_token(token: *const c_void, len: usize, out: *mut *mut weft_dict) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let bytes = unsafe { super::bytes(token, len, "token") }?;
        publish_dict(SharedRef::from_token(bytes, KIND_DICT, Some(SharedDict::payload_size()))?, out)
    })
}

/// Sets `d[key] = value` (a new key goes last in iteration order; replacing keeps the key's
/// place). Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (a key or value above 1 GiB),
/// WEFT_NO_MEMORY (space full; the dict is unchanged), WEFT_CORRUPTED, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `dict` must be NULL or a handle from weft; `key`/`value` must point at `key_len`/`value_len`
/// readable bytes (or be NULL with length 0).
#[no_mangle]
pub unsafe extern "C" fn weft_dict_set(
    dict: *mut weft_dict,
    key: *const c_void,
    key_len: usize,
    value: *const c_void,
    value_len: usize,
) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (d, k, v) = unsafe { (get(dict)?, arg(key, key_len, "key")?, arg(value, value_len, "value")?) };
        d.view()?.set(k, v, Deadline::Never)
    })
}

/// Returns a copy of `d[key]` in `*value` (free with `weft_bytes_free`). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_NOT_FOUND (no such key; Python's KeyError), WEFT_CORRUPTED,
/// WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `dict` must be NULL or a handle from weft; `key` `key_len` readable bytes; `value` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_get(dict: *const weft_dict, key: *const c_void, key_len: usize, value: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        out_ptr(value, "value")?;
        // SAFETY: forwarded contracts.
        let (d, k) = unsafe { (get(dict)?, arg(key, key_len, "key")?) };
        match d.view()?.get(k, Deadline::Never)? {
            Some(v) => give_bytes(v, value),
            None => Err(Error::new(crate::status::WEFT_NOT_FOUND, "no such key in the dict")),
        }
    })
}

/// Copies `d[key]` into `buf` (`cap` bytes) and its length into `*len`. When the value does
/// not fit, nothing is copied, `*len` receives the size needed and the call returns
/// WEFT_BUFFER_TOO_SMALL. Errors: as `weft_dict_get`.
///
/// # Safety
/// `dict` must be NULL or a handle from weft; `key` `key_len` readable bytes; `buf` `cap`
/// writable bytes (or NULL with `cap` 0); `len` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_get_into(
    dict: *const weft_dict,
    key: *const c_void,
    key_len: usize,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> weft_status {
    guard(|| {
        out_ptr(len, "len")?;
        // SAFETY: forwarded contracts.
        let (d, k) = unsafe { (get(dict)?, arg(key, key_len, "key")?) };
        // SAFETY: `buf` holds `cap` writable bytes per the contract.
        let out = unsafe { super::bytes_mut(buf, cap, "buf") }?;
        let n = d.view()?.get_into(k, out, Deadline::Never)?;
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { len.write(n) };
        if n > cap {
            return Err(Error::new(WEFT_BUFFER_TOO_SMALL, format!("the value is {n} bytes, the buffer {cap}")));
        }
        Ok(())
    })
}

/// Python's `setdefault`: when `key` is absent, stores `default`. `*value` (when `value` is not
/// NULL) receives the value now stored under `key`. Errors: as `weft_dict_set`.
///
/// # Safety
/// As `weft_dict_set`; `value` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_set_default(
    dict: *mut weft_dict,
    key: *const c_void,
    key_len: usize,
    default_value: *const c_void,
    default_len: usize,
    value: *mut *mut weft_bytes,
) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (d, k, dv) = unsafe { (get(dict)?, arg(key, key_len, "key")?, arg(default_value, default_len, "default_value")?) };
        let now = d.view()?.set_default(k, dv, Deadline::Never)?;
        give_opt(now.unwrap_or_else(|| dv.to_vec()), value)
    })
}

/// Writes whether `key` is in the dict to `*found`. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_CORRUPTED, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `dict` must be NULL or a handle from weft; `key` `key_len` readable bytes; `found` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_contains(dict: *const weft_dict, key: *const c_void, key_len: usize, found: *mut bool) -> weft_status {
    guard(|| {
        out_ptr(found, "found")?;
        // SAFETY: forwarded contracts.
        let (d, k) = unsafe { (get(dict)?, arg(key, key_len, "key")?) };
        let yes = d.view()?.contains(k, Deadline::Never)?;
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { found.write(yes) };
        Ok(())
    })
}

/// Removes `key` (`del d[key]`). Errors: WEFT_NULL_ARGUMENT, WEFT_NOT_FOUND, WEFT_CORRUPTED,
/// WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `dict` must be NULL or a handle from weft; `key` `key_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_delete(dict: *mut weft_dict, key: *const c_void, key_len: usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (d, k) = unsafe { (get(dict)?, arg(key, key_len, "key")?) };
        d.view()?.delete(k, Deadline::Never)
    })
}

/// Removes `key` and returns its value in `*value` (when not NULL; free with
/// `weft_bytes_free`), atomically (Python's `pop`). Errors: as `weft_dict_delete`.
///
/// # Safety
/// As `weft_dict_delete`; `value` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_pop(dict: *mut weft_dict, key: *const c_void, key_len: usize, value: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (d, k) = unsafe { (get(dict)?, arg(key, key_len, "key")?) };
        give_opt(d.view()?.pop(k, Deadline::Never)?, value)
    })
}

/// Writes the number of keys to `*len`. Errors: WEFT_NULL_ARGUMENT, WEFT_CORRUPTED,
/// WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `dict` must be NULL or a handle from weft; `len` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_len(dict: *const weft_dict, len: *mut usize) -> weft_status {
    guard(|| {
        out_ptr(len, "len")?;
        // SAFETY: forwarded contract.
        let n = unsafe { get(dict) }?.view()?.len(Deadline::Never)?;
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { len.write(n) };
        Ok(())
    })
}

/// Removes every key. Errors: WEFT_NULL_ARGUMENT, WEFT_CORRUPTED, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `dict` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_clear(dict: *mut weft_dict) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(dict) }?.view()?.clear(Deadline::Never))
}

/// A snapshot of every entry, in insertion order, packed into one buffer `*items` (free with
/// `weft_bytes_free`): for each entry, the key's length and the value's length as two
/// native-endian `uint64_t`, then the key's bytes, then the value's bytes, with no padding.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_CORRUPTED, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `dict` must be NULL or a handle from weft; `items` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_items(dict: *const weft_dict, items: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        out_ptr(items, "items")?;
        // SAFETY: forwarded contract.
        let all = unsafe { get(dict) }?.view()?.items(Deadline::Never)?;
        let mut packed = Vec::with_capacity(all.iter().map(|(k, v)| 16 + k.len() + v.len()).sum());
        for (k, v) in &all {
            packed.extend_from_slice(&(k.len() as u64).to_ne_bytes());
            packed.extend_from_slice(&(v.len() as u64).to_ne_bytes());
            packed.extend_from_slice(k);
            packed.extend_from_slice(v);
        }
        give_bytes(packed, items)
    })
}

/// Frees the handle; the dict is freed with the last handle on it in any process (and, when
/// named, after `weft_space_remove`). NULL is a no-op.
///
/// # Safety
/// `dict` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_dict_free(dict: *mut weft_dict) {
    // SAFETY: forwarded contract.
    unsafe { super::free(dict) }
}
