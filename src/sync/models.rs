//! Loom models of the synchronisation primitives.
//!
//! Every primitive in `sync/` is generic over [`Word`], so the very same state machines run
//! here on [`LoomWord`], a futex word built from loom's atomics, mutex and condition variable.
//! The models are ordinary `#[test]`s calling loom directly: plain `cargo test` runs them, no
//! `--cfg loom` needed.
//!
//! # How the futex is emulated
//!
//! `LoomWord` pairs a loom `AtomicU32` with a loom `Mutex<()>` + `Condvar` standing in for the
//! kernel's hash bucket. `wait(expected)` takes the mutex, returns `Woken` at once if the word
//! no longer holds `expected`, and otherwise sleeps on the condvar; `wake(n)` takes the mutex
//! and notifies. Because the value is checked under the mutex a wake-up can never fall between
//! a waiter's check and its sleep, exactly as with `FUTEX_WAIT`/`FUTEX_WAKE`. Like the kernel
//! (barrier "(A)" in `kernel/futex/waitwake.c`) the wait issues a full fence before reading the
//! word. `wake` never reaches an OS futex, and `wait` never looks at the thread's cancel word:
//! [`Interrupt`] is ignored, so no code path of a model touches `crate::futex`'s OS functions.
//!
//! Deadlines: `Deadline::Never` sleeps; `Deadline::Now` returns `TimedOut` at once (as
//! `futex::wait_on` does); `Deadline::At(_)` models "the deadline passes the next time this
//! thread would sleep": the value check still comes first (a changed word gives `Woken`, as
//! the kernel's `EAGAIN` does), then `TimedOut` instead of sleeping. A timed-out kernel waiter
//! never swallows a `FUTEX_WAKE` (it reports success when it was dequeued by a wake), and loom
//! delays the returning thread arbitrarily, so this covers every interleaving of a timeout
//! with the other threads' operations; only the models that pass `At` exercise it.
//!
//! # SeqCst
//!
//! Loom treats `SeqCst` loads, stores and read-modify-writes as `AcqRel` (loom README,
//! "Unsupported features", tokio-rs/loom#180), which produces false lost-wake-up reports for
//! the Dekker-style "bump a waiter count, then check the word" / "change the word, then read
//! the waiter count" handshakes in `Semaphore` and `Event`. `LoomWord` therefore brackets
//! every access made with `SeqCst` by `fence(SeqCst)` on both sides, which loom does model
//! exactly; accesses with weaker orderings are passed through unchanged.
//!
//! # What is not modelled
//!
//! `RLock` (its owner is `gettid()`, the same for every loom thread), cancellation (thread
//! locals and OS futexes), spurious wake-ups (every caller loops anyway), and timeouts that
//! depend on the clock (see above).

use crate::futex::{Interrupt, Wait, Word};
use crate::status::{WEFT_BROKEN, WEFT_INVALID_ARGUMENT, WEFT_INVALID_STATE, WEFT_TIMEOUT, WEFT_WOULD_BLOCK};
use crate::sync::{Barrier, Condition, Event, Lock, Semaphore};
use crate::time::Deadline;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{fence, AtomicU32};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use std::sync::atomic::Ordering::{self, Relaxed, SeqCst};

/// A futex word for loom: see the module documentation.
pub(crate) struct LoomWord {
    value: AtomicU32,
    bucket: Mutex<()>,
    sleepers: Condvar,
}

/// Runs `op`, bracketed by `fence(SeqCst)` when `order` is `SeqCst` (loom models `SeqCst`
/// accesses only as `AcqRel`, but `SeqCst` fences exactly).
fn seq_cst<R>(order: Ordering, op: impl FnOnce() -> R) -> R {
    if order == SeqCst {
        fence(SeqCst);
        let r = op();
        fence(SeqCst);
        r
    } else {
        op()
    }
}

impl Word for LoomWord {

    fn new(v: u32) -> Self {
        LoomWord { value: AtomicU32::new(v), bucket: Mutex::new(()), sleepers: Condvar::new() }
    }
    fn load(&self, order: Ordering) -> u32 {
        seq_cst(order, || self.value.load(order))
    }
    fn store(&self, v: u32, order: Ordering) {
        seq_cst(order, || self.value.store(v, order))
    }
    fn swap(&self, v: u32, order: Ordering) -> u32 {
        seq_cst(order, || self.value.swap(v, order))
    }
    fn compare_exchange(&self, current: u32, new: u32, success: Ordering, failure: Ordering) -> Result<u32, u32> {
        let order = if failure == SeqCst { SeqCst } else { success };
        seq_cst(order, || self.value.compare_exchange(current, new, success, failure))
    }
    fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
        seq_cst(order, || self.value.fetch_add(v, order))
    }
    fn fetch_sub(&self, v: u32, order: Ordering) -> u32 {
        seq_cst(order, || self.value.fetch_sub(v, order))
    }
    fn wait(&self, expected: u32, deadline: Deadline, _interrupt: Interrupt) -> Wait {
        if deadline == Deadline::Now {
            return Wait::TimedOut;
        }
        // The kernel's smp_mb() between queueing the waiter and reading the word.
        fence(SeqCst);
        let bucket = self.bucket.lock().unwrap();
        if self.value.load(Relaxed) != expected {
            return Wait::Woken;
        }
        if let Deadline::At(_) = deadline {
            return Wait::TimedOut;
        }
        SLEEPING.fetch_add(1, Relaxed);
        let bucket = self.sleepers.wait(bucket).unwrap();
        SLEEPING.fetch_sub(1, Relaxed);
        drop(bucket);
        Wait::Woken
    }
    /// Emulated as an immediate wake: the requeued waiter then finds the lock held and sleeps
    /// on it, which is what a real requeue saves a round trip on.
    fn requeue_one(&self, _expected: u32, _to: &Self) -> bool {
        self.wake(1);
        true
    }
    fn wake(&self, n: u32) {
        let _bucket = self.bucket.lock().unwrap();
        if n as usize >= loom::MAX_THREADS {
            self.sleepers.notify_all();
        } else {
            for _ in 0..n {
                self.sleepers.notify_one();
            }
        }
    }
}

loom::lazy_static! {
    /// Number of threads asleep in [`LoomWord::wait`] (on any word), updated under the word's
    /// bucket mutex: lets a model wait until a thread is really asleep.
    static ref SLEEPING: AtomicU32 = AtomicU32::new(0);
}

/// Runs `f` under loom with a preemption bound (`None`: exhaustive).
fn check(preemption_bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = preemption_bound;
    builder.check(f);
}

/// Yields to the other loom threads until `cond` holds.
fn spin_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        thread::yield_now();
    }
}

type LLock = Lock<LoomWord>;
type LCondition = Condition<LLock, LoomWord>;

/// Data next to a primitive; the model's own logic says who may touch `data` when. Loom's
/// `UnsafeCell` reports any two accesses not ordered by happens-before.
struct With<P, T> {
    prim: P,
    data: UnsafeCell<T>,
}

// SAFETY: the models only reach `data` under the discipline the primitive is meant to
// enforce; loom checks that discipline and fails the model on a racy access.
unsafe impl<P: Sync, T: Send> Sync for With<P, T> {}

impl<P, T> With<P, T> {
    fn new(prim: P, data: T) -> Arc<Self> {
        Arc::new(With { prim, data: UnsafeCell::new(data) })
    }
    fn read(&self) -> T
    where
        T: Copy,
    {
        // SAFETY: see the `Sync` impl; loom checks the access.
        self.data.with(|p| unsafe { *p })
    }
    fn write(&self, v: T) {
        // SAFETY: as in `read`.
        self.data.with_mut(|p| unsafe { *p = v })
    }
}

// ---------------------------------------------------------------------------------------------
// Lock

/// One critical section: acquire, read-modify-write the counter, release.
fn locked_increment(s: &With<LLock, u32>) {
    s.prim.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
    assert!(s.prim.locked());
    let v = s.read();
    s.write(v + 1);
    s.prim.release().unwrap();
}

/// Three threads each take the lock once: no two critical sections overlap or race (loom's
/// UnsafeCell), the count is exact, and nobody sleeps forever (with two sleepers this is the
/// case Drepper's 2-state mutex gets wrong).
#[test]
fn lock_mutual_exclusion_three_threads() {
    check(Some(3), || {
        let s = With::new(LLock::new(), 0u32);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || locked_increment(&s))
            })
            .collect();
        locked_increment(&s);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.read(), 3);
        assert!(!s.prim.locked());
    });
}

/// Two threads, exhaustive (no preemption bound).
#[test]
fn lock_mutual_exclusion_two_threads_exhaustive() {
    check(None, || {
        let s = With::new(LLock::new(), 0u32);
        let s2 = s.clone();
        let h = thread::spawn(move || locked_increment(&s2));
        locked_increment(&s);
        h.join().unwrap();
        assert_eq!(s.read(), 2);
        assert!(!s.prim.locked());
    });
}

/// try_acquire and acquire(Now) never block and succeed exactly when the lock is free; the
/// counter proves they exclude a blocking acquirer; releasing an unlocked lock is refused.
#[test]
fn lock_try_acquire() {
    check(None, || {
        let s = With::new(LLock::new(), 0u32);
        let s2 = s.clone();
        let h = thread::spawn(move || {
            let mut got = 0;
            if s2.prim.try_acquire() {
                s2.write(s2.read() + 1);
                s2.prim.release().unwrap();
                got += 1;
            }
            match s2.prim.acquire(Deadline::Now, Interrupt::Cancellable) {
                Ok(()) => {
                    s2.write(s2.read() + 1);
                    s2.prim.release().unwrap();
                    got += 1;
                }
                Err(e) => assert_eq!(e.code, WEFT_WOULD_BLOCK),
            }
            got
        });
        locked_increment(&s);
        let got = h.join().unwrap();
        assert_eq!(s.read(), 1 + got);
        assert!(!s.prim.locked());
        assert_eq!(s.prim.release().unwrap_err().code, WEFT_INVALID_STATE);
    });
}

/// The lock is held while another thread blocks on it; the release (by a third thread: the
/// lock has no owner) must wake the sleeper. A lost wake-up shows up as a loom deadlock.
#[test]
fn lock_release_wakes_sleeper() {
    check(None, || {
        let lock = Arc::new(LLock::new());
        lock.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
        let l2 = lock.clone();
        let sleeper = thread::spawn(move || {
            l2.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
            l2.release().unwrap();
        });
        let l3 = lock.clone();
        let releaser = thread::spawn(move || l3.release().unwrap());
        sleeper.join().unwrap();
        releaser.join().unwrap();
        assert!(!lock.locked());
    });
}

/// A timed acquire against a holder: it either gets the lock (exclusively) or times out while
/// the lock is held; either way the lock state stays consistent and a later acquire works.
#[test]
fn lock_timed_acquire() {
    check(None, || {
        let s = With::new(LLock::new(), 0u32);
        let s2 = s.clone();
        let h = thread::spawn(move || match s2.prim.acquire(Deadline::At(0), Interrupt::Cancellable) {
            Ok(()) => {
                s2.write(s2.read() + 1);
                s2.prim.release().unwrap();
                1
            }
            Err(e) => {
                assert_eq!(e.code, WEFT_TIMEOUT);
                0
            }
        });
        locked_increment(&s);
        let got = h.join().unwrap();
        assert_eq!(s.read(), 1 + got);
        locked_increment(&s);
        assert!(!s.prim.locked());
    });
}

// ---------------------------------------------------------------------------------------------
// Semaphore

type LSemaphore = Semaphore<LoomWord>;

/// A 2-permit semaphore shared by three threads: never more than two holders at once (the
/// value never wraps below zero), every acquire is eventually satisfied, and the value ends
/// where it started.
#[test]
fn semaphore_permits_bound_holders() {
    check(Some(2), || {
        let s = Arc::new((LSemaphore::new(2, false), AtomicU32::new(0)));
        let run = |s: &(LSemaphore, AtomicU32)| {
            s.0.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
            assert!(s.0.value() <= 2, "the value went below zero");
            let inside = s.1.fetch_add(1, Relaxed) + 1;
            assert!(inside <= 2, "{inside} holders of a 2-permit semaphore");
            s.1.fetch_sub(1, Relaxed);
            s.0.release(1).unwrap();
        };
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || run(&s))
            })
            .collect();
        run(&s);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.0.value(), 2);
    });
}

/// A 1-permit semaphore is a lock: exhaustive check of exclusion and hand-off.
#[test]
fn semaphore_binary_exclusion() {
    check(None, || {
        let s = With::new(LSemaphore::new(1, false), 0u32);
        let run = |s: &With<LSemaphore, u32>| {
            s.prim.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
            s.write(s.read() + 1);
            s.prim.release(1).unwrap();
        };
        let s2 = s.clone();
        let h = thread::spawn(move || run(&s2));
        run(&s);
        h.join().unwrap();
        assert_eq!(s.read(), 2);
        assert_eq!(s.prim.value(), 1);
    });
}

/// Two threads wait on an empty semaphore; one `release(2)` must wake both.
#[test]
fn semaphore_release_n_wakes_waiters() {
    check(Some(3), || {
        let s = Arc::new(LSemaphore::new(0, false));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.acquire(Deadline::Never, Interrupt::Cancellable).unwrap())
            })
            .collect();
        s.release(2).unwrap();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.value(), 0);
    });
}

/// Two acquirers and two `release(1)`s from two different threads (one of the releasers then
/// acquires itself): each acquire is matched by a release, nobody is left asleep, and the
/// value ends at 0.
#[test]
fn semaphore_every_acquire_satisfied() {
    check(Some(3), || {
        let s = Arc::new(LSemaphore::new(0, false));
        let s1 = s.clone();
        let waiter = thread::spawn(move || s1.acquire(Deadline::Never, Interrupt::Cancellable).unwrap());
        let s2 = s.clone();
        let releaser = thread::spawn(move || s2.release(1).unwrap());
        s.release(1).unwrap();
        s.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
        waiter.join().unwrap();
        releaser.join().unwrap();
        assert_eq!(s.value(), 0);
        assert_eq!(s.acquire(Deadline::Now, Interrupt::Cancellable).unwrap_err().code, WEFT_WOULD_BLOCK);
    });
}

/// Bounded semaphore of 1: a holder's release races an extra release. Exactly one of the two
/// is refused (the value would exceed the bound), nothing is added by the refused one, and the
/// value never exceeds 1.
#[test]
fn semaphore_bounded_over_release() {
    check(None, || {
        let s = Arc::new(LSemaphore::new(1, true));
        assert_eq!(s.release(0).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        let s2 = s.clone();
        let extra = thread::spawn(move || {
            let r = s2.release(1);
            assert!(s2.value() <= 1);
            r
        });
        s.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
        let mine = s.release(1);
        assert!(s.value() <= 1);
        let extra = extra.join().unwrap();
        let refused: Vec<_> = [mine, extra].into_iter().filter_map(|r| r.err()).collect();
        assert_eq!(refused.len(), 1, "exactly one release over the bound is refused");
        assert_eq!(refused[0].code, WEFT_INVALID_STATE);
        assert_eq!(s.value(), 1);
        // A release of 2 from 0 would overshoot: refused whole, nothing added.
        s.acquire(Deadline::Now, Interrupt::Cancellable).unwrap();
        assert_eq!(s.release(2).unwrap_err().code, WEFT_INVALID_STATE);
        assert_eq!(s.value(), 0);
    });
}

/// A timed acquire racing a release: if it reports a timeout the permit is still there.
#[test]
fn semaphore_timed_acquire() {
    check(None, || {
        let s = Arc::new(LSemaphore::new(0, false));
        let s2 = s.clone();
        let h = thread::spawn(move || s2.acquire(Deadline::At(0), Interrupt::Cancellable).is_ok());
        s.release(1).unwrap();
        let got = h.join().unwrap();
        assert_eq!(s.value(), if got { 0 } else { 1 });
    });
}

// ---------------------------------------------------------------------------------------------
// Event

type LEvent = Event<LoomWord>;

/// Two waiters race one `set`: both return (no wake-up lost between a waiter's check of the
/// flag and its sleep, which needs the waiter count / word handshake to be sequentially
/// consistent) and they see the setter's writes.
#[test]
fn event_set_wakes_waiters() {
    check(Some(3), || {
        let e = With::new(LEvent::new(), 0u32);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let e = e.clone();
                thread::spawn(move || {
                    e.prim.wait(Deadline::Never, Interrupt::Cancellable).unwrap();
                    assert_eq!(e.read(), 7, "set's writes are visible after wait");
                })
            })
            .collect();
        e.write(7);
        e.prim.set();
        assert!(e.prim.is_set());
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// One waiter against one `set`, exhaustive.
#[test]
fn event_set_wakes_waiter_exhaustive() {
    check(None, || {
        let e = Arc::new(LEvent::new());
        let e2 = e.clone();
        let h = thread::spawn(move || e2.wait(Deadline::Never, Interrupt::Cancellable).unwrap());
        e.set();
        h.join().unwrap();
        assert!(e.is_set());
    });
}

/// `set` immediately followed by `clear` while a thread waits: the waiter was notified while
/// the flag was true, so it returns success although it may only run after the clear
/// (the generation in bits 1.. is what tells it). The setter waits until the waiter is
/// actually asleep, otherwise a waiter arriving after the clear would rightly wait forever.
#[test]
fn event_set_then_clear_releases_sleeper() {
    check(None, || {
        let e = Arc::new(LEvent::new());
        let e2 = e.clone();
        let h = thread::spawn(move || e2.wait(Deadline::Never, Interrupt::Cancellable).unwrap());
        spin_until(|| SLEEPING.load(SeqCst) == 1);
        e.set();
        e.clear();
        assert!(!e.is_set());
        h.join().unwrap();
        // A second round: set/clear is idempotent and a try-wait sees the cleared flag.
        e.clear();
        assert_eq!(e.wait(Deadline::Now, Interrupt::Cancellable).unwrap_err().code, WEFT_WOULD_BLOCK);
        e.set();
        e.set();
        e.wait(Deadline::Now, Interrupt::Cancellable).unwrap();
    });
}

/// A timed waiter racing `set` + `clear`, with no precondition on when it arrives (it may
/// come after the clear, hence the deadline): it returns success or a timeout, nothing else,
/// and never hangs.
#[test]
fn event_set_clear_race_timed() {
    check(None, || {
        let e = Arc::new(LEvent::new());
        let e2 = e.clone();
        let h = thread::spawn(move || e2.wait(Deadline::At(0), Interrupt::Cancellable));
        e.set();
        e.clear();
        match h.join().unwrap() {
            Ok(()) => {}
            Err(err) => assert_eq!(err.code, WEFT_TIMEOUT),
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Condition

/// The waiter takes the lock, announces itself, waits; the notifier takes the lock, and once
/// it sees the announcement (so the waiter's node is queued) notifies one. The notification
/// must not be lost (a loss is a loom deadlock) and the waiter wakes holding the lock.
#[test]
fn condition_notify_one_not_lost() {
    check(Some(3), || {
        let c = With::new(LCondition::new(LLock::new()), false);
        let c2 = c.clone();
        let h = thread::spawn(move || {
            c2.prim.lock().acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
            c2.write(true);
            c2.prim.wait(Deadline::Never, Interrupt::Cancellable).unwrap();
            assert!(c2.prim.lock().locked());
            c2.prim.lock().release().unwrap();
        });
        spin_until(|| {
            c.prim.lock().acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
            let ready = c.read();
            if ready {
                assert_eq!(c.prim.waiting(), 1);
                c.prim.notify(1).unwrap();
                assert_eq!(c.prim.waiting(), 0);
            }
            c.prim.lock().release().unwrap();
            ready
        });
        h.join().unwrap();
    });
}

/// Producer/consumer hand-off with a predicate: the consumer waits for an item, the producer
/// stores it and notifies, in any order. No lost notification, no race on the item.
#[test]
fn condition_producer_consumer() {
    check(Some(3), || {
        let c = With::new(LCondition::new(LLock::new()), None::<u32>);
        let c2 = c.clone();
        let consumer = thread::spawn(move || {
            let lock = c2.prim.lock();
            lock.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
            c2.prim.wait_for(Deadline::Never, Interrupt::Cancellable, &mut || c2.read().is_some()).unwrap();
            let item = c2.read();
            c2.write(None);
            lock.release().unwrap();
            item
        });
        let lock = c.prim.lock();
        lock.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
        c.write(Some(42));
        c.prim.notify(1).unwrap();
        lock.release().unwrap();
        assert_eq!(consumer.join().unwrap(), Some(42));
        assert_eq!(c.prim.waiting(), 0);
    });
}

/// Two waiters, one `notify_all` once both are queued: both wake.
#[test]
fn condition_notify_all_wakes_all() {
    check(Some(2), || {
        let c = With::new(LCondition::new(LLock::new()), 0u32);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let c = c.clone();
                thread::spawn(move || {
                    let lock = c.prim.lock();
                    lock.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
                    c.write(c.read() + 1);
                    c.prim.wait(Deadline::Never, Interrupt::Cancellable).unwrap();
                    lock.release().unwrap();
                })
            })
            .collect();
        spin_until(|| {
            let lock = c.prim.lock();
            lock.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
            let ready = c.read() == 2;
            if ready {
                c.prim.notify_all().unwrap();
            }
            lock.release().unwrap();
            ready
        });
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.prim.waiting(), 0);
    });
}

/// A timed waiter and an untimed one, one `notify(1)` once both have queued: if the timed
/// waiter reports a timeout, the notification went to the other waiter (a notification is
/// never swallowed by a waiter that times out); if it reports success, the untimed waiter
/// needs a second notify.
#[test]
fn condition_timeout_never_swallows_notify() {
    check(Some(2), || {
        let c = With::new(LCondition::new(LLock::new()), 0u32);
        let spawn_waiter = |deadline: Deadline| {
            let c = c.clone();
            thread::spawn(move || {
                let lock = c.prim.lock();
                lock.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
                c.write(c.read() + 1);
                let r = c.prim.wait(deadline, Interrupt::Cancellable);
                assert!(lock.locked(), "wait returns with the lock held, even on timeout");
                lock.release().unwrap();
                r
            })
        };
        let timed = spawn_waiter(Deadline::At(0));
        let untimed = spawn_waiter(Deadline::Never);
        let lock = c.prim.lock();
        spin_until(|| {
            lock.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
            let ready = c.read() == 2;
            if ready {
                c.prim.notify(1).unwrap();
            }
            lock.release().unwrap();
            ready
        });
        match timed.join().unwrap() {
            Ok(()) => {
                lock.acquire(Deadline::Never, Interrupt::Cancellable).unwrap();
                c.prim.notify(1).unwrap();
                lock.release().unwrap();
            }
            Err(e) => assert_eq!(e.code, WEFT_TIMEOUT),
        }
        untimed.join().unwrap().unwrap();
        assert_eq!(c.prim.waiting(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Barrier

type LBarrier = Barrier<LoomWord>;

/// A barrier and one cell per party, written before the barrier and read after it.
struct BarrierCells {
    barrier: LBarrier,
    cells: [UnsafeCell<u32>; 2],
}

// SAFETY: each cell is written only by its own party before the barrier and read by the
// other one after it; loom checks that the barrier orders the two.
unsafe impl Sync for BarrierCells {}

impl BarrierCells {
    /// Party `me` writes its cell, waits, and checks the other party's cell.
    fn pass(&self, me: usize) -> u32 {
        // SAFETY: see the `Sync` impl.
        self.cells[me].with_mut(|p| unsafe { *p = me as u32 + 1 });
        let index = self.barrier.wait(Deadline::Never, Interrupt::Cancellable).unwrap();
        let other = 1 - me;
        // SAFETY: see the `Sync` impl.
        assert_eq!(self.cells[other].with(|p| unsafe { *p }), other as u32 + 1);
        index
    }
}

/// Two parties, one round: both pass, with arrival indices 0 and 1, and each sees the
/// other's writes from before the barrier.
#[test]
fn barrier_two_parties() {
    check(Some(3), || {
        let b = Arc::new(BarrierCells {
            barrier: LBarrier::new(2, None).unwrap(),
            cells: [UnsafeCell::new(0), UnsafeCell::new(0)],
        });
        let b2 = b.clone();
        let h = thread::spawn(move || b2.pass(0));
        let mine = b.pass(1);
        let theirs = h.join().unwrap();
        assert_eq!(mine + theirs, 1);
        assert!(!b.barrier.broken());
        assert_eq!(b.barrier.n_waiting(), 0);
    });
}

/// Two parties, one of them timed: either both pass, or the timed one times out and the
/// other finds the barrier broken.
#[test]
fn barrier_timeout_breaks() {
    check(Some(3), || {
        let b = Arc::new(LBarrier::new(2, None).unwrap());
        let b2 = b.clone();
        let h = thread::spawn(move || b2.wait(Deadline::At(0), Interrupt::Cancellable));
        let mine = b.wait(Deadline::Never, Interrupt::Cancellable);
        let theirs = h.join().unwrap();
        match (mine, theirs) {
            (Ok(x), Ok(y)) => assert_eq!(x + y, 1),
            (Err(a), Err(b)) => {
                assert_eq!(a.code, WEFT_BROKEN);
                assert_eq!(b.code, WEFT_TIMEOUT);
            }
            (a, b) => panic!("one passed, one failed: {a:?} / {b:?}"),
        }
    });
}
