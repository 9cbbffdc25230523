//! A process's handles on spaces: the default anonymous space, named spaces, participation,
//! the sweep of abandoned named spaces, and the registry that resolves tokens.
//!
//! # The default space
//!
//! Created on first use as an anonymous (sealed memfd) space of 256 MiB of address space —
//! pages are only allocated when touched — or of `WEFT_DEFAULT_SPACE_SIZE` bytes when that
//! environment variable is set. Forked children inherit it (the same mapping). A child started
//! another way receives its descriptor: when `WEFT_DEFAULT_SPACE_FD` names an inherited memfd
//! descriptor, the first use attaches to that space instead of creating one. The memory goes
//! away with the last process that maps it, however the processes end.
//!
//! # Participation
//!
//! A process that creates or opens a space records itself in the space's participants table
//! (identity = pid + start time, so immune to pid reuse) and removes itself when its last handle
//! is closed. A forked child that uses an inherited handle records itself on first use. A
//! participant that dies without closing stays recorded until someone finds it dead.
//!
//! # Sweep
//!
//! [`sweep`] looks at every named space of the calling user in `/dev/shm` and unlinks those
//! whose every participant is dead (checked and unlinked under the space's lock, so a process
//! cannot join in between), and those whose creator died before finishing formatting (older
//! than a minute and never marked ready). Raw named segments (`weft_shm`, no space header) are
//! never touched. A space with one live participant is never removed,
//! nor one whose header fails validation (it is reported, not judged).

use super::layout::{state, SegmentState, Space};
use super::liveness;
use super::Segment;
use crate::status::{Error, Result, WEFT_CORRUPTED, WEFT_INVALID_ARGUMENT, WEFT_NO_MEMORY, WEFT_NOT_FOUND};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Size of the default space unless `WEFT_DEFAULT_SPACE_SIZE` says otherwise.
pub(crate) const DEFAULT_SPACE_SIZE: usize = 256 << 20;
/// Environment variable naming the default space's inherited descriptor.
pub(crate) const DEFAULT_SPACE_FD_ENV: &str = "WEFT_DEFAULT_SPACE_FD";
/// Environment variable giving the default space's size in bytes.
pub(crate) const DEFAULT_SPACE_SIZE_ENV: &str = "WEFT_DEFAULT_SPACE_SIZE";
/// Age after which a named space never marked ready is considered abandoned by its creator.
const UNFORMATTED_GRACE_SECS: i64 = 60;

/// One process's handle on a space. Shared (`Arc`) by every object opened through it.
///
/// Thread safety: `Send + Sync`.
#[derive(Debug)]
pub struct SpaceHandle {
    space: Space,
    uid: u64,
    name: Option<String>,
    /// `(fork generation, participant slot)` of this process's entry.
    joined: Mutex<Option<(u32, usize)>>,
}

impl SpaceHandle {
    fn new(space: Space, name: Option<String>) -> Arc<SpaceHandle> {
        let uid = space.uid();
        let h = Arc::new(SpaceHandle { space, uid, name, joined: Mutex::new(None) });
        register(&h);
        h
    }

    /// The space.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// The space's identity (random, chosen at creation).
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// The name of a named space; `None` for an anonymous one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Records the calling process as a participant unless it already is (a forked child
    /// inherits its parent's handle but not its participation). For an anonymous space a full
    /// participants table is not an error (participation there only informs).
    ///
    /// Errors: the errors of [`Space::join`] (for a named space).
    pub fn ensure_joined(&self) -> Result<()> {
        let gen = liveness::generation();
        let mut joined = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        if joined.is_some_and(|(g, _)| g == gen) {
            return Ok(());
        }
        match self.space.join() {
            Ok(slot) => {
                *joined = Some((gen, slot));
                Ok(())
            }
            Err(e) if e.code == WEFT_NO_MEMORY && self.name.is_none() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates an anonymous space of `size` bytes (and joins it).
    ///
    /// Errors: those of [`Segment::anonymous`] and [`Space::format`].
    pub fn anonymous(size: usize) -> Result<Arc<SpaceHandle>> {
        let h = SpaceHandle::new(Space::format(Segment::anonymous(size)?)?, None);
        h.ensure_joined()?;
        Ok(h)
    }

    /// Attaches to an anonymous space from a descriptor of it (taking ownership of `fd`).
    ///
    /// Errors: those of [`Segment::from_fd`] and [`Space::attach`].
    pub fn from_fd(fd: OwnedFd) -> Result<Arc<SpaceHandle>> {
        let h = SpaceHandle::new(Space::attach(Segment::from_fd(fd)?)?, None);
        h.ensure_joined()?;
        Ok(h)
    }

    /// Creates the named space `name` of `size` bytes: exclusive, owner-only (see
    /// [`Segment::create_named`]), formatted, with the caller as its first participant. On
    /// failure after the file was created, the name is removed again.
    ///
    /// Errors: those of [`Segment::create_named`] (`WEFT_EXISTS`...), [`Space::format`],
    /// [`Space::join`].
    pub fn create_named(name: &str, size: usize) -> Result<Arc<SpaceHandle>> {
        let seg = Segment::create_named(name, size)?;
        let made = Space::format(seg).and_then(|space| {
            let h = SpaceHandle::new(space, Some(name.to_owned()));
            h.ensure_joined().map(|_| h)
        });
        if made.is_err() {
            let _ = Segment::unlink_named(name);
        }
        made
    }

    /// Opens the named space `name` created by this or another process of the same user, and
    /// joins it.
    ///
    /// Errors: those of [`Segment::open_named`] (`WEFT_NOT_FOUND`, refusal of a name owned by
    /// another user, with another mode, or a symbolic link), [`Space::attach`]
    /// (`WEFT_CORRUPTED`), and `WEFT_NOT_FOUND` when a sweep removed it meanwhile.
    pub fn open_named(name: &str) -> Result<Arc<SpaceHandle>> {
        let h = SpaceHandle::new(Space::attach(Segment::open_named(name)?)?, Some(name.to_owned()));
        h.ensure_joined()?;
        Ok(h)
    }
}

impl Drop for SpaceHandle {
    fn drop(&mut self) {
        let joined = self.joined.get_mut().map(|j| *j).unwrap_or_else(|e| *e.into_inner());
        if let Some((gen, slot)) = joined {
            if gen == liveness::generation() {
                let _ = self.space.leave(slot);
            }
        }
    }
}

/// Every space handle alive in this process, for resolving tokens by uid.
static REGISTRY: Mutex<Vec<Weak<SpaceHandle>>> = Mutex::new(Vec::new());

fn register(h: &Arc<SpaceHandle>) {
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.retain(|w| w.strong_count() > 0);
    reg.push(Arc::downgrade(h));
}

/// A live handle of this process on the space with identity `uid`, if any.
pub fn find_by_uid(uid: u64) -> Option<Arc<SpaceHandle>> {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.iter().filter_map(Weak::upgrade).find(|h| h.uid == uid)
}

static DEFAULT: OnceLock<Arc<SpaceHandle>> = OnceLock::new();
static DEFAULT_INIT: Mutex<()> = Mutex::new(());

fn default_size() -> Result<usize> {
    match std::env::var(DEFAULT_SPACE_SIZE_ENV) {
        Err(_) => Ok(DEFAULT_SPACE_SIZE),
        Ok(v) => v.trim().parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
            Error::new(WEFT_INVALID_ARGUMENT, format!("{DEFAULT_SPACE_SIZE_ENV}={v:?} is not a size in bytes"))
        }),
    }
}

fn open_default() -> Result<Arc<SpaceHandle>> {
    if let Ok(v) = std::env::var(DEFAULT_SPACE_FD_ENV) {
        let fd: i32 = v.trim().parse().map_err(|_| {
            Error::new(WEFT_INVALID_ARGUMENT, format!("{DEFAULT_SPACE_FD_ENV}={v:?} is not a file descriptor"))
        })?;
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor number only duplicates it (EBADF if not open);
        // the duplicate is ours alone, so OwnedFd may own it.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(Error::last_os(&format!("{DEFAULT_SPACE_FD_ENV}: fcntl(F_DUPFD_CLOEXEC, {fd})")));
        }
        // SAFETY: `dup` is a fresh descriptor nothing else owns.
        return SpaceHandle::from_fd(unsafe { OwnedFd::from_raw_fd(dup) });
    }
    SpaceHandle::anonymous(default_size()?)
}

/// The process's default space, created (or attached, see the module documentation) on first
/// use and kept for the life of the process. A forked child shares its parent's.
///
/// Errors: `WEFT_INVALID_ARGUMENT` for a bad `WEFT_DEFAULT_SPACE_SIZE`/`_FD`; the errors of
/// creating or attaching the space. A failure is not cached: the next call tries again.
/// Thread safety: callable from any thread.
pub fn default_space() -> Result<Arc<SpaceHandle>> {
    if let Some(h) = DEFAULT.get() {
        h.ensure_joined()?;
        return Ok(h.clone());
    }
    let _g = DEFAULT_INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = DEFAULT.get() {
        return Ok(h.clone());
    }
    let h = open_default()?;
    let _ = DEFAULT.set(h.clone());
    Ok(h)
}

/// Removes the name of the named space `name` (the space lives on while processes map it).
///
/// Errors: those of [`Segment::unlink_named`] (`WEFT_NOT_FOUND`, `WEFT_INVALID_ARGUMENT`).
pub fn unlink_named(name: &str) -> Result<()> {
    Segment::unlink_named(name)
}

/// The outcome of a [`sweep`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Names removed because every participant had died (or the creator died formatting).
    pub removed: Vec<String>,
    /// Names left alone because their header failed validation, with the reason.
    pub damaged: Vec<(String, String)>,
}

/// Removes the calling user's named spaces whose every participant is dead (see the module
/// documentation); never one with a live participant.
///
/// Errors: `WEFT_OS_ERROR` when `/dev/shm` cannot be listed. Spaces that cannot be judged are
/// listed in [`Swept::damaged`], not failed on.
/// Thread safety: callable from any thread; concurrent sweeps (in any process) are safe.
pub fn sweep() -> Result<Swept> {
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| Error::os("read_dir(/dev/shm)", e.raw_os_error().unwrap_or(0)))?;
    let mut out = Swept::default();
    for entry in dir.flatten() {
        let file = entry.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_prefix("weft.")) else { continue };
        let seg = match Segment::open_named(name) {
            Ok(s) => s,
            Err(_) => continue, // another user's, a link, gone meanwhile: not ours to judge
        };
        match state(&seg) {
            SegmentState::NotASpace => continue, // a raw segment (weft_shm): never ours to judge
            SegmentState::Ready => {}
            SegmentState::Formatting => {
                let age = entry
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .map_or(0, |d| d.as_secs() as i64);
                if age > UNFORMATTED_GRACE_SECS && Segment::unlink_named(name).is_ok() {
                    out.removed.push(name.to_owned());
                }
                continue;
            }
        }
        match Space::attach(seg) {
            Ok(space) => match space.retire_if_abandoned(&mut || Segment::unlink_named(name)) {
                Ok(true) => out.removed.push(name.to_owned()),
                Ok(false) => {}
                Err(e) if e.code == WEFT_NOT_FOUND => {} // unlinked by someone else meanwhile
                Err(e) => out.damaged.push((name.to_owned(), e.message.into_owned())),
            },
            Err(e) if e.code == WEFT_CORRUPTED || e.code == crate::status::WEFT_NOT_RECOVERABLE => {
                out.damaged.push((name.to_owned(), e.message.into_owned()))
            }
            Err(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{fork_child, wait_child};

    fn unique(tag: &str) -> String {
        format!("test-{tag}-{}-{:x}", std::process::id(), liveness::current_thread().unwrap().start_time)
    }

    #[test]
    fn default_space_is_shared_with_forked_children() {
        let d = default_space().unwrap();
        assert!(Arc::ptr_eq(&d, &default_space().unwrap()));
        assert!(d.name().is_none());
        let uid = d.uid();
        let pid = fork_child(|| default_space().is_ok_and(|c| c.uid() == uid && c.space().live_participants().is_ok()));
        let st = wait_child(pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
        assert!(find_by_uid(uid).is_some_and(|h| Arc::ptr_eq(&h, &d)));
    }

    #[test]
    fn named_space_lifecycle_and_sweep() {
        let name = unique("sweep");
        let h = SpaceHandle::create_named(&name, 1 << 20).unwrap();
        assert_eq!(SpaceHandle::create_named(&name, 1 << 20).unwrap_err().code, crate::status::WEFT_EXISTS);
        let other = SpaceHandle::open_named(&name).unwrap();
        assert_eq!(other.uid(), h.uid());
        assert_eq!(h.space().live_participants().unwrap(), 2);
        drop(other);
        assert_eq!(h.space().live_participants().unwrap(), 1);
        // A live participant: never swept.
        assert!(!sweep().unwrap().removed.contains(&name));
        // A child joins, then dies; the parent leaves: now every participant is dead.
        let pid = fork_child(|| SpaceHandle::open_named(&name).is_ok_and(|c| {
            std::mem::forget(c);
            true
        }));
        assert!(libc::WIFEXITED(wait_child(pid)));
        drop(h);
        let swept = sweep().unwrap();
        assert!(swept.removed.contains(&name), "{swept:?}");
        assert_eq!(SpaceHandle::open_named(&name).unwrap_err().code, WEFT_NOT_FOUND);
    }

    #[test]
    fn sweep_marks_the_space_so_late_openers_cannot_join() {
        let name = unique("late");
        let h = SpaceHandle::create_named(&name, 1 << 20).unwrap();
        // Keep a mapping without participation, as a racing opener would have.
        let seg = Segment::open_named(&name).unwrap();
        drop(h);
        assert!(sweep().unwrap().removed.contains(&name));
        let late = Space::attach(seg).unwrap();
        assert_eq!(late.join().unwrap_err().code, WEFT_NOT_FOUND);
    }
}
