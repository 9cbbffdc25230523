//! Queues (Python's `queue.Queue`, `LifoQueue`, `PriorityQueue`, `SimpleQueue`,
//! `multiprocessing.Queue`, `JoinableQueue`, `SimpleQueue`): one handle type, private or in a
//! space.

use super::space::{required_name, space_or_default, weft_space, write_token};
use super::status::{give_bytes, give_packed, weft_bytes};
use super::{get, out_ptr, publish, Object, Tag};
use crate::queue::shared::SharedQueue;
use crate::queue::{Filled, Kind, Options, Queue};
use crate::status::{guard, weft_status, Error, Result, WEFT_BUFFER_TOO_SMALL};
use crate::time::Deadline;
use std::ffi::{c_char, c_int, c_void};

/// Queue kind: first in, first out (Python's `queue.Queue`, `multiprocessing.Queue`).
pub const WEFT_QUEUE_FIFO: u32 = 0;
/// Queue kind: last in, first out (`queue.LifoQueue`).
pub const WEFT_QUEUE_LIFO: u32 = 1;
/// Queue kind: the lowest priority value first, first in first out among equal priorities
/// (`queue.PriorityQueue`; the priority is given to `weft_queue_put_priority`).
pub const WEFT_QUEUE_PRIORITY: u32 = 2;
/// Queue kind: first in, first out, unbounded and not joinable (`queue.SimpleQueue`).
pub const WEFT_QUEUE_SIMPLE: u32 = 3;

/// Queue flag: count unfinished tasks, for `weft_queue_task_done` and `weft_queue_join`
/// (`queue.Queue` and `multiprocessing.JoinableQueue`).
pub const WEFT_QUEUE_JOINABLE: u32 = 1;

/// Options for `weft_queue_new` and `weft_queue_new_in`. Zero-initialise
/// (`weft_queue_options o = {0};`) and set what you need; NULL options mean an unbounded FIFO
/// queue that is not joinable.
#[repr(C)]
pub struct weft_queue_options {
    /// `WEFT_QUEUE_FIFO` (0), `WEFT_QUEUE_LIFO`, `WEFT_QUEUE_PRIORITY` or `WEFT_QUEUE_SIMPLE`.
    pub kind: u32,
    /// `WEFT_QUEUE_JOINABLE` or 0.
    pub flags: u32,
    /// Most items held at once (Python's `maxsize`); 0 = unbounded.
    pub maxsize: u64,
    /// Shared queues: bytes of item storage, which also bounds the queue (0: as much as fits a
    /// queue of 1 MiB in all; `weft_queue_options_get` gives the actual size); an item larger
    /// than it is refused. Private queues ignore it.
    pub max_bytes: u64,
    /// Must be zero.
    pub reserved: [u64; 4],
}

/// A queue of byte-string items, private (`weft_queue_new`) or in a space (`weft_queue_new_in`),
/// with the same functions for both. Items are copied in and out; items of at most 8 bytes,
/// and words put with `weft_queue_put_word`, need no allocation in a private queue.
///
/// Blocking calls take a timeout in nanoseconds: 0 tries once and gives WEFT_WOULD_BLOCK
/// (Python's `Full`/`Empty`), WEFT_FOREVER waits forever, anything else gives WEFT_TIMEOUT when
/// it passes; on a weft thread a cancel request ends a wait with WEFT_CANCELLED.
///
/// Thread-safe, and process-safe when shared: any number of producers and consumers. A shared
/// queue keeps no feeder thread: when a put returns, the item is in shared memory; a process
/// killed at any instant, even in the middle of copying an item, leaves every committed item
/// in the queue exactly once and the queue usable.
pub struct weft_queue {
    tag: Tag,
    q: Queue,
}

impl Object for weft_queue {
    const NAME: &'static str = "weft_queue";
    const MAGIC: u64 = 0x7765_6674_7175_6575;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

fn publish_queue(q: Queue, out: *mut *mut weft_queue) -> Result<()> {
    publish(weft_queue { tag: Tag::of::<weft_queue>(), q }, out)
}

/// # Safety
/// `options` NULL or a valid struct.
unsafe fn read_options(options: *const weft_queue_options) -> Result<Options> {
    let mut opts = Options::default();
    if options.is_null() {
        return Ok(opts);
    }
    // SAFETY: non-null options point at a valid struct per the contract.
    let o = unsafe { &*options };
    if o.reserved.iter().any(|&r| r != 0) {
        return Err(Error::invalid("weft_queue_options.reserved must be zero"));
    }
    if o.flags & !WEFT_QUEUE_JOINABLE != 0 {
        return Err(Error::invalid(format!("unknown queue flags {:#x}", o.flags & !WEFT_QUEUE_JOINABLE)));
    }
    opts.kind = Kind::from_code(o.kind)?;
    opts.joinable = o.flags & WEFT_QUEUE_JOINABLE != 0;
    opts.maxsize = usize::try_from(o.maxsize).map_err(|_| Error::invalid("maxsize too large"))?;
    opts.max_bytes = o.max_bytes;
    opts.check()?;
    Ok(opts)
}

/// Creates a private queue (usable by the threads of this process) in `*out`; free it with
/// `weft_queue_free`. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (unknown kind or flag,
/// nonzero reserved field, a bounded or joinable simple queue), WEFT_NO_MEMORY.
///
/// # Safety
/// `options` NULL or a valid struct; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_new(options: *const weft_queue_options, out: *mut *mut weft_queue) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let opts = unsafe { read_options(options) }?;
        publish_queue(Queue::new(opts)?, out)
    })
}

/// Creates a queue in `space` (NULL: the default space, shared with children of every start
/// method), named `name` (NULL: unnamed; pass it to children with `weft_queue_token`). A named
/// queue can be opened from any process that opens the space. Every kind can be shared, joinable
/// or not: FIFO and simple queues keep their items in a ring (each takes 8 bytes plus its length
/// rounded up to 8), LIFO and priority queues in 64-byte chunks (each takes 24 bytes plus its
/// length, rounded up to 64), in `max_bytes` of storage either way.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT, WEFT_EXISTS (the name is taken),
/// WEFT_NO_MEMORY (the space is full), WEFT_CORRUPTED.
///
/// # Safety
/// `space` NULL or a handle from weft; `name` NULL or a NUL-terminated string; `options` NULL or
/// a valid struct; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_new_in(
    space: *mut weft_space,
    name: *const c_char,
    options: *const weft_queue_options,
    out: *mut *mut weft_queue,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contracts.
        let (h, name, opts) = unsafe { (space_or_default(space)?, super::opt_str(name, "name")?, read_options(options)?) };
        publish_queue(Queue::Shared(SharedQueue::create(h, name.as_deref(), opts)?), out)
    })
}

/// Opens the queue named `name` in `space` (NULL: the default space). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_NOT_FOUND, WEFT_INVALID_ARGUMENT (the name is another kind of
/// object), WEFT_CORRUPTED (the queue failed validation).
///
/// # Safety
/// `space` NULL or a handle from weft; `name` a NUL-terminated string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_open(space: *mut weft_space, name: *const c_char, out: *mut *mut weft_queue) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contracts.
        let (h, name) = unsafe { (space_or_default(space)?, required_name(name)?) };
        publish_queue(Queue::Shared(SharedQueue::open(h, &name)?), out)
    })
}

/// Writes a token for a shared queue (see `weft_lock_token`); a private queue has none
/// (WEFT_INVALID_STATE).
///
/// # Safety
/// As `weft_lock_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_token(queue: *const weft_queue, buf: *mut c_void, cap: usize, len: *mut usize) -> weft_status {
    // SAFETY: forwarded contracts.
    guard(|| unsafe { write_token(get(queue)?.q.as_shared().map(|s| s.shared()), "queue", buf, cap, len) })
}

/// Opens the shared queue a token designates (see `weft_lock_from_token`).
///
/// # Safety
/// As `weft_lock_from_token`.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_from_token(token: *const c_void, len: usize, out: *mut *mut weft_queue) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let bytes = unsafe { super::bytes(token, len, "token") }?;
        publish_queue(Queue::Shared(SharedQueue::from_token(bytes)?), out)
    })
}

/// Puts a copy of `item` (`len` bytes), waiting up to `timeout_ns` while a bounded queue is
/// full. Errors: WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK / WEFT_TIMEOUT (full: Python's `Full`),
/// WEFT_CLOSED (shut down), WEFT_CANCELLED, WEFT_INVALID_ARGUMENT (larger than a shared queue's
/// storage), WEFT_NO_MEMORY, WEFT_CORRUPTED.
///
/// # Safety
/// `queue` NULL or a handle from weft; `item` `len` readable bytes (or NULL with 0).
#[no_mangle]
pub unsafe extern "C" fn weft_queue_put(queue: *mut weft_queue, item: *const c_void, len: usize, timeout_ns: u64) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (q, v) = unsafe { (get(queue)?, super::bytes(item, len, "item")?) };
        q.q.put(v, 0, Deadline::from_timeout_ns(timeout_ns))
    })
}

/// As `weft_queue_put`, with a priority: a priority queue delivers the lowest value first (first
/// in, first out among equal values); other kinds ignore it.
///
/// # Safety
/// As `weft_queue_put`.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_put_priority(
    queue: *mut weft_queue,
    item: *const c_void,
    len: usize,
    priority: i64,
    timeout_ns: u64,
) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contracts.
        let (q, v) = unsafe { (get(queue)?, super::bytes(item, len, "item")?) };
        q.q.put(v, priority, Deadline::from_timeout_ns(timeout_ns))
    })
}

/// Puts a pointer-sized word (an item of `sizeof(uintptr_t)` bytes, native byte order), with no
/// allocation in a private queue: the fast path for passing pointers between threads. Errors: as
/// `weft_queue_put`.
///
/// # Safety
/// `queue` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_put_word(queue: *mut weft_queue, word: usize, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(queue) }?.q.put_word(word, 0, Deadline::from_timeout_ns(timeout_ns)))
}

/// Puts `n` items in order (`items[i]` of `lens[i]` bytes; an item may be NULL when its length
/// is 0), waiting up to `timeout_ns` in all for room. `*done` (when not NULL) receives how many
/// went in: all of them on WEFT_OK; otherwise the status says why the rest did not (as
/// `weft_queue_put`), and the items put stay put.
///
/// # Safety
/// `queue` NULL or a handle from weft; `items` and `lens` arrays of `n` elements (NULL when `n`
/// is 0); each item readable for its length; `done` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_put_many(
    queue: *mut weft_queue,
    items: *const *const c_void,
    lens: *const usize,
    n: usize,
    timeout_ns: u64,
    done: *mut usize,
) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let q = unsafe { get(queue) }?;
        // SAFETY: `items` and `lens` hold `n` elements per the contract (checked for NULL).
        let (ptrs, sizes) = unsafe { (array(items, n, "items")?, array(lens, n, "lens")?) };
        let mut slices = Vec::new();
        slices.try_reserve_exact(n).map_err(|_| Error::new(crate::status::WEFT_NO_MEMORY, "too many items"))?;
        for (i, (&p, &len)) in ptrs.iter().zip(sizes).enumerate() {
            // SAFETY: item `i` is readable for its length per the contract.
            slices.push(unsafe { super::bytes(p, len, "items[i]") }.map_err(|e| Error::new(e.code, format!("items[{i}]: {}", e.message)))?);
        }
        let (count, r) = q.q.put_many(&slices, 0, Deadline::from_timeout_ns(timeout_ns));
        if !done.is_null() {
            // SAFETY: non-NULL `done` is writable per the contract.
            unsafe { done.write(count) };
        }
        r
    })
}

/// Views a C array of `n` elements (NULL allowed only when `n` is 0).
///
/// # Safety
/// `p` must point at `n` readable elements when `n > 0`.
unsafe fn array<'a, T>(p: *const T, n: usize, name: &'static str) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    super::in_ptr(p, name)?;
    // SAFETY: `p` points at `n` readable elements per the contract.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Takes the next item, waiting up to `timeout_ns` while the queue is empty, and returns it in
/// `*item` (free with `weft_bytes_free`). Errors: WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK /
/// WEFT_TIMEOUT (empty: Python's `Empty`), WEFT_CLOSED (shut down and drained), WEFT_CANCELLED,
/// WEFT_NO_MEMORY (the item stays), WEFT_CORRUPTED.
///
/// # Safety
/// `queue` NULL or a handle from weft; `item` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_get(queue: *mut weft_queue, timeout_ns: u64, item: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        out_ptr(item, "item")?;
        // SAFETY: forwarded contract.
        let v = unsafe { get(queue) }?.q.get(Deadline::from_timeout_ns(timeout_ns))?;
        give_bytes(v, item)
    })
}

/// Takes the next item into `buf` (`cap` bytes) and writes its length to `*len`. When it does
/// not fit, nothing is taken: `*len` is the size needed and the call returns
/// WEFT_BUFFER_TOO_SMALL at once. Errors: as `weft_queue_get`.
///
/// # Safety
/// `queue` NULL or a handle from weft; `buf` `cap` writable bytes (or NULL with 0); `len`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_get_into(queue: *mut weft_queue, buf: *mut c_void, cap: usize, timeout_ns: u64, len: *mut usize) -> weft_status {
    guard(|| {
        out_ptr(len, "len")?;
        // SAFETY: forwarded contract.
        let q = unsafe { get(queue) }?;
        // SAFETY: `buf` holds `cap` writable bytes per the contract.
        let out = unsafe { super::bytes_mut(buf, cap, "buf") }?;
        let filled = q.q.get_into(out, Deadline::from_timeout_ns(timeout_ns))?;
        let (n, fits) = match filled {
            Filled::Item(n) => (n, true),
            Filled::TooSmall(n) => (n, false),
        };
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { len.write(n) };
        if !fits {
            return Err(Error::new(WEFT_BUFFER_TOO_SMALL, format!("the next item is {n} bytes, the buffer {cap}; it stays in the queue")));
        }
        Ok(())
    })
}

/// Takes the next item, which must be a word (`sizeof(uintptr_t)` bytes, as put by
/// `weft_queue_put_word`), into `*word`. Errors: as `weft_queue_get`, and WEFT_INVALID_STATE
/// when the next item has another size (it stays in the queue).
///
/// # Safety
/// `queue` NULL or a handle from weft; `word` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_get_word(queue: *mut weft_queue, timeout_ns: u64, word: *mut usize) -> weft_status {
    guard(|| {
        out_ptr(word, "word")?;
        // SAFETY: forwarded contract.
        let w = unsafe { get(queue) }?.q.get_word(Deadline::from_timeout_ns(timeout_ns))?;
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { word.write(w) };
        Ok(())
    })
}

/// Waits up to `timeout_ns` for at least one item, then takes up to `max` items that are there
/// (without waiting for more). They come packed in one buffer `*items` (free with
/// `weft_bytes_free`): for each item its length as a native-endian `uint64_t`, then its bytes,
/// with no padding; `*count` receives how many. Errors: as `weft_queue_get`, and
/// WEFT_INVALID_ARGUMENT (`max` is 0).
///
/// # Safety
/// `queue` NULL or a handle from weft; `items` and `count` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_get_many(
    queue: *mut weft_queue,
    max: usize,
    timeout_ns: u64,
    items: *mut *mut weft_bytes,
    count: *mut usize,
) -> weft_status {
    guard(|| {
        out_ptr(items, "items")?;
        out_ptr(count, "count")?;
        // SAFETY: forwarded contract.
        let all = unsafe { get(queue) }?.q.get_many(max, Deadline::from_timeout_ns(timeout_ns))?;
        give_packed(&all, items)?;
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { count.write(all.len()) };
        Ok(())
    })
}

/// Writes the number of items held now to `*size` (Python's `qsize()`; other threads may
/// change it at once). Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `queue` NULL or a handle from weft; `size` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_size(queue: *const weft_queue, size: *mut usize) -> weft_status {
    guard(|| {
        out_ptr(size, "size")?;
        // SAFETY: forwarded contract.
        let n = unsafe { get(queue) }?.q.qsize();
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { size.write(n) };
        Ok(())
    })
}

/// True when the queue holds no item (Python's `empty()`); false for NULL or a bad handle.
///
/// # Safety
/// `queue` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_empty(queue: *const weft_queue) -> bool {
    // SAFETY: forwarded contract.
    crate::status::guard_value(false, || unsafe { get(queue) }.is_ok_and(|q| q.q.empty()))
}

/// True when a bounded queue holds `maxsize` items (Python's `full()`); false for NULL or a bad
/// handle.
///
/// # Safety
/// `queue` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_full(queue: *const weft_queue) -> bool {
    // SAFETY: forwarded contract.
    crate::status::guard_value(false, || unsafe { get(queue) }.is_ok_and(|q| q.q.full()))
}

/// Writes the queue's options (kind, flags, maxsize, max_bytes) to `*options`. Errors:
/// WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `queue` NULL or a handle from weft; `options` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_options_get(queue: *const weft_queue, options: *mut weft_queue_options) -> weft_status {
    guard(|| {
        out_ptr(options, "options")?;
        // SAFETY: forwarded contract.
        let o = unsafe { get(queue) }?.q.options();
        let v = weft_queue_options {
            kind: o.kind.code(),
            flags: if o.joinable { WEFT_QUEUE_JOINABLE } else { 0 },
            maxsize: o.maxsize as u64,
            max_bytes: o.max_bytes,
            reserved: [0; 4],
        };
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { options.write(v) };
        Ok(())
    })
}

/// Marks one task taken from a joinable queue done (Python's `task_done()`). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE (the queue is not joinable, or more calls than items
/// put: Python's `ValueError`).
///
/// # Safety
/// `queue` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_task_done(queue: *mut weft_queue) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(queue) }?.q.task_done())
}

/// Writes the number of unfinished tasks (items put and not yet marked done) to `*count`.
/// Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `queue` NULL or a handle from weft; `count` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_unfinished(queue: *const weft_queue, count: *mut usize) -> weft_status {
    guard(|| {
        out_ptr(count, "count")?;
        // SAFETY: forwarded contract.
        let n = unsafe { get(queue) }?.q.unfinished();
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { count.write(n) };
        Ok(())
    })
}

/// Waits up to `timeout_ns` until every item put was marked done (Python's `join()`). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_INVALID_STATE (not joinable), WEFT_WOULD_BLOCK, WEFT_TIMEOUT,
/// WEFT_CANCELLED.
///
/// # Safety
/// `queue` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_join(queue: *mut weft_queue, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(queue) }?.q.join(Deadline::from_timeout_ns(timeout_ns)))
}

/// Shuts the queue down (Python 3.13's `shutdown`): puts fail with WEFT_CLOSED from now on, and
/// blocked putters wake with it; gets take what is left, then give WEFT_CLOSED. With
/// `immediate`, the items left are discarded (each counted done for `weft_queue_join`) and every
/// waiter wakes. Shutting down twice is allowed (an immediate one still discards). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_CORRUPTED.
///
/// # Safety
/// `queue` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_shutdown(queue: *mut weft_queue, immediate: bool) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(queue) }?.q.shutdown(immediate))
}

/// True once the queue was shut down (by any handle, in any process); false for NULL or a bad
/// handle.
///
/// # Safety
/// `queue` NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_is_shut_down(queue: *const weft_queue) -> bool {
    // SAFETY: forwarded contract.
    crate::status::guard_value(false, || unsafe { get(queue) }.is_ok_and(|q| q.q.is_shut_down()))
}

/// Writes a descriptor to `*fd` that is readable (POLLIN) while the queue holds an item or is
/// shut down, for epoll, libuv, GLib or asyncio. It is owned by the handle (do not close it) and
/// stays valid until `weft_queue_free`; reading it is not needed (and not allowed). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_OS_ERROR.
///
/// # Safety
/// `queue` NULL or a handle from weft; `fd` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_fd(queue: *mut weft_queue, fd: *mut c_int) -> weft_status {
    guard(|| {
        out_ptr(fd, "fd")?;
        // SAFETY: forwarded contract.
        let f = unsafe { get(queue) }?.q.fd()?;
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { fd.write(f) };
        Ok(())
    })
}

/// Frees the handle. A private queue is freed with its items; a shared queue lives on while a
/// handle on it remains in any process (and, when named, until `weft_space_remove`). NULL is a
/// no-op.
///
/// # Safety
/// `queue` NULL or a handle from weft, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn weft_queue_free(queue: *mut weft_queue) {
    // SAFETY: forwarded contract.
    unsafe { super::free(queue) }
}
