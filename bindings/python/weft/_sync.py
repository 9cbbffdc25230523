"""Drop-in replacements for ``threading``'s synchronisation primitives, built on libweft.

Each class owns one C object, created in ``__init__`` and freed exactly once when the Python
object is garbage-collected (``ffi.gc``). Every blocking call is one call into C; cffi releases
the GIL around it, so other Python threads run while this one waits.

Arguments, return values, exceptions and messages follow CPython 3.11's ``threading``:

* ``Lock``/``RLock.acquire(blocking=True, timeout=-1)`` -> bool; ``-1`` waits forever; a timeout
  with ``blocking=False`` or a negative timeout other than -1 is ValueError.
* ``Semaphore.acquire``, ``Event.wait``, ``Condition.wait``, ``Barrier.wait`` take seconds or
  ``None`` (forever); a timeout <= 0 tries once without blocking, as CPython does.
* Timeouts larger than ``threading.TIMEOUT_MAX`` raise OverflowError, as CPython does.
"""

from __future__ import annotations

import math
import operator
import threading
import warnings
from threading import BrokenBarrierError
from time import monotonic as _time

from ._errors import error_for
from ._native import CONSTANTS, FOREVER, ffi, lib, managed

__all__ = [
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Condition",
    "Barrier",
    "BrokenBarrierError",
    "TIMEOUT_MAX",
]

TIMEOUT_MAX = threading.TIMEOUT_MAX

_OK = CONSTANTS["WEFT_OK"]
_TIMEOUT = CONSTANTS["WEFT_TIMEOUT"]
_WOULD_BLOCK = CONSTANTS["WEFT_WOULD_BLOCK"]
_BROKEN = CONSTANTS["WEFT_BROKEN"]
_NOT_OWNER = CONSTANTS["WEFT_NOT_OWNER"]
_INVALID_STATE = CONSTANTS["WEFT_INVALID_STATE"]
_INVALID_ARGUMENT = CONSTANTS["WEFT_INVALID_ARGUMENT"]
_TASK_FAILED = CONSTANTS["WEFT_TASK_FAILED"]
_U32_MAX = 2**32 - 1
_SIZE_MAX = 2 ** (8 * ffi.sizeof("size_t")) - 1

_get_ident = threading.get_ident

# The C functions, looked up once.
_lock_new = lib.weft_lock_new
_lock_acquire = lib.weft_lock_acquire
_lock_release = lib.weft_lock_release
_lock_locked = lib.weft_lock_locked
_rlock_new = lib.weft_rlock_new
_rlock_acquire = lib.weft_rlock_acquire
_rlock_release = lib.weft_rlock_release
_rlock_is_owned = lib.weft_rlock_is_owned
_rlock_depth = lib.weft_rlock_depth
_sem_acquire = lib.weft_semaphore_acquire
_sem_release = lib.weft_semaphore_release
_sem_value = lib.weft_semaphore_value
_event_set = lib.weft_event_set
_event_clear = lib.weft_event_clear
_event_is_set = lib.weft_event_is_set
_event_wait = lib.weft_event_wait
_cond_wait = lib.weft_condition_wait
_cond_notify = lib.weft_condition_notify
_cond_notify_all = lib.weft_condition_notify_all
_barrier_wait = lib.weft_barrier_wait


def _create(kind: str, ctype: str, new_fn, free_fn, *args, keepalive=None):
    out = ffi.new(ctype + " **")
    st = new_fn(*args, out)
    if st != _OK:
        raise error_for(st)
    return managed(kind, out[0], free_fn, keepalive)


# --- timeouts -----------------------------------------------------------------------------


def _seconds(timeout):
    """A timeout as CPython's time conversion reads it: a float, or an integer (__index__)."""
    if isinstance(timeout, float):
        if timeout != timeout:
            raise ValueError("Invalid value NaN (not a number)")
        return timeout
    return operator.index(timeout)


def _ns(seconds) -> int:
    """Positive seconds -> nanoseconds, rounded up (a wait never ends early)."""
    if seconds > TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")
    if isinstance(seconds, int):
        return seconds * 1_000_000_000
    return max(1, math.ceil(seconds * 1e9))


def _lock_timeout(blocking, timeout) -> int:
    """Lock/RLock ``acquire(blocking, timeout)`` -> weft timeout (CPython's rules)."""
    t = _seconds(timeout)
    if t == -1:  # the default: forever (or one try when not blocking)
        return FOREVER if blocking else 0
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if t < 0:
        raise ValueError("timeout value must be positive")
    if t == 0:
        return 0
    return _ns(t)


def _wait_timeout(timeout) -> int:
    """``wait(timeout)`` of Event/Condition/Semaphore/Barrier -> weft timeout: None waits
    forever, <= 0 tries once (as CPython's Condition.wait does)."""
    if timeout is None:
        return FOREVER
    if timeout > 0:
        return _ns(_seconds(timeout))
    return 0


def _repr_address(obj) -> str:
    return f"{id(obj):#x}"


class _NoCopy:
    """Objects owning a C handle cannot be pickled or copied (nor can threading's)."""

    __slots__ = ()

    def __reduce_ex__(self, protocol):
        raise TypeError(f"cannot pickle '{type(self).__module__}.{type(self).__qualname__}' object")


# --- Lock ---------------------------------------------------------------------------------


class Lock(_NoCopy):
    """A primitive lock (``threading.Lock``): not re-entrant, any thread may release it."""

    __slots__ = ("_ptr", "__weakref__")

    def __init__(self):
        self._ptr = _create("lock", "weft_lock", _lock_new, lib.weft_lock_free)

    def acquire(self, blocking=True, timeout=-1):
        """Acquires the lock; True on success, False when it could not within the timeout."""
        st = _lock_acquire(self._ptr, _lock_timeout(blocking, timeout))
        if st == _OK:
            return True
        if st == _WOULD_BLOCK or st == _TIMEOUT:
            return False
        raise error_for(st)

    def release(self):
        """Releases the lock; RuntimeError when it is not locked."""
        st = _lock_release(self._ptr)
        if st != _OK:
            raise error_for(st, {_INVALID_STATE: (RuntimeError, "release unlocked lock")})

    def locked(self):
        """True while the lock is held."""
        return bool(_lock_locked(self._ptr))

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()

    # The old names _thread.lock still has.
    acquire_lock = acquire
    release_lock = release
    locked_lock = locked

    def _is_owned(self):
        # Condition's rule for a Lock, which has no owner: "locked" counts as owned.
        return self.locked()

    def _at_fork_reinit(self):
        # After fork() in the child: a fresh, unlocked lock (the old handle is freed).
        self._ptr = _create("lock", "weft_lock", _lock_new, lib.weft_lock_free)

    def __repr__(self):
        state = "locked" if self.locked() else "unlocked"
        return f"<{state} {type(self).__module__}.{type(self).__qualname__} object at {_repr_address(self)}>"


# --- RLock --------------------------------------------------------------------------------


class RLock(_NoCopy):
    """A re-entrant lock (``threading.RLock``): the owner may acquire it again and must release
    it as many times; only the owner may release it."""

    # _owner/_count mirror the C state for __repr__ only; only the owning thread writes them.
    __slots__ = ("_ptr", "_owner", "_count", "__weakref__")

    def __init__(self):
        self._ptr = _create("rlock", "weft_rlock", _rlock_new, lib.weft_rlock_free)
        self._owner = None
        self._count = 0

    def acquire(self, blocking=True, timeout=-1):
        """Acquires the lock (one more level for its owner); True on success, False when it
        could not within the timeout."""
        st = _rlock_acquire(self._ptr, _lock_timeout(blocking, timeout))
        if st == _OK:
            me = _get_ident()
            if self._owner == me:
                self._count += 1
            else:
                self._owner = me
                self._count = 1
            return True
        if st == _WOULD_BLOCK or st == _TIMEOUT:
            return False
        raise error_for(st, {_INVALID_ARGUMENT: (OverflowError, "Internal lock count overflowed")})

    def release(self):
        """Releases one level; RuntimeError when the caller does not own the lock."""
        if self._owner == _get_ident():
            # Clear the mirror before the C release: once released, another thread may own it.
            if self._count <= 1:
                self._owner = None
                self._count = 0
            else:
                self._count -= 1
        st = _rlock_release(self._ptr)
        if st != _OK:
            raise error_for(st, {_NOT_OWNER: (RuntimeError, "cannot release un-acquired lock")})

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()

    def _is_owned(self):
        return bool(_rlock_is_owned(self._ptr))

    def _at_fork_reinit(self):
        self._ptr = _create("rlock", "weft_rlock", _rlock_new, lib.weft_rlock_free)
        self._owner = None
        self._count = 0

    def _recursion_count(self):
        return int(_rlock_depth(self._ptr))

    def _release_save(self):
        # For threading.Condition(weft.RLock()): release every level, return the state.
        depth = int(_rlock_depth(self._ptr))
        if depth == 0:
            raise RuntimeError("cannot release un-acquired lock")
        owner = self._owner
        self._owner = None
        self._count = 0
        for _ in range(depth):
            st = _rlock_release(self._ptr)
            if st != _OK:
                raise error_for(st)
        return (depth, owner)

    def _acquire_restore(self, state):
        depth, _owner = state
        for _ in range(depth):
            st = _rlock_acquire(self._ptr, FOREVER)
            if st != _OK:
                raise error_for(st)
        self._owner = _get_ident()
        self._count = depth

    def __repr__(self):
        owner = self._owner
        state = "locked" if owner is not None else "unlocked"
        return (
            f"<{state} {type(self).__module__}.{type(self).__qualname__} object "
            f"owner={owner or 0} count={self._count if owner is not None else 0} at {_repr_address(self)}>"
        )


# --- Semaphore ----------------------------------------------------------------------------


def _check_count(value, what):
    value = operator.index(value)
    if value > _U32_MAX:
        raise OverflowError(f"{what} larger than weft's maximum of {_U32_MAX}")
    return value


class Semaphore(_NoCopy):
    """A counting semaphore (``threading.Semaphore``)."""

    __slots__ = ("_ptr", "__weakref__")
    _release_errors = {_INVALID_ARGUMENT: OverflowError}

    def __init__(self, value=1):
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        value = _check_count(value, "semaphore initial value")
        self._ptr = self._new(value)

    def _new(self, value):
        return _create("semaphore", "weft_semaphore", lib.weft_semaphore_new, lib.weft_semaphore_free, value)

    def acquire(self, blocking=True, timeout=None):
        """Takes one permit; True on success, False when none came within the timeout."""
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        st = _sem_acquire(self._ptr, _wait_timeout(timeout) if blocking else 0)
        if st == _OK:
            return True
        if st == _WOULD_BLOCK or st == _TIMEOUT:
            return False
        raise error_for(st)

    __enter__ = acquire

    def release(self, n=1):
        """Adds ``n`` permits, waking up to ``n`` waiters."""
        if n < 1:
            raise ValueError("n must be one or more")
        n = _check_count(n, "release count")
        st = _sem_release(self._ptr, n)
        if st != _OK:
            raise error_for(st, self._release_errors)

    def __exit__(self, t, v, tb):
        self.release()

    @property
    def _value(self):
        return int(_sem_value(self._ptr))

    def __repr__(self):
        cls = type(self)
        return f"<{cls.__module__}.{cls.__qualname__} at {_repr_address(self)}: value={self._value}>"


class BoundedSemaphore(Semaphore):
    """A semaphore that may not be released above its initial value
    (``threading.BoundedSemaphore``): ValueError("Semaphore released too many times")."""

    __slots__ = ("_initial_value",)
    _release_errors = {
        _INVALID_ARGUMENT: OverflowError,
        _INVALID_STATE: (ValueError, "Semaphore released too many times"),
    }

    def __init__(self, value=1):
        Semaphore.__init__(self, value)
        self._initial_value = value

    def _new(self, value):
        return _create(
            "semaphore", "weft_semaphore", lib.weft_semaphore_new_bounded, lib.weft_semaphore_free, value
        )

    def __repr__(self):
        cls = type(self)
        return (
            f"<{cls.__module__}.{cls.__qualname__} at {_repr_address(self)}:"
            f" value={self._value}/{self._initial_value}>"
        )


# --- Event --------------------------------------------------------------------------------


class Event(_NoCopy):
    """A flag threads can wait for (``threading.Event``)."""

    __slots__ = ("_ptr", "__weakref__")

    def __init__(self):
        self._ptr = _create("event", "weft_event", lib.weft_event_new, lib.weft_event_free)

    def is_set(self):
        """True while the flag is set."""
        return bool(_event_is_set(self._ptr))

    def isSet(self):
        """Deprecated alias of is_set()."""
        warnings.warn("isSet() is deprecated, use is_set() instead", DeprecationWarning, stacklevel=2)
        return self.is_set()

    @property
    def _flag(self):
        return self.is_set()

    def _at_fork_reinit(self):
        was_set = self.is_set()
        self._ptr = _create("event", "weft_event", lib.weft_event_new, lib.weft_event_free)
        if was_set:
            self.set()

    def set(self):
        """Sets the flag and wakes every waiter."""
        st = _event_set(self._ptr)
        if st != _OK:
            raise error_for(st)

    def clear(self):
        """Clears the flag."""
        st = _event_clear(self._ptr)
        if st != _OK:
            raise error_for(st)

    def wait(self, timeout=None):
        """Blocks until the flag is set or ``timeout`` seconds pass; returns True when it was
        set, False on timeout."""
        st = _event_wait(self._ptr, _wait_timeout(timeout))
        if st == _OK:
            return True
        if st == _WOULD_BLOCK or st == _TIMEOUT:
            return False
        raise error_for(st)

    def __repr__(self):
        cls = type(self)
        status = "set" if self.is_set() else "unset"
        return f"<{cls.__module__}.{cls.__qualname__} at {_repr_address(self)}: {status}>"


# --- Condition ----------------------------------------------------------------------------


class Condition(_NoCopy):
    """A condition variable (``threading.Condition``) over a ``weft.Lock`` or ``weft.RLock``
    (a new ``weft.RLock`` when ``lock`` is None). ``wait_for`` is CPython's own algorithm on
    top of ``wait``, so the predicate runs as ordinary Python in the waiting thread."""

    def __init__(self, lock=None):
        if lock is None:
            lock = RLock()
        if isinstance(lock, RLock):
            new_fn = lib.weft_condition_new_with_rlock
        elif isinstance(lock, Lock):
            new_fn = lib.weft_condition_new_with_lock
        else:
            raise TypeError(f"weft.Condition needs a weft.Lock or weft.RLock, not {type(lock).__name__}")
        # The C condition holds its own reference to the C lock; self._lock keeps the Python
        # object (and so its handle) alive as long as the condition.
        self._lock = lock
        self._rlock = isinstance(lock, RLock)
        self._new_fn = new_fn
        self._ptr = _create("condition", "weft_condition", new_fn, lib.weft_condition_free, lock._ptr)
        self._nwaiters = 0
        self.acquire = lock.acquire
        self.release = lock.release
        self._is_owned = lock._is_owned
        if isinstance(lock, RLock):
            self._release_save = lock._release_save
            self._acquire_restore = lock._acquire_restore

    def _at_fork_reinit(self):
        self._lock._at_fork_reinit()
        self._ptr = _create("condition", "weft_condition", self._new_fn, lib.weft_condition_free, self._lock._ptr)
        self._nwaiters = 0

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __repr__(self):
        return "<Condition(%s, %d)>" % (self._lock, self._nwaiters)

    def _release_save(self):
        self._lock.release()

    def _acquire_restore(self, x):
        self._lock.acquire()

    def wait(self, timeout=None):
        """Releases the lock, waits until notified or ``timeout`` seconds pass, re-acquires the
        lock; True unless the timeout passed. RuntimeError without the lock."""
        ns = _wait_timeout(timeout)
        lock = self._lock
        saved = None
        if self._rlock and lock._owner == _get_ident():
            # The C wait releases every level and restores them before returning; keep the
            # RLock's Python-side owner/count mirror in step (another thread may own it while
            # this one waits).
            saved = (lock._owner, lock._count)
            lock._owner = None
            lock._count = 0
        self._nwaiters += 1  # guarded by the lock when the caller holds it, as it must
        try:
            st = _cond_wait(self._ptr, ns)
        finally:
            self._nwaiters -= 1
            if saved is not None:
                lock._owner, lock._count = saved
        if st == _OK:
            return True
        if st == _WOULD_BLOCK or st == _TIMEOUT:
            return False
        raise error_for(st, {_NOT_OWNER: (RuntimeError, "cannot wait on un-acquired lock")})

    def wait_for(self, predicate, timeout=None):
        """Waits until ``predicate()`` is true; returns its last value (false on timeout).
        CPython's algorithm, on top of :meth:`wait`."""
        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = _time() + waittime
                else:
                    waittime = endtime - _time()
                    if waittime <= 0:
                        break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n=1):
        """Wakes up to ``n`` waiting threads, longest-waiting first. RuntimeError without the
        lock."""
        # As CPython's loop counts: n = 2.5 wakes three, inf wakes all, n <= 0 none.
        count = 0 if not n > 0 else _SIZE_MAX if n >= _SIZE_MAX else math.ceil(n)
        st = _cond_notify(self._ptr, count)
        if st != _OK:
            raise error_for(st, {_NOT_OWNER: (RuntimeError, "cannot notify on un-acquired lock")})

    def notify_all(self):
        """Wakes every waiting thread. RuntimeError without the lock."""
        st = _cond_notify_all(self._ptr)
        if st != _OK:
            raise error_for(st, {_NOT_OWNER: (RuntimeError, "cannot notify on un-acquired lock")})

    def notifyAll(self):
        """Deprecated alias of notify_all()."""
        warnings.warn("notifyAll() is deprecated, use notify_all() instead", DeprecationWarning, stacklevel=2)
        self.notify_all()


# --- Barrier ------------------------------------------------------------------------------


class _Action:
    """What a barrier's C action callback reaches through its context handle: the Python
    callable, and per thread the exception it raised (re-raised by that thread's wait)."""

    __slots__ = ("action", "local")

    def __init__(self, action):
        self.action = action
        self.local = threading.local()


@ffi.callback("weft_status(void *)", error=_TASK_FAILED)
def _barrier_action(ctx):
    # Runs on the thread that arrived last, inside weft_barrier_wait; cffi takes the GIL.
    box = ffi.from_handle(ctx)
    try:
        box.action()
    except BaseException as e:  # noqa: B902 - re-raised by that thread's wait()
        box.local.error = e
        return _TASK_FAILED
    return _OK


class Barrier(_NoCopy):
    """A barrier for ``parties`` threads (``threading.Barrier``), with an optional ``action``
    run by the last thread to arrive before any is released, and a default ``timeout``."""

    def __init__(self, parties, action=None, timeout=None):
        parties = operator.index(parties)
        if parties < 1:
            raise ValueError("parties must be > 0")
        if parties > _U32_MAX:
            raise OverflowError(f"parties larger than weft's maximum of {_U32_MAX}")
        self._parties = parties
        self._action = action
        self._timeout = timeout
        if action is not None:
            self._box = _Action(action)
            handle = ffi.new_handle(self._box)
            callback = _barrier_action
        else:
            self._box = None
            handle = ffi.NULL
            callback = ffi.NULL
        # The handle (which keeps the box and the action alive) is held by the destructor, so
        # it lives exactly as long as the C barrier that may call back into it.
        self._ptr = _create(
            "barrier", "weft_barrier", lib.weft_barrier_new, lib.weft_barrier_free,
            parties, callback, handle, keepalive=handle,
        )

    def wait(self, timeout=None):
        """Waits until all parties have called wait(); returns this thread's arrival index
        (0 .. parties - 1). BrokenBarrierError when the barrier is or becomes broken (abort,
        reset, a timeout here or in another party); the action's exception in the thread that
        ran it."""
        if timeout is None:
            timeout = self._timeout
        index = ffi.new("uint32_t *")
        st = _barrier_wait(self._ptr, _wait_timeout(timeout), index)
        if st == _OK:
            return index[0]
        box = self._box
        if box is not None:
            error = box.local.__dict__.pop("error", None)
            if error is not None:
                try:
                    raise error
                finally:
                    error = None
        if st == _BROKEN or st == _TIMEOUT or st == _WOULD_BLOCK:
            raise BrokenBarrierError
        raise error_for(st)

    def reset(self):
        """Returns the barrier to its initial state; current waiters get BrokenBarrierError."""
        st = lib.weft_barrier_reset(self._ptr)
        if st != _OK:
            raise error_for(st)

    def abort(self):
        """Breaks the barrier: current and later waiters get BrokenBarrierError."""
        st = lib.weft_barrier_abort(self._ptr)
        if st != _OK:
            raise error_for(st)

    @property
    def parties(self):
        """The number of threads required to trip the barrier."""
        return self._parties

    @property
    def n_waiting(self):
        """The number of threads currently waiting at the barrier."""
        return int(lib.weft_barrier_n_waiting(self._ptr))

    @property
    def broken(self):
        """True when the barrier is broken."""
        return bool(lib.weft_barrier_broken(self._ptr))

    def __repr__(self):
        cls = type(self)
        if self.broken:
            return f"<{cls.__module__}.{cls.__qualname__} at {_repr_address(self)}: broken>"
        return (
            f"<{cls.__module__}.{cls.__qualname__} at {_repr_address(self)}:"
            f" waiters={self.n_waiting}/{self.parties}>"
        )


for _cls in (Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier):
    _cls.__module__ = "weft"
del _cls
