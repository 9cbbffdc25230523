"""Condition: the same assertions against threading.Condition and weft.Condition."""

import collections
import re
import time
import warnings

import pytest

from _helpers import wait_until


@pytest.fixture(params=["default", "Lock", "RLock"])
def make_cond(request, mod):
    """Conditions over each kind of lock of the implementation under test."""
    if request.param == "default":
        return lambda: mod.Condition()
    return lambda: mod.Condition(getattr(mod, request.param)())


def test_wait_and_notify_need_the_lock(make_cond):
    cond = make_cond()
    with pytest.raises(RuntimeError, match="^cannot wait on un-acquired lock$"):
        cond.wait()
    with pytest.raises(RuntimeError, match="^cannot wait on un-acquired lock$"):
        cond.wait(0.01)
    with pytest.raises(RuntimeError, match="^cannot notify on un-acquired lock$"):
        cond.notify()
    with pytest.raises(RuntimeError, match="^cannot notify on un-acquired lock$"):
        cond.notify(3)
    with pytest.raises(RuntimeError, match="^cannot notify on un-acquired lock$"):
        cond.notify_all()


def test_notify_without_waiters_is_a_no_op(make_cond):
    cond = make_cond()
    with cond:
        cond.notify()
        cond.notify(5)
        cond.notify(0)
        cond.notify(-1)
        cond.notify_all()


def test_context_manager_and_acquire(make_cond):
    cond = make_cond()
    with cond as entered:
        assert entered is True
    assert cond.acquire() is True
    cond.release()
    assert cond.acquire(False) is True
    cond.release()


def test_wait_timeout_returns_false_after_at_least_timeout(make_cond):
    cond = make_cond()
    with cond:
        t0 = time.monotonic()
        assert cond.wait(0.05) is False
        assert time.monotonic() - t0 >= 0.05
        assert cond.wait(0) is False
        assert cond.wait(-1) is False
        # The lock is held again after each wait.
        cond.notify()


def test_wait_for_returns_predicate_value(make_cond):
    cond = make_cond()
    with cond:
        assert cond.wait_for(lambda: "ready") == "ready"
        t0 = time.monotonic()
        assert cond.wait_for(lambda: [], timeout=0.05) == []
        assert time.monotonic() - t0 >= 0.05
        assert cond.wait_for(lambda: 0, timeout=0) == 0


def test_wait_for_predicate_exception_propagates(make_cond):
    cond = make_cond()

    def bad():
        raise KeyError("boom")

    with cond:
        with pytest.raises(KeyError):
            cond.wait_for(bad, 1)
    # The lock was released by the with-block despite the exception.
    assert cond.acquire(False)
    cond.release()


def test_producer_consumer(make_cond, threads):
    cond = make_cond()
    items = collections.deque()
    produced = list(range(500))
    consumed = []
    done = object()

    def consumer():
        while True:
            with cond:
                while not items:
                    assert cond.wait(10)
                item = items.popleft()
            if item is done:
                return
            consumed.append(item)

    threads.start(consumer, n=3)
    for i in produced:
        with cond:
            items.append(i)
            cond.notify()
    with cond:
        items.extend([done] * 3)
        cond.notify_all()
    threads.join()
    assert sorted(consumed) == produced


def test_wait_for_with_other_thread_changing_state(make_cond, threads):
    cond = make_cond()
    state = {"n": 0}

    def waiter():
        with cond:
            return cond.wait_for(lambda: state["n"] >= 3 and state["n"], timeout=10)

    threads.start(waiter, n=2)
    for _ in range(3):
        time.sleep(0.01)
        with cond:
            state["n"] += 1
            cond.notify_all()
    assert threads.join() == [3, 3]


def _start_waiters(mod_cond, threads, n, timeout=10):
    """Starts n waiters; returns (woken list, ready counter) once all n are inside wait()."""
    woken = []
    ready = [0]

    def waiter():
        with mod_cond:
            ready[0] += 1
            ok = mod_cond.wait(timeout)
            woken.append(ok)

    threads.start(waiter, n=n)

    def all_waiting():
        # Waiters count themselves while holding the lock and then wait, which releases it:
        # seeing n here, with the lock held, means all n are waiting.
        with mod_cond:
            return ready[0] == n

    wait_until(all_waiting)
    return woken


def test_notify_n_wakes_exactly_n(make_cond, threads):
    cond = make_cond()
    woken = _start_waiters(cond, threads, 5)
    with cond:
        cond.notify(2)
    wait_until(lambda: len(woken) == 2)
    time.sleep(0.1)
    assert woken == [True, True]
    with cond:
        cond.notify()
    wait_until(lambda: len(woken) == 3)
    time.sleep(0.05)
    assert len(woken) == 3
    with cond:
        cond.notify_all()
    threads.join()
    assert woken == [True] * 5


@pytest.mark.parametrize("n", [10, 2**70, float("inf")])
def test_notify_more_than_waiting(make_cond, threads, n):
    cond = make_cond()
    woken = _start_waiters(cond, threads, 2)
    with cond:
        cond.notify(n)
    threads.join()
    assert woken == [True, True]


def test_notify_fractional_counts_like_cpython(make_cond, threads):
    cond = make_cond()
    woken = _start_waiters(cond, threads, 4)
    with cond:
        cond.notify(2.5)  # CPython's loop wakes one while n > 0: three waiters
    wait_until(lambda: len(woken) == 3)
    time.sleep(0.05)
    assert len(woken) == 3
    with cond:
        cond.notify_all()
    threads.join()


def test_rlock_levels_restored_after_wait(mod, threads):
    lock = mod.RLock()
    cond = mod.Condition(lock)
    woken = []

    def waiter():
        with cond:
            with cond:
                with cond:
                    woken.append("in")
                    assert cond.wait(10)
                    woken.append(lock._recursion_count())

    threads.start(waiter)
    wait_until(lambda: woken)
    # The waiter holds three levels, yet wait() released them all.
    assert lock.acquire(timeout=5)
    cond.notify()
    lock.release()
    threads.join()
    assert woken == ["in", 3]


def test_default_lock_is_reentrant(mod):
    cond = mod.Condition()
    with cond:
        assert cond.acquire(False) is True  # an RLock: the owner re-enters
        cond.release()


def test_condition_over_lock_shares_it(mod):
    lock = mod.Lock()
    cond = mod.Condition(lock)
    with cond:
        assert lock.locked()
        assert lock.acquire(False) is False
    assert not lock.locked()
    lock.acquire()
    assert cond.acquire(False) is False
    lock.release()


def test_notifyAll_deprecated(mod):
    cond = mod.Condition()
    with cond:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            cond.notifyAll()
    assert any(issubclass(x.category, DeprecationWarning) for x in w)


def test_repr(mod):
    cond = mod.Condition()
    assert re.fullmatch(r"<Condition\(<unlocked .*RLock object owner=0 count=0 at 0x[0-9a-f]+>, 0\)>", repr(cond))


def test_weft_condition_rejects_foreign_lock():
    import threading

    import weft

    with pytest.raises(TypeError, match="weft.Lock or weft.RLock"):
        weft.Condition(threading.Lock())


def test_notify_wakes_longest_waiting_first(make_cond, threads):
    cond = make_cond()
    order = []
    ready = [0]

    def waiter(i):
        with cond:
            ready[0] += 1
            assert cond.wait(10)
            order.append(i)

    for i in range(4):
        threads.start(waiter, i)

        def waiting(n=i + 1):
            with cond:
                return ready[0] == n

        wait_until(waiting)  # waiter i is inside wait() before i + 1 starts
    for n in range(1, 5):
        with cond:
            cond.notify()
        wait_until(lambda: len(order) == n)
    threads.join()
    assert order == [0, 1, 2, 3]
