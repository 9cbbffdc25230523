//! weft's queues vs their peers, side by side in one run (DESIGN.md §6, issue 5). See
//! benches/README.md.
//!
//! `cargo bench --bench queue [-- FILTER...]` runs the benchmarks (or those whose key starts
//! with one of the FILTER words: `threads`, `processes`, `handoff`).
//!
//! Method: the harness of benches/common (interleaved slices in rotating order, several
//! rounds, median of rounds, ratios of per-round samples). Every sample checks its own work
//! (counts, contents, exit codes) and a failed check aborts the run. weft is called through its
//! exported `extern "C"` functions. The peers: crossbeam-channel and GLib's GAsyncQueue (loaded
//! at run time; left out when libglib-2.0.so.0 is missing) between threads; a raw pipe and
//! CPython's multiprocessing.Queue (benches/queue_peer.py) between processes.
//!
//! Environment: `WEFT_BENCH_ROUNDS` (default 7), `WEFT_BENCH_CHUNKS` (default 5),
//! `WEFT_BENCH_SCALE` (default 1.0), `WEFT_BENCH_ONLY`, `WEFT_BENCH_VERBOSE=1`,
//! `WEFT_BENCH_PYTHON` (default `python3`).

mod common;

use common::harness::*;
use common::os::{close_all, fork_child, read_exact, reap, write_all};
use common::pypeer::PyPeer;
use std::ffi::c_void;
use std::ptr::null_mut;

use weft::capi::queue::{
    weft_queue, weft_queue_free, weft_queue_get_into, weft_queue_get_word, weft_queue_new, weft_queue_new_in, weft_queue_options,
    weft_queue_put, weft_queue_put_word, WEFT_QUEUE_FIFO,
};
use weft::status::{weft_status, WEFT_OK};
use weft::time::WEFT_FOREVER;

fn check(rc: weft_status, what: &str) {
    assert!(rc == WEFT_OK, "{what} returned {rc}");
}

fn now_ns() -> u64 {
    weft::time::now_ns()
}


const BOUND: u64 = 1024;
const MSG: usize = 64;

fn fifo(maxsize: u64) -> weft_queue_options {
    weft_queue_options { kind: WEFT_QUEUE_FIFO, flags: 0, maxsize, max_bytes: 0, reserved: [0; 4] }
}

/// A queue handle that may cross to another thread (the queue is thread-safe).
#[derive(Clone, Copy)]
struct Shared(*mut weft_queue);
// SAFETY: weft queues are thread-safe; the pointer stays valid until freed after the joins.
unsafe impl Send for Shared {}

// ---------------------------------------------------------------------------------------------
// Between threads: pointer-sized items, bounded 1024, blocking.

/// weft: one producer thread puts `n` words, one consumer thread gets them; ns per item.
fn weft_threads(n: u64) -> f64 {
    let mut q: *mut weft_queue = null_mut();
    let o = fifo(BOUND);
    // SAFETY: valid options and out-pointer.
    check(unsafe { weft_queue_new(&o, &mut q) }, "weft_queue_new");
    let h = Shared(q);
    let t0 = now_ns();
    let consumer = std::thread::spawn(move || {
        let h = h;
        let mut sum = 0u64;
        for _ in 0..n {
            let mut w = 0usize;
            // SAFETY: live queue, writable word.
            check(unsafe { weft_queue_get_word(h.0, WEFT_FOREVER, &mut w) }, "get_word");
            sum = sum.wrapping_add(w as u64);
        }
        sum
    });
    for i in 1..=n {
        // SAFETY: live queue.
        check(unsafe { weft_queue_put_word(h.0, i as usize, WEFT_FOREVER) }, "put_word");
    }
    let sum = consumer.join().unwrap();
    let t = (now_ns() - t0) as f64 / n as f64;
    assert_eq!(sum, n * (n + 1) / 2, "items lost or duplicated");
    // SAFETY: both threads are done with it.
    unsafe { weft_queue_free(q) };
    t
}

/// crossbeam-channel bounded(1024), usize items; ns per item.
fn crossbeam_threads(n: u64) -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<usize>(BOUND as usize);
    let t0 = now_ns();
    let consumer = std::thread::spawn(move || {
        let mut sum = 0u64;
        for _ in 0..n {
            sum = sum.wrapping_add(rx.recv().unwrap() as u64);
        }
        sum
    });
    for i in 1..=n {
        tx.send(i as usize).unwrap();
    }
    let sum = consumer.join().unwrap();
    let t = (now_ns() - t0) as f64 / n as f64;
    assert_eq!(sum, n * (n + 1) / 2);
    t
}

/// GLib's GAsyncQueue, loaded at run time (unbounded: GLib has no bounded one).
struct Glib {
    new: unsafe extern "C" fn() -> *mut c_void,
    push: unsafe extern "C" fn(*mut c_void, *mut c_void),
    pop: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    unref: unsafe extern "C" fn(*mut c_void),
}

impl Glib {
    fn load() -> Option<Glib> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; the symbols have the C signatures
        // GLib documents, and the library stays loaded (never dlclosed).
        unsafe {
            let lib = libc::dlopen(c"libglib-2.0.so.0".as_ptr(), libc::RTLD_NOW);
            if lib.is_null() {
                return None;
            }
            let sym = |name: &std::ffi::CStr| {
                let p = libc::dlsym(lib, name.as_ptr());
                (!p.is_null()).then_some(p)
            };
            Some(Glib {
                new: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> *mut c_void>(sym(c"g_async_queue_new")?),
                push: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void, *mut c_void)>(sym(c"g_async_queue_push")?),
                pop: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void) -> *mut c_void>(sym(c"g_async_queue_pop")?),
                unref: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void)>(sym(c"g_async_queue_unref")?),
            })
        }
    }
}

fn glib_threads(g: &Glib, n: u64) -> f64 {
    // SAFETY: GLib's documented API; items are non-NULL integers cast to pointers.
    let q = Shared(unsafe { (g.new)() }.cast());
    let pop = g.pop;
    let t0 = now_ns();
    let consumer = std::thread::spawn(move || {
        let q = q;
        let mut sum = 0u64;
        for _ in 0..n {
            // SAFETY: as above.
            sum = sum.wrapping_add(unsafe { pop(q.0.cast()) } as u64);
        }
        sum
    });
    for i in 1..=n {
        // SAFETY: as above.
        unsafe { (g.push)(q.0.cast(), i as *mut c_void) };
    }
    let sum = consumer.join().unwrap();
    let t = (now_ns() - t0) as f64 / n as f64;
    assert_eq!(sum, n * (n + 1) / 2);
    // SAFETY: both threads are done with it.
    unsafe { (g.unref)(q.0.cast()) };
    t
}

// ---------------------------------------------------------------------------------------------
// Between processes: 64-byte messages.



fn message(i: u64) -> [u8; MSG] {
    let mut m = [0u8; MSG];
    m[..8].copy_from_slice(&i.to_le_bytes());
    m[8..16].copy_from_slice(&(!i).to_le_bytes());
    m
}

fn check_message(m: &[u8], i: u64) -> bool {
    m.len() == MSG && m[..8] == i.to_le_bytes() && m[8..16] == (!i).to_le_bytes()
}

/// A shared FIFO queue of maxsize 1024 in the default space.
fn shared_fifo() -> *mut weft_queue {
    let mut q: *mut weft_queue = null_mut();
    let o = fifo(BOUND);
    // SAFETY: NULL space = the default one; NULL name; valid options and out-pointer.
    check(unsafe { weft_queue_new_in(null_mut(), std::ptr::null(), &o, &mut q) }, "weft_queue_new_in");
    q
}

/// weft: a forked consumer gets `n` 64-byte messages the parent puts; ns per message.
fn weft_processes(n: u64) -> f64 {
    let q = shared_fifo();
    let t0 = now_ns();
    let child = fork_child(|| {
        let mut buf = [0u8; MSG];
        for i in 0..n {
            let mut len = 0;
            // SAFETY: live queue (inherited mapping), writable buffer.
            if unsafe { weft_queue_get_into(q, buf.as_mut_ptr().cast(), MSG, WEFT_FOREVER, &mut len) } != WEFT_OK
                || !check_message(&buf[..len], i)
            {
                return false;
            }
        }
        true
    });
    for i in 0..n {
        let m = message(i);
        // SAFETY: live queue, readable message.
        check(unsafe { weft_queue_put(q, m.as_ptr().cast(), MSG, WEFT_FOREVER) }, "put");
    }
    reap(child);
    let t = (now_ns() - t0) as f64 / n as f64;
    // SAFETY: the child is gone.
    unsafe { weft_queue_free(q) };
    t
}



fn pipe_pair() -> [i32; 2] {
    let mut p = [0; 2];
    // SAFETY: `p` is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    p
}


/// A raw pipe: one 64-byte write per message, one 64-byte read per message; ns per message.
fn pipe_processes(n: u64) -> f64 {
    let p = pipe_pair();
    let t0 = now_ns();
    let child = fork_child(|| {
        close_all(&[p[1]]);
        let mut buf = [0u8; MSG];
        (0..n).all(|i| read_exact(p[0], &mut buf) && check_message(&buf, i))
    });
    close_all(&[p[0]]);
    for i in 0..n {
        write_all(p[1], &message(i));
    }
    close_all(&[p[1]]);
    reap(child);
    (now_ns() - t0) as f64 / n as f64
}

// ---------------------------------------------------------------------------------------------
// Hand-off latency between processes: round trips of a 64-byte message.

/// weft: two shared queues, a forked echo child; ns per round trip.
fn weft_handoff(n: u64) -> f64 {
    let (to, back) = (shared_fifo(), shared_fifo());
    let child = fork_child(|| {
        let mut buf = [0u8; MSG];
        for _ in 0..=n {
            let mut len = 0;
            // SAFETY: live queues (inherited mapping), valid buffers.
            unsafe {
                if weft_queue_get_into(to, buf.as_mut_ptr().cast(), MSG, WEFT_FOREVER, &mut len) != WEFT_OK
                    || weft_queue_put(back, buf.as_ptr().cast(), len, WEFT_FOREVER) != WEFT_OK
                {
                    return false;
                }
            }
        }
        true
    });
    let mut buf = [0u8; MSG];
    let mut trip = |i: u64| {
        let m = message(i);
        let mut len = 0;
        // SAFETY: live queues, valid buffers.
        unsafe {
            check(weft_queue_put(to, m.as_ptr().cast(), MSG, WEFT_FOREVER), "put");
            check(weft_queue_get_into(back, buf.as_mut_ptr().cast(), MSG, WEFT_FOREVER, &mut len), "get_into");
        }
        assert!(check_message(&buf[..len], i), "bad echo");
    };
    trip(0); // warm-up
    let t0 = now_ns();
    for i in 1..=n {
        trip(i);
    }
    let t = (now_ns() - t0) as f64 / n as f64;
    reap(child);
    // SAFETY: the child is gone.
    unsafe {
        weft_queue_free(to);
        weft_queue_free(back);
    }
    t
}

/// A raw pipe pair and a forked echo child; ns per round trip.
fn pipe_handoff(n: u64) -> f64 {
    let (a, b) = (pipe_pair(), pipe_pair());
    let child = fork_child(|| {
        close_all(&[a[1], b[0]]);
        let mut buf = [0u8; MSG];
        while read_exact(a[0], &mut buf) {
            write_all(b[1], &buf);
        }
        true
    });
    close_all(&[a[0], b[1]]);
    let mut buf = [0u8; MSG];
    let mut trip = |i: u64| {
        write_all(a[1], &message(i));
        assert!(read_exact(b[0], &mut buf) && check_message(&buf, i), "bad echo");
    };
    trip(0);
    let t0 = now_ns();
    for i in 1..=n {
        trip(i);
    }
    let t = (now_ns() - t0) as f64 / n as f64;
    close_all(&[a[1], b[0]]);
    reap(child);
    t
}

// ---------------------------------------------------------------------------------------------


fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |key: &str| filters.is_empty() || filters.iter().any(|f| key.starts_with(f.as_str()));
    let cfg = Config::from_env();
    let start = std::time::Instant::now();
    println!("weft queue benchmarks (benches/queue.rs) — weft {} vs peers, one run, same machine", env!("CARGO_PKG_VERSION"));
    // SAFETY: sysconf has no preconditions.
    println!("cores: {} online; Python peer: {} (benches/queue_peer.py)", unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }, PyPeer::version());
    println!("load average at start: {}", loadavg());
    let glib = Glib::load();
    if glib.is_none() {
        println!("(libglib-2.0.so.0 did not load: the GAsyncQueue rows are left out)");
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/queue_peer.py");
    let py = std::cell::RefCell::new(PyPeer::start(script, "handoff 1"));
    if py.borrow().is_none() {
        println!("(the Python peer did not start: its rows are left out)");
    }
    let py_run = |cmd: String| -> f64 { py.borrow_mut().as_mut().map(|p| p.run(&cmd).unwrap_or_else(|e| panic!("{e}"))).unwrap_or(f64::NAN) };
    let mut verdicts = Vec::new();

    if want("threads") {
        let mut cs = vec![
            contender("weft private queue (C ABI)", Role::Weft, |s| weft_threads(scaled(400_000.0, s))),
            contender("crossbeam-channel bounded", Role::Peer, |s| crossbeam_threads(scaled(400_000.0, s))),
        ];
        if let Some(g) = glib.as_ref() {
            cs.push(contender("GLib GAsyncQueue (unbounded)", Role::Info, move |s| glib_threads(g, scaled(400_000.0, s))));
        }
        verdicts.extend(bench(
            &cfg,
            "1 pointer-sized items between two threads",
            "1 producer + 1 consumer thread, blocking put/get, bounded 1024; ns per item",
            cs,
            &[Target { id: "1", what: "in-process items", weft: "weft private queue (C ABI)", peer: "crossbeam-channel bounded", goal: Goal::AtMost(1.0) }],
        ));
    }
    if want("processes") {
        verdicts.extend(bench(
            &cfg,
            "2 64-byte messages between two processes",
            "the parent puts, a forked child gets (blocking), bounded 1024; ns per message",
            vec![
                contender("weft shared queue (C ABI)", Role::Weft, |s| weft_processes(scaled(400_000.0, s))),
                contender("raw pipe, 64-byte writes/reads", Role::Info, |s| pipe_processes(scaled(200_000.0, s))),
                contender("Python multiprocessing.Queue", Role::Peer, |s| py_run(format!("mpqueue {}", scaled(20_000.0, s)))),
            ],
            &[
                Target { id: "2a", what: "cross-process messages", weft: "weft shared queue (C ABI)", peer: "raw pipe, 64-byte writes/reads", goal: Goal::Under(100.0) },
                Target { id: "2b", what: "vs multiprocessing.Queue", weft: "weft shared queue (C ABI)", peer: "Python multiprocessing.Queue", goal: Goal::FasterBy(50.0) },
            ],
        ));
    }
    if want("handoff") {
        verdicts.extend(bench(
            &cfg,
            "3 hand-off latency between two processes",
            "a 64-byte message to a forked echo child and back, blocking; ns per round trip",
            vec![
                contender("weft shared queues (C ABI)", Role::Weft, |s| weft_handoff(scaled(20_000.0, s))),
                contender("raw pipe pair", Role::Peer, |s| pipe_handoff(scaled(20_000.0, s))),
                contender("Python multiprocessing.Queue", Role::Info, |s| py_run(format!("handoff {}", scaled(2_000.0, s)))),
            ],
            &[Target { id: "3", what: "cross-process hand-off", weft: "weft shared queues (C ABI)", peer: "raw pipe pair", goal: Goal::AtMost(1.0) }],
        ));
    }
    print_summary(&verdicts);
    println!("load average at end: {}", loadavg());
    println!("total time: {:.1} s", start.elapsed().as_secs_f64());
}
