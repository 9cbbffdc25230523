//! Unit tests of futures, wait, as_completed and groups (the C API has its own in
//! `ctests/test_future.c`; the state machine its loom models in `models.rs`).

use super::*;
use crate::status::{WEFT_CLOSED, WEFT_INVALID_STATE, WEFT_OS_ERROR, WEFT_TIMEOUT};
use crate::time::now_ns;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

const FOREVER: Deadline = Deadline::Never;

fn after_ms(ms: u64) -> Deadline {
    Deadline::from_timeout_ns(ms * 1_000_000)
}

/// Waits (up to 10 s) until `cond` holds.
fn eventually(mut cond: impl FnMut() -> bool) {
    let start = now_ns();
    while !cond() {
        assert!(now_ns() - start < 10_000_000_000, "condition not reached in 10 s");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    fn check_ac<T: Send + Sync>() {}
    check::<Future>();
    check::<Group>();
    check_ac::<AsCompleted>();
}

#[test]
fn result_lifecycle() {
    let f = Future::new();
    assert_eq!(f.state(), State::Pending);
    assert!(!f.is_done());
    assert!(f.failure().is_none());
    f.set_result(b"hello").unwrap();
    assert_eq!(f.state(), State::Done);
    assert!(f.is_done() && f.state().is_final());
    assert_eq!(f.result(Deadline::Now).unwrap(), b"hello");
    assert_eq!(f.result(FOREVER).unwrap(), b"hello");
    assert_eq!(f.exception(Deadline::Now).unwrap(), None);
    assert!(f.failure().is_none());
    // Final for good: no second completion of any kind, no cancel, no run.
    assert_eq!(f.set_result(b"x").unwrap_err().code, WEFT_INVALID_STATE);
    assert_eq!(f.set_failure(9, "x").unwrap_err().code, WEFT_INVALID_STATE);
    assert!(!f.cancel());
    assert_eq!(f.set_running().unwrap_err().code, WEFT_INVALID_STATE);
    assert_eq!(f.run(b"", |_| WEFT_OK).unwrap_err().code, WEFT_INVALID_STATE);
    assert_eq!(f.result(Deadline::Now).unwrap(), b"hello", "the first result stands");
    // Clones are the same future.
    let g = f.clone();
    assert!(g.ptr_eq(&f) && !g.ptr_eq(&Future::new()));
}

#[test]
fn failure_lifecycle() {
    let f = Future::new();
    assert_eq!(f.set_failure(WEFT_OK, "no").unwrap_err().code, WEFT_INVALID_ARGUMENT);
    assert_eq!(f.state(), State::Pending, "a rejected failure changes nothing");
    f.set_failure(WEFT_OS_ERROR, "disk on fire").unwrap();
    assert_eq!(f.state(), State::Failed);
    let e = f.result(FOREVER).unwrap_err();
    assert_eq!((e.code, &*e.message), (WEFT_OS_ERROR, "disk on fire"));
    assert_eq!(f.exception(Deadline::Now).unwrap(), Some((WEFT_OS_ERROR, "disk on fire")));
    let (s, m) = f.failure().unwrap();
    assert_eq!((s, m.to_str().unwrap()), (WEFT_OS_ERROR, "disk on fire"));
    assert_eq!(f.set_result(b"").unwrap_err().code, WEFT_INVALID_STATE);
    // A NUL in a message cannot reach C as a terminator.
    let g = Future::new();
    g.set_failure(5, "a\0b").unwrap();
    assert_eq!(g.failure().unwrap().1.to_str().unwrap(), "a\\0b");
}

#[test]
fn cancel_pending() {
    let f = Future::new();
    assert!(f.cancel());
    assert_eq!(f.state(), State::Cancelled);
    assert!(f.cancel(), "cancelling a cancelled future answers true, as in Python");
    assert!(!f.cancel_requested(), "a pending future is cancelled, not asked to");
    assert!(!f.set_running().unwrap());
    assert!(!f.run(b"", |_| panic!("must not run")).unwrap());
    assert_eq!(f.result(FOREVER).unwrap_err().code, WEFT_CANCELLED);
    assert_eq!(f.exception(FOREVER).unwrap_err().code, WEFT_CANCELLED);
    assert_eq!(f.set_result(b"x").unwrap_err().code, WEFT_INVALID_STATE);
    assert_eq!(f.set_failure(3, "x").unwrap_err().code, WEFT_INVALID_STATE);
    assert!(f.failure().is_none());
}

#[test]
fn set_running_rules() {
    let f = Future::new();
    assert!(f.set_running().unwrap());
    assert_eq!(f.state(), State::Running);
    assert_eq!(f.set_running().unwrap_err().code, WEFT_INVALID_STATE);
    assert!(!f.cancel(), "a running future cannot be cancelled");
    assert!(f.cancel_requested());
    assert_eq!(f.cancel_word().load(Ordering::Acquire), 1);
    assert_eq!(f.state(), State::Running);
    // A runner that ignores the request still completes normally.
    f.set_result(b"done anyway").unwrap();
    assert_eq!(f.state(), State::Done);
}

#[test]
fn run_completes_with_the_outcome() {
    let f = Future::new();
    assert!(f
        .run(b"in", |call| {
            assert_eq!(call.arg(), b"in");
            call.set_result(b"out");
            WEFT_OK
        })
        .unwrap());
    assert_eq!(f.result(FOREVER).unwrap(), b"out");

    let f = Future::new();
    f.run(b"", |call| {
        call.set_message("bad input".into());
        WEFT_INVALID_ARGUMENT
    })
    .unwrap();
    assert_eq!(f.exception(FOREVER).unwrap(), Some((WEFT_INVALID_ARGUMENT, "bad input")));

    let f = Future::new();
    f.run(b"", |_| panic!("kaboom")).unwrap();
    let (s, m) = f.exception(FOREVER).unwrap().unwrap();
    assert_eq!(s, WEFT_PANIC);
    assert!(m.contains("kaboom"), "{m}");

    // A task returning WEFT_CANCELLED without a request is a failure with that status.
    let f = Future::new();
    f.run(b"", |_| WEFT_CANCELLED).unwrap();
    assert_eq!(f.state(), State::Failed);
    assert_eq!(f.failure().unwrap().0, WEFT_CANCELLED);
}

/// A running task observes `cancel` through its call context and, by returning
/// WEFT_CANCELLED, makes the future cancelled.
#[test]
fn running_task_observes_cancel() {
    let f = Future::new();
    let started = Arc::new(AtomicU32::new(0));
    let (f2, s2) = (f.clone(), started.clone());
    let runner = thread::spawn(move || {
        f2.run(b"", |call| {
            s2.store(1, Ordering::Release);
            while !call.cancelled() {
                thread::yield_now();
            }
            WEFT_CANCELLED
        })
    });
    eventually(|| started.load(Ordering::Acquire) == 1);
    assert_eq!(f.state(), State::Running);
    assert!(!f.cancel());
    assert!(runner.join().unwrap().unwrap());
    assert_eq!(f.state(), State::Cancelled);
    assert_eq!(f.result(FOREVER).unwrap_err().code, WEFT_CANCELLED);
}

#[test]
fn complete_maps_outcomes() {
    let f = Future::new();
    f.complete(Outcome { status: WEFT_OK, result: b"r".to_vec(), message: String::new() }).unwrap();
    assert_eq!(f.result(Deadline::Now).unwrap(), b"r");
    let f = Future::new();
    f.set_running().unwrap();
    f.cancel();
    f.complete(Outcome { status: WEFT_CANCELLED, result: vec![], message: "stopped".into() }).unwrap();
    assert_eq!(f.state(), State::Cancelled);
    let f = Future::new();
    f.complete(Outcome { status: WEFT_OS_ERROR, result: vec![], message: "m".into() }).unwrap();
    assert_eq!(f.exception(Deadline::Now).unwrap(), Some((WEFT_OS_ERROR, "m")));
}

#[test]
fn waits_time_out_not_early() {
    let f = Future::new();
    assert_eq!(f.result(Deadline::Now).unwrap_err().code, WEFT_TIMEOUT, "timeout 0 is Python's TimeoutError");
    assert_eq!(f.exception(Deadline::Now).unwrap_err().code, WEFT_TIMEOUT);
    assert_eq!(f.wait(Deadline::Now, Interrupt::Cancellable).unwrap_err().code, WEFT_TIMEOUT);
    for ms in [1, 20] {
        let start = now_ns();
        assert_eq!(f.result(after_ms(ms)).unwrap_err().code, WEFT_TIMEOUT);
        assert!(now_ns() - start >= ms * 1_000_000);
    }
    assert_eq!(f.state(), State::Pending);
}

#[test]
fn waiters_wake_on_completion() {
    let f = Future::new();
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let f = f.clone();
            thread::spawn(move || if i % 2 == 0 { f.result(FOREVER).map(|r| r.to_vec()) } else { f.result(after_ms(30_000)).map(|r| r.to_vec()) })
        })
        .collect();
    thread::sleep(Duration::from_millis(10));
    f.set_result(b"wake").unwrap();
    for w in waiters {
        assert_eq!(w.join().unwrap().unwrap(), b"wake");
    }
}

#[test]
fn waiters_wake_on_cancel() {
    let f = Future::new();
    let f2 = f.clone();
    let w = thread::spawn(move || f2.result(FOREVER).map(|r| r.to_vec()));
    thread::sleep(Duration::from_millis(10));
    assert!(f.cancel());
    assert_eq!(w.join().unwrap().unwrap_err().code, WEFT_CANCELLED);
}

/// A completion nobody watches leaves the word without WATCHED or HOOKS: it made no system
/// call and took no lock.
#[test]
fn unwatched_completion_takes_the_fast_path() {
    let f = Future::new();
    f.set_result(b"quick").unwrap();
    assert_eq!(f.inner.core.load() & !7, 0);
    let f = Future::new();
    f.add_done_callback(|_| {});
    f.set_result(b"").unwrap();
    assert_ne!(f.inner.core.load() & !7, 0, "a callback does set a flag");
}

#[test]
fn callbacks_run_once_in_order_after_publication() {
    let f = Future::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        let log = log.clone();
        f.add_done_callback(move |f| {
            assert_eq!(f.result(Deadline::Now).unwrap(), b"v", "the state is published before callbacks run");
            log.lock().unwrap().push((i, thread::current().id()));
        });
    }
    assert!(log.lock().unwrap().is_empty());
    let f2 = f.clone();
    let completer = thread::spawn(move || {
        f2.set_result(b"v").unwrap();
        thread::current().id()
    });
    let completer_id = completer.join().unwrap();
    let got = log.lock().unwrap().clone();
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(got.iter().all(|e| e.1 == completer_id), "run by the completing thread");
    // Added after completion: at once, on the caller's thread.
    let log2 = log.clone();
    f.add_done_callback(move |_| log2.lock().unwrap().push((9, thread::current().id())));
    assert_eq!(log.lock().unwrap().last().unwrap(), &(9, thread::current().id()));
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[test]
fn callbacks_run_on_cancel_and_failure() {
    let count = Arc::new(AtomicUsize::new(0));
    for how in 0..2 {
        let f = Future::new();
        let c = count.clone();
        f.add_done_callback(move |f| {
            assert!(f.is_done());
            c.fetch_add(1, Ordering::SeqCst);
        });
        if how == 0 {
            assert!(f.cancel());
        } else {
            f.set_failure(3, "no").unwrap();
        }
    }
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[test]
fn panicking_callback_poisons_nothing() {
    let f = Future::new();
    let ran = Arc::new(AtomicUsize::new(0));
    f.add_done_callback(|_| panic!("callback panic"));
    let r = ran.clone();
    f.add_done_callback(move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    f.set_result(b"fine").unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the next callback still ran");
    assert_eq!(f.result(Deadline::Now).unwrap(), b"fine");
    f.add_done_callback(|_| panic!("immediate panic"));
    let r = ran.clone();
    f.add_done_callback(move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    let g = Future::new();
    g.add_done_callback(|_| panic!("on cancel"));
    assert!(g.cancel());
    assert_eq!(g.state(), State::Cancelled);
}

/// A callback may use the future and add callbacks to it (those run at once).
#[test]
fn callback_may_reenter() {
    let f = Future::new();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    f.add_done_callback(move |f| {
        let c2 = c.clone();
        f.add_done_callback(move |_| {
            c2.fetch_add(10, Ordering::SeqCst);
        });
        assert!(!f.cancel());
        c.fetch_add(1, Ordering::SeqCst);
    });
    f.set_result(b"").unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 11);
}

fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd on this stack frame; timeout 0.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r == 1 && p.revents & libc::POLLIN != 0
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD takes no pointer.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// (That the descriptor is closed with the last handle is checked by the C suite, whose tests
/// run in processes of their own: here another test's descriptor could take the number.)
#[test]
fn fd_readable_once_done() {
    let f = Future::new();
    let fd = f.fd().unwrap();
    assert_eq!(f.fd().unwrap(), fd, "one descriptor per future");
    assert!(!readable(fd));
    let (f2, keep) = (f.clone(), f.clone());
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        f2.set_result(b"").unwrap();
    });
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd; 10 s timeout.
    assert_eq!(unsafe { libc::poll(&mut p, 1, 10_000) }, 1);
    t.join().unwrap();
    assert!(readable(fd) && readable(fd), "stays readable");
    drop(f);
    assert!(fd_is_open(fd) && readable(fd), "another handle still lives");
    drop(keep);
    let g = Future::new();
    assert!(g.cancel());
    assert!(readable(g.fd().unwrap()), "asked for after completion: readable at once");
}

fn done_flags(futures: &[Future], mode: Mode, deadline: Deadline) -> crate::status::Result<Vec<bool>> {
    wait(futures, mode, deadline, Interrupt::Cancellable)
}

#[test]
fn wait_modes() {
    let fs: Vec<Future> = (0..3).map(|_| Future::new()).collect();
    assert_eq!(done_flags(&[], Mode::FirstCompleted, Deadline::Now).unwrap(), Vec::<bool>::new());
    for mode in [Mode::AllCompleted, Mode::FirstCompleted, Mode::FirstException] {
        assert_eq!(done_flags(&fs, mode, Deadline::Now).unwrap_err().code, WEFT_TIMEOUT);
        let start = now_ns();
        assert_eq!(done_flags(&fs, mode, after_ms(15)).unwrap_err().code, WEFT_TIMEOUT);
        assert!(now_ns() - start >= 15_000_000);
    }
    // FIRST_COMPLETED: a completion from another thread releases it.
    let f1 = fs[1].clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        f1.set_result(b"").unwrap();
    });
    assert_eq!(done_flags(&fs, Mode::FirstCompleted, FOREVER).unwrap(), [false, true, false]);
    t.join().unwrap();
    // FIRST_EXCEPTION: a cancel is not an exception; a failure is.
    assert!(fs[0].cancel());
    assert_eq!(done_flags(&fs, Mode::FirstException, Deadline::Now).unwrap_err().code, WEFT_TIMEOUT);
    let f2 = fs[2].clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        f2.set_failure(9, "x").unwrap();
    });
    assert_eq!(done_flags(&fs, Mode::FirstException, FOREVER).unwrap(), [true, true, true]);
    t.join().unwrap();
    assert_eq!(done_flags(&fs, Mode::AllCompleted, Deadline::Now).unwrap(), [true, true, true]);
    // FIRST_EXCEPTION with a pending future left: returns on the failure alone.
    let gs = [Future::new(), Future::new()];
    gs[1].set_failure(4, "f").unwrap();
    assert_eq!(done_flags(&gs, Mode::FirstException, Deadline::Now).unwrap(), [false, true]);
    assert_eq!(done_flags(&gs, Mode::FirstCompleted, Deadline::Now).unwrap(), [false, true]);
    // No hooks are left behind on the pending future by all those waits.
    assert!(gs[0].inner.core.unregister(|_| true).is_none());
    assert!(fs.iter().all(|f| f.inner.core.unregister(|_| true).is_none()));
}

#[test]
fn wait_all_completed_from_many_threads() {
    let fs: Vec<Future> = (0..16).map(|_| Future::new()).collect();
    let threads: Vec<_> = fs
        .iter()
        .cloned()
        .map(|f| thread::spawn(move || f.set_result(b"").unwrap()))
        .collect();
    assert_eq!(done_flags(&fs, Mode::AllCompleted, FOREVER).unwrap(), vec![true; 16]);
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn as_completed_order_timeout_and_end() {
    let fs: Vec<Future> = (0..4).map(|_| Future::new()).collect();
    fs[3].set_result(b"3").unwrap();
    fs[1].set_result(b"1").unwrap();
    // Duplicates are yielded once.
    let mut given = fs.clone();
    given.push(fs[1].clone());
    let ac = AsCompleted::new(&given);
    assert_eq!(ac.len(), 4);
    // Already done first, in the order given.
    assert!(ac.next(Deadline::Now, Interrupt::Cancellable).unwrap().ptr_eq(&fs[1]));
    assert!(ac.next(Deadline::Now, Interrupt::Cancellable).unwrap().ptr_eq(&fs[3]));
    assert_eq!(ac.next(Deadline::Now, Interrupt::Cancellable).unwrap_err().code, WEFT_TIMEOUT);
    let start = now_ns();
    assert_eq!(ac.next(after_ms(15), Interrupt::Cancellable).unwrap_err().code, WEFT_TIMEOUT);
    assert!(now_ns() - start >= 15_000_000);
    // Then in completion order.
    fs[2].set_failure(3, "x").unwrap();
    let f0 = fs[0].clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        assert!(f0.cancel());
    });
    assert!(ac.next(FOREVER, Interrupt::Cancellable).unwrap().ptr_eq(&fs[2]));
    assert!(ac.next(FOREVER, Interrupt::Cancellable).unwrap().ptr_eq(&fs[0]));
    t.join().unwrap();
    assert_eq!(ac.next(FOREVER, Interrupt::Cancellable).unwrap_err().code, WEFT_CLOSED);
    assert_eq!(ac.next(Deadline::Now, Interrupt::Cancellable).unwrap_err().code, WEFT_CLOSED);
    assert_eq!(AsCompleted::new(&[]).next(FOREVER, Interrupt::Cancellable).unwrap_err().code, WEFT_CLOSED);
}

#[test]
fn as_completed_drop_unregisters() {
    let f = Future::new();
    let ac = AsCompleted::new(std::slice::from_ref(&f));
    assert!(ac.next(Deadline::Now, Interrupt::Cancellable).is_err());
    drop(ac);
    assert!(f.inner.core.unregister(|_| true).is_none(), "no hook left on the pending future");
}

#[test]
fn as_completed_many_consumers() {
    const N: usize = 200;
    let fs: Vec<Future> = (0..N).map(|_| Future::new()).collect();
    let ac = Arc::new(AsCompleted::new(&fs));
    let taken = Arc::new(Mutex::new(Vec::new()));
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let (ac, taken) = (ac.clone(), taken.clone());
            thread::spawn(move || loop {
                match ac.next(FOREVER, Interrupt::Cancellable) {
                    Ok(f) => taken.lock().unwrap().push(f.as_raw() as usize),
                    Err(e) => {
                        assert_eq!(e.code, WEFT_CLOSED);
                        break;
                    }
                }
            })
        })
        .collect();
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let fs: Vec<Future> = fs.iter().skip(p).step_by(2).cloned().collect();
            thread::spawn(move || {
                for f in fs {
                    f.set_result(b"").unwrap();
                }
            })
        })
        .collect();
    for t in producers.into_iter().chain(consumers) {
        t.join().unwrap();
    }
    let mut got = taken.lock().unwrap().clone();
    got.sort_unstable();
    let mut want: Vec<usize> = fs.iter().map(|f| f.as_raw() as usize).collect();
    want.sort_unstable();
    assert_eq!(got, want, "each future yielded exactly once");
}

#[test]
fn group_first_failure_cancels_the_rest() {
    let g = Group::new();
    let pending = Future::new();
    let running = Future::new();
    running.set_running().unwrap();
    let ok = Future::new();
    for f in [&pending, &running, &ok] {
        g.add(f);
    }
    g.add(&pending); // again: nothing
    assert_eq!(g.len(), 3);
    ok.set_result(b"").unwrap();
    assert_eq!(g.wait(Deadline::Now, Interrupt::Cancellable).unwrap_err().code, WEFT_TIMEOUT);
    let failing = Future::new();
    g.add(&failing);
    failing.set_failure(WEFT_OS_ERROR, "first").unwrap();
    assert_eq!(pending.state(), State::Cancelled);
    assert_eq!(running.state(), State::Running);
    assert!(running.cancel_requested(), "a running member gets a cancel request");
    // A second failure is not the first.
    let late = Future::new();
    late.set_running().unwrap();
    g.add(&late);
    assert!(late.cancel_requested(), "added after the failure: cancelled at once");
    late.set_failure(WEFT_INVALID_STATE, "second").unwrap();
    let added_pending = Future::new();
    g.add(&added_pending);
    assert_eq!(added_pending.state(), State::Cancelled);
    assert_eq!(g.wait(Deadline::Now, Interrupt::Cancellable).unwrap_err().code, WEFT_TIMEOUT, "running still runs");
    let r2 = running.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        r2.complete(Outcome { status: WEFT_CANCELLED, result: vec![], message: String::new() }).unwrap();
    });
    let e = g.wait(FOREVER, Interrupt::Cancellable).unwrap_err();
    assert_eq!((e.code, &*e.message), (WEFT_OS_ERROR, "first"));
    t.join().unwrap();
    assert_eq!(running.state(), State::Cancelled);
    assert!(g.is_empty());
}

#[test]
fn group_success_cancel_and_prefailed_member() {
    let g = Group::new();
    g.wait(Deadline::Now, Interrupt::Cancellable).unwrap();
    let fs: Vec<Future> = (0..5).map(|_| Future::new()).collect();
    for f in &fs {
        g.add(f);
    }
    let start = now_ns();
    assert_eq!(g.wait(after_ms(15), Interrupt::Cancellable).unwrap_err().code, WEFT_TIMEOUT);
    assert!(now_ns() - start >= 15_000_000);
    let fs2 = fs.clone();
    let t = thread::spawn(move || {
        for f in fs2 {
            f.set_result(b"").unwrap();
        }
    });
    g.wait(FOREVER, Interrupt::Cancellable).unwrap();
    t.join().unwrap();

    let g = Group::new();
    let a = Future::new();
    g.add(&a);
    g.cancel();
    assert_eq!(a.state(), State::Cancelled);
    let b = Future::new();
    g.add(&b);
    assert_eq!(b.state(), State::Cancelled);
    assert_eq!(g.wait(Deadline::Now, Interrupt::Cancellable).unwrap_err().code, WEFT_CANCELLED);

    let g = Group::new();
    let other = Future::new();
    g.add(&other);
    let failed = Future::new();
    failed.set_failure(7, "before").unwrap();
    g.add(&failed);
    assert_eq!(other.state(), State::Cancelled);
    let e = g.wait(Deadline::Now, Interrupt::Cancellable).unwrap_err();
    assert_eq!((e.code, &*e.message), (7, "before"));
}

#[test]
fn dropped_group_leaves_members_alone() {
    let f = Future::new();
    {
        let g = Group::new();
        g.add(&f);
    }
    f.set_failure(3, "after the group").unwrap();
    assert_eq!(f.state(), State::Failed);
}

/// Many completers, waiters, callback adders and cancellers on a set of futures: every
/// callback runs exactly once, every waiter returns with the final state, results match.
#[test]
fn stress_concurrent_completion_and_waiting() {
    const FUTURES: usize = 2000;
    const THREADS: usize = 4;
    let fs: Arc<Vec<Future>> = Arc::new((0..FUTURES).map(|_| Future::new()).collect());
    let calls = Arc::new(AtomicUsize::new(0));
    let added = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    // Callback adders.
    for _ in 0..2 {
        let (fs, calls, added) = (fs.clone(), calls.clone(), added.clone());
        threads.push(thread::spawn(move || {
            for f in fs.iter() {
                let c = calls.clone();
                f.add_done_callback(move |f| {
                    assert!(f.is_done());
                    c.fetch_add(1, Ordering::Relaxed);
                });
                added.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Waiters.
    for t in 0..2 {
        let fs = fs.clone();
        threads.push(thread::spawn(move || {
            for (i, f) in fs.iter().enumerate().skip(t).step_by(2) {
                match f.result(FOREVER) {
                    Ok(r) => assert_eq!(r, i.to_le_bytes()),
                    Err(e) => assert!(e.code == WEFT_CANCELLED || e.code == 99, "{e}"),
                }
            }
        }));
    }
    // Completers racing cancellers: completers take even futures, both race for odd ones.
    for t in 0..THREADS {
        let fs = fs.clone();
        threads.push(thread::spawn(move || {
            for (i, f) in fs.iter().enumerate() {
                if i % THREADS != t && i % 2 == 0 {
                    continue;
                }
                match (i + t) % 3 {
                    0 => drop(f.cancel()),
                    1 => drop(f.set_result(&i.to_le_bytes())),
                    _ => drop(f.set_failure(99, "x")),
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(fs.iter().all(Future::is_done));
    assert_eq!(calls.load(Ordering::SeqCst), added.load(Ordering::SeqCst));
    assert_eq!(calls.load(Ordering::SeqCst), 2 * FUTURES);
}
