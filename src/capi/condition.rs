//! Condition (Python's `threading.Condition` and `multiprocessing.Condition`), over a
//! weft_lock or a weft_rlock, private or in a space.

use super::lock::{weft_lock, weft_rlock};
use super::placed::{create_in_handle, from_token, open_in, Placed};
use super::space::{space_or_default, weft_space, write_token};
use super::{get, out_ptr, publish, share, Object, Tag};
use crate::futex::{Interrupt, PrivateWord, SharedWord};
use crate::space::object::{KIND_CONDITION, KIND_LOCK, KIND_RLOCK};
use crate::space::handle::SpaceHandle;
use crate::space::shared::{SharedRef, Typed};
use crate::status::{guard, weft_status, Error, Result, WEFT_CORRUPTED, WEFT_INVALID_STATE, WEFT_NULL_ARGUMENT};
use crate::sync::{CondLock, Condition, Lock, RLock, RobustCondLock, SharedCondition};
use crate::time::Deadline;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// The lock a condition was built over; it keeps the lock alive.
pub(crate) enum LockRef {
    Lock(Arc<weft_lock>),
    RLock(Arc<weft_rlock>),
    Own(RLock),
}

impl LockRef {
    fn get(&self) -> &dyn CondLock<W = PrivateWord> {
        match self {
            // Only private locks are accepted when a private condition is created.
            LockRef::Lock(l) => match &l.inner {
                Placed::Private(p) => p,
                Placed::Shared(_) => unreachable!("private condition over a shared lock"),
            },
            LockRef::RLock(r) => match &r.inner {
                Placed::Private(p) => p,
                Placed::Shared(_) => unreachable!("private condition over a shared rlock"),
            },
            LockRef::Own(r) => r,
        }
    }
}

impl CondLock for LockRef {
    type W = PrivateWord;
    fn mutex(&self) -> &Lock {
        self.get().mutex()
    }
    fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        self.get().acquire(deadline, interrupt)
    }
    fn release(&self) -> Result<()> {
        self.get().release()
    }
    fn is_owned(&self) -> bool {
        self.get().is_owned()
    }
    fn release_save(&self) -> Result<u32> {
        self.get().release_save()
    }
    fn acquire_restore(&self, saved: u32) {
        self.get().acquire_restore(saved)
    }
}

/// The shared lock a shared condition uses; it keeps the lock's handle alive.
pub(crate) enum SharedLock {
    Lock(Arc<weft_lock>),
    RLock(Arc<weft_rlock>),
}

impl SharedLock {
    fn robust(&self) -> &dyn RobustCondLock {
        // Only shared locks are ever put here (checked where a SharedLock is made).
        match self {
            SharedLock::Lock(l) => match &l.inner {
                Placed::Shared(t) => t.get(),
                Placed::Private(_) => unreachable!("shared condition over a private lock"),
            },
            SharedLock::RLock(r) => match &r.inner {
                Placed::Shared(t) => t.get(),
                Placed::Private(_) => unreachable!("shared condition over a private rlock"),
            },
        }
    }

    fn shared(&self) -> &SharedRef {
        match self {
            SharedLock::Lock(l) => l.inner.shared(),
            SharedLock::RLock(r) => r.inner.shared(),
        }
        .expect("a SharedLock holds a shared lock")
    }

    fn acquire(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        match self {
            SharedLock::Lock(l) => super::placed::on_placed!(l.inner, x => x.acquire(deadline, interrupt)),
            SharedLock::RLock(r) => super::placed::on_placed!(r.inner, x => x.acquire(deadline, interrupt)),
        }
    }

    fn release(&self) -> Result<()> {
        match self {
            SharedLock::Lock(l) => super::placed::on_placed!(l.inner, x => x.release()),
            SharedLock::RLock(r) => super::placed::on_placed!(r.inner, x => x.release()),
        }
    }

    fn mark_consistent(&self) -> Result<()> {
        match self {
            SharedLock::Lock(l) => match &l.inner {
                Placed::Shared(t) => t.get().mark_consistent(),
                Placed::Private(_) => Err(Error::new(WEFT_INVALID_STATE, "private lock")),
            },
            SharedLock::RLock(r) => match &r.inner {
                Placed::Shared(t) => t.get().mark_consistent(),
                Placed::Private(_) => Err(Error::new(WEFT_INVALID_STATE, "private rlock")),
            },
        }
    }
}

/// A private or shared condition.
pub(crate) enum CondImpl {
    Private(Condition<LockRef>),
    Shared { cond: Typed<SharedCondition<SharedWord>>, lock: SharedLock },
}

/// A condition variable (Python's `threading.Condition`, or `multiprocessing.Condition` when
/// created in a space). Thread-safe; a shared one is also process-safe. `wait`, `wait_for`,
/// `notify` and `notify_all` require the lock: for an RLock the caller must own it; for a
/// Lock, which has no owner, it must be locked (Python's rule).
///
/// A shared condition never lets a dead waiter swallow a notification: `notify(n)` skips
/// waiters whose thread has died, and `notify_all` wakes every live one whatever happened to
/// the others. It holds at most 128 waiters at once (WEFT_NO_MEMORY beyond). When the process
/// holding its lock dies, a waiter re-acquiring the lock returns WEFT_OWNER_DEAD holding it
/// (see `weft_condition_mark_consistent`).
pub struct weft_condition {
    tag: Tag,
    cond: CondImpl,
}

impl Object for weft_condition {
    const NAME: &'static str = "weft_condition";
    const MAGIC: u64 = 0x7765_6674_636f_6e64;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

fn create(lock: LockRef, out: *mut *mut weft_condition) -> Result<()> {
    publish(weft_condition { tag: Tag::of::<weft_condition>(), cond: CondImpl::Private(Condition::new(lock)) }, out)
}

fn publish_shared(cond: Typed<SharedCondition<SharedWord>>, lock: SharedLock, out: *mut *mut weft_condition) -> Result<()> {
    publish(weft_condition { tag: Tag::of::<weft_condition>(), cond: CondImpl::Shared { cond, lock } }, out)
}

/// Creates a shared condition named `name` in the space `h` (which must be the lock's) and
/// links it to the lock (the condition's object keeps the lock's object alive).
fn create_shared(h: Arc<SpaceHandle>, name: Option<&str>, lock: SharedLock, out: *mut *mut weft_condition) -> Result<()> {
    let lock_ref = lock.shared();
    if h.uid() != lock_ref.handle().uid() {
        return Err(Error::invalid("a shared condition must be created in the space of its lock"));
    }
    let cond = create_in_handle(h, name, KIND_CONDITION, SharedCondition::new())?;
    cond.shared().handle().space().set_dependency(cond.shared().object(), lock_ref.object())?;
    publish_shared(cond, lock, out)
}

/// Rebuilds the lock handle of an opened shared condition from the condition's dependency.
fn lock_of(cond: &Typed<SharedCondition<SharedWord>>) -> Result<SharedLock> {
    let r = cond.shared();
    let (offset, serial) = r
        .handle()
        .space()
        .dependency(r.object())?
        .ok_or_else(|| Error::new(WEFT_CORRUPTED, "shared condition has no lock"))?;
    let lock = SharedRef::open_ref(r.handle().clone(), offset, serial, None, None)?;
    Ok(match lock.object().kind {
        KIND_LOCK => SharedLock::Lock(Arc::new(weft_lock::new(Placed::Shared(Typed::new(lock)?)))),
        KIND_RLOCK => SharedLock::RLock(Arc::new(weft_rlock::new(Placed::Shared(Typed::new(lock)?)))),
        _ => return Err(Error::new(WEFT_CORRUPTED, "shared condition's lock is not a lock")),
    })
}

fn open_shared(cond: Typed<SharedCondition<SharedWord>>, out: *mut *mut weft_condition) -> Result<()> {
    let lock = lock_of(&cond)?;
    publish_shared(cond, lock, out)
}

/// Creates a condition with a new re-entrant lock of its own (Python's `Condition()`).
/// Use `weft_condition_acquire`/`release` for the lock. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_new(out: *mut *mut weft_condition) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        create(LockRef::Own(RLock::new()), out)
    })
}

/// Creates a condition over `lock` (Python's `Condition(Lock())`); the condition keeps the
/// lock alive, and the lock may be used directly too. Over a shared lock, the condition is an
/// unnamed shared condition in the lock's space (see `weft_condition_new_in`).
/// Errors: WEFT_NULL_ARGUMENT; for a shared lock, those of `weft_condition_new_in`.
///
/// # Safety
/// `lock` must be NULL or a handle from weft; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_new_with_lock(lock: *mut weft_lock, out: *mut *mut weft_condition) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let l = unsafe { share(lock) }?;
        if let Some(r) = l.inner.shared() {
            let uid = r.handle().uid();
            let space = crate::space::handle::find_by_uid(uid)
                .ok_or_else(|| Error::new(WEFT_INVALID_STATE, "the lock's space is gone"))?;
            return create_shared(space, None, SharedLock::Lock(l), out);
        }
        create(LockRef::Lock(l), out)
    })
}

/// Creates a condition over `rlock` (Python's `Condition(RLock())`); waiting releases every
/// level the caller holds and restores them afterwards. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `rlock` must be NULL or a handle from weft; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_new_with_rlock(rlock: *mut weft_rlock, out: *mut *mut weft_condition) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let l = unsafe { share(rlock) }?;
        if let Some(r) = l.inner.shared() {
            let uid = r.handle().uid();
            let space = crate::space::handle::find_by_uid(uid)
                .ok_or_else(|| Error::new(WEFT_INVALID_STATE, "the rlock's space is gone"))?;
            return create_shared(space, None, SharedLock::RLock(l), out);
        }
        create(LockRef::RLock(l), out)
    })
}

/// Acquires the condition's lock (as `weft_lock_acquire` / `weft_rlock_acquire`).
///
/// # Safety
/// `cond` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_acquire(cond: *mut weft_condition, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| {
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        match &unsafe { get(cond) }?.cond {
            CondImpl::Private(c) => c.lock().acquire(deadline, Interrupt::Cancellable),
            CondImpl::Shared { lock, .. } => lock.acquire(deadline, Interrupt::Cancellable),
        }
    })
}

/// Releases the condition's lock (as `weft_lock_release` / `weft_rlock_release`).
///
/// # Safety
/// `cond` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_release(cond: *mut weft_condition) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| match &unsafe { get(cond) }?.cond {
        CondImpl::Private(c) => c.lock().release(),
        CondImpl::Shared { lock, .. } => lock.release(),
    })
}

/// Releases the lock, waits until notified or `timeout_ns` passes, and re-acquires the lock
/// before returning — always, even on timeout or cancellation. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_NOT_OWNER (lock not held; Python raises RuntimeError), WEFT_WOULD_BLOCK (timeout 0),
/// WEFT_TIMEOUT (Python returns False), WEFT_CANCELLED. A shared condition also returns
/// WEFT_OWNER_DEAD (the lock's holder died meanwhile: the caller holds the lock, repairs the
/// state and calls `weft_condition_mark_consistent`; this takes precedence over a timeout),
/// WEFT_NOT_RECOVERABLE (the lock is unusable; it is not held then), WEFT_NO_MEMORY (128
/// live waiters already) and WEFT_CORRUPTED.
///
/// # Safety
/// `cond` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_wait(cond: *mut weft_condition, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| {
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        match &unsafe { get(cond) }?.cond {
            CondImpl::Private(c) => c.wait(deadline, Interrupt::Cancellable),
            CondImpl::Shared { cond, lock } => cond.get().wait(lock.robust(), deadline, Interrupt::Cancellable),
        }
    })
}

/// A predicate for `weft_condition_wait_for`, called with the lock held.
pub type weft_predicate = Option<unsafe extern "C" fn(ctx: *mut c_void) -> bool>;

/// Waits until `predicate(ctx)` returns true (Python's `wait_for`): the predicate is checked
/// first, then after every wake-up, with the lock held. WEFT_OK when it became true. Errors:
/// WEFT_NULL_ARGUMENT (`cond` or `predicate`), WEFT_NOT_OWNER, WEFT_WOULD_BLOCK / WEFT_TIMEOUT
/// (the predicate was still false when `timeout_ns` passed; Python returns the predicate's last
/// value), WEFT_CANCELLED.
///
/// # Safety
/// `cond` must be NULL or a handle from weft; `predicate` callable with `ctx`.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_wait_for(
    cond: *mut weft_condition,
    predicate: weft_predicate,
    ctx: *mut c_void,
    timeout_ns: u64,
) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let c = unsafe { get(cond) }?;
        let p = predicate.ok_or_else(|| Error::new(WEFT_NULL_ARGUMENT, "predicate is NULL"))?;
        // SAFETY: the caller promised `p` is callable with `ctx`.
        let mut pred = || unsafe { p(ctx) };
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        match &c.cond {
            CondImpl::Private(c) => c.wait_for(deadline, Interrupt::Cancellable, &mut pred),
            CondImpl::Shared { cond, lock } => cond.get().wait_for(lock.robust(), deadline, Interrupt::Cancellable, &mut pred),
        }
    })
}

/// Wakes up to `n` waiting threads, longest-waiting first. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_NOT_OWNER.
///
/// # Safety
/// `cond` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_notify(cond: *mut weft_condition, n: usize) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| match &unsafe { get(cond) }?.cond {
        CondImpl::Private(c) => c.notify(n),
        CondImpl::Shared { cond, lock } => cond.get().notify(lock.robust(), n),
    })
}

/// Wakes every waiting thread. Errors: WEFT_NULL_ARGUMENT, WEFT_NOT_OWNER.
///
/// # Safety
/// `cond` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_notify_all(cond: *mut weft_condition) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| match &unsafe { get(cond) }?.cond {
        CondImpl::Private(c) => c.notify_all(),
        CondImpl::Shared { cond, lock } => cond.get().notify_all(lock.robust()),
    })
}

/// Frees the condition (and its reference to the lock). NULL is a no-op.
///
/// # Safety
/// `cond` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_free(cond: *mut weft_condition) {
    // SAFETY: forwarded contract.
    unsafe { super::free(cond) }
}

/// Creates a shared condition (Python's `multiprocessing.Condition`) in `space` (NULL: the
/// default space), named `name` (NULL: unnamed), over the shared `lock` or `rlock` (at most one
/// of them; both NULL: a new unnamed shared RLock of its own, as Python's `Condition()`). The
/// lock must live in the same space; the condition keeps it alive, and `weft_condition_open`
/// in another process finds the same lock.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (both locks given, a private lock, a lock
/// of another space, bad name), WEFT_EXISTS, WEFT_NO_MEMORY, WEFT_CORRUPTED, WEFT_TIMEOUT,
/// WEFT_NOT_RECOVERABLE.
///
/// # Safety
/// `space`, `lock`, `rlock` must each be NULL or a handle from weft; `name` NULL or a
/// NUL-terminated string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_new_in(
    space: *mut weft_space,
    name: *const c_char,
    lock: *mut weft_lock,
    rlock: *mut weft_rlock,
    out: *mut *mut weft_condition,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contracts.
        let (h, name) = unsafe { (space_or_default(space)?, super::opt_str(name, "name")?) };
        let shared = match (lock.is_null(), rlock.is_null()) {
            (false, false) => return Err(Error::invalid("give a lock or an rlock, not both")),
            // SAFETY: forwarded contract.
            (false, true) => SharedLock::Lock(unsafe { share(lock) }?),
            // SAFETY: forwarded contract.
            (true, false) => SharedLock::RLock(unsafe { share(rlock) }?),
            (true, true) => {
                let t = create_in_handle(h.clone(), None, KIND_RLOCK, crate::sync::RobustRLock::new())?;
                SharedLock::RLock(Arc::new(weft_rlock::new(Placed::Shared(t))))
            }
        };
        let is_shared = match &shared {
            SharedLock::Lock(l) => l.inner.shared().is_some(),
            SharedLock::RLock(r) => r.inner.shared().is_some(),
        };
        if !is_shared {
            return Err(Error::invalid("a shared condition needs a shared lock (weft_lock_new_in / weft_rlock_new_in)"));
        }
        create_shared(h, name.as_deref(), shared, out)
    })
}

/// Opens the shared condition named `name` in `space` (NULL: the default space), with the lock
/// it was created over. Errors: as `weft_lock_open`.
///
/// # Safety
/// As `weft_lock_open`.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_open(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_condition) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        open_shared(unsafe { open_in(space, name, KIND_CONDITION) }?, out)
    })
}

/// Writes a token for the shared condition (see `weft_lock_token`).
///
/// # Safety
/// As `weft_lock_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_token(cond: *const weft_condition, buf: *mut c_void, cap: usize, len: *mut usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let r = match &unsafe { get(cond) }?.cond {
            CondImpl::Private(_) => None,
            CondImpl::Shared { cond, .. } => Some(cond.shared()),
        };
        // SAFETY: forwarded contracts.
        unsafe { write_token(r, "condition", buf, cap, len) }
    })
}

/// Opens the shared condition a token designates, with its lock (see `weft_lock_from_token`).
///
/// # Safety
/// As `weft_lock_from_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_from_token(token: *const c_void, len: usize, out: *mut *mut weft_condition) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        open_shared(unsafe { from_token(token, len, KIND_CONDITION) }?, out)
    })
}

/// Marks the shared condition's lock consistent after a call returned WEFT_OWNER_DEAD (as
/// `weft_lock_mark_consistent` / `weft_rlock_mark_consistent` on the lock). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE (not awaiting recovery, or a private condition),
/// WEFT_NOT_OWNER.
///
/// # Safety
/// `cond` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_condition_mark_consistent(cond: *mut weft_condition) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| match &unsafe { get(cond) }?.cond {
        CondImpl::Private(_) => Err(Error::new(WEFT_INVALID_STATE, "a private condition never reports a dead owner")),
        CondImpl::Shared { lock, .. } => lock.mark_consistent(),
    })
}
