//! weft vs its peers, side by side in one run (DESIGN.md §6). See benches/README.md.
//!
//! `cargo bench --bench sync [-- FILTER...]` runs the four benchmarks (or those whose key
//! starts with one of the FILTER words: `uncontended`, `contended`, `pingpong`, `thread`).
//!
//! Method: every benchmark measures each contender for `ROUNDS` rounds. A round's sample of a
//! contender is the mean of `CHUNKS` slices of its work, and the slices of all contenders
//! alternate (in an order that rotates every slice), so that a burst of load from a noisy
//! neighbour hurts every contender alike. Each table shows the median, min and max of the
//! per-round samples. Ratios are weft/peer: the median of the per-round ratios (weft and peer
//! measured in interleaved slices over the same seconds), which decides PASS/MISS, and in
//! brackets the ratio of the medians. Every sample checks its own work (counts, return codes,
//! that a lock really excludes), and a failed check aborts the run, so a broken primitive
//! cannot produce a fast number.
//!
//! weft is always called through its exported `extern "C"` functions, through function
//! pointers the optimiser cannot see through — what a C program calling `libweft.so` pays
//! (a PLT call). The libc functions are called through the GOT as usual.
//!
//! Environment: `WEFT_BENCH_ROUNDS` (default 7), `WEFT_BENCH_CHUNKS` (slices per sample,
//! default 5), `WEFT_BENCH_SCALE` (work per sample, default 1.0), `WEFT_BENCH_ONLY` (run only the contenders whose name contains it; for
//! profiling one contender under perf or valgrind), `WEFT_BENCH_VERBOSE=1` (print every
//! round's sample).

#![allow(clippy::missing_safety_doc)]

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::hint::black_box;
use std::ptr::null_mut;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use weft::capi::call::{weft_call, weft_call_arg};
use weft::capi::condition::{
    weft_condition, weft_condition_free, weft_condition_new_with_lock, weft_condition_notify, weft_condition_wait,
};
use weft::capi::event::{weft_event, weft_event_clear, weft_event_free, weft_event_new, weft_event_set, weft_event_wait};
use weft::capi::lock::{weft_lock, weft_lock_acquire, weft_lock_free, weft_lock_new, weft_lock_release};
use weft::capi::thread::{weft_thread, weft_thread_free, weft_thread_join, weft_thread_start};
use weft::status::{weft_status, WEFT_OK, WEFT_WOULD_BLOCK};
use weft::time::WEFT_FOREVER;

// ---------------------------------------------------------------------------------------------
// The C ABI, through opaque function pointers (as a C caller of the shared library sees it).

type LockNewFn = unsafe extern "C" fn(*mut *mut weft_lock) -> weft_status;
type LockAcquireFn = unsafe extern "C" fn(*mut weft_lock, u64) -> weft_status;
type LockReleaseFn = unsafe extern "C" fn(*mut weft_lock) -> weft_status;
type EventFn = unsafe extern "C" fn(*mut weft_event) -> weft_status;
type EventWaitFn = unsafe extern "C" fn(*mut weft_event, u64) -> weft_status;
type CondWaitFn = unsafe extern "C" fn(*mut weft_condition, u64) -> weft_status;
type CondNotifyFn = unsafe extern "C" fn(*mut weft_condition, usize) -> weft_status;
type ThreadStartFn = unsafe extern "C" fn(
    Option<unsafe extern "C" fn(*mut weft_call) -> weft_status>,
    *const c_void,
    usize,
    *const weft::capi::thread::weft_thread_options,
    *mut *mut weft_thread,
) -> weft_status;
type ThreadJoinFn = unsafe extern "C" fn(*mut weft_thread, u64, *mut *mut weft::capi::status::weft_bytes) -> weft_status;
type ThreadFreeFn = unsafe extern "C" fn(*mut weft_thread);

#[derive(Clone, Copy)]
struct Api {
    lock_new: LockNewFn,
    lock_acquire: LockAcquireFn,
    lock_release: LockReleaseFn,
    event_set: EventFn,
    event_clear: EventFn,
    event_wait: EventWaitFn,
    cond_wait: CondWaitFn,
    cond_notify: CondNotifyFn,
    thread_start: ThreadStartFn,
    thread_join: ThreadJoinFn,
    thread_free: ThreadFreeFn,
}

fn api() -> Api {
    black_box(Api {
        lock_new: weft_lock_new,
        lock_acquire: weft_lock_acquire,
        lock_release: weft_lock_release,
        event_set: weft_event_set,
        event_clear: weft_event_clear,
        event_wait: weft_event_wait,
        cond_wait: weft_condition_wait,
        cond_notify: weft_condition_notify,
        thread_start: weft_thread_start,
        thread_join: weft_thread_join,
        thread_free: weft_thread_free,
    })
}

/// Raw pointers shared between the benchmark's threads.
struct P<T>(*mut T);
impl<T> Clone for P<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for P<T> {}
// SAFETY: the pointees are thread-safe weft/pthread objects, used per their contracts.
unsafe impl<T> Send for P<T> {}
unsafe impl<T> Sync for P<T> {}

fn check(rc: weft_status, what: &str) {
    assert!(rc == WEFT_OK, "{what} returned {rc}");
}

// ---------------------------------------------------------------------------------------------
// Locks under test.

trait RawLock: Sync {
    fn lock(&self) -> i32;
    fn unlock(&self) -> i32;
    /// Called while the caller holds the lock: true when a try-lock correctly fails.
    fn excludes(&self) -> bool;
}

struct WeftLock {
    l: *mut weft_lock,
    api: Api,
}
// SAFETY: weft_lock is thread-safe.
unsafe impl Sync for WeftLock {}

impl WeftLock {
    fn new() -> Self {
        let api = api();
        let mut l = null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { (api.lock_new)(&mut l) }, "weft_lock_new");
        WeftLock { l, api }
    }
}
impl Drop for WeftLock {
    fn drop(&mut self) {
        // SAFETY: handle from weft_lock_new, no longer used.
        unsafe { weft_lock_free(self.l) }
    }
}
impl RawLock for WeftLock {
    #[inline(always)]
    fn lock(&self) -> i32 {
        // SAFETY: live handle.
        unsafe { (self.api.lock_acquire)(self.l, WEFT_FOREVER) }
    }
    #[inline(always)]
    fn unlock(&self) -> i32 {
        // SAFETY: live handle.
        unsafe { (self.api.lock_release)(self.l) }
    }
    fn excludes(&self) -> bool {
        // SAFETY: live handle.
        unsafe { (self.api.lock_acquire)(self.l, 0) == WEFT_WOULD_BLOCK }
    }
}

struct PthreadMutex(Box<UnsafeCell<libc::pthread_mutex_t>>);
// SAFETY: a pthread mutex is made to be shared between threads; it never moves (boxed).
unsafe impl Sync for PthreadMutex {}

impl PthreadMutex {
    fn new() -> Self {
        PthreadMutex(Box::new(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER)))
    }
    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.0.get()
    }
}
impl Drop for PthreadMutex {
    fn drop(&mut self) {
        // SAFETY: initialised, unlocked, unused from now on.
        unsafe { libc::pthread_mutex_destroy(self.raw()) };
    }
}
impl RawLock for PthreadMutex {
    #[inline(always)]
    fn lock(&self) -> i32 {
        // SAFETY: initialised mutex.
        unsafe { libc::pthread_mutex_lock(self.raw()) }
    }
    #[inline(always)]
    fn unlock(&self) -> i32 {
        // SAFETY: held by the caller.
        unsafe { libc::pthread_mutex_unlock(self.raw()) }
    }
    fn excludes(&self) -> bool {
        // SAFETY: initialised mutex (a default mutex's trylock by its holder gives EBUSY).
        unsafe { libc::pthread_mutex_trylock(self.raw()) == libc::EBUSY }
    }
}

struct ParkingLot(parking_lot::RawMutex);
impl ParkingLot {
    fn new() -> Self {
        use parking_lot::lock_api::RawMutex as _;
        ParkingLot(parking_lot::RawMutex::INIT)
    }
}
impl RawLock for ParkingLot {
    #[inline(always)]
    fn lock(&self) -> i32 {
        use parking_lot::lock_api::RawMutex as _;
        self.0.lock();
        0
    }
    #[inline(always)]
    fn unlock(&self) -> i32 {
        use parking_lot::lock_api::RawMutex as _;
        // SAFETY: held by the caller.
        unsafe { self.0.unlock() };
        0
    }
    fn excludes(&self) -> bool {
        use parking_lot::lock_api::RawMutex as _;
        !self.0.try_lock()
    }
}

// ---------------------------------------------------------------------------------------------
// Running closures on two threads: std threads, or weft threads started through the C ABI.

#[derive(Clone, Copy, PartialEq)]
enum Threads {
    Std,
    Weft,
}

type Body<'a> = &'a (dyn Fn() + Sync);

unsafe extern "C" fn run_body(call: *mut weft_call) -> weft_status {
    let mut data: *const c_void = std::ptr::null();
    let mut len = 0usize;
    // SAFETY: `call` is our context; out-pointers are valid.
    let rc = unsafe { weft_call_arg(call, &mut data, &mut len) };
    if rc != WEFT_OK || len != std::mem::size_of::<usize>() {
        return weft::status::WEFT_INVALID_ARGUMENT;
    }
    // SAFETY: the argument is the address of a `Body` that outlives the thread (joined before
    // `run_two` returns).
    let body: &Body = unsafe { &*(std::ptr::read_unaligned(data as *const usize) as *const Body) };
    body();
    WEFT_OK
}

/// Runs `a` and `b` concurrently on two fresh threads and waits for both.
fn run_two(kind: Threads, a: Body, b: Body) {
    match kind {
        Threads::Std => std::thread::scope(|s| {
            s.spawn(a);
            s.spawn(b);
        }),
        Threads::Weft => {
            let api = api();
            let bodies = [a, b];
            let mut handles = [null_mut::<weft_thread>(); 2];
            for (body, h) in bodies.iter().zip(handles.iter_mut()) {
                let addr = body as *const Body as usize;
                // SAFETY: the argument is copied; `bodies` outlives both threads (joined below).
                let rc = unsafe {
                    (api.thread_start)(Some(run_body), &addr as *const usize as *const c_void, 8, std::ptr::null(), h)
                };
                check(rc, "weft_thread_start");
            }
            for h in handles {
                // SAFETY: handles from weft_thread_start.
                unsafe {
                    check((api.thread_join)(h, WEFT_FOREVER, null_mut()), "weft_thread_join");
                    (api.thread_free)(h);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Uncontended lock+unlock pair: ns per pair.

fn uncontended<L: RawLock>(l: &L, n: u64) -> f64 {
    let mut rc = 0;
    let mut excluded = 0u64;
    let t = Instant::now();
    for i in 0..n {
        rc |= l.lock();
        if i & 0xffff == 0 {
            excluded += l.excludes() as u64;
        }
        rc |= l.unlock();
    }
    let dt = t.elapsed();
    assert_eq!(rc, 0, "a lock/unlock call failed");
    assert_eq!(excluded, n.div_ceil(0x10000), "the lock did not exclude a try-lock while held");
    assert!(!l.excludes(), "the lock is still held after the loop");
    assert_eq!(l.unlock(), 0);
    dt.as_nanos() as f64 / n as f64
}

// ---------------------------------------------------------------------------------------------
// 2. Contended lock throughput: 2 threads x n (lock, counter += 1, unlock); acquisitions/s.

struct Counter(UnsafeCell<u64>);
// SAFETY: only touched under the lock being measured (and checked afterwards).
unsafe impl Sync for Counter {}
impl Counter {
    /// Caller holds the lock. Volatile: a real read-modify-write every time, so a lock that
    /// fails to exclude loses increments.
    #[inline(always)]
    unsafe fn increment(&self) {
        let p = self.0.get();
        // SAFETY: per the caller's contract, no other thread touches the counter now.
        unsafe { p.write_volatile(p.read_volatile() + 1) };
    }
}

fn contended<L: RawLock>(l: &L, n: u64, kind: Threads) -> f64 {
    let counter_cell = Counter(UnsafeCell::new(0));
    let counter = &counter_cell;
    let barrier = Barrier::new(2);
    let spans = std::sync::Mutex::new(Vec::<(Instant, Instant)>::new());
    let body = || {
        barrier.wait();
        let start = Instant::now();
        let mut rc = 0;
        for _ in 0..n {
            rc |= l.lock();
            // SAFETY: under the lock.
            unsafe { counter.increment() };
            rc |= l.unlock();
        }
        let end = Instant::now();
        assert_eq!(rc, 0, "a lock/unlock call failed");
        spans.lock().unwrap().push((start, end));
    };
    run_two(kind, &body, &body);
    let total = counter_cell.0.into_inner();
    assert_eq!(total, 2 * n, "lost updates: the lock did not exclude");
    let spans = spans.into_inner().unwrap();
    let start = spans.iter().map(|s| s.0).min().unwrap();
    let end = spans.iter().map(|s| s.1).max().unwrap();
    (2 * n) as f64 / (end - start).as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// 3. Ping-pong: ns per round trip. Thread A hands token i to B, B answers i + REPLY, A checks.

const REPLY: u64 = 1 << 40;

/// The data carried by the token; every hand-over is checked on both sides.
struct Token {
    value: AtomicU64,
    b_seen: AtomicU64,
    a_seen: AtomicU64,
}
impl Token {
    fn new() -> Self {
        Token { value: AtomicU64::new(u64::MAX), b_seen: AtomicU64::new(0), a_seen: AtomicU64::new(0) }
    }
    fn a_sends(&self, i: u64) {
        self.value.store(i, Relaxed);
    }
    fn b_receives_and_answers(&self, i: u64) {
        if self.value.load(Relaxed) == i {
            self.b_seen.fetch_add(1, Relaxed);
        }
        self.value.store(i + REPLY, Relaxed);
    }
    fn a_receives(&self, i: u64) {
        if self.value.load(Relaxed) == i + REPLY {
            self.a_seen.fetch_add(1, Relaxed);
        }
    }
    fn verify(&self, n: u64, what: &str) {
        let (a, b) = (self.a_seen.load(SeqCst), self.b_seen.load(SeqCst));
        assert!(a == n && b == n, "{what}: {b}/{n} hand-overs seen by B, {a}/{n} answers seen by A");
    }
}

/// Where the two sides of a ping-pong run.
#[derive(Clone, Copy)]
enum Placement {
    /// Both threads pinned to this one CPU: every hand-over is a futex wake plus a context
    /// switch on that CPU. Stable, and the same for every contender.
    OneCpu(usize),
    /// Wherever the scheduler puts them (usually one thread per CPU). On a virtual machine a
    /// wake-up sent to an idle virtual CPU can cost tens of microseconds of hypervisor time.
    Free,
}

/// The first CPU this process may run on.
fn first_allowed_cpu() -> usize {
    // SAFETY: sched_getaffinity fills a zeroed cpu_set_t of the size given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            for cpu in 0..libc::CPU_SETSIZE as usize {
                if libc::CPU_ISSET(cpu, &set) {
                    return cpu;
                }
            }
        }
    }
    0
}

fn apply(placement: Placement) {
    if let Placement::OneCpu(cpu) = placement {
        // SAFETY: a zeroed cpu_set_t with one CPU set, for the calling thread.
        let r = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        assert_eq!(r, 0, "sched_setaffinity to CPU {cpu} failed");
    }
}

/// Runs the two sides; A's elapsed time after both are ready, per round trip.
fn ping_pong(
    kind: Threads,
    placement: Placement,
    n: u64,
    what: &str,
    a: &(dyn Fn(&Token) + Sync),
    b: &(dyn Fn(&Token) + Sync),
) -> f64 {
    let token = Token::new();
    let barrier = Barrier::new(2);
    let elapsed = std::sync::Mutex::new(Duration::ZERO);
    let side_a = || {
        apply(placement);
        barrier.wait();
        let t = Instant::now();
        a(&token);
        *elapsed.lock().unwrap() = t.elapsed();
    };
    let side_b = || {
        apply(placement);
        barrier.wait();
        b(&token);
    };
    run_two(kind, &side_a, &side_b);
    token.verify(n, what);
    let e = *elapsed.lock().unwrap();
    e.as_nanos() as f64 / n as f64
}

fn pingpong_weft_event(n: u64, kind: Threads, placement: Placement) -> f64 {
    let api = api();
    let (mut e1, mut e2) = (null_mut(), null_mut());
    // SAFETY: valid out-pointers.
    unsafe {
        check(weft_event_new(&mut e1), "weft_event_new");
        check(weft_event_new(&mut e2), "weft_event_new");
    }
    let (e1, e2) = (P(e1), P(e2));
    let a = move |t: &Token| {
        let (e1, e2) = (e1, e2);
        let mut rc = 0;
        for i in 0..n {
            t.a_sends(i);
            // SAFETY: live handles.
            unsafe {
                rc |= (api.event_set)(e1.0);
                rc |= (api.event_wait)(e2.0, WEFT_FOREVER);
                rc |= (api.event_clear)(e2.0);
            }
            t.a_receives(i);
        }
        assert_eq!(rc, 0, "weft event call failed (A)");
    };
    let b = move |t: &Token| {
        let (e1, e2) = (e1, e2);
        let mut rc = 0;
        for i in 0..n {
            // SAFETY: live handles.
            unsafe {
                rc |= (api.event_wait)(e1.0, WEFT_FOREVER);
                rc |= (api.event_clear)(e1.0);
            }
            t.b_receives_and_answers(i);
            // SAFETY: live handle.
            unsafe { rc |= (api.event_set)(e2.0) };
        }
        assert_eq!(rc, 0, "weft event call failed (B)");
    };
    let r = ping_pong(kind, placement, n, "weft Event ping-pong", &a, &b);
    // SAFETY: no longer used.
    unsafe {
        weft_event_free(e1.0);
        weft_event_free(e2.0);
    }
    r
}

/// The flag both condition ping-pongs share: 1 = B's turn, 0 = A's turn. Guarded by the lock.
struct Turn(UnsafeCell<u32>);
// SAFETY: only touched with the lock held.
unsafe impl Sync for Turn {}
impl Turn {
    fn get(&self) -> u32 {
        // SAFETY: lock held by the caller.
        unsafe { self.0.get().read_volatile() }
    }
    fn set(&self, v: u32) {
        // SAFETY: lock held by the caller.
        unsafe { self.0.get().write_volatile(v) }
    }
}

fn pingpong_weft_condition(n: u64, kind: Threads, placement: Placement) -> f64 {
    let api = api();
    let lock = WeftLock::new();
    let mut c = null_mut();
    // SAFETY: live lock, valid out-pointer.
    check(unsafe { weft_condition_new_with_lock(lock.l, &mut c) }, "weft_condition_new_with_lock");
    let (l, c) = (P(lock.l), P(c));
    let turn = Turn(UnsafeCell::new(0));
    let turn = &turn;
    let a = move |t: &Token| {
        let (l, c) = (l, c);
        let mut rc = 0;
        // SAFETY: live handles; the condition's wait/notify are called with the lock held.
        unsafe {
            rc |= (api.lock_acquire)(l.0, WEFT_FOREVER);
            for i in 0..n {
                t.a_sends(i);
                turn.set(1);
                rc |= (api.cond_notify)(c.0, 1);
                while turn.get() != 0 {
                    rc |= (api.cond_wait)(c.0, WEFT_FOREVER);
                }
                t.a_receives(i);
            }
            rc |= (api.lock_release)(l.0);
        }
        assert_eq!(rc, 0, "weft condition call failed (A)");
    };
    let b = move |t: &Token| {
        let (l, c) = (l, c);
        let mut rc = 0;
        // SAFETY: as above.
        unsafe {
            rc |= (api.lock_acquire)(l.0, WEFT_FOREVER);
            for i in 0..n {
                while turn.get() != 1 {
                    rc |= (api.cond_wait)(c.0, WEFT_FOREVER);
                }
                t.b_receives_and_answers(i);
                turn.set(0);
                rc |= (api.cond_notify)(c.0, 1);
            }
            rc |= (api.lock_release)(l.0);
        }
        assert_eq!(rc, 0, "weft condition call failed (B)");
    };
    let r = ping_pong(kind, placement, n, "weft Condition ping-pong", &a, &b);
    // SAFETY: no longer used.
    unsafe { weft_condition_free(c.0) };
    r
}

struct PthreadCond(Box<UnsafeCell<libc::pthread_cond_t>>);
// SAFETY: a condvar is made to be shared; boxed so it never moves.
unsafe impl Sync for PthreadCond {}
impl Drop for PthreadCond {
    fn drop(&mut self) {
        // SAFETY: no waiters remain.
        unsafe { libc::pthread_cond_destroy(self.0.get()) };
    }
}

fn pingpong_pthread_condvar(n: u64, placement: Placement) -> f64 {
    let m = PthreadMutex::new();
    let cv = PthreadCond(Box::new(UnsafeCell::new(libc::PTHREAD_COND_INITIALIZER)));
    let turn = Turn(UnsafeCell::new(0));
    let (m, cv, turn) = (&m, &cv, &turn);
    let a = move |t: &Token| {
        let mut rc = 0;
        // SAFETY: initialised mutex and condvar; waits with the mutex held.
        unsafe {
            rc |= libc::pthread_mutex_lock(m.raw());
            for i in 0..n {
                t.a_sends(i);
                turn.set(1);
                rc |= libc::pthread_cond_signal(cv.0.get());
                while turn.get() != 0 {
                    rc |= libc::pthread_cond_wait(cv.0.get(), m.raw());
                }
                t.a_receives(i);
            }
            rc |= libc::pthread_mutex_unlock(m.raw());
        }
        assert_eq!(rc, 0, "pthread call failed (A)");
    };
    let b = move |t: &Token| {
        let mut rc = 0;
        // SAFETY: as above.
        unsafe {
            rc |= libc::pthread_mutex_lock(m.raw());
            for i in 0..n {
                while turn.get() != 1 {
                    rc |= libc::pthread_cond_wait(cv.0.get(), m.raw());
                }
                t.b_receives_and_answers(i);
                turn.set(0);
                rc |= libc::pthread_cond_signal(cv.0.get());
            }
            rc |= libc::pthread_mutex_unlock(m.raw());
        }
        assert_eq!(rc, 0, "pthread call failed (B)");
    };
    ping_pong(Threads::Std, placement, n, "pthread condvar ping-pong", &a, &b)
}

/// The OS floor: one futex word, 1 = B's turn, 0 = A's turn; every hand-over wakes.
fn pingpong_futex(n: u64, placement: Placement) -> f64 {
    use std::sync::atomic::AtomicU32;
    fn wait(w: &AtomicU32, v: u32) {
        // SAFETY: a live aligned u32; private futex wait without timeout.
        unsafe { libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, v, std::ptr::null::<libc::timespec>()) };
    }
    fn wake(w: &AtomicU32) {
        // SAFETY: FUTEX_WAKE uses the address only as a key.
        unsafe { libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1) };
    }
    let word = AtomicU32::new(0);
    let word = &word;
    let a = move |t: &Token| {
        for i in 0..n {
            t.a_sends(i);
            word.store(1, SeqCst);
            wake(word);
            while word.load(SeqCst) == 1 {
                wait(word, 1);
            }
            t.a_receives(i);
        }
    };
    let b = move |t: &Token| {
        for i in 0..n {
            while word.load(SeqCst) == 0 {
                wait(word, 0);
            }
            t.b_receives_and_answers(i);
            word.store(0, SeqCst);
            wake(word);
        }
    };
    ping_pong(Threads::Std, placement, n, "futex ping-pong", &a, &b)
}

// ---------------------------------------------------------------------------------------------
// 4. Thread start + join of a trivial task: ns per thread.

static TASKS_RUN: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn trivial_task(_call: *mut weft_call) -> weft_status {
    TASKS_RUN.fetch_add(1, Relaxed);
    WEFT_OK
}

extern "C" fn trivial_pthread(_arg: *mut c_void) -> *mut c_void {
    TASKS_RUN.fetch_add(1, Relaxed);
    null_mut()
}

fn threads_weft(n: u64) -> f64 {
    let api = api();
    let before = TASKS_RUN.load(SeqCst);
    let t = Instant::now();
    for _ in 0..n {
        let mut h = null_mut();
        // SAFETY: valid task and out-pointer; the handle is joined and freed.
        unsafe {
            check((api.thread_start)(Some(trivial_task), std::ptr::null(), 0, std::ptr::null(), &mut h), "weft_thread_start");
            check((api.thread_join)(h, WEFT_FOREVER, null_mut()), "weft_thread_join");
            (api.thread_free)(h);
        }
    }
    let dt = t.elapsed();
    assert_eq!(TASKS_RUN.load(SeqCst) - before, n, "not every weft task ran");
    dt.as_nanos() as f64 / n as f64
}

fn threads_pthread(n: u64) -> f64 {
    let before = TASKS_RUN.load(SeqCst);
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: default attributes, a valid start routine; every thread is joined.
        unsafe {
            let mut pt: libc::pthread_t = 0;
            let r = libc::pthread_create(&mut pt, std::ptr::null(), trivial_pthread, null_mut());
            assert_eq!(r, 0, "pthread_create");
            assert_eq!(libc::pthread_join(pt, null_mut()), 0, "pthread_join");
        }
    }
    let dt = t.elapsed();
    assert_eq!(TASKS_RUN.load(SeqCst) - before, n, "not every pthread ran");
    dt.as_nanos() as f64 / n as f64
}

fn threads_std(n: u64) -> f64 {
    let before = TASKS_RUN.load(SeqCst);
    let t = Instant::now();
    for _ in 0..n {
        std::thread::spawn(|| {
            TASKS_RUN.fetch_add(1, Relaxed);
        })
        .join()
        .unwrap();
    }
    let dt = t.elapsed();
    assert_eq!(TASKS_RUN.load(SeqCst) - before, n, "not every std thread ran");
    dt.as_nanos() as f64 / n as f64
}

// ---------------------------------------------------------------------------------------------
// The harness.

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Weft,
    Peer,
    Info,
}

struct Contender<'a> {
    name: &'static str,
    role: Role,
    run: Box<dyn FnMut(f64) -> f64 + 'a>,
    samples: Vec<f64>,
}

fn contender<'a>(name: &'static str, role: Role, run: impl FnMut(f64) -> f64 + 'a) -> Contender<'a> {
    Contender { name, role, run: Box::new(run), samples: Vec::new() }
}

#[derive(Clone, Copy)]
enum Goal {
    /// weft/peer must be at most this (times: lower is better).
    AtMost(f64),
    /// weft/peer must be at least this (throughputs: higher is better).
    AtLeast(f64),
}

struct Target {
    id: &'static str,
    what: &'static str,
    weft: &'static str,
    peer: &'static str,
    goal: Goal,
}

struct Verdict {
    id: &'static str,
    what: &'static str,
    weft: &'static str,
    peer: &'static str,
    weft_v: f64,
    peer_v: f64,
    /// Median of the per-round ratios weft/peer: the verdict.
    ratio: f64,
    /// median(weft) / median(peer), for information.
    ratio_of_medians: f64,
    goal: Goal,
    unit: &'static str,
}

impl Verdict {
    fn pass(&self) -> bool {
        match self.goal {
            Goal::AtMost(x) => self.ratio <= x,
            Goal::AtLeast(x) => self.ratio >= x,
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "acq/s" => format!("{:>9.2} M/s", v / 1e6),
        "ns" if v >= 10_000.0 => format!("{:>9.2} us", v / 1000.0),
        _ => format!("{:>9.2} ns", v),
    }
}

struct Config {
    rounds: usize,
    /// Slices per sample, interleaved with the other contenders' slices.
    chunks: usize,
    scale: f64,
    /// Run only the contenders whose name contains this (for profiling one of them).
    only: Option<String>,
    /// Print every round's sample.
    verbose: bool,
}

/// Runs every contender `rounds` times, interleaved, and prints the table and ratios.
fn bench(cfg: &Config, title: &str, detail: &str, unit: &'static str, mut cs: Vec<Contender>, targets: &[Target]) -> Vec<Verdict> {
    println!();
    println!("== {title} ==");
    println!(
        "   {detail}; {} rounds x {} interleaved slices (rotating order); median of rounds",
        cfg.rounds, cfg.chunks
    );
    if let Some(only) = &cfg.only {
        cs.retain(|c| c.name.contains(only.as_str()));
        if cs.is_empty() {
            println!("   (no contender matches WEFT_BENCH_ONLY={only})");
            return Vec::new();
        }
    }
    let t0 = Instant::now();
    // Warm-up: code, caches, thread stacks, lazy initialisation.
    for c in cs.iter_mut() {
        (c.run)(cfg.scale * 0.1);
    }
    let k = cs.len();
    // Each round's sample of a contender is made of `chunks` slices of its work, and the
    // slices of all contenders alternate: A B C A B C ... (rotated every slice). A burst of
    // load from a neighbour then lands on every contender's sample of that round, not on one.
    let rate = unit == "acq/s";
    for r in 0..cfg.rounds {
        let mut acc = vec![0.0f64; k];
        for chunk in 0..cfg.chunks {
            for j in 0..k {
                let i = (j + r + chunk) % k;
                let v = (cs[i].run)(cfg.scale / cfg.chunks as f64);
                // Equal work per slice: times average arithmetically, rates harmonically.
                acc[i] += if rate { 1.0 / v } else { v };
            }
        }
        for (c, a) in cs.iter_mut().zip(acc) {
            let n = cfg.chunks as f64;
            c.samples.push(if rate { n / a } else { a / n });
        }
    }
    let better = if unit == "acq/s" { "higher is better" } else { "lower is better" };
    println!("   {:<40} {:>13} {:>13} {:>13}   ({})", "contender", "median", "min", "max", better);
    for c in &cs {
        let tag = match c.role {
            Role::Weft => "weft",
            Role::Peer => "peer",
            Role::Info => "info",
        };
        let min = c.samples.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = c.samples.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "   [{tag}] {:<33} {:>13} {:>13} {:>13}",
            c.name,
            fmt_value(median(&c.samples), unit),
            fmt_value(min, unit),
            fmt_value(max, unit)
        );
        if cfg.verbose {
            let all: Vec<String> = c.samples.iter().map(|v| fmt_value(*v, unit).trim().to_string()).collect();
            println!("          rounds: {}", all.join(", "));
        }
    }
    let find = |n: &str| cs.iter().find(|c| c.name == n).unwrap_or_else(|| panic!("no contender {n}"));
    println!("   ratios weft/peer: median of the per-round ratios (in brackets: median of weft / median of peer)");
    for w in cs.iter().filter(|c| c.role == Role::Weft) {
        for p in cs.iter().filter(|c| c.role != Role::Weft) {
            let ratio = median(&w.samples) / median(&p.samples);
            let paired: Vec<f64> = w.samples.iter().zip(&p.samples).map(|(a, b)| a / b).collect();
            println!("     {:<33} / {:<33} = {:>5.2}x  [{:.2}x]", w.name, p.name, median(&paired), ratio);
        }
    }
    println!("   ({:.1} s)", t0.elapsed().as_secs_f64());
    targets
        .iter()
        .filter(|t| cs.iter().any(|c| c.name == t.weft) && cs.iter().any(|c| c.name == t.peer))
        .map(|t| {
            let (w, p) = (find(t.weft), find(t.peer));
            let (wv, pv) = (median(&w.samples), median(&p.samples));
            let paired: Vec<f64> = w.samples.iter().zip(&p.samples).map(|(a, b)| a / b).collect();
            Verdict {
                id: t.id,
                what: t.what,
                weft: t.weft,
                peer: t.peer,
                weft_v: wv,
                peer_v: pv,
                ratio: median(&paired),
                ratio_of_medians: wv / pv,
                goal: t.goal,
                unit,
            }
        })
        .collect()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |key: &str| filters.is_empty() || filters.iter().any(|f| key.starts_with(f.as_str()));
    let cfg = Config {
        rounds: std::env::var("WEFT_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(7).max(1),
        chunks: std::env::var("WEFT_BENCH_CHUNKS").ok().and_then(|s| s.parse().ok()).unwrap_or(5).max(1),
        scale: std::env::var("WEFT_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0),
        only: std::env::var("WEFT_BENCH_ONLY").ok().filter(|s| !s.is_empty()),
        verbose: std::env::var("WEFT_BENCH_VERBOSE").is_ok_and(|v| !v.is_empty() && v != "0"),
    };
    let start = Instant::now();

    // SAFETY: sysconf and gnu_get_libc_version have no preconditions.
    let (online, glibc) = unsafe {
        let v = libc::gnu_get_libc_version();
        (libc::sysconf(libc::_SC_NPROCESSORS_ONLN), std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned())
    };
    let avail = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    // SAFETY: uname fills the struct.
    let kernel = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        libc::uname(&mut u);
        std::ffi::CStr::from_ptr(u.release.as_ptr()).to_string_lossy().into_owned()
    };
    println!("weft sync benchmarks (benches/sync.rs) — weft {} vs peers, one run, same machine", unsafe {
        // SAFETY: static string.
        std::ffi::CStr::from_ptr(weft::capi::status::weft_version()).to_string_lossy()
    });
    println!("CPU: {}", cpu_model());
    println!("cores: {online} online, {avail} available to this process; kernel {kernel}; glibc {glibc}");
    println!("load average at start: {}", loadavg());
    println!("rounds: {}, slices per sample: {}, scale: {}", cfg.rounds, cfg.chunks, cfg.scale);

    let sz = |base: f64, s: f64| ((base * s).round() as u64).max(1);
    let mut verdicts = Vec::new();

    if want("uncontended") {
        // glibc (2.34+) skips the atomic instructions of a private mutex while the process has
        // never created a thread (SINGLE_THREAD_P): a plain load and store. That is what a
        // single-threaded C program pays, but not what a program that has threads — the
        // programs locks exist for — pays. Shown for information, before any thread exists.
        const N: f64 = 10_000_000.0;
        let (w, p) = (WeftLock::new(), PthreadMutex::new());
        let (w, p) = (&w, &p);
        bench(
            &cfg,
            "1-info. Uncontended lock+unlock pair, process still single-threaded (glibc elides atomics)",
            &format!("{} pairs per sample; ns per pair", N as u64),
            "ns",
            vec![
                contender("weft_lock acquire+release (C ABI)", Role::Weft, move |s| uncontended(w, sz(N, s))),
                contender("pthread_mutex, single-threaded", Role::Info, move |s| uncontended(p, sz(N, s))),
            ],
            &[],
        );
    }
    // From here on the process is multi-threaded, as every program that needs a lock is: a
    // helper thread stays parked (in a futex wait) until the end of the run.
    let (park_tx, park_rx) = std::sync::mpsc::channel::<()>();
    let parked = std::thread::spawn(move || {
        let _ = park_rx.recv();
    });

    if want("uncontended") {
        const N: f64 = 10_000_000.0;
        let (w, p, pl) = (WeftLock::new(), PthreadMutex::new(), ParkingLot::new());
        let (w, p, pl) = (&w, &p, &pl);
        verdicts.extend(bench(
            &cfg,
            "1. Uncontended lock+unlock pair (one thread; the process has other threads)",
            &format!("{} pairs per sample; ns per pair", N as u64),
            "ns",
            vec![
                contender("weft_lock acquire+release (C ABI)", Role::Weft, move |s| uncontended(w, sz(N, s))),
                contender("pthread_mutex lock+unlock", Role::Peer, move |s| uncontended(p, sz(N, s))),
                contender("parking_lot RawMutex lock+unlock", Role::Info, move |s| uncontended(pl, sz(N, s))),
            ],
            &[Target {
                id: "1",
                what: "uncontended lock+unlock",
                weft: "weft_lock acquire+release (C ABI)",
                peer: "pthread_mutex lock+unlock",
                goal: Goal::AtMost(1.2),
            }],
        ));
    }

    if want("contended") {
        const N: f64 = 6_000_000.0;
        verdicts.extend(bench(
            &cfg,
            "2. Contended lock throughput (2 threads, lock / counter += 1 / unlock)",
            &format!("{} acquisitions per thread per sample; total acquisitions per second", N as u64),
            "acq/s",
            vec![
                contender("weft_lock (C ABI), std threads", Role::Weft, |s| {
                    contended(&WeftLock::new(), sz(N, s), Threads::Std)
                }),
                contender("pthread_mutex, std threads", Role::Peer, |s| {
                    contended(&PthreadMutex::new(), sz(N, s), Threads::Std)
                }),
                contender("parking_lot RawMutex, std threads", Role::Info, |s| {
                    contended(&ParkingLot::new(), sz(N, s), Threads::Std)
                }),
                contender("weft_lock (C ABI), weft threads", Role::Info, |s| {
                    contended(&WeftLock::new(), sz(N, s), Threads::Weft)
                }),
            ],
            &[Target {
                id: "2",
                what: "contended lock throughput",
                weft: "weft_lock (C ABI), std threads",
                peer: "pthread_mutex, std threads",
                goal: Goal::AtLeast(1.0),
            }],
        ));
    }

    if want("pingpong") {
        const N: f64 = 20_000.0;
        let one = Placement::OneCpu(first_allowed_cpu());
        let cpu = first_allowed_cpu();
        verdicts.extend(bench(
            &cfg,
            &format!("3. Ping-pong round trip between two threads, both pinned to CPU {cpu}"),
            &format!("{} round trips per sample; ns per round trip", N as u64),
            "ns",
            vec![
                contender("weft Event pair (C ABI)", Role::Weft, move |s| {
                    pingpong_weft_event(sz(N, s), Threads::Std, one)
                }),
                contender("weft Lock+Condition (C ABI)", Role::Weft, move |s| {
                    pingpong_weft_condition(sz(N, s), Threads::Std, one)
                }),
                contender("pthread mutex+condvar", Role::Peer, move |s| pingpong_pthread_condvar(sz(N, s), one)),
                contender("raw futex word (OS floor)", Role::Info, move |s| pingpong_futex(sz(N, s), one)),
                contender("weft Event pair, weft threads", Role::Info, move |s| {
                    pingpong_weft_event(sz(N, s), Threads::Weft, one)
                }),
            ],
            &[
                Target {
                    id: "3a",
                    what: "ping-pong, Event pair",
                    weft: "weft Event pair (C ABI)",
                    peer: "pthread mutex+condvar",
                    goal: Goal::AtMost(1.0),
                },
                Target {
                    id: "3b",
                    what: "ping-pong, Lock+Condition",
                    weft: "weft Lock+Condition (C ABI)",
                    peer: "pthread mutex+condvar",
                    goal: Goal::AtMost(1.0),
                },
            ],
        ));
        // Information: the scheduler's placement. On a VM whose other virtual CPU is idle, each
        // cross-CPU wake-up can cost tens of microseconds of hypervisor latency, identical for
        // every contender; the ratios then drift towards 1.0 and measure the host, not weft.
        const NF: f64 = 5_000.0;
        let free = Placement::Free;
        bench(
            &cfg,
            "3-info. Ping-pong round trip, threads placed by the scheduler (usually one per CPU)",
            &format!("{} round trips per sample; ns per round trip", NF as u64),
            "ns",
            vec![
                contender("weft Event pair (C ABI)", Role::Weft, move |s| {
                    pingpong_weft_event(sz(NF, s), Threads::Std, free)
                }),
                contender("weft Lock+Condition (C ABI)", Role::Weft, move |s| {
                    pingpong_weft_condition(sz(NF, s), Threads::Std, free)
                }),
                contender("pthread mutex+condvar", Role::Peer, move |s| pingpong_pthread_condvar(sz(NF, s), free)),
                contender("raw futex word (OS floor)", Role::Info, move |s| pingpong_futex(sz(NF, s), free)),
            ],
            &[],
        );
    }

    if want("thread") {
        const N: f64 = 10_000.0;
        verdicts.extend(bench(
            &cfg,
            "4. Thread start + join of a trivial task",
            &format!("{} threads per sample, one at a time; ns per start+join", N as u64),
            "ns",
            vec![
                contender("weft_thread_start+join+free", Role::Weft, |s| threads_weft(sz(N, s))),
                contender("pthread_create+pthread_join", Role::Peer, |s| threads_pthread(sz(N, s))),
                contender("std::thread::spawn+join", Role::Info, |s| threads_std(sz(N, s))),
            ],
            &[Target {
                id: "4",
                what: "thread start+join",
                weft: "weft_thread_start+join+free",
                peer: "pthread_create+pthread_join",
                goal: Goal::AtMost(1.2),
            }],
        ));
    }

    println!();
    println!("== Summary: targets (ratio = median of per-round weft/peer ratios; medians shown) ==");
    for v in &verdicts {
        let goal = match v.goal {
            Goal::AtMost(x) => format!("<= {x:.2}x"),
            Goal::AtLeast(x) => format!(">= {x:.2}x"),
        };
        println!(
            "   {:<3} {:<27} weft {} vs {} {}: {:>5.2}x [{:.2}x] (target {goal})  {}",
            v.id,
            v.what,
            fmt_value(v.weft_v, v.unit).trim(),
            v.peer,
            fmt_value(v.peer_v, v.unit).trim(),
            v.ratio,
            v.ratio_of_medians,
            if v.pass() { "PASS" } else { "MISS" }
        );
    }
    let pp: Vec<&Verdict> = verdicts.iter().filter(|v| v.id.starts_with('3')).collect();
    if !pp.is_empty() {
        let meeting: Vec<&str> = pp.iter().filter(|v| v.pass()).map(|v| v.weft).collect();
        if meeting.is_empty() {
            println!("   3   ping-pong: no weft variant meets <= 1.00x of the pthread condvar pair  MISS");
        } else {
            println!("   3   ping-pong: met by {}  PASS", meeting.join(" and "));
        }
    }
    drop(park_tx);
    parked.join().unwrap();
    println!("load average at end: {}", loadavg());
    println!("total time: {:.1} s", start.elapsed().as_secs_f64());
}
