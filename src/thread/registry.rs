//! The registry of live threads (Python's `enumerate` / `active_count`), and the process
//! hooks that keep it true: joining non-daemon threads at `exit()`, and forgetting the
//! parent's other threads in a forked child.

use super::{main_thread, JoinState, Thread, TID};
use crate::futex::{Interrupt, Word};
use crate::sync::Lock;
use crate::time::Deadline;
use std::cell::UnsafeCell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Once};

struct Registry {
    lock: Lock,
    threads: UnsafeCell<Vec<Arc<Thread>>>,
}

// SAFETY: `threads` is only touched inside `with`, under `lock`.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry { lock: Lock::INIT, threads: UnsafeCell::new(Vec::new()) };

fn with<R>(f: impl FnOnce(&mut Vec<Arc<Thread>>) -> R) -> R {
    let _ = REGISTRY.lock.acquire(Deadline::Never, Interrupt::Uninterruptible);
    // SAFETY: the registry lock is held.
    let r = f(unsafe { &mut *REGISTRY.threads.get() });
    let _ = REGISTRY.lock.release();
    r
}

pub(super) fn insert(t: &Arc<Thread>) {
    with(|v| v.push(t.clone()));
}

pub(super) fn remove(t: &Arc<Thread>) {
    with(|v| v.retain(|x| !Arc::ptr_eq(x, t)));
}

/// Every live thread weft knows: the main thread first, then weft threads and foreign
/// threads that asked for their record, in start order.
pub fn enumerate() -> Vec<Arc<Thread>> {
    let mut all = vec![main_thread()];
    with(|v| all.extend(v.iter().filter(|t| t.is_alive()).cloned()));
    all
}

/// `enumerate().len()`.
pub fn active_count() -> usize {
    1 + with(|v| v.iter().filter(|t| t.is_alive()).count())
}

extern "C" fn before_fork() {
    let _ = REGISTRY.lock.acquire(Deadline::Never, Interrupt::Uninterruptible);
}

extern "C" fn after_fork_parent() {
    let _ = REGISTRY.lock.release();
}

extern "C" fn after_fork_child() {
    let _ = TID.try_with(|c| c.set(0));
    // SAFETY: the lock was taken in `before_fork` by this (now the only) thread.
    let threads = unsafe { &mut *REGISTRY.threads.get() };
    let me = super::current_record();
    threads.retain(|t| {
        let mine = me.as_ref().is_some_and(|m| Arc::ptr_eq(m, t));
        if mine {
            t.tid.store(super::current_tid(), Ordering::Release);
        } else {
            // The thread does not exist in the child: it can never be joined or reaped here.
            *t.join.lock().unwrap_or_else(|e| e.into_inner()) = JoinState::Reaped;
            t.done.store(1, Ordering::Release);
            t.done.wake(u32::MAX);
        }
        mine
    });
    let _ = REGISTRY.lock.release();
}

extern "C" fn at_exit() {
    let _ = super::shutdown(Deadline::Never);
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
