//! The one place that waits and wakes.
//!
//! Every blocking call in weft ends in [`Word::wait`] on a 32-bit futex word. The
//! synchronisation primitives in `sync/` are written against the [`Word`] trait so that the
//! same state machines run on process-private words ([`PrivateWord`]), on process-shared words
//! in a shared-memory space, and under the loom model checker in tests.
//!
//! Waits take an absolute `CLOCK_MONOTONIC` deadline, so EINTR and spurious wake-ups are
//! retried by the callers' loops without extending the wait. A wait marked
//! [`Interrupt::Cancellable`] made by a weft thread also watches that thread's cancel word
//! (with `futex_waitv`, Linux 5.16+; older kernels fall back to waits sliced at 20 ms), so that
//! `weft_thread_cancel` wakes the thread out of any weft wait. A cancel word asks to cancel
//! once its bit 0 is set; the other bits are free for the word's owner (a process-pool worker
//! keeps the running task's number there, in shared memory, so that the parent's request names
//! the task it is meant for and its wake-up reaches the worker).

use crate::time::Deadline;
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// How a wait ended. Callers re-check their condition after `Woken`: it includes spurious
/// wake-ups, EINTR and "the word no longer held the expected value".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Woken, interrupted, or the value had already changed: re-check.
    Woken,
    /// The deadline passed.
    TimedOut,
    /// The calling weft thread has a cancel request.
    Cancelled,
}

/// Whether a wait may be cut short by a cancel request on the calling thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// A cancel request ends the wait with [`Wait::Cancelled`].
    Cancellable,
    /// The wait ignores cancel requests (used to re-acquire a lock after a condition wait).
    Uninterruptible,
}

/// A 32-bit atomic word that threads can sleep on.
pub trait Word: Send + Sync {
    /// A word holding `v`.
    fn new(v: u32) -> Self;
    /// Atomic load.
    fn load(&self, order: Ordering) -> u32;
    /// Atomic store.
    fn store(&self, v: u32, order: Ordering);
    /// Atomic swap.
    fn swap(&self, v: u32, order: Ordering) -> u32;
    /// Atomic compare-and-exchange.
    fn compare_exchange(&self, current: u32, new: u32, success: Ordering, failure: Ordering) -> Result<u32, u32>;
    /// Atomic add, returning the previous value.
    fn fetch_add(&self, v: u32, order: Ordering) -> u32;
    /// Atomic subtract, returning the previous value.
    fn fetch_sub(&self, v: u32, order: Ordering) -> u32;
    /// Sleeps while the word holds `expected`, until woken, the deadline, or (when
    /// cancellable) a cancel request. May return `Woken` spuriously.
    fn wait(&self, expected: u32, deadline: Deadline, interrupt: Interrupt) -> Wait;
    /// Wakes up to `n` sleepers (`u32::MAX`: all).
    fn wake(&self, n: u32);
    /// Moves one sleeper of this word (which must hold `expected`) to the queue of `to`
    /// without waking it: it wakes when `to` is woken (a condition's "wait morphing").
    /// Returns false when the kernel refused, and the caller must `wake` instead; an
    /// implementation may also simply wake the sleeper (a spurious wake-up is allowed).
    fn requeue_one(&self, expected: u32, to: &Self) -> bool;
}

/// A futex word. `PRIVATE` selects process-private futex operations (faster; the word must
/// not be shared with other processes) or process-shared ones (the word may live in memory
/// mapped by several processes). Use the aliases [`PrivateWord`] and [`SharedWord`].
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct FutexWord<const PRIVATE: bool>(AtomicU32);

/// A futex word in process-private memory.
pub type PrivateWord = FutexWord<true>;
/// A futex word that may live in memory shared between processes.
pub type SharedWord = FutexWord<false>;

impl<const PRIVATE: bool> FutexWord<PRIVATE> {
    /// A word holding `v`, usable in `static` initialisers.
    pub const fn new_const(v: u32) -> Self {
        FutexWord(AtomicU32::new(v))
    }
}

impl<const PRIVATE: bool> Word for FutexWord<PRIVATE> {
    #[inline]
    fn new(v: u32) -> Self {
        FutexWord(AtomicU32::new(v))
    }
    #[inline]
    fn load(&self, order: Ordering) -> u32 {
        self.0.load(order)
    }
    #[inline]
    fn store(&self, v: u32, order: Ordering) {
        self.0.store(v, order)
    }
    #[inline]
    fn swap(&self, v: u32, order: Ordering) -> u32 {
        self.0.swap(v, order)
    }
    #[inline]
    fn compare_exchange(&self, c: u32, n: u32, s: Ordering, f: Ordering) -> Result<u32, u32> {
        self.0.compare_exchange(c, n, s, f)
    }
    #[inline]
    fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
        self.0.fetch_add(v, order)
    }
    #[inline]
    fn fetch_sub(&self, v: u32, order: Ordering) -> u32 {
        self.0.fetch_sub(v, order)
    }
    fn wait(&self, expected: u32, deadline: Deadline, interrupt: Interrupt) -> Wait {
        wait_on(&self.0, expected, deadline, interrupt, PRIVATE)
    }
    #[inline]
    fn wake(&self, n: u32) {
        wake_on(&self.0, n, PRIVATE)
    }
    fn requeue_one(&self, expected: u32, to: &Self) -> bool {
        let op = FUTEX_CMP_REQUEUE | if PRIVATE { FUTEX_PRIVATE_FLAG } else { 0 };
        // SAFETY: both addresses are live, aligned AtomicU32s; FUTEX_CMP_REQUEUE wakes 0 and
        // moves at most 1 waiter (the count travels in the timeout argument's slot).
        let r = unsafe {
            libc::syscall(libc::SYS_futex, self.0.as_ptr(), op, 0, 1usize as *const libc::timespec, to.0.as_ptr(), expected)
        };
        r >= 0 || errno() == libc::EAGAIN
    }
}

const FUTEX_WAIT_BITSET: i32 = 9;
const FUTEX_WAKE: i32 = 1;
const FUTEX_CMP_REQUEUE: i32 = 4;
const FUTEX_PRIVATE_FLAG: i32 = 128;
const FUTEX_BITSET_MATCH_ANY: u32 = 0xffff_ffff;
const FUTEX2_SIZE_U32: u32 = 0x02;
const FUTEX2_PRIVATE: u32 = 128;
/// `futex_waitv` has the same number on every architecture (the generic syscall table).
const SYS_FUTEX_WAITV: libc::c_long = 449;
/// Slice length for cancellable waits on kernels without `futex_waitv`.
const FALLBACK_SLICE_NS: u64 = 20_000_000;

#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

thread_local! {
    /// The calling weft thread's cancel word, or null for threads weft did not start.
    static CANCEL_WORD: Cell<*const AtomicU32> = const { Cell::new(ptr::null()) };
    /// Whether that word lives in memory shared with other processes (waited on with a
    /// process-shared futex).
    static CANCEL_SHARED: Cell<bool> = const { Cell::new(false) };
}

/// The bit of a cancel word that asks to cancel.
pub(crate) const CANCEL_BIT: u32 = 1;

/// 0 unknown, 1 futex_waitv works, 2 it does not.
static WAITV_SUPPORT: AtomicU8 = AtomicU8::new(0);

/// Installs `word` as the calling thread's cancel word (null removes it). The word must stay
/// valid until it is removed; `thread/` keeps it inside the thread's shared record.
pub(crate) fn set_cancel_word(word: *const AtomicU32) {
    CANCEL_WORD.with(|c| c.set(word));
    CANCEL_SHARED.with(|c| c.set(false));
}

/// As [`set_cancel_word`], for a word in memory shared with another process, which asks with
/// [`raise_shared_cancel`].
pub(crate) fn set_shared_cancel_word(word: *const AtomicU32) {
    CANCEL_WORD.with(|c| c.set(word));
    CANCEL_SHARED.with(|c| c.set(true));
}

/// True when the calling thread is a weft thread that was asked to cancel: for waits that are
/// not futex waits (poll on a descriptor), which check it between bounded slices.
pub(crate) fn cancel_requested() -> bool {
    CANCEL_WORD.with(|c| {
        let w = c.get();
        // SAFETY: a non-null cancel word stays valid until the thread removes it (see above).
        !w.is_null() && unsafe { &*w }.load(Ordering::Acquire) & CANCEL_BIT != 0
    })
}

/// True when the calling thread has a cancel word (it is a weft thread).
pub(crate) fn cancellable_thread() -> bool {
    CANCEL_WORD.with(|c| !c.get().is_null())
}

/// Sets a thread's cancel word and wakes that thread out of whatever weft wait it is in.
pub(crate) fn raise_cancel(word: &AtomicU32) {
    word.store(CANCEL_BIT, Ordering::Release);
    wake_on(word, u32::MAX, true);
}

/// Asks the thread whose shared cancel word (see [`set_shared_cancel_word`]) holds `current`
/// to cancel, waking it out of any weft wait; false (nothing done) once the word holds
/// something else.
pub(crate) fn raise_shared_cancel(word: &AtomicU32, current: u32) -> bool {
    let asked = word.compare_exchange(current, current | CANCEL_BIT, Ordering::AcqRel, Ordering::Acquire).is_ok();
    if asked {
        wake_on(word, u32::MAX, false);
    }
    asked
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn futex_wait_plain(word: &AtomicU32, expected: u32, deadline: Deadline, private: bool) -> Wait {
    let ts = deadline.as_timespec();
    let tsp = ts.as_ref().map_or(ptr::null(), |t| t as *const libc::timespec);
    let op = FUTEX_WAIT_BITSET | if private { FUTEX_PRIVATE_FLAG } else { 0 };
    // SAFETY: `word` is a live AtomicU32 (a valid, aligned u32 address) for the whole call;
    // `tsp` is null or points at a timespec on this stack frame. FUTEX_WAIT_BITSET takes an
    // absolute CLOCK_MONOTONIC timeout.
    let r = unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), op, expected, tsp, ptr::null::<u32>(), FUTEX_BITSET_MATCH_ANY)
    };
    if r == -1 && errno() == libc::ETIMEDOUT {
        Wait::TimedOut
    } else {
        Wait::Woken
    }
}

/// The cancel entry of a `futex_waitv`: `cancel` still holding `seen` (bit 0 clear).
struct CancelWatch<'a> {
    word: &'a AtomicU32,
    seen: u32,
    shared: bool,
}

fn futex_waitv(word: &AtomicU32, expected: u32, cancel: &CancelWatch<'_>, deadline: Deadline, private: bool) -> Option<Wait> {
    let flags = FUTEX2_SIZE_U32 | if private { FUTEX2_PRIVATE } else { 0 };
    let cancel_flags = FUTEX2_SIZE_U32 | if cancel.shared { 0 } else { FUTEX2_PRIVATE };
    let waiters = [
        FutexWaitv { val: expected as u64, uaddr: word.as_ptr() as u64, flags, reserved: 0 },
        FutexWaitv { val: cancel.seen as u64, uaddr: cancel.word.as_ptr() as u64, flags: cancel_flags, reserved: 0 },
    ];
    let ts = deadline.as_timespec();
    let tsp = ts.as_ref().map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: both entries point at live AtomicU32s for the duration of the call; the array
    // and the timespec live on this stack frame; the timeout is absolute on CLOCK_MONOTONIC.
    let r = unsafe { libc::syscall(SYS_FUTEX_WAITV, waiters.as_ptr(), 2u32, 0u32, tsp, libc::CLOCK_MONOTONIC) };
    if r >= 0 {
        return Some(Wait::Woken);
    }
    match errno() {
        libc::ETIMEDOUT => Some(Wait::TimedOut),
        libc::ENOSYS => None,
        _ => Some(Wait::Woken), // EAGAIN (value changed), EINTR
    }
}

/// Waits on a raw atomic; see [`Word::wait`]. `private` selects process-private futexes.
pub(crate) fn wait_on(word: &AtomicU32, expected: u32, deadline: Deadline, interrupt: Interrupt, private: bool) -> Wait {
    if deadline == Deadline::Now {
        return Wait::TimedOut;
    }
    let cancel = if interrupt == Interrupt::Cancellable {
        CANCEL_WORD.try_with(|c| c.get()).unwrap_or(ptr::null())
    } else {
        ptr::null()
    };
    if cancel.is_null() {
        return futex_wait_plain(word, expected, deadline, private);
    }
    // SAFETY: a non-null cancel word is owned by the current thread's record (or its pool
    // worker's shared ticket), which outlives its installation (removed before it can go).
    let cancel = unsafe { &*cancel };
    let seen = cancel.load(Ordering::Acquire);
    if seen & CANCEL_BIT != 0 {
        return Wait::Cancelled;
    }
    let watch = CancelWatch { word: cancel, seen, shared: CANCEL_SHARED.with(|c| c.get()) };
    let outcome = if WAITV_SUPPORT.load(Ordering::Relaxed) != 2 {
        match futex_waitv(word, expected, &watch, deadline, private) {
            Some(w) => {
                WAITV_SUPPORT.store(1, Ordering::Relaxed);
                w
            }
            None => {
                WAITV_SUPPORT.store(2, Ordering::Relaxed);
                sliced_wait(word, expected, deadline, private)
            }
        }
    } else {
        sliced_wait(word, expected, deadline, private)
    };
    if cancel.load(Ordering::Acquire) & CANCEL_BIT != 0 {
        Wait::Cancelled
    } else {
        outcome
    }
}

fn sliced_wait(word: &AtomicU32, expected: u32, deadline: Deadline, private: bool) -> Wait {
    let (d, is_slice) = deadline.capped(FALLBACK_SLICE_NS);
    match futex_wait_plain(word, expected, d, private) {
        Wait::TimedOut if is_slice => Wait::Woken,
        w => w,
    }
}

/// Wakes up to `n` waiters of a raw atomic (`u32::MAX`: all).
pub(crate) fn wake_on(word: &AtomicU32, n: u32, private: bool) {
    let op = FUTEX_WAKE | if private { FUTEX_PRIVATE_FLAG } else { 0 };
    let n = n.min(i32::MAX as u32) as i32;
    // SAFETY: FUTEX_WAKE only uses the address as a key; `word` is live and aligned.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, n) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wait_times_out_not_before_deadline() {
        let w = PrivateWord::new(0);
        let start = crate::time::now_ns();
        let d = Deadline::from_timeout_ns(20_000_000);
        loop {
            if w.wait(0, d, Interrupt::Cancellable) == Wait::TimedOut {
                break;
            }
        }
        assert!(crate::time::now_ns() - start >= 20_000_000);
    }

    #[test]
    fn value_mismatch_returns_at_once() {
        let w = PrivateWord::new(1);
        assert_eq!(w.wait(0, Deadline::Never, Interrupt::Cancellable), Wait::Woken);
    }

    #[test]
    fn wake_wakes_sleeper() {
        let w = Arc::new(PrivateWord::new(0));
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            while w2.load(Ordering::Acquire) == 0 {
                w2.wait(0, Deadline::Never, Interrupt::Cancellable);
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(10));
        w.store(1, Ordering::Release);
        w.wake(1);
        t.join().unwrap();
    }

    /// A Lock and an Event on shared words in a MAP_SHARED mapping work across fork.
    #[test]
    fn shared_words_work_across_processes() {
        use crate::sync::{Event, Lock};
        use crate::test_support::{fork_child, wait_child, SharedMap};
        #[repr(C)]
        struct Shared {
            lock: Lock<SharedWord>,
            ready: Event<SharedWord>,
            counter: u64,
        }
        const N: u64 = 20_000;
        let m = SharedMap::new(Shared { lock: Lock::new(), ready: Event::new(), counter: 0 });
        let (s, sh) = (m.get(), m.as_ptr());
        let add = || {
            for _ in 0..N {
                s.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
                // SAFETY: the counter is only touched under the shared lock.
                unsafe { *std::ptr::addr_of_mut!((*sh).counter) += 1 };
                s.lock.release().unwrap();
            }
        };
        let pid = fork_child(|| {
            s.ready.wait(Deadline::Never, Interrupt::Uninterruptible).unwrap();
            add();
            true
        });
        s.ready.set();
        add();
        let status = wait_child(pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        // SAFETY: the child has exited; no concurrent access.
        assert_eq!(unsafe { std::ptr::addr_of!((*sh).counter).read() }, 2 * N);
    }

    #[test]
    fn cancel_word_interrupts_wait() {
        let cancel = Arc::new(AtomicU32::new(0));
        let c2 = cancel.clone();
        let t = std::thread::spawn(move || {
            set_cancel_word(&*c2);
            let w = PrivateWord::new(0);
            let r = w.wait(0, Deadline::Never, Interrupt::Cancellable);
            set_cancel_word(ptr::null());
            r
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        raise_cancel(&cancel);
        assert_eq!(t.join().unwrap(), Wait::Cancelled);
    }
}
