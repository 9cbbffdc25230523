//! Loom models of the ring and its waiting.
//!
//! The ring (`ring.rs`), the bounded FIFO queue around it (`fifo.rs`) and the eventcounts and
//! task count (`wait.rs`) are generic over a [`Shim`]; here they run on [`Loom`], whose atomics,
//! payload cells and futex words are loom's. The models are ordinary `#[test]`s calling loom
//! directly (plain `cargo test` runs them), like those of `sync/models.rs`.
//!
//! [`LoomWord`] is `sync/models.rs`'s futex emulation (a loom mutex and condition
//! variable stand for the kernel's hash bucket; the value is checked under the mutex, after a
//! SeqCst fence like the kernel's). The payload cell is loom's `UnsafeCell`: a read of a slot
//! racing with its write fails the model.
//!
//! # SeqCst
//!
//! Loom models SeqCst accesses only as AcqRel, which would report false lost wake-ups in the
//! Dekker handshakes. As in `sync/models.rs`, the SeqCst accesses of a [`LoomWord`] (the
//! eventcounts' sleeper counts and epochs) are bracketed by SeqCst fences, which loom models
//! exactly. The ring's own atomics (positions, stamps, the task count) are passed through
//! unchanged: their half of each handshake is a SeqCst claim followed by a sleeper-count load
//! (whose bracketing fence orders the two), or an explicit SeqCst fence before the empty/full
//! check, so they need no help; and leaving them as they are keeps the model from granting
//! them ordering they do not have (a Relaxed stamp load next to a fenced claim would otherwise
//! look synchronised: with the pass-through, such a mutation fails six of these models). The
//! fences around the sleeper counts still give the code around them more order than SeqCst
//! accesses have, so the models cannot show that the ring's own fence before its empty/full
//! checks is needed; `ring.rs` argues it.
//!
//! Not modelled: cancellation (thread-local cancel words and OS futexes), spinning (the loom
//! shim goes straight to the eventcount: spinning only retries), deadlines other than `Never`
//! and `Now`.

use super::fifo::RingQueue;
use super::item::{AsWord, Data, IntoVec, Item};
use super::shim::{Atomic, DataCell, Shim};
use super::wait::{block, EventCount};
// The futex word of the models is `sync/models.rs`'s.
use crate::sync::models::LoomWord;
use crate::status::{WEFT_CLOSED, WEFT_INVALID_STATE, WEFT_WOULD_BLOCK};
use crate::time::Deadline;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{fence, AtomicU64, AtomicUsize};
use loom::sync::Arc;
use loom::thread;
use std::sync::atomic::Ordering::{self, Relaxed, SeqCst};



/// A loom integer atomic, passed through unchanged (see the module documentation on SeqCst).
pub(crate) struct LoomAtomic<A>(A);

macro_rules! loom_atomic {
    ($atomic:ty, $t:ty) => {
        impl Atomic<$t> for LoomAtomic<$atomic> {
            fn new(v: $t) -> Self {
                LoomAtomic(<$atomic>::new(v))
            }
            fn load(&self, order: Ordering) -> $t {
                self.0.load(order)
            }
            fn store(&self, v: $t, order: Ordering) {
                self.0.store(v, order)
            }
            fn compare_exchange_weak(&self, current: $t, new: $t, success: Ordering, failure: Ordering) -> Result<$t, $t> {
                self.0.compare_exchange_weak(current, new, success, failure)
            }
            fn fetch_add(&self, v: $t, order: Ordering) -> $t {
                self.0.fetch_add(v, order)
            }
            fn fetch_or(&self, v: $t, order: Ordering) -> $t {
                self.0.fetch_or(v, order)
            }
        }
    };
}

loom_atomic!(AtomicUsize, usize);
loom_atomic!(AtomicU64, u64);

/// A slot's payload cell under loom: accesses are checked for races.
pub(crate) struct LoomCell(UnsafeCell<Data>);

impl DataCell for LoomCell {
    fn new(v: Data) -> Self {
        LoomCell(UnsafeCell::new(v))
    }
    unsafe fn put(&self, v: Data) {
        // SAFETY: exclusive access is the caller's contract; loom checks it.
        self.0.with_mut(|p| unsafe { p.write(v) })
    }
    unsafe fn get(&self) -> Data {
        // SAFETY: as in `put`.
        self.0.with(|p| unsafe { p.read() })
    }
}

/// The loom shim.
pub(crate) struct Loom;

impl Shim for Loom {
    type Pos = LoomAtomic<AtomicUsize>;
    type Stamp = LoomAtomic<AtomicU64>;
    type Word = LoomWord;
    type Cell = LoomCell;
    const SPIN: bool = false;
    fn fence(order: Ordering) {
        fence(order)
    }
    fn pause() {
        thread::yield_now()
    }
    fn yield_now() {
        thread::yield_now()
    }
}

type Queue = RingQueue<Loom>;

/// Runs `f` under loom with a preemption bound (`None`: exhaustive).
fn check(preemption_bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = preemption_bound;
    builder.check(f);
}

fn put(q: &Queue, w: usize) {
    q.put(Item::word(w), Deadline::Never).unwrap();
}

fn get(q: &Queue) -> usize {
    q.get(&mut AsWord, Deadline::Never).unwrap()
}

/// Two producers and one consumer: the consumer gets every item exactly once, each producer's
/// in its order, and nobody is left asleep (a lost wake-up is a loom deadlock). The ring has
/// room for all three items: the full ring is `ring_full_blocked_putter`'s (two producers
/// spinning at once on a get in progress would make loom explore them yielding to each other
/// forever).
#[test]
fn ring_two_producers_one_consumer() {
    check(Some(1), || {
        let q = Arc::new(Queue::new(4, false).unwrap());
        let (qa, qb) = (q.clone(), q.clone());
        let a = thread::spawn(move || {
            put(&qa, 10);
            put(&qa, 11);
        });
        let b = thread::spawn(move || put(&qb, 20));
        let got = [get(&q), get(&q), get(&q)];
        a.join().unwrap();
        b.join().unwrap();
        let pos = |v| got.iter().position(|&g| g == v).expect("delivered");
        assert!(pos(10) < pos(11), "producer order kept: {got:?}");
        let mut sorted = got;
        sorted.sort();
        assert_eq!(sorted, [10, 11, 20]);
        assert!(q.is_empty());
        assert_eq!(q.get(&mut AsWord, Deadline::Now).unwrap_err().code, WEFT_WOULD_BLOCK);
    });
}

/// A full ring of 1 with a putter blocked on it: the get that makes room must wake it, and
/// the items come out in order.
#[test]
fn ring_full_blocked_putter() {
    check(Some(3), || {
        let q = Arc::new(Queue::new(1, false).unwrap());
        put(&q, 1);
        assert_eq!(q.put(Item::word(9), Deadline::Now).unwrap_err().code, WEFT_WOULD_BLOCK);
        let q2 = q.clone();
        let putter = thread::spawn(move || put(&q2, 2));
        assert_eq!(get(&q), 1);
        assert_eq!(get(&q), 2);
        putter.join().unwrap();
        assert_eq!(q.len(), 0);
    });
}

/// A getter going to sleep on an empty ring against a put: the handshake (sleeper count after
/// the claim of `tail` / empty check after bumping the count) must not lose the wake-up.
/// Exhaustive for one item; then two items for one getter (one wake-up per put, the getter
/// sleeping again in between).
#[test]
fn ring_sleep_wake_handshake() {
    check(None, || {
        let q = Arc::new(Queue::new(4, false).unwrap());
        let q2 = q.clone();
        let getter = thread::spawn(move || get(&q2));
        put(&q, 5);
        assert_eq!(getter.join().unwrap(), 5);
    });
    check(Some(3), || {
        let q = Arc::new(Queue::new(4, false).unwrap());
        let q2 = q.clone();
        let getter = thread::spawn(move || [get(&q2), get(&q2)]);
        put(&q, 1);
        put(&q, 2);
        assert_eq!(getter.join().unwrap(), [1, 2]);
    });
}

/// A get_word refuses a 3-byte item at the head while another getter may take it, and a word
/// is being put behind it: the refusal is only reported for the item really at the head, which
/// stays; the payload cells are never raced (loom's UnsafeCell).
#[test]
fn ring_peek_refusal() {
    check(Some(3), || {
        let q = Arc::new(Queue::new(2, false).unwrap());
        q.put(Item::copy_of(b"abc").unwrap(), Deadline::Never).unwrap();
        let (qt, qu) = (q.clone(), q.clone());
        let word_getter = thread::spawn(move || qt.get(&mut AsWord, Deadline::Never));
        let getter = thread::spawn(move || qu.get(&mut IntoVec::default(), Deadline::Never).unwrap());
        put(&q, 7);
        assert_eq!(getter.join().unwrap(), b"abc", "FIFO: the plain get takes the first item");
        match word_getter.join().unwrap() {
            Ok(w) => assert_eq!(w, 7),
            Err(e) => {
                assert_eq!(e.code, WEFT_INVALID_STATE);
                assert_eq!(get(&q), 7, "the word is still there");
            }
        }
        assert!(q.is_empty());
    });
}

/// Shutdown against a sleeping getter and a sleeping putter: both wake with WEFT_CLOSED, or
/// complete if they got in first.
#[test]
fn ring_shutdown_wakes_sleepers() {
    check(Some(2), || {
        let q = Arc::new(Queue::new(1, false).unwrap());
        put(&q, 1);
        let (qp, qg) = (q.clone(), q.clone());
        let putter = thread::spawn(move || qp.put(Item::word(2), Deadline::Never));
        let getter = thread::spawn(move || {
            let first = qg.get(&mut AsWord, Deadline::Never);
            let second = qg.get(&mut AsWord, Deadline::Never);
            (first, second)
        });
        q.shutdown(false);
        let put_result = putter.join().unwrap();
        let (first, second) = getter.join().unwrap();
        assert_eq!(first.unwrap(), 1, "items put before the shutdown are drained");
        match put_result {
            Ok(()) => assert_eq!(second.unwrap(), 2),
            Err(e) => {
                assert_eq!(e.code, WEFT_CLOSED);
                assert_eq!(second.unwrap_err().code, WEFT_CLOSED);
            }
        }
        assert_eq!(q.put(Item::word(3), Deadline::Never).unwrap_err().code, WEFT_CLOSED);
    });
}

/// An immediate shutdown racing a put on a joinable ring: the put lands (and is discarded,
/// counted done) or fails; either way nothing is left and the count is zero, so a joiner
/// returns.
#[test]
fn ring_immediate_shutdown_against_put() {
    check(Some(3), || {
        let q = Arc::new(Queue::new(2, true).unwrap());
        let (qp, qj) = (q.clone(), q.clone());
        let putter = thread::spawn(move || qp.put(Item::word(1), Deadline::Never));
        let joiner = thread::spawn(move || qj.tasks().unwrap().join(Deadline::Never));
        q.shutdown(true);
        if let Err(e) = putter.join().unwrap() {
            assert_eq!(e.code, WEFT_CLOSED);
        }
        joiner.join().unwrap().unwrap();
        assert_eq!(q.len(), 0);
        assert_eq!(q.tasks().unwrap().unfinished(), 0);
    });
}

/// join against get + task_done on another thread: the joiner wakes when the count reaches
/// zero (no lost wake-up), and an extra task_done is refused.
#[test]
fn ring_join_wakes_when_done() {
    check(None, || {
        let q = Arc::new(Queue::new(2, true).unwrap());
        put(&q, 1);
        let q2 = q.clone();
        let worker = thread::spawn(move || {
            assert_eq!(get(&q2), 1);
            q2.tasks().unwrap().task_done().unwrap();
        });
        q.tasks().unwrap().join(Deadline::Never).unwrap();
        worker.join().unwrap();
        assert_eq!(q.tasks().unwrap().task_done().unwrap_err().code, WEFT_INVALID_STATE);
    });
}

// ---------------------------------------------------------------------------------------------
// The eventcount alone, with a plain counter of items as the condition (no ring: several
// waiters can be modelled without threads spinning on each other).

/// Items (a counter) and the eventcount of the threads waiting for one.
struct Items {
    count: AtomicUsize,
    ec: EventCount<LoomWord>,
}

impl Items {
    fn new() -> Arc<Items> {
        Arc::new(Items { count: AtomicUsize::new(0), ec: EventCount::new() })
    }
    /// Takes an item if there is one.
    fn try_take(&self) -> bool {
        let mut n = self.count.load(Relaxed);
        while n > 0 {
            match self.count.compare_exchange(n, n - 1, SeqCst, Relaxed) {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
        false
    }
    /// Takes an item, waiting for one.
    fn take(&self) {
        if !self.try_take() {
            let ready = || self.count.load(SeqCst) > 0;
            block::<Loom, ()>(&self.ec, Deadline::Never, ("", ""), ready, |_| Ok(self.try_take().then_some(()))).unwrap();
        }
    }
    /// Adds an item and notifies one waiter.
    fn put(&self) {
        self.count.fetch_add(1, SeqCst);
        self.ec.notify_one();
    }
}

/// Two waiters, two items put back to back: the second put finds a wake-up in flight and
/// does nothing, so the first waiter must pass it on. Both get an item.
#[test]
fn eventcount_two_waiters_two_items() {
    check(Some(2), || {
        let items = Items::new();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let items = items.clone();
                thread::spawn(move || items.take())
            })
            .collect();
        items.put();
        items.put();
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(items.count.load(Relaxed), 0);
    });
}

/// A waiter and a thief that never waits (a fast-path get) against two puts: the thief may
/// take the item a wake-up was sent for; the waiter must still get the other one, and a
/// wake-up sent to nobody must not keep later puts from waking it.
#[test]
fn eventcount_thief_and_waiter() {
    check(Some(2), || {
        let items = Items::new();
        let (iw, it) = (items.clone(), items.clone());
        let waiter = thread::spawn(move || iw.take());
        let thief = thread::spawn(move || it.try_take());
        items.put();
        items.put();
        waiter.join().unwrap();
        let stolen = thief.join().unwrap();
        assert_eq!(items.count.load(Relaxed), if stolen { 0 } else { 1 });
    });
}

/// Two waiters and a thief against three puts.
#[test]
fn eventcount_two_waiters_thief_three_items() {
    check(Some(1), || {
        let items = Items::new();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let items = items.clone();
                thread::spawn(move || items.take())
            })
            .collect();
        let it = items.clone();
        let thief = thread::spawn(move || it.try_take());
        items.put();
        items.put();
        items.put();
        for w in waiters {
            w.join().unwrap();
        }
        let stolen = thief.join().unwrap();
        assert_eq!(items.count.load(Relaxed), if stolen { 0 } else { 1 });
    });
}
