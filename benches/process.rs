//! weft's processes, pipes and commands vs their peers, side by side in one run (DESIGN.md §6,
//! issue 4). See benches/README.md.
//!
//! `cargo bench --bench process [-- FILTER...]` runs the benchmarks (or those whose key starts
//! with one of the FILTER words: `start`, `pipe`, `command`).
//!
//! Method: the harness of benches/common (interleaved slices in rotating order, several
//! rounds, median of rounds, ratios of per-round samples). Every sample checks its own work
//! (exit codes, echoed bytes) and a failed check aborts the run. weft is called through its
//! exported `extern "C"` functions. The peers: the raw system calls (fork + waitpid,
//! posix_spawn of /bin/true, a pipe pair), and CPython's multiprocessing and subprocess in one
//! long-running interpreter (benches/process_peer.py).
//!
//! Environment: `WEFT_BENCH_ROUNDS` (default 7), `WEFT_BENCH_CHUNKS` (default 5),
//! `WEFT_BENCH_SCALE` (default 1.0), `WEFT_BENCH_ONLY`, `WEFT_BENCH_VERBOSE=1`,
//! `WEFT_BENCH_PYTHON` (default `python3`).

mod common;

use common::harness::*;
use common::os::{close_all, fork_child, read_exact, reap, write_all};
use common::pypeer::PyPeer;
use std::ffi::CString;
use std::ptr::null_mut;
use std::time::Instant;

use weft::capi::call::weft_call;
use weft::capi::pipe::{weft_connection, weft_connection_free, weft_connection_recv_into, weft_connection_send, weft_pipe};
use weft::capi::command::{weft_command, weft_command_free, weft_command_start, weft_command_wait};
use weft::capi::process::{
    weft_process, weft_process_exitcode, weft_process_free, weft_process_join, weft_process_options, weft_process_start,
    weft_set_warning_hook, WEFT_START_FORK, WEFT_START_FORKSERVER, WEFT_START_SPAWN,
};
use weft::status::{weft_status, WEFT_OK};
use weft::time::WEFT_FOREVER;

fn check(rc: weft_status, what: &str) {
    assert!(rc == WEFT_OK, "{what} returned {rc}");
}

fn now_ns() -> u64 {
    weft::time::now_ns()
}

// ---------------------------------------------------------------------------------------------
// Process start + join.

extern "C" fn nothing(_call: *mut weft_call) -> weft_status {
    WEFT_OK
}

/// weft: start + join + free `n` processes with `method`; ns per process.
fn weft_start_join(method: u32, n: u64) -> f64 {
    let opts = weft_process_options { name: std::ptr::null(), start_method: method, daemon: false, fds: std::ptr::null(), fd_count: 0, reserved: [0; 4] };
    let t0 = now_ns();
    for _ in 0..n {
        let mut p: *mut weft_process = null_mut();
        // SAFETY: valid options and out-pointer; `nothing` is a weft_task_fn.
        unsafe {
            check(weft_process_start(Some(nothing), std::ptr::null(), 0, &opts, &mut p), "weft_process_start");
            check(weft_process_join(p, WEFT_FOREVER, null_mut()), "weft_process_join");
            let mut code = -1;
            check(weft_process_exitcode(p, &mut code), "weft_process_exitcode");
            assert_eq!(code, 0);
            weft_process_free(p);
        }
    }
    (now_ns() - t0) as f64 / n as f64
}

/// Raw fork + waitpid of a child that exits at once; ns per process.
fn raw_fork(n: u64) -> f64 {
    let t0 = now_ns();
    for _ in 0..n {
        // SAFETY: the child only calls _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: ending the child.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(status, 0);
    }
    (now_ns() - t0) as f64 / n as f64
}

/// posix_spawn of `prog` (no arguments) + waitpid; ns per process.
fn raw_posix_spawn(prog: &str, n: u64) -> f64 {
    let path = CString::new(prog).unwrap();
    let argv = [path.as_ptr(), std::ptr::null()];
    extern "C" {
        static environ: *const *mut libc::c_char;
    }
    let t0 = now_ns();
    for _ in 0..n {
        let mut pid = 0;
        // SAFETY: NUL-terminated path and argv; the process environment.
        let rc = unsafe { libc::posix_spawn(&mut pid, path.as_ptr(), std::ptr::null(), std::ptr::null(), argv.as_ptr() as *const *mut _, environ) };
        assert_eq!(rc, 0, "posix_spawn");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(status, 0);
    }
    (now_ns() - t0) as f64 / n as f64
}

/// weft: start + wait + free `/bin/true` `n` times; ns per command.
fn weft_command_true(n: u64) -> f64 {
    let prog = CString::new("/bin/true").unwrap();
    let argv = [prog.as_ptr(), std::ptr::null()];
    let t0 = now_ns();
    for _ in 0..n {
        let mut c: *mut weft_command = null_mut();
        let mut rc = -1;
        // SAFETY: NUL-terminated argv; NULL options (defaults); valid out-pointers.
        unsafe {
            check(weft_command_start(argv.as_ptr(), std::ptr::null(), &mut c), "weft_command_start");
            check(weft_command_wait(c, WEFT_FOREVER, &mut rc), "weft_command_wait");
            weft_command_free(c);
        }
        assert_eq!(rc, 0);
    }
    (now_ns() - t0) as f64 / n as f64
}

// ---------------------------------------------------------------------------------------------
// Pipes: round trips and throughput between a parent and a forked child.

const SMALL: usize = 64;
const MIB: usize = 1 << 20;


/// Runs `f` with this process (and so the children it forks) pinned to one CPU, as
/// benches/sync.rs pins its ping-pong threads: on this VM a wake-up sent to an idle virtual CPU
/// costs tens of microseconds of hypervisor time, which would swamp the round trip itself.
fn on_one_cpu<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: zeroed cpu_set_t values are valid; the affinity calls read/write them.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old);
        let first = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &old)).unwrap_or(0);
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(first, &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
        let r = f();
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &old);
        r
    }
}


/// weft: `n` round trips of a 64-byte message over a duplex weft_pipe; ns per round trip.
fn weft_round_trips(n: u64) -> f64 {
    let (mut a, mut b): (*mut weft_connection, *mut weft_connection) = (null_mut(), null_mut());
    // SAFETY: valid out-pointers.
    check(unsafe { weft_pipe(true, &mut a, &mut b) }, "weft_pipe");
    let child = fork_child(|| {
        // SAFETY: the child's copy of the parent's end must go, or it never sees end of file.
        unsafe { weft_connection_free(a) };
        let mut buf = [0u8; SMALL];
        loop {
            let mut len = 0;
            // SAFETY: `b` is a live connection in this child; `buf` is writable.
            if unsafe { weft_connection_recv_into(b, buf.as_mut_ptr().cast(), SMALL, WEFT_FOREVER, &mut len) } != WEFT_OK {
                break; // the parent closed its end
            }
            // SAFETY: echoing `len` bytes of `buf`.
            check(unsafe { weft_connection_send(b, buf.as_ptr().cast(), len) }, "echo");
        }
        true
    });
    // SAFETY: the parent's copy of `b` is not used here.
    unsafe { weft_connection_free(b) };
    let msg = [7u8; SMALL];
    let mut back = [0u8; SMALL];
    let trip = |back: &mut [u8; SMALL]| {
        let mut len = 0;
        // SAFETY: live connection, valid buffers.
        unsafe {
            check(weft_connection_send(a, msg.as_ptr().cast(), SMALL), "send");
            check(weft_connection_recv_into(a, back.as_mut_ptr().cast(), SMALL, WEFT_FOREVER, &mut len), "recv_into");
        }
        assert_eq!(len, SMALL);
    };
    trip(&mut back); // warm-up
    let t0 = now_ns();
    for _ in 0..n {
        trip(&mut back);
    }
    let t = (now_ns() - t0) as f64 / n as f64;
    assert_eq!(back, msg);
    // SAFETY: closing our end ends the echo loop.
    unsafe { weft_connection_free(a) };
    reap(child);
    t
}



/// A raw pair (two pipes, or a socketpair) between parent and child: (parent read, parent
/// write, child read, child write).
fn raw_pair(socket: bool) -> [i32; 4] {
    if socket {
        let mut sv = [0; 2];
        // SAFETY: `sv` is a writable array of two ints.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) }, 0);
        [sv[0], sv[0], sv[1], sv[1]]
    } else {
        let (mut down, mut up) = ([0; 2], [0; 2]);
        // SAFETY: writable arrays of two ints.
        unsafe {
            assert_eq!(libc::pipe(down.as_mut_ptr()), 0);
            assert_eq!(libc::pipe(up.as_mut_ptr()), 0);
        }
        [up[0], down[1], down[0], up[1]]
    }
}


/// Raw: `n` round trips of 64 bytes over two pipes (or a socketpair); ns per round trip.
fn raw_round_trips(n: u64, socket: bool) -> f64 {
    let [pr, pw, cr, cw] = raw_pair(socket);
    let child = fork_child(|| {
        if !socket {
            close_all(&[pr, pw]);
        }
        let mut buf = [0u8; SMALL];
        loop {
            // SAFETY: reading into `buf`.
            let r = unsafe { libc::read(cr, buf.as_mut_ptr().cast(), SMALL) };
            if r <= 0 {
                break;
            }
            write_all(cw, &buf[..r as usize]);
        }
        true
    });
    if !socket {
        close_all(&[cr, cw]);
    }
    let msg = [7u8; SMALL];
    let mut back = [0u8; SMALL];
    write_all(pw, &msg);
    assert!(read_exact(pr, &mut back), "read failed or ended early");
    let t0 = now_ns();
    for _ in 0..n {
        write_all(pw, &msg);
        assert!(read_exact(pr, &mut back), "read failed or ended early");
    }
    let t = (now_ns() - t0) as f64 / n as f64;
    assert_eq!(back, msg);
    if socket {
        // SAFETY: ends the child's loop (it reads end of file).
        unsafe { libc::shutdown(pw, libc::SHUT_WR) };
        reap(child);
        close_all(&[pr, cr]);
    } else {
        close_all(&[pr, pw]);
        reap(child);
    }
    t
}

/// weft: the child sends `n` 1 MiB messages; the parent receives them into one buffer. ns
/// per MiB.
fn weft_throughput(n: u64) -> f64 {
    let (mut r, mut w): (*mut weft_connection, *mut weft_connection) = (null_mut(), null_mut());
    // SAFETY: valid out-pointers.
    check(unsafe { weft_pipe(false, &mut r, &mut w) }, "weft_pipe");
    let child = fork_child(|| {
        let data = vec![0x5au8; MIB];
        for _ in 0..=n {
            // SAFETY: live connection, valid buffer.
            check(unsafe { weft_connection_send(w, data.as_ptr().cast(), MIB) }, "send 1 MiB");
        }
        true
    });
    // SAFETY: the parent does not write.
    unsafe { weft_connection_free(w) };
    let mut buf = vec![0u8; MIB];
    let recv = |buf: &mut Vec<u8>| {
        let mut len = 0;
        // SAFETY: live connection, writable buffer of MIB bytes.
        check(unsafe { weft_connection_recv_into(r, buf.as_mut_ptr().cast(), MIB, WEFT_FOREVER, &mut len) }, "recv 1 MiB");
        assert_eq!(len, MIB);
    };
    recv(&mut buf); // warm-up
    let t0 = now_ns();
    for _ in 0..n {
        recv(&mut buf);
    }
    let t = (now_ns() - t0) as f64 / n as f64;
    assert!(buf[0] == 0x5a && buf[MIB - 1] == 0x5a);
    // SAFETY: done with it.
    unsafe { weft_connection_free(r) };
    reap(child);
    t
}

/// Raw: the child writes `n` MiB to a pipe in 1 MiB writes; the parent reads 1 MiB at a time.
/// ns per MiB.
fn raw_throughput(n: u64) -> f64 {
    let mut p = [0; 2];
    // SAFETY: writable array of two ints.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    let child = fork_child(|| {
        close_all(&[p[0]]);
        let data = vec![0x5au8; MIB];
        for _ in 0..=n {
            write_all(p[1], &data);
        }
        true
    });
    close_all(&[p[1]]);
    let mut buf = vec![0u8; MIB];
    assert!(read_exact(p[0], &mut buf), "read failed or ended early");
    let t0 = now_ns();
    for _ in 0..n {
        assert!(read_exact(p[0], &mut buf), "read failed or ended early");
    }
    let t = (now_ns() - t0) as f64 / n as f64;
    assert!(buf[0] == 0x5a && buf[MIB - 1] == 0x5a);
    close_all(&[p[0]]);
    reap(child);
    t
}


fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |key: &str| filters.is_empty() || filters.iter().any(|f| key.starts_with(f.as_str()));
    let cfg = Config::from_env();
    let start = Instant::now();
    // The bench compares single-threaded fork; no warning is wanted in its output.
    // SAFETY: NULL silences warnings.
    unsafe { weft_set_warning_hook(None, null_mut()) };
    println!("weft process benchmarks (benches/process.rs) — weft {} vs peers, one run, same machine", env!("CARGO_PKG_VERSION"));
    println!("CPU: {}", cpu_model());
    // SAFETY: sysconf has no preconditions.
    println!("cores: {} online; Python peer: {} (benches/process_peer.py)", unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }, PyPeer::version());
    println!("load average at start: {}", loadavg());
    let py = std::cell::RefCell::new(PyPeer::start(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/process_peer.py"), "run 1"));
    if py.borrow().is_none() {
        println!("(the Python peer did not start: its rows are left out)");
    }
    let py_run = |cmd: String| -> f64 { py.borrow_mut().as_mut().map(|p| p.run(&cmd).unwrap_or_else(|e| panic!("{e}"))).unwrap_or(f64::NAN) };
    let mut verdicts = Vec::new();

    if want("start") {
        // Per slice at scale 1: 200 forks, 200 forkserver children, 40 spawns; Python fewer.
        verdicts.extend(bench(
            &cfg,
            "1 process start + join (fork)",
            "a child that returns at once; ns per process",
            vec![
                contender("weft fork (C ABI)", Role::Weft, |s| weft_start_join(WEFT_START_FORK, scaled(200.0, s))),
                contender("raw fork + waitpid", Role::Peer, |s| raw_fork(scaled(200.0, s))),
                contender("Python multiprocessing fork", Role::Info, |s| py_run(format!("start fork {}", scaled(10.0, s)))),
            ],
            &[Target { id: "1", what: "fork start+join", weft: "weft fork (C ABI)", peer: "raw fork + waitpid", goal: Goal::AtMost(1.2) }],
        ));
        verdicts.extend(bench(
            &cfg,
            "2 process start + join (forkserver)",
            "a child that returns at once; ns per process",
            vec![
                contender("weft forkserver (C ABI)", Role::Weft, |s| weft_start_join(WEFT_START_FORKSERVER, scaled(200.0, s))),
                contender("raw fork + waitpid", Role::Peer, |s| raw_fork(scaled(200.0, s))),
                contender("Python multiprocessing forkserver", Role::Info, |s| py_run(format!("start forkserver {}", scaled(4.0, s)))),
            ],
            &[Target { id: "2", what: "forkserver start+join", weft: "weft forkserver (C ABI)", peer: "raw fork + waitpid", goal: Goal::Under(300_000.0) }],
        ));
        verdicts.extend(bench(
            &cfg,
            "3 process start + join (spawn)",
            "a child that returns at once; ns per process",
            vec![
                contender("weft spawn (C ABI)", Role::Weft, |s| weft_start_join(WEFT_START_SPAWN, scaled(40.0, s))),
                contender("posix_spawn /bin/true + waitpid", Role::Peer, |s| raw_posix_spawn("/bin/true", scaled(40.0, s))),
                contender("Python multiprocessing spawn", Role::Info, |s| py_run(format!("start spawn {}", scaled(1.0, s)))),
            ],
            &[Target { id: "3", what: "spawn start+join", weft: "weft spawn (C ABI)", peer: "posix_spawn /bin/true + waitpid", goal: Goal::Under(1_500_000.0) }],
        ));
    }

    if want("pipe") {
        verdicts.extend(bench(
            &cfg,
            "4 pipe round trip between two processes",
            "64-byte message there and back, parent and forked echo child, both on one CPU (Python: unpinned); ns per round trip",
            vec![
                contender("weft_pipe duplex (C ABI)", Role::Weft, |s| on_one_cpu(|| weft_round_trips(scaled(4000.0, s)))),
                contender("raw pipe pair", Role::Peer, |s| on_one_cpu(|| raw_round_trips(scaled(4000.0, s), false))),
                contender("raw socketpair", Role::Info, |s| on_one_cpu(|| raw_round_trips(scaled(4000.0, s), true))),
                contender("Python multiprocessing.Pipe", Role::Info, |s| py_run(format!("pipe {}", scaled(400.0, s)))),
            ],
            &[Target { id: "4", what: "pipe round trip", weft: "weft_pipe duplex (C ABI)", peer: "raw pipe pair", goal: Goal::AtMost(1.1) }],
        ));
        verdicts.extend(bench(
            &cfg,
            "5 1 MiB messages from a child process",
            "one-way; ns per MiB (lower is better: bandwidth = 1 MiB / time)",
            vec![
                contender("weft_pipe one-way, recv_into (C ABI)", Role::Weft, |s| weft_throughput(scaled(200.0, s))),
                contender("raw pipe stream, 1 MiB reads", Role::Peer, |s| raw_throughput(scaled(200.0, s))),
            ],
            &[Target {
                id: "5",
                what: "1 MiB message bandwidth",
                weft: "weft_pipe one-way, recv_into (C ABI)",
                peer: "raw pipe stream, 1 MiB reads",
                goal: Goal::AtMost(1.25),
            }],
        ));
    }

    if want("command") {
        // No target in the issue: side by side for information.
        verdicts.extend(bench(
            &cfg,
            "6 command start + wait of /bin/true",
            "ns per command",
            vec![
                contender("weft_command_start + wait (C ABI)", Role::Weft, |s| weft_command_true(scaled(40.0, s))),
                contender("posix_spawn /bin/true + waitpid", Role::Peer, |s| raw_posix_spawn("/bin/true", scaled(40.0, s))),
                contender("Python subprocess.run", Role::Info, |s| py_run(format!("run {}", scaled(10.0, s)))),
            ],
            &[],
        ));
    }

    print_summary(&verdicts);
    drop(py);
    println!("load average at end: {}", loadavg());
    println!("total time: {:.1} s", start.elapsed().as_secs_f64());
}
