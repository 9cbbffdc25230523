//! [`Segment`]: one shared-memory file mapped into this process.
//!
//! Two kinds exist:
//!
//! - **Anonymous** segments are `memfd_create` files sealed against shrinking and growing. They
//!   have no name; other processes reach them by inheriting the mapping across `fork` or by
//!   receiving the file descriptor and calling [`Segment::from_fd`]. Because of the seals, no
//!   process can truncate an anonymous segment under its users.
//! - **Named** segments are `shm_open` files (`/dev/shm/weft.<name>` on Linux) that unrelated
//!   processes open by name. They are created exclusively and owner-only (`O_EXCL`, mode 0600,
//!   never following a symbolic link) and are checked on open (regular file, owned by the
//!   caller's effective uid, mode exactly 0600). They cannot be sealed, so [`Segment::check_size`]
//!   detects a peer's truncation (see "Truncation" below).
//!
//! # Truncation
//!
//! Touching a mapped page that lies beyond the end of its file raises SIGBUS. Anonymous segments
//! are immune (sealed). A named segment can be truncated by any process running as its owner
//! (nobody else can open it: mode 0600). weft therefore calls [`Segment::check_size`] before it
//! trusts a named segment's mapping: a truncation that happened before the check is reported as
//! `WEFT_CORRUPTED`, never as SIGBUS, within weft's checked accesses. A truncation that races
//! between a check and the access right after it cannot be caught this way; only the owner's own
//! processes can cause it.
//!
//! Creating a named segment reserves its pages in the shared-memory filesystem (`fallocate`), so
//! a full `/dev/shm` (64 MiB by default in containers) is reported as `WEFT_NO_MEMORY` at
//! creation instead of SIGBUS at first write.
//!
//! # Validation
//!
//! [`Segment::slice`] is the one door from an offset and a length (for instance read from shared
//! memory, where a peer may have written anything) to a pointer: it checks the range against the
//! mapping, without overflow, and returns `WEFT_CORRUPTED` otherwise.

use super::name::shm_name;
use crate::status::{Error, Result, WEFT_CORRUPTED, WEFT_EXISTS, WEFT_NOT_FOUND, WEFT_NO_MEMORY};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};

/// The seals every anonymous segment carries: its size is fixed and the seal set is final.
const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Seals that would forbid a writable shared mapping.
const WRITE_SEALS: libc::c_int = libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE;

/// The only mode a named segment may have: read and write for its owner, nothing else.
const OWNER_ONLY: libc::mode_t = 0o600;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A size given by a caller: 1 byte up to what both `mmap` (`isize`) and `off_t` can address.
fn check_size_arg(size: usize) -> Result<()> {
    if size == 0 || size > isize::MAX as usize {
        return Err(Error::invalid(format!(
            "segment size must be between 1 and {} bytes, got {size}",
            isize::MAX
        )));
    }
    Ok(())
}

/// The size of an existing file as a mapping length, or why it cannot be mapped.
fn file_len(st: &libc::stat, what: &str) -> Result<usize> {
    match usize::try_from(st.st_size) {
        Ok(0) => Err(Error::new(
            WEFT_CORRUPTED,
            format!("{what} is empty (its creator has not sized it yet, or it was truncated)"),
        )),
        Ok(n) if n <= isize::MAX as usize => Ok(n),
        _ => Err(Error::new(WEFT_CORRUPTED, format!("{what} has an unmappable size of {} bytes", st.st_size))),
    }
}

fn fstat(fd: BorrowedFd<'_>) -> Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is writable storage for one `stat`; `fd` is open for the duration of the call.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(Error::last_os("fstat"));
    }
    // SAFETY: fstat returned 0, so it filled in `st`.
    Ok(unsafe { st.assume_init() })
}

/// Maps `len` bytes of `fd` read-write and shared.
fn map(fd: BorrowedFd<'_>, len: usize) -> Result<NonNull<u8>> {
    // SAFETY: a new mapping at an address the kernel chooses (NULL hint, no MAP_FIXED) cannot
    // overlap memory Rust already uses; `fd` is open for the duration of the call.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = errno();
        return Err(if e == libc::ENOMEM {
            Error::new(WEFT_NO_MEMORY, format!("mmap of {len} bytes failed: not enough address space or memory"))
        } else {
            Error::os("mmap", e)
        });
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(|| Error::os("mmap (returned address 0)", libc::EINVAL))
}

/// Sets a new file's size to `size`, reserving its pages where the filesystem can (tmpfs can),
/// so that a full filesystem fails here rather than with SIGBUS at a later write.
fn reserve(fd: BorrowedFd<'_>, size: usize) -> Result<()> {
    let off = size as libc::off_t; // check_size_arg: size <= isize::MAX == off_t::MAX
    loop {
        // SAFETY: plain syscall on an open descriptor; no memory is passed.
        if unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, off) } == 0 {
            return Ok(());
        }
        match errno() {
            libc::EINTR => continue,
            libc::ENOSPC => {
                return Err(Error::new(
                    WEFT_NO_MEMORY,
                    format!("the shared-memory filesystem has no room for {size} bytes"),
                ))
            }
            libc::EOPNOTSUPP | libc::ENOSYS => break,
            e => return Err(Error::os("fallocate", e)),
        }
    }
    // SAFETY: plain syscall on an open descriptor; no memory is passed.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), off) } != 0 {
        return Err(Error::last_os("ftruncate"));
    }
    Ok(())
}

/// The checks a named segment must pass when opened: a regular file, owned by `euid`, mode
/// exactly 0600.
fn check_named_stat(st: &libc::stat, euid: libc::uid_t, name: &str) -> Result<()> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::invalid(format!(
            "named segment {name:?} is not a regular file (file type {:#o}); refusing to use it",
            st.st_mode & libc::S_IFMT
        )));
    }
    if st.st_uid != euid {
        return Err(Error::invalid(format!(
            "named segment {name:?} is owned by uid {}, not by the caller (euid {euid}); refusing to use it",
            st.st_uid
        )));
    }
    let mode = st.st_mode & 0o7777;
    if mode != OWNER_ONLY {
        return Err(Error::invalid(format!(
            "named segment {name:?} has mode {mode:04o}, weft requires exactly 0600; refusing to use it"
        )));
    }
    Ok(())
}

/// One shared-memory file mapped read-write into this process: an anonymous sealed memfd or a
/// named `/dev/shm` file.
///
/// The mapping covers `len()` bytes from `as_ptr()` (page-aligned) for the life of the value;
/// dropping it unmaps and closes its descriptor but never unlinks a name (see
/// [`Segment::unlink_named`]). A `Segment` inherited by a forked child stays valid there: the
/// child has the same mapping at the same address and its own copy of the descriptor.
///
/// Thread safety: `Send + Sync`. The handle's methods never read or write the mapped bytes;
/// whoever dereferences the pointers it hands out must synchronise those accesses (with atomics
/// or a weft lock), since other threads and processes may use the same bytes at the same time.
#[derive(Debug)]
pub struct Segment {
    base: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
    /// The user part of the name of a named segment; `None` for an anonymous (sealed) one.
    name: Option<Box<str>>,
}

// SAFETY: a Segment owns its mapping and descriptor outright; nothing in it is tied to the
// creating thread. `base` is only an address: the handle never dereferences it, and the mapping
// stays valid until Drop, which needs `&mut self` (or ownership), so no thread can use a pointer
// obtained through `&Segment` after the unmap without also breaking the borrow it came from.
unsafe impl Send for Segment {}
// SAFETY: every `&self` method is either pure arithmetic on immutable fields or a syscall on the
// descriptor (fstat), which the kernel serialises. Concurrent access to the mapped bytes is the
// business of the callers who dereference the pointers, as documented on the type.
unsafe impl Sync for Segment {}

impl Segment {
    /// Creates an anonymous segment of `size` bytes, zero-filled.
    ///
    /// It is a `memfd_create` file (close-on-exec) sealed with `F_SEAL_SHRINK | F_SEAL_GROW |
    /// F_SEAL_SEAL`, so its size can never change, and mapped shared. Forked children inherit the
    /// mapping; other children receive [`fd`](Self::fd) and call [`Segment::from_fd`]. The memory
    /// is freed when the last mapping and descriptor are gone, whatever way the processes ended.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for a size of 0 or above `isize::MAX`; `WEFT_NO_MEMORY`
    /// when the mapping cannot be made; `WEFT_OS_ERROR` when a system call fails (memfd
    /// requires Linux 3.17).
    /// Thread safety: callable from any thread.
    pub fn anonymous(size: usize) -> Result<Segment> {
        check_size_arg(size)?;
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: the name is a NUL-terminated static string; no other memory is passed.
        let raw = unsafe { libc::memfd_create(c"weft-space".as_ptr(), flags) };
        if raw < 0 {
            return Err(Error::last_os("memfd_create"));
        }
        // SAFETY: memfd_create returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain syscall on the open descriptor; size <= isize::MAX fits off_t.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
            return Err(Error::last_os("ftruncate"));
        }
        // SAFETY: plain fcntl on the open descriptor with an integer argument.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
            return Err(Error::last_os("fcntl(F_ADD_SEALS)"));
        }
        let base = map(fd.as_fd(), size)?;
        Ok(Segment { base, len: size, fd, name: None })
    }

    /// Maps an anonymous segment from a descriptor of it, for instance one a parent handed to
    /// a child. Takes ownership of `fd` (it is closed when the segment is dropped, or at once
    /// when this fails); pass `fd.try_clone_to_owned()` to keep your own.
    ///
    /// The descriptor must refer to a memfd opened read-write that carries at least
    /// `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` and no write seal; the whole file is mapped.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` when `fd` is not a regular file, not a memfd, lacks the
    /// seals, is write-sealed, or is not open for reading and writing; `WEFT_CORRUPTED` when it
    /// is empty; `WEFT_NO_MEMORY` when the mapping cannot be made; `WEFT_OS_ERROR` otherwise.
    /// Thread safety: callable from any thread.
    pub fn from_fd(fd: OwnedFd) -> Result<Segment> {
        let st = fstat(fd.as_fd())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Error::invalid("the descriptor is not a regular file, so not an anonymous segment"));
        }
        // SAFETY: plain fcntl on the open descriptor with no argument.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 {
            return Err(match errno() {
                libc::EINVAL => Error::invalid("the descriptor is not a memfd, so not an anonymous segment"),
                e => Error::os("fcntl(F_GET_SEALS)", e),
            });
        }
        if seals & SEALS != SEALS {
            return Err(Error::invalid(format!(
                "the memfd's seals are {seals:#x}; an anonymous segment needs shrink, grow and seal \
                 ({SEALS:#x}) so that it cannot be resized under its users"
            )));
        }
        if seals & WRITE_SEALS != 0 {
            return Err(Error::invalid(format!("the memfd is sealed against writing (seals {seals:#x})")));
        }
        // SAFETY: plain fcntl on the open descriptor with no argument.
        let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        if fl < 0 {
            return Err(Error::last_os("fcntl(F_GETFL)"));
        }
        if fl & libc::O_ACCMODE != libc::O_RDWR {
            return Err(Error::invalid("the memfd descriptor is not open for reading and writing"));
        }
        let len = file_len(&st, "the anonymous segment")?;
        let base = map(fd.as_fd(), len)?;
        Ok(Segment { base, len, fd, name: None })
    }

    /// Creates the named segment `name` (the file `/dev/shm/weft.<name>`) of `size` bytes,
    /// zero-filled, and maps it.
    ///
    /// The name is checked by [`validate_name`](super::validate_name) and prefixed with
    /// `/weft.`. The file is created exclusively (`O_EXCL`: an existing file or symbolic link of
    /// that name is never reused or followed), owner-only (mode exactly 0600 whatever the umask),
    /// close-on-exec, and its pages are reserved. If a later step fails the name is removed
    /// again. Until this returns, a concurrent [`open_named`](Self::open_named) may find the file
    /// still empty (`WEFT_CORRUPTED`); layers above mark a segment ready in its contents.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for a bad name or size; `WEFT_EXISTS` when the name is
    /// taken; `WEFT_NO_MEMORY` when `/dev/shm` is full or the mapping cannot be made;
    /// `WEFT_OS_ERROR` otherwise.
    /// Thread safety: callable from any thread.
    pub fn create_named(name: &str, size: usize) -> Result<Segment> {
        let cname = shm_name(name)?;
        check_size_arg(size)?;
        let oflag = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `cname` is a NUL-terminated string that outlives the call.
        let raw = unsafe { libc::shm_open(cname.as_ptr(), oflag, OWNER_ONLY) };
        if raw < 0 {
            return Err(match errno() {
                libc::EEXIST => Error::new(
                    WEFT_EXISTS,
                    format!("named segment {name:?} already exists (shm name {})", cname.to_string_lossy()),
                ),
                e => Error::os(&format!("shm_open({})", cname.to_string_lossy()), e),
            });
        }
        // SAFETY: shm_open returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        match Self::finish_create(fd.as_fd(), size) {
            Ok(base) => Ok(Segment { base, len: size, fd, name: Some(name.into()) }),
            Err(e) => {
                drop(fd);
                // We created this name (O_EXCL) and failed to finish it: remove it again.
                // SAFETY: `cname` is a NUL-terminated string that outlives the call.
                unsafe { libc::shm_unlink(cname.as_ptr()) };
                Err(e)
            }
        }
    }

    fn finish_create(fd: BorrowedFd<'_>, size: usize) -> Result<NonNull<u8>> {
        // The umask may have cleared bits of 0600 at creation; set the mode exactly.
        // SAFETY: plain syscall on the open descriptor.
        if unsafe { libc::fchmod(fd.as_raw_fd(), OWNER_ONLY) } != 0 {
            return Err(Error::last_os("fchmod"));
        }
        reserve(fd, size)?;
        map(fd, size)
    }

    /// Opens and maps the existing named segment `name` (the file `/dev/shm/weft.<name>`),
    /// whole.
    ///
    /// The name is opened read-write, close-on-exec and without following a symbolic link,
    /// then checked: it must be a regular file owned by the caller's effective uid with mode
    /// exactly 0600. A file that fails a check is never mapped. The mapping's size is the file's
    /// size at open; see [`check_size`](Self::check_size) for later truncation.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for a bad name, a symbolic link, a directory or other
    /// non-regular file, another owner, or a mode other than 0600 (the message names the
    /// check; also when the OS denies read-write access, as it does for another user's 0600
    /// file); `WEFT_NOT_FOUND` when no such segment exists; `WEFT_CORRUPTED` when the file is
    /// empty; `WEFT_NO_MEMORY` when the mapping cannot be made; `WEFT_OS_ERROR` otherwise.
    /// Thread safety: callable from any thread.
    pub fn open_named(name: &str) -> Result<Segment> {
        let cname = shm_name(name)?;
        let oflag = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `cname` is a NUL-terminated string that outlives the call.
        let raw = unsafe { libc::shm_open(cname.as_ptr(), oflag, 0) };
        if raw < 0 {
            let shown = cname.to_string_lossy();
            return Err(match errno() {
                libc::ENOENT => Error::new(WEFT_NOT_FOUND, format!("no named segment {name:?} (shm name {shown})")),
                libc::ELOOP => Error::invalid(format!(
                    "named segment {name:?} (shm name {shown}) is a symbolic link; weft never follows links"
                )),
                // glibc reports a directory as EINVAL (POSIX's "invalid name"), the kernel as
                // EISDIR; the name itself was validated above.
                libc::EISDIR | libc::EINVAL => Error::invalid(format!(
                    "named segment {name:?} (shm name {shown}) is not a regular file (a directory?)"
                )),
                // Another user's file, or one of ours without read-write permission: either way
                // it fails the owner and mode checks below, which we could not even reach.
                libc::EACCES => Error::invalid(format!(
                    "named segment {name:?} (shm name {shown}) cannot be opened read-write by the caller \
                     (permission denied); weft only opens segments owned by the caller with mode 0600"
                )),
                e => Error::os(&format!("shm_open({shown})"), e),
            });
        }
        // SAFETY: shm_open returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let st = fstat(fd.as_fd())?;
        // SAFETY: geteuid cannot fail and touches no memory.
        check_named_stat(&st, unsafe { libc::geteuid() }, name)?;
        let len = file_len(&st, &format!("named segment {name:?}"))?;
        let base = map(fd.as_fd(), len)?;
        Ok(Segment { base, len, fd, name: Some(name.into()) })
    }

    /// Removes the name `name` (the file `/dev/shm/weft.<name>`). Processes that have the
    /// segment mapped keep using it; its memory is freed when the last of them unmaps it. Later
    /// opens of the name fail with `WEFT_NOT_FOUND` (or find a new segment created since).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for a bad name; `WEFT_NOT_FOUND` when there is no such
    /// name; `WEFT_OS_ERROR` otherwise (for instance `EPERM` for another user's file).
    /// Thread safety: callable from any thread.
    pub fn unlink_named(name: &str) -> Result<()> {
        let cname = shm_name(name)?;
        // SAFETY: `cname` is a NUL-terminated string that outlives the call.
        if unsafe { libc::shm_unlink(cname.as_ptr()) } != 0 {
            let shown = cname.to_string_lossy();
            return Err(match errno() {
                libc::ENOENT => Error::new(WEFT_NOT_FOUND, format!("no named segment {name:?} (shm name {shown})")),
                e => Error::os(&format!("shm_unlink({shown})"), e),
            });
        }
        Ok(())
    }

    /// Checks that the file still covers the whole mapping, so that touching any mapped byte
    /// cannot raise SIGBUS.
    ///
    /// Anonymous segments are sealed against shrinking and always pass without a system call.
    /// For a named segment the file is `fstat`ed again: a file now smaller than the mapping
    /// (truncated by a peer) gives `WEFT_CORRUPTED`; a grown file passes (the mapping keeps its
    /// size). Call this before trusting a named segment's mapping after a peer may have
    /// truncated it; see the module documentation for the race it cannot close.
    ///
    /// Errors: `WEFT_CORRUPTED` as above; `WEFT_OS_ERROR` when `fstat` fails.
    /// Thread safety: callable from any thread, concurrently.
    pub fn check_size(&self) -> Result<()> {
        if self.is_sealed() {
            return Ok(());
        }
        let st = fstat(self.fd.as_fd())?;
        let covered = matches!(u64::try_from(st.st_size), Ok(size) if size >= self.len as u64);
        if !covered {
            return Err(Error::new(
                WEFT_CORRUPTED,
                format!(
                    "named segment {:?} was truncated to {} bytes, below its mapping of {} bytes",
                    self.name.as_deref().unwrap_or(""),
                    st.st_size,
                    self.len
                ),
            ));
        }
        Ok(())
    }

    /// A pointer to `len` bytes at `offset` in the mapping, after checking that
    /// `offset + len <= self.len()` without overflow. Every offset and length that comes from
    /// shared memory (where a peer may have written anything) goes through here once.
    ///
    /// An empty range at the very end (`offset == self.len()`, `len == 0`) is allowed. The
    /// pointer is valid while `self` lives; its alignment is that of `offset` (the base is
    /// page-aligned). Reading or writing through it is the caller's unsafe business: other
    /// threads and processes may access the same bytes concurrently.
    ///
    /// Errors: `WEFT_CORRUPTED` when the range does not lie inside the mapping.
    /// Thread safety: callable from any thread, concurrently.
    pub fn slice(&self, offset: u64, len: u64) -> Result<*mut u8> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len as u64 => {
                // SAFETY: offset <= end <= self.len, so the result stays inside (or one past the
                // end of) the mapping of `self.len` bytes, and the cast cannot truncate.
                Ok(unsafe { self.base.as_ptr().add(offset as usize) })
            }
            _ => Err(Error::new(
                WEFT_CORRUPTED,
                format!("range of {len} bytes at offset {offset} lies outside the {}-byte segment", self.len),
            )),
        }
    }

    /// The first byte of the mapping (page-aligned). Valid for [`len`](Self::len) bytes while
    /// `self` lives; prefer [`slice`](Self::slice) for offsets that were not computed locally.
    /// Thread safety: callable from any thread.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The length of the mapping in bytes (the requested size, or the file's size when opened).
    /// Thread safety: callable from any thread.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a segment has at least one byte. Present for API symmetry with `len`.
    /// Thread safety: callable from any thread.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment's file descriptor, borrowed: valid while `self` lives, close-on-exec. Hand
    /// it to a child (dup it, clear close-on-exec or send it over a socket) so that the child
    /// can call [`Segment::from_fd`].
    /// Thread safety: callable from any thread.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The user part of a named segment's name (without the `/weft.` prefix), or `None` for an
    /// anonymous segment.
    /// Thread safety: callable from any thread.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether the segment is sealed against resizing: `true` for anonymous segments, `false`
    /// for named ones (which [`check_size`](Self::check_size) must guard).
    /// Thread safety: callable from any thread.
    pub fn is_sealed(&self) -> bool {
        self.name.is_none()
    }
}

impl AsFd for Segment {
    /// Same as [`Segment::fd`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Segment {
    /// Unmaps the segment and closes its descriptor. A name is never unlinked.
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe the mapping this value created and still owns; pointers
        // handed out by `slice`/`as_ptr` are documented to be valid only while `self` lives.
        let rc = unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
        debug_assert_eq!(rc, 0, "munmap of a segment's own mapping failed");
        // `fd` closes itself.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::name::NAME_MAX_LEN;
    use crate::status::{weft_status, WEFT_INVALID_ARGUMENT};
    use std::fs;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    const PAGE: usize = 4096;

    fn code<T: std::fmt::Debug>(r: Result<T>) -> weft_status {
        r.unwrap_err().code
    }

    /// A /dev/shm entry a test uses: a unique name, removed on drop even when the test fails.
    struct Entry {
        name: String,
        path: PathBuf,
    }

    impl Entry {
        fn new(tag: &str) -> Entry {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("test-{}-{n}-{tag}", std::process::id());
            let path = PathBuf::from(format!("/dev/shm/weft.{name}"));
            assert!(!Entry::present(&path), "{} left over", path.display());
            Entry { name, path }
        }
        fn present(path: &PathBuf) -> bool {
            fs::symlink_metadata(path).is_ok()
        }
        fn exists(&self) -> bool {
            Entry::present(&self.path)
        }
        /// A plain file at the entry's path, as another program might have placed it.
        fn place_file(&self, mode: u32, size: u64) {
            let f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&self.path)
                .unwrap();
            f.set_len(size).unwrap();
            // After set_len: resizing clears set-user-ID bits for callers without CAP_FSETID.
            f.set_permissions(fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(f.metadata().unwrap().permissions().mode() & 0o7777, mode);
        }
    }

    impl Drop for Entry {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.path).or_else(|_| fs::remove_dir(&self.path));
        }
    }

    /// Reads `n` bytes at `off` through a checked slice.
    fn read(seg: &Segment, off: u64, n: usize) -> Vec<u8> {
        let p = seg.slice(off, n as u64).unwrap();
        // SAFETY: slice checked the range; no other thread writes these bytes during the read.
        unsafe { std::slice::from_raw_parts(p, n) }.to_vec()
    }

    /// Writes `data` at `off` through a checked slice.
    fn write(seg: &Segment, off: u64, data: &[u8]) {
        let p = seg.slice(off, data.len() as u64).unwrap();
        // SAFETY: slice checked the range; no other thread touches these bytes meanwhile.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    }

    #[test]
    fn anonymous_create_write_read() {
        let size = 2 * PAGE + 13; // not a page multiple: the length is kept exactly
        let seg = Segment::anonymous(size).unwrap();
        assert_eq!(seg.len(), size);
        assert!(!seg.is_empty());
        assert!(seg.is_sealed());
        assert_eq!(seg.name(), None);
        assert_eq!(seg.as_ptr() as usize % PAGE, 0);
        assert_eq!(read(&seg, 0, size), vec![0u8; size], "zero-filled");
        write(&seg, 0, b"head");
        write(&seg, (size - 4) as u64, b"tail");
        assert_eq!(read(&seg, 0, 4), b"head");
        assert_eq!(read(&seg, (size - 4) as u64, 4), b"tail");
        assert!(seg.check_size().is_ok());
        // The descriptor is close-on-exec.
        // SAFETY: plain fcntl on a live descriptor.
        let fdflags = unsafe { libc::fcntl(seg.fd().as_raw_fd(), libc::F_GETFD) };
        assert_ne!(fdflags & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert_eq!(code(Segment::anonymous(0)), WEFT_INVALID_ARGUMENT);
        assert_eq!(code(Segment::anonymous(isize::MAX as usize + 1)), WEFT_INVALID_ARGUMENT);
        let e = Entry::new("size0");
        assert_eq!(code(Segment::create_named(&e.name, 0)), WEFT_INVALID_ARGUMENT);
        assert!(!e.exists(), "a refused create leaves no entry");
    }

    #[test]
    fn anonymous_is_sealed_against_resizing() {
        let seg = Segment::anonymous(4 * PAGE).unwrap();
        let fd = seg.fd().as_raw_fd();
        // SAFETY: plain fcntl on a live descriptor.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        assert_eq!(seals, SEALS);
        for size in [PAGE, 0, 8 * PAGE] {
            // SAFETY: plain syscall on a live descriptor.
            let rc = unsafe { libc::ftruncate(fd, size as libc::off_t) };
            assert_eq!((rc, errno()), (-1, libc::EPERM), "ftruncate to {size}");
        }
        // SAFETY: plain fcntl on a live descriptor.
        let rc = unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) };
        assert_eq!((rc, errno()), (-1, libc::EPERM), "the seal set is final");
        assert_eq!(fstat(seg.fd()).unwrap().st_size, 4 * PAGE as libc::off_t);
        write(&seg, (4 * PAGE - 1) as u64, b"z");
        assert_eq!(read(&seg, (4 * PAGE - 1) as u64, 1), b"z");
    }

    #[test]
    fn from_fd_round_trip() {
        let a = Segment::anonymous(3 * PAGE).unwrap();
        write(&a, 100, b"from a");
        let b = Segment::from_fd(a.fd().try_clone_to_owned().unwrap()).unwrap();
        assert_eq!(b.len(), 3 * PAGE);
        assert!(b.is_sealed());
        assert_ne!(a.as_ptr(), b.as_ptr(), "a second mapping");
        assert_eq!(read(&b, 100, 6), b"from a");
        write(&b, 2 * PAGE as u64, b"from b");
        assert_eq!(read(&a, 2 * PAGE as u64, 6), b"from b");
        drop(a);
        // b's own mapping and descriptor outlive a.
        assert_eq!(read(&b, 100, 6), b"from a");
    }

    #[test]
    fn from_fd_refuses_what_is_not_a_sealed_memfd() {
        // A memfd without seals.
        // SAFETY: NUL-terminated static name.
        let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        assert!(raw >= 0);
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain syscall on a live descriptor.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), PAGE as libc::off_t) }, 0);
        let err = Segment::from_fd(fd.try_clone().unwrap()).unwrap_err();
        assert_eq!(err.code, WEFT_INVALID_ARGUMENT);
        assert!(err.message.contains("seals"), "{}", err.message);
        // Sealed, but write-sealed too.
        // SAFETY: plain fcntl on a live descriptor.
        let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS | libc::F_SEAL_WRITE) };
        assert_eq!(rc, 0);
        let err = Segment::from_fd(fd).unwrap_err();
        assert_eq!(err.code, WEFT_INVALID_ARGUMENT);
        assert!(err.message.contains("writing"), "{}", err.message);

        // A sealed memfd opened read-only (through /proc).
        let seg = Segment::anonymous(PAGE).unwrap();
        let path = format!("/proc/self/fd/{}", seg.fd().as_raw_fd());
        let ro: OwnedFd = fs::File::open(path).unwrap().into();
        let err = Segment::from_fd(ro).unwrap_err();
        assert_eq!(err.code, WEFT_INVALID_ARGUMENT);
        assert!(err.message.contains("reading and writing"), "{}", err.message);

        // A pipe.
        let mut p = [0; 2];
        // SAFETY: `p` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 returned two new descriptors nothing else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
        assert_eq!(code(Segment::from_fd(r)), WEFT_INVALID_ARGUMENT);
        drop(w);

        // A named (unsealable) segment's descriptor.
        let e = Entry::new("fromfd");
        let named = Segment::create_named(&e.name, PAGE).unwrap();
        let err = Segment::from_fd(named.fd().try_clone_to_owned().unwrap()).unwrap_err();
        assert_eq!(err.code, WEFT_INVALID_ARGUMENT);
        drop(named);
        Segment::unlink_named(&e.name).unwrap();
        assert!(!e.exists());
    }

    fn wait_child(pid: libc::pid_t) -> libc::c_int {
        let mut status = 0;
        loop {
            // SAFETY: `status` is writable; `pid` is our child.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc == pid {
                return status;
            }
            assert_eq!(errno(), libc::EINTR, "waitpid");
        }
    }

    #[test]
    fn forked_child_shares_the_memory() {
        let seg = Segment::anonymous(2 * PAGE).unwrap();
        write(&seg, 0, &[42]);
        let p = seg.slice(0, 2 * PAGE as u64).unwrap();
        let fd = seg.fd().as_raw_fd();
        // SAFETY: fork; the child below only makes async-signal-safe calls (raw memory access,
        // mmap, _exit) and never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY (whole child): `p` points at the inherited shared mapping of 2 pages; the
            // parent does not touch it until the child has exited.
            unsafe {
                if p.read_volatile() != 42 {
                    libc::_exit(2);
                }
                for i in 1..16 {
                    p.add(i).write_volatile(i as u8 * 3);
                }
                // The inherited descriptor maps the same memory too (how other start methods
                // will hand a space over).
                let q = libc::mmap(ptr::null_mut(), 2 * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
                if q == libc::MAP_FAILED {
                    libc::_exit(3);
                }
                q.cast::<u8>().add(PAGE).write_volatile(7);
                libc::_exit(0);
            }
        }
        let status = wait_child(pid);
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
        let expected: Vec<u8> = (0..16).map(|i| if i == 0 { 42 } else { i * 3 }).collect();
        assert_eq!(read(&seg, 0, 16), expected);
        assert_eq!(read(&seg, PAGE as u64, 1), [7]);
    }

    #[test]
    fn named_create_open_unlink_round_trip() {
        let e = Entry::new("rt");
        let a = Segment::create_named(&e.name, PAGE + 1).unwrap();
        assert_eq!(a.len(), PAGE + 1);
        assert_eq!(a.name(), Some(e.name.as_str()));
        assert!(!a.is_sealed());
        let md = fs::symlink_metadata(&e.path).unwrap();
        assert!(md.file_type().is_file());
        assert_eq!(md.permissions().mode() & 0o7777, 0o600);
        assert_eq!(md.len(), (PAGE + 1) as u64);
        assert_eq!(read(&a, 0, PAGE + 1), vec![0; PAGE + 1]);
        write(&a, 0, b"hello");

        let b = Segment::open_named(&e.name).unwrap();
        assert_eq!(b.len(), PAGE + 1);
        assert_eq!(read(&b, 0, 5), b"hello");
        write(&b, PAGE as u64, b"!");
        assert_eq!(read(&a, PAGE as u64, 1), b"!");
        assert!(a.check_size().is_ok() && b.check_size().is_ok());

        drop(a);
        assert!(e.exists(), "drop never unlinks");
        Segment::unlink_named(&e.name).unwrap();
        assert!(!e.exists());
        // The mapping survives the unlink.
        assert_eq!(read(&b, 0, 5), b"hello");
        drop(b);
        assert_eq!(code(Segment::open_named(&e.name)), WEFT_NOT_FOUND);
        assert_eq!(code(Segment::unlink_named(&e.name)), WEFT_NOT_FOUND);
        assert!(!e.exists());
    }

    #[test]
    fn longest_name_works() {
        let e = Entry::new("long");
        let name = format!("{}-{}", e.name, "x".repeat(NAME_MAX_LEN - e.name.len() - 1));
        assert_eq!(name.len(), NAME_MAX_LEN);
        let path = PathBuf::from(format!("/dev/shm/weft.{name}"));
        let seg = Segment::create_named(&name, PAGE).unwrap();
        assert!(Entry::present(&path));
        drop(seg);
        Segment::unlink_named(&name).unwrap();
        assert!(!Entry::present(&path));
    }

    #[test]
    fn create_twice_is_exists() {
        let e = Entry::new("twice");
        let a = Segment::create_named(&e.name, PAGE).unwrap();
        write(&a, 0, b"first");
        let err = Segment::create_named(&e.name, 2 * PAGE).unwrap_err();
        assert_eq!(err.code, WEFT_EXISTS);
        assert!(err.message.contains(&e.name), "{}", err.message);
        // The failed create changed nothing.
        assert_eq!(fs::metadata(&e.path).unwrap().len(), PAGE as u64);
        assert_eq!(read(&a, 0, 5), b"first");
        drop(a);
        Segment::unlink_named(&e.name).unwrap();
        assert!(!e.exists());
    }

    #[test]
    fn open_missing_is_not_found() {
        let e = Entry::new("missing");
        let err = Segment::open_named(&e.name).unwrap_err();
        assert_eq!(err.code, WEFT_NOT_FOUND);
        assert!(err.message.contains(&e.name), "{}", err.message);
        assert!(!e.exists(), "open never creates");
    }

    #[test]
    fn symlinks_are_refused_by_open_and_create() {
        // The link points at a perfectly valid segment: only refusing to follow it stops open.
        let target = Entry::new("target");
        let link = Entry::new("link");
        let seg = Segment::create_named(&target.name, PAGE).unwrap();
        write(&seg, 0, b"secret");
        std::os::unix::fs::symlink(&target.path, &link.path).unwrap();
        let err = Segment::open_named(&link.name).unwrap_err();
        assert_eq!(err.code, WEFT_INVALID_ARGUMENT);
        assert!(err.message.contains("symbolic link"), "{}", err.message);
        assert_eq!(code(Segment::create_named(&link.name, PAGE)), WEFT_EXISTS);
        assert_eq!(read(&seg, 0, 6), b"secret", "the target is untouched");
        assert_eq!(fs::metadata(&target.path).unwrap().len(), PAGE as u64);

        // A dangling link: create must not create the file it points to.
        let dangling = Entry::new("dangling");
        let pointee = Entry::new("pointee");
        std::os::unix::fs::symlink(&pointee.path, &dangling.path).unwrap();
        assert_eq!(code(Segment::create_named(&dangling.name, PAGE)), WEFT_EXISTS);
        assert_eq!(code(Segment::open_named(&dangling.name)), WEFT_INVALID_ARGUMENT);
        assert!(!pointee.exists(), "nothing was created through the link");

        drop(seg);
        Segment::unlink_named(&target.name).unwrap();
        // unlink removes a link itself, never its target.
        Segment::unlink_named(&link.name).unwrap();
        Segment::unlink_named(&dangling.name).unwrap();
        for e in [&target, &link, &dangling, &pointee] {
            assert!(!e.exists(), "{} left over", e.path.display());
        }
    }

    #[test]
    fn open_refuses_wrong_mode() {
        for mode in [0o644, 0o640, 0o400, 0o700, 0o4600] {
            let e = Entry::new("mode");
            e.place_file(mode, PAGE as u64);
            let err = Segment::open_named(&e.name).unwrap_err();
            assert_eq!(err.code, WEFT_INVALID_ARGUMENT, "mode {mode:o}");
            assert!(err.message.contains("mode") && err.message.contains("0600"), "{}", err.message);
            Segment::unlink_named(&e.name).unwrap();
            assert!(!e.exists());
        }
        // The same file with mode 0600 is accepted: the mode was the only problem.
        let e = Entry::new("mode");
        e.place_file(0o600, PAGE as u64);
        let seg = Segment::open_named(&e.name).unwrap();
        assert_eq!(seg.len(), PAGE);
        drop(seg);
        Segment::unlink_named(&e.name).unwrap();
        assert!(!e.exists());
    }

    #[test]
    fn open_refuses_non_regular_files_and_empty_files() {
        let dir = Entry::new("dir");
        fs::create_dir(&dir.path).unwrap();
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = Segment::open_named(&dir.name).unwrap_err();
        assert_eq!(err.code, WEFT_INVALID_ARGUMENT);
        assert!(err.message.contains("not a regular file"), "{}", err.message);
        fs::remove_dir(&dir.path).unwrap();
        assert!(!dir.exists());

        let fifo = Entry::new("fifo");
        let cpath = std::ffi::CString::new(fifo.path.to_str().unwrap()).unwrap();
        // SAFETY: NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
        let err = Segment::open_named(&fifo.name).unwrap_err();
        assert_eq!(err.code, WEFT_INVALID_ARGUMENT);
        assert!(err.message.contains("not a regular file"), "{}", err.message);
        Segment::unlink_named(&fifo.name).unwrap();
        assert!(!fifo.exists());

        let empty = Entry::new("empty");
        empty.place_file(0o600, 0);
        assert_eq!(code(Segment::open_named(&empty.name)), WEFT_CORRUPTED);
        Segment::unlink_named(&empty.name).unwrap();
        assert!(!empty.exists());
    }

    #[test]
    fn owner_check() {
        // SAFETY: all-zero is a valid `stat` (plain integers).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_mode = libc::S_IFREG | 0o600;
        st.st_uid = 1000;
        assert!(check_named_stat(&st, 1000, "n").is_ok());
        let err = check_named_stat(&st, 1001, "n").unwrap_err();
        assert_eq!(err.code, WEFT_INVALID_ARGUMENT);
        assert!(err.message.contains("owned by uid 1000"), "{}", err.message);
        st.st_mode = libc::S_IFLNK | 0o600;
        assert!(check_named_stat(&st, 1000, "n").unwrap_err().message.contains("not a regular file"));

        // With root privileges, try it for real: a 0600 file owned by someone else.
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            let e = Entry::new("owner");
            drop(Segment::create_named(&e.name, PAGE).unwrap());
            std::os::unix::fs::chown(&e.path, Some(65534), Some(65534)).unwrap();
            let err = Segment::open_named(&e.name).unwrap_err();
            assert_eq!(err.code, WEFT_INVALID_ARGUMENT);
            assert!(err.message.contains("owned by uid 65534"), "{}", err.message);
            Segment::unlink_named(&e.name).unwrap();
            assert!(!e.exists());
        }
    }

    #[test]
    fn invalid_names_are_refused_everywhere() {
        for bad in ["", ".x", "..", "a/b", "../../etc/passwd", "a b", "\u{e9}", &"n".repeat(201)] {
            assert_eq!(code(Segment::create_named(bad, PAGE)), WEFT_INVALID_ARGUMENT, "{bad:?}");
            assert_eq!(code(Segment::open_named(bad)), WEFT_INVALID_ARGUMENT, "{bad:?}");
            assert_eq!(code(Segment::unlink_named(bad)), WEFT_INVALID_ARGUMENT, "{bad:?}");
            assert!(!Entry::present(&PathBuf::from(format!("/dev/shm/weft.{bad}"))), "{bad:?}");
        }
    }

    #[test]
    fn check_size_detects_truncation_through_another_fd() {
        let e = Entry::new("trunc");
        let seg = Segment::create_named(&e.name, 3 * PAGE).unwrap();
        write(&seg, 0, b"ok");
        assert!(seg.check_size().is_ok());
        let other = fs::OpenOptions::new().write(true).open(&e.path).unwrap();

        other.set_len(PAGE as u64).unwrap();
        let err = seg.check_size().unwrap_err();
        assert_eq!(err.code, WEFT_CORRUPTED);
        assert!(err.message.contains("truncated"), "{}", err.message);
        // A fresh open maps what is there now, and passes.
        let small = Segment::open_named(&e.name).unwrap();
        assert_eq!(small.len(), PAGE);
        assert!(small.check_size().is_ok());
        assert_eq!(read(&small, 0, 2), b"ok");

        other.set_len(0).unwrap();
        assert_eq!(code(seg.check_size()), WEFT_CORRUPTED);
        assert_eq!(code(small.check_size()), WEFT_CORRUPTED);

        // Grown again (even beyond the mapping): the whole mapping is backed, checks pass.
        other.set_len(4 * PAGE as u64).unwrap();
        assert!(seg.check_size().is_ok());
        assert!(small.check_size().is_ok());
        assert_eq!(read(&seg, 3 * PAGE as u64 - 1, 1), [0]);

        drop((seg, small, other));
        Segment::unlink_named(&e.name).unwrap();
        assert!(!e.exists());
    }

    #[test]
    fn slice_bounds() {
        let size = 3 * PAGE + 5;
        let seg = Segment::anonymous(size).unwrap();
        let n = size as u64;
        let base = seg.as_ptr();
        assert_eq!(seg.slice(0, n).unwrap(), base);
        assert_eq!(seg.slice(n, 0).unwrap(), base.wrapping_add(size));
        assert_eq!(seg.slice(n - 1, 1).unwrap(), base.wrapping_add(size - 1));
        assert_eq!(seg.slice(17, 100).unwrap(), base.wrapping_add(17));
        for (off, len) in [
            (0, n + 1),
            (n, 1),
            (n + 1, 0),
            (1, n),
            (u64::MAX, 0),
            (u64::MAX, 1),
            (1, u64::MAX),
            (u64::MAX, u64::MAX),
            (n, u64::MAX - n + 1), // overflows to exactly 0
            (1 << 63, 1 << 63),
        ] {
            let err = seg.slice(off, len).unwrap_err();
            assert_eq!(err.code, WEFT_CORRUPTED, "offset {off} len {len}");
            assert!(err.message.contains("outside"), "{}", err.message);
        }
    }

    #[test]
    fn shm_names_are_prefixed() {
        let e = Entry::new("prefix");
        assert_eq!(shm_name(&e.name).unwrap().to_str().unwrap(), format!("/weft.{}", e.name));
        let seg = Segment::create_named(&e.name, PAGE).unwrap();
        assert!(e.exists(), "the segment lives at /dev/shm/weft.<name>");
        drop(seg);
        Segment::unlink_named(&e.name).unwrap();
        assert!(!e.exists());
    }

    #[test]
    fn segments_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Segment>();
        let seg = Segment::anonymous(PAGE).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| write(&seg, 0, b"t"));
        });
        assert_eq!(read(&seg, 0, 1), b"t");
    }
}
