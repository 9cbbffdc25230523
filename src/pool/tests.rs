//! Unit tests of the pool core (thread workers).

use super::*;
use crate::call::Call;
use crate::capi::call::weft_call;
use crate::future::State;
use crate::status::{weft_status, WEFT_CANCELLED, WEFT_CLOSED, WEFT_INVALID_ARGUMENT, WEFT_OK};
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

const NEVER: Deadline = Deadline::Never;

fn call<'a>(c: *mut weft_call) -> &'a mut Call<'a> {
    // SAFETY: the tasks below receive the live context of their own call.
    unsafe { &mut *(c as *mut Call) }
}

fn u64_of(b: &[u8]) -> u64 {
    u64::from_ne_bytes(b[..8].try_into().unwrap())
}

/// Result: the argument (a u64) plus one; fails for 13.
unsafe extern "C" fn plus_one(c: *mut weft_call) -> weft_status {
    let c = call(c);
    let x = u64_of(c.arg());
    if x == 13 {
        c.set_message("unlucky".into());
        return WEFT_INVALID_ARGUMENT;
    }
    c.set_result(&(x + 1).to_ne_bytes());
    WEFT_OK
}

thread_local! {
    static INITIALIZED: Cell<u64> = const { Cell::new(0) };
}
static INITS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn init(c: *mut weft_call) -> weft_status {
    INITIALIZED.with(|v| v.set(u64_of(call(c).arg())));
    INITS.fetch_add(1, SeqCst);
    WEFT_OK
}

unsafe extern "C" fn init_fails(c: *mut weft_call) -> weft_status {
    call(c).set_message("no database".into());
    WEFT_INVALID_ARGUMENT
}

/// Result: what the initializer stored, and the worker's thread id.
unsafe extern "C" fn whoami(c: *mut weft_call) -> weft_status {
    let mut r = INITIALIZED.with(|v| v.get()).to_ne_bytes().to_vec();
    r.extend_from_slice(&crate::thread::current_tid().to_ne_bytes());
    call(c).set_result(&r);
    WEFT_OK
}

static GATE: AtomicBool = AtomicBool::new(false);
static STARTED: AtomicUsize = AtomicUsize::new(0);
static RAN: AtomicUsize = AtomicUsize::new(0);

/// Waits for GATE (counting itself started), or returns WEFT_CANCELLED once asked to.
unsafe extern "C" fn gated(c: *mut weft_call) -> weft_status {
    STARTED.fetch_add(1, SeqCst);
    let c = call(c);
    while !GATE.load(SeqCst) {
        if c.cancelled() {
            return WEFT_CANCELLED;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    RAN.fetch_add(1, SeqCst);
    WEFT_OK
}

/// The gated tests share GATE/STARTED/RAN.
static GATED: Mutex<()> = Mutex::new(());

fn pool(workers: usize) -> Pool {
    Pool::new(Options { workers, ..Options::default() }).unwrap()
}

fn wait_until(f: impl Fn() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(t.elapsed().as_secs() < 20, "condition not reached");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn every_submitted_task_completes_with_its_own_result() {
    let p = pool(3);
    let futures: Vec<Future> = (0..20_000u64).map(|i| p.submit(plus_one, &i.to_ne_bytes()).unwrap()).collect();
    for (i, f) in futures.iter().enumerate() {
        if i == 13 {
            let e = f.result(NEVER).unwrap_err();
            assert_eq!((e.code, &*e.message), (WEFT_INVALID_ARGUMENT, "unlucky"));
        } else {
            assert_eq!(u64_of(f.result(NEVER).unwrap()), i as u64 + 1);
        }
    }
}

#[test]
fn a_long_argument_and_an_empty_one_reach_the_task() {
    unsafe extern "C" fn echo(c: *mut weft_call) -> weft_status {
        let c = call(c);
        let a = c.arg().to_vec();
        c.set_result(&a);
        WEFT_OK
    }
    let p = pool(1);
    let long: Vec<u8> = (0..1000).map(|i| i as u8).collect();
    assert_eq!(p.submit(echo, &long).unwrap().result(NEVER).unwrap(), &long[..]);
    assert_eq!(p.submit(echo, &[]).unwrap().result(NEVER).unwrap(), b"");
}

#[test]
fn pending_tasks_cancelled_never_run_and_a_running_one_sees_the_request() {
    let _g = GATED.lock().unwrap_or_else(|e| e.into_inner());
    GATE.store(false, SeqCst);
    STARTED.store(0, SeqCst);
    RAN.store(0, SeqCst);
    let p = pool(1);
    let running = p.submit(gated, &[]).unwrap();
    wait_until(|| STARTED.load(SeqCst) == 1);
    let queued: Vec<Future> = (0..5).map(|_| p.submit(gated, &[]).unwrap()).collect();
    for f in &queued {
        assert!(f.cancel());
        assert_eq!(f.state(), State::Cancelled);
    }
    assert!(!running.cancel(), "a running task cannot be cancelled outright");
    assert_eq!(running.result(NEVER).unwrap_err().code, WEFT_CANCELLED);
    assert_eq!(running.state(), State::Cancelled, "the task honoured the request");
    // The worker is free again; the cancelled ones never started.
    GATE.store(true, SeqCst);
    p.submit(gated, &[]).unwrap().result(NEVER).unwrap();
    assert_eq!(STARTED.load(SeqCst), 2);
}

#[test]
fn shutdown_cancels_queued_tasks_and_waits_for_the_running_one() {
    let _g = GATED.lock().unwrap_or_else(|e| e.into_inner());
    GATE.store(false, SeqCst);
    STARTED.store(0, SeqCst);
    RAN.store(0, SeqCst);
    let p = pool(1);
    let running = p.submit(gated, &[]).unwrap();
    wait_until(|| STARTED.load(SeqCst) == 1);
    let queued: Vec<Future> = (0..5).map(|_| p.submit(gated, &[]).unwrap()).collect();
    assert_eq!(p.join(NEVER).unwrap_err().code, WEFT_INVALID_STATE, "join needs a closed pool");
    p.shutdown(false, true, NEVER).unwrap();
    assert!(queued.iter().all(|f| f.state() == State::Cancelled));
    assert_eq!(p.submit(gated, &[]).unwrap_err().code, WEFT_CLOSED);
    assert_eq!(p.join(Deadline::from_timeout_ns(20_000_000)).unwrap_err().code, crate::status::WEFT_TIMEOUT);
    GATE.store(true, SeqCst);
    p.join(NEVER).unwrap();
    running.result(NEVER).unwrap();
    assert_eq!(RAN.load(SeqCst), 1);
}

#[test]
fn close_runs_what_is_queued_then_the_workers_leave() {
    let p = pool(2);
    let fs: Vec<Future> = (0..1000u64).map(|i| p.submit(plus_one, &i.to_ne_bytes()).unwrap()).collect();
    p.close();
    p.join(NEVER).unwrap();
    assert!(fs.iter().all(|f| f.state() != State::Pending && f.state() != State::Cancelled));
}

#[test]
fn terminate_cancels_queued_and_asks_running_tasks_to_stop() {
    let _g = GATED.lock().unwrap_or_else(|e| e.into_inner());
    GATE.store(false, SeqCst);
    STARTED.store(0, SeqCst);
    let p = pool(2);
    let fs: Vec<Future> = (0..6).map(|_| p.submit(gated, &[]).unwrap()).collect();
    wait_until(|| STARTED.load(SeqCst) == 2);
    p.terminate(NEVER).unwrap();
    assert!(fs.iter().all(|f| f.state() == State::Cancelled), "{fs:?}");
}

#[test]
fn the_initializer_runs_once_per_worker_and_its_state_stays() {
    INITS.store(0, SeqCst);
    let p = Pool::new(Options { workers: 2, initializer: Some((init, 77u64.to_ne_bytes().to_vec())), ..Options::default() }).unwrap();
    let fs: Vec<Future> = (0..200).map(|_| p.submit(whoami, &[]).unwrap()).collect();
    for f in &fs {
        assert_eq!(u64_of(f.result(NEVER).unwrap()), 77);
    }
    p.shutdown(true, false, NEVER).unwrap();
    assert_eq!(INITS.load(SeqCst), 2);
}

#[test]
fn a_failing_initializer_breaks_the_pool() {
    let p = Pool::new(Options { workers: 1, initializer: Some((init_fails, Vec::new())), ..Options::default() }).unwrap();
    // Queued before or after the failure: each fails with the initializer's error.
    let r = p.submit(whoami, &[]);
    let e = match r {
        Ok(f) => f.result(NEVER).unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(e.code, WEFT_INVALID_ARGUMENT);
    assert!(e.message.contains("initializer failed: no database"), "{}", e.message);
    wait_until(|| p.submit(whoami, &[]).is_err());
}

#[test]
fn max_tasks_replaces_workers() {
    let p = Pool::new(Options { workers: 1, max_tasks: 2, ..Options::default() }).unwrap();
    let mut tids = Vec::new();
    for _ in 0..6 {
        let r = p.submit(whoami, &[]).unwrap().result(NEVER).unwrap().to_vec();
        tids.push(u32::from_ne_bytes(r[8..12].try_into().unwrap()));
    }
    assert!(tids[0] == tids[1] && tids[2] == tids[3] && tids[4] == tids[5], "{tids:?}");
    assert_eq!(tids.iter().collect::<HashSet<_>>().len(), 3, "{tids:?}");
}

#[test]
fn workers_can_be_added_and_removed_while_running() {
    let _g = GATED.lock().unwrap_or_else(|e| e.into_inner());
    GATE.store(false, SeqCst);
    STARTED.store(0, SeqCst);
    let p = pool(1);
    p.set_workers(3).unwrap();
    assert_eq!(p.workers(), 3);
    let fs: Vec<Future> = (0..3).map(|_| p.submit(gated, &[]).unwrap()).collect();
    wait_until(|| STARTED.load(SeqCst) == 3); // three run at once
    GATE.store(true, SeqCst);
    for f in &fs {
        f.result(NEVER).unwrap();
    }
    p.set_workers(1).unwrap();
    assert_eq!(p.workers(), 1);
    // Surplus workers retire.
    let Engine::Threads(t) = &p.engine else { unreachable!() };
    wait_until(|| t.live() == 1);
    assert_eq!(u64_of(p.submit(plus_one, &1u64.to_ne_bytes()).unwrap().result(NEVER).unwrap()), 2);
}

#[test]
fn map_gives_results_in_order_and_the_first_failure() {
    let p = pool(2);
    let items: Vec<[u8; 8]> = (0..1000u64).map(|i| (i + 100).to_ne_bytes()).collect();
    for chunksize in [0, 1, 7, 5000] {
        let packed = p.map(plus_one, items.iter().map(|i| &i[..]), chunksize, NEVER).unwrap();
        let got: Vec<u64> = chunk::items(&packed).map(|r| u64_of(r.unwrap())).collect();
        assert_eq!(got, (0..1000u64).map(|i| i + 101).collect::<Vec<_>>());
    }
    let bad: Vec<[u8; 8]> = (0..100u64).map(|i| i.to_ne_bytes()).collect();
    let e = p.map(plus_one, bad.iter().map(|i| &i[..]), 3, NEVER).unwrap_err();
    assert_eq!(e.code, WEFT_INVALID_ARGUMENT);
    assert_eq!(e.message, "item 13 failed: unlucky");
    assert_eq!(p.map(plus_one, std::iter::empty::<&[u8]>(), 0, NEVER).unwrap(), b"");
    assert_eq!(map::auto_chunksize(1000, 2), 125);
    assert_eq!(map::auto_chunksize(1001, 2), 126);
    assert_eq!(map::auto_chunksize(3, 2), 1);
}

#[test]
fn imap_reads_an_endless_source_lazily_and_can_stop_early() {
    let p = pool(2);
    let read = std::sync::Arc::new(AtomicU64::new(0));
    let r = read.clone();
    let source: imap::Source = Box::new(move || Ok(Some(r.fetch_add(1, SeqCst).to_ne_bytes().to_vec())));
    let mut it = p.imap(plus_one, source, 4, 3, true);
    for i in 0..50u64 {
        match it.next(NEVER).unwrap() {
            Some(Ok(b)) => assert_eq!(u64_of(&b), i + 1),
            Some(Err(e)) => assert!(i == 13 && e.code == WEFT_INVALID_ARGUMENT, "{e:?}"),
            None => panic!("an endless source ended"),
        }
        // Never more than the chunks in flight plus the one being delivered.
        assert!(read.load(SeqCst) <= i + 1 + 4 * 4, "read {} after {}", read.load(SeqCst), i + 1);
    }
    drop(it);
}

#[test]
fn imap_unordered_delivers_every_item_once_and_a_source_error_last() {
    let p = pool(2);
    let mut n = 0u64;
    let source: imap::Source = Box::new(move || {
        n += 1;
        match n {
            1..=500 => Ok(Some((n + 1000).to_ne_bytes().to_vec())),
            _ => Err(Error::new(WEFT_CLOSED, "source broke")),
        }
    });
    let mut it = p.imap(plus_one, source, 7, 4, false);
    let mut got = Vec::new();
    let err = loop {
        match it.next(NEVER) {
            Ok(Some(r)) => got.push(u64_of(&r.unwrap())),
            Ok(None) => panic!("the source's error was not given"),
            Err(e) => break e,
        }
    };
    got.sort();
    assert_eq!(got, (1002..1502).collect::<Vec<_>>(), "every item before the error");
    assert_eq!(err.message, "source broke");
    assert!(it.next(NEVER).unwrap().is_none());
}

static HELD: AtomicBool = AtomicBool::new(true);

/// Waits (at most 60 s) while HELD is set.
unsafe extern "C" fn held(_c: *mut weft_call) -> weft_status {
    for _ in 0..60_000 {
        if !HELD.load(SeqCst) {
            return WEFT_OK;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    crate::status::WEFT_TIMEOUT
}

#[test]
fn quick_tasks_do_not_wait_in_the_hands_of_a_worker_inside_a_long_one() {
    // Submitted together: a worker that took the long task first must not hold quick ones in
    // its batch while the other worker is idle.
    let p = pool(2);
    let long = p.submit(held, &[]).unwrap();
    let quick: Vec<_> = (0..20u64).map(|i| p.submit(plus_one, &(100 + i).to_ne_bytes()).unwrap()).collect();
    let within = Deadline::from_timeout_ns(20_000_000_000);
    let done = quick.iter().enumerate().all(|(i, f)| f.result(within).is_ok_and(|r| u64_of(r) == 101 + i as u64));
    HELD.store(false, SeqCst);
    assert!(done, "a quick task waited behind the long one");
    assert!(long.result(NEVER).is_ok());
    p.shutdown(true, false, NEVER).unwrap();
}
