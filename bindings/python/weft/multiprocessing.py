"""Drop-in replacements for ``multiprocessing``'s synchronisation primitives and shared
ctypes, living in weft's shared-memory spaces.

    import multiprocessing
    from weft import multiprocessing as wmp

    lock = wmp.Lock()
    counter = wmp.Value("i", 0)

    def work():
        for _ in range(1000):
            with lock:
                counter.value += 1

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=work) for _ in range(4)]
    ...

``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Event``, ``Condition``,
``Barrier``, ``Value`` and ``Array`` take the arguments of the ``multiprocessing`` functions
of the same names and behave like them (``acquire(block=True, timeout=None)``, the same
exceptions and messages). By default they are created in the process's *default space*, an
anonymous shared mapping that children started with the ``fork`` start method inherit: an
object created before the fork works in the child exactly like the original. The ``spawn``
and ``forkserver`` start methods start a fresh interpreter, which does not inherit the default
space: an object given to such a child as a ``Process`` argument brings the space's descriptor
with it (the child attaches the space before opening the object). An object sent to such a
child later, through a queue or pipe, reaches it when the space was attached already (the
child received some object of that space at its start) or is a named
:class:`weft.spaces.Space`.

What weft adds:

* **Owner death.** When a process dies (even by SIGKILL) holding a ``Lock``, an ``RLock``,
  the lock of a ``Condition`` or the lock of a ``Value``/``Array`` (``get_lock()``), the next
  ``acquire`` raises :class:`OwnerDeadError` *with the lock held*: repair the data it guards,
  call ``mark_consistent()``, and carry on. Releasing it without ``mark_consistent()`` makes the
  lock unusable: every later acquire raises :class:`NotRecoverableError`. (Python's own locks
  stay locked forever instead.) Note that ``with lock:`` raising OwnerDeadError never enters
  the block, so the ``with`` statement does not release the lock: catch the error around it.
* **Named objects.** Every constructor takes ``space=`` (a :class:`weft.spaces.Space`; None
  for the default space) and ``name=`` (None: unnamed); ``Cls.open(space, name)`` opens a named
  object created by any process, in any language (C: ``weft_lock_open`` ...).
* **Tokens and pickling.** ``obj.token()`` is a short ``bytes`` naming the object;
  ``Cls.from_token(token)`` opens it in another process that can reach its space (a named space,
  or the default space in a forked child). Pickling uses tokens, so the objects may be sent to
  a child through a ``multiprocessing.Queue`` or ``Pipe`` (Python's refuse). The sender
  must keep its object alive until the receiver has unpickled it: a token does not hold the
  object, and once the last handle on an unnamed object is freed, its token is dead.
* **Atomics.** Integer ``Value``/``Array`` items have lock-free ``load``, ``store``,
  ``fetch_add`` and ``compare_exchange``.
* **Dict and List** (``Manager().dict()``/``list()`` without a manager process): shared
  containers of encoded keys and values (``codec="pickle"``, ``"bytes"``, ``"str"``).
* **Queue, JoinableQueue, SimpleQueue** without a feeder thread (see :mod:`weft.queue`);
  ``codec="bytes"`` shares a named queue with C.
"""

from __future__ import annotations

import collections.abc as _abc
import ctypes
import math
import operator
import pickle as _pickle
import struct as _struct
import threading
from multiprocessing import util as _mp_util
from threading import BrokenBarrierError
from time import monotonic as _time

from . import _spacefd
from ._errors import WeftError, last_error_message
from ._native import CONSTANTS, FOREVER, ffi, lib, managed
from .spaces import Space, check, encode_name, opt_name, space_ptr
from .queue import _SharedQueue

__all__ = [
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Condition",
    "Barrier",
    "Value",
    "Array",
    "RawValue",
    "RawArray",
    "Dict",
    "List",
    "Queue",
    "JoinableQueue",
    "SimpleQueue",
    "OwnerDeadError",
    "NotRecoverableError",
    "BrokenBarrierError",
    "Space",
]

_OK = CONSTANTS["WEFT_OK"]
_TIMEOUT = CONSTANTS["WEFT_TIMEOUT"]
_WOULD_BLOCK = CONSTANTS["WEFT_WOULD_BLOCK"]
_BROKEN = CONSTANTS["WEFT_BROKEN"]
_NOT_OWNER = CONSTANTS["WEFT_NOT_OWNER"]
_INVALID_STATE = CONSTANTS["WEFT_INVALID_STATE"]
_INVALID_ARGUMENT = CONSTANTS["WEFT_INVALID_ARGUMENT"]
_OWNER_DEAD = CONSTANTS["WEFT_OWNER_DEAD"]
_NOT_RECOVERABLE = CONSTANTS["WEFT_NOT_RECOVERABLE"]
_NOT_FOUND = CONSTANTS["WEFT_NOT_FOUND"]
_TASK_FAILED = CONSTANTS["WEFT_TASK_FAILED"]
_TOKEN_MAX = CONSTANTS.get("WEFT_TOKEN_MAX", 240)
_U32_MAX = 2**32 - 1
_SIZE_MAX = 2 ** (8 * ffi.sizeof("size_t")) - 1


# --- exceptions ---------------------------------------------------------------------------


class OwnerDeadError(WeftError, RuntimeError):
    """The process (or thread) holding a shared lock died holding it. The caller now holds the
    lock: it repairs the state the lock guards, calls ``mark_consistent()`` on the object, and
    releases the lock as usual. ``status`` is ``WEFT_OWNER_DEAD``."""


class NotRecoverableError(WeftError, RuntimeError):
    """A shared lock is unusable: an earlier :class:`OwnerDeadError` was not followed by
    ``mark_consistent()`` before the lock was released. ``status`` is
    ``WEFT_NOT_RECOVERABLE``."""


def _raise(st: int, overrides: dict | None = None):
    if st == _OWNER_DEAD:
        raise OwnerDeadError(st, last_error_message() or None)
    if st == _NOT_RECOVERABLE:
        raise NotRecoverableError(st, last_error_message() or None)
    check(st, overrides)


def _succeeded(st, errors=None):
    """A blocking call's status as Python's return value: True for success, False for a
    timeout (or a failed non-blocking try); any other status raises."""
    if st == _OK:
        return True
    if st == _TIMEOUT or st == _WOULD_BLOCK:
        return False
    _raise(st, errors)


# --- timeouts -----------------------------------------------------------------------------


def _seconds_to_ns(t) -> int:
    t = float(t)
    if t != t:
        raise ValueError("Invalid value NaN (not a number)")
    if t <= 0:
        return 0
    ns = math.ceil(t * 1e9)
    return FOREVER if ns >= FOREVER else max(1, ns)


def _acquire_timeout(block, timeout) -> int:
    """``acquire(block, timeout)`` of multiprocessing's locks and semaphores: not blocking
    tries once (the timeout is ignored), None waits forever, a timeout <= 0 tries once."""
    if not block:
        return 0
    if timeout is None:
        return FOREVER
    return _seconds_to_ns(timeout)


def _wait_timeout(timeout) -> int:
    if timeout is None:
        return FOREVER
    return _seconds_to_ns(timeout)


# --- the common base ----------------------------------------------------------------------


def _token_of(fn, ptr) -> bytes:
    buf = ffi.new("char[]", _TOKEN_MAX)
    n = ffi.new("size_t *")
    check(fn(ptr, buf, _TOKEN_MAX, n))
    return ffi.unpack(buf, n[0])


def _rebuild(dupfd, cls, token, *extra):
    if dupfd is not None:
        _spacefd.attach(token, dupfd)
    return cls.from_token(token, *extra)


def _reduce(obj, cls, token, *extra):
    """``__reduce__`` of a shared object: its token (and, for the start of a spawn or
    forkserver child, the descriptor of its anonymous space: see ``weft._spacefd``)."""
    return (_rebuild, (_spacefd.for_child(obj._space, token), cls, token, *extra))


class _Shared:
    """One handle (``weft_<kind> *``) on an object in a space."""

    __slots__ = ("_ptr", "_space", "__weakref__")

    # Set by each subclass.
    _KIND = ""  # for handle accounting
    _CTYPE = ""  # "weft_lock"
    _free = None
    _token_fn = None
    _from_token_fn = None
    _open_fn = None

    def _adopt(self, ptr, space) -> None:
        self._ptr = managed(self._KIND, ptr, type(self)._free)
        self._space = space

    def _new(self, fn, *args, space=None):
        out = ffi.new(self._CTYPE + " **")
        _raise(fn(*args, out))
        self._adopt(out[0], space)

    @classmethod
    def _wrap(cls, fn, *args, space=None):
        obj = cls.__new__(cls)
        obj._new(fn, *args, space=space)
        obj._opened()
        return obj

    def _opened(self) -> None:
        """Fills in per-class state after open/from_token."""

    @classmethod
    def open(cls, space, name):
        """Opens the shared object named ``name`` in ``space`` (a :class:`weft.spaces.Space`;
        None for the default space), created by any process in any language.
        FileNotFoundError when there is none; ValueError when it is another kind of object."""
        return cls._wrap(cls._open_fn, space_ptr(space), encode_name(name), space=space)

    @classmethod
    def from_token(cls, token: bytes):
        """Opens the shared object a token designates (``token()`` in this or another process
        that can reach the space: a named space, or the default space of a forked parent)."""
        token = bytes(token)
        return cls._wrap(cls._from_token_fn, token, len(token))

    def token(self) -> bytes:
        """A token for this object (at most ``WEFT_TOKEN_MAX`` bytes) that
        :meth:`from_token` turns back into a handle, in any process that can reach the space."""
        return _token_of(type(self)._token_fn, self._ptr)

    def __reduce__(self):
        return _reduce(self, type(self), self.token())


def _init_named(obj, fn, *args, space, name):
    """Creates ``obj``'s C object with ``fn(space, name, *args, &out)``."""
    obj._new(fn, space_ptr(space), opt_name(name), *args, space=space)


# --- Lock ---------------------------------------------------------------------------------


class Lock(_Shared):
    """``multiprocessing.Lock()``: a non-recursive lock any process (or thread) may release.
    ``Lock(space=None, name=None)`` creates it in ``space`` (default: the default space) under
    ``name`` (default: unnamed)."""

    __slots__ = ()
    _KIND = "mp_lock"
    _CTYPE = "weft_lock"
    _free = lib.weft_lock_free
    _token_fn = lib.weft_lock_token
    _from_token_fn = lib.weft_lock_from_token
    _open_fn = lib.weft_lock_open

    def __init__(self, *, space=None, name=None):
        _init_named(self, lib.weft_lock_new_in, space=space, name=name)

    def acquire(self, block=True, timeout=None):
        """Acquires the lock: True on success, False when it could not within ``timeout``
        seconds (None: forever; ignored when ``block`` is false). OwnerDeadError (the lock is
        then held) when its holder died; NotRecoverableError."""
        return _succeeded(lib.weft_lock_acquire(self._ptr, _acquire_timeout(block, timeout)))

    def release(self):
        """Releases the lock; ValueError when it is not locked (as multiprocessing)."""
        st = lib.weft_lock_release(self._ptr)
        if st != _OK:
            _raise(st, {_INVALID_STATE: (ValueError, "semaphore or lock released too many times")})

    def locked(self):
        """True while some process holds the lock."""
        return bool(lib.weft_lock_locked(self._ptr))

    def mark_consistent(self):
        """After OwnerDeadError, declares the guarded state repaired (while holding the lock)."""
        _raise(lib.weft_lock_mark_consistent(self._ptr))

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()

    def __repr__(self):
        return f"<weft.multiprocessing.Lock({'locked' if self.locked() else 'unlocked'})>"


# --- RLock --------------------------------------------------------------------------------


class RLock(_Shared):
    """``multiprocessing.RLock()``: a recursive lock owned by one thread of one process."""

    __slots__ = ()
    _KIND = "mp_rlock"
    _CTYPE = "weft_rlock"
    _free = lib.weft_rlock_free
    _token_fn = lib.weft_rlock_token
    _from_token_fn = lib.weft_rlock_from_token
    _open_fn = lib.weft_rlock_open

    def __init__(self, *, space=None, name=None):
        _init_named(self, lib.weft_rlock_new_in, space=space, name=name)

    def acquire(self, block=True, timeout=None):
        """Acquires the lock (one more level for its owner); True on success, False on
        timeout. OwnerDeadError (held at depth 1) when its owner died."""
        st = lib.weft_rlock_acquire(self._ptr, _acquire_timeout(block, timeout))
        return _succeeded(st, {_INVALID_ARGUMENT: (OverflowError, "Internal lock count overflowed")})

    def release(self):
        """Releases one level; AssertionError when the caller does not own the lock (as
        multiprocessing)."""
        st = lib.weft_rlock_release(self._ptr)
        if st != _OK:
            _raise(st, {_NOT_OWNER: (AssertionError, "attempt to release recursive lock not owned by thread")})

    def mark_consistent(self):
        """After OwnerDeadError, declares the guarded state repaired (the caller owns it)."""
        _raise(lib.weft_rlock_mark_consistent(self._ptr))

    def _is_mine(self):
        return bool(lib.weft_rlock_is_owned(self._ptr))

    def _count(self):
        return int(lib.weft_rlock_depth(self._ptr))

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()

    def __repr__(self):
        if self._is_mine():
            return f"<weft.multiprocessing.RLock(owned by this thread, {self._count()})>"
        return "<weft.multiprocessing.RLock(not owned by this thread)>"


# --- Semaphore ----------------------------------------------------------------------------


class Semaphore(_Shared):
    """``multiprocessing.Semaphore(value=1)``. (A process that dies holding a permit is not
    detected, as with Python's: guard state a process may leave half-done with a Lock.)"""

    __slots__ = ()
    _KIND = "mp_semaphore"
    _CTYPE = "weft_semaphore"
    _free = lib.weft_semaphore_free
    _token_fn = lib.weft_semaphore_token
    _from_token_fn = lib.weft_semaphore_from_token
    _open_fn = lib.weft_semaphore_open
    _BOUNDED = False

    def __init__(self, value=1, *, space=None, name=None):
        value = operator.index(value)
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        if value > _U32_MAX:
            raise OverflowError(f"semaphore initial value larger than weft's maximum of {_U32_MAX}")
        _init_named(self, lib.weft_semaphore_new_in, value, self._BOUNDED, space=space, name=name)

    @classmethod
    def _wrap(cls, fn, *args, space=None):
        obj = super()._wrap(fn, *args, space=space)
        # Opened objects get the class their semaphore is.
        bounded = bool(lib.weft_semaphore_is_bounded(obj._ptr))
        if bounded != cls._BOUNDED:
            obj.__class__ = BoundedSemaphore if bounded else Semaphore
        return obj

    def acquire(self, block=True, timeout=None):
        """Takes one permit; True on success, False when none came within the timeout."""
        return _succeeded(lib.weft_semaphore_acquire(self._ptr, _acquire_timeout(block, timeout)))

    def release(self, n=1):
        """Adds a permit (``n`` permits: an extension). A BoundedSemaphore released above its
        initial value raises ValueError, as multiprocessing's."""
        n = operator.index(n)
        if n < 1:
            raise ValueError("n must be one or more")
        if n > _U32_MAX:
            raise OverflowError(f"release count larger than weft's maximum of {_U32_MAX}")
        st = lib.weft_semaphore_release(self._ptr, n)
        if st != _OK:
            _raise(st, {
                _INVALID_STATE: (ValueError, "semaphore or lock released too many times"),
                _INVALID_ARGUMENT: (OverflowError, "semaphore count would exceed 2**32 - 1"),
            })

    def get_value(self):
        """The number of permits now (a snapshot)."""
        return int(lib.weft_semaphore_value(self._ptr))

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()

    def __repr__(self):
        return f"<weft.multiprocessing.{type(self).__name__}(value={self.get_value()})>"


class BoundedSemaphore(Semaphore):
    """``multiprocessing.BoundedSemaphore(value=1)``: releasing above the initial value is
    ``ValueError("semaphore or lock released too many times")``."""

    __slots__ = ()
    _BOUNDED = True


# --- Event --------------------------------------------------------------------------------


class Event(_Shared):
    """``multiprocessing.Event()``."""

    __slots__ = ()
    _KIND = "mp_event"
    _CTYPE = "weft_event"
    _free = lib.weft_event_free
    _token_fn = lib.weft_event_token
    _from_token_fn = lib.weft_event_from_token
    _open_fn = lib.weft_event_open

    def __init__(self, *, space=None, name=None):
        _init_named(self, lib.weft_event_new_in, space=space, name=name)

    def is_set(self):
        return bool(lib.weft_event_is_set(self._ptr))

    def set(self):
        _raise(lib.weft_event_set(self._ptr))

    def clear(self):
        _raise(lib.weft_event_clear(self._ptr))

    def wait(self, timeout=None):
        """Blocks until the flag is set or ``timeout`` seconds pass; returns the flag."""
        return _succeeded(lib.weft_event_wait(self._ptr, _wait_timeout(timeout)))

    def __repr__(self):
        return f"<weft.multiprocessing.Event({'set' if self.is_set() else 'unset'})>"


# --- Condition ----------------------------------------------------------------------------


class Condition(_Shared):
    """``multiprocessing.Condition(lock=None)`` over a ``weft.multiprocessing.Lock`` or
    ``RLock`` (a new RLock when ``lock`` is None). The lock must live in the condition's space;
    ``space`` defaults to the lock's. ``Condition.open(space, name)`` finds the lock too."""

    __slots__ = ("_lock",)
    _KIND = "mp_condition"
    _CTYPE = "weft_condition"
    _free = lib.weft_condition_free
    _token_fn = lib.weft_condition_token
    _from_token_fn = lib.weft_condition_from_token
    _open_fn = lib.weft_condition_open

    def __init__(self, lock=None, *, space=None, name=None):
        if lock is None:
            lock = RLock(space=space)
        if isinstance(lock, RLock):
            lp, rp = ffi.NULL, lock._ptr
        elif isinstance(lock, Lock):
            lp, rp = lock._ptr, ffi.NULL
        else:
            raise TypeError(
                f"weft.multiprocessing.Condition needs a weft.multiprocessing Lock or RLock, not {type(lock).__name__}"
            )
        if space is None:
            space = lock._space
        self._lock = lock
        _init_named(self, lib.weft_condition_new_in, lp, rp, space=space, name=name)

    def _opened(self):
        self._lock = None  # reached through the condition's own acquire/release

    def acquire(self, block=True, timeout=None):
        """Acquires the condition's lock (as its ``acquire``)."""
        return _succeeded(lib.weft_condition_acquire(self._ptr, _acquire_timeout(block, timeout)))

    def release(self):
        """Releases the condition's lock (as its ``release``)."""
        st = lib.weft_condition_release(self._ptr)
        if st != _OK:
            _raise(st, {
                _INVALID_STATE: (ValueError, "semaphore or lock released too many times"),
                _NOT_OWNER: (AssertionError, "attempt to release recursive lock not owned by thread"),
            })

    def mark_consistent(self):
        """After OwnerDeadError from acquire or wait, declares the state repaired."""
        _raise(lib.weft_condition_mark_consistent(self._ptr))

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()

    def wait(self, timeout=None):
        """Releases the lock, waits until notified or ``timeout`` seconds pass, re-acquires
        the lock; False when the timeout passed. AssertionError without the lock (as
        multiprocessing); OwnerDeadError (holding the lock) when its holder died meanwhile."""
        st = lib.weft_condition_wait(self._ptr, _wait_timeout(timeout))
        return _succeeded(st, {_NOT_OWNER: (AssertionError, "must acquire() condition before using wait()")})

    def wait_for(self, predicate, timeout=None):
        """Waits until ``predicate()`` is true; returns its last value (false on timeout)."""
        result = predicate()
        if result:
            return result
        if timeout is not None:
            endtime = _time() + timeout
        else:
            endtime = None
            waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - _time()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n=1):
        """Wakes up to ``n`` waiters (in any process). AssertionError without the lock."""
        count = 0 if not n > 0 else _SIZE_MAX if n >= _SIZE_MAX else math.ceil(n)
        st = lib.weft_condition_notify(self._ptr, count)
        if st != _OK:
            _raise(st, {_NOT_OWNER: (AssertionError, "lock is not owned")})

    def notify_all(self):
        """Wakes every waiter (in any process). AssertionError without the lock."""
        st = lib.weft_condition_notify_all(self._ptr)
        if st != _OK:
            _raise(st, {_NOT_OWNER: (AssertionError, "lock is not owned")})

    def __repr__(self):
        return f"<weft.multiprocessing.Condition({self._lock!r})>"


# --- Barrier ------------------------------------------------------------------------------


class _Action:
    __slots__ = ("action", "local")

    def __init__(self, action):
        self.action = action
        self.local = threading.local()


@ffi.callback("weft_status(void *)", error=_TASK_FAILED)
def _barrier_action(ctx):
    box = ffi.from_handle(ctx)
    try:
        box.action()
    except BaseException as e:  # noqa: B902 - re-raised by this thread's wait()
        box.local.error = e
        return _TASK_FAILED
    return _OK


def _leave_barrier(token):
    """Takes this process out of the barrier's participants (so that its exit is not taken
    for a death): open a second handle and close it."""
    out = ffi.new("weft_barrier **")
    if lib.weft_barrier_from_token(token, len(token), ffi.NULL, ffi.NULL, out) == _OK:
        lib.weft_barrier_free(out[0])


class Barrier(_Shared):
    """``multiprocessing.Barrier(parties, action=None, timeout=None)``. ``action`` runs in the
    process of the last party to arrive (each process gives its own action when it opens the
    barrier; a forked child inherits its parent's). ``wait`` raises
    ``threading.BrokenBarrierError`` when the barrier is broken — also when a participating
    process died (weft checks about every 50 ms), so nobody waits for a dead party.

    A process started by ``multiprocessing`` leaves the barrier when it exits normally (weft
    registers a ``multiprocessing.util.Finalize``); one that ends otherwise while others wait
    for the next round breaks the barrier for them."""

    __slots__ = ("_box", "_timeout", "_token_cache")
    _KIND = "mp_barrier"
    _CTYPE = "weft_barrier"
    _free = lib.weft_barrier_free
    _token_fn = lib.weft_barrier_token

    def __init__(self, parties, action=None, timeout=None, *, space=None, name=None):
        parties = operator.index(parties)
        if parties < 1:
            raise ValueError("parties must be > 0")
        if parties > _U32_MAX:
            raise OverflowError(f"parties larger than weft's maximum of {_U32_MAX}")
        cb, handle = self._prepare(action, timeout)
        out = ffi.new("weft_barrier **")
        _raise(lib.weft_barrier_new_in(space_ptr(space), opt_name(name), parties, cb, handle, out))
        self._adopt_barrier(out[0], handle, space)

    def _prepare(self, action, timeout):
        self._timeout = timeout
        if action is None:
            self._box = None
            return ffi.NULL, ffi.NULL
        self._box = _Action(action)
        return _barrier_action, ffi.new_handle(self._box)

    def _adopt_barrier(self, ptr, handle, space):
        # The handle (keeping the action alive) lives as long as the C barrier that calls it.
        self._ptr = managed(self._KIND, ptr, lib.weft_barrier_free, keepalive=handle)
        self._space = space
        self._token_cache = _token_of(lib.weft_barrier_token, self._ptr)
        _mp_util.Finalize(self, _leave_barrier, args=(self._token_cache,), exitpriority=0)
        _mp_util.register_after_fork(self, Barrier._after_fork_in_child)

    @staticmethod
    def _after_fork_in_child(self):
        # multiprocessing's child clears inherited finalizers, then calls this.
        _mp_util.Finalize(self, _leave_barrier, args=(self._token_cache,), exitpriority=0)

    @classmethod
    def _open_with(cls, fn, args, action, timeout, space=None):
        obj = cls.__new__(cls)
        cb, handle = obj._prepare(action, timeout)
        out = ffi.new("weft_barrier **")
        _raise(fn(*args, cb, handle, out))
        obj._adopt_barrier(out[0], handle, space)
        return obj

    @classmethod
    def open(cls, space, name, action=None, timeout=None):
        """Opens the shared barrier ``name`` in ``space``, with this process's ``action``."""
        return cls._open_with(lib.weft_barrier_open, (space_ptr(space), encode_name(name)), action, timeout, space)

    @classmethod
    def from_token(cls, token, action=None, timeout=None):
        """Opens the barrier a token designates, with this process's ``action``."""
        token = bytes(token)
        return cls._open_with(lib.weft_barrier_from_token, (token, len(token)), action, timeout)

    def token(self) -> bytes:
        return self._token_cache

    def __reduce__(self):
        return _reduce(self, Barrier, self._token_cache, self._box.action if self._box else None, self._timeout)

    def wait(self, timeout=None):
        """Waits for all parties; returns this party's arrival index (0 .. parties - 1)."""
        if timeout is None:
            timeout = self._timeout
        index = ffi.new("uint32_t *")
        st = lib.weft_barrier_wait(self._ptr, _wait_timeout(timeout), index)
        if st == _OK:
            return int(index[0])
        box = self._box
        if box is not None:
            error = box.local.__dict__.pop("error", None)
            if error is not None:
                try:
                    raise error
                finally:
                    error = None
        if st in (_BROKEN, _TIMEOUT, _WOULD_BLOCK, _TASK_FAILED):
            raise BrokenBarrierError
        _raise(st)

    def reset(self):
        """Returns the barrier to its initial state; current waiters get BrokenBarrierError."""
        _raise(lib.weft_barrier_reset(self._ptr))

    def abort(self):
        """Breaks the barrier: current and later waiters get BrokenBarrierError."""
        _raise(lib.weft_barrier_abort(self._ptr))

    @property
    def parties(self):
        return int(lib.weft_barrier_parties(self._ptr))

    @property
    def n_waiting(self):
        return int(lib.weft_barrier_n_waiting(self._ptr))

    @property
    def broken(self):
        return bool(lib.weft_barrier_broken(self._ptr))

    def __repr__(self):
        if self.broken:
            return "<weft.multiprocessing.Barrier: broken>"
        return f"<weft.multiprocessing.Barrier: waiters={self.n_waiting}/{self.parties}>"


# --- Value and Array ----------------------------------------------------------------------

# Python type code -> (the code weft stores, the C type for cffi, the ctypes type whose
# conversion rules apply: wrapping integers, TypeError for a float given to an integer).
_TYPES = {
    "b": ("b", "int8_t", ctypes.c_byte),
    "B": ("B", "uint8_t", ctypes.c_ubyte),
    "h": ("h", "short", ctypes.c_short),
    "H": ("H", "unsigned short", ctypes.c_ushort),
    "i": ("i", "int", ctypes.c_int),
    "I": ("I", "unsigned int", ctypes.c_uint),
    "l": ("l", "int64_t", ctypes.c_long),
    "L": ("L", "uint64_t", ctypes.c_ulong),
    "q": ("q", "int64_t", ctypes.c_longlong),
    "Q": ("Q", "uint64_t", ctypes.c_ulonglong),
    "f": ("f", "float", ctypes.c_float),
    "d": ("d", "double", ctypes.c_double),
    "c": ("B", "uint8_t", ctypes.c_char),  # one byte; Python sees bytes of length 1
}
_INTEGER_CODES = frozenset("bBhHiIlLqQ")
_UNSIGNED64 = frozenset("LQ")


def _typecode(typecode_or_type) -> str:
    if isinstance(typecode_or_type, str):
        code = typecode_or_type
    else:
        code = getattr(typecode_or_type, "_type_", None)
        if not isinstance(code, str) or not isinstance(typecode_or_type, type) \
                or not issubclass(typecode_or_type, ctypes._SimpleCData):
            code = None
    if code not in _TYPES:
        raise TypeError(
            f"weft.multiprocessing supports the type codes {''.join(_TYPES)} and the matching "
            f"ctypes types (c_int, c_double, ...), not {typecode_or_type!r}"
        )
    return code


def _to_c(code, ctype, v):
    """``v`` as ctypes would store it in an item of ``code``, as a number cffi accepts."""
    if code == "c":
        return ctype(v).value[0]
    return ctype(v).value


def _from_c(code, x):
    return bytes((x,)) if code == "c" else x


class _ArrayLock:
    """The re-entrant lock of a ``Value``/``Array`` (``get_lock()``): held around several
    operations; the object's own operations re-enter it."""

    # The handle, not the array object: no reference cycle array -> lock -> array.
    __slots__ = ("_ptr",)

    def __init__(self, ptr):
        self._ptr = ptr

    def acquire(self, block=True, timeout=None):
        """True on success, False on timeout; OwnerDeadError (held) when the holder died."""
        return _succeeded(lib.weft_array_lock(self._ptr, _acquire_timeout(block, timeout)))

    def release(self):
        st = lib.weft_array_unlock(self._ptr)
        if st != _OK:
            _raise(st, {_NOT_OWNER: (AssertionError, "attempt to release recursive lock not owned by thread")})

    def mark_consistent(self):
        _raise(lib.weft_array_mark_consistent(self._ptr))

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()

    def __reduce__(self):
        token = _token_of(lib.weft_array_token, self._ptr)
        return (_lock_of, (_spacefd.for_child(None, token), token))

    def __repr__(self):
        return f"<weft.multiprocessing.Value/Array lock at {id(self):#x}>"


def _lock_of(dupfd, token):
    if dupfd is not None:
        _spacefd.attach(token, dupfd)
    return _Typed.from_token(token).get_lock()


class _NoLock:
    __slots__ = ()

    def __enter__(self):
        return True

    def __exit__(self, *args):
        pass


_NO_LOCK = _NoLock()


class _Typed(_Shared):
    """Items of one C type in a space (``weft_array``)."""

    __slots__ = ("_code", "_cdecl", "_ctype", "_len", "_lock", "_guard")
    _KIND = "mp_array"
    _CTYPE = "weft_array"
    _free = lib.weft_array_free
    _token_fn = lib.weft_array_token
    _from_token_fn = lib.weft_array_from_token
    _open_fn = lib.weft_array_open

    def _create(self, typecode_or_type, items, length, lock, space, name):
        code = _typecode(typecode_or_type)
        wcode, cdecl, ctype = _TYPES[code]
        if lock is True or lock is None:  # None: as multiprocessing, a lock of its own
            clock, pylock = True, None
        elif lock is False:
            clock, pylock = False, None
        else:
            if not hasattr(lock, "acquire"):
                raise AttributeError(f"{lock!r} has no method 'acquire'")
            clock, pylock = False, lock
        if length < 1:
            raise ValueError("weft arrays have at least one item")
        init = ffi.NULL
        if items is not None:
            init = ffi.new(f"{cdecl}[]", [_to_c(code, ctype, v) for v in items])
        _init_named(self, lib.weft_array_new_in, wcode.encode(), length, init, clock, space=space, name=name)
        self._setup(code, pylock, clock)

    def _setup(self, code, pylock, clock):
        _, self._cdecl, self._ctype = _TYPES[code]
        self._code = code
        self._len = int(lib.weft_array_len(self._ptr))
        if pylock is not None:
            self._lock = pylock
            self._guard = pylock
        else:
            self._lock = _ArrayLock(self._ptr) if clock else None
            self._guard = _NO_LOCK  # the C calls take the C lock themselves

    def _opened(self):
        code = lib.weft_array_typecode(self._ptr).decode()
        # An opened array may or may not have a lock: get_lock() returns it and its acquire
        # raises RuntimeError when it has none.
        self._setup(code, None, True)

    @classmethod
    def from_token(cls, token, lock=None, typecode=None, has_lock=True):
        """Opens the array a token designates. ``lock``: a Python-side lock guarding it
        (see ``lock=`` of the constructor); ``typecode``: ``"c"`` to see bytes (stored as
        ``"B"``); ``has_lock``: whether ``get_lock()`` returns the array's own lock."""
        obj = super().from_token(token)
        if typecode is not None and _TYPES[typecode][0] != obj._code:
            raise ValueError(f"the token is for an array of {obj._code!r}, not {typecode!r}")
        obj._setup(typecode or obj._code, lock, has_lock and lock is None)
        return obj

    def __reduce__(self):
        pylock = self._guard if self._guard is not _NO_LOCK else None
        has_lock = pylock is None and self._lock is not None
        return _reduce(self, type(self), self.token(), pylock, self._code, has_lock)

    # -- locking --
    def get_lock(self):
        """The lock guarding the object (``lock=True``: its own re-entrant lock; or the lock
        given as ``lock=``). AttributeError when created with ``lock=False``, as
        multiprocessing's raw objects have no ``get_lock``."""
        if self._lock is None:
            raise AttributeError(f"{type(self).__name__} created with lock=False has no lock")
        return self._lock

    def get_obj(self):
        """The object itself (multiprocessing returns the wrapped ctypes object)."""
        return self

    def mark_consistent(self):
        """After OwnerDeadError from ``get_lock().acquire()``, marks the lock consistent."""
        _raise(lib.weft_array_mark_consistent(self._ptr))

    # -- items --
    @property
    def typecode(self) -> str:
        return self._code

    @property
    def itemsize(self) -> int:
        return int(lib.weft_array_itemsize(self._ptr))

    def _get(self, i):
        item = ffi.new(self._cdecl + " *")
        with self._guard:
            st = lib.weft_array_get(self._ptr, i, item, ffi.sizeof(self._cdecl))
        if st != _OK:
            _raise(st)
        return _from_c(self._code, item[0])

    def _set(self, i, v):
        item = ffi.new(self._cdecl + " *", _to_c(self._code, self._ctype, v))
        with self._guard:
            st = lib.weft_array_set(self._ptr, i, item, ffi.sizeof(self._cdecl))
        if st != _OK:
            _raise(st)

    def _read(self, start, count):
        """Items [start, start + count) as a list of C numbers."""
        if count <= 0:
            return []
        buf = ffi.new(f"{self._cdecl}[]", count)
        st = lib.weft_array_read(self._ptr, start, count, buf, ffi.sizeof(buf))
        if st != _OK:
            _raise(st)
        return ffi.unpack(buf, count)

    def _write(self, start, values):
        if not values:
            return
        buf = ffi.new(f"{self._cdecl}[]", values)
        st = lib.weft_array_write(self._ptr, start, len(values), buf, ffi.sizeof(buf))
        if st != _OK:
            _raise(st)

    # -- atomics --
    def _check_atomic(self):
        if self._code not in _INTEGER_CODES:
            raise TypeError(f"atomic operations need an integer type code, not {self._code!r}")

    def _i64(self, v):
        v = self._ctype(v).value
        return v - 2**64 if v >= 2**63 else v

    def _from_i64(self, v):
        return v & (2**64 - 1) if self._code in _UNSIGNED64 else v

    def _load(self, i):
        self._check_atomic()
        out = ffi.new("int64_t *")
        _raise(lib.weft_array_load(self._ptr, i, out))
        return self._from_i64(int(out[0]))

    def _store(self, i, v):
        self._check_atomic()
        _raise(lib.weft_array_store(self._ptr, i, self._i64(v)))

    def _fetch_add(self, i, delta):
        self._check_atomic()
        delta = operator.index(delta)
        delta = (delta + 2**63) % 2**64 - 2**63  # wrapping, as the item wraps
        out = ffi.new("int64_t *")
        _raise(lib.weft_array_fetch_add(self._ptr, i, delta, out))
        return self._from_i64(int(out[0]))

    def _compare_exchange(self, i, expected, desired):
        self._check_atomic()
        exp = ffi.new("int64_t *", self._i64(expected))
        swapped = ffi.new("bool *")
        _raise(lib.weft_array_compare_exchange(self._ptr, i, exp, self._i64(desired), swapped))
        return bool(swapped[0]), self._from_i64(int(exp[0]))


class Value(_Typed):
    """``multiprocessing.Value(typecode_or_type, *args, lock=True)``: one shared item.

    ``typecode_or_type`` is one of the type codes ``b B h H i I l L q Q f d c`` or the matching
    ctypes type (``ctypes.c_int``, ``c_double``, ...); ``args`` is at most the initial value
    (default zero). ``lock=True`` gives it a re-entrant lock (``get_lock()``), ``False`` none,
    or pass a ``weft.multiprocessing`` Lock/RLock to guard it with. ``v.value`` reads and writes
    it under the lock; ``with v.get_lock(): v.value += 1`` is atomic as in Python. Integer
    values also have lock-free :meth:`load`, :meth:`store`, :meth:`fetch_add` and
    :meth:`compare_exchange`. ``space=``/``name=`` as for the locks; ``Value.open(space,
    name)`` opens one created elsewhere (also a C ``weft_array`` of one item)."""

    __slots__ = ()

    def __init__(self, typecode_or_type, *args, lock=True, space=None, name=None):
        if len(args) > 1:
            raise TypeError(f"Value() takes at most one initial value ({len(args)} given)")
        self._create(typecode_or_type, args or None, 1, lock, space, name)

    def _opened(self):
        super()._opened()
        if self._len != 1:
            raise ValueError(f"the shared array has {self._len} items; open it with Array.open")

    @property
    def value(self):
        return self._get(0)

    @value.setter
    def value(self, v):
        self._set(0, v)

    def load(self):
        """The value, read atomically without the lock (integer types)."""
        return self._load(0)

    def store(self, v):
        """Stores ``v`` atomically without the lock (integer types; wraps as ctypes does)."""
        self._store(0, v)

    def fetch_add(self, delta=1):
        """Adds ``delta`` atomically without the lock (wrapping at the item's width); returns
        the previous value."""
        return self._fetch_add(0, delta)

    def compare_exchange(self, expected, desired):
        """Atomically replaces the value with ``desired`` if it equals ``expected``; returns
        ``(swapped, value found)``."""
        return self._compare_exchange(0, expected, desired)

    def __repr__(self):
        return f"<weft.multiprocessing.Value({self._code!r}, {self.value!r})>"


def RawValue(typecode_or_type, *args, space=None, name=None):
    """``multiprocessing.RawValue``: a ``Value`` without a lock."""
    return Value(typecode_or_type, *args, lock=False, space=space, name=name)


class Array(_Typed):
    """``multiprocessing.Array(typecode_or_type, size_or_initializer, *, lock=True)``: a
    fixed number of shared items (at least one), initialised to zero (an integer size) or from
    a sequence. Indexing, negative indexes, slices (read: a list, or bytes for ``'c'``; write:
    a sequence of the same length), ``len``, iteration; ``'c'`` arrays also have ``value`` (the
    bytes up to the first NUL) and ``raw``. Each item operation is atomic; a slice is read or
    written under the lock (hold ``get_lock()`` for more). Integer items have the atomic
    ``load(i)``, ``store(i, v)``, ``fetch_add(i, delta)``, ``compare_exchange(i, expected,
    desired)``."""

    __slots__ = ()

    def __init__(self, typecode_or_type, size_or_initializer, *, lock=True, space=None, name=None):
        if isinstance(size_or_initializer, int):
            length = operator.index(size_or_initializer)
            items = None
        else:
            items = list(size_or_initializer)
            length = len(items)
        self._create(typecode_or_type, items, length, lock, space, name)

    def __len__(self):
        return self._len

    def _index(self, i):
        i = operator.index(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("invalid index")
        return i

    def _slice_values(self, s):
        start, stop, step = s.indices(self._len)
        if step == 1:
            return self._read(start, stop - start)
        rng = range(start, stop, step)
        if not rng:
            return []
        lo, hi = min(rng), max(rng)
        chunk = self._read(lo, hi - lo + 1)
        return [chunk[j - lo] for j in rng]

    def __getitem__(self, i):
        if isinstance(i, slice):
            with self._guard:
                values = self._slice_values(i)
            return bytes(values) if self._code == "c" else values
        return self._get(self._index(i))

    def __setitem__(self, i, value):
        if not isinstance(i, slice):
            self._set(self._index(i), value)
            return
        start, stop, step = i.indices(self._len)
        rng = range(start, stop, step)
        if self._code == "c" and isinstance(value, (bytes, bytearray)):
            values = list(value)
        else:
            values = [_to_c(self._code, self._ctype, v) for v in value]
        if len(values) != len(rng):
            raise ValueError("Can only assign sequence of same size")
        if not rng:
            return
        if step == 1:
            with self._guard:
                self._write(start, values)
            return
        with self._hold():
            lo, hi = min(rng), max(rng)
            chunk = self._read(lo, hi - lo + 1)
            for j, v in zip(rng, values):
                chunk[j - lo] = v
            self._write(lo, chunk)

    def _hold(self):
        # Read-modify-write of a strided slice: hold whichever lock guards the array.
        if self._guard is not _NO_LOCK:
            return self._guard
        return self._lock if self._lock is not None else _NO_LOCK

    def __iter__(self):
        return iter(self.tolist())

    def tolist(self):
        """The items as a list (one consistent snapshot, under the lock)."""
        with self._guard:
            values = self._read(0, self._len)
        return [bytes((x,)) for x in values] if self._code == "c" else values

    # 'c' arrays: ctypes' c_char array attributes.
    @property
    def raw(self):
        self._need_chars("raw")
        return self[:]

    @raw.setter
    def raw(self, data):
        self._need_chars("raw")
        data = bytes(data)
        if len(data) > self._len:
            raise ValueError("byte string too long")
        self[: len(data)] = data

    @property
    def value(self):
        self._need_chars("value")
        return self[:].split(b"\0", 1)[0]

    @value.setter
    def value(self, data):
        self._need_chars("value")
        data = bytes(data)
        if len(data) > self._len:
            raise ValueError("byte string too long")
        if len(data) < self._len:
            data += b"\0"
        self[: len(data)] = data

    def _need_chars(self, what):
        if self._code != "c":
            raise AttributeError(f"'{what}' is only for Array('c', ...)")

    def load(self, i):
        """Item ``i``, read atomically without the lock (integer types)."""
        return self._load(self._index(i))

    def store(self, i, v):
        """Stores ``v`` into item ``i`` atomically without the lock (integer types)."""
        self._store(self._index(i), v)

    def fetch_add(self, i, delta=1):
        """Adds ``delta`` to item ``i`` atomically without the lock; returns the previous value."""
        return self._fetch_add(self._index(i), delta)

    def compare_exchange(self, i, expected, desired):
        """Atomically replaces item ``i`` with ``desired`` if it equals ``expected``; returns
        ``(swapped, value found)``."""
        return self._compare_exchange(self._index(i), expected, desired)

    def __repr__(self):
        return f"<weft.multiprocessing.Array({self._code!r}, {self[:]!r})>"


def RawArray(typecode_or_type, size_or_initializer, *, space=None, name=None):
    """``multiprocessing.RawArray``: an ``Array`` without a lock."""
    return Array(typecode_or_type, size_or_initializer, lock=False, space=space, name=name)


# --- Dict and List -------------------------------------------------------------------------


class _PickleCodec:
    __slots__ = ()
    name = "pickle"

    @staticmethod
    def dumps(obj):
        return _pickle.dumps(obj, protocol=_pickle.HIGHEST_PROTOCOL)

    loads = staticmethod(_pickle.loads)


class _BytesCodec:
    __slots__ = ()
    name = "bytes"

    @staticmethod
    def dumps(obj):
        if isinstance(obj, str):
            raise TypeError("codec 'bytes' stores bytes-like objects, not str")
        return bytes(memoryview(obj))

    @staticmethod
    def loads(data):
        return data


class _StrCodec:
    __slots__ = ()
    name = "str"

    @staticmethod
    def dumps(obj):
        if not isinstance(obj, str):
            raise TypeError(f"codec 'str' stores str, not {type(obj).__name__}")
        return obj.encode("utf-8")

    @staticmethod
    def loads(data):
        return data.decode("utf-8")


_CODECS = {"pickle": _PickleCodec(), "bytes": _BytesCodec(), "str": _StrCodec()}


def _codec(spec):
    if isinstance(spec, str):
        try:
            return spec, _CODECS[spec]
        except KeyError:
            raise ValueError(f"unknown codec {spec!r}: use 'pickle', 'bytes', 'str' or an object with dumps/loads") from None
    if not (hasattr(spec, "dumps") and hasattr(spec, "loads")):
        raise TypeError("a codec is 'pickle', 'bytes', 'str' or an object with dumps() and loads()")
    return spec, spec


def _encode(codec, obj) -> bytes:
    data = codec.dumps(obj)
    if isinstance(data, str):
        data = data.encode("utf-8")
    return bytes(data)


def _take(pp) -> bytes:
    """The bytes of the ``weft_bytes *`` in ``pp[0]``, which is freed."""
    b = pp[0]
    try:
        n = lib.weft_bytes_len(b)
        return ffi.unpack(ffi.cast("char *", lib.weft_bytes_data(b)), n) if n else b""
    finally:
        lib.weft_bytes_free(b)


_MISSING = object()


class _Container(_Shared):
    __slots__ = ("_codec_spec", "_codec")

    def _set_codec(self, codec):
        self._codec_spec, self._codec = _codec(codec)

    @classmethod
    def open(cls, space, name, *, codec="pickle"):
        """Opens the shared object ``name`` in ``space``; ``codec`` as the constructor's."""
        obj = super().open(space, name)
        obj._set_codec(codec)
        return obj

    @classmethod
    def from_token(cls, token, codec="pickle"):
        obj = super().from_token(token)
        obj._set_codec(codec)
        return obj

    def __reduce__(self):
        return _reduce(self, type(self), self.token(), self._codec_spec)

    def _len(self, fn):
        n = ffi.new("size_t *")
        _raise(fn(self._ptr, n))
        return int(n[0])


class Dict(_Container, _abc.MutableMapping):
    """A dict shared between processes (``multiprocessing.Manager().dict()`` without a manager
    process): ``Dict(mapping_or_iterable=(), *, space=None, name=None, codec="pickle")``.

    Keys and values are stored as bytes: ``codec="pickle"`` (the default; any picklable key
    and value — two keys are the same key when they pickle to the same bytes, so ``1`` and
    ``1.0`` are different keys here), ``"bytes"`` (bytes-like in, ``bytes`` out: what a C
    program sees), ``"str"`` (UTF-8 text), or an object with ``dumps(obj)`` and
    ``loads(data)``. Each operation — ``d[k]``, ``d[k] = v``, ``del d[k]``, ``in``, ``len``,
    ``get``, ``pop``, ``setdefault``, ``clear``, ``items()`` — is atomic; ``keys()``,
    ``values()`` and ``items()`` return list snapshots (as a manager's dict proxy does);
    ``update`` and ``popitem`` are several operations. A process killed in the middle of an
    update leaves the dict as it was before or after it."""

    __slots__ = ()
    _KIND = "mp_dict"
    _CTYPE = "weft_dict"
    _free = lib.weft_dict_free
    _token_fn = lib.weft_dict_token
    _from_token_fn = lib.weft_dict_from_token
    _open_fn = lib.weft_dict_open

    def __init__(self, mapping_or_iterable=(), *, space=None, name=None, codec="pickle", **kwargs):
        self._set_codec(codec)
        _init_named(self, lib.weft_dict_new_in, space=space, name=name)
        self.update(mapping_or_iterable, **kwargs)

    def _key(self, key):
        return _encode(self._codec, key)

    def __getitem__(self, key):
        k = self._key(key)
        out = ffi.new("weft_bytes **")
        st = lib.weft_dict_get(self._ptr, k, len(k), out)
        if st != _OK:
            if st == _NOT_FOUND:
                raise KeyError(key)
            _raise(st)
        return self._codec.loads(_take(out))

    def __setitem__(self, key, value):
        k = self._key(key)
        v = _encode(self._codec, value)
        _raise(lib.weft_dict_set(self._ptr, k, len(k), v, len(v)))

    def __delitem__(self, key):
        k = self._key(key)
        st = lib.weft_dict_delete(self._ptr, k, len(k))
        if st != _OK:
            if st == _NOT_FOUND:
                raise KeyError(key)
            _raise(st)

    def __contains__(self, key):
        try:
            k = self._key(key)
        except TypeError:
            return False
        found = ffi.new("bool *")
        _raise(lib.weft_dict_contains(self._ptr, k, len(k), found))
        return bool(found[0])

    def __len__(self):
        return self._len(lib.weft_dict_len)

    def _raw_items(self):
        out = ffi.new("weft_bytes **")
        _raise(lib.weft_dict_items(self._ptr, out))
        data = _take(out)
        items = []
        pos = 0
        while pos < len(data):
            klen, vlen = _struct.unpack_from("=QQ", data, pos)
            pos += 16
            items.append((data[pos : pos + klen], data[pos + klen : pos + klen + vlen]))
            pos += klen + vlen
        return items

    def items(self):
        """A snapshot of the entries, in insertion order (one atomic read)."""
        loads = self._codec.loads
        return [(loads(k), loads(v)) for k, v in self._raw_items()]

    def keys(self):
        loads = self._codec.loads
        return [loads(k) for k, _ in self._raw_items()]

    def values(self):
        loads = self._codec.loads
        return [loads(v) for _, v in self._raw_items()]

    def __iter__(self):
        return iter(self.keys())

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def pop(self, key, default=_MISSING):
        """Removes ``key`` and returns its value, atomically."""
        k = self._key(key)
        out = ffi.new("weft_bytes **")
        st = lib.weft_dict_pop(self._ptr, k, len(k), out)
        if st == _OK:
            return self._codec.loads(_take(out))
        if st == _NOT_FOUND:
            if default is _MISSING:
                raise KeyError(key)
            return default
        _raise(st)

    def popitem(self):
        """Removes and returns the last inserted entry (KeyError when empty)."""
        while True:
            items = self._raw_items()
            if not items:
                raise KeyError("popitem(): dictionary is empty")
            k = items[-1][0]
            out = ffi.new("weft_bytes **")
            st = lib.weft_dict_pop(self._ptr, k, len(k), out)
            if st == _OK:
                return self._codec.loads(k), self._codec.loads(_take(out))
            if st != _NOT_FOUND:  # someone else took it: try again
                _raise(st)

    def setdefault(self, key, default=None):
        """Stores ``default`` under ``key`` unless present; returns the stored value, atomically."""
        k = self._key(key)
        v = _encode(self._codec, default)
        out = ffi.new("weft_bytes **")
        _raise(lib.weft_dict_set_default(self._ptr, k, len(k), v, len(v), out))
        return self._codec.loads(_take(out))

    def clear(self):
        _raise(lib.weft_dict_clear(self._ptr))

    def copy(self):
        """A plain ``dict`` snapshot (as a manager's dict proxy returns)."""
        return dict(self.items())

    def __eq__(self, other):
        if isinstance(other, Dict):
            other = other.copy()
        if isinstance(other, _abc.Mapping):
            return self.copy() == dict(other.items())
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return f"<weft.multiprocessing.Dict {self.copy()!r}>"


class List(_Container, _abc.MutableSequence):
    """A list shared between processes (``multiprocessing.Manager().list()`` without a manager
    process): ``List(iterable=(), *, space=None, name=None, codec="pickle")``; items are stored
    with ``codec`` as in :class:`Dict`. ``l[i]`` (negative too), ``l[i] = v``, ``del l[i]``,
    ``append``, ``insert``, ``pop``, ``len``, ``clear`` and reading a slice or iterating (a
    snapshot) are atomic each; slice assignment and deletion are not supported."""

    __slots__ = ()
    _KIND = "mp_list"
    _CTYPE = "weft_list"
    _free = lib.weft_list_free
    _token_fn = lib.weft_list_token
    _from_token_fn = lib.weft_list_from_token
    _open_fn = lib.weft_list_open

    def __init__(self, iterable=(), *, space=None, name=None, codec="pickle"):
        self._set_codec(codec)
        _init_named(self, lib.weft_list_new_in, space=space, name=name)
        self.extend(iterable)

    @staticmethod
    def _index(i):
        i = operator.index(i)
        if not -(2**63) <= i < 2**63:
            raise IndexError("list index out of range")
        return i

    def _snapshot(self):
        out = ffi.new("weft_bytes **")
        _raise(lib.weft_list_items(self._ptr, out))
        data = _take(out)
        items = []
        pos = 0
        loads = self._codec.loads
        while pos < len(data):
            (n,) = _struct.unpack_from("=Q", data, pos)
            pos += 8
            items.append(loads(data[pos : pos + n]))
            pos += n
        return items

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._snapshot()[i]
        out = ffi.new("weft_bytes **")
        st = lib.weft_list_get(self._ptr, self._index(i), out)
        if st != _OK:
            _raise(st, {_NOT_FOUND: (IndexError, "list index out of range")})
        return self._codec.loads(_take(out))

    def __setitem__(self, i, value):
        if isinstance(i, slice):
            raise TypeError("weft.multiprocessing.List does not support slice assignment")
        v = _encode(self._codec, value)
        _raise(lib.weft_list_set(self._ptr, self._index(i), v, len(v)),
               {_NOT_FOUND: (IndexError, "list assignment index out of range")})

    def __delitem__(self, i):
        if isinstance(i, slice):
            raise TypeError("weft.multiprocessing.List does not support slice deletion")
        _raise(lib.weft_list_pop(self._ptr, self._index(i), ffi.NULL),
               {_NOT_FOUND: (IndexError, "list assignment index out of range")})

    def __len__(self):
        return self._len(lib.weft_list_len)

    def __iter__(self):
        return iter(self._snapshot())

    def append(self, value):
        v = _encode(self._codec, value)
        _raise(lib.weft_list_append(self._ptr, v, len(v)))

    def insert(self, i, value):
        v = _encode(self._codec, value)
        i = max(-(2**63), min(operator.index(i), 2**63 - 1))  # insert clamps, as Python's
        _raise(lib.weft_list_insert(self._ptr, i, v, len(v)))

    def pop(self, i=-1):
        """Removes and returns item ``i`` (the last by default), atomically."""
        out = ffi.new("weft_bytes **")
        st = lib.weft_list_pop(self._ptr, self._index(i), out)
        if st != _OK:
            if st == _NOT_FOUND:
                raise IndexError("pop from empty list" if len(self) == 0 else "pop index out of range")
            _raise(st)
        return self._codec.loads(_take(out))

    def clear(self):
        _raise(lib.weft_list_clear(self._ptr))

    def copy(self):
        """A plain ``list`` snapshot."""
        return self._snapshot()

    def __eq__(self, other):
        if isinstance(other, List):
            other = other._snapshot()
        if isinstance(other, list):
            return self._snapshot() == other
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return f"<weft.multiprocessing.List {self._snapshot()!r}>"


# --- Queue, JoinableQueue, SimpleQueue (implemented in weft.queue) -----------------------


class Queue(_SharedQueue):
    """``multiprocessing.Queue(maxsize=0)``: a FIFO queue in a space, for any number of
    producer and consumer processes (and threads). ``put``/``get(block=True, timeout=None)``,
    ``put_nowait``/``get_nowait``, ``qsize``, ``empty``, ``full``, ``close``; ``queue.Empty``
    and ``queue.Full`` as multiprocessing's. There is no feeder thread: when ``put`` returns
    the item is in shared memory, so ``join_thread()`` and ``cancel_join_thread()`` do
    nothing, and a process killed at any instant loses no item it put and breaks nothing for
    the others. Objects are pickled (multiprocessing's pickler, highest protocol).

    Keywords (weft): ``space=``/``name=`` as for the locks (default: the default space,
    unnamed), ``codec=`` ("pickle"; "bytes" puts and gets bytes as they are, for a C peer;
    "str"; an object with ``dumps``/``loads``), ``max_bytes=`` (bytes of item storage, which
    also bounds the queue; default 1 MiB; a larger item is ValueError). ``Queue.open(space,
    name, codec=...)`` opens a named queue made by any process in any language;
    ``shutdown(immediate=False)`` as Python 3.13's ``queue.Queue.shutdown`` (then
    ``weft.queue.ShutDown``); ``await q.async_get()`` for asyncio. Pickled objects (process
    arguments, items of another queue) reach children of every start method."""

    __slots__ = ()
    _PUBLIC = True


class JoinableQueue(Queue):
    """``multiprocessing.JoinableQueue(maxsize=0)``: a :class:`Queue` that counts unfinished
    tasks across processes: ``task_done()`` (ValueError when called too many times) and
    ``join()``."""

    __slots__ = ()
    _PUBLIC = True
    _C_JOINABLE = True

    def task_done(self):
        """Marks one task taken with ``get`` done (in any process)."""
        self._task_done()

    def join(self):
        """Blocks until every item put (by any process) has been marked done."""
        self._join()


class SimpleQueue(_SharedQueue):
    """``multiprocessing.SimpleQueue()``: an unbounded FIFO queue; ``put(obj)``, ``get()``,
    ``empty()``, ``close()`` (and, as for :class:`Queue`, the ``space=``, ``name=``,
    ``codec=``, ``max_bytes=`` keywords, ``get(block, timeout)``, ``get_nowait``, ``qsize``,
    ``async_get``)."""

    __slots__ = ()
    _PUBLIC = True
    _C_KIND = CONSTANTS["WEFT_QUEUE_SIMPLE"]

    def __init__(self, *, space=None, name=None, codec="pickle", max_bytes=None):
        super().__init__(0, space=space, name=name, codec=codec, max_bytes=max_bytes)


for _cls in (Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier, Value, Array, Dict, List,
             Queue, JoinableQueue, SimpleQueue):
    _cls.__module__ = __name__
del _cls
