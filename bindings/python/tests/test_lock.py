"""Lock: the same assertions against threading.Lock and weft.Lock."""

import re
import threading
import time

import pytest

from _helpers import wait_until


def test_acquire_release_locked(mod):
    lock = mod.Lock()
    assert lock.locked() is False
    assert lock.acquire() is True
    assert lock.locked() is True
    assert lock.acquire(False) is False
    assert lock.acquire(blocking=False) is False
    assert lock.acquire(timeout=0) is False
    lock.release()
    assert lock.locked() is False
    assert lock.acquire(blocking=False) is True
    lock.release()


def test_release_unlocked_raises(mod):
    lock = mod.Lock()
    with pytest.raises(RuntimeError, match="^release unlocked lock$"):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError, match="^release unlocked lock$"):
        lock.release()


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"blocking": False, "timeout": 1}, ValueError, "can't specify a timeout for a non-blocking call"),
        ({"blocking": False, "timeout": 0}, ValueError, "can't specify a timeout for a non-blocking call"),
        ({"timeout": -2}, ValueError, "timeout value must be positive"),
        ({"timeout": -0.5}, ValueError, "timeout value must be positive"),
        ({"timeout": None}, TypeError, "'NoneType' object cannot be interpreted as an integer"),
        ({"timeout": "1"}, TypeError, "'str' object cannot be interpreted as an integer"),
        ({"timeout": float("nan")}, ValueError, "Invalid value NaN (not a number)"),
        ({"timeout": threading.TIMEOUT_MAX * 2}, OverflowError, None),
    ],
)
def test_acquire_argument_errors(mod, kwargs, exc, message):
    lock = mod.Lock()
    with pytest.raises(exc) as info:
        lock.acquire(**kwargs)
    if message is not None:
        assert str(info.value) == message
    assert not lock.locked()


def test_minus_one_means_forever_and_non_blocking_default(mod):
    lock = mod.Lock()
    assert lock.acquire(True, -1) is True
    assert lock.acquire(False, -1) is False
    assert lock.acquire(False, -1.0) is False
    lock.release()
    assert lock.acquire(timeout=-1.0) is True
    lock.release()


def test_timeout_lower_bound(mod):
    lock = mod.Lock()
    lock.acquire()
    for timeout in (0.05, 0.1):
        t0 = time.monotonic()
        assert lock.acquire(timeout=timeout) is False
        assert time.monotonic() - t0 >= timeout
    lock.release()


def test_not_reentrant(mod):
    lock = mod.Lock()
    lock.acquire()
    assert lock.acquire(timeout=0.01) is False  # waits for itself until the timeout
    lock.release()


def test_release_from_another_thread(mod, threads):
    lock = mod.Lock()
    lock.acquire()
    threads.start(lock.release).join()
    assert not lock.locked()


def test_waiter_wakes_when_released(mod, threads):
    lock = mod.Lock()
    lock.acquire()
    got = []
    threads.start(lambda: got.append(lock.acquire(timeout=10)))
    time.sleep(0.05)
    assert got == []
    lock.release()
    threads.join()
    assert got == [True]
    assert lock.locked()
    lock.release()


def test_context_manager(mod):
    lock = mod.Lock()
    with lock as entered:
        assert entered is True
        assert lock.locked()
    assert not lock.locked()
    with pytest.raises(ZeroDivisionError):
        with lock:
            1 / 0
    assert not lock.locked()


def test_old_names(mod):
    lock = mod.Lock()
    assert lock.acquire_lock() is True
    assert lock.locked_lock() is True
    lock.release_lock()
    assert lock.locked_lock() is False


def test_repr(mod):
    lock = mod.Lock()
    assert re.fullmatch(r"<unlocked [\w.]+ object at 0x[0-9a-f]+>", repr(lock))
    lock.acquire()
    assert re.fullmatch(r"<locked [\w.]+ object at 0x[0-9a-f]+>", repr(lock))
    lock.release()


def test_contention_four_threads_exact(mod, threads):
    lock = mod.Lock()
    counter = [0]
    n = 10_000

    def work():
        for _ in range(n):
            with lock:
                # A read-modify-write split by a sleep(0) would lose updates without the lock.
                v = counter[0]
                if _ % 1000 == 0:
                    time.sleep(0)
                counter[0] = v + 1

    threads.start(work, n=4).join()
    assert counter[0] == 4 * n
    assert not lock.locked()


def test_weakref(mod):
    import weakref

    lock = mod.Lock()
    r = weakref.ref(lock)
    assert r() is lock


def test_mutual_exclusion_is_real(mod, threads):
    """While one thread holds the lock, no other is inside the critical section."""
    lock = mod.Lock()
    inside = [0]
    overlap = []

    def work():
        for _ in range(300):
            with lock:
                inside[0] += 1
                if inside[0] != 1:
                    overlap.append(inside[0])
                time.sleep(0)
                inside[0] -= 1

    threads.start(work, n=4).join()
    assert overlap == []


def test_lock_usable_by_threading_condition():
    """threading.Condition accepts any lock: a weft.Lock works inside it."""
    import weft

    cond = threading.Condition(weft.Lock())
    with cond:
        assert cond.wait(0.01) is False
    ready = []

    def waiter():
        with cond:
            ready.append(1)
            return cond.wait(10)

    t = threading.Thread(target=lambda: ready.append(waiter()))
    t.start()
    wait_until(lambda: ready)
    with cond:
        cond.notify()
    t.join(10)
    assert ready == [1, True]
