//! Objects in a space: blocks with a 64-byte header, optionally named in the directory,
//! reference-counted, and reachable from another process by `(offset, serial)`.
//!
//! # Object header (64 bytes, at the start of the object's block)
//!
//! | field    | type | meaning                                                           |
//! | -------- | ---- | ----------------------------------------------------------------- |
//! | `magic`  | u32  | `b"wfob"` while the object lives, 0 once freed                    |
//! | `kind`   | u32  | what the payload is (`KIND_*`)                                    |
//! | `refs`   | u32  | open handles plus one while the directory names it                |
//! | reserved | u32  | 0                                                                 |
//! | `serial` | u64  | unique within the space: a freed and reused block gets a new one  |
//! | `size`   | u64  | payload bytes                                                     |
//! | `dep`    | u64  | offset of an object this one holds a reference to (0: none)       |
//! | `dep_serial` | u64 | that object's serial                                          |
//! | reserved | 16 B | 0                                                                 |
//!
//! The payload follows at offset 64 of the block (so it is 64-byte aligned).
//!
//! # Lifetime
//!
//! Every handle that creates or opens an object holds one reference, and the directory holds
//! one while it names the object. Releasing the last reference frees the block. References are
//! counted under the space's lock. A process killed while holding references never releases
//! them: the object then lives as long as the space (a bounded leak, never a dangling object).
//! An object may hold a reference to one other object (a condition to its lock, see
//! [`Space::set_dependency`]); it is released when the holder is freed.
//!
//! # Tokens
//!
//! `(offset, serial)` identifies an object for as long as it lives; [`Space::open_ref`] checks
//! the header at `offset` (inside the allocated area, live, same serial, expected kind) before
//! taking a reference, so a stale or forged pair gives `WEFT_NOT_FOUND` or `WEFT_CORRUPTED`.

use super::alloc::{block_size, class_of};
use super::layout::{corrupted, pack_name, Space, DATA_ALIGN, DATA_START, DIRECTORY_CAPACITY};
use crate::status::{Error, Result, WEFT_EXISTS, WEFT_INVALID_ARGUMENT, WEFT_INVALID_STATE, WEFT_NOT_FOUND, WEFT_NO_MEMORY};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// Bytes of the object header; the payload starts this far into the block.
pub(crate) const OBJECT_HEADER: u64 = 64;
const OBJECT_MAGIC: u32 = u32::from_le_bytes(*b"wfob");
/// Magic of an object whose last reference is gone while its owner finalizes it (frees the
/// blocks the payload points to); it can no longer be opened.
const DYING_MAGIC: u32 = u32::from_le_bytes(*b"wfdy");

/// Kind of a Lock (a `RobustLock`).
pub(crate) const KIND_LOCK: u32 = 1;
/// Kind of an RLock (a `RobustRLock`).
pub(crate) const KIND_RLOCK: u32 = 2;
/// Kind of a Semaphore or BoundedSemaphore.
pub(crate) const KIND_SEMAPHORE: u32 = 3;
/// Kind of an Event.
pub(crate) const KIND_EVENT: u32 = 4;
/// Kind of a Condition.
pub(crate) const KIND_CONDITION: u32 = 5;
/// Kind of a Barrier.
pub(crate) const KIND_BARRIER: u32 = 6;
/// Kind of an Array (and Value).
pub(crate) const KIND_ARRAY: u32 = 7;
/// Kind of a Dict.
pub(crate) const KIND_DICT: u32 = 8;
/// Kind of a List.
pub(crate) const KIND_LIST: u32 = 9;
/// Kind of a raw block owned by another object (a dict's table, a list item...).
pub(crate) const KIND_BLOB: u32 = 10;
/// Kind of a Queue (a shared FIFO queue, `queue::shared`).
pub(crate) const KIND_QUEUE: u32 = 11;

/// The name of a kind, for messages.
pub(crate) fn kind_name(kind: u32) -> &'static str {
    match kind {
        KIND_LOCK => "lock",
        KIND_RLOCK => "rlock",
        KIND_SEMAPHORE => "semaphore",
        KIND_EVENT => "event",
        KIND_CONDITION => "condition",
        KIND_BARRIER => "barrier",
        KIND_ARRAY => "array",
        KIND_DICT => "dict",
        KIND_LIST => "list",
        KIND_BLOB => "blob",
        KIND_QUEUE => "queue",
        _ => "object of an unknown kind",
    }
}

#[repr(C)]
struct ObjHeader {
    magic: AtomicU32,
    kind: AtomicU32,
    refs: AtomicU32,
    reserved: AtomicU32,
    serial: AtomicU64,
    size: AtomicU64,
    dep: AtomicU64,
    dep_serial: AtomicU64,
    pad: [AtomicU64; 2],
}

const _: () = assert!(std::mem::size_of::<ObjHeader>() as u64 == OBJECT_HEADER);

/// One reference to a live object: where it is and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectRef {
    /// Offset of the object's block (its header) from the start of the segment.
    pub offset: u64,
    /// The object's serial number.
    pub serial: u64,
    /// The object's kind.
    pub kind: u32,
    /// Payload size in bytes.
    pub size: u64,
}

impl Space {
    fn obj(&self, off: u64) -> Result<&ObjHeader> {
        if off < DATA_START || off % DATA_ALIGN != 0 {
            return Err(corrupted(format!("object offset {off} is not a block offset")));
        }
        let p = self.ptr(off, OBJECT_HEADER)?;
        // SAFETY: `ptr` checked the 64 bytes lie in the mapping; `off` is 64-aligned from a
        // page-aligned base. ObjHeader is all atomics (any bit pattern valid, shared mutation
        // through `&` allowed); the borrow is tied to `self`, which keeps the mapping.
        Ok(unsafe { &*(p as *const ObjHeader) })
    }

    /// Reads and checks the live object at `off` (lock held).
    fn check_object(&self, off: u64, next: u64) -> Result<ObjectRef> {
        let h = self.obj(off)?;
        if h.magic.load(Acquire) != OBJECT_MAGIC {
            return Err(Error::new(WEFT_NOT_FOUND, format!("no live object at offset {off} of the space")));
        }
        let (kind, serial, size, refs) =
            (h.kind.load(Relaxed), h.serial.load(Relaxed), h.size.load(Relaxed), h.refs.load(Relaxed));
        let fits = class_of(size.saturating_add(OBJECT_HEADER), DATA_ALIGN)
            .and_then(|k| off.checked_add(block_size(k)))
            .is_some_and(|end| end <= next);
        if size == 0 || !fits || refs == 0 {
            return Err(corrupted(format!(
                "object header at offset {off}: size {size} / refs {refs} do not describe a live block \
                 inside the allocated area"
            )));
        }
        Ok(ObjectRef { offset: off, serial, kind, size })
    }

    /// Checks every named object's header against its directory entry (lock held).
    pub(super) fn validate_objects(&self, next: u64) -> Result<()> {
        for i in 0..DIRECTORY_CAPACITY {
            if self.entry_in_use(i)? {
                let (_, kind, off, size) = self.read_entry(i, next)?;
                let r = self.check_object(off, next).map_err(|e| {
                    corrupted(format!("space directory entry {i} names a damaged object: {}", e.message))
                })?;
                if r.kind != kind || r.size != size {
                    return Err(corrupted(format!(
                        "space directory entry {i}: kind {kind} / size {size} disagree with the object's header \
                         (kind {} / size {})",
                        r.kind, r.size
                    )));
                }
            }
        }
        Ok(())
    }

    /// Creates an object of `kind` with a `size`-byte payload, zero-filled and then passed to
    /// `init` (which runs under the space's lock, before any other process can reach the
    /// object), optionally named `name` in the directory. The caller holds one reference.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for a bad name (1..=63 bytes, no NUL) or a zero size;
    /// `WEFT_EXISTS` when the name is taken; `WEFT_NO_MEMORY` when the space or its directory
    /// (64 names) is full; whatever `init` returns (the block is freed then); `WEFT_CORRUPTED`
    /// and the lock's errors (`WEFT_TIMEOUT`, `WEFT_NOT_RECOVERABLE`).
    /// Thread safety: callable from any thread of any process using the space.
    pub fn create_object(
        &self,
        kind: u32,
        size: u64,
        name: Option<&str>,
        init: &mut dyn FnMut(*mut u8) -> Result<()>,
    ) -> Result<ObjectRef> {
        let words = name.map(pack_name).transpose()?;
        if size == 0 {
            return Err(Error::invalid("an object needs at least 1 byte of payload"));
        }
        let total = size
            .checked_add(OBJECT_HEADER)
            .ok_or_else(|| Error::new(WEFT_NO_MEMORY, format!("space is full: {size} bytes requested")))?;
        let _g = self.lock()?;
        let mut slot = None;
        if let Some(words) = &words {
            if self.find(words)?.is_some() {
                return Err(Error::new(WEFT_EXISTS, format!("an object named {:?} already exists in the space", name.unwrap_or(""))));
            }
            for i in 0..DIRECTORY_CAPACITY {
                if !self.entry_in_use(i)? {
                    slot = Some(i);
                    break;
                }
            }
            if slot.is_none() {
                return Err(Error::new(
                    WEFT_NO_MEMORY,
                    format!("the space's directory is full ({DIRECTORY_CAPACITY} named objects)"),
                ));
            }
        }
        let off = self.alloc_locked(total, DATA_ALIGN)?;
        let payload = match self.ptr(off + OBJECT_HEADER, size) {
            Ok(p) => p,
            Err(e) => {
                let _ = self.free_locked(off, total, DATA_ALIGN);
                return Err(e);
            }
        };
        if let Err(e) = init(payload) {
            let _ = self.free_locked(off, total, DATA_ALIGN);
            return Err(e);
        }
        let serial = self.header().serial.load(Relaxed).wrapping_add(1).max(1);
        self.header().serial.store(serial, Relaxed);
        let h = self.obj(off)?;
        h.kind.store(kind, Relaxed);
        h.refs.store(1 + u32::from(words.is_some()), Relaxed);
        h.reserved.store(0, Relaxed);
        h.serial.store(serial, Relaxed);
        h.size.store(size, Relaxed);
        h.dep.store(0, Relaxed);
        h.dep_serial.store(0, Relaxed);
        h.magic.store(OBJECT_MAGIC, Release);
        if let (Some(i), Some(words)) = (slot, words) {
            self.publish_entry(i, kind, off, size, &words);
        }
        Ok(ObjectRef { offset: off, serial, kind, size })
    }

    /// Takes one more reference to a live object (lock held), checking its kind.
    fn take_ref(&self, r: ObjectRef, kind: Option<u32>, what: &dyn Fn() -> String) -> Result<ObjectRef> {
        if let Some(k) = kind {
            if r.kind != k {
                return Err(Error::new(
                    WEFT_INVALID_ARGUMENT,
                    format!("{} is a {}, not a {}", what(), kind_name(r.kind), kind_name(k)),
                ));
            }
        }
        let h = self.obj(r.offset)?;
        let refs = h.refs.load(Relaxed);
        let more = refs
            .checked_add(1)
            .ok_or_else(|| Error::new(WEFT_INVALID_STATE, format!("{} has 2^32 - 1 references already", what())))?;
        h.refs.store(more, Relaxed);
        Ok(r)
    }

    /// Opens the object named `name`, taking a reference; `kind`, when given, must match.
    ///
    /// Errors: `WEFT_NOT_FOUND` when no object has that name; `WEFT_INVALID_ARGUMENT` for a bad
    /// name or another kind; `WEFT_CORRUPTED` and the lock's errors.
    /// Thread safety: callable from any thread of any process using the space.
    pub fn open_named(&self, name: &str, kind: Option<u32>) -> Result<ObjectRef> {
        let words = pack_name(name)?;
        let _g = self.lock()?;
        let i = self
            .find(&words)?
            .ok_or_else(|| Error::new(WEFT_NOT_FOUND, format!("no object named {name:?} in the space")))?;
        let next = self.next()?;
        let (_, _, off, _) = self.read_entry(i, next)?;
        let r = self.check_object(off, next)?;
        self.take_ref(r, kind, &|| format!("object {name:?}"))
    }

    /// Opens the object identified by `(offset, serial)` (from a token), taking a reference;
    /// `kind`, when given, must match.
    ///
    /// Errors: `WEFT_NOT_FOUND` when no live object with that serial is there (it was freed);
    /// `WEFT_INVALID_ARGUMENT` for another kind; `WEFT_CORRUPTED` when the offset is not a
    /// block; the lock's errors.
    /// Thread safety: callable from any thread of any process using the space.
    pub fn open_ref(&self, offset: u64, serial: u64, kind: Option<u32>) -> Result<ObjectRef> {
        let _g = self.lock()?;
        let r = self.check_object(offset, self.next()?)?;
        if r.serial != serial {
            return Err(Error::new(
                WEFT_NOT_FOUND,
                format!("the object at offset {offset} was freed (serial {} now, {serial} expected)", r.serial),
            ));
        }
        self.take_ref(r, kind, &|| format!("the object at offset {offset}"))
    }

    /// Drops one reference; the last one frees the object's block.
    ///
    /// Errors: `WEFT_NOT_FOUND` when the object is no longer there; `WEFT_CORRUPTED` and the
    /// lock's errors.
    /// Thread safety: callable from any thread of any process using the space.
    pub fn release(&self, r: &ObjectRef) -> Result<()> {
        let _g = self.lock()?;
        self.release_locked(r.offset, r.serial)
    }

    fn release_locked(&self, offset: u64, serial: u64) -> Result<()> {
        let (mut offset, mut serial) = (offset, serial);
        // A chain of dependencies is followed iteratively; each step frees a block, so the
        // loop ends (at most one step per block of the area).
        loop {
            let cur = self.check_object(offset, self.next()?)?;
            if cur.serial != serial {
                return Err(Error::new(WEFT_NOT_FOUND, format!("the object at offset {offset} was already freed")));
            }
            let h = self.obj(offset)?;
            let refs = h.refs.load(Relaxed) - 1; // check_object: refs >= 1
            h.refs.store(refs, Relaxed);
            if refs != 0 {
                return Ok(());
            }
            let (dep, dep_serial) = (h.dep.load(Relaxed), h.dep_serial.load(Relaxed));
            h.magic.store(0, Release);
            self.free_locked(offset, cur.size + OBJECT_HEADER, DATA_ALIGN)?;
            if dep == 0 {
                return Ok(());
            }
            (offset, serial) = (dep, dep_serial);
        }
    }

    /// Drops one reference, which must not be the last: for a handle that borrows the object
    /// from another holder (see `SharedRef::from_token_borrowed`).
    ///
    /// Errors: `WEFT_NOT_FOUND` when the object is no longer there or has no other holder;
    /// `WEFT_CORRUPTED` and the lock's errors.
    pub fn release_borrowed(&self, r: &ObjectRef) -> Result<()> {
        let _g = self.lock()?;
        let cur = self.check_object(r.offset, self.next()?)?;
        if cur.serial != r.serial {
            return Err(Error::new(WEFT_NOT_FOUND, format!("the object at offset {} was already freed", r.offset)));
        }
        let h = self.obj(r.offset)?;
        let refs = h.refs.load(Relaxed);
        if refs < 2 {
            return Err(Error::new(WEFT_NOT_FOUND, format!("the object at offset {} has no other holder to borrow from", r.offset)));
        }
        h.refs.store(refs - 1, Relaxed);
        Ok(())
    }

    /// Drops one reference like [`release`](Self::release), except that when it is the last
    /// one the block is not freed: the object is marked dying (it can no longer be opened) and
    /// `Ok(true)` tells the caller to free what the payload owns and then call
    /// [`free_dying`](Self::free_dying). A caller that dies in between leaks the block.
    ///
    /// Errors: as [`release`](Self::release).
    pub fn release_for_finalize(&self, r: &ObjectRef) -> Result<bool> {
        let _g = self.lock()?;
        let cur = self.check_object(r.offset, self.next()?)?;
        if cur.serial != r.serial {
            return Err(Error::new(WEFT_NOT_FOUND, format!("the object at offset {} was already freed", r.offset)));
        }
        let h = self.obj(r.offset)?;
        let refs = h.refs.load(Relaxed) - 1; // check_object: refs >= 1
        if refs != 0 {
            h.refs.store(refs, Relaxed);
            return Ok(false);
        }
        h.magic.store(DYING_MAGIC, Release);
        Ok(true)
    }

    /// Frees a dying object's block (see [`release_for_finalize`](Self::release_for_finalize))
    /// and releases its dependency.
    ///
    /// Errors: `WEFT_NOT_FOUND` when the object is not dying with that serial; `WEFT_CORRUPTED`
    /// and the lock's errors.
    pub fn free_dying(&self, r: &ObjectRef) -> Result<()> {
        let _g = self.lock()?;
        let h = self.obj(r.offset)?;
        if h.magic.load(Acquire) != DYING_MAGIC || h.serial.load(Relaxed) != r.serial || h.size.load(Relaxed) != r.size {
            return Err(Error::new(WEFT_NOT_FOUND, format!("no dying object at offset {}", r.offset)));
        }
        // Revive it with one reference so that the ordinary release path frees it and its
        // dependency, with the same checks.
        h.refs.store(1, Relaxed);
        h.magic.store(OBJECT_MAGIC, Release);
        self.release_locked(r.offset, r.serial)
    }

    /// Makes `holder` keep a reference to `dep` (another object of the space) until `holder`
    /// is freed. Set once, right after creating `holder`.
    ///
    /// Errors: `WEFT_INVALID_STATE` when `holder` has a dependency already; `WEFT_NOT_FOUND`
    /// when either object is gone; `WEFT_CORRUPTED` and the lock's errors.
    /// Thread safety: callable from any thread of any process using the space.
    pub fn set_dependency(&self, holder: &ObjectRef, dep: &ObjectRef) -> Result<()> {
        let _g = self.lock()?;
        let next = self.next()?;
        let h = self.check_object(holder.offset, next)?;
        let d = self.check_object(dep.offset, next)?;
        if h.serial != holder.serial || d.serial != dep.serial {
            return Err(Error::new(WEFT_NOT_FOUND, "an object to link was freed"));
        }
        let hh = self.obj(holder.offset)?;
        if hh.dep.load(Relaxed) != 0 {
            return Err(Error::new(WEFT_INVALID_STATE, "the object already holds a dependency"));
        }
        self.take_ref(d, None, &|| "the dependency".to_string())?;
        hh.dep_serial.store(dep.serial, Relaxed);
        hh.dep.store(dep.offset, Release);
        Ok(())
    }

    /// The dependency of a live object (see [`set_dependency`](Self::set_dependency)): its
    /// `(offset, serial)`, or `None`.
    ///
    /// Errors: `WEFT_NOT_FOUND`, `WEFT_CORRUPTED` and the lock's errors.
    pub fn dependency(&self, r: &ObjectRef) -> Result<Option<(u64, u64)>> {
        let _g = self.lock()?;
        let cur = self.check_object(r.offset, self.next()?)?;
        if cur.serial != r.serial {
            return Err(Error::new(WEFT_NOT_FOUND, "the object was freed"));
        }
        let h = self.obj(r.offset)?;
        let dep = h.dep.load(Acquire);
        Ok((dep != 0).then(|| (dep, h.dep_serial.load(Relaxed))))
    }

    /// Creates an object like [`create_object`](Self::create_object) and returns `view` of it
    /// with the caller's reference; when `view` fails, the reference is released.
    ///
    /// Errors: those of `create_object` and of `view`.
    pub(crate) fn create_viewed<'a, V>(
        &'a self,
        kind: u32,
        size: u64,
        name: Option<&str>,
        init: &mut dyn FnMut(*mut u8) -> Result<()>,
        view: impl FnOnce(&'a Space, &ObjectRef) -> Result<V>,
    ) -> Result<(V, ObjectRef)> {
        let r = self.create_object(kind, size, name, init)?;
        match view(self, &r) {
            Ok(v) => Ok((v, r)),
            Err(e) => {
                let _ = self.release(&r);
                Err(e)
            }
        }
    }

    /// The payload of `object` viewed as a `T`, after checking that the object is of `kind` and
    /// its payload holds a `T`. The view lives as long as `self` (the mapping).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for another kind; `WEFT_CORRUPTED` for a payload too
    /// small or outside the segment.
    pub(crate) fn payload_as<T: super::shared::SharedPod>(&self, object: &ObjectRef, kind: u32) -> Result<&T> {
        if object.kind != kind {
            return Err(Error::invalid(format!(
                "object at offset {} is a {}, not a {}",
                object.offset,
                kind_name(object.kind),
                kind_name(kind)
            )));
        }
        if object.size < std::mem::size_of::<T>() as u64 {
            return Err(corrupted(format!(
                "{} object at offset {}: payload of {} bytes is too small",
                kind_name(kind),
                object.offset,
                object.size
            )));
        }
        let p = self.payload(object)?;
        // SAFETY: `payload` checked that the object's `size >= size_of::<T>()` bytes lie in the
        // mapping; they are 64-aligned (>= align_of::<T>() per SharedPod). T is all atomics
        // (SharedPod): any bit pattern is valid and shared mutation through `&` is allowed. The
        // borrow is tied to `self`, which keeps the mapping.
        Ok(unsafe { &*(p as *const T) })
    }

    /// A pointer to the payload of a referenced object. Valid while `self` lives.
    ///
    /// Errors: `WEFT_CORRUPTED` when the range leaves the segment.
    pub fn payload(&self, r: &ObjectRef) -> Result<*mut u8> {
        self.ptr(r.offset + OBJECT_HEADER, r.size)
    }

    /// Finds the object called `name` without taking a reference: `(kind, offset, size)`.
    ///
    /// Errors: as [`open_named`](Self::open_named).
    /// Thread safety: callable from any thread of any process using the space.
    pub fn lookup(&self, name: &str) -> Result<(u32, u64, u64)> {
        let words = pack_name(name)?;
        let _g = self.lock()?;
        match self.find(&words)? {
            Some(i) => {
                let (_, kind, offset, size) = self.read_entry(i, self.next()?)?;
                Ok((kind, offset, size))
            }
            None => Err(Error::new(WEFT_NOT_FOUND, format!("no object named {name:?} in the space"))),
        }
    }

    /// Removes the name `name` from the directory and drops the directory's reference: the
    /// object lives on while handles to it are open and is freed with the last one. The name
    /// can be used again at once.
    ///
    /// Errors: as [`open_named`](Self::open_named).
    /// Thread safety: callable from any thread of any process using the space.
    pub fn remove(&self, name: &str) -> Result<()> {
        let words = pack_name(name)?;
        let _g = self.lock()?;
        let i = self
            .find(&words)?
            .ok_or_else(|| Error::new(WEFT_NOT_FOUND, format!("no object named {name:?} in the space")))?;
        let next = self.next()?;
        let (_, _, off, _) = self.read_entry(i, next)?;
        let r = self.check_object(off, next)?;
        self.clear_entry(i);
        self.release_locked(off, r.serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Segment;
    use crate::test_support::{fork_child, wait_child};

    fn new_space() -> Space {
        Space::format(Segment::anonymous(128 * 1024).unwrap()).unwrap()
    }

    fn zero_init(_: *mut u8) -> Result<()> {
        Ok(())
    }

    #[test]
    fn create_open_release_by_name_and_ref() {
        let space = new_space();
        let mut init = |p: *mut u8| {
            // SAFETY: the payload holds at least 8 bytes, 64-aligned, not yet shared.
            unsafe { p.cast::<u64>().write(77) };
            Ok(())
        };
        let a = space.create_object(KIND_EVENT, 24, Some("ev"), &mut init).unwrap();
        assert_eq!((a.kind, a.size), (KIND_EVENT, 24));
        // SAFETY: 8 aligned bytes of the payload.
        assert_eq!(unsafe { space.payload(&a).unwrap().cast::<u64>().read() }, 77);
        assert_eq!(space.create_object(KIND_EVENT, 8, Some("ev"), &mut zero_init).unwrap_err().code, WEFT_EXISTS);
        let b = space.open_named("ev", Some(KIND_EVENT)).unwrap();
        assert_eq!(a, b);
        assert_eq!(space.open_named("ev", Some(KIND_LOCK)).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        let c = space.open_ref(a.offset, a.serial, None).unwrap();
        assert_eq!(space.open_ref(a.offset, a.serial + 1, None).unwrap_err().code, WEFT_NOT_FOUND);
        space.remove("ev").unwrap();
        assert_eq!(space.open_named("ev", None).unwrap_err().code, WEFT_NOT_FOUND);
        // Three handle references remain (a, b, c); the object survives until the last.
        for r in [a, b] {
            space.release(&r).unwrap();
        }
        assert!(space.open_ref(a.offset, a.serial, None).is_ok()); // d
        space.release(&c).unwrap();
        space.release(&a).unwrap();
        assert_eq!(space.open_ref(a.offset, a.serial, None).unwrap_err().code, WEFT_NOT_FOUND);
        assert_eq!(space.release(&a).unwrap_err().code, WEFT_NOT_FOUND);
        // The block is reused with a new serial.
        let d = space.create_object(KIND_LOCK, 24, None, &mut zero_init).unwrap();
        assert_eq!(d.offset, a.offset);
        assert_ne!(d.serial, a.serial);
        assert_eq!(space.open_ref(a.offset, a.serial, None).unwrap_err().code, WEFT_NOT_FOUND);
    }

    #[test]
    fn dependency_is_released_with_its_holder() {
        let space = new_space();
        let lock = space.create_object(KIND_LOCK, 16, None, &mut zero_init).unwrap();
        let cond = space.create_object(KIND_CONDITION, 64, None, &mut zero_init).unwrap();
        space.set_dependency(&cond, &lock).unwrap();
        assert_eq!(space.dependency(&cond).unwrap(), Some((lock.offset, lock.serial)));
        assert_eq!(space.set_dependency(&cond, &lock).unwrap_err().code, WEFT_INVALID_STATE);
        space.release(&lock).unwrap();
        // The condition still holds the lock.
        assert!(space.open_ref(lock.offset, lock.serial, None).is_ok_and(|r| space.release(&r).is_ok()));
        space.release(&cond).unwrap();
        assert_eq!(space.open_ref(lock.offset, lock.serial, None).unwrap_err().code, WEFT_NOT_FOUND);
    }

    #[test]
    fn failed_init_frees_the_block_and_the_name() {
        let space = new_space();
        let mut failing = |_: *mut u8| Err(Error::invalid("nope"));
        assert_eq!(space.create_object(KIND_LOCK, 8, Some("x"), &mut failing).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        assert_eq!(space.lookup("x").unwrap_err().code, WEFT_NOT_FOUND);
        let a = space.create_object(KIND_LOCK, 8, Some("x"), &mut zero_init).unwrap();
        assert_eq!(space.lookup("x").unwrap(), (KIND_LOCK, a.offset, 8));
    }

    #[test]
    fn names_and_directory_capacity() {
        let space = new_space();
        for bad in ["", "a\0b", &"n".repeat(64)] {
            assert_eq!(space.create_object(1, 8, Some(bad), &mut zero_init).unwrap_err().code, WEFT_INVALID_ARGUMENT);
            assert_eq!(space.lookup(bad).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        }
        for i in 0..DIRECTORY_CAPACITY {
            space.create_object(KIND_BLOB, 8, Some(&format!("obj{i}")), &mut zero_init).unwrap();
        }
        let e = space.create_object(KIND_BLOB, 8, Some("overflow"), &mut zero_init).unwrap_err();
        assert_eq!(e.code, WEFT_NO_MEMORY);
        assert!(e.message.contains("directory"), "{}", e.message);
        // Unnamed objects need no directory entry.
        space.create_object(KIND_BLOB, 8, None, &mut zero_init).unwrap();
        assert!(Space::attach(space.into_segment()).is_ok());
    }

    #[test]
    fn damaged_object_header_is_corrupted() {
        let space = new_space();
        let a = space.create_object(KIND_LOCK, 16, Some("l"), &mut zero_init).unwrap();
        space.obj(a.offset).unwrap().size.store(1 << 40, Relaxed);
        assert_eq!(space.open_named("l", None).unwrap_err().code, crate::status::WEFT_CORRUPTED);
        assert_eq!(space.open_ref(a.offset + 8, 1, None).unwrap_err().code, crate::status::WEFT_CORRUPTED);
        assert_eq!(Space::attach(space.into_segment()).unwrap_err().code, crate::status::WEFT_CORRUPTED);
    }

    #[test]
    fn forked_child_creates_parent_opens() {
        let space = new_space();
        let pid = fork_child(|| {
            let mut init = |p: *mut u8| {
                // SAFETY: 8 aligned payload bytes.
                unsafe { p.cast::<u64>().write(0x1234) };
                Ok(())
            };
            space.create_object(KIND_ARRAY, 8, Some("from-child"), &mut init).is_ok()
        });
        let st = wait_child(pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
        let r = space.open_named("from-child", Some(KIND_ARRAY)).unwrap();
        // SAFETY: 8 aligned payload bytes; the child is gone.
        assert_eq!(unsafe { space.payload(&r).unwrap().cast::<u64>().read() }, 0x1234);
    }
}
