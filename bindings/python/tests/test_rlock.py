"""RLock: the same assertions against threading.RLock and weft.RLock."""

import re
import threading
import time

import pytest

from _helpers import wait_until


def test_recursion(mod):
    lock = mod.RLock()
    assert lock._recursion_count() == 0
    for depth in range(1, 6):
        assert lock.acquire() is True
        assert lock._recursion_count() == depth
    assert lock._is_owned()
    for depth in range(4, -1, -1):
        lock.release()
        assert lock._recursion_count() == depth
    assert not lock._is_owned()
    with pytest.raises(RuntimeError, match="^cannot release un-acquired lock$"):
        lock.release()


def test_owner_never_blocks(mod):
    lock = mod.RLock()
    lock.acquire()
    assert lock.acquire(False) is True
    assert lock.acquire(timeout=0) is True
    assert lock.acquire(True, 0.01) is True
    for _ in range(4):
        lock.release()


def test_non_owner_release_raises(mod, threads):
    lock = mod.RLock()
    lock.acquire()

    def other():
        with pytest.raises(RuntimeError, match="^cannot release un-acquired lock$"):
            lock.release()
        assert not lock._is_owned()
        assert lock._recursion_count() == 0
        return lock.acquire(False)

    assert threads.start(other).join() == [False]
    lock.release()


def test_other_thread_waits_until_fully_released(mod, threads):
    lock = mod.RLock()
    lock.acquire()
    lock.acquire()
    got = []
    threads.start(lambda: got.append(lock.acquire(timeout=10)) or lock.release())
    time.sleep(0.02)
    lock.release()
    time.sleep(0.05)
    assert got == []  # still held once
    lock.release()
    threads.join()
    assert got == [True]


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"blocking": False, "timeout": 1}, ValueError),
        ({"timeout": -5}, ValueError),
        ({"timeout": None}, TypeError),
    ],
)
def test_acquire_argument_errors(mod, kwargs, exc):
    with pytest.raises(exc):
        mod.RLock().acquire(**kwargs)


def test_timeout_lower_bound(mod, threads):
    lock = mod.RLock()

    def other():
        t0 = time.monotonic()
        ok = lock.acquire(timeout=0.05)
        return ok, time.monotonic() - t0

    with lock:
        [(ok, elapsed)] = threads.start(other).join()
    assert ok is False and elapsed >= 0.05


def test_context_manager(mod):
    lock = mod.RLock()
    with lock as a:
        with lock as b:
            assert a is True and b is True
            assert lock._recursion_count() == 2
    assert lock._recursion_count() == 0
    assert not lock._is_owned()


def test_release_save_restore(mod):
    lock = mod.RLock()
    with pytest.raises(RuntimeError):
        lock._release_save()
    lock.acquire()
    lock.acquire()
    state = lock._release_save()
    assert not lock._is_owned()
    assert lock.acquire(False)  # really free
    lock.release()
    lock._acquire_restore(state)
    assert lock._recursion_count() == 2
    lock.release()
    lock.release()
    assert not lock._is_owned()


def test_repr(mod):
    lock = mod.RLock()
    assert re.fullmatch(r"<unlocked [\w.]+ object owner=0 count=0 at 0x[0-9a-f]+>", repr(lock))
    lock.acquire()
    lock.acquire()
    me = threading.get_ident()
    assert re.fullmatch(rf"<locked [\w.]+ object owner={me} count=2 at 0x[0-9a-f]+>", repr(lock))
    lock.release()
    lock.release()


def test_contention_exact(mod, threads):
    lock = mod.RLock()
    counter = [0]

    def work():
        for _ in range(5_000):
            with lock:
                with lock:
                    counter[0] += 1

    threads.start(work, n=4).join()
    assert counter[0] == 20_000


def test_rlock_in_threading_condition():
    """threading.Condition uses an RLock's _release_save/_acquire_restore/_is_owned."""
    import weft

    lock = weft.RLock()
    cond = threading.Condition(lock)
    results = []

    def waiter():
        with cond:
            with cond:  # two levels: wait must release both
                results.append("waiting")
                results.append(cond.wait(10))
                results.append(lock._recursion_count())

    t = threading.Thread(target=waiter)
    t.start()
    wait_until(lambda: results)
    with cond:
        cond.notify()
    t.join(10)
    assert results == ["waiting", True, 2]


def test_repr_tracks_owner_across_condition_wait(mod, threads):
    """While a thread waits on a Condition over its RLock, another may own the lock; afterwards
    the waiter owns it again at its old depth."""
    lock = mod.RLock()
    cond = mod.Condition(lock)
    seen = []

    def other():
        with cond:
            seen.append(repr(lock))
            cond.notify()

    with cond:
        with cond:
            threads.start(other)
            assert cond.wait(10)
            me = threading.get_ident()
            assert re.search(rf"^<locked .* owner={me} count=2 at", repr(lock))
            assert lock._recursion_count() == 2
    threads.join()
    assert re.search(r"owner=\d+ count=1 at", seen[0]) and f"owner={me} " not in seen[0]
    assert repr(lock).startswith("<unlocked")
