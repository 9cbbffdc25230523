//! Lock and RLock (Python's `threading.Lock` / `RLock` and `multiprocessing.Lock` / `RLock`),
//! private or in a space.

use super::placed::{create_in, from_token, on_placed, open_in, Placed};
use super::space::{weft_space, write_token};
use super::{get, out_ptr, publish, Object, Tag};
use crate::futex::{Interrupt, SharedWord};
use crate::space::object::{KIND_LOCK, KIND_RLOCK};
use crate::status::{guard, guard_value, weft_status, Error, WEFT_INVALID_STATE};
use crate::sync::{Lock, RLock, RobustLock, RobustRLock};
use crate::time::Deadline;
use std::ffi::{c_char, c_void};

/// A mutual-exclusion lock (Python's `threading.Lock`, or `multiprocessing.Lock` when created
/// in a space). It has no owner: any thread may release it. Thread-safe; a shared lock is also
/// process-safe. Freeing it while other threads use it is undefined behaviour.
///
/// A shared lock survives the death of its holder: when the process holding it dies (even by
/// SIGKILL), the next acquirer gets WEFT_OWNER_DEAD *and holds the lock*. It repairs the data
/// the lock protects and calls `weft_lock_mark_consistent`; if it releases the lock without
/// doing so, every later acquire returns WEFT_NOT_RECOVERABLE (POSIX robust-mutex semantics).
/// Waiters notice a dead holder within about 50 ms.
pub struct weft_lock {
    tag: Tag,
    pub(crate) inner: Placed<Lock, RobustLock<SharedWord>>,
}

impl weft_lock {
    pub(crate) fn new(inner: Placed<Lock, RobustLock<SharedWord>>) -> weft_lock {
        weft_lock { tag: Tag::of::<weft_lock>(), inner }
    }
}

impl Object for weft_lock {
    const NAME: &'static str = "weft_lock";
    const MAGIC: u64 = 0x7765_6674_6c6f_636b;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// Creates an unlocked lock in `*out` (free with `weft_lock_free`). Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_new(out: *mut *mut weft_lock) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        publish(weft_lock::new(Placed::Private(Lock::new())), out)
    })
}

/// Acquires the lock, blocking up to `timeout_ns` (0: try once; WEFT_FOREVER: no limit).
/// Not re-entrant: a thread acquiring a lock it holds waits for itself (until its timeout).
/// Errors: WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK (timeout 0 and held), WEFT_TIMEOUT,
/// WEFT_CANCELLED (the calling weft thread was asked to cancel). A shared lock also returns
/// WEFT_OWNER_DEAD (its holder died; the caller now holds it, see `weft_lock`) and
/// WEFT_NOT_RECOVERABLE (an earlier recovery was abandoned).
///
/// # Safety
/// `lock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_acquire(lock: *mut weft_lock, timeout_ns: u64) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let l = unsafe { get(lock) }?;
        match &l.inner {
            Placed::Private(p) if p.try_acquire() => Ok(()),
            Placed::Private(p) => p.acquire(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable),
            Placed::Shared(s) => s.get().acquire(Deadline::from_timeout_ns(timeout_ns), Interrupt::Cancellable),
        }
    })
}

/// Releases the lock; any thread may release it, as in Python. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_INVALID_STATE (the lock is not locked; Python raises RuntimeError).
///
/// # Safety
/// `lock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_release(lock: *mut weft_lock) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| on_placed!(unsafe { get(lock) }?.inner, l => l.release()))
}

/// True while some thread holds the lock (Python's `locked()`). False for NULL.
///
/// # Safety
/// `lock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_locked(lock: *const weft_lock) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(lock) }.is_ok_and(|l| on_placed!(l.inner, x => x.locked())))
}

/// Frees the lock handle (a condition built over it keeps the lock alive). NULL is a no-op.
///
/// # Safety
/// `lock` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_free(lock: *mut weft_lock) {
    // SAFETY: forwarded contract.
    unsafe { super::free(lock) }
}

/// A re-entrant lock (Python's `threading.RLock`, or `multiprocessing.RLock` when created in a
/// space): the owning thread may acquire it again; it is free when released as many times.
/// Thread-safe (a shared one also process-safe); only the owner may release. A shared RLock
/// whose owner dies, at any depth, is handed to the next acquirer at depth 1 with
/// WEFT_OWNER_DEAD, as for `weft_lock`.
pub struct weft_rlock {
    tag: Tag,
    pub(crate) inner: Placed<RLock, RobustRLock<SharedWord>>,
}

impl weft_rlock {
    pub(crate) fn new(inner: Placed<RLock, RobustRLock<SharedWord>>) -> weft_rlock {
        weft_rlock { tag: Tag::of::<weft_rlock>(), inner }
    }
}

impl Object for weft_rlock {
    const NAME: &'static str = "weft_rlock";
    const MAGIC: u64 = 0x7765_6674_726c_636b;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// Creates an unlocked re-entrant lock in `*out` (free with `weft_rlock_free`).
/// Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_new(out: *mut *mut weft_rlock) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        publish(weft_rlock::new(Placed::Private(RLock::new())), out)
    })
}

/// Acquires the lock, or one more level of it when the caller already owns it (never blocks
/// then). Blocks up to `timeout_ns`. Errors: WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK,
/// WEFT_TIMEOUT, WEFT_CANCELLED, WEFT_INVALID_ARGUMENT (depth overflow at 2^32 - 1); shared:
/// WEFT_OWNER_DEAD (lock held at depth 1), WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `rlock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_acquire(rlock: *mut weft_rlock, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| {
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        on_placed!(unsafe { get(rlock) }?.inner, l => l.acquire(deadline, Interrupt::Cancellable))
    })
}

/// Releases one level. Errors: WEFT_NULL_ARGUMENT, WEFT_NOT_OWNER (the caller does not own
/// it; Python raises RuntimeError).
///
/// # Safety
/// `rlock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_release(rlock: *mut weft_rlock) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| on_placed!(unsafe { get(rlock) }?.inner, l => l.release()))
}

/// True when the calling thread owns the lock. False for NULL.
///
/// # Safety
/// `rlock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_is_owned(rlock: *const weft_rlock) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(rlock) }.is_ok_and(|l| on_placed!(l.inner, x => x.is_owned())))
}

/// How many levels the calling thread holds (0 when it does not own the lock, or NULL).
///
/// # Safety
/// `rlock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_depth(rlock: *const weft_rlock) -> u32 {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(rlock) }.map_or(0, |l| on_placed!(l.inner, x => x.depth())))
}

/// Frees the handle (a condition built over it keeps the lock alive). NULL is a no-op.
///
/// # Safety
/// `rlock` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_free(rlock: *mut weft_rlock) {
    // SAFETY: forwarded contract.
    unsafe { super::free(rlock) }
}

fn not_robust(what: &str) -> Error {
    Error::new(WEFT_INVALID_STATE, format!("a private {what} never reports a dead owner; there is nothing to mark"))
}

/// Creates an unlocked shared lock (Python's `multiprocessing.Lock`) in `space` (NULL: the
/// default space, which forked children inherit), named `name` (NULL: unnamed; reach it from
/// other processes by token). The same `weft_lock_*` functions use it.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (bad name), WEFT_EXISTS (name taken),
/// WEFT_NO_MEMORY (space or its 64-name directory full), WEFT_CORRUPTED, WEFT_TIMEOUT,
/// WEFT_NOT_RECOVERABLE (the space's own lock).
///
/// # Safety
/// `space` must be NULL or a handle from weft; `name` NULL or a NUL-terminated string; `out`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_new_in(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_lock) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let t = unsafe { create_in(space, name, KIND_LOCK, RobustLock::new()) }?;
        publish(weft_lock::new(Placed::Shared(t)), out)
    })
}

/// Opens the shared lock named `name` in `space` (NULL: the default space), created by any
/// process. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (bad name, or the object is not
/// a lock), WEFT_NOT_FOUND, WEFT_CORRUPTED, WEFT_TIMEOUT, WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `space` must be NULL or a handle from weft; `name` a NUL-terminated string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_open(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_lock) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let t = unsafe { open_in(space, name, KIND_LOCK) }?;
        publish(weft_lock::new(Placed::Shared(t)), out)
    })
}

/// Writes a token for the shared lock into `buf` (`cap` bytes; `WEFT_TOKEN_MAX` always
/// suffices) and its length into `*len`. Another process opens the same lock with
/// `weft_lock_from_token`. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE (a private lock),
/// WEFT_BUFFER_TOO_SMALL (`*len` then holds the size needed).
///
/// # Safety
/// `lock` must be NULL or a handle from weft; `buf` must hold `cap` writable bytes; `len`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_token(lock: *const weft_lock, buf: *mut c_void, cap: usize, len: *mut usize) -> weft_status {
    // SAFETY: forwarded contracts.
    guard(|| unsafe { write_token(get(lock)?.inner.shared(), "lock", buf, cap, len) })
}

/// Opens the shared lock a token designates (from `weft_lock_token`, in this or another
/// process). The token's space must be reachable: a named space is opened by name; an
/// anonymous one must be mapped here already (the default space in a forked child, or in a
/// child started with `WEFT_DEFAULT_SPACE_FD`).
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (not a lock token), WEFT_NOT_FOUND (space
/// unreachable, or the lock was freed), WEFT_CORRUPTED.
///
/// # Safety
/// `token` must point at `len` readable bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_from_token(token: *const c_void, len: usize, out: *mut *mut weft_lock) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let t = unsafe { from_token(token, len, KIND_LOCK) }?;
        publish(weft_lock::new(Placed::Shared(t)), out)
    })
}

/// Marks the state a shared lock protects as repaired after an acquire returned
/// WEFT_OWNER_DEAD; the lock then works normally again. Call it while holding the lock.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE (the lock is not awaiting recovery, or is
/// private).
///
/// # Safety
/// `lock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_lock_mark_consistent(lock: *mut weft_lock) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        match &unsafe { get(lock) }?.inner {
            Placed::Private(_) => Err(not_robust("lock")),
            Placed::Shared(s) => s.get().mark_consistent(),
        }
    })
}

/// Creates an unlocked shared re-entrant lock (Python's `multiprocessing.RLock`) in `space`
/// (NULL: the default space), named `name` (NULL: unnamed). Errors: as `weft_lock_new_in`.
///
/// # Safety
/// As `weft_lock_new_in`.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_new_in(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_rlock) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let t = unsafe { create_in(space, name, KIND_RLOCK, RobustRLock::new()) }?;
        publish(weft_rlock::new(Placed::Shared(t)), out)
    })
}

/// Opens the shared re-entrant lock named `name` in `space` (NULL: the default space).
/// Errors: as `weft_lock_open`.
///
/// # Safety
/// As `weft_lock_open`.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_open(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_rlock) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let t = unsafe { open_in(space, name, KIND_RLOCK) }?;
        publish(weft_rlock::new(Placed::Shared(t)), out)
    })
}

/// Writes a token for the shared re-entrant lock (see `weft_lock_token`).
///
/// # Safety
/// As `weft_lock_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_token(rlock: *const weft_rlock, buf: *mut c_void, cap: usize, len: *mut usize) -> weft_status {
    // SAFETY: forwarded contracts.
    guard(|| unsafe { write_token(get(rlock)?.inner.shared(), "rlock", buf, cap, len) })
}

/// Opens the shared re-entrant lock a token designates (see `weft_lock_from_token`).
///
/// # Safety
/// As `weft_lock_from_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_from_token(token: *const c_void, len: usize, out: *mut *mut weft_rlock) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let t = unsafe { from_token(token, len, KIND_RLOCK) }?;
        publish(weft_rlock::new(Placed::Shared(t)), out)
    })
}

/// Marks a shared re-entrant lock consistent after WEFT_OWNER_DEAD (see
/// `weft_lock_mark_consistent`); the caller must own it. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_NOT_OWNER, WEFT_INVALID_STATE.
///
/// # Safety
/// `rlock` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_rlock_mark_consistent(rlock: *mut weft_rlock) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        match &unsafe { get(rlock) }?.inner {
            Placed::Private(_) => Err(not_robust("rlock")),
            Placed::Shared(s) => s.get().mark_consistent(),
        }
    })
}
