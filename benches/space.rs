//! weft's shared-memory objects vs their peers, side by side in one run (DESIGN.md §6, issue 3).
//! See benches/README.md.
//!
//! `cargo bench --bench space [-- FILTER...]` runs the three benchmarks (or those whose key
//! starts with one of the FILTER words: `uncontended`, `handoff`, `value`).
//!
//! Method: as `benches/sync.rs`. Every benchmark measures each contender for `ROUNDS` rounds. A
//! round's sample of a contender is the mean of `CHUNKS` slices of its work, and the slices of
//! all contenders alternate (in an order that rotates every slice), so that a burst of load
//! from a noisy neighbour hurts every contender alike. Tables show the median, min and max of
//! the per-round samples. Ratios are weft/peer: the median of the per-round ratios, which
//! decides PASS/MISS, and in brackets the ratio of the medians. Every sample checks its own
//! work (counts, return codes, that a lock excludes) and a failed check aborts the run.
//!
//! Two-process benchmarks fork two fresh worker processes per slice (the Python peer: two
//! `multiprocessing.Process` children). Each worker does one warm-up operation, signals that
//! it is ready and waits at a start gate; the time is from the earliest worker's start to the
//! latest worker's end (CLOCK_MONOTONIC), so process creation is not timed. In the target
//! tables the workers are pinned one per CPU, so that they really contend; table 2-info lets
//! the scheduler place them.
//!
//! weft is called through its exported `extern "C"` functions, through function pointers the
//! optimiser cannot see through (what a C caller of `libweft.so` pays); rows marked "Rust API"
//! call `weft::sync::RobustLock` directly, for comparison.
//!
//! Environment: `WEFT_BENCH_ROUNDS` (default 7), `WEFT_BENCH_CHUNKS` (default 5),
//! `WEFT_BENCH_SCALE` (default 1.0), `WEFT_BENCH_ONLY` (run only the contenders whose name
//! contains it), `WEFT_BENCH_VERBOSE=1` (print every round's sample), `WEFT_BENCH_PYTHON`
//! (the interpreter for the multiprocessing peer, default `python3`).

#![allow(clippy::missing_safety_doc)]

use std::cell::{RefCell, UnsafeCell};
use std::ffi::c_char;
use std::hint::black_box;
use std::ptr::null_mut;
use std::rc::Rc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};
use std::time::Instant;

use weft::capi::array::{
    weft_array, weft_array_fetch_add, weft_array_free, weft_array_get, weft_array_load, weft_array_lock,
    weft_array_new_in, weft_array_set, weft_array_store, weft_array_unlock,
};
use weft::capi::lock::{weft_lock, weft_lock_acquire, weft_lock_free, weft_lock_new, weft_lock_new_in, weft_lock_release};
use weft::futex::{Interrupt, SharedWord};
use weft::status::{weft_status, WEFT_OK, WEFT_WOULD_BLOCK};
use weft::sync::RobustLock;
use weft::time::{Deadline, WEFT_FOREVER};

// ---------------------------------------------------------------------------------------------
// The C ABI, through opaque function pointers (as a C caller of the shared library sees it).

type LockAcquireFn = unsafe extern "C" fn(*mut weft_lock, u64) -> weft_status;
type LockReleaseFn = unsafe extern "C" fn(*mut weft_lock) -> weft_status;
type FetchAddFn = unsafe extern "C" fn(*mut weft_array, usize, i64, *mut i64) -> weft_status;
type ArrayLockFn = unsafe extern "C" fn(*mut weft_array, u64) -> weft_status;
type ArrayUnlockFn = unsafe extern "C" fn(*mut weft_array) -> weft_status;
type ArrayGetFn = unsafe extern "C" fn(*const weft_array, usize, *mut std::ffi::c_void, usize) -> weft_status;
type ArraySetFn = unsafe extern "C" fn(*mut weft_array, usize, *const std::ffi::c_void, usize) -> weft_status;

#[derive(Clone, Copy)]
struct Api {
    lock_acquire: LockAcquireFn,
    lock_release: LockReleaseFn,
    fetch_add: FetchAddFn,
    array_lock: ArrayLockFn,
    array_unlock: ArrayUnlockFn,
    array_get: ArrayGetFn,
    array_set: ArraySetFn,
}

fn api() -> Api {
    black_box(Api {
        lock_acquire: weft_lock_acquire,
        lock_release: weft_lock_release,
        fetch_add: weft_array_fetch_add,
        array_lock: weft_array_lock,
        array_unlock: weft_array_unlock,
        array_get: weft_array_get,
        array_set: weft_array_set,
    })
}

fn check(rc: weft_status, what: &str) {
    assert!(rc == WEFT_OK, "{what} returned {rc}");
}

// ---------------------------------------------------------------------------------------------
// Anonymous MAP_SHARED memory: what fork() children share with their parent.

struct Mapping<T> {
    p: *mut T,
    len: usize,
}

impl<T> Mapping<T> {
    /// A zero-filled shared mapping holding `value`.
    fn new(value: T) -> Self {
        let len = std::mem::size_of::<T>().max(1).next_multiple_of(4096);
        // SAFETY: a fresh anonymous mapping; checked for failure.
        let p = unsafe {
            libc::mmap(
                null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap failed");
        let p = p as *mut T;
        // SAFETY: page-aligned (>= align of T), `len` >= size of T, writable.
        unsafe { p.write(value) };
        Mapping { p, len }
    }
    fn get(&self) -> &T {
        // SAFETY: initialised in `new`, mapped until drop.
        unsafe { &*self.p }
    }
}

impl<T> Drop for Mapping<T> {
    fn drop(&mut self) {
        // SAFETY: our mapping; no reference outlives `self`.
        unsafe { libc::munmap(self.p as *mut libc::c_void, self.len) };
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ---------------------------------------------------------------------------------------------
// Locks under test: all usable from several processes.

trait ProcLock {
    fn lock(&self) -> i32;
    fn unlock(&self) -> i32;
    /// Called while the caller holds the lock: true when a try-lock correctly fails.
    fn excludes(&self) -> bool;
}

/// A weft shared lock (Python's `multiprocessing.Lock`) in the default space, through the C ABI.
struct WeftShared {
    l: *mut weft_lock,
    api: Api,
}

impl WeftShared {
    fn new() -> Self {
        let mut l = null_mut();
        // SAFETY: NULL space (the default one, which forked children inherit), unnamed.
        check(unsafe { weft_lock_new_in(null_mut(), std::ptr::null(), &mut l) }, "weft_lock_new_in");
        WeftShared { l, api: api() }
    }
    /// A private weft lock (information: what the shared one adds).
    fn private() -> Self {
        let mut l = null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { weft_lock_new(&mut l) }, "weft_lock_new");
        WeftShared { l, api: api() }
    }
}
impl Drop for WeftShared {
    fn drop(&mut self) {
        // SAFETY: our handle, no longer used.
        unsafe { weft_lock_free(self.l) }
    }
}
impl ProcLock for WeftShared {
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

/// weft's `RobustLock<SharedWord>` (what a shared `weft_lock` holds) in a MAP_SHARED mapping,
/// called through the Rust API, with the arguments `weft_lock_acquire` passes.
struct WeftRust(Mapping<RobustLock<SharedWord>>);
impl WeftRust {
    fn new() -> Self {
        WeftRust(Mapping::new(RobustLock::new()))
    }
}
impl ProcLock for WeftRust {
    #[inline(always)]
    fn lock(&self) -> i32 {
        match self.0.get().acquire(Deadline::Never, Interrupt::Cancellable) {
            Ok(()) => 0,
            Err(e) => e.code,
        }
    }
    #[inline(always)]
    fn unlock(&self) -> i32 {
        match self.0.get().release() {
            Ok(()) => 0,
            Err(e) => e.code,
        }
    }
    fn excludes(&self) -> bool {
        self.0.get().acquire(Deadline::Now, Interrupt::Cancellable).is_err_and(|e| e.code == WEFT_WOULD_BLOCK)
    }
}

/// A process-shared pthread mutex in a MAP_SHARED mapping, robust or not.
struct PthreadShared(Mapping<UnsafeCell<libc::pthread_mutex_t>>);
impl PthreadShared {
    fn new(robust: bool) -> Self {
        let m = Mapping::new(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER));
        // SAFETY: attribute calls on a local attr; the mutex is initialised in place, in the
        // shared mapping, before any other process exists.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
            assert_eq!(libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED), 0);
            if robust {
                assert_eq!(libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST), 0);
            }
            assert_eq!(libc::pthread_mutex_init(m.get().get(), &attr), 0);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        PthreadShared(m)
    }
    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.0.get().get()
    }
}
impl Drop for PthreadShared {
    fn drop(&mut self) {
        // SAFETY: initialised, unlocked, no longer used.
        unsafe { libc::pthread_mutex_destroy(self.raw()) };
    }
}
impl ProcLock for PthreadShared {
    #[inline(always)]
    fn lock(&self) -> i32 {
        // SAFETY: initialised mutex. EOWNERDEAD would be returned as is, and fails the checks.
        unsafe { libc::pthread_mutex_lock(self.raw()) }
    }
    #[inline(always)]
    fn unlock(&self) -> i32 {
        // SAFETY: held by the caller.
        unsafe { libc::pthread_mutex_unlock(self.raw()) }
    }
    fn excludes(&self) -> bool {
        // SAFETY: initialised mutex; a normal (robust or not) mutex's trylock by its holder
        // gives EBUSY.
        unsafe { libc::pthread_mutex_trylock(self.raw()) == libc::EBUSY }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Uncontended acquire+release, one process: ns per pair.

fn uncontended<L: ProcLock>(l: &L, n: u64) -> f64 {
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
// Two forked worker processes with a start gate.

/// Shared between the bench process and its two workers (in a MAP_SHARED mapping).
#[repr(C, align(64))]
struct Gate {
    ready: AtomicU32,
    go: AtomicU32,
    /// Start and end (CLOCK_MONOTONIC ns) of worker 0, then worker 1.
    times: [AtomicU64; 4],
    handoffs: [AtomicU64; 2],
    /// On its own cache line: touched only under the lock being measured.
    data: Guarded,
    /// On its own cache line: the lock-free counter of benchmark 3's floor.
    atomic: Line<AtomicI64>,
}

#[repr(C, align(64))]
struct Line<T>(T);

#[repr(C, align(64))]
struct Guarded {
    counter: UnsafeCell<u64>,
    last: UnsafeCell<u32>,
}

impl Gate {
    fn new() -> Mapping<Gate> {
        Mapping::new(Gate {
            ready: AtomicU32::new(0),
            go: AtomicU32::new(0),
            times: Default::default(),
            handoffs: Default::default(),
            data: Guarded { counter: UnsafeCell::new(0), last: UnsafeCell::new(u32::MAX) },
            atomic: Line(AtomicI64::new(0)),
        })
    }
    fn reset(&self) {
        self.ready.store(0, SeqCst);
        self.go.store(0, SeqCst);
        for t in &self.times {
            t.store(0, SeqCst);
        }
        for h in &self.handoffs {
            h.store(0, SeqCst);
        }
        // SAFETY: no worker runs now.
        unsafe {
            *self.data.counter.get() = 0;
            *self.data.last.get() = u32::MAX;
        }
        self.atomic.0.store(0, SeqCst);
    }
    /// Worker side: signals readiness, waits for the start signal, records the start time.
    fn enter(&self, me: usize) {
        self.ready.fetch_add(1, SeqCst);
        while self.go.load(Acquire) == 0 {
            std::hint::spin_loop();
        }
        self.times[2 * me].store(now_ns(), Relaxed);
    }
    fn leave(&self, me: usize, handoffs: u64) {
        self.times[2 * me + 1].store(now_ns(), Relaxed);
        self.handoffs[me].store(handoffs, Relaxed);
    }
    /// Caller holds the lock. Volatile: a real read-modify-write every time, so a lock that
    /// fails to exclude loses increments. Returns 1 when the previous holder was the other
    /// worker (a hand-off).
    #[inline(always)]
    unsafe fn increment(&self, me: u32) -> u64 {
        let (c, l) = (self.data.counter.get(), self.data.last.get());
        // SAFETY: per the caller's contract, no other process touches these now.
        unsafe {
            c.write_volatile(c.read_volatile() + 1);
            if l.read_volatile() != me {
                l.write_volatile(me);
                1
            } else {
                0
            }
        }
    }
    fn counter(&self) -> u64 {
        // SAFETY: called when no worker runs.
        unsafe { *self.data.counter.get() }
    }
}

/// Where the two workers run.
#[derive(Clone, Copy)]
enum Placement {
    /// Worker i pinned to CPU i of this list (one worker per CPU on a 2-core machine): the two
    /// really run at the same time, so the lock or the cache line really is contended.
    Spread([usize; 2]),
    /// Wherever the scheduler puts them. When the other CPU is busy (a noisy neighbour), the
    /// two workers share one CPU and mostly run one after the other: little contention.
    Free,
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    let mut v = Vec::new();
    // SAFETY: sched_getaffinity fills a zeroed cpu_set_t of the size given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            for cpu in 0..libc::CPU_SETSIZE as usize {
                if libc::CPU_ISSET(cpu, &set) {
                    v.push(cpu);
                }
            }
        }
    }
    if v.is_empty() {
        v.push(0);
    }
    v
}

/// Worker `me`'s placement: one CPU per worker, the first two allowed CPUs (the same CPU
/// twice when only one is allowed).
fn spread() -> Placement {
    let cpus = allowed_cpus();
    Placement::Spread([cpus[0], cpus[1 % cpus.len()]])
}

fn pin(placement: Placement, me: usize) -> bool {
    match placement {
        Placement::Free => true,
        Placement::Spread(cpus) => {
            // SAFETY: a zeroed cpu_set_t with one CPU set, for the calling process.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpus[me], &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
            }
        }
    }
}

/// Forks two workers running `body(me)` (me = 0, 1), placed per `placement`, which must call
/// `gate.enter(me)` before and `gate.leave(me, _)` after the timed part and return true on
/// success. Returns the time from the earliest start to the latest end, in ns, and the total
/// hand-offs recorded.
fn two_processes(gate: &Gate, placement: Placement, body: &dyn Fn(usize) -> bool) -> (f64, u64) {
    let mut pids = [0; 2];
    for (me, pid) in pids.iter_mut().enumerate() {
        // SAFETY: the child runs `body` (weft calls, atomics, libc) and leaves with _exit,
        // running no destructor and no atexit handler of the parent's.
        let p = unsafe { libc::fork() };
        assert!(p >= 0, "fork failed");
        if p == 0 {
            let ok = pin(placement, me)
                && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(me))).unwrap_or(false);
            // SAFETY: ends the child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        *pid = p;
    }
    let mut spins = 0u64;
    while gate.ready.load(SeqCst) < 2 {
        spins += 1;
        if spins % 1024 == 0 {
            for &p in &pids {
                let mut st = 0;
                // SAFETY: our child; WNOHANG.
                let r = unsafe { libc::waitpid(p, &mut st, libc::WNOHANG) };
                assert!(r == 0, "a worker process ended before the start (status {st})");
            }
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
    gate.go.store(1, Release);
    for p in pids {
        let mut st = 0;
        // SAFETY: our child.
        let r = unsafe { libc::waitpid(p, &mut st, 0) };
        assert!(r == p, "waitpid failed");
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "a worker process failed (status {st})");
    }
    let t: Vec<u64> = gate.times.iter().map(|t| t.load(SeqCst)).collect();
    assert!(t.iter().all(|&x| x != 0), "a worker did not record its times");
    let elapsed = t[1].max(t[3]) - t[0].min(t[2]);
    let handoffs = gate.handoffs.iter().map(|h| h.load(SeqCst)).sum();
    (elapsed as f64, handoffs)
}

// ---------------------------------------------------------------------------------------------
// 2. Lock hand-off between two processes: each runs n × (acquire, counter += 1, release).
// Result: ns per acquisition (elapsed / 2n), and hand-offs per 1000 acquisitions.

fn handoff<L: ProcLock>(l: &L, gate: &Gate, n: u64, placement: Placement) -> (f64, f64) {
    gate.reset();
    let (elapsed, handoffs) = two_processes(gate, placement, &|me| {
        // Warm-up, untimed: first use in this process (for weft: its thread identity).
        let mut rc = l.lock() | l.unlock();
        gate.enter(me);
        let mut h = 0;
        for _ in 0..n {
            rc |= l.lock();
            // SAFETY: under the lock.
            h += unsafe { gate.increment(me as u32) };
            rc |= l.unlock();
        }
        gate.leave(me, h);
        rc == 0
    });
    assert_eq!(gate.counter(), 2 * n, "lost updates: the lock did not exclude");
    assert!(l.lock() == 0 && l.excludes() && l.unlock() == 0, "the lock is not free and working after the run");
    (elapsed / (2 * n) as f64, handoffs as f64 * 1000.0 / (2 * n) as f64)
}

// ---------------------------------------------------------------------------------------------
// 3. Atomic add on a shared value from two processes: ns per increment (elapsed / 2n).

struct WeftValue {
    a: *mut weft_array,
    api: Api,
}
impl WeftValue {
    /// `multiprocessing.Value('q')`: one int64 item, with a lock (Python's default).
    fn new() -> Self {
        let mut a = null_mut();
        // SAFETY: default space, unnamed, zero-initialised, with a lock.
        check(
            unsafe { weft_array_new_in(null_mut(), std::ptr::null(), b'q' as c_char, 1, std::ptr::null(), true, &mut a) },
            "weft_array_new_in",
        );
        WeftValue { a, api: api() }
    }
    fn load(&self) -> i64 {
        let mut v = 0;
        // SAFETY: live handle, valid out-pointer.
        check(unsafe { weft_array_load(self.a, 0, &mut v) }, "weft_array_load");
        v
    }
    fn store(&self, v: i64) {
        // SAFETY: live handle.
        check(unsafe { weft_array_store(self.a, 0, v) }, "weft_array_store");
    }
    #[inline(always)]
    fn fetch_add(&self) -> i32 {
        // SAFETY: live handle; `previous` may be NULL.
        unsafe { (self.api.fetch_add)(self.a, 0, 1, null_mut()) }
    }
    /// Python's `with v.get_lock(): v.value += 1`.
    #[inline(always)]
    fn locked_increment(&self) -> i32 {
        let mut v = 0i64;
        // SAFETY: live handle; `v` is an 8-byte item buffer.
        unsafe {
            let mut rc = (self.api.array_lock)(self.a, WEFT_FOREVER);
            rc |= (self.api.array_get)(self.a, 0, &mut v as *mut i64 as *mut _, 8);
            v += 1;
            rc |= (self.api.array_set)(self.a, 0, &v as *const i64 as *const _, 8);
            rc | (self.api.array_unlock)(self.a)
        }
    }
}
impl Drop for WeftValue {
    fn drop(&mut self) {
        // SAFETY: our handle, no longer used.
        unsafe { weft_array_free(self.a) }
    }
}

#[derive(Clone, Copy)]
enum ValueOp {
    FetchAdd,
    Locked,
}

fn value_weft(v: &WeftValue, gate: &Gate, n: u64, op: ValueOp, placement: Placement) -> f64 {
    gate.reset();
    v.store(0);
    let (elapsed, _) = two_processes(gate, placement, &|me| {
        let step = || match op {
            ValueOp::FetchAdd => v.fetch_add(),
            ValueOp::Locked => v.locked_increment(),
        };
        let mut rc = step(); // warm-up, untimed
        gate.enter(me);
        for _ in 0..n {
            rc |= step();
        }
        gate.leave(me, 0);
        rc == 0
    });
    assert_eq!(v.load(), 2 * n as i64 + 2, "lost updates on the weft value");
    elapsed / (2 * n) as f64
}

/// The floor: a bare `lock xadd` on a word in the shared mapping.
fn value_atomic(gate: &Gate, n: u64, placement: Placement) -> f64 {
    gate.reset();
    let a = &gate.atomic.0;
    let (elapsed, _) = two_processes(gate, placement, &|me| {
        a.fetch_add(1, SeqCst);
        gate.enter(me);
        for _ in 0..n {
            black_box(a).fetch_add(1, SeqCst);
        }
        gate.leave(me, 0);
        true
    });
    assert_eq!(a.load(SeqCst), 2 * n as i64 + 2, "lost updates on the atomic");
    elapsed / (2 * n) as f64
}

// ---------------------------------------------------------------------------------------------
// CPython's multiprocessing, run by benches/mp_peer.py (one interpreter for the whole run).

struct MpPeer(PyPeer);

impl MpPeer {
    fn start() -> Option<MpPeer> {
        // A first command checks that the script works.
        PyPeer::start(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/mp_peer.py"), "value 10").map(MpPeer)
    }

    /// Runs one command; (elapsed ns, hand-offs).
    fn run(&mut self, kind: &str, n: u64, placement: Placement) -> Result<(f64, u64), String> {
        let cpus = match placement {
            Placement::Spread([a, b]) => format!(" {a} {b}"),
            Placement::Free => String::new(),
        };
        match self.0.ask(&format!("{kind} {n}{cpus}"))?.as_slice() {
            [e, h] => Ok((e.parse().map_err(|_| format!("mp_peer.py: {e}"))?, h.parse().map_err(|_| format!("mp_peer.py: {h}"))?)),
            other => Err(format!("mp_peer.py: {other:?}")),
        }
    }

    fn python_version() -> String {
        PyPeer::version()
    }
}

// The harness lives in benches/common/harness.rs.
mod common;
use common::harness::*;
use common::pypeer::PyPeer;

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |key: &str| filters.is_empty() || filters.iter().any(|f| key.starts_with(f.as_str()));
    let cfg = Config::from_env();
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
    println!("weft space benchmarks (benches/space.rs) — weft {} vs peers, one run, same machine", unsafe {
        // SAFETY: static string.
        std::ffi::CStr::from_ptr(weft::capi::status::weft_version()).to_string_lossy()
    });
    println!("CPU: {}", cpu_model());
    println!("cores: {online} online, {avail} available to this process; kernel {kernel}; glibc {glibc}");
    println!("multiprocessing peer: {} (benches/mp_peer.py)", MpPeer::python_version());
    println!("load average at start: {}", loadavg());
    println!("rounds: {}, slices per sample: {}, scale: {}", cfg.rounds, cfg.chunks, cfg.scale);

    // As in benches/sync.rs, the bench process has a second thread (parked in a futex wait):
    // programs that need locks have threads. Forked workers have one thread each.
    let (park_tx, park_rx) = std::sync::mpsc::channel::<()>();
    let parked = std::thread::spawn(move || {
        let _ = park_rx.recv();
    });

    let sz = |base: f64, s: f64| ((base * s).round() as u64).max(1);
    let mut verdicts = Vec::new();
    let needs_python = want("handoff") || want("value");
    let py = if needs_python { MpPeer::start() } else { None };
    if needs_python && py.is_none() {
        println!("(the multiprocessing peer could not start: Python rows are skipped)");
    }
    let py = Rc::new(RefCell::new(py));
    let gate = Gate::new();
    let gate = gate.get();

    if want("uncontended") {
        const N: f64 = 5_000_000.0;
        let (w, p, wr, pn, wp) =
            (WeftShared::new(), PthreadShared::new(true), WeftRust::new(), PthreadShared::new(false), WeftShared::private());
        let (w, p, wr, pn, wp) = (&w, &p, &wr, &pn, &wp);
        verdicts.extend(bench(
            &cfg,
            "1. Process-shared lock, uncontended acquire+release (one process)",
            &format!("{} pairs per sample; ns per pair", N as u64),
            vec![
                contender("weft shared lock (C ABI)", Role::Weft, move |s| uncontended(w, sz(N, s))),
                contender("pthread_mutex pshared+robust", Role::Peer, move |s| uncontended(p, sz(N, s))),
                contender("weft RobustLock (Rust API)", Role::Info, move |s| uncontended(wr, sz(N, s))),
                contender("pthread_mutex pshared, not robust", Role::Info, move |s| uncontended(pn, sz(N, s))),
                contender("weft private lock (C ABI)", Role::Info, move |s| uncontended(wp, sz(N, s))),
            ],
            &[Target {
                id: "1",
                what: "shared lock, uncontended",
                weft: "weft shared lock (C ABI)",
                peer: "pthread_mutex pshared+robust",
                goal: Goal::AtMost(1.3),
            }],
        ));
    }

    if want("handoff") {
        const N: f64 = 1_500_000.0;
        const NPY: f64 = 150_000.0;
        let (w, p, wr, pn) = (WeftShared::new(), PthreadShared::new(true), WeftRust::new(), PthreadShared::new(false));
        let (w, p, wr, pn) = (&w, &p, &wr, &pn);
        let place = spread();
        let mut cs = vec![
            contender_h("weft shared lock (C ABI)", Role::Weft, move |s| handoff(w, gate, sz(N, s), place)),
            contender_h("pthread_mutex pshared+robust", Role::Peer, move |s| handoff(p, gate, sz(N, s), place)),
            contender_h("weft RobustLock (Rust API)", Role::Info, move |s| handoff(wr, gate, sz(N, s), place)),
            contender_h("pthread_mutex pshared, not robust", Role::Info, move |s| handoff(pn, gate, sz(N, s), place)),
        ];
        if py.borrow().is_some() {
            let py = py.clone();
            cs.push(contender_h("Python multiprocessing.Lock", Role::Peer, move |s| {
                let n = sz(NPY, s);
                let (e, h) = py.borrow_mut().as_mut().unwrap().run("lock", n, place).unwrap_or_else(|e| panic!("{e}"));
                (e / (2 * n) as f64, h as f64 * 1000.0 / (2 * n) as f64)
            }));
        }
        let Placement::Spread(cpus) = place else { unreachable!() };
        verdicts.extend(bench(
            &cfg,
            &format!(
                "2. Lock hand-off between two processes pinned to CPUs {} and {} (acquire / counter += 1 / release)",
                cpus[0], cpus[1]
            ),
            &format!(
                "2 forked workers x {} acquisitions per sample ({} for Python); ns per acquisition = elapsed / total",
                N as u64, NPY as u64
            ),
            cs,
            &[Target {
                id: "2",
                what: "shared lock, two processes",
                weft: "weft shared lock (C ABI)",
                peer: "pthread_mutex pshared+robust",
                goal: Goal::AtMost(1.0),
            }],
        ));
        // Information: the same, placed by the scheduler. When the other CPU is busy, the
        // workers share one CPU and mostly run one after the other (few hand-offs): this then
        // measures the uncontended path more than the hand-off.
        let free = Placement::Free;
        bench(
            &cfg,
            "2-info. Lock hand-off between two processes placed by the scheduler",
            &format!("2 forked workers x {} acquisitions per sample; ns per acquisition = elapsed / total", N as u64),
            vec![
                contender_h("weft shared lock (C ABI)", Role::Weft, move |s| handoff(w, gate, sz(N, s), free)),
                contender_h("pthread_mutex pshared+robust", Role::Peer, move |s| handoff(p, gate, sz(N, s), free)),
                contender_h("pthread_mutex pshared, not robust", Role::Info, move |s| handoff(pn, gate, sz(N, s), free)),
            ],
            &[],
        );
    }

    if want("value") {
        const N: f64 = 2_000_000.0;
        const NLOCKED: f64 = 500_000.0;
        const NPY: f64 = 100_000.0;
        let (v, vl) = (WeftValue::new(), WeftValue::new());
        let (v, vl) = (&v, &vl);
        let place = spread();
        let mut cs = vec![
            contender("weft_array_fetch_add (C ABI)", Role::Weft, move |s| {
                value_weft(v, gate, sz(N, s), ValueOp::FetchAdd, place)
            }),
            contender("weft lock+get+set+unlock (C ABI)", Role::Info, move |s| {
                value_weft(vl, gate, sz(NLOCKED, s), ValueOp::Locked, place)
            }),
            contender("atomic lock xadd on the mapping", Role::Info, move |s| value_atomic(gate, sz(N, s), place)),
        ];
        if py.borrow().is_some() {
            let py = py.clone();
            cs.push(contender("Python Value, with get_lock(): += 1", Role::Peer, move |s| {
                let n = sz(NPY, s);
                let (e, _) = py.borrow_mut().as_mut().unwrap().run("value", n, place).unwrap_or_else(|e| panic!("{e}"));
                e / (2 * n) as f64
            }));
        }
        let Placement::Spread(cpus) = place else { unreachable!() };
        verdicts.extend(bench(
            &cfg,
            &format!("3. Increment a shared int64 Value from two processes pinned to CPUs {} and {}", cpus[0], cpus[1]),
            &format!(
                "2 forked workers x {} increments per sample ({} locked, {} for Python); ns per increment = elapsed / total",
                N as u64, NLOCKED as u64, NPY as u64
            ),
            cs,
            &[Target {
                id: "3",
                what: "Value increment",
                weft: "weft_array_fetch_add (C ABI)",
                peer: "Python Value, with get_lock(): += 1",
                goal: Goal::FasterBy(20.0),
            }],
        ));
    }
    print_summary(&verdicts);
    drop(py);
    drop(park_tx);
    parked.join().unwrap();
    println!("load average at end: {}", loadavg());
    println!("total time: {:.1} s", start.elapsed().as_secs_f64());
}
