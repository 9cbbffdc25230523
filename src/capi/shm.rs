//! Raw named shared memory (Python's `multiprocessing.shared_memory.SharedMemory`).

use super::space::required_name;
use super::{get, out_ptr, publish, Object, Tag};
use crate::space::Segment;
use crate::status::{guard, guard_value, weft_status, Error, Result};
use std::ffi::{c_char, c_void, CString};

/// A raw named block of shared memory (Python's `SharedMemory`): bytes that any process of the
/// same user opens by name, with no structure imposed. Created exclusively and owner-only
/// (mode 0600, never through a symbolic link; see `weft_space_create` for the name rules);
/// opening checks owner and mode. Unlike Python's, nothing unlinks it behind the user's back:
/// it persists until `weft_shm_unlink`, and a process that merely attaches never destroys it.
///
/// A named segment cannot be sealed against resizing: a process of the same user could
/// truncate it, after which touching the lost pages raises SIGBUS (only the owner's own
/// processes can). `weft_shm_open` maps the size the file has when it attaches. Thread-safe
/// handle; the bytes are the caller's to synchronise.
pub struct weft_shm {
    tag: Tag,
    segment: Segment,
    name: CString,
}

impl Object for weft_shm {
    const NAME: &'static str = "weft_shm";
    const MAGIC: u64 = 0x7765_6674_7368_6d21;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

fn publish_shm(segment: Segment, out: *mut *mut weft_shm) -> Result<()> {
    let name = CString::new(segment.name().unwrap_or("")).map_err(|_| Error::invalid("segment name has a NUL"))?;
    publish(weft_shm { tag: Tag::of::<weft_shm>(), segment, name }, out)
}

/// A fresh random name (Python's `psm_...` names).
fn random_name() -> Result<String> {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        return Err(Error::last_os("getrandom"));
    }
    Ok(format!("shm_{:016x}", u64::from_ne_bytes(b)))
}

/// Creates the named segment `name` (NULL: a fresh random name, readable with `weft_shm_name`)
/// of `size` bytes, zero-filled, and maps it. Its pages are reserved, so a full `/dev/shm`
/// fails here with WEFT_NO_MEMORY rather than with SIGBUS later.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (bad name, size 0), WEFT_EXISTS,
/// WEFT_NO_MEMORY, WEFT_OS_ERROR.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_shm_create(name: *const c_char, size: usize, out: *mut *mut weft_shm) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let given = unsafe { super::opt_str(name, "name") }?;
        let segment = match given {
            Some(n) => Segment::create_named(&n, size)?,
            None => loop {
                match Segment::create_named(&random_name()?, size) {
                    Err(e) if e.code == crate::status::WEFT_EXISTS => continue,
                    r => break r?,
                }
            },
        };
        publish_shm(segment, out)
    })
}

/// Attaches to the named segment `name` (created by any process of the same user, in any
/// language) and maps all of it. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (bad name;
/// a symbolic link, another owner or another mode), WEFT_NOT_FOUND, WEFT_CORRUPTED (empty),
/// WEFT_OS_ERROR.
///
/// # Safety
/// `name` must be a NUL-terminated string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_shm_open(name: *const c_char, out: *mut *mut weft_shm) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let name = unsafe { required_name(name) }?;
        publish_shm(Segment::open_named(&name)?, out)
    })
}

/// The segment's size in bytes (0 for NULL).
///
/// # Safety
/// `shm` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_shm_size(shm: *const weft_shm) -> usize {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(shm) }.map_or(0, |s| s.segment.len()))
}

/// The address of the segment in this process (NULL for NULL), valid until `weft_shm_free`.
///
/// # Safety
/// `shm` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_shm_data(shm: *const weft_shm) -> *mut c_void {
    // SAFETY: forwarded contract.
    guard_value(std::ptr::null_mut(), || unsafe { get(shm) }.map_or(std::ptr::null_mut(), |s| s.segment.as_ptr() as *mut c_void))
}

/// The segment's name (borrowed, valid while the handle lives; NULL for NULL).
///
/// # Safety
/// `shm` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_shm_name(shm: *const weft_shm) -> *const c_char {
    // SAFETY: forwarded contract.
    guard_value(std::ptr::null(), || unsafe { get(shm) }.map_or(std::ptr::null(), |s| s.name.as_ptr()))
}

/// Removes the name `name` (Python's `unlink()`): nobody can attach any more; processes that
/// have it mapped keep it until they free their handles. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_INVALID_ARGUMENT, WEFT_NOT_FOUND, WEFT_OS_ERROR.
///
/// # Safety
/// `name` must be a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn weft_shm_unlink(name: *const c_char) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| Segment::unlink_named(&unsafe { required_name(name) }?))
}

/// Unmaps the segment and frees the handle (Python's `close()`); the segment and its name stay.
/// NULL is a no-op.
///
/// # Safety
/// `shm` must be NULL or a handle from weft, not used afterwards (nor the data pointer).
#[no_mangle]
pub unsafe extern "C" fn weft_shm_free(shm: *mut weft_shm) {
    // SAFETY: forwarded contract.
    unsafe { super::free(shm) }
}
