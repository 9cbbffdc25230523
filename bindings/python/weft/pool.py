"""``multiprocessing.Pool`` for native tasks: :class:`Pool` over weft worker *processes* (as
``multiprocessing.Pool``) and :class:`ThreadPool` over weft worker threads (as
``multiprocessing.pool.ThreadPool`` / ``multiprocessing.dummy.Pool``), with the same methods:
``apply``, ``apply_async``, ``map``, ``map_async``, ``imap``, ``imap_unordered``, ``close``,
``join``, ``terminate`` and the context manager, with multiprocessing's arguments, results and
errors.

    import ctypes, weft

    tasks = ctypes.CDLL("./libtasks.so")              # exports weft_status work(weft_call *)
    with weft.Pool(4, context="spawn") as pool:       # or weft.ThreadPool(4)
        print(pool.map(tasks.work, [b"a", b"b", b"c"]))
        for r in pool.imap_unordered(tasks.work, endless_bytes(), chunksize=8):
            ...

``func`` is a native task, given as for :mod:`weft.futures` (a ctypes or cffi function pointer,
an address, or a ``(library_path, symbol_name)`` pair). A task takes one bytes argument
(``args`` is bytes, or a tuple holding at most one bytes object; ``kwds`` must be empty) and
returns bytes; a failed task raises :class:`weft.TaskError` (its status in ``task_status``).
The workers never take the GIL, and every blocking call releases it.

Process workers have no interpreter: with ``context`` ``"forkserver"`` (weft's default) or
``"spawn"`` the worker finds the task again by its shared object and offset, so it must be a
function of a loaded shared object, and it sees only its argument bytes and weft's shared
objects (``fork`` workers call the pointer in a copy of this process). A worker process that
dies in the middle of a task (SIGKILL, a crash) fails only that task — ``get`` raises
:class:`weft.WorkerDiedError` (``WEFT_WORKER_DIED``, with the worker's pid and signal) —
and a new worker takes its place, where ``multiprocessing.Pool`` hangs. A failed initializer
breaks the pool: ``weft.futures.BrokenProcessPool`` (``BrokenThreadPool`` for thread
workers). ``callback``/``error_callback`` run on the worker thread (thread workers) or on the
binding's "weft-callbacks" thread (process workers), from which they may use the pool.
A pool whose ``terminate`` finds nothing left to run lets its worker processes leave by
themselves rather than killing them (libweft does not get back the shared memory of the queues
a killed worker was using).

Differences from multiprocessing: ``imap`` and ``imap_unordered`` read their input lazily, a
bounded window ahead of the results taken (an endless iterable works); the input is read on the
consuming thread. ``join`` waits for the imaps still running to go through their input (their
results are kept for the iterator), as multiprocessing does. ``terminate`` cancels the tasks not
started and stops the running ones: worker processes are killed, thread workers' tasks are asked
to stop (``weft_call_cancelled``). ``ThreadPool`` also takes ``maxtasksperchild``.
"""

from __future__ import annotations

import multiprocessing as _mp
import operator
import struct
import threading
import weakref

from ._errors import WeftError, error_for, last_error_message
from ._native import CONSTANTS, FOREVER, ffi, lib
from .futures import (
    _END,
    _NOT_YET,
    _PROCESSES,
    _THREADS,
    BrokenProcessPool,
    BrokenThreadPool,
    CancelledError,
    Future,
    TaskError,
    _chunks,
    _IMap,
    _item_bytes,
    _new_pool,
    _prime,
    _start_method_of,
    _timeout_ns,
    message_is_initializer,
    native_task,
)
from .process import _arg_bytes

__all__ = ["Pool", "ThreadPool", "AsyncResult", "MapResult", "IMapIterator", "IMapUnorderedIterator"]

_OK = CONSTANTS["WEFT_OK"]
_CLOSED = CONSTANTS["WEFT_CLOSED"]

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"

TimeoutError = _mp.TimeoutError  # noqa: A001 - multiprocessing's, as Pool raises it


def _auto_chunksize(count: int, workers: int) -> int:
    """multiprocessing's chunk size: about four chunks per worker."""
    chunksize, extra = divmod(count, workers * 4)
    return max(1, chunksize + (1 if extra else 0))


def _unpack(data: bytes) -> list:
    """Packed map results (per item: its length as a native u64, then its bytes) -> a list."""
    out = []
    view = memoryview(data)
    i, n = 0, len(data)
    while i < n:
        (size,) = struct.unpack_from("=Q", data, i)
        i += 8
        out.append(bytes(view[i : i + size]))
        i += size
    return out


def _not_running():
    return ValueError("Pool not running")


def _no_kwds(kwds):
    if kwds:
        raise TypeError("a native task takes no keyword arguments (kwds must be empty)")


class AsyncResult:
    """The result of ``apply_async`` (multiprocessing's ``AsyncResult``): ``get``, ``wait``,
    ``ready``, ``successful``."""

    def __init__(self, future: Future, callback=None, error_callback=None, transform=None):
        self._future = future
        self._transform = transform
        if callback is not None or error_callback is not None:
            future.add_done_callback(lambda f: self._call_back(callback, error_callback))

    def _call_back(self, callback, error_callback):
        f = self._future
        if f.cancelled():
            return
        exc = f.exception(0)
        if exc is None:
            if callback is not None:
                callback(self._value())
        elif error_callback is not None:
            error_callback(exc)

    def _value(self):
        r = self._future.result(0)
        return self._transform(r) if self._transform is not None else r

    def ready(self) -> bool:
        """True once the call has finished."""
        return self._future.done()

    def successful(self) -> bool:
        """True when the call finished without failing; ValueError while it runs."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return not self._future.cancelled() and self._future.exception(0) is None

    def wait(self, timeout=None) -> None:
        """Waits up to ``timeout`` seconds (None: forever) for the call to finish."""
        arr = ffi.new("weft_future *[1]", [self._future._ptr])
        lib.weft_futures_wait(arr, 1, _timeout_ns(timeout), CONSTANTS["WEFT_ALL_COMPLETED"], ffi.NULL, ffi.NULL)

    def get(self, timeout=None):
        """The result, waiting up to ``timeout`` seconds: ``multiprocessing.TimeoutError`` when
        it is not ready by then; the task's failure (:class:`weft.TaskError`) is raised."""
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        return self._value()


class MapResult(AsyncResult):
    """The result of ``map_async``: ``get`` gives the list of results, in item order; the first
    failed item (in item order) raises its failure."""


class IMapIterator:
    """The iterator of ``imap`` (``imap_unordered``): ``next(timeout=None)`` raises
    ``multiprocessing.TimeoutError``; a failed item raises its :class:`weft.TaskError` at its
    place and the iteration goes on with the next item."""

    _unordered = False

    def __init__(self, pool, func, iterable, chunksize):
        task, keep = native_task(func)
        self._pool = pool
        self._imap = _IMap(pool._pool, task, keep, iterable, chunksize, 0, self._unordered, pool._broken_cls)
        self._lock = threading.Lock()
        self._buffer = []  # outcomes taken by join(): ("ok", bytes) or ("err", exception)
        self._finished = False

    def __iter__(self):
        return self

    def _take(self, timeout_ns):
        try:
            r = self._imap.next(timeout_ns, _not_running)
        except (Exception, CancelledError) as e:  # noqa: BLE001 - given to the consumer
            return ("err", e)
        if r is _END:
            self._finish()
            return None
        if r is _NOT_YET:
            return "timeout"
        return ("ok", r)

    def _finish(self):
        if not self._finished:
            self._finished = True
            self._imap.close()
            self._pool._imap_done(self)

    def next(self, timeout=None):
        """The next result, waiting up to ``timeout`` seconds (None: forever)."""
        with self._lock:
            if self._buffer:
                outcome = self._buffer.pop(0)
            elif self._finished:
                raise StopIteration
            else:
                outcome = self._take(_timeout_ns(timeout))
                if outcome is None:
                    raise StopIteration
                if outcome == "timeout":
                    raise TimeoutError
        kind, value = outcome
        if kind == "err":
            raise value
        return value

    __next__ = next

    def _drain(self):
        """Goes through the rest of the input now (join), keeping the outcomes for ``next``."""
        with self._lock:
            while not self._finished:
                outcome = self._take(FOREVER)
                if outcome is None:
                    break
                if outcome != "timeout":
                    self._buffer.append(outcome)

    def __del__(self):
        try:
            if not self._finished:
                self._finished = True
                self._pool._imap_done(self)
        except Exception:  # noqa: BLE001 - at garbage collection
            pass


class IMapUnorderedIterator(IMapIterator):
    """The iterator of ``imap_unordered``: results as their chunks finish."""

    _unordered = True


class Pool:
    """``multiprocessing.Pool`` over weft worker processes, for native tasks (see the module
    documentation). ``processes`` (None: the usable CPU count), ``initializer`` (a native task
    run once by each worker with ``initargs`` bytes; state it builds stays in that worker; a
    failure breaks the pool), ``maxtasksperchild`` (a worker is replaced by a fresh one after
    that many tasks), ``context``: None (weft's default start method,
    ``weft.get_start_method()``), a start method name (``"fork"``, ``"forkserver"``,
    ``"spawn"``) or a context object with ``get_start_method()``
    (``multiprocessing.get_context("spawn")``)."""

    # The kind of the workers (:class:`ThreadPool` has threads) and the exception of a failed
    # initializer.
    _kind = _PROCESSES
    _broken_cls = BrokenProcessPool

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None, context=None):
        if processes is not None:
            processes = operator.index(processes)
            if processes < 1:
                raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            if not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0:
                raise ValueError("maxtasksperchild must be a positive int or None")
        options = {}
        if self._kind == _PROCESSES:
            self._ctx = context
            self._start_method = _start_method_of(context)
            options = {"start_method": self._start_method}
        self._pool, self._init_keep = _new_pool(processes or 0, initializer, initargs, maxtasksperchild or 0,
                                                kind=self._kind, **options)
        self._state = RUN
        self._lock = threading.RLock()
        self._imaps = weakref.WeakSet()  # imaps that may still submit chunks
        self._native_closed = False
        _live.add(self)

    # -- helpers

    @property
    def _processes(self) -> int:
        n = ffi.new("size_t *")
        lib.weft_pool_workers(self._pool, n)
        return int(n[0])

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    def _submit(self, func, arg: bytes) -> Future:
        task, keep = native_task(func)
        out = ffi.new("weft_future **")
        st = lib.weft_pool_submit(self._pool, task, arg, len(arg), out)
        if st != _OK:
            if st == _CLOSED:
                raise ValueError("Pool not running")
            if message_is_initializer(last_error_message()):
                raise self._broken_cls(st, last_error_message())
            raise error_for(st)
        return Future._from_ptr(out[0])._of_pool(keep, self._broken_cls)

    def _map_future(self, func, iterable, chunksize) -> Future:
        """A future whose result is the packed results of ``func`` over the items."""
        items = [_item_bytes(x) for x in iterable]
        if chunksize is None:
            chunksize = _auto_chunksize(len(items), self._processes)
        chunksize = operator.index(chunksize)
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        task, keep = native_task(func)
        size = len(items[0]) if items else 0
        if not items or (size > 0 and all(len(x) == size for x in items)):
            # Items of one size: weft's map_async cuts and gathers in C.
            buf = b"".join(items)
            out = ffi.new("weft_future **")
            st = lib.weft_pool_map_async(self._pool, task, buf, size or 1, len(items), chunksize, out)
            if st != _OK:
                raise error_for(st)
            return Future._from_ptr(out[0])._of_pool(keep, self._broken_cls)
        # Items of different sizes: an imap holding every chunk in flight, all submitted now,
        # whose results a thread gathers into a future of our own.
        it = _IMap(self._pool, task, keep, items, chunksize, _chunks(len(items), chunksize), False, self._broken_cls)
        first = _prime(it)
        f = Future()._of_pool(keep, self._broken_cls)
        t = threading.Thread(target=_gather, args=(it, first, len(items), f), daemon=True, name="weft-map-gather")
        t.start()
        return f

    # -- multiprocessing.Pool's API

    def apply(self, func, args=b"", kwds=None):
        """Runs ``func(args)`` on a worker and returns its result bytes."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=b"", kwds=None, callback=None, error_callback=None) -> AsyncResult:
        """Runs ``func(args)`` on a worker; ``callback(result)`` or ``error_callback(exc)`` runs
        when it finishes (on the worker thread)."""
        _no_kwds(kwds)
        self._check_running()
        return AsyncResult(self._submit(func, _arg_bytes(args)), callback, error_callback)

    def map(self, func, iterable, chunksize=None) -> list:
        """``func`` over every item (bytes) of ``iterable``, the results in order; the first
        failed item (in item order) raises."""
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None) -> MapResult:
        """As ``map``, returning a :class:`MapResult` at once (every item is submitted now)."""
        self._check_running()
        return MapResult(self._map_future(func, iterable, chunksize), callback, error_callback, _unpack)

    def imap(self, func, iterable, chunksize=1) -> IMapIterator:
        """A lazy ``map``: results in order as they come, the input read a bounded window ahead."""
        return self._imap(IMapIterator, func, iterable, chunksize)

    def imap_unordered(self, func, iterable, chunksize=1) -> IMapUnorderedIterator:
        """As ``imap``, results in the order their chunks finish."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize)

    def _imap(self, cls, func, iterable, chunksize):
        self._check_running()
        chunksize = operator.index(chunksize)
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        it = cls(self, func, iterable, chunksize)
        with self._lock:
            self._imaps.add(it)
        return it

    def _imap_done(self, it):
        with self._lock:
            self._imaps.discard(it)
        self._maybe_close_native()

    def _maybe_close_native(self):
        """Closes the weft pool once the Python pool is closed and no imap may still submit."""
        with self._lock:
            if self._state != CLOSE or self._native_closed:
                return
            if any(not it._finished for it in list(self._imaps)):
                return
            self._native_closed = True
        st = lib.weft_pool_close(self._pool)
        if st != _OK:
            raise error_for(st)

    def close(self) -> None:
        """Takes no more tasks; those submitted (and the imaps started) still run."""
        if self._state == RUN:
            self._state = CLOSE
        self._maybe_close_native()

    def terminate(self) -> None:
        """Cancels the tasks not started, stops the running ones — thread workers' tasks are
        asked to stop (``weft_call_cancelled``), worker processes are killed — and waits for the
        workers to leave."""
        self._state = TERMINATE
        with self._lock:
            self._native_closed = True
        st = lib.weft_pool_terminate(self._pool, FOREVER)
        if st != _OK:
            raise error_for(st)

    def join(self) -> None:
        """Waits until every task has finished and the workers have left (after ``close`` or
        ``terminate``); imaps still running go through their input first."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state == CLOSE:
            for it in list(self._imaps):
                it._drain()
            self._maybe_close_native()
        st = lib.weft_pool_join(self._pool, FOREVER)
        if st != _OK:
            raise error_for(st)

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()

    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} state={self._state} pool_size={self._processes}>"


class ThreadPool(Pool):
    """``multiprocessing.pool.ThreadPool`` (``multiprocessing.dummy.Pool``) over weft worker
    threads, for native tasks: the methods of :class:`Pool`. ``processes`` (None: the usable CPU
    count), ``initializer`` (run once by each worker thread with ``initargs`` bytes; state it
    builds in thread-locals stays with that worker; a failure breaks the pool:
    ``weft.futures.BrokenThreadPool``) and, unlike Python's, ``maxtasksperchild`` (a worker
    thread is replaced after that many tasks)."""

    _kind = _THREADS
    _broken_cls = BrokenThreadPool

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        super().__init__(processes, initializer, initargs, maxtasksperchild)


def _gather(it, first, count, future):
    """Collects an imap's results into ``future`` (packed as weft's map packs them); the first
    failed item fails it with that item's status."""
    parts = []
    try:
        r = first
        for i in range(count):
            if isinstance(r, TaskError):
                future._set_failure(r.task_status, f"item {i} failed: {r.task_message}")
                return
            if r is _NOT_YET:
                try:
                    r = it.next(FOREVER)
                except TaskError as e:
                    future._set_failure(e.task_status, f"item {i} failed: {e.task_message}")
                    return
                except CancelledError:
                    future.cancel()
                    return
            if r is _END:
                future.cancel()
                return
            parts.append(struct.pack("=Q", len(r)))
            parts.append(r)
            r = _NOT_YET
        future.set_result(b"".join(parts))
    except BaseException as e:  # noqa: B902 - the future reports it
        if not future.done():
            if isinstance(e, (BrokenThreadPool, BrokenProcessPool)):
                future._set_failure(e.status, e.message)  # weft's text: the future raises it again
                return
            status = e.status if isinstance(e, WeftError) else CONSTANTS["WEFT_PANIC"]
            future._set_failure(status, f"{type(e).__name__}: {e}")
    finally:
        it.close()


_live = weakref.WeakSet()


def _terminate_at_exit():
    # As multiprocessing does for pools still alive at exit.
    for p in list(_live):
        try:
            if p._state != TERMINATE:
                p.terminate()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_terminate_at_exit)
else:  # pragma: no cover
    import atexit

    atexit.register(_terminate_at_exit)
