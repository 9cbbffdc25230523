//! Pools (Python's `concurrent.futures` executors, `multiprocessing.Pool` and
//! `multiprocessing.dummy.Pool`): submit, apply, map, imap, close/join/terminate/shutdown.

use super::call::weft_task_fn;
use super::future::weft_future;
use crate::future::{Future, State};
use super::status::{give_bytes, weft_bytes};
use super::{get, out_ptr, publish, Object, Tag};
use crate::pool::{Imap, Options, Pool, Source, Workers};
use crate::status::{guard, weft_status, Error, Result, WEFT_CLOSED, WEFT_NULL_ARGUMENT, WEFT_OK};
use crate::time::Deadline;
use std::ffi::c_void;
use std::sync::Mutex;

/// Pool kind: worker threads of this process (`ThreadPoolExecutor`, `multiprocessing.dummy`).
pub const WEFT_POOL_THREADS: u32 = 0;
/// Pool kind: worker processes (`ProcessPoolExecutor`, `multiprocessing.Pool`).
pub const WEFT_POOL_PROCESSES: u32 = 1;

/// `weft_pool_imap` flag: deliver results as chunks finish instead of in item order
/// (`imap_unordered`).
pub const WEFT_IMAP_UNORDERED: u32 = 1;

/// Options for `weft_pool_new`. Zero-initialise (`weft_pool_options o = {0};`) and set what
/// you need; NULL options mean a thread pool with one worker per usable CPU.
#[repr(C)]
pub struct weft_pool_options {
    /// `WEFT_POOL_THREADS` (0) or `WEFT_POOL_PROCESSES`.
    pub kind: u32,
    /// Number of workers; 0 = the usable CPU count (affinity and cgroup quota).
    pub workers: u32,
    /// Process pools: `WEFT_START_*` (0: the process-wide default start method). Forkserver
    /// and spawn workers find task functions by their object file and symbol (see
    /// `weft_process_start`): functions generated at run time need the fork method.
    pub start_method: u32,
    /// Process pools: how many more times a task whose worker died runs again on another
    /// worker; 0: its future fails with WEFT_WORKER_DIED at once.
    pub retries: u32,
    /// Tasks a worker runs before a fresh worker replaces it (Python's `maxtasksperchild`);
    /// 0 = no limit.
    pub max_tasks_per_worker: u64,
    /// Run once by each worker before its first task (Python's `initializer`), with
    /// `initializer_arg`; state it builds (thread-locals, globals of a worker process) stays
    /// in the worker. A failure breaks the pool: queued and later tasks fail with the
    /// initializer's status and message. NULL: none.
    pub initializer: weft_task_fn,
    /// The initializer's argument bytes (copied); NULL with length 0 for none.
    pub initializer_arg: *const c_void,
    /// Length of `initializer_arg`.
    pub initializer_arg_len: usize,
    /// Must be zero.
    pub reserved: [u64; 4],
}

/// A pool of workers running `weft_task_fn` tasks. Thread-safe: any thread may submit, map,
/// wait or shut down. Several independent pools may exist in one process.
///
/// Process workers: each has its own task queue (1 MiB) in the default space and all answer on
/// one result queue (4 MiB), so a task's argument (or a map chunk) must stay under 1 MiB and
/// its result under 4 MiB: a larger one fails that task's future with WEFT_INVALID_ARGUMENT
/// (WEFT_TASK_FAILED from apply and map). A pool takes about 4 MiB + 1 MiB per worker of the
/// default space (256 MiB unless WEFT_DEFAULT_SPACE_SIZE says otherwise), given back when it
/// has been joined. A task sent to a worker's queue counts as running, as in Python's
/// executor: a cancel asks; if the task is still waiting in the queue, it is taken back and
/// ends cancelled without running (within about 10 ms).
pub struct weft_pool {
    tag: Tag,
    pool: Pool,
}

impl Object for weft_pool {
    const NAME: &'static str = "weft_pool";
    const MAGIC: u64 = 0x7765_6674_706f_6f6c;
    fn tag(&self) -> &Tag {
        &self.tag
    }
    fn on_free(&self) {
        self.pool.close();
    }
}

/// # Safety
/// `options` NULL or a valid struct whose `initializer_arg` has `initializer_arg_len` bytes.
unsafe fn read_options(options: *const weft_pool_options) -> Result<Options> {
    let mut opts = Options::default();
    if options.is_null() {
        return Ok(opts);
    }
    // SAFETY: non-null options point at a valid struct per the contract.
    let o = unsafe { &*options };
    if o.reserved.iter().any(|&r| r != 0) {
        return Err(Error::invalid("weft_pool_options.reserved must be zero"));
    }
    opts.kind = match o.kind {
        WEFT_POOL_THREADS => Workers::Threads,
        WEFT_POOL_PROCESSES => Workers::Processes(super::process::start_method(o.start_method)?),
        k => return Err(Error::invalid(format!("unknown pool kind {k}"))),
    };
    opts.workers = o.workers as usize;
    opts.max_tasks = o.max_tasks_per_worker;
    opts.retries = o.retries;
    if o.kind == WEFT_POOL_THREADS && (o.start_method != 0 || o.retries != 0) {
        return Err(Error::invalid("start_method and retries are for process pools"));
    }
    // SAFETY: forwarded contract.
    let arg = unsafe { super::bytes(o.initializer_arg, o.initializer_arg_len, "initializer_arg") }?;
    opts.initializer = match o.initializer {
        Some(f) => Some((f, arg.to_vec())),
        None if !arg.is_empty() => return Err(Error::invalid("initializer_arg given without an initializer")),
        None => None,
    };
    Ok(opts)
}

/// Gives C one reference to `f`.
fn give_future(f: Future, out: *mut *mut weft_future) -> Result<()> {
    // SAFETY: `out` was checked non-null by the caller and is writable (the API contract).
    unsafe { out.write(f.into_raw().cast()) };
    Ok(())
}

/// An item's or a task's failure as the blocking calls report it: WEFT_TASK_FAILED naming the
/// task's own status and message (so that, say, a task that returned WEFT_TIMEOUT is not taken
/// for a call that timed out); WEFT_WORKER_DIED and WEFT_CANCELLED stay as they are.
fn task_failure(e: Error) -> Error {
    match e.code {
        crate::status::WEFT_WORKER_DIED | crate::status::WEFT_CANCELLED => e,
        code => super::call::task_failed(code, &e.message),
    }
}

/// The result bytes of `f`, waiting until `deadline`; a failure of the task through
/// [`task_failure`], the wait's own failures (timeout, cancel request) as they are.
fn result_of(f: &Future, deadline: Deadline) -> Result<&[u8]> {
    f.result(deadline).map_err(|e| if f.state() == State::Failed { task_failure(e) } else { e })
}

fn task_fn(f: weft_task_fn) -> Result<crate::process::child::TaskFn> {
    f.ok_or_else(|| Error::new(WEFT_NULL_ARGUMENT, "task function is NULL"))
}

/// Starts a pool in `*out`; free it with `weft_pool_free`. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_INVALID_ARGUMENT (unknown kind or start method, nonzero reserved field, a thread pool
/// with a start method or retries, an initializer that forkserver/spawn workers cannot find),
/// WEFT_OS_ERROR (a worker could not start), WEFT_NO_MEMORY (also: the default space has no
/// room for a process pool's queues).
///
/// # Safety
/// `options` NULL or a valid struct; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_new(options: *const weft_pool_options, out: *mut *mut weft_pool) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let opts = unsafe { read_options(options) }?;
        publish(weft_pool { tag: Tag::of::<weft_pool>(), pool: Pool::new(opts)? }, out)
    })
}

/// Submits `task` with a copy of `arg` (`len` bytes) and gives its future in `*out` (free it with
/// `weft_future_free`; freeing it does not cancel the task). Errors: WEFT_NULL_ARGUMENT,
/// WEFT_CLOSED (the pool was closed or shut down), the initializer's failure (a broken pool),
/// WEFT_INVALID_STATE (a pool used in a forked child: its workers are the parent's),
/// WEFT_INVALID_ARGUMENT (forkserver and spawn process pools: a task function in no loaded
/// object, which their workers cannot find), WEFT_NO_MEMORY.
///
/// # Safety
/// `pool` NULL or a handle from weft; `arg` `len` readable bytes (or NULL with 0); `out`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_submit(
    pool: *mut weft_pool,
    task: weft_task_fn,
    arg: *const c_void,
    len: usize,
    out: *mut *mut weft_future,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contracts.
        let (p, arg) = unsafe { (get(pool)?, super::bytes(arg, len, "arg")?) };
        give_future(p.pool.submit(task_fn(task)?, arg)?, out)
    })
}

/// Runs `task` on a worker and waits up to `timeout_ns` for it (Python's `Pool.apply`): WEFT_OK
/// with its result bytes in `*result` (when not NULL; free with `weft_bytes_free`), or the
/// task's failure as WEFT_TASK_FAILED (the message names the task's status and message),
/// WEFT_WORKER_DIED, WEFT_CANCELLED. A timeout (WEFT_TIMEOUT) leaves the task running. Other
/// errors: as `weft_pool_submit`.
///
/// # Safety
/// As `weft_pool_submit`; `result` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_apply(
    pool: *mut weft_pool,
    task: weft_task_fn,
    arg: *const c_void,
    len: usize,
    timeout_ns: u64,
    result: *mut *mut weft_bytes,
) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (p, arg) = unsafe { (get(pool)?, super::bytes(arg, len, "arg")?) };
        let f = p.pool.submit(task_fn(task)?, arg)?;
        let bytes = result_of(&f, Deadline::from_timeout_ns(timeout_ns))?;
        if !result.is_null() {
            give_bytes(bytes.to_vec(), result)?;
        }
        Ok(())
    })
}

/// The items of a C array as byte slices.
///
/// # Safety
/// `items` must hold `count * item_size` readable bytes (or be NULL with count 0).
unsafe fn array_items<'a>(items: *const c_void, item_size: usize, count: usize) -> Result<impl ExactSizeIterator<Item = &'a [u8]>> {
    let total = item_size.checked_mul(count).ok_or_else(|| Error::invalid("item_size * count overflows"))?;
    if item_size == 0 && count != 0 {
        return Err(Error::invalid("item_size is 0"));
    }
    // SAFETY: forwarded contract.
    let all = unsafe { super::bytes(items, total, "items") }?;
    Ok(all.chunks(item_size.max(1)).take(count))
}

/// Python's `Pool.map_async`: runs `task` on each of the `count` items of the array `items`
/// (each `item_size` bytes, copied), `chunksize` items per task (0 chooses: about four chunks
/// per worker), and gives in `*out` a future whose result is every item's result bytes in
/// item order, packed as `weft_queue_get_many` packs items (for each its length as a
/// native-endian `uint64_t`, then its bytes). When an item fails, the future fails with that
/// item's status and a message naming the item (the first failed item in item order).
/// Cancelling the future cancels the chunks not yet started. Errors: as `weft_pool_submit`;
/// WEFT_INVALID_ARGUMENT (`item_size` 0 with items, size overflow).
///
/// # Safety
/// `pool` NULL or a handle from weft; `items` `count * item_size` readable bytes (or NULL with
/// count 0); `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_map_async(
    pool: *mut weft_pool,
    task: weft_task_fn,
    items: *const c_void,
    item_size: usize,
    count: usize,
    chunksize: usize,
    out: *mut *mut weft_future,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contracts.
        let (p, it) = unsafe { (get(pool)?, array_items(items, item_size, count)?) };
        give_future(p.pool.map_async(task_fn(task)?, it, chunksize)?, out)
    })
}

/// Python's `Pool.map`: `weft_pool_map_async`, then waits up to `timeout_ns` and gives the
/// packed results in `*results` (free with `weft_bytes_free`). An item's failure gives
/// WEFT_TASK_FAILED (the message names the item, its status and message), WEFT_WORKER_DIED or
/// WEFT_CANCELLED. A timeout (WEFT_TIMEOUT) leaves the map running. Other errors: as
/// `weft_pool_map_async`.
///
/// # Safety
/// As `weft_pool_map_async`; `results` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_map(
    pool: *mut weft_pool,
    task: weft_task_fn,
    items: *const c_void,
    item_size: usize,
    count: usize,
    chunksize: usize,
    timeout_ns: u64,
    results: *mut *mut weft_bytes,
) -> weft_status {
    guard(|| {
        out_ptr(results, "results")?;
        // SAFETY: forwarded contracts.
        let (p, it) = unsafe { (get(pool)?, array_items(items, item_size, count)?) };
        let f = p.pool.map_async(task_fn(task)?, it, chunksize)?;
        let packed = result_of(&f, Deadline::from_timeout_ns(timeout_ns))?;
        give_bytes(packed.to_vec(), results)
    })
}

/// Gives the next input item of an imap: return WEFT_OK with `*item` / `*len` set (the bytes
/// are copied before the next call), WEFT_CLOSED at the end of the input, or any other status
/// to end the input with that failure (see `weft_imap_next`). Called only on the thread that
/// calls `weft_imap_next`, from inside that call.
pub type weft_next_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, item: *mut *const c_void, len: *mut usize) -> weft_status>;

/// A lazy map in progress (`weft_pool_imap`). Not thread-safe: one thread at a time calls
/// `weft_imap_next` (a lock serialises callers).
pub struct weft_imap {
    tag: Tag,
    it: Mutex<Imap>,
}

impl Object for weft_imap {
    const NAME: &'static str = "weft_imap";
    const MAGIC: u64 = 0x7765_6674_696d_6170;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// The C callback and its context as an imap source.
struct CSource {
    next: unsafe extern "C" fn(*mut c_void, *mut *const c_void, *mut usize) -> weft_status,
    ctx: *mut c_void,
}

// SAFETY: the callback is only called from `weft_imap_next`, on the caller's thread, one call at
// a time (the imap's mutex); the caller vouches for `ctx` there (the `weft_pool_imap` contract).
unsafe impl Send for CSource {}

impl CSource {
    fn read(&mut self) -> Result<Option<Vec<u8>>> {
        let mut item: *const c_void = std::ptr::null();
        let mut len = 0usize;
        // SAFETY: the caller of `weft_pool_imap` promised a callback of this signature and a
        // context valid for it; the out-parameters are on this stack frame.
        let status = unsafe { (self.next)(self.ctx, &mut item, &mut len) };
        match status {
            WEFT_OK => {
                // SAFETY: the callback gave `len` readable bytes at `item` (or NULL with 0).
                let bytes = unsafe { super::bytes(item, len, "item") }?;
                Ok(Some(bytes.to_vec()))
            }
            WEFT_CLOSED => Ok(None),
            s => Err(Error::new(s, "the imap's input callback failed")),
        }
    }
}

/// Python's `Pool.imap` / `imap_unordered`: a lazy map of `task` over the items `next(ctx)`
/// gives, `chunksize` items per task (0 = 1), with at most `max_chunks` chunks in flight (0 =
/// twice the workers) — the input is read only as results are taken, so an endless input
/// works. With `WEFT_IMAP_UNORDERED` in `flags`, results come as chunks finish. Take the
/// results with `weft_imap_next`; free with `weft_imap_free` (which cancels the chunks not yet
/// started). Nothing is read or submitted until the first `weft_imap_next`. Errors:
/// WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (unknown flags).
///
/// # Safety
/// `pool` NULL or a handle from weft; `next` a valid callback and `ctx` valid for it until
/// `weft_imap_free`; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_imap(
    pool: *mut weft_pool,
    task: weft_task_fn,
    next: weft_next_fn,
    ctx: *mut c_void,
    chunksize: usize,
    max_chunks: usize,
    flags: u32,
    out: *mut *mut weft_imap,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let p = unsafe { get(pool) }?;
        let next = next.ok_or_else(|| Error::new(WEFT_NULL_ARGUMENT, "next is NULL"))?;
        if flags & !WEFT_IMAP_UNORDERED != 0 {
            return Err(Error::invalid(format!("unknown imap flags {:#x}", flags & !WEFT_IMAP_UNORDERED)));
        }
        let mut src = CSource { next, ctx };
        let source: Source = Box::new(move || src.read());
        let max_chunks = if max_chunks == 0 { 2 * p.pool.workers() } else { max_chunks };
        let it = p.pool.imap(task_fn(task)?, source, chunksize.max(1), max_chunks, flags & WEFT_IMAP_UNORDERED == 0);
        publish(weft_imap { tag: Tag::of::<weft_imap>(), it: Mutex::new(it) }, out)
    })
}

/// The next result of an imap, waiting up to `timeout_ns`: WEFT_OK with the item's result
/// bytes in `*result` (when not NULL; free with `weft_bytes_free`); WEFT_TASK_FAILED for an
/// item that failed (the message names its status and message; the next call goes on with the
/// following item); WEFT_WORKER_DIED; WEFT_CLOSED once every result was taken; WEFT_TIMEOUT /
/// WEFT_WOULD_BLOCK (nothing finished in time; call again); WEFT_CANCELLED. When the input
/// callback fails, its status comes after the results of the items before it, with the message
/// "the imap's input callback failed". Likewise when the pool is closed (or its initializer
/// failed) before the input was read to its end: the results of the chunks submitted before
/// come first, then WEFT_CLOSED (or the initializer's failure) once, with the pool's message.
///
/// # Safety
/// `it` NULL or a handle from weft; `result` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_imap_next(it: *mut weft_imap, timeout_ns: u64, result: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let i = unsafe { get(it) }?;
        let mut i = i.it.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Deadline::from_timeout_ns(timeout_ns);
        match i.next(deadline) {
            Ok(Some(Ok(bytes))) => {
                if !result.is_null() {
                    give_bytes(bytes, result)?;
                }
                Ok(())
            }
            Ok(Some(Err(e))) => Err(task_failure(e)),
            Ok(None) => Err(Error::new(WEFT_CLOSED, "the imap has no more results")),
            Err(e) if e.code == crate::status::WEFT_TIMEOUT && timeout_ns == 0 => {
                Err(Error::would_block("no result of the imap is ready"))
            }
            Err(e) => Err(e),
        }
    })
}

/// Frees an imap: chunks not yet started are cancelled (running ones finish, their results are
/// dropped). NULL is a no-op.
///
/// # Safety
/// `it` NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_imap_free(it: *mut weft_imap) {
    // SAFETY: forwarded contract.
    unsafe { super::free(it) }
}

/// The number of workers the pool keeps. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `pool` NULL or a handle from weft; `n` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_workers(pool: *const weft_pool, n: *mut usize) -> weft_status {
    guard(|| {
        out_ptr(n, "n")?;
        // SAFETY: forwarded contract.
        let p = unsafe { get(pool) }?;
        // SAFETY: checked non-null above.
        unsafe { n.write(p.pool.workers()) };
        Ok(())
    })
}

/// Changes the number of workers while the pool runs (0 = the usable CPU count): new workers
/// start at once; surplus ones leave after their current task. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_CLOSED (closed pool), WEFT_OS_ERROR.
///
/// # Safety
/// `pool` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_set_workers(pool: *mut weft_pool, n: usize) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(pool) }?.pool.set_workers(n))
}

/// Python's `Pool.close`: the pool takes no more tasks (WEFT_CLOSED); queued tasks still run,
/// then the workers leave. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `pool` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_close(pool: *mut weft_pool) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe { get(pool) }?.pool.close();
        Ok(())
    })
}

/// Python's `Pool.join`: waits up to `timeout_ns` until every worker has left and the pool's
/// threads (thread workers, a process pool's collector) have exited, so that a fork right
/// after it copies no thread of the pool. Errors:
/// WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE (the pool is still open: close, terminate or shut
/// it down first), WEFT_TIMEOUT, WEFT_CANCELLED.
///
/// # Safety
/// `pool` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_join(pool: *mut weft_pool, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(pool) }?.pool.join(Deadline::from_timeout_ns(timeout_ns)))
}

/// Python's `Executor.shutdown(wait, cancel_futures)`: the pool takes no more tasks; with
/// `cancel_pending`, every task not started is cancelled (including those waiting in a process
/// worker's queue; their futures complete as cancelled, waking every waiter and as_completed
/// iterator); with `wait`, waits up to `timeout_ns` for the
/// workers to leave, as `weft_pool_join`. Errors: WEFT_NULL_ARGUMENT, WEFT_TIMEOUT,
/// WEFT_CANCELLED.
///
/// # Safety
/// `pool` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_shutdown(pool: *mut weft_pool, wait: bool, cancel_pending: bool, timeout_ns: u64) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe { get(pool) }?.pool.shutdown(wait, cancel_pending, Deadline::from_timeout_ns(timeout_ns))
    })
}

/// Python's `Pool.terminate`: cancels queued tasks, stops running ones and waits up to
/// `timeout_ns` for the workers to leave. Thread workers' tasks are asked to cancel (they see
/// `weft_call_cancelled`, and weft waits inside them end with WEFT_CANCELLED); process workers
/// are killed (SIGKILL) and their running tasks' futures end cancelled. Errors: WEFT_NULL_ARGUMENT, WEFT_TIMEOUT,
/// WEFT_CANCELLED.
///
/// # Safety
/// `pool` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_terminate(pool: *mut weft_pool, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(pool) }?.pool.terminate(Deadline::from_timeout_ns(timeout_ns)))
}

/// Frees the handle. A pool still open is closed: queued tasks still run and their futures
/// complete; the workers leave once the queue is empty (free does not wait; use
/// `weft_pool_shutdown` or `weft_pool_join` to wait). NULL is a no-op.
///
/// # Safety
/// `pool` NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_pool_free(pool: *mut weft_pool) {
    // SAFETY: forwarded contract.
    unsafe { super::free(pool) }
}
