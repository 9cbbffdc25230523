//! Typed shared arrays and values (Python's `multiprocessing.Array` and `Value`).

use super::space::{required_name, space_or_default, weft_space, write_token};
use super::{get, out_ptr, publish, Object, Tag};
use crate::futex::Interrupt;
use crate::space::array::SharedArray;
use crate::status::{guard, guard_value, weft_status, Result};
use crate::time::Deadline;
use std::ffi::{c_char, c_void};

/// A fixed number of items of one C type in a space: Python's `multiprocessing.Array`, and
/// with one item its `Value`. The type is one of Python's type codes: `'b'` int8_t, `'B'`
/// uint8_t, `'h'` short, `'H'` unsigned short, `'i'` int, `'I'` unsigned int, `'l'`/`'q'`
/// int64_t (long and long long on Linux), `'L'`/`'Q'` uint64_t, `'f'` float, `'d'` double.
///
/// Items are read and written whole (one atomic access each), so no reader ever sees a torn
/// item. Created with a lock (Python's default `lock=True`), `get`/`set`/`read`/`write` take
/// that re-entrant lock; `weft_array_lock` holds it across several operations. Integer items
/// also have lock-free atomic operations (`load`, `store`, `fetch_add`,
/// `compare_exchange`), which never take the lock. Thread-safe and process-safe.
///
/// A process that dies holding the lock: the array's own operations recover the lock silently
/// (every item is whole); an explicit `weft_array_lock` returns WEFT_OWNER_DEAD, since the
/// caller's invariants across items may be broken.
pub struct weft_array {
    tag: Tag,
    array: SharedArray,
}

impl Object for weft_array {
    const NAME: &'static str = "weft_array";
    const MAGIC: u64 = 0x7765_6674_6172_7279;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

fn publish_array(array: SharedArray, out: *mut *mut weft_array) -> Result<()> {
    publish(weft_array { tag: Tag::of::<weft_array>(), array }, out)
}

/// Creates an array of `length` items of type `typecode` in `space` (NULL: the default space,
/// inherited by forked children), named `name` (NULL: unnamed). The items are copied from
/// `init` (`length` × item size bytes) or zero when `init` is NULL; `lock` gives the array a
/// re-entrant lock. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (unknown type code,
/// length 0 or too large, bad name), WEFT_EXISTS, WEFT_NO_MEMORY (space full), WEFT_CORRUPTED,
/// WEFT_TIMEOUT, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `space` must be NULL or a handle from weft; `name` NULL or a NUL-terminated string; `init`
/// NULL or `length` × item size readable bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_array_new_in(
    space: *mut weft_space,
    name: *const c_char,
    typecode: c_char,
    length: usize,
    init: *const c_void,
    lock: bool,
    out: *mut *mut weft_array,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        let code = typecode as u8;
        let size = crate::space::array::TypeCode::from_char(code)?.size();
        let init = if init.is_null() {
            None
        } else {
            let bytes = length
                .checked_mul(size)
                .ok_or_else(|| crate::status::Error::invalid("array length overflows"))?;
            // SAFETY: per the contract, `init` holds length * size readable bytes.
            Some(unsafe { super::bytes(init, bytes, "init") }?)
        };
        // SAFETY: forwarded contracts.
        let (h, name) = unsafe { (space_or_default(space)?, super::opt_str(name, "name")?) };
        publish_array(SharedArray::create(h, name.as_deref(), code, length, init, lock)?, out)
    })
}

/// Opens the array named `name` in `space` (NULL: the default space). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (bad name, not an array), WEFT_NOT_FOUND,
/// WEFT_CORRUPTED (its header is invalid), WEFT_TIMEOUT, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `space` must be NULL or a handle from weft; `name` a NUL-terminated string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_array_open(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_array) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contracts.
        let (h, name) = unsafe { (space_or_default(space)?, required_name(name)?) };
        publish_array(SharedArray::open(h, &name)?, out)
    })
}

/// Writes a token for the array (see `weft_lock_token`).
///
/// # Safety
/// As `weft_lock_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_array_token(array: *const weft_array, buf: *mut c_void, cap: usize, len: *mut usize) -> weft_status {
    // SAFETY: forwarded contracts.
    guard(|| unsafe { write_token(Some(get(array)?.array.shared()), "array", buf, cap, len) })
}

/// Opens the array a token designates (see `weft_lock_from_token`).
///
/// # Safety
/// As `weft_lock_from_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_array_from_token(token: *const c_void, len: usize, out: *mut *mut weft_array) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let bytes = unsafe { super::bytes(token, len, "token") }?;
        publish_array(SharedArray::from_token(bytes)?, out)
    })
}

/// The number of items (0 for NULL).
///
/// # Safety
/// `array` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_array_len(array: *const weft_array) -> usize {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(array) }.map_or(0, |a| a.array.len()))
}

/// The type code the array was created with (0 for NULL).
///
/// # Safety
/// `array` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_array_typecode(array: *const weft_array) -> c_char {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(array) }.map_or(0, |a| a.array.type_char() as c_char))
}

/// True when the array was created with a lock (Python's `lock=True`); false for NULL.
///
/// # Safety
/// `array` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_array_has_lock(array: *const weft_array) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(array) }.is_ok_and(|a| a.array.has_lock()))
}

/// Bytes per item (0 for NULL).
///
/// # Safety
/// `array` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_array_itemsize(array: *const weft_array) -> usize {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(array) }.map_or(0, |a| a.array.type_code().size()))
}

/// The address of the first item in this process (NULL for NULL), valid while the handle
/// lives. Accesses through it are the caller's to synchronise (hold `weft_array_lock`, or use
/// C11 atomics of the item's width).
///
/// # Safety
/// `array` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_array_data(array: *const weft_array) -> *mut c_void {
    // SAFETY: forwarded contract.
    guard_value(std::ptr::null_mut(), || unsafe { get(array) }.map_or(std::ptr::null_mut(), |a| a.array.data() as *mut c_void))
}

/// Copies item `index` into `item` (`itemsize` bytes: the array's item size). Takes the lock
/// when the array has one. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (index out of
/// range, `itemsize` not the item size), WEFT_CANCELLED, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `array` must be NULL or a handle from weft; `item` must hold `itemsize` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn weft_array_get(array: *const weft_array, index: usize, item: *mut c_void, itemsize: usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let a = unsafe { get(array) }?;
        super::in_ptr(item, "item")?;
        // SAFETY: `item` holds `itemsize` writable bytes per the contract.
        let out = unsafe { super::bytes_mut(item, itemsize, "item") }?;
        a.array.get(index, out)
    })
}

/// Stores `item` (`itemsize` bytes) at `index`. Takes the lock when the array has one.
/// Errors: as `weft_array_get`.
///
/// # Safety
/// `array` must be NULL or a handle from weft; `item` must hold `itemsize` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn weft_array_set(array: *mut weft_array, index: usize, item: *const c_void, itemsize: usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let a = unsafe { get(array) }?;
        super::in_ptr(item, "item")?;
        // SAFETY: as above.
        a.array.set(index, unsafe { super::bytes(item, itemsize, "item") }?)
    })
}

/// Copies items `[start, start + count)` into `out` (`size` bytes, which must be `count` ×
/// item size), under the lock when there is one. Errors: as `weft_array_get`.
///
/// # Safety
/// `array` must be NULL or a handle from weft; `out` must hold `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn weft_array_read(
    array: *const weft_array,
    start: usize,
    count: usize,
    out: *mut c_void,
    size: usize,
) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let a = unsafe { get(array) }?;
        // SAFETY: `out` holds `size` writable bytes per the contract.
        let buf = unsafe { super::bytes_mut(out, size, "out") }?;
        a.array.read(start, count, buf)
    })
}

/// Stores items `[start, start + count)` from `items` (`size` bytes = `count` × item size),
/// under the lock when there is one. Errors: as `weft_array_get`.
///
/// # Safety
/// `array` must be NULL or a handle from weft; `items` must hold `size` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn weft_array_write(
    array: *mut weft_array,
    start: usize,
    count: usize,
    items: *const c_void,
    size: usize,
) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let a = unsafe { get(array) }?;
        // SAFETY: as above.
        a.array.write(start, count, unsafe { super::bytes(items, size, "items") }?)
    })
}

/// Atomically reads integer item `index` into `*value`, sign- or zero-extended to 64 bits
/// (uint64_t items come back as their bit pattern). Lock-free. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_INVALID_ARGUMENT (index out of range; a float array).
///
/// # Safety
/// `array` must be NULL or a handle from weft; `value` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_array_load(array: *const weft_array, index: usize, value: *mut i64) -> weft_status {
    guard(|| {
        out_ptr(value, "value")?;
        // SAFETY: forwarded contract.
        let v = unsafe { get(array) }?.array.load(index)?;
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { value.write(v) };
        Ok(())
    })
}

/// Atomically stores the low bits of `value` into integer item `index`. Lock-free.
/// Errors: as `weft_array_load`.
///
/// # Safety
/// `array` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_array_store(array: *mut weft_array, index: usize, value: i64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(array) }?.array.store(index, value))
}

/// Atomically adds `delta` to integer item `index` (wrapping at the item's width), writing the
/// previous value to `*previous` when it is not NULL. Lock-free. Errors: as `weft_array_load`.
///
/// # Safety
/// `array` must be NULL or a handle from weft; `previous` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_array_fetch_add(array: *mut weft_array, index: usize, delta: i64, previous: *mut i64) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let old = unsafe { get(array) }?.array.fetch_add(index, delta)?;
        if !previous.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { previous.write(old) };
        }
        Ok(())
    })
}

/// Atomically replaces integer item `index` with `desired` if it equals `*expected` (C11's
/// `atomic_compare_exchange_strong`): `*swapped` tells whether it did, and `*expected` receives
/// the value found. Lock-free. Errors: as `weft_array_load`.
///
/// # Safety
/// `array` must be NULL or a handle from weft; `expected` readable and writable; `swapped`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn weft_array_compare_exchange(
    array: *mut weft_array,
    index: usize,
    expected: *mut i64,
    desired: i64,
    swapped: *mut bool,
) -> weft_status {
    guard(|| {
        out_ptr(expected, "expected")?;
        out_ptr(swapped, "swapped")?;
        // SAFETY: forwarded contract; `expected` checked non-NULL.
        let (ok, found) = unsafe { get(array) }?.array.compare_exchange(index, unsafe { expected.read() }, desired)?;
        // SAFETY: both checked non-NULL and writable per the contract.
        unsafe {
            expected.write(found);
            swapped.write(ok);
        }
        Ok(())
    })
}

/// Acquires the array's re-entrant lock (Python's `get_lock().acquire()`), up to `timeout_ns`;
/// the array's own operations re-enter it. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE
/// (created without a lock), WEFT_WOULD_BLOCK, WEFT_TIMEOUT, WEFT_CANCELLED, WEFT_OWNER_DEAD
/// (the holder died; the caller holds the lock and calls `weft_array_mark_consistent`),
/// WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `array` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_array_lock(array: *mut weft_array, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(array) }?.array.lock(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable))
}

/// Releases one level of the array's lock. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE (no
/// lock), WEFT_NOT_OWNER.
///
/// # Safety
/// `array` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_array_unlock(array: *mut weft_array) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(array) }?.array.unlock())
}

/// Marks the array's lock consistent after WEFT_OWNER_DEAD. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_INVALID_STATE, WEFT_NOT_OWNER.
///
/// # Safety
/// `array` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_array_mark_consistent(array: *mut weft_array) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(array) }?.array.mark_consistent())
}

/// Frees the handle; the array itself is freed with the last handle on it in any process
/// (and, when named, after `weft_space_remove`). NULL is a no-op.
///
/// # Safety
/// `array` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_array_free(array: *mut weft_array) {
    // SAFETY: forwarded contract.
    unsafe { super::free(array) }
}
