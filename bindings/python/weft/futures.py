"""``concurrent.futures`` for native tasks: futures, ``wait``, ``as_completed``, a
``ThreadPoolExecutor`` whose workers are weft threads and a ``ProcessPoolExecutor`` whose
workers are weft processes, both running C functions.

    import ctypes, weft.futures

    tasks = ctypes.CDLL("./libtasks.so")              # exports weft_status work(weft_call *)
    with weft.futures.ThreadPoolExecutor(4) as ex:
        f = ex.submit(tasks.work, b"input bytes")
        print(f.result())                             # the bytes the task set as its result
        print(list(ex.map(tasks.work, [b"a", b"b"])))
    with weft.futures.ProcessPoolExecutor(4, mp_context="spawn") as ex:
        print(list(ex.map(tasks.work, [b"a", b"b"])))

A task is a C function with weft's task signature ``weft_status task(weft_call *call)``, given
as a ctypes function pointer (``ctypes.CDLL(path).task``), a cffi function pointer (of any
``cffi.FFI``), an integer address, or a ``(library_path, symbol_name)`` pair (``None`` as the
path: the program and the libraries loaded with it). Python callables — including ctypes and
cffi callbacks made from them — are refused with TypeError: the point of these pools is that
the workers never need the GIL (use ``concurrent.futures`` for Python code). Arguments and
results are bytes. Every blocking call (``result``, ``wait``, ``as_completed``, ``shutdown``)
is one call into C with the GIL released.

Process workers (:class:`ProcessPoolExecutor`) run the task in a worker process with no
interpreter in it. With the ``fork`` start method the worker is a copy of this process and
calls the function pointer directly; with ``forkserver`` (weft's default) and ``spawn`` the
worker is a fresh image of the program in which weft finds the function again by its shared
object and offset, so the task must be a function of a loaded shared object (not code
generated at run time) and it sees only its argument bytes and weft's shared objects. A
worker that dies in the middle of a task (SIGKILL, a crash, ``_exit``) fails only that task's
future, with :class:`WorkerDiedError` (status ``WEFT_WORKER_DIED``; weft's message names the
pid and the signal or exit code); a new worker takes its place and the pool goes on. It is a
:class:`weft.TaskError` and also a ``concurrent.futures.process.BrokenProcessPool``, so that
code written for Python's executor (where a dead worker breaks the whole pool) still catches
it. ``retries=n`` runs such a task again, up to ``n`` more times, before failing it.

:class:`Future` wraps a ``weft_future``: ``result``/``exception`` raise
``concurrent.futures.CancelledError`` and ``TimeoutError``; a failed task raises
:class:`weft.TaskError` carrying the task's own status (``task_status``) and message.
``cancel`` of a running future returns False, as in Python, and in addition asks the task to
stop (its ``weft_call_cancelled`` turns true and weft waits inside it return
``WEFT_CANCELLED``). Futures are awaitable in asyncio (through ``weft_future_fd`` and
``loop.add_reader``: no thread per await).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures as _cf
import concurrent.futures.process as _cf_process
import concurrent.futures.thread as _cf_thread
import ctypes
import functools
import itertools
import logging
import math
import operator
import re
import threading
import time
import weakref
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, CancelledError

from ._errors import WeftError, error_for, last_error_message
from ._native import CONSTANTS, FOREVER, ffi, lib, managed
from .process import (
    START_METHODS,
    TaskError,
    WorkerDiedError,
    _arg_bytes,
    _collect_warnings,
    _drop_warnings,
    _emit_warnings,
    _task_pointer,
    get_start_method,
)

__all__ = [
    "Future",
    "ThreadPoolExecutor",
    "ProcessPoolExecutor",
    "BrokenThreadPool",
    "BrokenProcessPool",
    "TaskError",
    "WorkerDiedError",
    "wait",
    "as_completed",
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "CancelledError",
    "TimeoutError",
]

TimeoutError = _cf.TimeoutError  # noqa: A001 - the builtin from Python 3.11 on

try:  # the namedtuple concurrent.futures.wait returns
    from concurrent.futures._base import DoneAndNotDoneFutures
except ImportError:  # pragma: no cover - a future CPython
    DoneAndNotDoneFutures = collections.namedtuple("DoneAndNotDoneFutures", "done not_done")

LOGGER = logging.getLogger("concurrent.futures")

_OK = CONSTANTS["WEFT_OK"]
_TIMEOUT = CONSTANTS["WEFT_TIMEOUT"]
_WOULD_BLOCK = CONSTANTS["WEFT_WOULD_BLOCK"]
_CLOSED = CONSTANTS["WEFT_CLOSED"]
_CANCELLED = CONSTANTS["WEFT_CANCELLED"]
_TASK_FAILED = CONSTANTS["WEFT_TASK_FAILED"]
_INVALID_ARGUMENT = CONSTANTS["WEFT_INVALID_ARGUMENT"]
_INVALID_STATE = CONSTANTS["WEFT_INVALID_STATE"]
_NOT_FOUND = CONSTANTS["WEFT_NOT_FOUND"]
_PANIC = CONSTANTS["WEFT_PANIC"]
_WORKER_DIED = CONSTANTS["WEFT_WORKER_DIED"]

_THREADS = CONSTANTS["WEFT_POOL_THREADS"]
_PROCESSES = CONSTANTS["WEFT_POOL_PROCESSES"]

_PENDING = CONSTANTS["WEFT_FUTURE_PENDING"]
_RUNNING = CONSTANTS["WEFT_FUTURE_RUNNING"]
_DONE = CONSTANTS["WEFT_FUTURE_DONE"]
_FAILED = CONSTANTS["WEFT_FUTURE_FAILED"]
_CANCELLED_STATE = CONSTANTS["WEFT_FUTURE_CANCELLED"]

_MODES = {
    ALL_COMPLETED: CONSTANTS["WEFT_ALL_COMPLETED"],
    FIRST_COMPLETED: CONSTANTS["WEFT_FIRST_COMPLETED"],
    FIRST_EXCEPTION: CONSTANTS["WEFT_FIRST_EXCEPTION"],
}

# The message prefix of every failure caused by a pool initializer that failed (the C
# library's wording, src/pool/threads.rs).
_INITIALIZER_FAILED = "the pool's initializer failed"


def _init_broken(exc, status: int, message: str, what: str) -> str:
    """Sets a broken-pool exception's attributes; returns its text."""
    from ._errors import status_name

    exc.status = int(status)
    exc.name = status_name(exc.status)
    exc.message = message
    return f"A {what} initializer failed, the {what} pool is not usable anymore ({exc.name}: {message})"


class BrokenThreadPool(_cf_thread.BrokenThreadPool):
    """The pool's initializer failed, so the pool runs no task (Python's ``BrokenThreadPool``,
    which this is a subclass of). ``status`` is the initializer's status (its name in
    ``name``), ``message`` weft's text."""

    def __init__(self, status: int, message: str):
        super().__init__(_init_broken(self, status, message, "thread"))


class BrokenProcessPool(_cf_process.BrokenProcessPool):
    """A process pool's initializer failed, so the pool runs no task (a subclass of Python's
    ``BrokenProcessPool``). ``status`` is the initializer's status (its name in ``name``),
    ``message`` weft's text. A worker that dies in the middle of a task does not break a weft
    pool: that task fails with :class:`WorkerDiedError`."""

    def __init__(self, status: int, message: str):
        super().__init__(_init_broken(self, status, message, "process"))


# --- timeouts -------------------------------------------------------------------------------


def _timeout_ns(timeout) -> int:
    """``timeout`` in seconds (None: forever; <= 0: check once) -> weft nanoseconds, rounded up
    so that a wait never ends early."""
    if timeout is None:
        return FOREVER
    if isinstance(timeout, float) and timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    if timeout <= 0:
        return 0
    if timeout == math.inf:
        return FOREVER
    ns = math.ceil(timeout * 1e9) if isinstance(timeout, float) else operator.index(timeout) * 1_000_000_000
    return FOREVER if ns >= FOREVER else max(1, ns)


def _remaining_ns(end) -> int:
    """Nanoseconds left until the monotonic time ``end`` (None: forever; 0 once passed)."""
    if end is None:
        return FOREVER
    return _timeout_ns(end - time.monotonic())


# --- native task functions ------------------------------------------------------------------

_TASK_TYPE = ffi.typeof("weft_task_fn")


@functools.lru_cache(maxsize=256)
def _symbol(library, symbol: str):
    """(function pointer, library object) of ``symbol`` in ``library`` (None: the program)."""
    try:
        dll = ctypes.CDLL(library)
    except OSError as e:
        raise WeftError(_NOT_FOUND, f"cannot load {library!r}: {e}") from None
    try:
        fn = getattr(dll, symbol)
    except AttributeError:
        raise WeftError(_NOT_FOUND, f"no symbol {symbol!r} in {library!r}") from None
    return ffi.cast(_TASK_TYPE, ctypes.cast(fn, ctypes.c_void_p).value), dll


def _is_python_callback(fn) -> bool:
    """True for ctypes and cffi function pointers made from Python callables."""
    if isinstance(fn, ctypes._CFuncPtr):
        objects = getattr(fn, "_objects", None) or {}
        return any(type(v).__name__ == "CThunkObject" for v in objects.values())
    if isinstance(fn, ffi.CData):
        return " calling " in repr(fn)
    return False


def native_task(fn):
    """The ``weft_task_fn`` cdata for a native task given in any accepted form (see the module
    documentation), and the object that keeps its code loaded."""
    if isinstance(fn, (ctypes._CFuncPtr, ffi.CData)):
        if _is_python_callback(fn):
            raise TypeError(
                "weft pools run native tasks only, not a ctypes/cffi callback made from a Python "
                "function: use concurrent.futures for Python code"
            )
        return _task_pointer(fn), fn
    if isinstance(fn, bool):
        raise TypeError("a task address must be an int, not bool")
    if isinstance(fn, int):
        if fn <= 0:
            raise ValueError(f"invalid task address {fn:#x}")
        return ffi.cast(_TASK_TYPE, fn), None
    if isinstance(fn, tuple):
        if len(fn) != 2:
            raise TypeError("a symbol task is a (library_path, symbol_name) pair")
        library, symbol = fn
        if library is not None and not isinstance(library, str):
            library = library.decode() if isinstance(library, bytes) else str(library)
        if isinstance(symbol, bytes):
            symbol = symbol.decode()
        if not isinstance(symbol, str):
            raise TypeError(f"symbol_name must be str, not {type(symbol).__name__}")
        return _symbol(library, symbol)
    if callable(fn):
        raise TypeError(
            f"weft pools run native tasks only, not the Python callable {fn!r}: use "
            "concurrent.futures for Python code, or give a ctypes/cffi pointer to a "
            "weft_status task(weft_call *), its address, or a (library_path, symbol_name) pair"
        )
    raise TypeError(
        "a task must be a ctypes/cffi function pointer, an address or a (library_path, "
        f"symbol_name) pair, not {type(fn).__name__}"
    )


def _item_bytes(item) -> bytes:
    """One input item of a map: bytes-like (str is refused)."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        raise TypeError("a native task's argument must be bytes-like, not str: encode it")
    try:
        with memoryview(item) as m:
            return m.tobytes()
    except TypeError:
        raise TypeError(f"a native task's argument must be bytes-like, not {type(item).__name__}") from None


# --- failures -------------------------------------------------------------------------------


def _failure(status: int, message: str, broken=BrokenThreadPool) -> BaseException:
    """The exception for a task (or map item) that failed with ``status`` and ``message``;
    ``broken`` is the class for a failed initializer (the pool's kind)."""
    if message.startswith(_INITIALIZER_FAILED):
        return broken(status, message)
    if status == _WORKER_DIED:
        return WorkerDiedError(message)
    return TaskError(status, message)


_TASK_FAILED_TEXT = re.compile(r"task failed with (WEFT_[A-Z0-9_]+): (.*)\Z", re.S)


def _task_failed_error(broken=BrokenThreadPool) -> BaseException:
    """The exception for a WEFT_TASK_FAILED just returned by a pool call: the task's own status
    and message are in weft's message ("task failed with WEFT_X: message")."""
    message = last_error_message()
    m = _TASK_FAILED_TEXT.match(message)
    if m and m.group(1) in CONSTANTS:
        return _failure(CONSTANTS[m.group(1)], m.group(2), broken)
    return TaskError(_TASK_FAILED, message, message)


# --- Future ---------------------------------------------------------------------------------

# Done callbacks waiting to run: key -> (handle, entry). The handle (given to C as the context)
# must live until the callback has run.
_callbacks: dict = {}
_callback_keys = itertools.count()


def _run_callback(fn, future) -> None:
    try:
        fn(future)
    except Exception:  # noqa: BLE001 - logged as concurrent.futures logs it
        LOGGER.exception("exception calling callback for %r", future)


class _CallbackThread:
    """Runs the done callbacks of process-pool futures on one Python thread
    ("weft-callbacks"), in the order their futures finished. weft's process pool completes
    futures on its collector thread, which also takes every other answer of the pool: a
    callback run there would hold up the whole pool while it waits for the GIL and runs. From
    this thread a callback may also use the pool (as from multiprocessing's result-handler
    thread)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queue = collections.deque()
        self._ready = threading.Condition(self._lock)
        self._thread = None
        self._busy = False

    def put(self, fn, future) -> None:
        with self._lock:
            self._queue.append((fn, future))
            if self._thread is None or not self._thread.is_alive():  # first use, or a forked child
                self._thread = threading.Thread(target=self._run, name="weft-callbacks", daemon=True)
                self._thread.start()
            self._ready.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._busy = False
                self._ready.notify_all()
                while not self._queue:
                    self._ready.wait()
                fn, future = self._queue.popleft()
                self._busy = True
            _run_callback(fn, future)

    def drain(self, timeout: float | None = None) -> bool:
        """Waits until every queued callback has run (at exit); False on timeout."""
        with self._lock:
            if self._thread is None or self._thread is threading.current_thread():
                return True
            return self._ready.wait_for(lambda: not self._queue and not self._busy, timeout)


_callback_thread = _CallbackThread()


@ffi.callback("void(weft_future *, void *)")
def _done_trampoline(fptr, ctx):  # runs on the thread that finished the future
    try:
        key, future, fn = ffi.from_handle(ctx)
        _callbacks.pop(key, None)
        if future._defer_callbacks:
            _callback_thread.put(fn, future)
        else:
            _run_callback(fn, future)
    except BaseException:  # noqa: B902 - never let an exception cross into C
        pass


class Future:
    """A weft future (``concurrent.futures.Future``'s interface): the eventual result bytes of
    a native task. Thread-safe. Created by executors and pools; ``Future()`` makes a pending one
    that the program completes itself (``set_result`` / ``set_exception``)."""

    # The exception for a failed pool initializer (a process pool's futures say so).
    _broken = BrokenThreadPool
    # True for a process pool's futures: done callbacks run on the "weft-callbacks" thread.
    _defer_callbacks = False

    def __init__(self):
        out = ffi.new("weft_future **")
        st = lib.weft_future_new(out)
        if st != _OK:
            raise error_for(st)
        self._adopt(out[0])

    @classmethod
    def _from_ptr(cls, ptr) -> "Future":
        """Wraps a ``weft_future *`` whose reference the caller gives up."""
        f = cls.__new__(cls)
        f._adopt(ptr)
        return f

    def _of_pool(self, keep, broken) -> "Future":
        """Marks a pool's future: ``keep`` holds the task's code loaded, ``broken`` is the
        pool's exception for a failed initializer (a process pool defers done callbacks)."""
        self._keep = keep
        self._broken = broken
        self._defer_callbacks = broken is BrokenProcessPool
        return self

    def _adopt(self, ptr):
        self._ptr = managed("future", ptr, lib.weft_future_free)
        self._exc = None  # the exception, made once (exception() returns the same object)
        self._py_exc = None  # set_exception's own object
        self._aio = {}  # loop -> [asyncio futures awaiting this one]
        self._keep = None  # what keeps the task's code loaded while it may run

    # -- state

    def _state(self) -> int:
        return lib.weft_future_state(self._ptr)

    def cancelled(self) -> bool:
        """True when the future was cancelled."""
        return self._state() == _CANCELLED_STATE

    def running(self) -> bool:
        """True while the task runs."""
        return self._state() == _RUNNING

    def done(self) -> bool:
        """True once the future finished: result, failure or cancelled."""
        return self._state() >= _DONE

    def cancel(self) -> bool:
        """Cancels a pending future (True; its callbacks run now, it never runs). A running one
        cannot be cancelled (False) but its task is asked to stop: ``weft_call_cancelled`` turns
        true and weft waits inside it end with ``WEFT_CANCELLED`` (a task that then returns
        ``WEFT_CANCELLED`` leaves the future cancelled). False for a finished future."""
        out = ffi.new("bool *")
        st = lib.weft_future_cancel(self._ptr, out)
        if st != _OK:
            raise error_for(st)
        return bool(out[0])

    # -- outcome

    def _failure_exception(self) -> BaseException:
        """The exception of a future known to have failed."""
        if self._exc is None:
            if self._py_exc is not None:
                self._exc = self._py_exc
            else:
                st = ffi.new("weft_status *")
                msg = ffi.new("const char **")
                rc = lib.weft_future_exception(self._ptr, 0, st, msg)
                if rc != _OK:
                    raise error_for(rc)
                text = ffi.string(msg[0]).decode("utf-8", "replace") if msg[0] != ffi.NULL else ""
                self._exc = _failure(st[0], text, self._broken)
        return self._exc

    def _wait_error(self, st: int) -> BaseException:
        """The exception for a failed wait (``result``/``exception``) that returned ``st``."""
        state = self._state()
        if state == _FAILED:
            return self._failure_exception()
        if state == _CANCELLED_STATE or st == _CANCELLED:
            return CancelledError()
        if st in (_TIMEOUT, _WOULD_BLOCK):
            return TimeoutError()
        return error_for(st)

    def result(self, timeout=None) -> bytes:
        """Waits up to ``timeout`` seconds (None: forever) and returns the result bytes; raises
        the task's failure (:class:`weft.TaskError`), ``CancelledError``, or ``TimeoutError``."""
        data = ffi.new("const void **")
        n = ffi.new("size_t *")
        st = lib.weft_future_result(self._ptr, _timeout_ns(timeout), data, n)
        if st == _OK:
            return ffi.buffer(data[0], n[0])[:] if n[0] else b""
        exc = self._wait_error(st)
        if exc is self._exc:
            raise exc  # the task's failure (the same object each time, as Python raises it)
        raise exc from None

    def exception(self, timeout=None):
        """Waits up to ``timeout`` seconds and returns the failure (None for a result); raises
        ``CancelledError`` or ``TimeoutError``."""
        st = ffi.new("weft_status *")
        msg = ffi.new("const char **")
        rc = lib.weft_future_exception(self._ptr, _timeout_ns(timeout), st, msg)
        if rc != _OK:
            raise self._wait_error(rc) from None
        if st[0] == _OK:
            return None
        return self._failure_exception()

    def add_done_callback(self, fn) -> None:
        """Calls ``fn(future)`` exactly once when the future finishes: at once on this thread
        when it is finished already, else on the thread that finishes it (a thread pool's
        worker, or the thread that cancels it) — for a process pool's future, on weft's
        "weft-callbacks" thread, from which the callback may use the pool. An exception in
        ``fn`` is logged and ignored."""
        key = next(_callback_keys)
        entry = (key, self, fn)
        handle = ffi.new_handle(entry)
        _callbacks[key] = handle
        st = lib.weft_future_add_done_callback(self._ptr, _done_trampoline, handle)
        if st != _OK:
            _callbacks.pop(key, None)
            raise error_for(st)

    # -- for executors, pools and tests (concurrent.futures' API)

    def set_running_or_notify_cancel(self) -> bool:
        """Marks a pending future running (True), or returns False when it was cancelled;
        RuntimeError when it is running or finished already."""
        st = lib.weft_future_set_running(self._ptr)
        if st == _OK:
            return True
        if st == _CANCELLED:
            return False
        raise RuntimeError(f"Future in unexpected state: {last_error_message()}")

    def set_result(self, result) -> None:
        """Finishes the future with ``result`` (bytes-like). ``concurrent.futures.InvalidStateError``
        when it is finished already."""
        data = _item_bytes(result)
        st = lib.weft_future_set_result(self._ptr, data, len(data))
        if st != _OK:
            raise self._set_error(st)

    def set_exception(self, exception) -> None:
        """Finishes the future as failed with ``exception`` (returned as is by ``exception()`` and
        raised by ``result()`` through this object; a weft error keeps its status)."""
        if isinstance(exception, type):
            exception = exception()
        if isinstance(exception, TaskError):
            status = exception.task_status
        elif isinstance(exception, WeftError):
            status = exception.status
        else:
            status = _TASK_FAILED
        status = _TASK_FAILED if status == _OK else status
        message = str(exception).encode("utf-8", "replace").replace(b"\0", b"\\0")
        self._py_exc = exception
        st = lib.weft_future_set_failure(self._ptr, status, message)
        if st != _OK:
            self._py_exc = None
            raise self._set_error(st)

    def _set_failure(self, status: int, message: str) -> None:
        st = lib.weft_future_set_failure(self._ptr, status, message.encode("utf-8", "replace").replace(b"\0", b"\\0"))
        if st != _OK:
            raise self._set_error(st)

    def _set_error(self, st: int) -> BaseException:
        if st == _INVALID_STATE:
            return _cf.InvalidStateError(f"{self!r}: {last_error_message()}")
        return error_for(st)

    # -- asyncio

    def fileno(self) -> int:
        """A descriptor that becomes readable once the future is finished (owned by the future:
        do not read or close it)."""
        fd = ffi.new("int *")
        st = lib.weft_future_fd(self._ptr, fd)
        if st != _OK:
            raise error_for(st)
        return fd[0]

    def _aio_ready(self, loop):
        waiters = self._aio.pop(loop, None)
        loop.remove_reader(self.fileno())
        for w in waiters or ():
            if not w.done():
                w.set_result(None)

    async def _await(self):
        if not self.done():
            loop = asyncio.get_running_loop()
            w = loop.create_future()
            waiters = self._aio.get(loop)
            if waiters is None:
                try:
                    loop.add_reader(self.fileno(), self._aio_ready, loop)
                except NotImplementedError:  # a loop without add_reader: a thread waits
                    w = asyncio.ensure_future(loop.run_in_executor(None, wait, [self]))
                    waiters = None
                else:
                    waiters = self._aio[loop] = []
            if waiters is not None:
                waiters.append(w)
            try:
                await w
            except asyncio.CancelledError:
                # As asyncio.wrap_future: cancelling the awaiting task cancels the future (or
                # asks its running task to stop).
                if waiters is not None:
                    try:
                        waiters.remove(w)
                    except ValueError:
                        pass
                    if not waiters and self._aio.get(loop) is waiters:
                        del self._aio[loop]
                        loop.remove_reader(self.fileno())
                self.cancel()
                raise
        return self.result(0)

    def __await__(self):
        return self._await().__await__()

    def __repr__(self) -> str:
        state = self._state()
        addr = f"{id(self):#x}"
        if state == _DONE:
            return f"<{type(self).__name__} at {addr} state=finished returned bytes>"
        if state == _FAILED:
            return f"<{type(self).__name__} at {addr} state=finished raised {type(self._failure_exception()).__name__}>"
        name = {_PENDING: "pending", _RUNNING: "running", _CANCELLED_STATE: "cancelled"}.get(state, "invalid")
        return f"<{type(self).__name__} at {addr} state={name}>"

    def __reduce_ex__(self, protocol):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")


def _as_weft_futures(fs) -> list:
    out = []
    for f in fs:
        if not isinstance(f, Future):
            raise TypeError(f"weft.futures.wait/as_completed take weft futures, not {type(f).__name__}")
        out.append(f)
    return out


def wait(fs, timeout=None, return_when=ALL_COMPLETED):
    """``concurrent.futures.wait`` for weft futures: waits up to ``timeout`` seconds (None:
    forever) until ``return_when`` holds (``ALL_COMPLETED``, ``FIRST_COMPLETED`` or
    ``FIRST_EXCEPTION``) and returns ``DoneAndNotDoneFutures(done, not_done)`` (two sets; on a
    timeout, as they are). One C wait, woken by the completions (no polling), GIL released."""
    if return_when not in _MODES:
        raise ValueError(f"Invalid return condition: {return_when!r}")
    lst = _as_weft_futures(set(fs))
    if not lst:
        return DoneAndNotDoneFutures(set(), set())
    arr = ffi.new("weft_future *[]", [f._ptr for f in lst])
    flags = ffi.new("bool[]", len(lst))
    st = lib.weft_futures_wait(arr, len(lst), _timeout_ns(timeout), _MODES[return_when], flags, ffi.NULL)
    if st == _OK:
        done = {f for i, f in enumerate(lst) if flags[i]}
    elif st == _TIMEOUT:
        done = {f for f in lst if f.done()}
    else:
        raise error_for(st)
    return DoneAndNotDoneFutures(done, set(lst) - done)


def as_completed(fs, timeout=None):
    """``concurrent.futures.as_completed`` for weft futures: yields each future once as it
    finishes (those finished already first); raises ``TimeoutError`` when ``__next__`` is
    called and no future finished within ``timeout`` seconds of the first ``__next__``."""
    end = None if timeout is None else timeout + time.monotonic()
    lst = _as_weft_futures(set(fs))
    total = len(lst)
    if not lst:
        return
    by_address = {int(ffi.cast("uintptr_t", f._ptr)): f for f in lst}
    arr = ffi.new("weft_future *[]", [f._ptr for f in lst])
    out = ffi.new("weft_as_completed **")
    st = lib.weft_as_completed_new(arr, total, out)
    if st != _OK:
        raise error_for(st)
    ac = managed("as_completed", out[0], lib.weft_as_completed_free)
    got = ffi.new("weft_future **")
    yielded = 0
    while True:
        st = lib.weft_as_completed_next(ac, _remaining_ns(end), got)
        if st == _OK:
            f = by_address[int(ffi.cast("uintptr_t", got[0]))]
            lib.weft_future_free(got[0])  # the iterator's new reference; ours stays in `f`
            yielded += 1
            yield f
        elif st == _CLOSED:
            return
        elif st == _TIMEOUT:
            raise TimeoutError(f"{total - yielded} (of {total}) futures unfinished")
        else:
            raise error_for(st)


# --- lazy maps (shared with weft.Pool) ------------------------------------------------------


class _Source:
    """The Python iterable an imap reads, through ``_source_next`` on the consumer's thread."""

    __slots__ = ("it", "error", "current", "count")

    def __init__(self, iterable):
        self.it = iter(iterable)
        self.error = None  # what the iterable raised (given to the consumer at its place)
        self.current = None  # the item C reads until the next call
        self.count = 0


@ffi.callback("weft_status(void *, const void **, size_t *)")
def _source_next(ctx, item, length):
    src = ffi.from_handle(ctx)
    try:
        try:
            x = next(src.it)
        except StopIteration:
            return _CLOSED
        data = _item_bytes(x)
        buf = ffi.from_buffer(data)
        src.current = (data, buf)
        item[0] = buf
        length[0] = len(data)
        src.count += 1
        return _OK
    except BaseException as e:  # noqa: B902 - raised on the consumer's side, at its place
        src.error = e
        return _INVALID_ARGUMENT


_END = object()
_NOT_YET = object()


class _IMap:
    """A ``weft_imap`` over a Python iterable. ``next`` returns result bytes, ``_END`` or
    ``_NOT_YET`` (the timeout passed), or raises the item's failure."""

    def __init__(self, pool, task, keep, iterable, chunksize: int, max_chunks: int, unordered: bool,
                 broken=BrokenThreadPool):
        self._pool = pool  # the pool handle (its cdata) must outlive the imap's submits
        self._keep = keep
        self._broken = broken
        self._src = _Source(iterable)
        self._handle = ffi.new_handle(self._src)
        out = ffi.new("weft_imap **")
        flags = CONSTANTS["WEFT_IMAP_UNORDERED"] if unordered else 0
        st = lib.weft_pool_imap(pool, task, _source_next, self._handle, chunksize, max_chunks, flags, out)
        if st != _OK:
            raise error_for(st)
        self._ptr = managed("imap", out[0], lib.weft_imap_free)
        self._lock = threading.Lock()
        self._ended = False

    def next(self, timeout_ns: int, closed_error=None):
        with self._lock:
            if self._ended:
                return _END
            out = ffi.new("weft_bytes **")
            st = lib.weft_imap_next(self._ptr, timeout_ns, out)
            if st == _OK:
                b = out[0]
                try:
                    n = lib.weft_bytes_len(b)
                    return ffi.buffer(lib.weft_bytes_data(b), n)[:] if n else b""
                finally:
                    lib.weft_bytes_free(b)
            if st in (_TIMEOUT, _WOULD_BLOCK):
                return _NOT_YET
            if st == _TASK_FAILED:
                raise _task_failed_error(self._broken)
            if st == _WORKER_DIED:
                raise WorkerDiedError(last_error_message())
            err = self._src.error
            if err is not None and "input callback" in last_error_message():
                self._src.error = None
                raise err
            if st == _CLOSED:
                message = last_error_message()
                self._ended = True
                if "no more results" not in message and closed_error is not None:
                    raise closed_error()
                return _END
            if st == _CANCELLED:
                raise CancelledError()
            if message_is_initializer(last_error_message()):
                raise self._broken(st, last_error_message())
            raise error_for(st)

    def close(self):
        """Frees the imap now: chunks not started are cancelled."""
        with self._lock:
            self._ended = True
            ptr, self._ptr = self._ptr, None
        if ptr is not None:
            ffi.release(ptr)


def _prime(it: _IMap, closed_error=None):
    """Starts an imap whose window holds every chunk: reads every item and submits every chunk
    now (as ``Executor.map`` and ``Pool.map_async`` submit at once). Returns the first result
    (or ``_NOT_YET``, ``_END``), or the first item's failure as an exception object; raises what
    makes the call itself fail (a closed or broken pool)."""
    try:
        return it.next(0, closed_error)
    except TaskError as e:
        return e


def message_is_initializer(message: str) -> bool:
    return message.startswith(_INITIALIZER_FAILED)


def _chunks(count: int, chunksize: int) -> int:
    return max(1, -(-count // chunksize))


# --- executors: thread and process workers ---------------------------------------------------

_live = weakref.WeakSet()


def _start_method_of(context) -> str:
    """The start method named by ``mp_context`` / ``context``: None (weft's default,
    :func:`weft.get_start_method`), a name ("fork", "forkserver", "spawn"), or a context object
    with ``get_start_method()`` (``multiprocessing.get_context(...)``, the ``weft`` module)."""
    if context is None:
        return get_start_method()
    if isinstance(context, str):
        method = context
    else:
        getter = getattr(context, "get_start_method", None)
        if getter is None:
            raise TypeError(
                "the context must be None, a start method name or an object with get_start_method(), "
                f"not {type(context).__name__}"
            )
        try:
            method = getter(allow_none=False)
        except TypeError:  # weft's get_start_method() takes no argument
            method = getter()
    if method not in START_METHODS:
        raise ValueError(f"cannot find context for {method!r}")
    return method


def _check_retries(retries) -> int:
    retries = operator.index(retries)
    if not 0 <= retries < 2**32:
        raise ValueError(f"retries must be between 0 and {2**32 - 1}, not {retries}")
    return retries


def _new_pool(workers: int, initializer, initargs, max_tasks: int = 0, kind: int = _THREADS,
              start_method: str | None = None, retries: int = 0, stacklevel: int = 4):
    """A weft pool (its cdata) of ``kind`` (thread or process workers) and the keepalive of the
    initializer's code. Process workers use ``start_method`` (a name) and ``retries``; weft's
    warnings (forking a threaded program) are issued ``stacklevel`` frames up."""
    opts = ffi.new("weft_pool_options *")
    opts.kind = kind
    opts.workers = workers
    opts.max_tasks_per_worker = max_tasks
    if kind == _PROCESSES:
        opts.start_method = START_METHODS[start_method or get_start_method()]
        opts.retries = retries
    keep = None
    arg_buf = None
    if initializer is not None:
        init, keep = native_task(initializer)
        opts.initializer = init
        arg = _arg_bytes(initargs)
        if arg:
            arg_buf = ffi.from_buffer(arg)
            opts.initializer_arg = arg_buf
            opts.initializer_arg_len = len(arg)
    out = ffi.new("weft_pool **")
    if kind == _PROCESSES:
        _collect_warnings()  # forking workers from a threaded program warns
    st = lib.weft_pool_new(opts, out)
    if st != _OK:
        if kind == _PROCESSES:
            _drop_warnings()
        raise error_for(st)
    pool = managed("pool", out[0], lib.weft_pool_free)
    if kind == _PROCESSES:
        _emit_warnings(stacklevel)
    return pool, keep


def _check_max_workers(max_workers):
    if max_workers is not None:
        max_workers = operator.index(max_workers)
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
    return max_workers


class _PoolExecutor(_cf.Executor):
    """What both executors share: a weft pool of thread or process workers (``kind``) and
    ``submit``, ``map``, ``shutdown``."""

    # The exception for a failed initializer (the pool is broken).
    _broken_cls = BrokenThreadPool

    def __init__(self, max_workers, initializer, initargs, **pool_options):
        self._pool, self._init_keep = _new_pool(max_workers or 0, initializer, initargs, **pool_options)
        self._shutdown = False
        self._shutdown_lock = threading.Lock()
        self._keep = {}  # id -> task objects (their code must stay loaded while tasks run)
        _live.add(self)

    @property
    def _max_workers(self) -> int:
        n = ffi.new("size_t *")
        lib.weft_pool_workers(self._pool, n)
        return int(n[0])

    def _submit_error(self, st: int) -> BaseException:
        message = last_error_message()
        if st == _CLOSED:
            return RuntimeError("cannot schedule new futures after shutdown")
        if message_is_initializer(message):
            return self._broken_cls(st, message)
        return error_for(st)

    def _task(self, fn):
        task, keep = native_task(fn)
        if keep is not None:
            self._keep.setdefault(id(keep), keep)
        return task, keep

    def submit(self, fn, /, *args, **kwargs) -> Future:
        """Runs ``fn`` on a worker with the argument bytes ``args[0]`` (none: empty)."""
        if kwargs:
            raise TypeError("a native task takes no keyword arguments")
        task, keep = self._task(fn)
        arg = _arg_bytes(args)
        out = ffi.new("weft_future **")
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            st = lib.weft_pool_submit(self._pool, task, arg, len(arg), out)
        if st != _OK:
            raise self._submit_error(st)
        return Future._from_ptr(out[0])._of_pool(keep, self._broken_cls)

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Runs ``fn`` on every item (bytes) of the one iterable — all submitted now, as
        ``Executor.map`` does — and returns an iterator of the results in order. ``timeout``
        (seconds from this call) raises ``TimeoutError``; a failed item raises its
        :class:`weft.TaskError` at its place, which ends the iteration; closing the iterator
        early cancels the items not started."""
        if len(iterables) != 1:
            raise TypeError(f"a native task takes one argument: map takes one iterable, not {len(iterables)}")
        chunksize = operator.index(chunksize)
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end = None if timeout is None else timeout + time.monotonic()
        task, keep = self._task(fn)
        items = [_item_bytes(x) for x in iterables[0]]
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            it = _IMap(self._pool, task, keep, items, chunksize, _chunks(len(items), chunksize), False,
                       self._broken_cls)
            first = _prime(it, self._closed)
        return self._results(it, first, len(items), end)

    def _closed(self):
        return RuntimeError("cannot schedule new futures after shutdown")

    @staticmethod
    def _results(it, first, count, end):
        try:
            r = first
            for _ in range(count):
                if isinstance(r, BaseException):
                    raise r
                if r is _NOT_YET:
                    r = it.next(_remaining_ns(end))
                    if r is _NOT_YET:
                        raise TimeoutError()
                if r is _END:  # pragma: no cover - the count is exact
                    return
                yield r
                r = _NOT_YET
        finally:
            it.close()

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Takes no more tasks; with ``cancel_futures``, cancels the tasks not started; with
        ``wait``, waits until every worker has left (GIL released)."""
        with self._shutdown_lock:
            self._shutdown = True
        st = lib.weft_pool_shutdown(self._pool, bool(wait), bool(cancel_futures), FOREVER)
        if st != _OK:
            raise error_for(st)

    def __reduce_ex__(self, protocol):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")


class ThreadPoolExecutor(_PoolExecutor):
    """``concurrent.futures.ThreadPoolExecutor`` for native tasks (see the module documentation).

    ``max_workers`` (None: the usable CPU count, ``weft.cpu_count()``), ``initializer`` (a
    native task run once by each worker, with ``initargs`` bytes; its failure breaks the pool:
    ``BrokenThreadPool``). ``submit(fn, arg=b"")`` returns a :class:`Future`;
    ``map(fn, iterable, timeout=None, chunksize=1)`` submits every item at once and yields the
    results in order (``chunksize`` items per worker round trip); ``shutdown(wait=True,
    cancel_futures=False)``. Workers are weft threads that never take the GIL."""

    def __init__(self, max_workers=None, initializer=None, initargs=b""):
        super().__init__(_check_max_workers(max_workers), initializer, initargs, kind=_THREADS)


class ProcessPoolExecutor(_PoolExecutor):
    """``concurrent.futures.ProcessPoolExecutor`` for native tasks, over weft worker processes
    (see the module documentation).

    ``max_workers`` (None: the usable CPU count, ``weft.cpu_count()``); ``mp_context``: None
    (weft's default start method, ``weft.get_start_method()``), a start method name
    (``"fork"``, ``"forkserver"``, ``"spawn"``) or a context object with
    ``get_start_method()`` (``multiprocessing.get_context("spawn")``); ``initializer`` (a native
    task run once by each worker process, with ``initargs`` bytes; state it builds stays in
    that worker; its failure breaks the pool: :class:`BrokenProcessPool`);
    ``max_tasks_per_child`` (a worker process is replaced by a fresh one after that many
    tasks; allowed with every start method); ``retries`` (how many more times a task whose
    worker died runs on another worker before its future fails with
    :class:`WorkerDiedError`). ``submit``, ``map(fn, iterable, timeout=None, chunksize=1)``
    and ``shutdown(wait=True, cancel_futures=False)`` as for :class:`ThreadPoolExecutor`. A
    task counts as running (``cancel`` returns False and asks it to stop) once it was sent to
    a worker's queue, as in Python's executor; the pool sends a worker a few tasks ahead.

    Unlike Python's executor, a worker that dies fails only the task it was running (with
    :class:`WorkerDiedError`); the other futures complete and the pool goes on with a new
    worker."""

    _broken_cls = BrokenProcessPool

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=b"", *,
                 max_tasks_per_child=None, retries=0):
        max_workers = _check_max_workers(max_workers)
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        retries = _check_retries(retries)
        self._mp_context = mp_context
        self._start_method = _start_method_of(mp_context)
        super().__init__(max_workers, initializer, initargs, kind=_PROCESSES, start_method=self._start_method,
                         max_tasks=max_tasks_per_child or 0, retries=retries, stacklevel=5)

    @property
    def start_method(self) -> str:
        """The workers' start method: ``"fork"``, ``"forkserver"`` or ``"spawn"``."""
        return self._start_method


def _shutdown_at_exit():
    # As concurrent.futures does at exit: wait for the work in progress, so that no done
    # callback runs while the interpreter is finalizing.
    for ex in list(_live):
        try:
            ex.shutdown(wait=True)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
    _callback_thread.drain(60)


if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_shutdown_at_exit)
else:  # pragma: no cover - Python 3.8
    atexit.register(_shutdown_at_exit)
