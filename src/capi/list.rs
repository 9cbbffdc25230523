//! Shared list (Python's `Manager().list()`, without a manager process): byte-string items in a
//! space.

use super::space::{required_name, space_or_default, weft_space, write_token};
use super::status::{give_bytes, give_packed, weft_bytes};
use super::{get, out_ptr, publish, Object, Tag};
use crate::space::list::SharedList;
use crate::space::object::KIND_LIST;
use crate::space::shared::SharedRef;
use crate::status::{guard, weft_status, Error, Result, WEFT_BUFFER_TOO_SMALL};
use crate::time::Deadline;
use std::ffi::{c_char, c_void};

/// A list of byte strings living in a space (Python's `Manager().list()`, without a manager
/// process). Indices follow Python: negative ones count from the end; `insert` clamps. Items
/// are copied in and out, may be empty and up to 1 GiB.
///
/// Thread-safe and process-safe: every call holds the list's robust lock. A process killed in
/// the middle of an update leaves the list as before or as after that update, and the next
/// call repairs it silently. The items' memory returns to the space with the last handle.
pub struct weft_list {
    tag: Tag,
    r: SharedRef,
}

impl Object for weft_list {
    const NAME: &'static str = "weft_list";
    const MAGIC: u64 = 0x7765_6674_6c69_7374;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

impl weft_list {
    fn view(&self) -> Result<SharedList<'_>> {
        SharedList::open(self.r.handle().space(), self.r.object())
    }
}

fn publish_list(r: SharedRef, out: *mut *mut weft_list) -> Result<()> {
    SharedList::open(r.handle().space(), r.object())?;
    publish(weft_list { tag: Tag::of::<weft_list>(), r }, out)
}

/// Creates an empty shared list in `space` (NULL: the default space), named `name` (NULL:
/// unnamed). Errors: as `weft_dict_new_in`.
///
/// # Safety
/// As `weft_dict_new_in`.
#[no_mangle]
pub unsafe extern "C" fn weft_list_new_in(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_list) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contracts.
        let (h, name) = unsafe { (space_or_default(space)?, super::opt_str(name, "name")?) };
        let mut init = |p: *mut u8| {
            // SAFETY: a fresh, 64-aligned payload of payload_size() bytes nobody else reaches.
            unsafe { SharedList::init(p) };
            Ok(())
        };
        let r = SharedRef::create(h, KIND_LIST, SharedList::payload_size(), name.as_deref(), &mut init)?;
        publish_list(r, out)
    })
}

/// Opens the shared list named `name` in `space` (NULL: the default space). Errors: as
/// `weft_lock_open`.
///
/// # Safety
/// As `weft_dict_open`.
#[no_mangle]
pub unsafe extern "C" fn weft_list_open(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_list) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contracts.
        let (h, name) = unsafe { (space_or_default(space)?, required_name(name)?) };
        publish_list(SharedRef::open(h, &name, KIND_LIST, Some(SharedList::payload_size()))?, out)
    })
}

/// Writes a token for the list (see `weft_lock_token`).
///
/// # Safety
/// As `weft_lock_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_list_token(list: *const weft_list, buf: *mut c_void, cap: usize, len: *mut usize) -> weft_status {
    // SAFETY: forwarded contracts.
    guard(|| unsafe { write_token(Some(&get(list)?.r), "list", buf, cap, len) })
}

/// Opens the list a token designates (see `weft_lock_from_token`).
///
/// # Safety
/// As `weft_lock_from_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_list_from_token(token: *const c_void, len: usize, out: *mut *mut weft_list) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let bytes = unsafe { super::bytes(token, len, "token") }?;
        publish_list(SharedRef::from_token(bytes, KIND_LIST, Some(SharedList::payload_size()))?, out)
    })
}

/// Appends a copy of `item` (`len` bytes). Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT
/// (above 1 GiB), WEFT_NO_MEMORY (space full; the list is unchanged), WEFT_CORRUPTED,
/// WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `list` must be NULL or a handle from weft; `item` `len` readable bytes (or NULL with 0).
#[no_mangle]
pub unsafe extern "C" fn weft_list_append(list: *mut weft_list, item: *const c_void, len: usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (l, v) = unsafe { (get(list)?, super::bytes(item, len, "item")?) };
        l.view()?.append(v, Deadline::Never)
    })
}

/// Inserts a copy of `item` before position `index` (Python's `insert`: negative from the end,
/// clamped to the list). Errors: as `weft_list_append`.
///
/// # Safety
/// As `weft_list_append`.
#[no_mangle]
pub unsafe extern "C" fn weft_list_insert(list: *mut weft_list, index: i64, item: *const c_void, len: usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (l, v) = unsafe { (get(list)?, super::bytes(item, len, "item")?) };
        l.view()?.insert(index, v, Deadline::Never)
    })
}

/// Replaces the item at `index` (negative from the end). Errors: as `weft_list_append`, and
/// WEFT_NOT_FOUND (index out of range; Python's IndexError).
///
/// # Safety
/// As `weft_list_append`.
#[no_mangle]
pub unsafe extern "C" fn weft_list_set(list: *mut weft_list, index: i64, item: *const c_void, len: usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (l, v) = unsafe { (get(list)?, super::bytes(item, len, "item")?) };
        l.view()?.set(index, v, Deadline::Never)
    })
}

/// Returns a copy of the item at `index` in `*item` (free with `weft_bytes_free`). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_NOT_FOUND (out of range), WEFT_CORRUPTED, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `list` must be NULL or a handle from weft; `item` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_list_get(list: *const weft_list, index: i64, item: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        out_ptr(item, "item")?;
        // SAFETY: forwarded contract.
        give_bytes(unsafe { get(list) }?.view()?.get(index, Deadline::Never)?, item)
    })
}

/// Copies the item at `index` into `buf` (`cap` bytes) and its length into `*len`; when it does
/// not fit nothing is copied, `*len` is the size needed and the call returns
/// WEFT_BUFFER_TOO_SMALL. Errors: as `weft_list_get`.
///
/// # Safety
/// `list` must be NULL or a handle from weft; `buf` `cap` writable bytes (or NULL with 0);
/// `len` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_list_get_into(list: *const weft_list, index: i64, buf: *mut c_void, cap: usize, len: *mut usize) -> weft_status {
    guard(|| {
        out_ptr(len, "len")?;
        // SAFETY: forwarded contract.
        let l = unsafe { get(list) }?;
        // SAFETY: `buf` holds `cap` writable bytes per the contract.
        let out = unsafe { super::bytes_mut(buf, cap, "buf") }?;
        let n = l.view()?.get_into(index, out, Deadline::Never)?;
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { len.write(n) };
        if n > cap {
            return Err(Error::new(WEFT_BUFFER_TOO_SMALL, format!("the item is {n} bytes, the buffer {cap}")));
        }
        Ok(())
    })
}

/// Removes the item at `index` (-1: the last, Python's `pop()`) and returns it in `*item`
/// (when not NULL; free with `weft_bytes_free`). Errors: as `weft_list_get`.
///
/// # Safety
/// `list` must be NULL or a handle from weft; `item` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_list_pop(list: *mut weft_list, index: i64, item: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let v = unsafe { get(list) }?.view()?.pop(index, Deadline::Never)?;
        if item.is_null() {
            Ok(())
        } else {
            give_bytes(v, item)
        }
    })
}

/// Writes the number of items to `*len`. Errors: WEFT_NULL_ARGUMENT, WEFT_CORRUPTED,
/// WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `list` must be NULL or a handle from weft; `len` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_list_len(list: *const weft_list, len: *mut usize) -> weft_status {
    guard(|| {
        out_ptr(len, "len")?;
        // SAFETY: forwarded contract.
        let n = unsafe { get(list) }?.view()?.len(Deadline::Never)?;
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { len.write(n) };
        Ok(())
    })
}

/// Removes every item. Errors: WEFT_NULL_ARGUMENT, WEFT_CORRUPTED, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `list` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_list_clear(list: *mut weft_list) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(list) }?.view()?.clear(Deadline::Never))
}

/// A snapshot of every item, in order, packed into one buffer `*items` (free with
/// `weft_bytes_free`): for each item its length as a native-endian `uint64_t`, then its bytes,
/// with no padding. Errors: WEFT_NULL_ARGUMENT, WEFT_CORRUPTED, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `list` must be NULL or a handle from weft; `items` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_list_items(list: *const weft_list, items: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        out_ptr(items, "items")?;
        // SAFETY: forwarded contract.
        let all = unsafe { get(list) }?.view()?.snapshot(Deadline::Never)?;
        give_packed(&all, items)
    })
}

/// Frees the handle; the list is freed with the last handle on it in any process (and, when
/// named, after `weft_space_remove`). NULL is a no-op.
///
/// # Safety
/// `list` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_list_free(list: *mut weft_list) {
    // SAFETY: forwarded contract.
    unsafe { super::free(list) }
}
