//! Spaces: shared memory in which shared weft objects live (Python's `multiprocessing` shared
//! objects, without a manager process).

use super::{get, out_ptr, publish, Object, Tag};
use crate::space::handle::{self, default_space, SpaceHandle};
use crate::space::shared::{SharedRef, TOKEN_MAX};
use crate::status::{guard, guard_value, weft_status, Error, Result, WEFT_BUFFER_TOO_SMALL, WEFT_INVALID_STATE};
use std::ffi::{c_char, c_void, CString};
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// The longest token any shared object produces, in bytes: a buffer of this size always
/// suffices for `weft_*_token`.
pub const WEFT_TOKEN_MAX: usize = 240;
const _: () = assert!(WEFT_TOKEN_MAX == TOKEN_MAX);

/// A handle on a space: a shared-memory region holding shared weft objects.
///
/// The default space (`weft_space_default`, or NULL wherever a space is asked for) is anonymous
/// and inherited by forked children. Named spaces (`weft_space_create` / `weft_space_open`) are
/// reached by name from any process of the same user, in any language; they persist until
/// `weft_space_unlink` or until `weft_space_sweep` finds every process that used them dead.
/// Objects created in a space keep their space mapped while they live.
///
/// Thread-safe: any thread may use a space handle and the objects in it.
pub struct weft_space {
    tag: Tag,
    handle: Arc<SpaceHandle>,
    name: Option<CString>,
}

impl Object for weft_space {
    const NAME: &'static str = "weft_space";
    const MAGIC: u64 = 0x7765_6674_7370_6163;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

fn publish_space(handle: Arc<SpaceHandle>, out: *mut *mut weft_space) -> Result<()> {
    let name = handle.name().map(|n| CString::new(n).expect("validated names have no NUL"));
    publish(weft_space { tag: Tag::of::<weft_space>(), handle, name }, out)
}

/// The space a C caller designates: NULL is the default space.
///
/// # Safety
/// `space` must be NULL or a handle from weft.
pub(crate) unsafe fn space_or_default(space: *const weft_space) -> Result<Arc<SpaceHandle>> {
    if space.is_null() {
        default_space()
    } else {
        // SAFETY: forwarded contract.
        Ok(unsafe { get(space) }?.handle.clone())
    }
}

/// Reads a required object or space name.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string.
pub(crate) unsafe fn required_name(name: *const c_char) -> Result<String> {
    super::in_ptr(name, "name")?;
    // SAFETY: forwarded contract.
    Ok(unsafe { super::opt_str(name, "name") }?.expect("checked non-NULL"))
}

/// Writes the token of `r` (or refuses for a private object) into `(buf, cap)`, its length
/// into `*len`.
///
/// # Safety
/// `buf` must point at `cap` writable bytes (or be NULL with `cap == 0`); `len` writable.
pub(crate) unsafe fn write_token(
    r: Option<&SharedRef>,
    what: &str,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> Result<()> {
    out_ptr(len, "len")?;
    let r = r.ok_or_else(|| Error::new(WEFT_INVALID_STATE, format!("a private {what} has no token (create it in a space)")))?;
    let t = r.token();
    if t.len() > cap {
        // SAFETY: `len` was checked non-NULL and is writable per the contract.
        unsafe { len.write(t.len()) };
        return Err(Error::new(
            WEFT_BUFFER_TOO_SMALL,
            format!("the token needs {} bytes, the buffer has {cap} (WEFT_TOKEN_MAX always suffices)", t.len()),
        ));
    }
    if !t.is_empty() {
        super::in_ptr(buf, "buf")?;
        // SAFETY: `buf` holds `cap >= t.len()` writable bytes per the contract.
        unsafe { std::ptr::copy_nonoverlapping(t.as_ptr(), buf as *mut u8, t.len()) };
    }
    // SAFETY: as above.
    unsafe { len.write(t.len()) };
    Ok(())
}

/// Returns a new handle on the process's default space in `*out` (free it with
/// `weft_space_free`; the space itself lives as long as the process). The default space is an
/// anonymous shared-memory region created on first use (256 MiB of address space, pages
/// allocated when touched; `WEFT_DEFAULT_SPACE_SIZE` overrides the size) and inherited by
/// forked children; a child started with `WEFT_DEFAULT_SPACE_FD=<fd>` in its environment
/// attaches to the space whose descriptor it inherited (`weft_space_fd`).
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (bad environment variable), WEFT_NO_MEMORY,
/// WEFT_OS_ERROR, WEFT_CORRUPTED (an inherited space failed validation).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_space_default(out: *mut *mut weft_space) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        publish_space(default_space()?, out)
    })
}

/// Creates the named space `name` of `size` bytes and returns a handle in `*out`.
///
/// The name (1 to 200 bytes of letters, digits, `.`, `_`, `-`; not starting with `.`) becomes
/// the file `/dev/shm/weft.<name>`, created exclusively (an existing file or symbolic link of
/// that name is never reused or followed) with mode 0600 whatever the umask. Its pages are
/// reserved, so a full `/dev/shm` fails here rather than later. About 7 KiB go to the space's
/// header; the rest holds objects. The caller is recorded as a participant until its last
/// handle on the space (including objects in it) is freed.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (bad name, size too small for the header),
/// WEFT_EXISTS (the name is taken), WEFT_NO_MEMORY (`/dev/shm` full), WEFT_OS_ERROR.
///
/// # Safety
/// `name` must be a NUL-terminated string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_space_create(name: *const c_char, size: usize, out: *mut *mut weft_space) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let name = unsafe { required_name(name) }?;
        publish_space(SpaceHandle::create_named(&name, size)?, out)
    })
}

/// Opens the named space `name`, created by this or another process of the same user in any
/// language, and returns a handle in `*out`. The file must be a regular file owned by the
/// caller's effective user with mode exactly 0600 and is never opened through a symbolic link;
/// its header is validated.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (bad name; a symbolic link, another
/// owner or another mode is refused with a message saying which), WEFT_NOT_FOUND, WEFT_CORRUPTED
/// (the header failed validation, or the creator has not finished creating it), WEFT_TIMEOUT
/// (its lock stayed held 10 s), WEFT_NOT_RECOVERABLE, WEFT_OS_ERROR.
///
/// # Safety
/// `name` must be a NUL-terminated string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_space_open(name: *const c_char, out: *mut *mut weft_space) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let name = unsafe { required_name(name) }?;
        publish_space(SpaceHandle::open_named(&name)?, out)
    })
}

/// Attaches to an anonymous space from a descriptor of it (one `weft_space_fd` gave another
/// process), duplicating `fd` (the caller keeps its own). Errors: WEFT_INVALID_ARGUMENT (not a
/// sealed memfd), WEFT_CORRUPTED, WEFT_OS_ERROR, WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_space_from_fd(fd: i32, out: *mut *mut weft_space) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: F_DUPFD_CLOEXEC only duplicates a descriptor number (EBADF if not open).
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(Error::last_os("fcntl(F_DUPFD_CLOEXEC)"));
        }
        // SAFETY: `dup` is a fresh descriptor that nothing else owns.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) };
        publish_space(SpaceHandle::from_fd(owned)?, out)
    })
}

/// Removes the name of the named space `name`: nobody can open it any more; processes that
/// have it open keep using it, and its memory is freed with the last of them.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT, WEFT_NOT_FOUND, WEFT_OS_ERROR.
///
/// # Safety
/// `name` must be a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn weft_space_unlink(name: *const c_char) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| handle::unlink_named(&unsafe { required_name(name) }?))
}

/// Removes the calling user's named spaces whose every participant has died (a process that
/// exited, even by SIGKILL, without freeing its handles), and those whose creator died before
/// finishing creating them; never a space with a live participant, nor one whose header fails
/// validation. Liveness is judged by pid and process start time, so a reused pid does not keep
/// a dead space alive. Writes the number removed to `*removed` when `removed` is not NULL.
/// Errors: WEFT_OS_ERROR (`/dev/shm` cannot be listed).
///
/// # Safety
/// `removed` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_space_sweep(removed: *mut usize) -> weft_status {
    guard(|| {
        let swept = handle::sweep()?;
        if !removed.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { removed.write(swept.removed.len()) };
        }
        Ok(())
    })
}

/// The name of a named space (borrowed, valid while the handle lives); NULL for an anonymous
/// space or a NULL handle.
///
/// # Safety
/// `space` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_space_name(space: *const weft_space) -> *const c_char {
    // SAFETY: forwarded contract.
    guard_value(std::ptr::null(), || match unsafe { get(space) } {
        Ok(s) => s.name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()),
        Err(_) => std::ptr::null(),
    })
}

/// The space's size in bytes (`*size`) and the bytes never allocated yet (`*unused`; freed
/// blocks are reused but not counted). Either pointer may be NULL.
/// Errors: WEFT_NULL_ARGUMENT (NULL space).
///
/// # Safety
/// `space` must be NULL or a handle from weft; `size` and `unused` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_space_usage(space: *const weft_space, size: *mut usize, unused: *mut usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { get(space) }?;
        let sp = s.handle.space();
        if !size.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { size.write(sp.segment().len()) };
        }
        if !unused.is_null() {
            // SAFETY: as above.
            unsafe { unused.write(sp.unused() as usize) };
        }
        Ok(())
    })
}

/// The number of live processes using the space (`*live`): each process that created or opened
/// it counts once per handle set until it frees them or dies. Dead participants found on the
/// way are removed from the space's table.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_CORRUPTED, WEFT_TIMEOUT, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `space` must be NULL or a handle from weft; `live` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_space_participants(space: *const weft_space, live: *mut usize) -> weft_status {
    guard(|| {
        out_ptr(live, "live")?;
        // SAFETY: forwarded contract.
        let n = unsafe { get(space) }?.handle.space().live_participants()?;
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { live.write(n) };
        Ok(())
    })
}

/// The space's descriptor in `*fd` (borrowed: valid while the handle lives; duplicate it to
/// keep it). Hand it to a child process (which passes it to `weft_space_from_fd`, or inherits
/// it with `WEFT_DEFAULT_SPACE_FD` set for the default space). The descriptor is close-on-exec.
/// Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `space` must be NULL or a handle from weft; `fd` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_space_fd(space: *const weft_space, fd: *mut i32) -> weft_status {
    guard(|| {
        out_ptr(fd, "fd")?;
        // SAFETY: forwarded contract.
        let raw = unsafe { get(space) }?.handle.space().segment().fd().as_raw_fd();
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { fd.write(raw) };
        Ok(())
    })
}

/// Removes the name `name` from the space's directory of named objects. The object lives on
/// while handles to it are open and is freed with the last; the name can be reused at once.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (bad name), WEFT_NOT_FOUND, WEFT_CORRUPTED,
/// WEFT_TIMEOUT, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `space` must be NULL (the default space) or a handle from weft; `name` a NUL-terminated
/// string.
#[no_mangle]
pub unsafe extern "C" fn weft_space_remove(space: *const weft_space, name: *const c_char) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (h, name) = unsafe { (space_or_default(space)?, required_name(name)?) };
        h.space().remove(&name)
    })
}

/// Frees the handle (not the space: its objects keep it mapped; a named space persists until
/// unlinked). When the process's last handle on the space goes, it stops being a participant.
/// NULL is a no-op.
///
/// # Safety
/// `space` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_space_free(space: *mut weft_space) {
    // SAFETY: forwarded contract.
    unsafe { super::free(space) }
}
