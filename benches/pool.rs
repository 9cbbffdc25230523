//! weft's thread and process pools vs their peers, side by side in one run (DESIGN.md §6).
//! See benches/README.md.
//!
//! `cargo bench --bench pool [-- FILTER...]` runs the benchmarks (or those whose key starts
//! with one of the FILTER words: `threads`, `scaling`, `processes`, `map`).
//!
//! Method: the harness of benches/common (interleaved slices in rotating order, several
//! rounds, median of rounds, ratios of per-round samples). Every sample checks its own work
//! (the count and the value of every result) and a failed check aborts the run. weft is called
//! through its exported `extern "C"` functions with a C task function; process pools start
//! their workers with fork (the task functions are this binary's). The peers: rayon (a pool
//! of 2 threads built once), GLib's GThreadPool (loaded at run time; left out when
//! libglib-2.0.so.0 is missing; built once) and CPython's concurrent.futures executors and
//! multiprocessing.Pool (benches/pool_peer.py, one long-running interpreter). Every pool is
//! built once per benchmark, not per sample.
//!
//! Environment: `WEFT_BENCH_ROUNDS` (default 7), `WEFT_BENCH_CHUNKS` (default 5),
//! `WEFT_BENCH_SCALE` (default 1.0), `WEFT_BENCH_ONLY`, `WEFT_BENCH_VERBOSE=1`,
//! `WEFT_BENCH_PYTHON` (default `python3`).

mod common;

use common::harness::*;
use common::pypeer::PyPeer;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicU32, Ordering};

use weft::capi::call::{weft_call, weft_call_arg, weft_call_set_result};
use weft::capi::future::{weft_future, weft_future_free, weft_future_result};
use weft::capi::pool::{
    weft_pool, weft_pool_free, weft_pool_map, weft_pool_new, weft_pool_options, weft_pool_shutdown, weft_pool_submit,
    WEFT_POOL_PROCESSES, WEFT_POOL_THREADS,
};
use weft::capi::process::WEFT_START_FORK;
use weft::capi::status::{weft_bytes, weft_bytes_data, weft_bytes_free, weft_bytes_len, weft_last_error_message, weft_status_name};
use weft::status::{weft_status, WEFT_INVALID_ARGUMENT, WEFT_OK};
use weft::time::WEFT_FOREVER;

fn status_name(rc: weft_status) -> String {
    // SAFETY: weft_status_name returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(weft_status_name(rc)) }.to_string_lossy().into_owned()
}

fn check(rc: weft_status, what: &str) {
    if rc != WEFT_OK {
        // SAFETY: weft_last_error_message never returns NULL; the string is read at once.
        let msg = unsafe { CStr::from_ptr(weft_last_error_message()) }.to_string_lossy().into_owned();
        panic!("{what} returned {} ({rc}): {msg}", status_name(rc));
    }
}

fn now_ns() -> u64 {
    weft::time::now_ns()
}

/// Workers of every pool in benchmark 1 (the setting: this machine's 2 cores).
const WORKERS: u32 = 2;
/// Most tasks submitted in one burst before their results are read.
const BURST: u64 = 10_000;

/// Pool options of `kind` with `workers` workers, every other field zero (the documented
/// default: the struct is zero-initialisable, so fields added later need no change here).
fn pool_options(kind: u32, workers: u32) -> weft_pool_options {
    // SAFETY: weft_pool_options is a C struct of integers, a nullable function pointer and a
    // raw pointer: all-zero is a valid value (and the documented default).
    let mut o: weft_pool_options = unsafe { std::mem::zeroed() };
    o.kind = kind;
    o.workers = workers;
    o
}

fn thread_pool(workers: u32) -> *mut weft_pool {
    let o = pool_options(WEFT_POOL_THREADS, workers);
    let mut p: *mut weft_pool = null_mut();
    // SAFETY: valid options and out-pointer.
    check(unsafe { weft_pool_new(&o, &mut p) }, "weft_pool_new");
    p
}

/// A pool of `workers` worker processes started with fork (the task functions are this
/// binary's: a forked worker calls them at the parent's address).
fn process_pool(workers: u32) -> *mut weft_pool {
    let mut o = pool_options(WEFT_POOL_PROCESSES, workers);
    o.start_method = WEFT_START_FORK;
    let mut p: *mut weft_pool = null_mut();
    // SAFETY: valid options and out-pointer.
    check(unsafe { weft_pool_new(&o, &mut p) }, "weft_pool_new (processes)");
    p
}

/// Shuts a pool down (waiting for its workers) and frees it.
fn end_pool(p: *mut weft_pool) {
    // SAFETY: a live pool from thread_pool or process_pool; not used afterwards.
    unsafe {
        check(weft_pool_shutdown(p, true, false, WEFT_FOREVER), "weft_pool_shutdown");
        weft_pool_free(p);
    }
}

/// The argument of a task as a u64 (it must be exactly 8 bytes), or None.
///
/// # Safety
/// `call` is the context the task received.
unsafe fn arg_words<const N: usize>(call: *mut weft_call) -> Option<[u64; N]> {
    let (mut p, mut len): (*const c_void, usize) = (null(), 0);
    // SAFETY: forwarded contract; writable out-parameters.
    if unsafe { weft_call_arg(call, &mut p, &mut len) } != WEFT_OK || len != 8 * N || p.is_null() {
        return None;
    }
    let mut w = [0u64; N];
    for (i, x) in w.iter_mut().enumerate() {
        // SAFETY: `len` readable bytes at `p` for the duration of the call; unaligned read.
        *x = unsafe { std::ptr::read_unaligned(p.cast::<u64>().add(i)) };
    }
    Some(w)
}

/// The trivial task: argument a u64, result that u64 + 1 (8 bytes).
unsafe extern "C" fn add_one(call: *mut weft_call) -> weft_status {
    // SAFETY: weft passes the task its live context.
    let Some([x]) = (unsafe { arg_words::<1>(call) }) else { return WEFT_INVALID_ARGUMENT };
    let r = x.wrapping_add(1);
    // SAFETY: as above; 8 readable bytes.
    unsafe { weft_call_set_result(call, (&r as *const u64).cast(), 8) }
}

// ---------------------------------------------------------------------------------------------
// 1. Throughput of trivial tasks: submit a burst, read every result.

/// weft: `n` tasks, in bursts of at most BURST: each burst is submitted (one future per task),
/// then every future's result is read, checked and the future freed; ns per task.
fn weft_submit(pool: *mut weft_pool, n: u64, next: &mut u64, futs: &mut Vec<*mut weft_future>) -> f64 {
    let mut left = n;
    let mut elapsed = 0;
    while left > 0 {
        let k = left.min(BURST);
        let base = *next;
        *next += k;
        futs.clear();
        let t0 = now_ns();
        for i in 0..k {
            let a = base + i;
            let mut f: *mut weft_future = null_mut();
            // SAFETY: live pool, 8 readable bytes, writable out-pointer.
            check(unsafe { weft_pool_submit(pool, Some(add_one), (&a as *const u64).cast(), 8, &mut f) }, "weft_pool_submit");
            futs.push(f);
        }
        for (i, &f) in futs.iter().enumerate() {
            let (mut d, mut len): (*const c_void, usize) = (null(), 0);
            // SAFETY: a live future we hold a reference to; writable out-parameters.
            check(unsafe { weft_future_result(f, WEFT_FOREVER, &mut d, &mut len) }, "weft_future_result");
            assert!(len == 8 && !d.is_null(), "task {i}: result of {len} bytes");
            // SAFETY: 8 readable bytes, borrowed from the future we still hold.
            let v = unsafe { std::ptr::read_unaligned(d.cast::<u64>()) };
            assert_eq!(v, base + i as u64 + 1, "task {i}: wrong result");
            // SAFETY: our reference, not used afterwards.
            unsafe { weft_future_free(f) };
        }
        elapsed += now_ns() - t0;
        left -= k;
    }
    elapsed as f64 / n as f64
}

/// weft_pool_map over `n` u64 items (bursts of at most BURST items, chunk size chosen by
/// weft: about four chunks per worker); every packed result checked; ns per item.
fn weft_map(pool: *mut weft_pool, n: u64, next: &mut u64, items: &mut Vec<u64>) -> f64 {
    let mut left = n;
    let mut elapsed = 0;
    while left > 0 {
        let k = left.min(BURST);
        let base = *next;
        *next += k;
        items.clear();
        items.extend(base..base + k);
        let t0 = now_ns();
        let mut out: *mut weft_bytes = null_mut();
        // SAFETY: live pool; `k` items of 8 bytes; writable out-pointer.
        check(
            unsafe { weft_pool_map(pool, Some(add_one), items.as_ptr().cast(), 8, k as usize, 0, WEFT_FOREVER, &mut out) },
            "weft_pool_map",
        );
        // SAFETY: a live weft_bytes; the data is read before it is freed.
        let (p, len) = unsafe { (weft_bytes_data(out).cast::<u8>(), weft_bytes_len(out)) };
        assert_eq!(len, 16 * k as usize, "map: {len} bytes of results for {k} items");
        for i in 0..k as usize {
            // SAFETY: within the `len` bytes checked above; unaligned reads.
            let (l, v) = unsafe { (std::ptr::read_unaligned(p.add(16 * i).cast::<u64>()), std::ptr::read_unaligned(p.add(16 * i + 8).cast::<u64>())) };
            assert!(l == 8 && v == base + i as u64 + 1, "map item {i}: length {l}, value {v}");
        }
        // SAFETY: ours, not used afterwards.
        unsafe { weft_bytes_free(out) };
        elapsed += now_ns() - t0;
        left -= k;
    }
    elapsed as f64 / n as f64
}

/// Items of one big map (benchmark 4).
const MAP_ITEMS: u64 = 1_000_000;

/// weft_pool_map of `maps` maps of `count` u64 items each, `chunksize` items per chunk (0:
/// chosen by weft); for each map the items base..base+count are written first, and the packed
/// results are checked after the clock stops (as the Python peer checks its list); ns per item.
fn weft_map_big(pool: *mut weft_pool, maps: u64, count: u64, chunksize: usize, next: &mut u64, items: &mut Vec<u64>) -> f64 {
    let mut elapsed = 0;
    for _ in 0..maps {
        let base = *next;
        *next += count;
        items.clear();
        items.extend(base..base + count);
        let mut out: *mut weft_bytes = null_mut();
        let t0 = now_ns();
        // SAFETY: live pool; `count` items of 8 bytes; writable out-pointer.
        check(
            unsafe { weft_pool_map(pool, Some(add_one), items.as_ptr().cast(), 8, count as usize, chunksize, WEFT_FOREVER, &mut out) },
            "weft_pool_map",
        );
        elapsed += now_ns() - t0;
        // SAFETY: a live weft_bytes; the data is read before it is freed.
        let (p, len) = unsafe { (weft_bytes_data(out).cast::<u8>(), weft_bytes_len(out)) };
        assert_eq!(len, 16 * count as usize, "map: {len} bytes of results for {count} items");
        for i in 0..count as usize {
            // SAFETY: within the `len` bytes checked above; unaligned reads.
            let (l, v) = unsafe { (std::ptr::read_unaligned(p.add(16 * i).cast::<u64>()), std::ptr::read_unaligned(p.add(16 * i + 8).cast::<u64>())) };
            assert!(l == 8 && v == base + i as u64 + 1, "map item {i}: length {l}, value {v}");
        }
        // SAFETY: ours, not used afterwards.
        unsafe { weft_bytes_free(out) };
    }
    elapsed as f64 / (maps * count) as f64
}

/// The last error message of this thread (weft_last_error_message).
fn last_error() -> String {
    // SAFETY: weft_last_error_message never returns NULL; the string is read at once.
    unsafe { CStr::from_ptr(weft_last_error_message()) }.to_string_lossy().into_owned()
}

/// The chunk size benchmark 4 measures `pool` with: 0 (weft's choice) when a map of `count`
/// items succeeds with it. Otherwise the failure, and the largest of Python's default chunk
/// size (count / (4 x workers), rounded up) halved k >= 1 times with which a map succeeds.
fn map_chunk(pool: *mut weft_pool, count: u64) -> (usize, Option<String>) {
    let items: Vec<u64> = (0..count).collect();
    let try_map = |chunk: usize| -> Result<(), String> {
        let mut out: *mut weft_bytes = null_mut();
        // SAFETY: live pool; `count` items of 8 bytes; writable out-pointer.
        let rc = unsafe { weft_pool_map(pool, Some(add_one), items.as_ptr().cast(), 8, count as usize, chunk, WEFT_FOREVER, &mut out) };
        if rc != WEFT_OK {
            return Err(format!("{}: {}", status_name(rc), last_error()));
        }
        // SAFETY: a live weft_bytes, ours, not used afterwards.
        unsafe { weft_bytes_free(out) };
        Ok(())
    };
    let default_failure = match try_map(0) {
        Ok(()) => return (0, None),
        Err(e) => e,
    };
    let mut c = weft::pool::auto_chunksize(count as usize, WORKERS as usize) / 2;
    while c > 0 {
        if try_map(c).is_ok() {
            return (c, Some(default_failure));
        }
        c /= 2;
    }
    panic!("weft_pool_map of {count} items fails with every chunk size: {default_failure}");
}

/// One rayon task per slot: slot i receives base + i + 1.
fn spawn_all<'s>(s: &rayon::Scope<'s>, out: &'s mut [u64], base: u64) {
    for (i, slot) in out.iter_mut().enumerate() {
        s.spawn(move |_| *slot = base + i as u64 + 1);
    }
}

/// rayon: the same bursts; each task writes its result into its slot of a slice. With
/// `in_place`, the calling thread spawns into the pool (`in_place_scope`, as a weft caller
/// submits from outside); otherwise the spawning closure itself runs on a pool thread
/// (`scope`). ns per task.
fn rayon_burst(pool: &rayon::ThreadPool, in_place: bool, n: u64, next: &mut u64, out: &mut [u64]) -> f64 {
    let mut left = n;
    let mut elapsed = 0;
    while left > 0 {
        let k = left.min(BURST);
        let base = *next;
        *next += k;
        let out = &mut out[..k as usize];
        out.fill(0);
        let t0 = now_ns();
        if in_place {
            pool.in_place_scope(|s| spawn_all(s, out, base));
        } else {
            pool.scope(|s| spawn_all(s, out, base));
        }
        for (i, &v) in out.iter().enumerate() {
            assert_eq!(v, base + i as u64 + 1, "rayon task {i}: wrong result");
        }
        elapsed += now_ns() - t0;
        left -= k;
    }
    elapsed as f64 / n as f64
}

// GLib's GThreadPool, loaded at run time.

type GFunc = unsafe extern "C" fn(data: *mut c_void, user: *mut c_void);

/// Completion count of a GLib burst; the waiter sleeps on `count` (a futex word).
struct Done {
    count: AtomicU32,
    target: AtomicU32,
}

struct GlibPool {
    push: unsafe extern "C" fn(*mut c_void, *mut c_void, *mut *mut c_void) -> i32,
    free: unsafe extern "C" fn(*mut c_void, i32, i32),
    pool: *mut c_void,
    done: Box<Done>,
}

fn futex(word: &AtomicU32, op: i32, val: u32) {
    // SAFETY: a futex call on a live, aligned 32-bit word; no timeout.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op | libc::FUTEX_PRIVATE_FLAG, val, null::<libc::timespec>()) };
}

/// The GThreadPool task: its data is a u64 slot holding the argument; it writes the argument
/// + 1 there and counts itself done (the last one wakes the waiter).
unsafe extern "C" fn glib_task(data: *mut c_void, user: *mut c_void) {
    let slot = data.cast::<u64>();
    // SAFETY: `data` is this task's own slot, untouched by anyone else until the burst ends;
    // `user` is the pool's `Done`, which outlives the pool.
    unsafe {
        *slot += 1;
        let done = &*user.cast::<Done>();
        if done.count.fetch_add(1, Ordering::Release) + 1 == done.target.load(Ordering::Relaxed) {
            futex(&done.count, libc::FUTEX_WAKE, i32::MAX as u32);
        }
    }
}

impl GlibPool {
    /// A non-exclusive GThreadPool of at most `workers` threads, or None without GLib.
    fn load(workers: u32) -> Option<GlibPool> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; the symbols have the C signatures
        // GLib documents, and the library stays loaded (never dlclosed).
        unsafe {
            let lib = libc::dlopen(c"libglib-2.0.so.0".as_ptr(), libc::RTLD_NOW);
            if lib.is_null() {
                return None;
            }
            let sym = |name: &CStr| {
                let p = libc::dlsym(lib, name.as_ptr());
                (!p.is_null()).then_some(p)
            };
            type New = unsafe extern "C" fn(GFunc, *mut c_void, i32, i32, *mut *mut c_void) -> *mut c_void;
            let new = std::mem::transmute::<*mut c_void, New>(sym(c"g_thread_pool_new")?);
            let push = std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void, *mut c_void, *mut *mut c_void) -> i32>(
                sym(c"g_thread_pool_push")?,
            );
            let free = std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void, i32, i32)>(sym(c"g_thread_pool_free")?);
            let done = Box::new(Done { count: AtomicU32::new(0), target: AtomicU32::new(0) });
            let pool = new(glib_task, (&*done as *const Done).cast_mut().cast(), workers as i32, 0, null_mut());
            if pool.is_null() {
                return None;
            }
            Some(GlibPool { push, free, pool, done })
        }
    }

    /// The same bursts: each task's slot holds its argument, the waiter sleeps until the
    /// completion count reaches the burst's size; ns per task.
    fn run(&self, n: u64, next: &mut u64, slots: &mut [u64]) -> f64 {
        let mut left = n;
        let mut elapsed = 0;
        while left > 0 {
            let k = left.min(BURST);
            let base = *next;
            *next += k;
            let slots = &mut slots[..k as usize];
            for (i, s) in slots.iter_mut().enumerate() {
                *s = base + i as u64;
            }
            self.done.count.store(0, Ordering::Relaxed);
            self.done.target.store(k as u32, Ordering::Relaxed);
            let p = slots.as_mut_ptr();
            let t0 = now_ns();
            for i in 0..k as usize {
                // SAFETY: a live pool; the slot stays valid and untouched until the burst ends.
                assert!(unsafe { (self.push)(self.pool, p.add(i).cast(), null_mut()) } != 0, "g_thread_pool_push failed");
            }
            loop {
                let d = self.done.count.load(Ordering::Acquire);
                if d as u64 >= k {
                    assert_eq!(d as u64, k, "GThreadPool: {d} completions for {k} tasks");
                    break;
                }
                futex(&self.done.count, libc::FUTEX_WAIT, d);
            }
            for (i, &v) in slots.iter().enumerate() {
                assert_eq!(v, base + i as u64 + 1, "GThreadPool task {i}: wrong result");
            }
            elapsed += now_ns() - t0;
            left -= k;
        }
        elapsed as f64 / n as f64
    }
}

impl Drop for GlibPool {
    fn drop(&mut self) {
        // SAFETY: a live pool; waits for its tasks before `done` is dropped.
        unsafe { (self.free)(self.pool, 0, 1) };
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Scaling of CPU-bound tasks over 1..N workers.

/// CPU-bound tasks (of ~1 ms) per worker per round, at scale 1 (the Python rows run half).
const SPIN_PER_WORKER: f64 = 200.0;

/// Distinct seeds of the CPU-bound tasks (their expected results are computed once).
const SEEDS: u64 = 16;

/// The CPU-bound work: `iters` rounds of xorshift64 from `seed` (a dependent chain the
/// compiler cannot shorten or vectorise).
#[inline(never)]
fn spin(seed: u64, iters: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// The CPU-bound task: argument (seed, iters), result spin(seed, iters) (8 bytes).
unsafe extern "C" fn spin_task(call: *mut weft_call) -> weft_status {
    // SAFETY: weft passes the task its live context.
    let Some([seed, iters]) = (unsafe { arg_words::<2>(call) }) else { return WEFT_INVALID_ARGUMENT };
    let r = spin(seed, iters);
    // SAFETY: as above; 8 readable bytes.
    unsafe { weft_call_set_result(call, (&r as *const u64).cast(), 8) }
}

/// This thread's CPU time, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Iterations of `spin` that take about `ms` ms of CPU time on this machine (best of three,
/// timed in this thread's CPU time so that a busy machine does not shrink the task).
fn calibrate(ms: f64) -> u64 {
    const PROBE: u64 = 1 << 20;
    let best = (0..3)
        .map(|i| {
            let t0 = thread_cpu_ns();
            std::hint::black_box(spin(std::hint::black_box(i), std::hint::black_box(PROBE)));
            (thread_cpu_ns() - t0).max(1)
        })
        .min()
        .unwrap();
    ((ms * 1e6 * PROBE as f64 / best as f64) as u64).max(1)
}

/// weft: `per_worker` × `workers` CPU-bound tasks submitted at once to `pool` (which has
/// `workers` workers), every result read and checked; ns per task.
fn weft_spin(pool: *mut weft_pool, workers: u64, per_worker: u64, iters: u64, expected: &[u64]) -> f64 {
    let m = workers * per_worker;
    let mut futs = Vec::with_capacity(m as usize);
    let t0 = now_ns();
    for i in 0..m {
        let a = [i % SEEDS, iters];
        let mut f: *mut weft_future = null_mut();
        // SAFETY: live pool, 16 readable bytes, writable out-pointer.
        check(unsafe { weft_pool_submit(pool, Some(spin_task), a.as_ptr().cast(), 16, &mut f) }, "weft_pool_submit");
        futs.push(f);
    }
    for (i, &f) in futs.iter().enumerate() {
        let (mut d, mut len): (*const c_void, usize) = (null(), 0);
        // SAFETY: a live future we hold a reference to; writable out-parameters.
        check(unsafe { weft_future_result(f, WEFT_FOREVER, &mut d, &mut len) }, "weft_future_result");
        assert!(len == 8 && !d.is_null(), "task {i}: result of {len} bytes");
        // SAFETY: 8 readable bytes, borrowed from the future we still hold.
        let v = unsafe { std::ptr::read_unaligned(d.cast::<u64>()) };
        assert_eq!(v, expected[i % SEEDS as usize], "CPU-bound task {i}: wrong result");
        // SAFETY: our reference, not used afterwards.
        unsafe { weft_future_free(f) };
    }
    (now_ns() - t0) as f64 / m as f64
}

/// rayon: the same `per_worker` × `threads` CPU-bound tasks spawned in a `scope` of `pool`
/// (which has `threads` threads), each writing its result into its slot, every result
/// checked; ns per task.
fn rayon_spin(pool: &rayon::ThreadPool, threads: u64, per_worker: u64, iters: u64, expected: &[u64], out: &mut Vec<u64>) -> f64 {
    let m = (threads * per_worker) as usize;
    out.clear();
    out.resize(m, 0);
    let t0 = now_ns();
    pool.scope(|s| {
        for (i, slot) in out.iter_mut().enumerate() {
            s.spawn(move |_| *slot = spin(i as u64 % SEEDS, iters));
        }
    });
    for (i, &v) in out.iter().enumerate() {
        assert_eq!(v, expected[i % SEEDS as usize], "rayon CPU-bound task {i}: wrong result");
    }
    (now_ns() - t0) as f64 / m as f64
}

/// Worker counts shown: every count 1..=n up to 8, else the powers of two below n and n.
fn worker_counts(n: u64) -> Vec<u64> {
    if n <= 8 {
        return (1..=n).collect();
    }
    let mut v: Vec<u64> = std::iter::successors(Some(1u64), |k| Some(k * 2)).take_while(|&k| k < n).collect();
    v.push(n);
    v
}

/// CPU time taken by other processes while the contenders of a benchmark ran: the machine's
/// busy time (/proc/stat, hypervisor steal included) minus this process's own CPU time. A
/// speedup needs idle CPUs; this says how many the neighbours left.
#[derive(Default)]
struct Neighbours {
    /// Seconds of CPU the machine was busy, this process excluded.
    others: f64,
    /// Seconds of wall time measured.
    wall: f64,
}

/// The machine's busy CPU time so far, in seconds (0 when /proc/stat is unreadable).
fn machine_busy() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|w| w.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    // SAFETY: sysconf has no preconditions.
    busy as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// This process's CPU time so far (every thread), plus that of its live children (a process
/// pool's workers; the Python peer, idle while weft runs), in seconds.
fn own_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9 + children_cpu()
}

/// CPU time of this process's live children (utime + stime of /proc/PID/stat, every thread
/// of theirs), in seconds; 0 where /proc does not say.
fn children_cpu() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let mut ticks = 0u64;
    for t in tasks.flatten() {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for pid in kids.split_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
            let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|w| w.parse().ok()).collect();
            ticks += f.iter().sum::<u64>();
        }
    }
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// `run`, accounting the neighbours' CPU use during each call into `acc`.
fn watched<'a>(acc: &'a RefCell<Neighbours>, mut run: impl FnMut(f64) -> f64 + 'a) -> impl FnMut(f64) -> f64 + 'a {
    move |s| {
        let (b0, c0, t0) = (machine_busy(), own_cpu(), now_ns());
        let v = run(s);
        let (b1, c1, t1) = (machine_busy(), own_cpu(), now_ns());
        let mut a = acc.borrow_mut();
        a.others += ((b1 - b0) - (c1 - c0)).max(0.0);
        a.wall += (t1 - t0) as f64 * 1e-9;
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Per-round samples, for the figures the harness does not print (throughput, speedups).

/// Every value each named contender returned, in call order.
type Log = RefCell<HashMap<&'static str, Vec<f64>>>;

/// A contender whose every sample is also written to `log`.
fn logged<'a>(log: &'a Log, name: &'static str, role: Role, mut run: impl FnMut(f64) -> f64 + 'a) -> Contender<'a> {
    contender(name, role, move |s| {
        let v = run(s);
        log.borrow_mut().entry(name).or_default().push(v);
        v
    })
}

/// The per-round samples of `name` as the harness computes them: its first call is the
/// warm-up, then `chunks` slices per round, averaged. Empty when the contender did not run.
fn rounds(log: &Log, cfg: &Config, name: &str) -> Vec<f64> {
    let l = log.borrow();
    let Some(v) = l.get(name) else { return Vec::new() };
    if v.len() != 1 + cfg.rounds * cfg.chunks {
        println!("   (the harness called {name} {} times, not 1 + rounds x chunks: no per-round figures)", v.len());
        return Vec::new();
    }
    v[1..].chunks_exact(cfg.chunks).map(|c| c.iter().sum::<f64>() / c.len() as f64).collect()
}

fn min_max(v: &[f64]) -> (f64, f64) {
    (v.iter().cloned().fold(f64::INFINITY, f64::min), v.iter().cloned().fold(f64::NEG_INFINITY, f64::max))
}

/// Prints speedup over the 1-worker row for each of `rows` (worker count, name): the median
/// (min–max) over rounds of the paired per-round ratio t(1) / t(k). Returns the median for
/// each worker count shown.
fn print_speedups(log: &Log, cfg: &Config, title: &str, rows: &[(u64, &'static str)]) -> Vec<(u64, f64)> {
    let Some(&(_, one)) = rows.iter().find(|r| r.0 == 1) else { return Vec::new() };
    let base = rounds(log, cfg, one);
    if base.is_empty() {
        return Vec::new();
    }
    println!("   {title}: speedup over 1 worker = median (min-max) of per-round t(1)/t(k); efficiency = speedup / k");
    let mut out = Vec::new();
    for &(k, name) in rows {
        let r = rounds(log, cfg, name);
        if r.is_empty() {
            continue;
        }
        let sp: Vec<f64> = base.iter().zip(&r).map(|(a, b)| a / b).collect();
        let (lo, hi) = min_max(&sp);
        let m = median(&sp);
        println!("     {:<37} {:>6.3}x  ({:.3}-{:.3})   efficiency {:>5.1} %", name, m, lo, hi, 100.0 * m / k as f64);
        out.push((k, m));
    }
    out
}

/// Prints the throughput of each named row (from the median of its per-round samples, ns per
/// task or item), with the figure for it in brackets.
fn print_rates(log: &Log, cfg: &Config, rows: &[(&'static str, &str)]) {
    println!("   throughput, median of rounds (the issue's figures on this class of machine in brackets):");
    for &(name, reference) in rows {
        let r = rounds(log, cfg, name);
        if r.is_empty() {
            continue;
        }
        let rate = 1e3 / median(&r);
        let shown = if rate >= 1.0 { format!("{rate:.2} M/s") } else { format!("{:.1} k/s", rate * 1e3) };
        println!("     {:<37} {:>12}   [{reference}]", name, shown);
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |key: &str| filters.is_empty() || filters.iter().any(|f| key.starts_with(f.as_str()));
    let cfg = Config::from_env();
    let start = std::time::Instant::now();
    let cpus = weft::capi::process::weft_cpu_count() as u64;
    println!("weft pool benchmarks (benches/pool.rs) — weft {} vs peers, one run, same machine", env!("CARGO_PKG_VERSION"));
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    println!("cores: {online} online, {cpus} usable ({}); Python peer: {} (benches/pool_peer.py)", cpu_model(), PyPeer::version());
    println!("load average at start: {}", loadavg());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pool_peer.py");
    let py = RefCell::new(PyPeer::start(script, &format!("tpe 10 {WORKERS} 10")));
    if py.borrow().is_none() {
        println!("(the Python peer did not start: its rows are left out)");
    }
    let has_py = py.borrow().is_some();
    let py_run = |cmd: String| -> f64 { py.borrow_mut().as_mut().map(|p| p.run(&cmd).unwrap_or_else(|e| panic!("{e}"))).unwrap_or(f64::NAN) };
    let log: Log = RefCell::new(HashMap::new());
    let mut verdicts = Vec::new();
    let mut scaling_lines = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    if want("threads") {
        const W_SUBMIT: &str = "weft submit+result (C ABI)";
        const W_MAP: &str = "weft map, auto chunks (C ABI)";
        const RAYON: &str = "rayon scope+spawn";
        const RAYON_IN: &str = "rayon in_place_scope+spawn";
        const GLIB: &str = "GLib GThreadPool";
        const PY: &str = "Python ThreadPoolExecutor";
        let pool = thread_pool(WORKERS);
        let rayon = rayon::ThreadPoolBuilder::new().num_threads(WORKERS as usize).build().expect("rayon pool");
        let glib = GlibPool::load(WORKERS);
        if glib.is_none() {
            println!("(libglib-2.0.so.0 did not load: the GThreadPool row is left out)");
        }
        {
            let mut cs = Vec::new();
            let (mut n1, mut futs) = (0u64, Vec::with_capacity(BURST as usize));
            cs.push(logged(&log, W_SUBMIT, Role::Weft, move |s| weft_submit(pool, scaled(200_000.0, s), &mut n1, &mut futs)));
            let (mut n2, mut items) = (0u64, Vec::with_capacity(BURST as usize));
            cs.push(logged(&log, W_MAP, Role::Weft, move |s| weft_map(pool, scaled(200_000.0, s), &mut n2, &mut items)));
            let (mut n3, mut out3) = (0u64, vec![0u64; BURST as usize]);
            let r = &rayon;
            cs.push(logged(&log, RAYON, Role::Peer, move |s| rayon_burst(r, false, scaled(200_000.0, s), &mut n3, &mut out3)));
            let (mut n4, mut out4) = (0u64, vec![0u64; BURST as usize]);
            cs.push(logged(&log, RAYON_IN, Role::Info, move |s| rayon_burst(r, true, scaled(200_000.0, s), &mut n4, &mut out4)));
            if let Some(g) = glib.as_ref() {
                let (mut n5, mut slots) = (0u64, vec![0u64; BURST as usize]);
                cs.push(logged(&log, GLIB, Role::Peer, move |s| g.run(scaled(200_000.0, s), &mut n5, &mut slots)));
            }
            if has_py {
                cs.push(logged(&log, PY, Role::Peer, |s| py_run(format!("tpe {} {WORKERS} {BURST}", scaled(20_000.0, s)))));
            }
            verdicts.extend(bench(
                &cfg,
                "1 thread pool: trivial tasks, submit -> result",
                &format!(
                    "{WORKERS} workers each (pools built once); bursts of <= {BURST} tasks (u64 in, u64 + 1 out), \
                     then every result read and checked; ns per task"
                ),
                cs,
                &[Target { id: "1", what: "thread pool >= 3 M tasks/s", weft: W_SUBMIT, peer: RAYON, goal: Goal::Under(1e9 / 3e6) }],
            ));
        }
        print_rates(
            &log,
            &cfg,
            &[
                (W_SUBMIT, "target >= 3 M/s"),
                (W_MAP, "-"),
                (RAYON, "~2.6 M/s"),
                (RAYON_IN, "-"),
                (GLIB, "~1.3 M/s"),
                (PY, "~79 k/s"),
            ],
        );
        end_pool(pool);
        drop(glib);
    }

    if want("scaling") {
        let iters = calibrate(1.0);
        let expected: Vec<u64> = (0..SEEDS).map(|s| spin(s, iters)).collect();
        let counts = worker_counts(cpus);
        println!();
        println!(
            "(scaling: a weft task = {iters} rounds of xorshift64, about 1 ms of CPU; \
             worker counts {counts:?} of {cpus} usable CPUs)"
        );
        let pools: Vec<(u64, *mut weft_pool)> = counts.iter().map(|&k| (k, thread_pool(k as u32))).collect();
        let weft_rows: Vec<(u64, &'static str)> =
            counts.iter().map(|&k| (k, &*Box::leak(format!("weft, {k} worker{}", if k == 1 { "" } else { "s" }).into_boxed_str()))).collect();
        let rayons: Vec<rayon::ThreadPool> =
            counts.iter().map(|&k| rayon::ThreadPoolBuilder::new().num_threads(k as usize).build().expect("rayon pool")).collect();
        let rayon_rows: Vec<(u64, &'static str)> =
            counts.iter().map(|&k| (k, &*Box::leak(format!("rayon scope, {k} thread{}", if k == 1 { "" } else { "s" }).into_boxed_str()))).collect();
        let nb = RefCell::new(Neighbours::default());
        let mut cs = Vec::new();
        for (&(k, p), &(_, name)) in pools.iter().zip(&weft_rows) {
            let exp = &expected;
            let role = if k == 1 { Role::Peer } else { Role::Weft };
            cs.push(logged(&log, name, role, watched(&nb, move |s| weft_spin(p, k, scaled(SPIN_PER_WORKER, s), iters, exp))));
        }
        for (r, &(k, name)) in rayons.iter().zip(&rayon_rows) {
            let (exp, mut out) = (&expected, Vec::new());
            cs.push(logged(&log, name, Role::Info, watched(&nb, move |s| rayon_spin(r, k, scaled(SPIN_PER_WORKER, s), iters, exp, &mut out))));
        }
        verdicts.extend(bench(
            &cfg,
            "2a scaling: CPU-bound C tasks over 1..N thread workers",
            "k x T tasks of ~1 ms submitted at once to a pool of k workers (T per worker per slice), \
             every result read and checked; ns per task (wall time / tasks)",
            cs,
            &[],
        ));
        let weft_speedups = print_speedups(&log, &cfg, "weft", &weft_rows);
        let rayon_speedups = print_speedups(&log, &cfg, "rayon (same task, for comparison)", &rayon_rows);
        drop(rayons);
        let busy = {
            let n = nb.borrow();
            if n.wall > 0.0 { n.others / n.wall } else { f64::NAN }
        };
        let busy_note = format!("other processes kept {busy:.2} of {online} CPUs busy meanwhile");
        if busy.is_finite() {
            println!("   {busy_note} (/proc/stat busy time, steal included, minus this process's CPU time)");
        }
        for &(_, p) in &pools {
            end_pool(p);
        }

        let mut py_speedups = Vec::new();
        let py_iters: u64 = if has_py {
            let words = py.borrow_mut().as_mut().unwrap().ask("calibrate 1").unwrap_or_else(|e| panic!("{e}"));
            words.first().and_then(|w| w.parse().ok()).expect("calibrate: bad answer")
        } else {
            0
        };
        let mut ws: Vec<u64> = vec![1, 2, cpus].into_iter().filter(|&w| w <= cpus.max(1)).collect();
        ws.dedup();
        if has_py {
            println!();
            println!("(scaling, Python: a task = spin({py_iters}) in pure Python, about 1 ms; the GIL serialises it)");
            let py_rows: Vec<(u64, &'static str)> = ws
                .iter()
                .map(|&w| (w, &*Box::leak(format!("Python ThreadPoolExecutor({w})").into_boxed_str())))
                .collect();
            let cs = py_rows
                .iter()
                .map(|&(w, name)| logged(&log, name, Role::Info, move |s| py_run(format!("spin {w} {} {py_iters}", w * scaled(SPIN_PER_WORKER / 2.0, s)))))
                .collect();
            verdicts.extend(bench(
                &cfg,
                "2b scaling: CPU-bound pure-Python tasks over 1..N ThreadPoolExecutor workers",
                "w x T tasks of ~1 ms submitted at once to a ThreadPoolExecutor(w), every result checked; ns per task",
                cs,
                &[],
            ));
            py_speedups = print_speedups(&log, &cfg, "Python", &py_rows);
        }

        // 2c: the same C task over 1..N worker processes (fork), beside rayon again (what the
        // machine allowed in these seconds).
        println!();
        println!("(scaling, processes: the same weft task over pools of k worker processes, fork start; pools built once)");
        let ppools: Vec<(u64, *mut weft_pool)> = counts.iter().map(|&k| (k, process_pool(k as u32))).collect();
        let proc_rows: Vec<(u64, &'static str)> = counts
            .iter()
            .map(|&k| (k, &*Box::leak(format!("weft, {k} worker process{}", if k == 1 { "" } else { "es" }).into_boxed_str())))
            .collect();
        let rayons: Vec<rayon::ThreadPool> =
            counts.iter().map(|&k| rayon::ThreadPoolBuilder::new().num_threads(k as usize).build().expect("rayon pool")).collect();
        let nb2 = RefCell::new(Neighbours::default());
        let mut cs = Vec::new();
        for (&(k, p), &(_, name)) in ppools.iter().zip(&proc_rows) {
            let exp = &expected;
            let role = if k == 1 { Role::Peer } else { Role::Weft };
            cs.push(logged(&log, name, role, watched(&nb2, move |s| weft_spin(p, k, scaled(SPIN_PER_WORKER, s), iters, exp))));
        }
        let rayon_rows2: Vec<(u64, &'static str)> = rayon_rows
            .iter()
            .map(|&(k, name)| (k, &*Box::leak(format!("{name} (2c)").into_boxed_str())))
            .collect();
        for (r, &(k, name)) in rayons.iter().zip(&rayon_rows2) {
            let (exp, mut out) = (&expected, Vec::new());
            cs.push(logged(&log, name, Role::Info, watched(&nb2, move |s| rayon_spin(r, k, scaled(SPIN_PER_WORKER, s), iters, exp, &mut out))));
        }
        verdicts.extend(bench(
            &cfg,
            "2c scaling: CPU-bound C tasks over 1..N process workers",
            "k x T tasks of ~1 ms submitted at once to a pool of k worker processes (T per worker per slice), \
             every result read and checked; ns per task (wall time / tasks)",
            cs,
            &[],
        ));
        let proc_speedups = print_speedups(&log, &cfg, "weft processes", &proc_rows);
        let rayon_speedups2 = print_speedups(&log, &cfg, "rayon (same task, same seconds)", &rayon_rows2);
        drop(rayons);
        let busy2 = {
            let n = nb2.borrow();
            if n.wall > 0.0 { n.others / n.wall } else { f64::NAN }
        };
        let busy_note2 = format!("other processes kept {busy2:.2} of {online} CPUs busy meanwhile");
        if busy2.is_finite() {
            println!("   {busy_note2} (/proc/stat busy time, steal included, minus the CPU time of this process and its children)");
        }
        for &(_, p) in &ppools {
            end_pool(p);
        }

        // 2d: Python's process pools on the pure-Python task.
        let (mut ppe_speedups, mut mp_speedups) = (Vec::new(), Vec::new());
        if has_py {
            println!();
            println!("(scaling, Python processes: the pure-Python spin({py_iters}) over ProcessPoolExecutor(w) and multiprocessing.Pool(w), fork)");
            let ppe_rows: Vec<(u64, &'static str)> =
                ws.iter().map(|&w| (w, &*Box::leak(format!("Python ProcessPoolExecutor({w})").into_boxed_str()))).collect();
            let mp_rows: Vec<(u64, &'static str)> =
                ws.iter().map(|&w| (w, &*Box::leak(format!("Python multiprocessing.Pool({w})").into_boxed_str()))).collect();
            let mut cs = Vec::new();
            for (kind, rows) in [("ppe", &ppe_rows), ("mp", &mp_rows)] {
                for &(w, name) in rows.iter() {
                    let py_run = &py_run;
                    cs.push(logged(&log, name, Role::Info, move |s| {
                        py_run(format!("pspin {kind} {w} {} {py_iters}", w * scaled(SPIN_PER_WORKER / 2.0, s)))
                    }));
                }
            }
            verdicts.extend(bench(
                &cfg,
                "2d scaling: CPU-bound pure-Python tasks over 1..N Python worker processes",
                "w x T tasks of ~1 ms submitted at once (ProcessPoolExecutor.submit, Pool.apply_async), \
                 every result checked; ns per task",
                cs,
                &[],
            ));
            ppe_speedups = print_speedups(&log, &cfg, "Python ProcessPoolExecutor", &ppe_rows);
            mp_speedups = print_speedups(&log, &cfg, "Python multiprocessing.Pool", &mp_rows);
        }
        let two = |v: &[(u64, f64)]| v.iter().find(|r| r.0 == 2).map(|r| r.1);
        match two(&weft_speedups) {
            Some(s) => scaling_lines.push(format!(
                "   2a weft, 2 thread workers: speedup {s:.3}x over 1 worker (target >= 1.95x)  {}  ({busy_note})",
                if s >= 1.95 { "PASS" } else { "MISS" }
            )),
            None if cpus < 2 => scaling_lines.push("   2a (one usable CPU: no 2-worker scaling figure)".to_string()),
            None => {}
        }
        if let Some(s) = two(&rayon_speedups) {
            scaling_lines.push(format!("   2a rayon, 2 threads, same task: speedup {s:.3}x over 1 thread (what this machine allowed in this run)"));
        }
        if let Some(s) = two(&py_speedups) {
            scaling_lines.push(format!("   2b Python ThreadPoolExecutor, 2 workers: speedup {s:.3}x over 1 worker (expected ~1.0x: the GIL)"));
        }
        if let Some(s) = two(&proc_speedups) {
            scaling_lines.push(format!(
                "   2c weft, 2 worker processes: speedup {s:.3}x over 1 worker (target >= 1.95x)  {}  ({busy_note2})",
                if s >= 1.95 { "PASS" } else { "MISS" }
            ));
        }
        if let Some(s) = two(&rayon_speedups2) {
            scaling_lines.push(format!("   2c rayon, 2 threads, same task, same seconds: speedup {s:.3}x over 1 thread"));
        }
        if let Some(s) = two(&ppe_speedups) {
            scaling_lines.push(format!("   2d Python ProcessPoolExecutor, 2 workers: speedup {s:.3}x over 1 worker (pure-Python task)"));
        }
        if let Some(s) = two(&mp_speedups) {
            scaling_lines.push(format!("   2d Python multiprocessing.Pool, 2 workers: speedup {s:.3}x over 1 worker (pure-Python task)"));
        }
    }

    if want("processes") {
        const W_PSUBMIT: &str = "weft processes submit+result (C ABI)";
        const MP_APPLY: &str = "Python mp.Pool apply_async+get";
        const PY_PPE: &str = "Python ProcessPoolExecutor";
        let pool = process_pool(WORKERS);
        {
            let mut cs = Vec::new();
            let (mut n1, mut futs) = (0u64, Vec::with_capacity(BURST as usize));
            cs.push(logged(&log, W_PSUBMIT, Role::Weft, move |s| weft_submit(pool, scaled(100_000.0, s), &mut n1, &mut futs)));
            if has_py {
                cs.push(logged(&log, MP_APPLY, Role::Peer, |s| py_run(format!("mpapply {} {WORKERS} {BURST}", scaled(5_000.0, s)))));
                cs.push(logged(&log, PY_PPE, Role::Peer, |s| py_run(format!("ppe {} {WORKERS} {BURST}", scaled(5_000.0, s)))));
            }
            verdicts.extend(bench(
                &cfg,
                "3 process pool: trivial tasks, submit -> result",
                &format!(
                    "{WORKERS} worker processes each, fork (pools built once); bursts of <= {BURST} tasks \
                     (u64 in, u64 + 1 out; Python: inc(x)), then every result read and checked; ns per task"
                ),
                cs,
                &[Target { id: "3", what: "process pool >= 500 k tasks/s", weft: W_PSUBMIT, peer: MP_APPLY, goal: Goal::Under(1e9 / 5e5) }],
            ));
        }
        print_rates(&log, &cfg, &[(W_PSUBMIT, "target >= 500 k/s"), (MP_APPLY, "~18 k/s"), (PY_PPE, "~12 k/s")]);
        end_pool(pool);
    }

    if want("map") {
        const W_TMAP: &str = "weft threads map 1 M (C ABI)";
        const MP_MAP: &str = "Python mp.Pool.map 1 M";
        let ppool = process_pool(WORKERS);
        let tpool = thread_pool(WORKERS);
        // weft's default chunking, unless a map with it fails (then the row says which size).
        let (chunk, default_failure) = map_chunk(ppool, MAP_ITEMS);
        let (w_pmap, id, what): (&'static str, &'static str, &'static str) = if chunk == 0 {
            ("weft processes map 1 M (C ABI)", "4", "process map >= 10 M items/s")
        } else {
            (
                Box::leak(format!("weft processes map 1 M, chunks {chunk}").into_boxed_str()),
                "4*",
                Box::leak(format!("map, chunks of {chunk} >= 10 M/s").into_boxed_str()),
            )
        };
        if let Some(e) = &default_failure {
            println!();
            println!("(4: weft_pool_map of {MAP_ITEMS} items with the default chunk size (0) FAILS on a process pool: {e}");
            println!(" the weft row below uses chunks of {chunk} items instead, and its target is marked 4*)");
            notes.push(format!(
                "   4  process map, default chunking: weft_pool_map(chunksize 0) of {MAP_ITEMS} items fails ({}) (target >= 10 M items/s)  MISS\n\
                 \x20     row 4* measured chunks of {chunk} items instead",
                e.split(':').next().unwrap_or("")
            ));
        }
        {
            let mut cs = Vec::new();
            let (mut n1, mut items1) = (0u64, Vec::with_capacity(MAP_ITEMS as usize));
            cs.push(logged(&log, w_pmap, Role::Weft, move |s| weft_map_big(ppool, scaled(5.0, s), MAP_ITEMS, chunk, &mut n1, &mut items1)));
            let (mut n2, mut items2) = (0u64, Vec::with_capacity(MAP_ITEMS as usize));
            cs.push(logged(&log, W_TMAP, Role::Info, move |s| weft_map_big(tpool, scaled(5.0, s), MAP_ITEMS, 0, &mut n2, &mut items2)));
            if has_py {
                cs.push(logged(&log, MP_MAP, Role::Peer, |s| {
                    let maps = scaled(5.0, s);
                    (0..maps).map(|_| py_run(format!("mpmap {MAP_ITEMS} {WORKERS}"))).sum::<f64>() / maps as f64
                }));
            }
            verdicts.extend(bench(
                &cfg,
                "4 process pool: map of 1,000,000 trivial items",
                &format!(
                    "{WORKERS} workers each (pools built once); one map of {MAP_ITEMS} items (8 bytes in, 8 out) \
                     with the default chunking (weft: {}, Python: Pool.map's own, {} items), results checked \
                     after the clock stops; ns per item",
                    if chunk == 0 { "chunk size 0".to_string() } else { format!("chunks of {chunk}: the default fails") },
                    weft::pool::auto_chunksize(MAP_ITEMS as usize, WORKERS as usize)
                ),
                cs,
                &[Target { id, what, weft: w_pmap, peer: MP_MAP, goal: Goal::Under(1e9 / 1e7) }],
            ));
        }
        print_rates(&log, &cfg, &[(w_pmap, "target >= 10 M/s"), (W_TMAP, "-"), (MP_MAP, "~6.7 M/s")]);
        end_pool(ppool);
        end_pool(tpool);
    }

    print_summary(&verdicts);
    for l in scaling_lines.iter().chain(&notes) {
        println!("{l}");
    }
    println!("load average at end: {}", loadavg());
    println!("total time: {:.1} s", start.elapsed().as_secs_f64());
}
