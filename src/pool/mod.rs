//! Pools: Python's `concurrent.futures` executors and `multiprocessing.Pool` /
//! `multiprocessing.dummy.Pool` as one type whose workers are threads ([`threads`]) or
//! processes.
//!
//! Every task is a C task function (`weft_task_fn`) with argument bytes; `submit` gives a
//! [`Future`]. `map` cuts its items into chunks (`chunk.rs`), each one job, and gathers the
//! per-item results in order; `imap` (`imap.rs`) does the same lazily, with a bound on the
//! chunks in flight.

mod chunk;
pub(crate) mod job;
mod imap;
mod map;
mod processes;
mod records;
mod threads;
mod worker;
#[cfg(test)]
mod process_tests;
#[cfg(test)]
mod tests;

pub use imap::{Imap, Source};
pub use map::auto_chunksize;

use crate::future::Future;
use crate::process::child::TaskFn;
use crate::status::{Error, Result, WEFT_INVALID_STATE};
use crate::time::Deadline;
use job::{Arg, Job};

/// What kind of workers a pool has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// Threads of this process.
    Threads,
    /// Child processes started with this method.
    Processes(crate::process::StartMethod),
}

/// How a pool is made.
#[derive(Clone, Debug)]
pub struct Options {
    /// Thread or process workers.
    pub kind: Workers,
    /// Number of workers; 0 = the usable CPU count.
    pub workers: usize,
    /// Tasks a worker runs before a fresh one replaces it; 0 = no limit.
    pub max_tasks: u64,
    /// Run once by every worker before its first task, with these argument bytes; a failure
    /// breaks the pool.
    pub initializer: Option<(TaskFn, Vec<u8>)>,
    /// Process workers: how many more times a task whose worker died runs again (0: its future
    /// fails with `WEFT_WORKER_DIED` at once).
    pub retries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { kind: Workers::Threads, workers: 0, max_tasks: 0, initializer: None, retries: 0 }
    }
}

/// Whether a pool takes tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolState {
    /// Takes tasks.
    Running,
    /// Closed (or shut down): takes none; workers leave once the queue is empty.
    Closed,
}

/// Whether a pool in `state` (broken by `broken`) takes tasks. Errors: `WEFT_CLOSED`, or why
/// the pool broke.
fn accepting(state: PoolState, broken: &Option<Error>) -> Result<()> {
    if state != PoolState::Running {
        return Err(Error::new(crate::status::WEFT_CLOSED, "the pool is closed: no new tasks"));
    }
    match broken {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

#[derive(Clone)]
enum Engine {
    Threads(std::sync::Arc<threads::Threads>),
    Processes(std::sync::Arc<processes::Processes>),
}

/// A pool of workers. Thread-safe: every method may be called from any thread. Clones are
/// handles on the same pool; the workers retire (after the queued tasks) once the last handle
/// is dropped.
#[derive(Clone)]
pub struct Pool {
    engine: Engine,
    /// The fork generation that made the pool: its workers do not exist in a forked child.
    generation: u32,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("workers", &self.workers()).finish()
    }
}

impl Pool {
    /// Starts a pool. Errors: `WEFT_OS_ERROR` when a worker cannot start.
    pub fn new(mut opts: Options) -> Result<Pool> {
        if opts.workers == 0 {
            opts.workers = crate::process::current::cpu_count() as usize;
        }
        let engine = match opts.kind {
            Workers::Threads => Engine::Threads(std::sync::Arc::new(threads::Threads::new(opts)?)),
            Workers::Processes(m) => Engine::Processes(std::sync::Arc::new(processes::Processes::new(opts, m)?)),
        };
        Ok(Pool { engine, generation: crate::space::liveness::generation() })
    }

    fn check_process(&self) -> Result<()> {
        if self.generation != crate::space::liveness::generation() {
            return Err(Error::new(WEFT_INVALID_STATE, "the pool belongs to the parent process: its workers do not exist in a forked child"));
        }
        Ok(())
    }

    pub(crate) fn submit_job(&self, job: Job) -> Result<()> {
        self.check_process()?;
        match &self.engine {
            Engine::Threads(t) => t.submit_all(std::iter::once(job)),
            Engine::Processes(p) => p.submit_all(std::iter::once(job)),
        }
    }

    pub(crate) fn submit_jobs(&self, jobs: Vec<Job>) -> Result<()> {
        self.check_process()?;
        match &self.engine {
            Engine::Threads(t) => t.submit_all(jobs),
            Engine::Processes(p) => p.submit_all(jobs),
        }
    }

    /// Runs `func(arg)` on a worker; the future completes with its outcome.
    /// Errors: `WEFT_CLOSED` once the pool was closed, the initializer's failure once the
    /// pool is broken, `WEFT_INVALID_STATE` in a forked child.
    pub fn submit(&self, func: TaskFn, arg: &[u8]) -> Result<Future> {
        let future = Future::new();
        self.submit_job(Job { func, arg: Arg::new(arg), chunk: false, future: future.clone() })?;
        Ok(future)
    }

    /// Number of workers wanted.
    pub fn workers(&self) -> usize {
        match &self.engine {
            Engine::Threads(t) => t.workers(),
            Engine::Processes(p) => p.workers(),
        }
    }

    /// Changes the number of workers (0 = the usable CPU count) while the pool runs.
    /// Errors: `WEFT_CLOSED` after close, `WEFT_OS_ERROR`.
    pub fn set_workers(&self, n: usize) -> Result<()> {
        self.check_process()?;
        let n = if n == 0 { crate::process::current::cpu_count() as usize } else { n };
        match &self.engine {
            Engine::Threads(t) => t.set_workers(n),
            Engine::Processes(p) => p.set_workers(n),
        }
    }

    /// Takes no more tasks; queued ones still run (`Pool.close`).
    pub fn close(&self) {
        let _ = self.shutdown(false, false, Deadline::Now);
    }

    /// Waits until every worker has left (after `close`, `terminate` or `shutdown`).
    /// Errors: `WEFT_INVALID_STATE` while the pool is open, `WEFT_TIMEOUT`, `WEFT_CANCELLED`.
    pub fn join(&self, deadline: Deadline) -> Result<()> {
        self.check_process()?;
        match &self.engine {
            Engine::Threads(t) => t.join(deadline),
            Engine::Processes(p) => p.join(deadline),
        }
    }

    /// `Executor.shutdown(wait, cancel_futures)`: takes no more tasks; with `cancel_pending`
    /// cancels the queued ones (their futures complete as cancelled, which wakes every waiter
    /// and `as_completed`); with `wait`, waits for the workers to leave.
    pub fn shutdown(&self, wait: bool, cancel_pending: bool, deadline: Deadline) -> Result<()> {
        self.check_process()?;
        match &self.engine {
            Engine::Threads(t) => t.shutdown(wait, cancel_pending, deadline),
            Engine::Processes(p) => p.shutdown(wait, cancel_pending, deadline),
        }
    }

    /// `Pool.terminate`: cancels the queued tasks, asks the running ones to cancel, and waits
    /// for the workers to leave.
    pub fn terminate(&self, deadline: Deadline) -> Result<()> {
        self.check_process()?;
        match &self.engine {
            Engine::Threads(t) => t.terminate(deadline),
            Engine::Processes(p) => p.terminate(deadline),
        }
    }
}
