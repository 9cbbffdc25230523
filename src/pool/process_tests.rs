//! Process pools (fork workers): results, crash healing, retries, max tasks, initializer,
//! map, close/join, terminate.

use super::*;
use crate::call::Call;
use crate::capi::call::weft_call;
use crate::future::State;
use crate::process::StartMethod;
use crate::status::{weft_status, WEFT_CANCELLED, WEFT_INVALID_ARGUMENT, WEFT_OK, WEFT_TIMEOUT, WEFT_WORKER_DIED};
use crate::test_support::SharedMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

const NEVER: Deadline = Deadline::Never;

fn call<'a>(c: *mut weft_call) -> &'a mut Call<'a> {
    // SAFETY: the tasks below receive the live context of their own call.
    unsafe { &mut *(c as *mut Call) }
}

fn u64_of(b: &[u8]) -> u64 {
    u64::from_ne_bytes(b[..8].try_into().unwrap())
}

/// Argument: `x: u64` and, optionally, a byte saying how to end. Result: x + 1, then the
/// worker's pid.
unsafe extern "C" fn work(c: *mut weft_call) -> weft_status {
    let c = call(c);
    let arg = c.arg().to_vec();
    let x = u64_of(&arg);
    match arg.get(8) {
        // SAFETY: each ends this worker process on purpose.
        Some(b'k') => unsafe { libc::raise(libc::SIGKILL) },
        Some(b's') => unsafe { std::ptr::null_mut::<u8>().write_volatile(1); 0 },
        Some(b'a') => unsafe { libc::abort() },
        Some(b'e') => unsafe { libc::_exit(3) },
        Some(b'f') => {
            c.set_message("refused".into());
            return WEFT_INVALID_ARGUMENT;
        }
        _ => 0,
    };
    let mut r = (x + 1).to_ne_bytes().to_vec();
    // SAFETY: getpid has no preconditions.
    r.extend_from_slice(&unsafe { libc::getpid() }.to_ne_bytes());
    c.set_result(&r);
    WEFT_OK
}

fn pool(workers: usize) -> Pool {
    Pool::new(Options { kind: Workers::Processes(StartMethod::Fork), workers, ..Options::default() }).unwrap()
}

fn arg(x: u64, how: Option<u8>) -> Vec<u8> {
    let mut a = x.to_ne_bytes().to_vec();
    a.extend(how);
    a
}

#[test]
fn every_task_of_a_process_pool_completes_with_its_result() {
    let p = pool(2);
    let fs: Vec<Future> = (0..3000u64).map(|i| p.submit(work, &arg(i, None)).unwrap()).collect();
    let mut pids = HashSet::new();
    for (i, f) in fs.iter().enumerate() {
        let r = f.result(NEVER).unwrap();
        assert_eq!(u64_of(r), i as u64 + 1);
        pids.insert(i32::from_ne_bytes(r[8..12].try_into().unwrap()));
    }
    assert_eq!(pids.len(), 2, "both workers ran tasks");
    let e = p.submit(work, &arg(1, Some(b'f'))).unwrap().result(NEVER).unwrap_err();
    assert_eq!((e.code, &*e.message), (WEFT_INVALID_ARGUMENT, "refused"));
    p.shutdown(true, false, NEVER).unwrap();
}

#[test]
fn a_worker_that_dies_fails_exactly_its_task_and_is_replaced() {
    let p = pool(2);
    for (round, how) in [b'k', b's', b'a', b'e'].into_iter().cycle().take(8).enumerate() {
        let victim = 37 + round as u64;
        let fs: Vec<Future> =
            (0..200u64).map(|i| p.submit(work, &arg(i, (i == victim).then_some(how))).unwrap()).collect();
        for (i, f) in fs.iter().enumerate() {
            if i as u64 == victim {
                let e = f.result(NEVER).unwrap_err();
                assert_eq!(e.code, WEFT_WORKER_DIED, "{}", e.message);
                let why = match how {
                    b'e' => "exited with code 3".to_string(),
                    b'k' => "signal 9".to_string(),
                    b's' => "signal 11".to_string(),
                    _ => "signal 6".to_string(),
                };
                assert!(e.message.contains(&why) && e.message.contains("worker process"), "{}", e.message);
            } else {
                assert_eq!(u64_of(f.result(NEVER).unwrap()), i as u64 + 1, "task {i} in round {round}");
            }
        }
    }
    assert_eq!(p.workers(), 2);
    p.shutdown(true, false, NEVER).unwrap();
}

/// Dies (SIGKILL) the first time it runs for a given slot of the shared flags, succeeds after.
/// Address of the shared flags (a leaked `SharedMap`, inherited by the fork workers).
static FLAGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn flags() -> &'static [AtomicU32; 8] {
    let mut p = FLAGS.load(SeqCst);
    if p == 0 {
        let map = Box::leak(Box::new(SharedMap::new(<[AtomicU32; 8]>::default())));
        p = map.as_ptr() as usize;
        FLAGS.store(p, SeqCst);
    }
    // SAFETY: the mapping is leaked: it lives as long as the process (and its fork children).
    unsafe { &*(p as *const [AtomicU32; 8]) }
}

unsafe extern "C" fn dies_once(c: *mut weft_call) -> weft_status {
    let c = call(c);
    let slot = c.arg()[0] as usize;
    if flags()[slot].fetch_add(1, SeqCst) == 0 {
        // SAFETY: ends this worker on purpose.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    c.set_result(b"second time");
    WEFT_OK
}

/// Waits (at most 60 s) until the shared flag in slot `arg[0]` is set.
unsafe extern "C" fn blocks_on_flag(c: *mut weft_call) -> weft_status {
    let c = call(c);
    let slot = c.arg()[0] as usize;
    for _ in 0..60_000 {
        if flags()[slot].load(SeqCst) != 0 {
            c.set_result(b"released");
            return WEFT_OK;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    WEFT_TIMEOUT
}

#[test]
fn quick_tasks_do_not_wait_behind_a_long_one_while_a_worker_is_idle() {
    flags(); // mapped before the workers fork
    let p = pool(2);
    let long = p.submit(blocks_on_flag, &[5]).unwrap();
    while long.state() != State::Running {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // The pool does not know yet how long tasks take: it sends several to each worker, some
    // to the one inside the long task; those are taken back once that worker counts as stalled.
    let quick: Vec<_> = (0..20).map(|i| p.submit(work, &arg(i, None)).unwrap()).collect();
    let within = Deadline::from_timeout_ns(20_000_000_000);
    let done = quick.iter().enumerate().all(|(i, f)| f.result(within).is_ok_and(|r| u64_of(r) == i as u64 + 1));
    flags()[5].store(1, SeqCst);
    assert!(done, "a quick task waited behind the long one");
    assert_eq!(long.result(NEVER).unwrap(), b"released");
    p.shutdown(true, false, NEVER).unwrap();
}

#[test]
fn retries_run_a_task_again_after_its_worker_died() {
    flags();
    let p = Pool::new(Options { kind: Workers::Processes(StartMethod::Fork), workers: 1, retries: 1, ..Options::default() }).unwrap();
    assert_eq!(p.submit(dies_once, &[0]).unwrap().result(NEVER).unwrap(), b"second time");
    assert_eq!(flags()[0].load(SeqCst), 2);
    p.shutdown(true, false, NEVER).unwrap();
}

#[test]
fn max_tasks_replaces_worker_processes_without_losing_tasks() {
    let p = Pool::new(Options { kind: Workers::Processes(StartMethod::Fork), workers: 1, max_tasks: 3, ..Options::default() }).unwrap();
    let fs: Vec<Future> = (0..12u64).map(|i| p.submit(work, &arg(i, None)).unwrap()).collect();
    let pids: Vec<i32> = fs.iter().map(|f| i32::from_ne_bytes(f.result(NEVER).unwrap()[8..12].try_into().unwrap())).collect();
    for chunk in pids.chunks(3) {
        assert!(chunk.iter().all(|p| *p == chunk[0]), "{pids:?}");
    }
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 4, "{pids:?}");
    p.shutdown(true, false, NEVER).unwrap();
}

static INIT_VALUE: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn init(c: *mut weft_call) -> weft_status {
    INIT_VALUE.store(u64_of(call(c).arg()), SeqCst);
    WEFT_OK
}

unsafe extern "C" fn read_init(c: *mut weft_call) -> weft_status {
    call(c).set_result(&INIT_VALUE.load(SeqCst).to_ne_bytes());
    WEFT_OK
}

unsafe extern "C" fn init_fails(c: *mut weft_call) -> weft_status {
    call(c).set_message("cannot connect".into());
    WEFT_INVALID_ARGUMENT
}

#[test]
fn the_initializer_sets_up_each_worker_process() {
    let p = Pool::new(Options {
        kind: Workers::Processes(StartMethod::Fork),
        workers: 2,
        initializer: Some((init, 4242u64.to_ne_bytes().to_vec())),
        ..Options::default()
    })
    .unwrap();
    for _ in 0..20 {
        assert_eq!(u64_of(p.submit(read_init, &[]).unwrap().result(NEVER).unwrap()), 4242);
    }
    assert_eq!(INIT_VALUE.load(SeqCst), 0, "the parent's copy is untouched");
    p.shutdown(true, false, NEVER).unwrap();

    let p = Pool::new(Options { kind: Workers::Processes(StartMethod::Fork), workers: 1, initializer: Some((init_fails, Vec::new())), ..Options::default() }).unwrap();
    let e = match p.submit(read_init, &[]) {
        Ok(f) => f.result(NEVER).unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(e.code, WEFT_INVALID_ARGUMENT);
    assert!(e.message.contains("initializer failed") && e.message.contains("cannot connect"), "{}", e.message);
    p.terminate(NEVER).unwrap();
}

#[test]
fn map_over_processes_keeps_item_order() {
    let p = pool(2);
    let items: Vec<[u8; 8]> = (0..5000u64).map(|i| i.to_ne_bytes()).collect();
    let packed = p.map(work, items.iter().map(|i| &i[..]), 0, NEVER).unwrap();
    let got: Vec<u64> = chunk::items(&packed).map(|r| u64_of(r.unwrap())).collect();
    assert_eq!(got, (1..=5000).collect::<Vec<_>>());
    p.shutdown(true, false, NEVER).unwrap();
}

#[test]
fn a_large_map_is_cut_into_chunks_that_fit_the_workers_queues() {
    // Python's rule would give 200_000 / 8 = 25_000 items (400 KB) per chunk: more than a
    // chunk may carry, so chunks are cut by size too.
    let p = pool(2);
    let items: Vec<[u8; 8]> = (0..200_000u64).map(|i| i.to_ne_bytes()).collect();
    let packed = p.map(work, items.iter().map(|i| &i[..]), 0, NEVER).unwrap();
    assert_eq!(chunk::items(&packed).count(), 200_000);
    assert_eq!(chunk::items(&packed).last().map(|r| u64_of(r.unwrap())), Some(200_000));
    p.shutdown(true, false, NEVER).unwrap();
}

/// Loops until asked to cancel (at most 20 s), then returns WEFT_CANCELLED.
unsafe extern "C" fn until_cancelled(c: *mut weft_call) -> weft_status {
    let c = call(c);
    for _ in 0..20_000 {
        if c.cancelled() {
            return WEFT_CANCELLED;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    c.set_result(b"never asked");
    WEFT_OK
}

#[test]
fn a_running_task_in_a_worker_process_sees_a_cancel_request() {
    let p = pool(1);
    let running = p.submit(until_cancelled, &[]).unwrap();
    let next = p.submit(work, &arg(5, None)).unwrap();
    while running.state() != State::Running {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(50)); // the worker is inside the task
    assert!(!running.cancel(), "a running task is only asked");
    assert_eq!(running.result(NEVER).unwrap_err().code, WEFT_CANCELLED);
    assert_eq!(running.state(), State::Cancelled);
    // The request was for that task only: the next one runs normally.
    assert_eq!(u64_of(next.result(NEVER).unwrap()), 6);
    let again = p.submit(until_cancelled, &[]).unwrap();
    let quick = p.submit(work, &arg(1, None)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    again.cancel();
    assert_eq!(again.result(NEVER).unwrap_err().code, WEFT_CANCELLED);
    assert_eq!(u64_of(quick.result(NEVER).unwrap()), 2);
    p.shutdown(true, false, NEVER).unwrap();
}

/// Waits forever on an event nobody sets, in a cancellable weft wait: returns the wait's
/// status (WEFT_CANCELLED once the wait is cut short by a cancel request).
unsafe extern "C" fn waits_forever(c: *mut weft_call) -> weft_status {
    let c = call(c);
    let never = crate::sync::event::Event::<crate::futex::PrivateWord>::new();
    match never.wait(NEVER, crate::futex::Interrupt::Cancellable) {
        Ok(()) => WEFT_OK,
        Err(e) => {
            c.set_message(format!("the wait ended: {}", e.message));
            e.code
        }
    }
}

#[test]
fn a_cancel_request_wakes_a_weft_wait_inside_a_worker_process() {
    let p = pool(1);
    let waiting = p.submit(waits_forever, &[]).unwrap();
    let next = p.submit(work, &arg(7, None)).unwrap();
    while waiting.state() != State::Running {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(50)); // the worker is inside the wait
    assert!(!waiting.cancel(), "a running task is only asked");
    // Without the wake-up the wait would never end.
    assert_eq!(waiting.result(NEVER).unwrap_err().code, WEFT_CANCELLED);
    assert_eq!(u64_of(next.result(NEVER).unwrap()), 8);
    // The worker's next weft wait is not cancelled by the old request.
    let again = p.submit(waits_forever, &[]).unwrap();
    assert_eq!(again.result(Deadline::from_timeout_ns(100_000_000)).unwrap_err().code, crate::status::WEFT_TIMEOUT);
    again.cancel();
    assert_eq!(again.result(NEVER).unwrap_err().code, WEFT_CANCELLED);
    p.shutdown(true, false, NEVER).unwrap();
}

#[test]
fn a_done_callback_may_submit_to_its_process_pool() {
    // Futures complete with the pool unlocked: a callback that submits would deadlock otherwise.
    let p = pool(1);
    let (tx, rx) = std::sync::mpsc::channel();
    let first = p.submit(work, &arg(1, None)).unwrap();
    let p2 = p.clone();
    first.add_done_callback(move |f| {
        let x = u64_of(f.result(NEVER).unwrap());
        tx.send(p2.submit(work, &arg(x * 10, None))).unwrap();
    });
    let chained = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("the callback ran").unwrap();
    assert_eq!(u64_of(chained.result(NEVER).unwrap()), 21);
    p.shutdown(true, false, NEVER).unwrap();
}

#[test]
fn close_then_join_and_terminate() {
    let p = pool(2);
    let fs: Vec<Future> = (0..500u64).map(|i| p.submit(work, &arg(i, None)).unwrap()).collect();
    assert_eq!(p.join(NEVER).unwrap_err().code, WEFT_INVALID_STATE);
    p.close();
    p.join(NEVER).unwrap();
    assert!(fs.iter().all(|f| f.state() == State::Done));

    let p = pool(1);
    let fs: Vec<Future> = (0..500u64).map(|i| p.submit(work, &arg(i, None)).unwrap()).collect();
    p.terminate(NEVER).unwrap();
    assert!(fs.iter().all(|f| matches!(f.state(), State::Done | State::Cancelled | State::Failed)));
    assert!(fs.iter().filter(|f| f.state() == State::Failed).all(|f| f.result(NEVER).unwrap_err().code == WEFT_CANCELLED));
}
