//! The atomics, cells and futex words the ring is built from, behind one trait so that the very
//! same ring and waiting code runs on the real thing ([`Native`]) and under the loom model checker
//! (`models.rs`).

use crate::futex::{PrivateWord, Word};
use std::cell::UnsafeCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The building blocks of the lock-free queue code.
pub(crate) trait Shim: 'static {
    /// A `usize` atomic (positions, counters).
    type Pos: Atomic<usize>;
    /// A `u64` atomic (a slot's stamp and length).
    type Stamp: Atomic<u64>;
    /// A futex word (the waiting side).
    type Word: Word;
    /// The cell holding a slot's payload.
    type Cell: DataCell;
    /// Whether a blocking call spins and yields a little before it sleeps (off under loom,
    /// where it would only multiply the interleavings).
    const SPIN: bool;
    /// A memory fence.
    fn fence(order: Ordering);
    /// A busy-wait hint (`PAUSE`).
    fn pause();
    /// Gives the processor to another thread.
    fn yield_now();
}

/// The subset of the integer atomics the queue uses.
pub(crate) trait Atomic<T>: Send + Sync + 'static {
    /// An atomic holding `v`.
    fn new(v: T) -> Self;
    /// Atomic load.
    fn load(&self, order: Ordering) -> T;
    /// Atomic store.
    fn store(&self, v: T, order: Ordering);
    /// Weak compare-and-exchange (may fail spuriously).
    fn compare_exchange_weak(&self, current: T, new: T, success: Ordering, failure: Ordering) -> Result<T, T>;
    /// Atomic add, returning the previous value.
    fn fetch_add(&self, v: T, order: Ordering) -> T;
    /// Atomic or, returning the previous value.
    fn fetch_or(&self, v: T, order: Ordering) -> T;
}

/// A cell for a slot's payload. The ring's stamps decide who may touch it when.
pub(crate) trait DataCell: 'static {
    /// A cell holding `v`.
    fn new(v: super::item::Data) -> Self;
    /// Stores a payload.
    ///
    /// # Safety
    /// The caller has exclusive access to the cell (it claimed the empty slot).
    unsafe fn put(&self, v: super::item::Data);
    /// Reads the payload.
    ///
    /// # Safety
    /// The caller has exclusive access to the cell (it claimed the full slot).
    unsafe fn get(&self) -> super::item::Data;
}

/// The real atomics, `UnsafeCell` and process-private futex words.
pub(crate) struct Native;

impl Shim for Native {
    type Pos = AtomicUsize;
    type Stamp = AtomicU64;
    type Word = PrivateWord;
    type Cell = UnsafeCell<super::item::Data>;
    const SPIN: bool = true;
    #[inline]
    fn fence(order: Ordering) {
        std::sync::atomic::fence(order)
    }
    #[inline]
    fn pause() {
        std::hint::spin_loop()
    }
    #[inline]
    fn yield_now() {
        std::thread::yield_now()
    }
}

macro_rules! native_atomic {
    ($atomic:ty, $t:ty) => {
        impl Atomic<$t> for $atomic {
            #[inline]
            fn new(v: $t) -> Self {
                <$atomic>::new(v)
            }
            #[inline]
            fn load(&self, order: Ordering) -> $t {
                <$atomic>::load(self, order)
            }
            #[inline]
            fn store(&self, v: $t, order: Ordering) {
                <$atomic>::store(self, v, order)
            }
            #[inline]
            fn compare_exchange_weak(&self, current: $t, new: $t, success: Ordering, failure: Ordering) -> Result<$t, $t> {
                <$atomic>::compare_exchange_weak(self, current, new, success, failure)
            }
            #[inline]
            fn fetch_add(&self, v: $t, order: Ordering) -> $t {
                <$atomic>::fetch_add(self, v, order)
            }
            #[inline]
            fn fetch_or(&self, v: $t, order: Ordering) -> $t {
                <$atomic>::fetch_or(self, v, order)
            }
        }
    };
}

native_atomic!(AtomicUsize, usize);
native_atomic!(AtomicU64, u64);

impl DataCell for UnsafeCell<super::item::Data> {
    #[inline]
    fn new(v: super::item::Data) -> Self {
        UnsafeCell::new(v)
    }
    #[inline]
    unsafe fn put(&self, v: super::item::Data) {
        // SAFETY: exclusive access is the caller's contract.
        unsafe { self.get().write(v) }
    }
    #[inline]
    unsafe fn get(&self) -> super::item::Data {
        // SAFETY: exclusive access is the caller's contract.
        unsafe { UnsafeCell::get(self).read() }
    }
}

/// Crossbeam's backoff: spin with exponentially more `PAUSE`s, then yield, then give up (the
/// caller sleeps). Spinning is off for shims without [`Shim::SPIN`] beyond a single yield.
pub(crate) struct Backoff<S: Shim> {
    step: u32,
    shim: std::marker::PhantomData<S>,
}

const SPIN_LIMIT: u32 = 6;
const YIELD_LIMIT: u32 = 10;

impl<S: Shim> Backoff<S> {
    /// A fresh backoff.
    #[inline]
    pub(crate) fn new() -> Self {
        Backoff { step: 0, shim: std::marker::PhantomData }
    }
    /// Backs off after a lost race (a failed compare-and-exchange): spinning only.
    #[inline]
    pub(crate) fn spin(&mut self) {
        if !S::SPIN {
            return S::yield_now();
        }
        for _ in 0..1u32 << self.step.min(SPIN_LIMIT) {
            S::pause();
        }
        if self.step <= SPIN_LIMIT {
            self.step += 1;
        }
    }
    /// Backs off while waiting for another thread to make progress: spins, then yields.
    #[inline]
    pub(crate) fn snooze(&mut self) {
        if S::SPIN && self.step <= SPIN_LIMIT {
            for _ in 0..1u32 << self.step {
                S::pause();
            }
        } else {
            S::yield_now();
        }
        if self.step <= YIELD_LIMIT {
            self.step += 1;
        }
    }
    /// True once spinning and yielding are exhausted: time to sleep.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        !S::SPIN || self.step > YIELD_LIMIT
    }
}

/// A value alone on its cache lines (128 bytes: adjacent-line prefetchers pair 64-byte lines).
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
