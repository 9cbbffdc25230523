//! Barrier (Python's `threading.Barrier` and `multiprocessing.Barrier`), private or in a space.

use super::placed::{create_in, from_token, open_in};
use super::space::{weft_space, write_token};
use super::{get, out_ptr, publish, Object, Tag};
use crate::futex::{Interrupt, SharedWord};
use crate::space::object::KIND_BARRIER;
use crate::space::shared::Typed;
use crate::status::{guard, guard_value, weft_status, Error, Result, WEFT_OK};
use crate::sync::barrier::Action;
use crate::sync::{Barrier, SharedBarrier};
use crate::time::Deadline;
use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex, Once, Weak};

enum BarrierImpl {
    Private(Barrier),
    /// A shared barrier and this handle's action (an action is per process, as in Python).
    Shared(Arc<Typed<SharedBarrier<SharedWord>>>, Option<Action>),
}

/// Shared barriers this process has handles on, so that a normal exit (`exit`, return from
/// `main`) leaves them instead of looking like a death to the other participants.
static OPEN_SHARED: Mutex<Vec<Weak<Typed<SharedBarrier<SharedWord>>>>> = Mutex::new(Vec::new());

/// Leaves every shared barrier this process opened (run at exit, and by a child process before it ends).
pub(crate) extern "C" fn leave_shared_barriers_at_exit() {
    let _ = crate::status::catch(|| {
        let open = OPEN_SHARED.lock().unwrap_or_else(|e| e.into_inner());
        for b in open.iter().filter_map(Weak::upgrade) {
            b.get().leave();
        }
        Ok(())
    });
}

fn track(b: &Arc<Typed<SharedBarrier<SharedWord>>>) {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain extern "C" function that lives as long as the library.
        unsafe { libc::atexit(leave_shared_barriers_at_exit) };
    });
    let mut open = OPEN_SHARED.lock().unwrap_or_else(|e| e.into_inner());
    open.retain(|w| w.strong_count() > 0);
    open.push(Arc::downgrade(b));
}

/// A barrier for a fixed number of parties (Python's `threading.Barrier`, or
/// `multiprocessing.Barrier` when created in a space). Thread-safe; a shared one is also
/// process-safe.
///
/// A shared barrier breaks when a participant dies: every process holding a handle on it is
/// recorded (up to 64), and a waiter that finds one of them dead (checked about every
/// 50 ms) breaks the barrier, so the others get WEFT_BROKEN instead of waiting out their
/// timeout. A process that used the barrier and ends without `weft_barrier_free` and without
/// running its exit handlers (killed, `_exit`) counts as dead; one that ends normally (`exit`, returning from `main`) leaves first. After
/// `weft_barrier_reset` the barrier works again with the live parties.
pub struct weft_barrier {
    tag: Tag,
    barrier: BarrierImpl,
}

impl Object for weft_barrier {
    const NAME: &'static str = "weft_barrier";
    const MAGIC: u64 = 0x7765_6674_6261_7272;
    fn tag(&self) -> &Tag {
        &self.tag
    }
    fn on_free(&self) {
        if let BarrierImpl::Shared(b, _) = &self.barrier {
            b.get().leave();
        }
    }
}

/// Wraps a C action and its context as a Rust action.
fn make_action(action: weft_barrier_action, ctx: *mut c_void) -> Option<Action> {
    let ctx = ctx as usize;
    action.map(|f| {
        Box::new(move || {
            // SAFETY: the caller promised `f` is callable with `ctx`.
            let s = unsafe { f(ctx as *mut c_void) };
            if s == WEFT_OK {
                Ok(())
            } else {
                let name = crate::status::name(s).to_string_lossy();
                Err(Error::new(s, format!("barrier action failed with {name}; the barrier is broken")))
            }
        }) as Action
    })
}

fn publish_shared(b: Typed<SharedBarrier<SharedWord>>, action: Option<Action>, out: *mut *mut weft_barrier) -> Result<()> {
    let b = Arc::new(b);
    // Record this process as a participant now, not at its first wait: a party that dies
    // before ever arriving must break the barrier too. (A full table leaves it untracked.)
    b.get().register()?;
    track(&b);
    publish(weft_barrier { tag: Tag::of::<weft_barrier>(), barrier: BarrierImpl::Shared(b, action) }, out)
}

macro_rules! on_barrier {
    ($b:expr, $x:ident => $body:expr) => {
        match &$b {
            BarrierImpl::Private($x) => $body,
            BarrierImpl::Shared(t, _) => {
                let $x = t.get();
                $body
            }
        }
    };
}

/// The action run by one thread when the last party arrives, before any is released. A
/// status other than WEFT_OK breaks the barrier: that thread's wait returns the status, the
/// others get WEFT_BROKEN.
pub type weft_barrier_action = Option<unsafe extern "C" fn(ctx: *mut c_void) -> weft_status>;

/// Creates a barrier for `parties` threads with an optional `action` (NULL for none) called
/// with `ctx`. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (`parties` is 0).
///
/// # Safety
/// `out` must be writable; `action`, if given, callable from any thread with `ctx` for the
/// barrier's lifetime.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_new(
    parties: u32,
    action: weft_barrier_action,
    ctx: *mut c_void,
    out: *mut *mut weft_barrier,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        let action = make_action(action, ctx);
        publish(weft_barrier { tag: Tag::of::<weft_barrier>(), barrier: BarrierImpl::Private(Barrier::new(parties, action)?) }, out)
    })
}

/// Waits until all parties have called it, up to `timeout_ns`. On WEFT_OK, `*index` (if not
/// NULL) receives the arrival index, 0 to parties - 1; the thread that arrives last (index
/// parties - 1) runs the action. Errors: WEFT_NULL_ARGUMENT, WEFT_BROKEN (the barrier is or
/// became broken: aborted, reset during the wait, another party timed out), WEFT_TIMEOUT (this
/// thread's timeout passed while it waited for the other parties; the barrier is now broken for
/// all, as in Python — so timeout 0 is not a harmless poll here; a timeout that passes while
/// the previous round is still leaving returns WEFT_TIMEOUT without breaking anything),
/// WEFT_CANCELLED (breaks it too), or the action's failure status. A shared barrier also
/// returns WEFT_BROKEN when a participant process died, and WEFT_CORRUPTED.
///
/// # Safety
/// `barrier` must be NULL or a handle from weft; `index` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_wait(barrier: *mut weft_barrier, timeout_ns: u64, index: *mut u32) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let b = unsafe { get(barrier) }?;
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        let i = match &b.barrier {
            BarrierImpl::Private(p) => p.wait(deadline, Interrupt::Cancellable)?,
            BarrierImpl::Shared(t, action) => t.get().wait(deadline, Interrupt::Cancellable, action.as_deref().map(|a| a as &dyn Fn() -> Result<()>))?,
        };
        if !index.is_null() {
            // SAFETY: non-null, writable per the contract.
            unsafe { index.write(i) };
        }
        Ok(())
    })
}

/// Returns the barrier to its initial state; threads waiting in it get WEFT_BROKEN.
/// Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `barrier` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_reset(barrier: *mut weft_barrier) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        match &unsafe { get(barrier) }?.barrier {
            BarrierImpl::Private(p) => {
                p.reset();
                Ok(())
            }
            BarrierImpl::Shared(t, _) => t.get().reset(),
        }
    })
}

/// Breaks the barrier: current and later waiters get WEFT_BROKEN until `weft_barrier_reset`.
/// Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `barrier` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_abort(barrier: *mut weft_barrier) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        match &unsafe { get(barrier) }?.barrier {
            BarrierImpl::Private(p) => {
                p.abort();
                Ok(())
            }
            BarrierImpl::Shared(t, _) => t.get().abort(),
        }
    })
}

/// Number of parties (0 for NULL).
///
/// # Safety
/// `barrier` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_parties(barrier: *const weft_barrier) -> u32 {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(barrier) }.map_or(0, |b| on_barrier!(b.barrier, x => x.parties())))
}

/// Number of threads currently waiting for the barrier to fill (0 for NULL).
///
/// # Safety
/// `barrier` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_n_waiting(barrier: *const weft_barrier) -> u32 {
    // SAFETY: forwarded contract.
    guard_value(0, || unsafe { get(barrier) }.map_or(0, |b| on_barrier!(b.barrier, x => x.n_waiting())))
}

/// True when the barrier is broken (false for NULL).
///
/// # Safety
/// `barrier` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_broken(barrier: *const weft_barrier) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(barrier) }.is_ok_and(|b| on_barrier!(b.barrier, x => x.broken())))
}

/// Frees the barrier. NULL is a no-op.
///
/// # Safety
/// `barrier` must be NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_free(barrier: *mut weft_barrier) {
    // SAFETY: forwarded contract.
    unsafe { super::free(barrier) }
}

/// Creates a shared barrier (Python's `multiprocessing.Barrier`) for `parties` parties in
/// `space` (NULL: the default space), named `name` (NULL: unnamed), with this handle's optional
/// `action` called with `ctx` (each process gives its own action when it opens the barrier;
/// the last arriver runs its own). Errors: WEFT_INVALID_ARGUMENT (`parties` is 0, bad name), and
/// those of `weft_lock_new_in`.
///
/// # Safety
/// `space` must be NULL or a handle from weft; `name` NULL or a NUL-terminated string; `out`
/// writable; `action`, if given, callable from any thread with `ctx` for the handle's lifetime.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_new_in(
    space: *mut weft_space,
    name: *const c_char,
    parties: u32,
    action: weft_barrier_action,
    ctx: *mut c_void,
    out: *mut *mut weft_barrier,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        let b = SharedBarrier::new(parties)?;
        // SAFETY: forwarded contract.
        let t = unsafe { create_in(space, name, KIND_BARRIER, b) }?;
        publish_shared(t, make_action(action, ctx), out)
    })
}

/// Opens the shared barrier named `name` in `space` (NULL: the default space), with this
/// handle's optional `action`. Errors: as `weft_lock_open`.
///
/// # Safety
/// As `weft_barrier_new_in`, `name` required.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_open(
    space: *mut weft_space,
    name: *const c_char,
    action: weft_barrier_action,
    ctx: *mut c_void,
    out: *mut *mut weft_barrier,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let t = unsafe { open_in(space, name, KIND_BARRIER) }?;
        publish_shared(t, make_action(action, ctx), out)
    })
}

/// Writes a token for the shared barrier (see `weft_lock_token`).
///
/// # Safety
/// As `weft_lock_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_token(barrier: *const weft_barrier, buf: *mut c_void, cap: usize, len: *mut usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let r = match &unsafe { get(barrier) }?.barrier {
            BarrierImpl::Private(_) => None,
            BarrierImpl::Shared(t, _) => Some(t.shared()),
        };
        // SAFETY: forwarded contracts.
        unsafe { write_token(r, "barrier", buf, cap, len) }
    })
}

/// Opens the shared barrier a token designates (see `weft_lock_from_token`), with this
/// handle's optional `action`.
///
/// # Safety
/// As `weft_lock_from_token`; `action` as in `weft_barrier_new_in`.
#[no_mangle]
pub unsafe extern "C" fn weft_barrier_from_token(
    token: *const c_void,
    len: usize,
    action: weft_barrier_action,
    ctx: *mut c_void,
    out: *mut *mut weft_barrier,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let t = unsafe { from_token(token, len, KIND_BARRIER) }?;
        publish_shared(t, make_action(action, ctx), out)
    })
}
