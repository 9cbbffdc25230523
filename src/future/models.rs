//! Loom models of the future's state machine (`core.rs`) and of waiting on many futures
//! (`wait.rs`).
//!
//! [`Core`] and [`Waiter`] are generic over a [`Shim`]; here they run on [`Loom`]: the futex
//! word is `sync/models.rs`'s [`LoomWord`] (a loom mutex and condition variable stand for the
//! kernel's hash bucket, the value is checked under it), the hooks' mutex is loom's, and the
//! value cell is loom's `UnsafeCell`, so a read of the value that is not ordered after its
//! write fails the model. The models are ordinary `#[test]`s calling loom directly.
//!
//! The state word needs no SeqCst help: every handshake on it is a read-modify-write of the
//! one word (a waiter's or registrant's compare-and-exchange against the completer's
//! publishing subtraction), which loom models exactly. The waiter's and the group's
//! `SLEEPING` bits work the same way. Not modelled: the eventfd (an OS object, signalled under
//! the hooks' mutex exactly where hooks are drained), cancellation of the calling thread
//! (thread-local cancel words), deadlines other than `Never`, `Now` and "passed at the next
//! sleep" (`LoomWord`'s `At`), and `Group` (a mutex and a counter with the same `SLEEPING`
//! handshake as the waiter's).

use super::core::{Core, Guarded, Shim, Slot, Value, CANCELLED, DONE, FAILED};
use super::wait::{wait_cores, Mode, Waiter, WaiterHook};
use crate::futex::Interrupt;
use crate::status::{WEFT_INVALID_STATE, WEFT_TIMEOUT};
use crate::sync::models::LoomWord;
use crate::time::Deadline;
use loom::sync::atomic::AtomicUsize;
use loom::thread;
use std::ffi::CString;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;

/// Loom's futex word, mutex and cell.
struct Loom;

impl Shim for Loom {
    type Word = LoomWord;
    type Lock<T: Send> = loom::sync::Mutex<T>;
    type Cell<T: Send> = loom::cell::UnsafeCell<T>;
}

impl<T: Send> Guarded<T> for loom::sync::Mutex<T> {
    fn new(v: T) -> Self {
        loom::sync::Mutex::new(v)
    }
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock().unwrap())
    }
}

impl<T: Send> Slot<T> for loom::cell::UnsafeCell<T> {
    fn new(v: T) -> Self {
        loom::cell::UnsafeCell::new(v)
    }
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        loom::cell::UnsafeCell::with(self, f)
    }
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        loom::cell::UnsafeCell::with_mut(self, f)
    }
}

/// The hooks of the models: a counter standing for a done callback, or a waiter.
enum MHook {
    Count(Arc<AtomicUsize>),
    Waiter(Arc<Waiter<Loom>>, usize, bool),
}

impl WaiterHook<Loom> for MHook {
    fn waiter(waiter: &Arc<Waiter<Loom>>, token: usize, collect: bool) -> Self {
        MHook::Waiter(waiter.clone(), token, collect)
    }
    fn is_waiter(&self, w: &Arc<Waiter<Loom>>) -> bool {
        matches!(self, MHook::Waiter(x, ..) if Arc::ptr_eq(x, w))
    }
}

type LCore = Core<Loom, MHook>;

/// Runs hooks as `Future::run_hook` does, for a core whose final value is `failed` or not.
fn run(hooks: Vec<MHook>, failed: bool) {
    for h in hooks {
        match h {
            MHook::Count(c) => {
                c.fetch_add(1, Relaxed);
            }
            MHook::Waiter(w, token, collect) => w.notify(token, failed, collect),
        }
    }
}

fn check(preemption_bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = preemption_bound;
    builder.check(f);
}

fn result(v: &[u8]) -> Value {
    Value::Result(v.to_vec())
}

/// The result bytes of a final core (a tracked read of the cell).
fn bytes(c: &LCore) -> Option<Vec<u8>> {
    assert!(super::core::is_final(c.load()));
    // SAFETY: the load above (acquire) saw a final phase.
    unsafe { c.with_value(|v| if let Value::Result(b) = v { Some(b.clone()) } else { None }) }
}

/// Two threads wait forever while a third completes: both wake (no wake-up lost between a
/// waiter's check and its sleep) and read the value the completer wrote (no data race on the
/// cell).
#[test]
fn complete_wakes_waiters() {
    check(Some(3), || {
        let c = Arc::new(LCore::new());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let c = c.clone();
                thread::spawn(move || {
                    c.wait(Deadline::Never, Interrupt::Cancellable).unwrap();
                    assert_eq!(bytes(&c).unwrap(), b"ok");
                })
            })
            .collect();
        run(c.complete(result(b"ok")).unwrap(), false);
        for w in waiters {
            w.join().unwrap();
        }
    });
}

/// One waiter against one completion, exhaustively.
#[test]
fn complete_wakes_waiter_exhaustive() {
    check(None, || {
        let c = Arc::new(LCore::new());
        let c2 = c.clone();
        let h = thread::spawn(move || {
            c2.wait(Deadline::Never, Interrupt::Cancellable).unwrap();
            bytes(&c2).unwrap()
        });
        run(c.complete(result(b"x")).unwrap(), false);
        assert_eq!(h.join().unwrap(), b"x");
    });
}

/// A timed waiter racing a completion returns success or a timeout, and a success reads the
/// value safely.
#[test]
fn timed_wait_races_completion() {
    check(None, || {
        let c = Arc::new(LCore::new());
        let c2 = c.clone();
        let h = thread::spawn(move || match c2.wait(Deadline::At(0), Interrupt::Cancellable) {
            Ok(()) => assert_eq!(bytes(&c2).unwrap(), b"t"),
            Err(e) => assert_eq!(e.code, WEFT_TIMEOUT),
        });
        run(c.complete(result(b"t")).unwrap(), false);
        h.join().unwrap();
    });
}

/// Two registrants race a completion: each hook runs exactly once — by the completer, or by
/// the registrant that found the future final — and after the value is visible.
#[test]
fn hooks_run_exactly_once() {
    check(Some(3), || {
        let c = Arc::new(LCore::new());
        let count = Arc::new(AtomicUsize::new(0));
        let registrants: Vec<_> = (0..2)
            .map(|_| {
                let (c, count) = (c.clone(), count.clone());
                thread::spawn(move || {
                    if let Err(h) = c.register(MHook::Count(count)) {
                        assert_eq!(bytes(&c).unwrap(), b"v", "a hook run at once sees the value");
                        run(vec![h], false);
                    }
                })
            })
            .collect();
        run(c.complete(result(b"v")).unwrap(), false);
        for r in registrants {
            r.join().unwrap();
        }
        assert_eq!(count.load(SeqCst), 2);
    });
}

/// A registration racing a completion and an unregistration of the same hook: the hook runs
/// at most once, and exactly once unless it was taken back.
#[test]
fn unregister_races_completion() {
    check(None, || {
        let c = Arc::new(LCore::new());
        let count = Arc::new(AtomicUsize::new(0));
        let registered = c.register(MHook::Count(count.clone())).is_ok();
        assert!(registered);
        let c2 = c.clone();
        let h = thread::spawn(move || run(c2.complete(result(b"u")).unwrap(), false));
        let taken = c.unregister(|h| matches!(h, MHook::Count(_))).is_some();
        h.join().unwrap();
        assert_eq!(count.load(SeqCst), if taken { 0 } else { 1 });
    });
}

/// Two completers race: exactly one wins (the other gets WEFT_INVALID_STATE and its value is
/// dropped), and a waiter sees the winner's value.
#[test]
fn completers_race() {
    check(Some(3), || {
        let c = Arc::new(LCore::new());
        let completers: Vec<_> = [b"a", b"b"]
            .into_iter()
            .map(|v| {
                let c = c.clone();
                thread::spawn(move || match c.complete(result(v)) {
                    Ok(hooks) => {
                        run(hooks, false);
                        true
                    }
                    Err(e) => {
                        assert_eq!(e.code, WEFT_INVALID_STATE);
                        false
                    }
                })
            })
            .collect();
        c.wait(Deadline::Never, Interrupt::Cancellable).unwrap();
        let won: Vec<bool> = completers.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(won.iter().filter(|&&w| w).count(), 1);
        assert_eq!(bytes(&c).unwrap(), if won[0] { b"a" } else { b"b" });
    });
}

/// `cancel` against a runner (`set_running`, then a completion) and a waiter: either the
/// cancel wins (the runner is told not to run, the future ends cancelled) or the runner does
/// (cancel answers false, leaves a request, the future ends done); the waiter wakes either way.
#[test]
fn cancel_races_runner() {
    check(Some(3), || {
        let c = Arc::new(LCore::new());
        let c2 = c.clone();
        let runner = thread::spawn(move || {
            if c2.set_running().unwrap() {
                run(c2.complete(result(b"r")).unwrap(), false);
                true
            } else {
                assert_eq!(c2.complete(result(b"r")).err().unwrap().code, WEFT_INVALID_STATE);
                false
            }
        });
        let c3 = c.clone();
        let waiter = thread::spawn(move || c3.wait(Deadline::Never, Interrupt::Cancellable).unwrap());
        let (cancelled, hooks) = c.cancel();
        run(hooks, false);
        let ran = runner.join().unwrap();
        waiter.join().unwrap();
        assert_ne!(cancelled, ran);
        let phase = super::core::phase(c.load());
        if cancelled {
            assert_eq!(phase, CANCELLED);
            assert!(bytes(&c).is_none());
        } else {
            assert_eq!(phase, DONE);
            assert_eq!(bytes(&c).unwrap(), b"r");
        }
    });
}

/// A waiter of two futures with `mode` while two threads complete one each (the first with a
/// failure when `fail_first`): the wait returns, and returns only once the mode holds.
fn wait_two(mode: Mode, fail_first: bool) {
    check(Some(3), move || {
        let cores = Arc::new([LCore::new(), LCore::new()]);
        let completers: Vec<_> = (0..2)
            .map(|i| {
                let cores = cores.clone();
                thread::spawn(move || {
                    let failed = i == 0 && fail_first;
                    let v = if failed { Value::Failure(7, CString::new("no").unwrap()) } else { result(b"d") };
                    run(cores[i].complete(v).unwrap(), failed);
                })
            })
            .collect();
        wait_cores(2, |i| &cores[i], mode, Deadline::Never, Interrupt::Cancellable).unwrap();
        let finals: Vec<u32> = cores.iter().map(|c| super::core::phase(c.load())).collect();
        let done = finals.iter().filter(|&&p| p >= DONE).count();
        match mode {
            Mode::AllCompleted => assert_eq!(done, 2),
            Mode::FirstCompleted => assert!(done >= 1),
            Mode::FirstException => assert!(done == 2 || finals[0] == FAILED),
        }
        for c in completers {
            c.join().unwrap();
        }
        // Every hook the waiter registered is gone: it was run or unregistered.
        for c in cores.iter() {
            assert!(c.unregister(|_| true).is_none());
        }
    });
}

#[test]
fn wait_all_completed() {
    wait_two(Mode::AllCompleted, false);
}

#[test]
fn wait_first_completed() {
    wait_two(Mode::FirstCompleted, false);
}

#[test]
fn wait_first_exception() {
    wait_two(Mode::FirstException, true);
}

/// A timed wait on two futures racing their completions: success only when all are done, a
/// timeout otherwise; never a hang, never a leftover hook.
#[test]
fn wait_all_timed() {
    check(Some(3), || {
        let cores = Arc::new([LCore::new(), LCore::new()]);
        let cores2 = cores.clone();
        let completer = thread::spawn(move || {
            for c in cores2.iter() {
                run(c.complete(result(b"d")).unwrap(), false);
            }
        });
        match wait_cores(2, |i| &cores[i], Mode::AllCompleted, Deadline::At(0), Interrupt::Cancellable) {
            Ok(()) => assert!(cores.iter().all(|c| super::core::is_final(c.load()))),
            Err(e) => assert_eq!(e.code, WEFT_TIMEOUT),
        }
        completer.join().unwrap();
        for c in cores.iter() {
            assert!(c.unregister(|_| true).is_none());
        }
    });
}
