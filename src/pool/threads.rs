//! Thread workers: Python's `ThreadPoolExecutor` and `multiprocessing.dummy.Pool`.
//!
//! Jobs wait in one FIFO (`VecDeque` under a mutex). A worker whose recent jobs were short
//! (under [`SHORT_JOB_NS`] each) takes them in batches — up to [`BATCH_MAX`], and never more
//! than its share (`len / (2 × workers)`), so a long queue costs one lock round trip per batch
//! while a short one still spreads over every worker — and runs them in order. Otherwise (and
//! at first) it takes one job at a time, so that no job waits behind a long one in a worker's
//! hands while another worker is idle. Idle workers sleep on an eventcount (`queue/private/wait.rs`): a submit that
//! finds nobody asleep makes no system call.
//!
//! A job whose future was cancelled before a worker reached it is skipped (the future is
//! already complete). A running job's cancel request reaches the task through its `weft_call`
//! and wakes weft waits inside it: the worker installs the future's cancel word as the
//! thread's for the duration of the task.
//!
//! Workers retire by themselves: when the pool is closed and the queue is empty, when the pool
//! shrinks, or after `max_tasks` tasks (a replacement starts first). Their threads are reaped
//! (`pthread_join`) by the next worker start and by `join`, so that a joined pool leaves no
//! thread behind (a fork right after it sees a single-threaded process). An initializer that fails
//! breaks the pool: every queued job fails with its status and message, and so does every later
//! submit.

use super::job::Job;
use crate::future::Future;
use super::{accepting, Options, PoolState};
use crate::futex::{Interrupt, PrivateWord};
use crate::thread::Thread;
use crate::queue::private::wait::EventCount;
use crate::status::{Error, Result, WEFT_CLOSED, WEFT_INVALID_STATE};
use crate::time::Deadline;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};

/// Most jobs a worker takes at once.
const BATCH_MAX: usize = 32;
/// Jobs that took longer than this on average (in a worker's last batch) are taken one at a time.
const SHORT_JOB_NS: u64 = 20_000;

/// Numbers pools for their workers' names.
static NEXT_POOL: AtomicU64 = AtomicU64::new(0);

struct State {
    jobs: VecDeque<Job>,
    /// Running, closed (no submits; workers leave once the queue is empty) or stopped.
    state: PoolState,
    /// Workers wanted.
    target: usize,
    /// Workers started and not yet retired.
    live: usize,
    /// Names the next worker.
    next_worker: u64,
    /// Set when an initializer failed: why every job fails.
    broken: Option<Error>,
    /// Each worker's current batch (by worker number), for `shutdown` and `terminate`.
    in_hand: std::collections::HashMap<u64, Hand>,
    /// Each live worker's thread, by worker number.
    threads: std::collections::HashMap<u64, Arc<Thread>>,
    /// Threads of retired workers, not yet reaped.
    exited: Vec<Arc<Thread>>,
}

/// A worker's current batch as `shutdown` and `terminate` see it: the jobs' futures, and per
/// job a claim flag that the worker sets before it starts the job and that
/// `shutdown(cancel_pending)` sets before it cancels a job not started — whoever sets it first
/// decides, so a job taken in a batch but not started is cancelled like a queued one, and a
/// started one is never asked to cancel by a shutdown.
#[derive(Default)]
struct Hand {
    futures: Vec<Future>,
    claims: Arc<[AtomicBool]>,
}

struct Shared {
    state: Mutex<State>,
    /// Workers wait here for jobs (and for a state change).
    jobs_ready: EventCount<PrivateWord>,
    /// `join` waits here for `live` to reach zero.
    retired: EventCount<PrivateWord>,
    opts: Options,
    pool_id: u64,
}

/// A pool of worker threads.
pub(crate) struct Threads {
    shared: Arc<Shared>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Threads {
    /// Starts `opts.workers` workers (at least one).
    pub(crate) fn new(opts: Options) -> Result<Threads> {
        let workers = opts.workers.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                state: PoolState::Running,
                target: workers,
                live: 0,
                next_worker: 0,
                broken: None,
                in_hand: std::collections::HashMap::new(),
                threads: std::collections::HashMap::new(),
                exited: Vec::new(),
            }),
            jobs_ready: EventCount::new(),
            retired: EventCount::new(),
            opts,
            pool_id: NEXT_POOL.fetch_add(1, Relaxed),
        });
        let pool = Threads { shared };
        {
            let mut s = pool.shared.lock();
            for _ in 0..workers {
                if let Err(e) = start_worker(&pool.shared, &mut s) {
                    drop(s);
                    pool.shutdown(true, true, Deadline::Never)?;
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Queues `jobs` under one lock hold. Errors: `WEFT_CLOSED` after close/shutdown, or the
    /// initializer's failure once the pool is broken; then none is queued.
    pub(crate) fn submit_all<I>(&self, jobs: I) -> Result<()>
    where
        I: IntoIterator<Item = Job>,
        I::IntoIter: ExactSizeIterator,
    {
        let jobs = jobs.into_iter();
        let n = jobs.len();
        let mut s = self.shared.lock();
        accepting(s.state, &s.broken)?;
        s.jobs.extend(jobs);
        drop(s);
        if n == 1 {
            self.shared.jobs_ready.notify_one();
        } else {
            self.shared.jobs_ready.notify_all();
        }
        Ok(())
    }

    /// Workers wanted.
    pub(crate) fn workers(&self) -> usize {
        self.shared.lock().target
    }

    /// Workers started and not yet retired.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.shared.lock().live
    }

    /// Changes the number of workers: new ones start at once, surplus ones retire after
    /// their current batch. Errors: `WEFT_CLOSED` after close; `WEFT_OS_ERROR` when a thread
    /// cannot start (the workers started so far stay).
    pub(crate) fn set_workers(&self, n: usize) -> Result<()> {
        let n = n.max(1);
        let mut s = self.shared.lock();
        if s.state != PoolState::Running {
            return Err(Error::new(WEFT_CLOSED, "the pool is closed"));
        }
        s.target = n;
        while s.live < n {
            start_worker(&self.shared, &mut s)?;
        }
        drop(s);
        self.shared.jobs_ready.notify_all();
        Ok(())
    }

    /// Stops accepting tasks (`close`); with `cancel_pending`, cancels every queued job.
    /// With `wait`, waits until every worker has retired (`join`) or the deadline passes.
    pub(crate) fn shutdown(&self, wait: bool, cancel_pending: bool, deadline: Deadline) -> Result<()> {
        let (cancelled, in_batches) = {
            let mut s = self.shared.lock();
            if s.state == PoolState::Running {
                s.state = PoolState::Closed;
            }
            if cancel_pending {
                // Also the jobs that workers took in their batches and have not started.
                let in_batches: Vec<Future> = s
                    .in_hand
                    .values()
                    .flat_map(|h| h.futures.iter().zip(h.claims.iter()))
                    .filter(|(_, claim)| !claim.swap(true, AcqRel))
                    .map(|(f, _)| f.clone())
                    .collect();
                (std::mem::take(&mut s.jobs), in_batches)
            } else {
                (VecDeque::new(), Vec::new())
            }
        };
        // Outside the lock: cancelling runs done callbacks.
        for job in cancelled {
            job.future.cancel();
        }
        for f in in_batches {
            f.cancel();
        }
        self.shared.jobs_ready.notify_all();
        if wait { self.join(deadline) } else { Ok(()) }
    }

    /// `shutdown(cancel_pending)`, and a cancel request to every task running, then waits.
    pub(crate) fn terminate(&self, deadline: Deadline) -> Result<()> {
        self.shutdown(false, true, deadline)?;
        let running: Vec<Future> = self.shared.lock().in_hand.values().flat_map(|h| h.futures.iter()).cloned().collect();
        for f in running {
            f.cancel();
        }
        self.join(deadline)
    }

    /// Waits until every worker has retired. Errors: `WEFT_INVALID_STATE` while the pool still
    /// accepts tasks (close it first), `WEFT_TIMEOUT`, `WEFT_CANCELLED`.
    pub(crate) fn join(&self, deadline: Deadline) -> Result<()> {
        if self.shared.lock().state == PoolState::Running {
            return Err(Error::new(WEFT_INVALID_STATE, "join needs a closed pool (close, terminate or shutdown first)"));
        }
        let sh = &self.shared;
        loop {
            let key = sh.retired.prepare();
            if sh.lock().live == 0 {
                sh.retired.abandon();
                return self.reap(deadline);
            }
            match sh.retired.sleep(key, deadline) {
                crate::futex::Wait::TimedOut if sh.lock().live != 0 => {
                    return Err(Error::new(crate::status::WEFT_TIMEOUT, "workers still running at the deadline"))
                }
                crate::futex::Wait::Cancelled => {
                    return Err(Error::new(crate::status::WEFT_CANCELLED, "join cancelled"))
                }
                _ => {}
            }
        }
    }
}

impl Threads {
    /// Joins the threads of retired workers (not the caller's own, when a task joins its pool).
    fn reap(&self, deadline: Deadline) -> Result<()> {
        let mut exited = std::mem::take(&mut self.shared.lock().exited);
        while let Some(t) = exited.pop() {
            if t.is_caller() {
                continue;
            }
            if let Err(e) = t.join(deadline, Interrupt::Cancellable) {
                exited.push(t);
                self.shared.lock().exited.append(&mut exited);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        // Workers hold the shared state, not the pool: they retire once the queue is empty.
        let _ = self.shutdown(false, false, Deadline::Now);
    }
}

/// Starts one worker (counted in `live`).
fn start_worker(shared: &Arc<Shared>, s: &mut State) -> Result<()> {
    let id = s.next_worker;
    let name = format!("ThreadPoolWorker-{}_{}", shared.pool_id, id);
    let sh = shared.clone();
    let opts = crate::thread::Options { name: Some(name), daemon: true, stack_size: 0 };
    let thread = crate::thread::spawn(Box::new(move |_call| worker(sh, id)), &[], &opts)?;
    thread.release_handle();
    s.next_worker += 1;
    s.live += 1;
    s.in_hand.insert(id, Hand::default());
    s.threads.insert(id, thread);
    // Reap the threads of workers that have left (a pool replacing workers after max_tasks
    // would otherwise keep every one of them unjoined). A finished worker's thread only has
    // its exit left to run, which takes no lock of the pool.
    s.exited.retain(|t| t.is_alive() || t.is_caller() || t.join(Deadline::Now, Interrupt::Uninterruptible).is_err());
    Ok(())
}

/// Why a worker stops taking jobs.
enum Leave {
    /// Closed and drained, or surplus.
    Retire,
    /// Ran its `max_tasks`: a replacement takes over.
    Replace,
}

/// A worker's life.
fn worker(sh: Arc<Shared>, id: u64) -> crate::status::weft_status {
    if let Some((init, arg)) = &sh.opts.initializer {
        let cancel = std::sync::atomic::AtomicU32::new(0);
        let o = super::job::run_task(*init, arg, &cancel, std::ptr::null());
        if o.status != crate::status::WEFT_OK {
            let e = Error::new(o.status, format!("the pool's initializer failed: {}", o.message));
            let failed = {
                let mut s = sh.lock();
                s.broken.get_or_insert(e.clone());
                retire(&mut s, id);
                std::mem::take(&mut s.jobs)
            };
            for job in failed {
                let _ = job.future.set_failure(e.code, e.message.to_string());
            }
            sh.retired.notify_all();
            sh.jobs_ready.notify_all();
            // Reported through the pool (the jobs' failures), not as the thread's failure.
            return crate::status::WEFT_OK;
        }
    }
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH_MAX);
    let mut claims: Arc<[AtomicBool]> = Arc::new([]);
    let mut ran: u64 = 0;
    // Whether the last batch's jobs were short (unknown at first: one job at a time).
    let mut short = false;
    let leave = loop {
        match take(&sh, id, &mut batch, &mut claims, ran, short) {
            Some(leave) => break leave,
            None => {
                let (count, started) = (batch.len() as u64, crate::time::now_ns());
                for (job, claim) in batch.drain(..).zip(claims.iter()) {
                    // Claimed first by shutdown(cancel_pending), which cancels it.
                    if claim.swap(true, AcqRel) {
                        continue;
                    }
                    if job.run(std::ptr::null()) {
                        ran += 1;
                    }
                }
                short = crate::time::now_ns().saturating_sub(started) < SHORT_JOB_NS * count.max(1);
            }
        }
    };
    if let Leave::Replace = leave {
        let mut s = sh.lock();
        // The replacement is counted before this worker no longer is (a failed start leaves
        // the pool one worker short until the next `set_workers`). A closed pool still needs
        // one while jobs are queued: they run after a close.
        if (s.state == PoolState::Running || !s.jobs.is_empty()) && s.live <= s.target {
            let _ = start_worker(&sh, &mut s);
        }
        retire(&mut s, id);
    }
    sh.retired.notify_all();
    crate::status::WEFT_OK
}

/// Uncounts worker `id` (under the lock).
fn retire(s: &mut State, id: u64) {
    s.live -= 1;
    s.in_hand.remove(&id);
    if let Some(t) = s.threads.remove(&id) {
        s.exited.push(t);
    }
}

/// Fills `batch` with the next jobs (and `claims` with their claim flags), sleeping while there
/// are none; or says why to leave.
fn take(sh: &Shared, id: u64, batch: &mut Vec<Job>, claims: &mut Arc<[AtomicBool]>, ran: u64, short: bool) -> Option<Leave> {
    let max_tasks = sh.opts.max_tasks;
    if max_tasks != 0 && ran >= max_tasks {
        return Some(Leave::Replace);
    }
    loop {
        let key = sh.jobs_ready.prepare();
        let mut guard = sh.lock();
        let s = &mut *guard;
        if let Some(h) = s.in_hand.get_mut(&id) {
            h.futures.clear();
        }
        if s.live > s.target {
            sh.jobs_ready.abandon();
            retire(s, id);
            return Some(Leave::Retire);
        }
        if !s.jobs.is_empty() {
            sh.jobs_ready.abandon();
            let mut n = if short { (s.jobs.len() / (2 * s.target)).clamp(1, BATCH_MAX) } else { 1 };
            if max_tasks != 0 {
                n = n.min((max_tasks - ran) as usize);
            }
            batch.extend(s.jobs.drain(..n));
            *claims = (0..n).map(|_| AtomicBool::new(false)).collect();
            if let Some(h) = s.in_hand.get_mut(&id) {
                h.futures.extend(batch.iter().map(|j| j.future.clone()));
                h.claims = claims.clone();
            }
            let more = !s.jobs.is_empty();
            drop(guard);
            if more {
                sh.jobs_ready.pass_on(|| true);
            }
            return None;
        }
        if s.state != PoolState::Running {
            sh.jobs_ready.abandon();
            retire(s, id);
            return Some(Leave::Retire);
        }
        drop(guard);
        sh.jobs_ready.sleep(key, Deadline::Never);
    }
}
