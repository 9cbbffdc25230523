"""Semaphore and BoundedSemaphore: the same assertions against threading and weft."""

import re
import time

import pytest

from _helpers import wait_until


def test_counting(mod):
    sem = mod.Semaphore(3)
    assert [sem.acquire(False) for _ in range(4)] == [True, True, True, False]
    sem.release()
    assert sem.acquire(blocking=False) is True
    assert sem.acquire(timeout=0) is False
    sem.release(3)
    assert [sem.acquire(timeout=0.01) for _ in range(4)] == [True, True, True, False]


def test_default_value_is_one(mod):
    sem = mod.Semaphore()
    assert sem.acquire(False) is True
    assert sem.acquire(False) is False
    sem.release()
    assert mod.Semaphore(0).acquire(False) is False


def test_value_errors(mod):
    with pytest.raises(ValueError, match="^semaphore initial value must be >= 0$"):
        mod.Semaphore(-1)
    with pytest.raises(ValueError, match="^semaphore initial value must be >= 0$"):
        mod.BoundedSemaphore(-1)
    sem = mod.Semaphore(0)
    for n in (0, -1):
        with pytest.raises(ValueError, match="^n must be one or more$"):
            sem.release(n)
    with pytest.raises(ValueError, match="^can't specify timeout for non-blocking acquire$"):
        sem.acquire(False, 1)
    with pytest.raises(ValueError, match="^can't specify timeout for non-blocking acquire$"):
        sem.acquire(blocking=False, timeout=0)


def test_negative_timeout_does_not_block(mod):
    sem = mod.Semaphore(0)
    t0 = time.monotonic()
    assert sem.acquire(timeout=-1) is False
    assert time.monotonic() - t0 < 5
    sem.release()
    assert sem.acquire(timeout=-1) is True


def test_timeout_lower_bound(mod):
    sem = mod.Semaphore(0)
    t0 = time.monotonic()
    assert sem.acquire(timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.05


def test_release_n_wakes_n(mod, threads):
    sem = mod.Semaphore(0)
    woken = []

    def worker():
        if sem.acquire(timeout=10):
            woken.append(1)

    threads.start(worker, n=5)
    time.sleep(0.05)
    sem.release(3)
    wait_until(lambda: len(woken) == 3)
    time.sleep(0.05)
    assert len(woken) == 3
    sem.release(2)
    threads.join()
    assert len(woken) == 5
    assert sem.acquire(False) is False


def test_blocked_acquire_released_by_other_thread(mod, threads):
    sem = mod.Semaphore(0)
    threads.start(lambda: sem.acquire())
    time.sleep(0.02)
    sem.release()
    threads.join()


def test_context_manager(mod):
    sem = mod.Semaphore(1)
    with sem as r:
        assert r is True
        assert sem.acquire(False) is False
    assert sem.acquire(False) is True


def test_bounded_over_release(mod):
    sem = mod.BoundedSemaphore(2)
    with pytest.raises(ValueError, match="^Semaphore released too many times$"):
        sem.release()
    sem.acquire()
    sem.acquire()
    with pytest.raises(ValueError, match="^Semaphore released too many times$"):
        sem.release(3)  # nothing is added
    sem.release(2)
    with pytest.raises(ValueError, match="^Semaphore released too many times$"):
        sem.release()
    assert [sem.acquire(False) for _ in range(3)] == [True, True, False]


def test_unbounded_may_exceed_initial_value(mod):
    sem = mod.Semaphore(1)
    sem.release(5)
    assert sum(sem.acquire(False) for _ in range(10)) == 6


def test_repr_and_value(mod):
    sem = mod.Semaphore(2)
    assert re.fullmatch(r"<\w+\.Semaphore at 0x[0-9a-f]+: value=2>", repr(sem))
    sem.acquire()
    assert sem._value == 1
    b = mod.BoundedSemaphore(3)
    b.acquire()
    assert re.fullmatch(r"<\w+\.BoundedSemaphore at 0x[0-9a-f]+: value=2/3>", repr(b))
    assert isinstance(b, mod.Semaphore)


def test_limits_concurrency(mod, threads):
    """The tutorial's "two stalls, five users": at most `value` threads inside at once."""
    sem = mod.Semaphore(2)
    lock = mod.Lock()
    inside = [0]
    peak = [0]

    def user(i):
        with sem:
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.005 * (i % 3))
            with lock:
                inside[0] -= 1
        return i

    for i in range(5):
        threads.start(user, i)
    assert sorted(threads.join()) == [0, 1, 2, 3, 4]
    assert 1 <= peak[0] <= 2
    assert inside[0] == 0


def test_weft_semaphore_value_limits():
    import weft

    with pytest.raises(OverflowError):
        weft.Semaphore(2**32)
    sem = weft.Semaphore(2**32 - 1)
    with pytest.raises(OverflowError):
        sem.release()
    assert sem._value == 2**32 - 1
    with pytest.raises(TypeError):
        weft.Semaphore(1.5)
