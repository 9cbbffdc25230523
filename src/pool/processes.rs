//! Process workers: Python's `ProcessPoolExecutor` and `multiprocessing.Pool`, which survive
//! a worker that is killed, crashes or exits in the middle of a task.
//!
//! # Transport
//!
//! Each worker has its own task queue, and all of them answer on one result queue: shared
//! FIFO queues in the default space (so workers of every start method reach them), with no
//! feeder thread. The parent dispatches: a submit puts the task straight into the queue of the
//! worker with the fewest unanswered tasks, while that worker holds less than its share of the
//! outstanding work (at least 1, at most [`WINDOW`] tasks, [`LONG_WINDOW`] for long ones) and
//! is not stalled; other tasks wait in the parent until answers come back. A collector thread
//! takes the answers in batches (napping through a few while every worker has a backlog),
//! completes the futures outside the pool's lock, refills the workers' queues, and takes back
//! the queued records of a stalled worker for the others.
//!
//! Task functions travel once per worker: the first task for a function is preceded by a
//! define record (the address for fork workers, the object file and offset for forkserver and
//! spawn ones, see `process::target`); tasks then name a slot.
//!
//! # Crash healing
//!
//! A worker takes one record at a time and answers each task before taking the next, so when
//! it dies the parent knows what it was doing. The parent keeps, per worker, the records sent
//! and not yet answered, in order. The collector watches every worker's process (polling each
//! slice); when one ends, it first takes every answer already committed to the result queue,
//! then takes back the records still in the dead worker's task queue (`take_back`: a worker
//! killed in the middle of a get never took the record). Of the unanswered records, those the
//! worker had taken — at most one task — are what it was running: that future fails with
//! `WEFT_WORKER_DIED` (naming the pid and the signal or exit code), or runs again elsewhere
//! while the pool's retry budget allows. The records it had not taken go back to the front of
//! the parent's queue, in order. A replacement worker starts on the same, emptied task queue
//! (the pool keeps the queues; workers only borrow them, so a killed worker leaks nothing). A
//! worker that leaves after `max_tasks` tasks is replaced the same way, with nothing lost.
//!
//! # Cancelling a running task
//!
//! Each worker has a cancel ticket, a one-item uint32 array in the space: the worker stores
//! the task's number shifted left by one (`worker::ticket_of`) before it runs the task, and
//! makes the ticket the cancel word of the task's `weft_call` and of the weft waits inside it.
//! When the future of the task a worker is running has a cancel request, the collector (at
//! its next check) sets bit 0 with a compare-and-swap from that value, which fails harmlessly
//! once the worker has moved on, and wakes the worker's waits with a process-shared futex wake
//! (`futex::raise_shared_cancel`).
//!
//! Workers are daemons: each dies with the parent, however the parent ends.

use super::job::Job;
use super::records::{self, Target};
use super::worker::{pool_worker, Boot};
use super::{accepting, Options, PoolState};
use crate::call::Outcome;
use crate::future::Future;
use crate::process::{self, Process, StartMethod};
use crate::queue::shared::SharedQueue;
use crate::space::array::SharedArray;
use crate::queue::{Kind, Options as QueueOptions};
use crate::status::{Error, Result, WEFT_CANCELLED, WEFT_CLOSED, WEFT_INVALID_STATE, WEFT_OK, WEFT_TIMEOUT, WEFT_WORKER_DIED};
use crate::time::Deadline;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Most unanswered tasks one worker holds.
const WINDOW: usize = 64;
/// Bytes of a worker's task queue (the largest task argument it takes).
const TASK_QUEUE_BYTES: u64 = 1 << 20;
/// Bytes of the result queue (the largest result it takes).
const RESULT_QUEUE_BYTES: u64 = 4 << 20;
/// How often the collector checks the workers' processes while the pool has tasks.
const CHECK_NS: u64 = 10_000_000;
/// How often it checks them while the pool has none (an idle pool costs next to nothing; a
/// shutdown wakes the collector at once).
const IDLE_CHECK_NS: u64 = 250_000_000;
/// Tasks slower than this (by the run times workers report) are sent at most
/// [`LONG_WINDOW`] at a time.
const LONG_TASK_NS: u64 = 50_000;
/// Most unanswered long tasks one worker holds: enough that the collector can sleep through
/// a few answers, few enough that a worker finishing early is not left idle at the end.
const LONG_WINDOW: usize = 4;
/// Longest the collector sleeps through answers while every worker has a backlog.
const MAX_NAP_NS: u64 = 2_000_000;
/// Shorter naps are not taken (the collector waits for the next answer instead).
const MIN_NAP_NS: u64 = 100_000;
/// A worker that has not answered for this long (or 8 times the usual run time, if longer)
/// while it holds tasks is stalled: it is sent nothing more, and the tasks waiting in its
/// queue are taken back for the other workers.
const STALL_MIN_NS: u64 = 5_000_000;
/// Answers the collector takes at once.
const BATCH: usize = 256;

static NEXT_POOL: AtomicU64 = AtomicU64::new(0);

/// A task the parent holds until it is answered.
struct Held {
    job: Job,
    slot: u32,
    /// Runs so far that ended with the worker's death.
    deaths: u32,
}

/// One record sent to a worker and not yet answered: a task id, or `None` for a define.
type Sent = Option<u64>;

struct Worker {
    index: u32,
    process: Arc<Process>,
    tasks: SharedQueue,
    /// The cancel ticket: `worker::ticket_of(id)` while task `id` runs; the parent sets bit 0
    /// to ask it to cancel.
    ticket: SharedArray,
    sent: VecDeque<Sent>,
    /// Unanswered tasks (the `Some` entries of `sent`).
    load: usize,
    defined: Vec<bool>,
    /// Tasks this worker may still be sent (`max_tasks`), or `u64::MAX`.
    quota: u64,
    /// When this worker last answered, or was sent a task while it held none.
    progress_ns: u64,
}

impl Worker {
    /// Holds tasks but has not answered for longer than `limit` ns.
    fn stalled(&self, now: u64, limit: u64) -> bool {
        self.load > 0 && now.saturating_sub(self.progress_ns) > limit
    }
}

/// How long a worker may go without answering before it counts as stalled.
fn stall_ns(task_ns: u64) -> u64 {
    task_ns.saturating_mul(8).max(STALL_MIN_NS)
}

struct State {
    state: PoolState,
    target: usize,
    workers: Vec<Worker>,
    next_index: u32,
    /// Tasks not yet sent, in order.
    pending: VecDeque<Held>,
    /// Tasks sent and not yet answered, by id.
    in_flight: HashMap<u64, Held>,
    next_id: u64,
    /// Function slots, by address.
    slots: HashMap<usize, u32>,
    targets: Vec<Target>,
    broken: Option<Error>,
    /// Set once the collector has left (after every worker).
    collector_done: bool,
    /// Moving average of the run time of a record (task or chunk), in ns, as workers report it.
    task_ns: u64,
    /// Futures to complete once the lock is released (their done callbacks may call the pool).
    finished: Vec<(Future, Outcome)>,
}

impl State {
    /// Completes `future` with `outcome` once the lock is released (see [`settle`]).
    fn finish(&mut self, future: Future, outcome: Outcome) {
        self.finished.push((future, outcome));
    }
}

/// Releases the lock, then completes the futures finished under it: done callbacks run with
/// the pool unlocked, so that they may submit to it.
fn settle(mut s: MutexGuard<'_, State>) {
    let finished = std::mem::take(&mut s.finished);
    drop(s);
    for (future, outcome) in finished {
        let _ = future.complete(outcome);
    }
}

/// A failure outcome.
fn failure(status: i32, message: String) -> Outcome {
    Outcome { status, result: Vec::new(), message }
}

/// The outcome that completes a running future with a cancel request as cancelled.
fn cancelled() -> Outcome {
    failure(WEFT_CANCELLED, "cancelled before it started".to_string())
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when workers leave or the collector ends.
    changed: Condvar,
    /// The token of the result queue, which the collector holds (so the queue goes with the
    /// collector, once every worker has left, not with the last handle on the pool).
    results: Vec<u8>,
    opts: Options,
    method: StartMethod,
    pool_id: u64,
    stop: AtomicBool,
    /// The collector thread, joined by `join` (so that a joined pool leaves no thread behind).
    collector: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A pool of worker processes.
pub(crate) struct Processes {
    shared: Arc<Shared>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot_of(&self, s: &mut State, func: crate::process::child::TaskFn) -> Result<u32> {
        let addr = func as usize;
        if let Some(&slot) = s.slots.get(&addr) {
            return Ok(slot);
        }
        let target = match self.method {
            StartMethod::Fork => Target::Address(addr as u64),
            _ => Target::Located(crate::process::target::locate(addr)?),
        };
        let slot = s.targets.len() as u32;
        s.targets.push(target);
        s.slots.insert(addr, slot);
        Ok(slot)
    }

    /// Starts one worker, on the (empty) task queue and ticket of a worker that ended when
    /// there is one (`reuse`). Workers borrow their queues and ticket (`from_token_borrowed`):
    /// the pool keeps them until it has buried the worker, so a killed worker leaks nothing.
    fn start_worker(&self, s: &mut State, reuse: Option<(SharedQueue, SharedArray)>) -> Result<()> {
        let (tasks, ticket) = match reuse {
            Some(r) => r,
            None => {
                let space = crate::space::handle::default_space()?;
                let qopts = QueueOptions { kind: Kind::Fifo, maxsize: 0, max_bytes: TASK_QUEUE_BYTES, joinable: false };
                let q = SharedQueue::create(space.clone(), None, qopts)?;
                (q, SharedArray::create(space, None, b'I', 1, None, false)?)
            }
        };
        // No task of this worker runs yet: an odd value, which no task's number matches.
        ticket.store(0, u32::MAX as i64)?;
        let index = s.next_index;
        let initializer = match &self.opts.initializer {
            Some((f, arg)) => {
                let slot = self.slot_of(s, *f)?;
                Some((records::define(slot, &s.targets[slot as usize]), arg.clone()))
            }
            None => None,
        };
        let boot = Boot {
            tasks: tasks.token(),
            results: self.results.clone(),
            ticket: ticket.shared().token(),
            worker: index,
            max_tasks: self.opts.max_tasks,
            initializer,
        };
        let prefix = match self.method {
            StartMethod::Fork => "ForkPoolWorker",
            StartMethod::ForkServer => "ForkServerPoolWorker",
            StartMethod::Spawn => "SpawnPoolWorker",
        };
        let popts = process::Options {
            name: Some(format!("{prefix}-{}_{}", self.pool_id, index)),
            method: Some(self.method),
            daemon: true,
            fds: Vec::new(),
        };
        let process = process::start(pool_worker, &boot.encode(), &popts)?;
        s.next_index += 1;
        let quota = if self.opts.max_tasks == 0 { u64::MAX } else { self.opts.max_tasks };
        s.workers.push(Worker { index, process, tasks, ticket, sent: VecDeque::new(), load: 0, defined: Vec::new(), quota, progress_ns: 0 });
        Ok(())
    }

    /// Sends pending tasks to workers with room (under the lock).
    fn pump(&self, s: &mut State) {
        let mut rec = Vec::new();
        // Each worker's share of the work, within [1, WINDOW]: a few long tasks go one per
        // worker (the next to whichever finishes first), a flood of short ones fills windows.
        // Tasks that take long go a few at a time, so that a worker that finishes early is
        // not left idle while another still holds a backlog.
        let workers = s.workers.len().max(1);
        let cap = if s.task_ns > LONG_TASK_NS { LONG_WINDOW } else { WINDOW };
        let window = ((s.pending.len() + s.in_flight.len()) / workers).clamp(1, cap);
        // A stalled worker (inside a long task) gets nothing more: its tasks would wait.
        let (now, limit) = (crate::time::now_ns(), stall_ns(s.task_ns));
        while let Some(held) = s.pending.front() {
            // A task cancelled while it waited is dropped.
            if held.job.future.is_done() {
                s.pending.pop_front();
                continue;
            }
            let Some(w) = (0..s.workers.len())
                .filter(|&i| s.workers[i].load < window && s.workers[i].quota > 0 && !s.workers[i].stalled(now, limit))
                .min_by_key(|&i| s.workers[i].load)
            else {
                return;
            };
            let slot = held.slot as usize;
            if !s.workers[w].defined.get(slot).copied().unwrap_or(false) {
                let d = records::define(held.slot, &s.targets[slot]);
                if s.workers[w].tasks.put(&d, 0, Deadline::Now).is_err() {
                    return;
                }
                let wk = &mut s.workers[w];
                if wk.defined.len() <= slot {
                    wk.defined.resize(slot + 1, false);
                }
                wk.defined[slot] = true;
                wk.sent.push_back(None);
            }
            let id = s.next_id;
            let held = s.pending.front().expect("checked above");
            records::task(&mut rec, held.slot, id, held.job.chunk, held.job.arg.as_slice());
            match s.workers[w].tasks.put(&rec, 0, Deadline::Now) {
                Ok(()) => {}
                Err(e) if e.code == crate::status::WEFT_INVALID_ARGUMENT => {
                    // Larger than any task queue: fail it.
                    let held = s.pending.pop_front().expect("checked above");
                    let why = format!("the task's argument is too large for a process pool: {}", e.message);
                    s.finish(held.job.future, failure(e.code, why));
                    continue;
                }
                Err(_) => return,
            }
            let held = s.pending.pop_front().expect("checked above");
            // Sent: from now on a cancel only asks (as Python's executor, the task counts as
            // running once it left the parent's queue).
            let _ = held.job.future.set_running();
            s.next_id += 1;
            let wk = &mut s.workers[w];
            if wk.load == 0 {
                wk.progress_ns = now;
            }
            wk.sent.push_back(Some(id));
            wk.load += 1;
            wk.quota -= 1;
            s.in_flight.insert(id, held);
        }
    }

    /// Applies one answer (under the lock).
    fn answer(&self, s: &mut State, rec: &[u8]) {
        let Ok(r) = records::read_result(rec) else { return };
        if r.kind == records::RESULT_NUDGE {
            return;
        }
        if r.kind == records::RESULT_INIT_FAILED {
            let name = crate::status::name(r.status).to_string_lossy();
            let msg = format!("the pool's initializer failed with {name}: {}", String::from_utf8_lossy(r.bytes));
            self.break_pool(s, Error::new(r.status, msg));
            return;
        }
        if let Some(w) = s.workers.iter_mut().find(|w| w.index == r.worker) {
            w.progress_ns = crate::time::now_ns();
            // Everything sent before this task was taken before it.
            while let Some(front) = w.sent.pop_front() {
                if front == Some(r.id) {
                    w.load -= 1;
                    break;
                }
                if front.is_some() {
                    w.load -= 1;
                }
            }
        }
        s.task_ns = if s.task_ns == 0 { r.ns.max(1) } else { (s.task_ns * 7 + r.ns) / 8 };
        if let Some(held) = s.in_flight.remove(&r.id) {
            let outcome = if r.status == WEFT_OK {
                Outcome { status: WEFT_OK, result: r.bytes.to_vec(), message: String::new() }
            } else {
                failure(r.status, String::from_utf8_lossy(r.bytes).into_owned())
            };
            s.finish(held.job.future, outcome);
        }
    }

    /// Wakes the collector out of its wait for answers (after a state change).
    fn nudge(&self) {
        if let Ok(q) = SharedQueue::from_token(&self.results) {
            let mut rec = Vec::new();
            records::result(&mut rec, u32::MAX, WEFT_OK, 0, 0, records::RESULT_NUDGE, &[]);
            let _ = q.put(&rec, 0, Deadline::Now);
        }
    }

    /// Takes back the records worker `i` has not taken from its queue yet, and returns their
    /// tasks in order. The worker takes records in order, one at a time: what is still in its
    /// queue is the end of `sent`, and whatever this get finds, the worker did not take.
    fn take_back(&self, s: &mut State, i: usize) -> Vec<Held> {
        let w = &mut s.workers[i];
        if w.tasks.qsize() == 0 {
            return Vec::new();
        }
        let Ok(recs) = w.tasks.get_many(usize::MAX, Deadline::Now) else { return Vec::new() };
        let k = recs.len().min(w.sent.len());
        let stolen = w.sent.split_off(w.sent.len() - k);
        for rec in &recs {
            if let Ok(records::Incoming::Define { slot, .. }) = records::read_incoming(rec) {
                if let Some(d) = w.defined.get_mut(slot as usize) {
                    *d = false;
                }
            }
        }
        let mut back = Vec::new();
        for id in stolen.into_iter().flatten() {
            w.load -= 1;
            w.quota = w.quota.saturating_add(1);
            if let Some(held) = s.in_flight.remove(&id) {
                back.push(held);
            }
        }
        back
    }

    /// Puts tasks taken back in front of `pending`, in order.
    fn requeue(s: &mut State, back: Vec<Held>) {
        for held in back.into_iter().rev() {
            s.pending.push_front(held);
        }
    }

    /// Takes back the tasks waiting in the queues of stalled workers (see [`STALL_MIN_NS`])
    /// when another worker could run them: they go back to the front of `pending`.
    fn rebalance(&self, s: &mut State, now: u64) {
        let limit = stall_ns(s.task_ns);
        if !s.workers.iter().any(|w| w.quota > 0 && !w.stalled(now, limit)) {
            return;
        }
        let mut back = Vec::new();
        for i in 0..s.workers.len() {
            if s.workers[i].stalled(now, limit) {
                back.extend(self.take_back(s, i));
            }
        }
        Self::requeue(s, back);
    }

    /// Tasks with a cancel request that still wait in a worker's queue never run: they are
    /// taken back and end cancelled (the others go back to `pending`).
    fn sweep_cancelled(&self, s: &mut State) {
        let mut back = Vec::new();
        for i in 0..s.workers.len() {
            // The first unanswered task may be running; a request on a later one means it waits.
            let waiting = s.workers[i].sent.iter().flatten().skip(1);
            if !waiting.clone().any(|id| s.in_flight.get(id).is_some_and(|h| h.job.future.cancel_requested())) {
                continue;
            }
            for held in self.take_back(s, i) {
                if held.job.future.cancel_requested() {
                    s.finish(held.job.future, cancelled());
                } else {
                    back.push(held);
                }
            }
        }
        Self::requeue(s, back);
    }

    /// The pool cannot run tasks: fails what it holds and refuses new tasks.
    fn break_pool(&self, s: &mut State, e: Error) {
        if s.broken.is_none() {
            s.broken = Some(e.clone());
        }
        let failed: Vec<Held> = s.pending.drain(..).chain(s.in_flight.drain().map(|(_, h)| h)).collect();
        for held in failed {
            s.finish(held.job.future, failure(e.code, e.message.to_string()));
        }
    }

    /// Handles the end of worker `i` (under the lock; every answer committed before its end
    /// was applied).
    fn bury(&self, s: &mut State, i: usize) {
        // What it had not taken yet goes back to `pending`; what is left in `sent` it took.
        let untaken = self.take_back(s, i);
        let w = s.workers.swap_remove(i);
        let how = match w.process.exit_status() {
            Ok(Some(process::ExitStatus::Signal(sig))) => format!("was killed by signal {sig} ({})", process::signal_name(sig)),
            Ok(Some(process::ExitStatus::Code(c))) => format!("exited with code {c}"),
            _ => "ended".to_string(),
        };
        let mut back = Vec::new();
        for id in w.sent.iter().flatten() {
            let Some(mut held) = s.in_flight.remove(id) else { continue };
            held.deaths += 1;
            if held.deaths <= self.opts.retries {
                back.push(held);
            } else {
                let msg = format!("worker process {} {how} while running the task", w.process.pid());
                s.finish(held.job.future, failure(WEFT_WORKER_DIED, msg));
            }
        }
        back.extend(untaken);
        Self::requeue(s, back);
        // Reuse the (now empty) queue for the replacement unless it is damaged.
        let reuse = match w.tasks.get_many(usize::MAX, Deadline::Now) {
            Ok(_) => Some((w.tasks, w.ticket)),
            Err(e) if e.code == WEFT_TIMEOUT || e.code == crate::status::WEFT_WOULD_BLOCK || e.code == WEFT_CLOSED => {
                Some((w.tasks, w.ticket))
            }
            Err(_) => None,
        };
        let needed = s.state == PoolState::Running || !s.pending.is_empty() || !s.in_flight.is_empty();
        if needed && s.broken.is_none() && s.workers.len() < s.target {
            let reuse = reuse.filter(|(q, _)| !q.is_shut_down());
            if let Err(e) = self.start_worker(s, reuse) {
                if s.workers.is_empty() {
                    self.break_pool(s, Error::new(e.code, format!("no worker could be started: {}", e.message)));
                }
            }
        }
    }
}

impl Processes {
    /// Starts `opts.workers` workers (at least one) with `method`.
    pub(crate) fn new(opts: Options, method: StartMethod) -> Result<Processes> {
        let workers = opts.workers.max(1);
        let space = crate::space::handle::default_space()?;
        let ropts = QueueOptions { kind: Kind::Fifo, maxsize: 0, max_bytes: RESULT_QUEUE_BYTES, joinable: false };
        let results = SharedQueue::create(space, None, ropts)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                state: PoolState::Running,
                target: workers,
                workers: Vec::new(),
                next_index: 0,
                pending: VecDeque::new(),
                in_flight: HashMap::new(),
                next_id: 0,
                slots: HashMap::new(),
                targets: Vec::new(),
                broken: None,
                collector_done: false,
                task_ns: 0,
                finished: Vec::new(),
            }),
            changed: Condvar::new(),
            results: results.token(),
            opts,
            method,
            pool_id: NEXT_POOL.fetch_add(1, Relaxed),
            stop: AtomicBool::new(false),
            collector: Mutex::new(None),
        });
        // A second reference to the result queue until the collector runs (a failed spawn
        // drops the collector's before `abandon` has ended the workers that borrow it).
        let _results_held = SharedQueue::from_token(&shared.results)?;
        // Workers borrow the pool's queues: on failure, they are gone before the queues go.
        let abandon = |s: &mut State| {
            for w in &s.workers {
                let _ = w.process.signal(libc::SIGKILL);
            }
            for w in s.workers.drain(..) {
                let _ = w.process.wait(Deadline::Never);
            }
        };
        {
            let mut s = shared.lock();
            for _ in 0..workers {
                if let Err(e) = shared.start_worker(&mut s, None) {
                    abandon(&mut s);
                    return Err(e);
                }
            }
        }
        let sh = shared.clone();
        let collector = match std::thread::Builder::new()
            .name(format!("weft-pool-{}", shared.pool_id))
            .spawn(move || collect(&sh, results))
        {
            Ok(c) => c,
            Err(e) => {
                abandon(&mut shared.lock());
                return Err(Error::io("spawning the pool's collector thread", &e));
            }
        };
        *shared.collector.lock().unwrap_or_else(|e| e.into_inner()) = Some(collector);
        Ok(Processes { shared })
    }

    /// Queues `jobs` (all or none).
    pub(crate) fn submit_all(&self, jobs: impl IntoIterator<Item = Job>) -> Result<()> {
        let sh = &self.shared;
        let mut s = sh.lock();
        accepting(s.state, &s.broken)?;
        let start = s.pending.len();
        for job in jobs {
            match sh.slot_of(&mut s, job.func) {
                Ok(slot) => s.pending.push_back(Held { job, slot, deaths: 0 }),
                Err(e) => {
                    s.pending.truncate(start);
                    return Err(e);
                }
            }
        }
        sh.pump(&mut s);
        settle(s);
        Ok(())
    }

    pub(crate) fn workers(&self) -> usize {
        self.shared.lock().target
    }

    /// Changes the number of workers: new ones start now; surplus ones get no new tasks and
    /// leave once they have answered theirs.
    pub(crate) fn set_workers(&self, n: usize) -> Result<()> {
        let sh = &self.shared;
        let mut s = sh.lock();
        if s.state != PoolState::Running {
            return Err(Error::new(WEFT_CLOSED, "the pool is closed"));
        }
        s.target = n.max(1);
        while s.workers.len() < s.target {
            sh.start_worker(&mut s, None)?;
        }
        // Surplus: the newest workers stop taking tasks; their queues close behind what
        // they hold, and they leave when they reach the end.
        let target = s.target;
        for w in s.workers.iter_mut().skip(target) {
            w.quota = 0;
            let _ = w.tasks.shutdown(false);
        }
        sh.pump(&mut s);
        settle(s);
        Ok(())
    }

    pub(crate) fn shutdown(&self, wait: bool, cancel_pending: bool, deadline: Deadline) -> Result<()> {
        let dropped: Vec<Held> = {
            let mut s = self.shared.lock();
            s.state = PoolState::Closed;
            if cancel_pending {
                // Also the tasks sent to workers that have not taken them yet.
                let mut all = Vec::new();
                for i in 0..s.workers.len() {
                    all.extend(self.shared.take_back(&mut s, i));
                }
                all.extend(s.pending.drain(..));
                all
            } else {
                Vec::new()
            }
        };
        self.shared.changed.notify_all();
        self.shared.nudge();
        for held in dropped {
            // Pending ones are cancelled; ones that were sent count as running: a request,
            // then the cancelled outcome (they never started).
            if !held.job.future.cancel() {
                let _ = held.job.future.complete(cancelled());
            }
        }
        if wait { self.join(deadline) } else { Ok(()) }
    }

    /// Kills the workers; tasks not answered end cancelled.
    pub(crate) fn terminate(&self, deadline: Deadline) -> Result<()> {
        let held: Vec<Held> = {
            let mut s = self.shared.lock();
            s.state = PoolState::Closed;
            for w in &s.workers {
                let _ = w.process.signal(libc::SIGKILL);
            }
            let s = &mut *s;
            s.pending.drain(..).chain(s.in_flight.drain().map(|(_, h)| h)).collect()
        };
        self.shared.changed.notify_all();
        self.shared.nudge();
        for h in held {
            // A running task's future gets a cancel request, then ends cancelled.
            if !h.job.future.cancel() {
                let _ = h.job.future.complete(failure(WEFT_CANCELLED, "the pool was terminated".to_string()));
            }
        }
        self.join(deadline)
    }

    /// Waits until every worker has left and the collector has ended.
    pub(crate) fn join(&self, deadline: Deadline) -> Result<()> {
        let sh = &self.shared;
        let mut s = sh.lock();
        if s.state == PoolState::Running {
            return Err(Error::new(WEFT_INVALID_STATE, "join needs a closed pool (close, terminate or shutdown first)"));
        }
        // Slices of at most 20 ms: a weft thread asked to cancel stops waiting.
        const SLICE_NS: u64 = 20_000_000;
        while !s.collector_done {
            if crate::futex::cancel_requested() {
                return Err(Error::new(WEFT_CANCELLED, "join cancelled"));
            }
            let left = match deadline {
                Deadline::Never => SLICE_NS,
                d => match d.remaining_ns() {
                    Some(0) | None => return Err(Error::new(WEFT_TIMEOUT, "workers still running at the deadline")),
                    Some(ns) => ns.min(SLICE_NS),
                },
            };
            s = sh.changed.wait_timeout(s, std::time::Duration::from_nanos(left)).unwrap_or_else(|e| e.into_inner()).0;
        }
        drop(s);
        // The collector has nothing left to do but return (a callback it ran may be the caller).
        let handle = sh.collector.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            if h.thread().id() == std::thread::current().id() {
                *sh.collector.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
            } else {
                let _ = h.join();
            }
        }
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        let _ = self.shutdown(false, false, Deadline::Now);
        self.shared.stop.store(true, Relaxed);
    }
}

/// The collector thread: answers, deaths, refills; ends once the pool is closed and every
/// worker has left.
fn collect(sh: &Shared, results: SharedQueue) {
    let mut last_check = 0u64;
    let mut idle = false;
    loop {
        let got = results.get_many(BATCH, Deadline::from_timeout_ns(if idle { IDLE_CHECK_NS } else { CHECK_NS }));
        let mut s = sh.lock();
        match got {
            Ok(recs) => {
                for r in &recs {
                    sh.answer(&mut s, r);
                }
            }
            Err(e) if e.code == WEFT_TIMEOUT => {}
            Err(e) => {
                sh.break_pool(&mut s, Error::new(e.code, format!("the pool's result queue failed: {}", e.message)));
                for w in &s.workers {
                    let _ = w.process.signal(libc::SIGKILL);
                }
            }
        }
        let now = crate::time::now_ns();
        if now.saturating_sub(last_check) >= CHECK_NS || s.state != PoolState::Running {
            last_check = now;
            // Closed and drained: close the workers' queues so they leave.
            if s.state != PoolState::Running && s.pending.is_empty() && s.in_flight.is_empty() {
                for w in &s.workers {
                    let _ = w.tasks.shutdown(false);
                }
            }
            // Cancel requests on running tasks: mark the ticket of the worker running one.
            for w in &s.workers {
                let Some(&Some(id)) = w.sent.iter().find(|r| r.is_some()) else { continue };
                if s.in_flight.get(&id).is_some_and(|h| h.job.future.cancel_requested()) {
                    crate::futex::raise_shared_cancel(ticket_word(&w.ticket), super::worker::ticket_of(id));
                }
            }
            sh.rebalance(&mut s, now);
            sh.sweep_cancelled(&mut s);
            while let Some(dead) = s.workers.iter().find(|w| !w.process.is_alive()).map(|w| w.index) {
                // Every answer the worker committed is in the result queue by now.
                drop(s);
                let rest = results.get_many(usize::MAX, Deadline::Now).unwrap_or_default();
                s = sh.lock();
                for r in &rest {
                    sh.answer(&mut s, r);
                }
                if let Some(i) = s.workers.iter().position(|w| w.index == dead) {
                    sh.bury(&mut s, i);
                }
                sh.changed.notify_all();
            }
        }
        sh.pump(&mut s);
        if s.workers.is_empty() && (s.state != PoolState::Running || sh.stop.load(Relaxed)) {
            s.collector_done = true;
            settle(s);
            sh.changed.notify_all();
            return;
        }
        let nap = nap(&s);
        // Closed pools keep the short period: their workers' ends are awaited by `join`.
        idle = s.state == PoolState::Running && s.pending.is_empty() && s.in_flight.is_empty();
        settle(s);
        if let Some(ns) = nap {
            // Every worker has tasks queued behind the one it runs: sleep through a few
            // answers and take them together (one wake-up, for this thread and for whoever
            // waits on their futures, instead of one per answer, on CPUs the workers need).
            // `terminate` and `shutdown` wake the nap early.
            let s = sh.lock();
            if s.state == PoolState::Running {
                drop(sh.changed.wait_timeout(s, std::time::Duration::from_nanos(ns)));
            }
        }
    }
}

/// How long the collector may sleep before taking answers, when every worker holds long
/// tasks queued behind the one it runs: until the least loaded worker is about to run dry.
fn nap(s: &State) -> Option<u64> {
    if s.task_ns <= LONG_TASK_NS || s.state != PoolState::Running {
        return None;
    }
    let least = s.workers.iter().filter(|w| w.quota > 0).map(|w| w.load).min()?;
    // `least - 1` tasks are queued behind a running one that is half done on average.
    let ns = (s.task_ns * least.saturating_sub(1) as u64).saturating_sub(s.task_ns / 2).min(MAX_NAP_NS);
    (ns >= MIN_NAP_NS).then_some(ns)
}

/// The word of a worker's cancel ticket.
fn ticket_word(ticket: &SharedArray) -> &std::sync::atomic::AtomicU32 {
    // SAFETY: every ticket is a one-item uint32 array made by `start_worker`; its data is
    // 64-aligned and lives as long as `ticket`; it is only accessed atomically.
    unsafe { &*(ticket.data() as *const std::sync::atomic::AtomicU32) }
}
