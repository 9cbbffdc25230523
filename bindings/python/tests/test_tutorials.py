"""The seed programs of the threading tutorials (/work/shared/seeds), with weft's primitives in
place of threading's and their printed results turned into assertions."""

import random
import threading
import time

import weft
from _helpers import JOIN_TIMEOUT, wait_until


def _run_all(threads):
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive()


def test_ten_threads_add_to_a_counter_under_a_lock():
    """Seed 000: ten threads each add 1 to a global 100,000 times under `with lock`."""
    lock = weft.Lock()
    num = 0

    def incre(count):
        nonlocal num
        while count > 0:
            with lock:
                num += 1
            count -= 1

    _run_all([threading.Thread(target=incre, args=(100_000,)) for _ in range(10)])
    assert num == 10 * 100_000


def test_acquire_with_timeout_in_thread_subclass():
    """Seed 000: five Thread subclasses take the mutex with `acquire(1)` and bump a counter."""
    num = 0
    mutex = weft.Lock()
    messages = []

    class MyThread(threading.Thread):
        def run(self):
            nonlocal num
            time.sleep(0.01)
            if mutex.acquire(1):
                num = num + 1
                messages.append(self.name + ": num value is " + str(num))
                mutex.release()

    _run_all([MyThread() for _ in range(5)])
    assert num == 5
    assert sorted(int(m.rsplit(" ", 1)[1]) for m in messages) == [1, 2, 3, 4, 5]


def test_rlock_reacquired_by_its_owner():
    """Seed 000: each thread takes the RLock, takes it again, and releases both."""
    mutex = weft.RLock()
    got = []

    class MyThread(threading.Thread):
        def run(self):
            if mutex.acquire(1):
                got.append(self.name)
                time.sleep(0.01)
                mutex.acquire()
                mutex.release()
                mutex.release()

    _run_all([MyThread() for _ in range(5)])
    assert len(got) == 5
    assert mutex.acquire(False)
    mutex.release()


def test_calc_with_acquire_release():
    """Seed 001: five threads, 10,000 increments each with explicit acquire()/release()."""
    num = 0
    lock = weft.Lock()

    def calc():
        nonlocal num
        for _ in range(10_000):
            lock.acquire()
            num += 1
            lock.release()

    _run_all([threading.Thread(target=calc) for _ in range(5)])
    assert num == 50_000


def test_bank_balance_stays_zero():
    """Seed 002: two threads deposit and withdraw under a lock (try/finally); balance is 0."""
    balance = 0
    lock = weft.Lock()

    def change_it(n):
        nonlocal balance
        balance = balance + n
        balance = balance - n

    def run_thread(n):
        for _ in range(50_000):
            lock.acquire()
            try:
                change_it(n)
            finally:
                lock.release()

    _run_all([threading.Thread(target=run_thread, args=(n,)) for n in (5, 8)])
    assert balance == 0


def test_semaphore_two_stalls_five_users():
    """Seed 003: Semaphore(2) lets at most two of five users in at once."""
    sem = weft.Semaphore(2)
    guard = weft.Lock()
    inside = []
    peak = []
    done = []

    def go_wc(user):
        sem.acquire()
        with guard:
            inside.append(user)
            peak.append(len(inside))
        time.sleep(random.uniform(0, 0.02))
        with guard:
            inside.remove(user)
        sem.release()
        done.append(user)

    _run_all([threading.Thread(target=go_wc, args=("user%s" % i,)) for i in range(5)])
    assert sorted(done) == ["user%s" % i for i in range(5)]
    assert max(peak) <= 2


def test_condition_stages():
    """Seed 003: two stage-2 workers wait on a condition until stage 1 notifies them all."""
    cond = weft.Condition()
    order = []
    ready = [0]

    def stage_1():
        with cond:
            order.append("s1 done")
            cond.notify_all()

    def stage_2(i):
        with cond:
            ready[0] += 1
            assert cond.wait(JOIN_TIMEOUT)
            order.append(f"stage_2[{i}] running")

    s2 = [threading.Thread(target=stage_2, args=(i,)) for i in (1, 2)]
    for t in s2:
        t.start()

    def both_waiting():
        with cond:
            return ready[0] == 2

    wait_until(both_waiting)
    s1 = threading.Thread(target=stage_1)
    s1.start()
    s1.join(JOIN_TIMEOUT)
    for t in s2:
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive()
    assert order[0] == "s1 done"
    assert sorted(order[1:]) == ["stage_2[1] running", "stage_2[2] running"]


def test_event_wait_and_wait_with_timeout():
    """Seed 003: one thread waits for the event, another waits with a timeout that passes
    before main sets it."""
    e = weft.Event()
    seen = {}

    def wait_for_event():
        e.wait()
        seen["block"] = e.is_set()

    def wait_for_event_timeout(t):
        t0 = time.monotonic()
        r = e.wait(t)
        seen["nonblock"] = (r, e.is_set(), time.monotonic() - t0)

    w1 = threading.Thread(target=wait_for_event)
    w2 = threading.Thread(target=wait_for_event_timeout, args=(0.1,))
    w1.start()
    w2.start()
    w2.join(JOIN_TIMEOUT)  # the timed wait ends on its own, before main sets the event
    time.sleep(0.05)
    assert "block" not in seen
    e.set()
    w1.join(JOIN_TIMEOUT)
    assert seen["block"] is True
    r, is_set, elapsed = seen["nonblock"]
    assert r is False and is_set is False and elapsed >= 0.1


def test_producer_consumer_with_condition():
    """The classic bounded buffer from the threading docs, on weft.Condition."""
    cond = weft.Condition(weft.Lock())
    buf = []
    capacity = 4
    consumed = []

    def producer():
        for i in range(200):
            with cond:
                cond.wait_for(lambda: len(buf) < capacity)
                buf.append(i)
                cond.notify_all()
        with cond:
            cond.wait_for(lambda: len(buf) < capacity)
            buf.append(None)
            cond.notify_all()

    def consumer():
        while True:
            with cond:
                cond.wait_for(lambda: buf)
                item = buf.pop(0)
                cond.notify_all()
            if item is None:
                return
            consumed.append(item)

    _run_all([threading.Thread(target=producer), threading.Thread(target=consumer)])
    assert consumed == list(range(200))


def test_barrier_phases():
    """Workers compute in phases separated by a barrier whose action records each phase."""
    n, phases = 4, 5
    partial = [[0] * n for _ in range(phases)]
    totals = []
    phase = [0]

    def action():
        totals.append(sum(partial[phase[0]]))
        phase[0] += 1

    barrier = weft.Barrier(n, action=action, timeout=JOIN_TIMEOUT)

    def worker(i):
        for p in range(phases):
            partial[p][i] = (p + 1) * (i + 1)
            barrier.wait()

    _run_all([threading.Thread(target=worker, args=(i,)) for i in range(n)])
    assert totals == [(p + 1) * sum(range(1, n + 1)) for p in range(phases)]
