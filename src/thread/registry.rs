//! The registry of live threads (Python's `enumerate` / `active_count`), and the process
//! hooks that keep it true: joining non-daemon threads at `exit()`, and forgetting the
//! parent's other threads in a forked child.

use super::{main_thread, JoinState, Thread, TID};
use crate::futex::{Interrupt, Word};
use crate::sync::Lock;
use crate::time::Deadline;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};

struct State {
    /// Live weft threads and foreign threads that asked for their record, in start order.
    threads: Vec<Arc<Thread>>,
    /// The main thread's record, made on first use.
    main: Option<Arc<Thread>>,
}

struct Registry {
    lock: Lock,
    state: UnsafeCell<State>,
}

// SAFETY: `state` is only touched inside `with` (under `lock`) and in the fork handlers
// (while `before_fork` holds `lock`).
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry { lock: Lock::new_const(), state: UnsafeCell::new(State { threads: Vec::new(), main: None }) };

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let _ = REGISTRY.lock.acquire(Deadline::Never, Interrupt::Uninterruptible);
    // SAFETY: the registry lock is held.
    let r = f(unsafe { &mut *REGISTRY.state.get() });
    let _ = REGISTRY.lock.release();
    r
}

pub(super) fn insert(t: &Arc<Thread>) {
    with(|s| s.threads.push(t.clone()));
}

pub(super) fn remove(t: &Arc<Thread>) {
    with(|s| s.threads.retain(|x| !Arc::ptr_eq(x, t)));
}

/// Every live thread weft knows: the main thread first, then weft threads and foreign
/// threads that asked for their record, in start order.
pub fn enumerate() -> Vec<Arc<Thread>> {
    let main = main_thread();
    let mut all = vec![main.clone()];
    with(|s| all.extend(s.threads.iter().filter(|t| t.is_alive() && !Arc::ptr_eq(t, &main)).cloned()));
    all
}

/// The live threads of the registry (not the main thread's record) that `keep` accepts.
pub(super) fn live_where(keep: impl Fn(&Thread) -> bool) -> Vec<Arc<Thread>> {
    with(|s| s.threads.iter().filter(|t| t.is_alive() && keep(t)).cloned().collect())
}

/// `enumerate().len()`.
pub fn active_count() -> usize {
    enumerate().len()
}

/// The main thread's record, made by `make` on first use.
pub(super) fn main_record(make: impl FnOnce() -> Arc<Thread>) -> Arc<Thread> {
    with(|s| s.main.get_or_insert_with(make).clone())
}

/// Kernel id, in the parent, of the thread that is forking.
static FORKING_TID: AtomicU32 = AtomicU32::new(0);

extern "C" fn before_fork() {
    FORKING_TID.store(super::current_tid(), Ordering::Relaxed);
    let _ = REGISTRY.lock.acquire(Deadline::Never, Interrupt::Uninterruptible);
}

extern "C" fn after_fork_parent() {
    let _ = REGISTRY.lock.release();
}

extern "C" fn after_fork_child() {
    let _ = TID.try_with(|c| c.set(0));
    // SAFETY: the lock was taken in `before_fork` by this (now the only) thread.
    let state = unsafe { &mut *REGISTRY.state.get() };
    if state.main.is_none() && state.threads.is_empty() {
        // Nothing recorded: nothing to forget (and no copy-on-write page to touch for it).
        let _ = REGISTRY.lock.release();
        return;
    }
    let forking = FORKING_TID.load(Ordering::Relaxed);
    let me = super::current_record()
        .or_else(|| state.main.clone().filter(|m| m.tid.load(Ordering::Relaxed) == forking));
    // The forking thread is the child's main thread (Python's rule), with the child's kernel
    // id; without a record of its own, a fresh main record is made on first use.
    if let Some(m) = &me {
        m.tid.store(super::current_tid(), Ordering::Release);
    }
    state.main = me.clone();
    state.threads.retain(|t| {
        let mine = me.as_ref().is_some_and(|m| Arc::ptr_eq(m, t));
        if !mine {
            // The thread does not exist in the child: it can never be joined or reaped here.
            *t.join.lock().unwrap_or_else(|e| e.into_inner()) = JoinState::Reaped;
            t.done.store(super::DONE, Ordering::Release);
            t.done.wake(u32::MAX);
        }
        mine
    });
    let _ = REGISTRY.lock.release();
}

extern "C" fn at_exit() {
    let _ = super::shutdown(Deadline::Never);
}

/// Installs the hooks when the library is loaded, so that a fork before any weft thread
/// starts still resets cached thread ids.
#[used]
#[link_section = ".init_array"]
static INSTALL_AT_LOAD: extern "C" fn() = install_at_load;

extern "C" fn install_at_load() {
    ensure_process_hooks();
}

/// Installs the fork and exit hooks once per process.
pub(super) fn ensure_process_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handlers are plain extern "C" functions that live as long as the
        // library; registering them has no other preconditions.
        unsafe {
            libc::pthread_atfork(Some(before_fork), Some(after_fork_parent), Some(after_fork_child));
            libc::atexit(at_exit);
        }
    });
}
