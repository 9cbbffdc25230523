"""Drop-in replacements for the ``queue`` module's classes, built on libweft's queues.

    import threading
    import weft.queue

    q = weft.queue.Queue(maxsize=100)

    def worker():
        while True:
            item = q.get()
            ...
            q.task_done()

    threading.Thread(target=worker, daemon=True).start()
    for job in jobs:
        q.put(job)
    q.join()

``Queue(maxsize=0)``, ``LifoQueue(maxsize=0)``, ``PriorityQueue(maxsize=0)`` and
``SimpleQueue()`` take the arguments of the ``queue`` classes of the same names and behave like
them: ``put(item, block=True, timeout=None)``, ``get(block=True, timeout=None)``,
``put_nowait``, ``get_nowait``, ``qsize``, ``empty``, ``full``, ``task_done``/``join`` (not
``SimpleQueue``), Python 3.13's ``shutdown(immediate=False)`` and ``is_shutdown``, the
``maxsize`` attribute (read-only here), and the same exceptions: :class:`Empty` is
``queue.Empty``, :class:`Full` is ``queue.Full``, :class:`ShutDown` is ``queue.ShutDown`` on
Python 3.13+ (a class of this module before). A negative timeout is
``ValueError("'timeout' must be a non-negative number")``; too many ``task_done()`` calls are
``ValueError('task_done() called too many times')``. Blocking calls release the GIL while they
wait (they are not interrupted by signals: use timeouts where Ctrl-C must get through).

Differences from ``queue``, on purpose:

* **Items are copied.** Each item is pickled (``pickle.dumps`` with the highest protocol) on
  ``put`` and unpickled on ``get``: the getter receives an equal copy, not the same object, and
  items must be picklable. ``codec="bytes"`` stores bytes-like items as they are (``bytes``
  out), ``codec="str"`` UTF-8 text, or pass an object with ``dumps(obj)``/``loads(data)``.
* **PriorityQueue orders by an int64.** The C queue delivers the lowest priority first and
  first-in first-out among equal priorities; it never compares items. An item's priority is
  the item itself when it is an ``int``, or its first element when it is a tuple or list
  starting with an ``int``; the int must fit in int64. Anything else is ``TypeError``. So
  ``(1, "b")`` put before ``(1, "a")`` comes out first here (Python compares ``"a" < "b"``).
* ``maxsize`` is fixed at creation (assigning it is ``AttributeError``).

What weft adds:

* ``await q.async_get()``: waits in an asyncio event loop (on the queue's pollable descriptor,
  ``weft_queue_fd``, with ``loop.add_reader``) instead of blocking a thread, then takes the
  item; several coroutines, threads and (for shared queues) processes may consume at once.
* ``unfinished_tasks`` (as ``queue.Queue``'s attribute) is read from the C queue.

The process-shared queues (``multiprocessing.Queue``, ``JoinableQueue``, ``SimpleQueue``) are
:mod:`weft.multiprocessing`'s, built on :class:`_SharedQueue` below.
"""

from __future__ import annotations

import math
import operator
import os
import pickle as _pickle
import queue as _stdqueue
import types
from multiprocessing import reduction as _mp_reduction

from . import _spacefd
from ._errors import error_for
from ._native import CONSTANTS, FOREVER, ffi, lib, managed
from .spaces import Space, check, encode_name, opt_name, space_ptr

__all__ = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue", "Empty", "Full", "ShutDown"]

Empty = _stdqueue.Empty
Full = _stdqueue.Full

if hasattr(_stdqueue, "ShutDown"):  # Python 3.13+
    ShutDown = _stdqueue.ShutDown
else:

    class ShutDown(Exception):
        """Raised when ``put`` is called on a queue that was shut down, or ``get`` on one that
        was shut down and is empty (``queue.ShutDown`` of Python 3.13)."""


_OK = CONSTANTS["WEFT_OK"]
_TIMEOUT = CONSTANTS["WEFT_TIMEOUT"]
_WOULD_BLOCK = CONSTANTS["WEFT_WOULD_BLOCK"]
_CLOSED = CONSTANTS["WEFT_CLOSED"]
_INVALID_STATE = CONSTANTS["WEFT_INVALID_STATE"]
_FIFO = CONSTANTS["WEFT_QUEUE_FIFO"]
_LIFO = CONSTANTS["WEFT_QUEUE_LIFO"]
_PRIORITY = CONSTANTS["WEFT_QUEUE_PRIORITY"]
_SIMPLE = CONSTANTS["WEFT_QUEUE_SIMPLE"]
_JOINABLE = CONSTANTS["WEFT_QUEUE_JOINABLE"]
_TOKEN_MAX = CONSTANTS.get("WEFT_TOKEN_MAX", 240)
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1

# The C functions, looked up once.
_put = lib.weft_queue_put
_put_priority = lib.weft_queue_put_priority
_get = lib.weft_queue_get
_bytes_len = lib.weft_bytes_len
_bytes_data = lib.weft_bytes_data
_bytes_free = lib.weft_bytes_free

_TOO_MANY_TASK_DONE = (ValueError, "task_done() called too many times")


# --- codecs ---------------------------------------------------------------------------------


def _pickle_dumps(obj):
    return _pickle.dumps(obj, _pickle.HIGHEST_PROTOCOL)


def _forking_dumps(obj):
    # multiprocessing's pickler: also knows the reducers multiprocessing registers (sockets,
    # connections, ...), as multiprocessing.Queue uses.
    return bytes(_mp_reduction.ForkingPickler.dumps(obj, _pickle.HIGHEST_PROTOCOL))


def _bytes_dumps(obj):
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, str):
        raise TypeError("codec 'bytes' queues bytes-like objects, not str")
    return bytes(memoryview(obj))


def _identity(data):
    return data


def _str_dumps(obj):
    if not isinstance(obj, str):
        raise TypeError(f"codec 'str' queues str, not {type(obj).__name__}")
    return obj.encode("utf-8")


def _str_loads(data):
    return data.decode("utf-8")


def _codec(spec, shared):
    """``(dumps, loads)`` for a codec spec: "pickle", "bytes", "str" or an object with
    ``dumps``/``loads``."""
    if isinstance(spec, str):
        if spec == "pickle":
            return (_forking_dumps if shared else _pickle_dumps), _pickle.loads
        if spec == "bytes":
            return _bytes_dumps, _identity
        if spec == "str":
            return _str_dumps, _str_loads
        raise ValueError(f"unknown codec {spec!r}: use 'pickle', 'bytes', 'str' or an object with dumps/loads")
    if not (hasattr(spec, "dumps") and hasattr(spec, "loads")):
        raise TypeError("a codec is 'pickle', 'bytes', 'str' or an object with dumps() and loads()")
    dumps = spec.dumps

    def encode(obj):
        data = dumps(obj)
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)

    return encode, spec.loads


# --- timeouts -------------------------------------------------------------------------------


def _ns(seconds) -> int:
    """Seconds > 0 -> nanoseconds, rounded up (a wait never ends early); huge values wait
    forever."""
    if isinstance(seconds, int):
        ns = seconds * 1_000_000_000
    else:
        ns = math.ceil(float(seconds) * 1e9)
    return FOREVER if ns >= FOREVER else max(1, ns)


def _checked_seconds(timeout):
    """``queue``'s rule for a blocking call's timeout: non-negative, not NaN."""
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    return timeout


def _queue_timeout(block, timeout) -> int:
    """``queue.Queue.get``'s ``(block, timeout)`` -> a weft timeout."""
    if not block:
        return 0
    if timeout is None:
        return FOREVER
    t = _checked_seconds(timeout)
    return _ns(t) if t > 0 else 0


def _mp_timeout(block, timeout) -> int:
    """``multiprocessing.Queue``'s ``(block, timeout)``: not blocking or a timeout <= 0 tries
    once (no error for a negative timeout), None waits forever."""
    if not block:
        return 0
    if timeout is None:
        return FOREVER
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    return _ns(timeout) if timeout > 0 else 0


def _take(pp) -> bytes:
    """The bytes of the ``weft_bytes *`` in ``pp[0]``, which is freed."""
    b = pp[0]
    try:
        n = _bytes_len(b)
        return ffi.unpack(ffi.cast("char *", _bytes_data(b)), n) if n else b""
    finally:
        _bytes_free(b)


def _wake_all(waiters):
    # The reader callback of async_get: the descriptor is readable, every waiter tries a get.
    for f in waiters:
        if not f.done():
            f.set_result(None)


# --- the common base ------------------------------------------------------------------------


class _Base:
    """One handle (``weft_queue *``) and the operations every queue class shares."""

    __slots__ = ("_ptr", "_codec_spec", "_dumps", "_loads", "_maxsize", "_fd", "_waiters", "__weakref__")

    _KIND = "queue"  # for handle accounting

    __class_getitem__ = classmethod(types.GenericAlias)

    def _setup(self, ptr, codec, maxsize, shared):
        self._ptr = managed(self._KIND, ptr, lib.weft_queue_free)
        self._codec_spec = codec
        self._dumps, self._loads = _codec(codec, shared)
        self._maxsize = maxsize
        self._fd = None
        self._waiters = None

    @staticmethod
    def _options(kind, joinable, maxsize, max_bytes=None):
        opts = ffi.new("weft_queue_options *")
        opts.kind = kind
        opts.flags = _JOINABLE if joinable else 0
        opts.maxsize = maxsize
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 0:
                raise ValueError("max_bytes must be >= 0")
            opts.max_bytes = max_bytes
        return opts

    # -- the C calls, with their statuses as the queue module's exceptions --

    def _put_data(self, data, ns):
        st = _put(self._ptr, data, len(data), ns)
        if st != _OK:
            self._put_failed(st)

    def _put_failed(self, st):
        if st == _WOULD_BLOCK or st == _TIMEOUT:
            raise Full
        if st == _CLOSED:
            raise ShutDown
        raise error_for(st)

    def _get_item(self, ns):
        out = ffi.new("weft_bytes **")
        st = _get(self._ptr, ns, out)
        if st != _OK:
            if st == _WOULD_BLOCK or st == _TIMEOUT:
                raise Empty
            if st == _CLOSED:
                raise ShutDown
            raise error_for(st)
        return self._loads(_take(out))

    def qsize(self):
        """The approximate number of items in the queue (other threads or processes may change
        it at once)."""
        n = ffi.new("size_t *")
        st = lib.weft_queue_size(self._ptr, n)
        if st != _OK:
            raise error_for(st)
        return int(n[0])

    def empty(self):
        """True when the queue holds no item (a snapshot)."""
        return bool(lib.weft_queue_empty(self._ptr))

    def _task_done(self):
        st = lib.weft_queue_task_done(self._ptr)
        if st != _OK:
            raise error_for(st, {_INVALID_STATE: _TOO_MANY_TASK_DONE})

    def _join(self, ns=FOREVER):
        st = lib.weft_queue_join(self._ptr, ns)
        if st == _OK:
            return True
        if st == _WOULD_BLOCK or st == _TIMEOUT:
            return False
        raise error_for(st)

    def _unfinished(self):
        n = ffi.new("size_t *")
        st = lib.weft_queue_unfinished(self._ptr, n)
        if st != _OK:
            raise error_for(st)
        return int(n[0])

    def _shutdown(self, immediate):
        st = lib.weft_queue_shutdown(self._ptr, bool(immediate))
        if st != _OK:
            raise error_for(st)

    # -- asyncio --

    def _poll_fd(self):
        fd = self._fd
        if fd is None:
            out = ffi.new("int *")
            st = lib.weft_queue_fd(self._ptr, out)
            if st != _OK:
                raise error_for(st)
            fd = self._fd = int(out[0])
        return fd

    async def async_get(self):
        """Removes and returns an item, waiting in the running asyncio event loop (not
        blocking it) while the queue is empty. The queue's pollable descriptor
        (``weft_queue_fd``: readable while an item is there or the queue is shut down) is
        watched with ``loop.add_reader``; when it is readable a non-blocking get is tried, and
        waiting resumes when another consumer (a coroutine, a thread, a process) won the item.
        ``ShutDown`` when the queue is shut down and empty. Cancelling the coroutine takes
        nothing from the queue."""
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            try:
                return self.get_nowait()
            except Empty:
                pass
            await self._readable(loop)

    async def _readable(self, loop):
        # One reader per descriptor and loop (add_reader replaces an earlier one), shared by
        # every coroutine of that loop waiting on this queue.
        fd = self._poll_fd()
        table = self._waiters
        if table is None:
            table = self._waiters = {}
        waiters = table.get(loop)
        if waiters is None:
            waiters = table[loop] = []
            loop.add_reader(fd, _wake_all, waiters)
        fut = loop.create_future()
        waiters.append(fut)
        try:
            await fut
        finally:
            waiters.remove(fut)
            if not waiters and table.get(loop) is waiters:
                del table[loop]
                loop.remove_reader(fd)


# --- queue module classes (private to this process) ----------------------------------------


class _NoPickle:
    __slots__ = ()

    def __reduce_ex__(self, protocol):
        raise TypeError(f"cannot pickle '{type(self).__module__}.{type(self).__qualname__}' object")


class Queue(_NoPickle, _Base):
    """``queue.Queue(maxsize=0)``: first in, first out; ``maxsize`` <= 0 is unbounded.
    ``codec=`` (keyword): how items become bytes ("pickle", "bytes", "str", or an object with
    ``dumps``/``loads``)."""

    __slots__ = ()
    _C_KIND = _FIFO

    def __init__(self, maxsize=0, *, codec="pickle"):
        maxsize = operator.index(maxsize)
        out = ffi.new("weft_queue **")
        st = lib.weft_queue_new(self._options(self._C_KIND, True, max(maxsize, 0)), out)
        if st != _OK:
            raise error_for(st)
        self._setup(out[0], codec, maxsize, False)

    @property
    def maxsize(self):
        """The most items the queue holds (<= 0: unbounded); fixed at creation."""
        return self._maxsize

    def put(self, item, block=True, timeout=None):
        """Puts ``item`` in the queue, waiting while a bounded queue is full (``block`` false:
        not at all; ``timeout``: at most that many seconds). Full when no room came;
        ShutDown when the queue is shut down."""
        if self._maxsize > 0:
            ns = _queue_timeout(block, timeout)
        else:
            ns = 0  # never full: nothing to wait for (and the timeout is not checked, as Python)
        self._put_data(self._dumps(item), ns)

    def put_nowait(self, item):
        """``put(item, block=False)``."""
        self.put(item, False)

    def get(self, block=True, timeout=None):
        """Removes and returns an item, waiting while the queue is empty (``block`` false: not
        at all; ``timeout``: at most that many seconds). Empty when none came; ShutDown when
        the queue is shut down and empty."""
        return self._get_item(_queue_timeout(block, timeout))

    def get_nowait(self):
        """``get(block=False)``."""
        return self._get_item(0)

    def full(self):
        """True when a bounded queue holds ``maxsize`` items (a snapshot)."""
        return bool(lib.weft_queue_full(self._ptr))

    def task_done(self):
        """Marks one task taken with ``get`` done. ValueError when called more times than items
        were put."""
        self._task_done()

    def join(self):
        """Blocks until every item put has been marked done with ``task_done`` (or discarded
        by ``shutdown(immediate=True)``)."""
        self._join()

    @property
    def unfinished_tasks(self):
        """Items put and not yet marked done."""
        return self._unfinished()

    def shutdown(self, immediate=False):
        """Shuts the queue down (Python 3.13): ``put`` raises ShutDown from now on (blocked
        putters wake with it); ``get`` takes what is left, then raises ShutDown (blocked
        getters wake with it). With ``immediate``, the items left are discarded, each counted
        done for ``join``."""
        self._shutdown(immediate)

    @property
    def is_shutdown(self):
        """True once ``shutdown`` was called."""
        return bool(lib.weft_queue_is_shut_down(self._ptr))


class LifoQueue(Queue):
    """``queue.LifoQueue(maxsize=0)``: the last item put comes out first."""

    __slots__ = ()
    _C_KIND = _LIFO


def _priority_of(item):
    if isinstance(item, int):
        p = item
    elif isinstance(item, (tuple, list)) and item and isinstance(item[0], int):
        p = item[0]
    else:
        raise TypeError(
            "weft.queue.PriorityQueue orders items by an int64 priority: put an int, or a tuple or "
            f"list whose first element is an int (such as (priority, data)), not {type(item).__name__}"
        )
    if not _I64_MIN <= p <= _I64_MAX:
        raise TypeError(f"weft.queue.PriorityQueue priorities are int64: {int(p)} is out of range")
    return int(p)


class PriorityQueue(Queue):
    """``queue.PriorityQueue(maxsize=0)``: the lowest priority first, first in first out among
    equal priorities. An item's priority is the item when it is an ``int``, or its first
    element when it is a tuple or list starting with an ``int``; it must fit in int64, anything
    else is TypeError. Items are never compared: ties come out in put order."""

    __slots__ = ()
    _C_KIND = _PRIORITY

    def put(self, item, block=True, timeout=None):
        priority = _priority_of(item)
        ns = _queue_timeout(block, timeout) if self._maxsize > 0 else 0
        data = self._dumps(item)
        st = _put_priority(self._ptr, data, len(data), priority, ns)
        if st != _OK:
            self._put_failed(st)


class SimpleQueue(_NoPickle, _Base):
    """``queue.SimpleQueue()``: an unbounded first-in first-out queue, without task tracking.
    ``codec=`` as for :class:`Queue`."""

    __slots__ = ()

    def __init__(self, *, codec="pickle"):
        out = ffi.new("weft_queue **")
        st = lib.weft_queue_new(self._options(_SIMPLE, False, 0), out)
        if st != _OK:
            raise error_for(st)
        self._setup(out[0], codec, 0, False)

    def put(self, item, block=True, timeout=None):
        """Puts ``item`` in the queue; never blocks (``block`` and ``timeout`` are ignored, as
        Python's)."""
        self._put_data(self._dumps(item), 0)

    def put_nowait(self, item):
        """``put(item)``."""
        self._put_data(self._dumps(item), 0)

    def get(self, block=True, timeout=None):
        """Removes and returns an item, waiting while the queue is empty (as ``Queue.get``)."""
        return self._get_item(_queue_timeout(block, timeout))

    def get_nowait(self):
        """``get(block=False)``."""
        return self._get_item(0)


# --- process-shared queues (weft.multiprocessing's Queue, JoinableQueue, SimpleQueue) -----

def _rebuild_shared(cls, token, codec, dupfd=None):
    space = _spacefd.attach(token, dupfd) if dupfd is not None else None
    return cls._open_with(lib.weft_queue_from_token, (bytes(token), len(token)), codec, space)


# (kind, joinable) -> the public class of weft.multiprocessing for such a queue.
_SHARED_CLASSES = {}


class _SharedQueue(_Base):
    """A queue in a space, shared by the processes that reach it: the base of
    ``weft.multiprocessing.Queue``, ``JoinableQueue`` and ``SimpleQueue`` (see there)."""

    __slots__ = ("_space", "_closed", "_token", "_pid", "_poll")
    _KIND = "mp_queue"
    _C_KIND = _FIFO
    _C_JOINABLE = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_PUBLIC"):
            _SHARED_CLASSES[(cls._C_KIND, cls._C_JOINABLE)] = cls

    def __init__(self, maxsize=0, *, space=None, name=None, codec="pickle", max_bytes=None):
        maxsize = operator.index(maxsize)
        opts = self._options(self._C_KIND, self._C_JOINABLE, max(maxsize, 0), max_bytes)
        out = ffi.new("weft_queue **")
        check(lib.weft_queue_new_in(space_ptr(space), opt_name(name), opts, out))
        self._adopt(out[0], codec, space)

    def _adopt(self, ptr, codec, space):
        options = ffi.new("weft_queue_options *")
        st = lib.weft_queue_options_get(ptr, options)
        if st != _OK:
            lib.weft_queue_free(ptr)
            raise error_for(st)
        self._setup(ptr, codec, int(options.maxsize), True)
        self._space = space
        self._closed = False
        self._token = None
        self._pid = os.getpid()
        self._poll = None
        return options

    @classmethod
    def _open_with(cls, fn, args, codec, space):
        out = ffi.new("weft_queue **")
        check(fn(*args, out))
        options = ffi.new("weft_queue_options *")
        st = lib.weft_queue_options_get(out[0], options)
        if st != _OK:
            lib.weft_queue_free(out[0])
            raise error_for(st)
        # The class the queue is (as weft.multiprocessing.Semaphore.open gives a
        # BoundedSemaphore for a bounded one); a subclass of the right kind stays itself.
        kind, joinable = int(options.kind), bool(options.flags & _JOINABLE)
        if (cls._C_KIND, cls._C_JOINABLE) != (kind, joinable):
            cls = _SHARED_CLASSES.get((kind, joinable), cls)
        obj = cls.__new__(cls)
        obj._adopt(out[0], codec, space)
        return obj

    @classmethod
    def open(cls, space, name, *, codec="pickle"):
        """Opens the queue named ``name`` in ``space`` (a :class:`weft.spaces.Space`; None for
        the default space), created by any process in any language (C: ``weft_queue_new_in``).
        The object is of the class matching the queue (Queue, JoinableQueue or SimpleQueue).
        ``codec="bytes"`` gets and puts the bytes as they are, for a C peer.
        FileNotFoundError when there is no such queue; ValueError when the name is another
        kind of object."""
        return cls._open_with(lib.weft_queue_open, (space_ptr(space), encode_name(name)), codec, space)

    @classmethod
    def from_token(cls, token, codec="pickle"):
        """Opens the queue a token designates (``token()`` of this or another process that can
        reach the space)."""
        token = bytes(token)
        return cls._open_with(lib.weft_queue_from_token, (token, len(token)), codec, None)

    def token(self) -> bytes:
        """A token for this queue (see :meth:`weft.multiprocessing.Lock.token`)."""
        token = self._token
        if token is None:
            buf = ffi.new("char[]", _TOKEN_MAX)
            n = ffi.new("size_t *")
            check(lib.weft_queue_token(self._ptr, buf, _TOKEN_MAX, n))
            token = self._token = ffi.unpack(buf, n[0])
        return token

    def __reduce__(self):
        token = self.token()
        return (_rebuild_shared, (type(self), token, self._codec_spec, _spacefd.for_child(self._space, token)))

    # -- multiprocessing.Queue's API --

    def _check_closed(self):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    def put(self, obj, block=True, timeout=None):
        """Puts ``obj`` in the queue, waiting while it is full (``block`` false or a timeout
        <= 0: not at all; ``timeout``: at most that many seconds). ``queue.Full`` when no room
        came. When ``put`` returns, the item is in shared memory (there is no feeder thread).
        ValueError for an item larger than the queue's storage (``max_bytes``)."""
        if self._closed:
            self._check_closed()
        self._put_data(self._dumps(obj), _mp_timeout(block, timeout))

    def put_nowait(self, obj):
        """``put(obj, False)``."""
        self.put(obj, False)

    def get(self, block=True, timeout=None):
        """Removes and returns an item, waiting while the queue is empty (``block`` false or
        a timeout <= 0: not at all; ``timeout``: at most that many seconds). ``queue.Empty``
        when none came."""
        if self._closed:
            self._check_closed()
        return self._get_item(_mp_timeout(block, timeout))

    def get_nowait(self):
        """``get(False)``."""
        return self.get(False)

    def full(self):
        """True when a bounded queue holds ``maxsize`` items (a snapshot)."""
        return bool(lib.weft_queue_full(self._ptr))

    def close(self):
        """This process will neither put nor get with this object any more: later calls raise
        ValueError. The queue itself, and other handles on it, are untouched."""
        self._closed = True

    def join_thread(self):
        """Does nothing (there is no feeder thread: every ``put`` has returned with its item in
        shared memory). Only valid after ``close()``, as in multiprocessing."""
        assert self._closed, f"Queue {self!r} not closed"

    def cancel_join_thread(self):
        """Does nothing (there is no feeder thread to wait for)."""

    def shutdown(self, immediate=False):
        """(weft) Shuts the queue down for every process (as ``queue.Queue.shutdown`` of
        Python 3.13): puts raise ``weft.queue.ShutDown``; gets take what is left, then raise
        it. With ``immediate`` the items left are discarded."""
        self._shutdown(immediate)

    @property
    def is_shutdown(self):
        """(weft) True once the queue was shut down, by any process."""
        return bool(lib.weft_queue_is_shut_down(self._ptr))

    @property
    def maxsize(self):
        """The most items the queue holds (0: bounded only by its storage)."""
        return self._maxsize

    def _poll_fd(self):
        # The descriptor is fed by a watcher thread of the handle that made it; a forked child
        # has the handle but not the thread, so each process polls through a handle of its own.
        pid = os.getpid()
        poll = self._poll
        if poll is not None and poll[0] == pid:
            return poll[1]
        if pid == self._pid:
            fd = _Base._poll_fd(self)
            self._poll = (pid, fd)
            return fd
        own = type(self).from_token(self.token(), self._codec_spec)
        fd = _Base._poll_fd(own)
        self._poll = (pid, fd, own)
        return fd

    def __repr__(self):
        cls = type(self)
        state = " closed" if self._closed else ""
        return f"<{cls.__module__}.{cls.__qualname__} object at {id(self):#x}{state}>"
