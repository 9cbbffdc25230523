//! [`SharedRef`]: one process's reference to an object in a space, and the tokens that carry
//! such a reference to another process.
//!
//! # Token format (version 1, little-endian, 40 bytes + the space's name)
//!
//! | bytes  | field                                              |
//! | ------ | -------------------------------------------------- |
//! | 0..4   | `b"wftk"`                                          |
//! | 4      | version, 1                                         |
//! | 5      | 0: anonymous space, 1: named space                 |
//! | 6..8   | length of the space's name (0 for anonymous)       |
//! | 8..12  | object kind                                        |
//! | 12..16 | 0                                                  |
//! | 16..24 | the space's uid                                    |
//! | 24..32 | the object's offset                                |
//! | 32..40 | the object's serial                                |
//! | 40..   | the space's name (UTF-8)                           |
//!
//! A token is resolved against the spaces this process already has open (by uid); a named
//! space not open yet is opened by name (and must have the same uid: a space re-created under
//! the same name is another space). An anonymous space must already be mapped in the receiving
//! process: inherited by fork (the default space) or attached from its descriptor.

use super::handle::{find_by_uid, SpaceHandle};
use super::liveness;
use super::name::NAME_MAX_LEN;
use super::object::{kind_name, ObjectRef, KIND_DICT, KIND_LIST};
use crate::time::Deadline;
use crate::status::{Error, Result, WEFT_CORRUPTED, WEFT_INVALID_ARGUMENT, WEFT_NOT_FOUND};
use std::sync::Arc;

const TOKEN_MAGIC: [u8; 4] = *b"wftk";
const TOKEN_VERSION: u8 = 1;
const TOKEN_FIXED: usize = 40;
/// The longest token: the fixed part plus the longest space name.
pub(crate) const TOKEN_MAX: usize = TOKEN_FIXED + NAME_MAX_LEN;

/// Types that may be viewed in a space's shared memory.
///
/// # Safety
/// Implementors are `#[repr(C)]`, contain only atomics (or types made only of atomics), for
/// which every bit pattern is a valid value and shared mutation through `&` is allowed, have
/// an alignment of at most 64, and hold no pointers.
pub unsafe trait SharedPod: Sized {}

// SAFETY: each is #[repr(C)] and made only of futex words / atomics (see their definitions).
unsafe impl SharedPod for crate::sync::RobustLock<crate::futex::SharedWord> {}
// SAFETY: as above.
unsafe impl SharedPod for crate::sync::RobustRLock<crate::futex::SharedWord> {}
// SAFETY: as above.
unsafe impl SharedPod for crate::sync::Semaphore<crate::futex::SharedWord> {}
// SAFETY: as above.
unsafe impl SharedPod for crate::sync::Event<crate::futex::SharedWord> {}
// SAFETY: as above (pinned-size, all-atomics waiter table).
unsafe impl SharedPod for crate::sync::SharedCondition<crate::futex::SharedWord> {}
// SAFETY: as above.
unsafe impl SharedPod for crate::sync::SharedBarrier<crate::futex::SharedWord> {}

/// A reference to an object in a space, held by this process. Dropping it releases the
/// reference — unless the process is a forked child that inherited it (the reference belongs to
/// the parent; the child's copy is a borrow that must not outlive the parent's), or the handle
/// was opened as a borrow ([`SharedRef::from_token_borrowed`]).
///
/// Thread safety: `Send + Sync`.
#[derive(Debug)]
pub struct SharedRef {
    handle: Arc<SpaceHandle>,
    r: ObjectRef,
    payload: *mut u8,
    generation: u32,
    /// Holds no reference of its own (see [`SharedRef::from_token_borrowed`]).
    borrowed: bool,
}

// SAFETY: `payload` points into the mapping kept alive by `handle`; the object it designates is
// made of atomics (SharedPod) or accessed under the object's own lock, from any thread.
unsafe impl Send for SharedRef {}
// SAFETY: as above: `&SharedRef` only hands out shared views of atomics.
unsafe impl Sync for SharedRef {}

impl SharedRef {
    fn wrap(handle: Arc<SpaceHandle>, r: ObjectRef, size: Option<u64>) -> Result<SharedRef> {
        let payload = match size {
            Some(s) if s != r.size => Err(Error::new(
                WEFT_CORRUPTED,
                format!("the shared {} has a payload of {} bytes, expected {s}", kind_name(r.kind), r.size),
            )),
            _ => handle.space().payload(&r),
        };
        match payload {
            Ok(payload) => Ok(SharedRef { handle, r, payload, generation: liveness::generation(), borrowed: false }),
            Err(e) => {
                let _ = handle.space().release(&r);
                Err(e)
            }
        }
    }

    /// Creates an object of `kind` with a `size`-byte payload in the space (see
    /// [`Space::create_object`](super::layout::Space::create_object)).
    ///
    /// Errors: those of `create_object` and of joining the space.
    pub fn create(
        handle: Arc<SpaceHandle>,
        kind: u32,
        size: u64,
        name: Option<&str>,
        init: &mut dyn FnMut(*mut u8) -> Result<()>,
    ) -> Result<SharedRef> {
        handle.ensure_joined()?;
        let r = handle.space().create_object(kind, size, name, init)?;
        SharedRef::wrap(handle, r, Some(size))
    }

    /// Opens the object `name` of `kind` in the space; `size`, when given, must be its payload
    /// size (a different one means another layout: `WEFT_CORRUPTED`).
    ///
    /// Errors: those of [`Space::open_named`](super::layout::Space::open_named).
    pub fn open(handle: Arc<SpaceHandle>, name: &str, kind: u32, size: Option<u64>) -> Result<SharedRef> {
        handle.ensure_joined()?;
        let r = handle.space().open_named(name, Some(kind))?;
        SharedRef::wrap(handle, r, size)
    }

    /// Opens the object a token designates (see the module documentation); `kind` and `size`
    /// as in [`open`](Self::open).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` when the bytes are not a token or designate another
    /// kind; `WEFT_NOT_FOUND` when the space is not reachable from this process or the object
    /// was freed; the errors of opening a named space.
    pub fn from_token(token: &[u8], kind: u32, size: Option<u64>) -> Result<SharedRef> {
        let bad = |why: &str| Error::new(WEFT_INVALID_ARGUMENT, format!("not a weft token: {why}"));
        if token.len() < TOKEN_FIXED || token[0..4] != TOKEN_MAGIC {
            return Err(bad("wrong length or magic"));
        }
        if token[4] != TOKEN_VERSION {
            return Err(bad("unsupported version"));
        }
        let u64_at = |i: usize| u64::from_le_bytes(token[i..i + 8].try_into().expect("8 bytes"));
        let name_len = u16::from_le_bytes([token[6], token[7]]) as usize;
        let tkind = u32::from_le_bytes(token[8..12].try_into().expect("4 bytes"));
        let (uid, offset, serial) = (u64_at(16), u64_at(24), u64_at(32));
        if token.len() != TOKEN_FIXED + name_len || (token[5] == 0) != (name_len == 0) || token[5] > 1 {
            return Err(bad("inconsistent length"));
        }
        if tkind != kind {
            return Err(Error::new(
                WEFT_INVALID_ARGUMENT,
                format!("the token designates a {}, not a {}", kind_name(tkind), kind_name(kind)),
            ));
        }
        // An anonymous token may designate the default space before this process has used it
        // (a child started with WEFT_DEFAULT_SPACE_FD): bring the default space up, then look.
        let found = find_by_uid(uid).or_else(|| {
            (name_len == 0).then(super::handle::default_space).and_then(|r| r.ok()).filter(|h| h.uid() == uid)
        });
        let handle = match found {
            Some(h) => h,
            None if name_len > 0 => {
                let name = std::str::from_utf8(&token[TOKEN_FIXED..]).map_err(|_| bad("space name is not UTF-8"))?;
                let h = SpaceHandle::open_named(name)?;
                if h.uid() != uid {
                    return Err(Error::new(
                        WEFT_NOT_FOUND,
                        format!("the space named {name:?} was re-created since the token was made"),
                    ));
                }
                h
            }
            None => {
                return Err(Error::new(
                    WEFT_NOT_FOUND,
                    "the token's anonymous space is not mapped in this process (inherit it by fork or attach \
                     its descriptor)",
                ))
            }
        };
        handle.ensure_joined()?;
        let r = handle.space().open_ref(offset, serial, Some(kind))?;
        SharedRef::wrap(handle, r, size)
    }

    /// Opens the object a token designates, as [`from_token`](Self::from_token), but keeps no
    /// reference of its own: the object's other holder (which must outlive this handle)
    /// keeps it alive. For a process that may be killed while it holds the handle, when the
    /// holder knows when that process is gone — a process pool's worker borrows its queues
    /// from the pool, so that a killed worker leaks nothing.
    ///
    /// Errors: those of `from_token`; `WEFT_NOT_FOUND` when nobody else holds the object.
    pub(crate) fn from_token_borrowed(token: &[u8], kind: u32, size: Option<u64>) -> Result<SharedRef> {
        if matches!(kind, KIND_DICT | KIND_LIST) {
            return Err(Error::new(WEFT_INVALID_ARGUMENT, "dicts and lists cannot be borrowed"));
        }
        let mut r = SharedRef::from_token(token, kind, size)?;
        r.handle.space().release_borrowed(&r.r)?;
        r.borrowed = true;
        Ok(r)
    }

    /// Opens the object at `(offset, serial)` of the space `handle` (for instance a
    /// dependency); `kind` and `size` as in [`open`](Self::open).
    ///
    /// Errors: those of [`Space::open_ref`](super::layout::Space::open_ref).
    pub fn open_ref(handle: Arc<SpaceHandle>, offset: u64, serial: u64, kind: Option<u32>, size: Option<u64>) -> Result<SharedRef> {
        handle.ensure_joined()?;
        let r = handle.space().open_ref(offset, serial, kind)?;
        SharedRef::wrap(handle, r, size)
    }

    /// The token designating this object (at most [`TOKEN_MAX`] bytes).
    pub fn token(&self) -> Vec<u8> {
        let name = self.handle.name().unwrap_or("").as_bytes();
        let mut t = Vec::with_capacity(TOKEN_FIXED + name.len());
        t.extend_from_slice(&TOKEN_MAGIC);
        t.push(TOKEN_VERSION);
        t.push(u8::from(!name.is_empty()));
        t.extend_from_slice(&(name.len() as u16).to_le_bytes());
        t.extend_from_slice(&self.r.kind.to_le_bytes());
        t.extend_from_slice(&[0; 4]);
        t.extend_from_slice(&self.handle.uid().to_le_bytes());
        t.extend_from_slice(&self.r.offset.to_le_bytes());
        t.extend_from_slice(&self.r.serial.to_le_bytes());
        t.extend_from_slice(name);
        t
    }

    /// The space this object lives in.
    pub fn handle(&self) -> &Arc<SpaceHandle> {
        &self.handle
    }

    /// Where the object is and what it is.
    pub fn object(&self) -> &ObjectRef {
        &self.r
    }

    /// The payload's address in this process (valid while `self` lives).
    pub fn payload(&self) -> *mut u8 {
        self.payload
    }

    /// A view of the payload as a `T`.
    ///
    /// Errors: `WEFT_CORRUPTED` when the payload is smaller than a `T`.
    pub fn get<T: SharedPod>(&self) -> Result<&T> {
        if (std::mem::size_of::<T>() as u64) > self.r.size {
            return Err(Error::new(WEFT_CORRUPTED, "shared object payload is smaller than its type"));
        }
        // SAFETY: the payload holds at least size_of::<T>() bytes inside the mapping (checked
        // here and by `Space::payload`), is 64-byte aligned (>= align_of::<T>() per SharedPod),
        // and T is all atomics (SharedPod), so any contents are a valid T and shared access
        // through `&` is sound. The mapping lives while `self.handle` does, which outlives the
        // borrow.
        Ok(unsafe { &*(self.payload as *const T) })
    }
}

/// A [`SharedRef`] whose payload was checked to hold a `T`: typed access without a check per
/// call.
#[derive(Debug)]
pub struct Typed<T: SharedPod> {
    r: SharedRef,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: SharedPod> Typed<T> {
    /// Wraps `r` after checking that its payload holds a `T`.
    ///
    /// Errors: `WEFT_CORRUPTED` when the payload is smaller than a `T`.
    pub fn new(r: SharedRef) -> Result<Typed<T>> {
        r.get::<T>()?;
        Ok(Typed { r, _t: std::marker::PhantomData })
    }

    /// The object.
    pub fn get(&self) -> &T {
        // SAFETY: as in `SharedRef::get`, whose size check `new` performed; the payload
        // pointer and size never change.
        unsafe { &*(self.r.payload as *const T) }
    }

    /// The untyped reference (token, space).
    pub fn shared(&self) -> &SharedRef {
        &self.r
    }
}

impl Drop for SharedRef {
    fn drop(&mut self) {
        if self.borrowed || self.generation != liveness::generation() {
            return;
        }
        let space = self.handle.space();
        match self.r.kind {
            // Objects whose payload owns other blocks: the last reference frees them first.
            KIND_DICT | KIND_LIST => {
                if let Ok(true) = space.release_for_finalize(&self.r) {
                    let cleared = match self.r.kind {
                        KIND_DICT => super::dict::SharedDict::open(space, &self.r).and_then(|d| d.clear(Deadline::Never)),
                        _ => super::list::SharedList::open(space, &self.r).and_then(|l| l.clear(Deadline::Never)),
                    };
                    // A dict that cannot be cleared (damaged) keeps its blocks: leaked, not reused.
                    if cleared.is_ok() {
                        let _ = space.free_dying(&self.r);
                    }
                }
            }
            _ => {
                let _ = space.release(&self.r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::handle::default_space;
    use crate::space::object::{KIND_EVENT, KIND_LOCK};
    use crate::test_support::{fork_child, wait_child};

    #[test]
    fn token_round_trip_in_default_space_and_child() {
        let d = default_space().unwrap();
        let a = SharedRef::create(d, KIND_LOCK, 16, None, &mut |_| Ok(())).unwrap();
        let t = a.token();
        assert_eq!(t.len(), 40);
        let b = SharedRef::from_token(&t, KIND_LOCK, Some(16)).unwrap();
        assert_eq!(a.object(), b.object());
        assert_eq!(SharedRef::from_token(&t, KIND_EVENT, None).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        assert_eq!(SharedRef::from_token(&t[..39], KIND_LOCK, None).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        let (p, off) = (a.payload() as usize, a.object().offset);
        let pid = fork_child(|| {
            SharedRef::from_token(&t, KIND_LOCK, Some(16)).is_ok_and(|c| c.payload() as usize == p && c.object().offset == off)
        });
        let st = wait_child(pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
        drop(a);
        drop(b);
        assert_eq!(SharedRef::from_token(&t, KIND_LOCK, None).unwrap_err().code, WEFT_NOT_FOUND);
    }
}
