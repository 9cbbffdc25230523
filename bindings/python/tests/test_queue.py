"""weft.queue: Queue, LifoQueue, PriorityQueue and SimpleQueue against Python's ``queue``.

The tests parametrized with ``qmod`` run against both ``queue`` and ``weft.queue`` (a good part
of CPython's own Lib/test/test_queue.py, ported to pytest), then come what differs on purpose
(items are pickled copies; PriorityQueue orders by an int64 priority, FIFO among ties; maxsize
is fixed), Python 3.13's shutdown (against ``queue`` too when the interpreter has it), many
threads with exact delivery, and ``async_get`` in asyncio."""

import asyncio
import pickle
import queue
import random
import threading
import time

import pytest

import weft
import weft.queue as wq
from _helpers import JOIN_TIMEOUT, Threads, wait_until

QUEUE_SIZE = 5
HAS_STDLIB_SHUTDOWN = hasattr(queue.Queue, "shutdown")  # Python 3.13+

IMPLEMENTATIONS = {"queue": queue, "weft": wq}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def qmod(request):
    """``queue`` or ``weft.queue``: both must pass every test that uses this fixture."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture(params=["Queue", "LifoQueue", "PriorityQueue"])
def kind(request):
    return request.param


# With ``queue`` only where it has shutdown (3.13+); weft's always.
SHUTDOWN_IMPLEMENTATIONS = ["queue", "weft"] if HAS_STDLIB_SHUTDOWN else ["weft"]


@pytest.fixture(params=SHUTDOWN_IMPLEMENTATIONS)
def sdmod(request):
    return IMPLEMENTATIONS[request.param]


def test_exports_and_exceptions():
    assert weft.queue is wq
    assert wq.Empty is queue.Empty and wq.Full is queue.Full
    if HAS_STDLIB_SHUTDOWN:
        assert wq.ShutDown is queue.ShutDown
    else:
        assert wq.ShutDown.__module__ == "weft.queue" and issubclass(wq.ShutDown, Exception)
    assert set(wq.__all__) == {"Queue", "LifoQueue", "PriorityQueue", "SimpleQueue", "Empty", "Full", "ShutDown"}
    for cls in (wq.LifoQueue, wq.PriorityQueue):
        assert issubclass(cls, wq.Queue)
    assert wq.Queue[int] is not None  # generic alias, as queue.Queue[int]


# --- CPython's test_queue: BaseQueueTestMixin -----------------------------------------------


def qfull(q):
    return q.maxsize > 0 and q.qsize() == q.maxsize


class _TriggerThread(threading.Thread):
    """Runs ``fn(*args)`` a little after starting, so that the main thread blocks first."""

    def __init__(self, fn, args):
        self.fn = fn
        self.args = args
        self.started_event = threading.Event()
        threading.Thread.__init__(self, daemon=True)

    def run(self):
        time.sleep(0.05)
        self.started_event.set()
        self.fn(*self.args)


def do_blocking_test(block_func, block_args, trigger_func, trigger_args):
    thread = _TriggerThread(trigger_func, trigger_args)
    thread.start()
    try:
        result = block_func(*block_args)
        assert thread.started_event.is_set(), f"blocking function {block_func!r} appeared not to block"
        return result
    finally:
        thread.join(JOIN_TIMEOUT)


def do_exceptional_blocking_test(block_func, block_args, trigger_func, trigger_args, expected):
    thread = _TriggerThread(trigger_func, trigger_args)
    thread.start()
    try:
        with pytest.raises(expected):
            block_func(*block_args)
    finally:
        thread.join(JOIN_TIMEOUT)
        assert thread.started_event.is_set(), "trigger thread ended but event never set"


def basic_queue_test(qmod, q):
    if q.qsize():
        raise RuntimeError("Call this function with an empty queue")
    assert q.empty()
    assert not q.full()
    q.put(111)
    q.put(333)
    q.put(222)
    target_order = dict(Queue=[111, 333, 222], LifoQueue=[222, 333, 111], PriorityQueue=[111, 222, 333])
    actual_order = [q.get(), q.get(), q.get()]
    assert actual_order == target_order[q.__class__.__name__], "Didn't seem to queue the correct data!"
    for i in range(QUEUE_SIZE - 1):
        q.put(i)
        assert q.qsize(), "Queue should not be empty"
    assert not qfull(q), "Queue should not be full"
    last = 2 * QUEUE_SIZE
    full = 3 * 2 * QUEUE_SIZE
    q.put(last)
    assert qfull(q), "Queue should be full"
    assert not q.empty()
    assert q.full()
    with pytest.raises(qmod.Full):
        q.put(full, block=0)
    with pytest.raises(qmod.Full):
        q.put(full, timeout=0.01)
    # A blocking put
    do_blocking_test(q.put, (full,), q.get, ())
    do_blocking_test(q.put, (full, True, 10), q.get, ())
    # Empty it
    for _ in range(QUEUE_SIZE):
        q.get()
    assert not q.qsize(), "Queue should be empty"
    with pytest.raises(qmod.Empty):
        q.get(block=0)
    with pytest.raises(qmod.Empty):
        q.get(timeout=0.01)
    # A blocking get
    do_blocking_test(q.get, (), q.put, ("empty",) if q.__class__.__name__ != "PriorityQueue" else (0,))
    do_blocking_test(q.get, (True, 10), q.put, ("empty",) if q.__class__.__name__ != "PriorityQueue" else (0,))


def test_basic(qmod, kind):
    # Twice, to make sure the same instance works when reused.
    q = getattr(qmod, kind)(QUEUE_SIZE)
    basic_queue_test(qmod, q)
    basic_queue_test(qmod, q)


def _join_worker(q, state):
    while True:
        x = q.get()
        if x < 0:
            q.task_done()
            return
        with state["lock"]:
            state["cum"] += x
        q.task_done()


def queue_join_test(q):
    state = {"cum": 0, "lock": threading.Lock()}
    threads = [threading.Thread(target=_join_worker, args=(q, state), daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(100):
        q.put(i)
    q.join()
    assert state["cum"] == sum(range(100)), "q.join() did not block until all tasks were done"
    for _ in threads:
        q.put(-1)  # instruct the threads to close
    q.join()  # verify that you can join twice
    for t in threads:
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive()


def test_queue_task_done(qmod, kind):
    q = getattr(qmod, kind)()
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()


def test_queue_join(qmod, kind):
    q = getattr(qmod, kind)()
    queue_join_test(q)
    queue_join_test(q)
    with pytest.raises(ValueError):
        q.task_done()


def test_negative_timeout_raises_exception(qmod, kind):
    q = getattr(qmod, kind)(QUEUE_SIZE)
    with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
        q.put(1, timeout=-1)
    with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
        q.get(1, timeout=-1)
    # An unbounded queue never waits in put, so Python does not look at the timeout.
    getattr(qmod, kind)().put(1, timeout=-1)


def test_nowait(qmod, kind):
    q = getattr(qmod, kind)(QUEUE_SIZE)
    for _ in range(QUEUE_SIZE):
        q.put_nowait(1)
    with pytest.raises(qmod.Full):
        q.put_nowait(1)
    for _ in range(QUEUE_SIZE):
        q.get_nowait()
    with pytest.raises(qmod.Empty):
        q.get_nowait()


def test_timeouts_wait_about_that_long(qmod):
    q = qmod.Queue(1)
    t0 = time.monotonic()
    with pytest.raises(qmod.Empty):
        q.get(timeout=0.05)
    q.put(1)
    with pytest.raises(qmod.Full):
        q.put(2, timeout=0.05)
    assert 0.1 <= time.monotonic() - t0 < 5
    with pytest.raises(qmod.Full):
        q.put(2, True, 0)  # a zero timeout tries once
    assert q.get(True, 0) == 1
    with pytest.raises(qmod.Empty):
        q.get(block=False, timeout=-5)  # the timeout is ignored when not blocking


def test_unbounded_and_negative_maxsize(qmod, kind):
    for maxsize in (0, -1):
        q = getattr(qmod, kind)(maxsize)
        assert q.maxsize == maxsize
        for i in range(1000):
            q.put_nowait(i)
        assert q.qsize() == 1000 and not q.full()


def test_exceptional_blocking_get_and_put(qmod):
    q = qmod.Queue(1)
    # Nothing comes within the timeout although a thread runs meanwhile.
    do_exceptional_blocking_test(q.get, (True, 0.2), lambda: None, (), qmod.Empty)
    q.put(1)
    do_exceptional_blocking_test(q.put, (2, True, 0.2), lambda: None, (), qmod.Full)


# --- CPython's test_queue: BaseSimpleQueueTest --------------------------------------------


def test_simple_queue_basic(qmod):
    q = qmod.SimpleQueue()
    assert q.empty() and q.qsize() == 0
    q.put(1)
    assert not q.empty() and q.qsize() == 1
    v = q.get()
    assert v == 1 and q.empty()
    q.put("a")
    q.put("b")
    assert q.qsize() == 2 and q.get() == "a" and q.get() == "b"
    with pytest.raises(qmod.Empty):
        q.get(timeout=0.01)
    with pytest.raises(qmod.Empty):
        q.get(False)
    with pytest.raises(qmod.Empty):
        q.get_nowait()
    q.put_nowait(3)
    q.put(4, block=False, timeout=-1)  # ignored, as Python's
    assert q.get_nowait() == 3 and q.get(timeout=0) == 4
    assert not hasattr(q, "task_done") and not hasattr(q, "join") and not hasattr(q, "full")


def test_simple_queue_negative_timeout(qmod):
    q = qmod.SimpleQueue()
    q.put(1)
    with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
        q.get(timeout=-1)
    assert q.get(timeout=0) == 1


def test_simple_queue_order(qmod):
    q = qmod.SimpleQueue()
    inputs = list(range(100))
    for x in inputs:
        q.put(x)
    assert [q.get() for _ in inputs] == inputs


def _simple_feed(q, seq, results_lock, results):
    while True:
        try:
            val = seq.pop()
        except IndexError:
            return
        q.put(val)
        if random.random() > 0.5:
            time.sleep(random.random() * 1e-4)


def _simple_consume(q, results, sentinel, mode):
    while True:
        if mode == "block":
            val = q.get()
        elif mode == "nonblock":
            try:
                val = q.get(False)
            except queue.Empty:
                time.sleep(1e-5)
                continue
        else:
            try:
                val = q.get(timeout=1e-5)
            except queue.Empty:
                continue
        if val == sentinel:
            return
        results.append(val)


@pytest.mark.parametrize("mode", ["block", "nonblock", "timeout"])
def test_simple_queue_many_threads(qmod, mode):
    # CPython's run_threads: 4 producers, 4 consumers, every item delivered exactly once.
    n_feeders, n_consumers, n = 4, 4, 2000
    q = qmod.SimpleQueue()
    inputs = list(range(n))
    random.shuffle(inputs)
    seq = list(inputs)
    results = []
    sentinel = None
    feeders = [threading.Thread(target=_simple_feed, args=(q, seq, None, results), daemon=True) for _ in range(n_feeders)]
    consumers = [threading.Thread(target=_simple_consume, args=(q, results, sentinel, mode), daemon=True)
                 for _ in range(n_consumers)]
    for t in feeders + consumers:
        t.start()
    for t in feeders:
        t.join(JOIN_TIMEOUT)
    for _ in consumers:
        q.put(sentinel)
    for t in consumers:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in feeders + consumers)
    assert q.empty() and sorted(results) == sorted(inputs)


# --- what differs on purpose ----------------------------------------------------------------


class _Point:
    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return isinstance(other, _Point) and other.x == self.x


@pytest.mark.parametrize("cls", ["Queue", "LifoQueue", "SimpleQueue"])
def test_items_are_pickled_copies(cls):
    q = getattr(wq, cls)()
    items = [None, 0, -1, 2**100, 1.5, "text", "ünïcødé", b"\0bytes", bytearray(b"ba"), [1, [2]], {"k": (1, 2)},
             {1, 2}, frozenset({3}), _Point(7), ValueError("boom"), range(3), b"x" * 100_000]
    for item in items:
        q.put(item)
    got = [q.get() for _ in items]
    if cls == "LifoQueue":
        got.reverse()
    for a, b in zip(items, got):
        if isinstance(a, Exception):
            assert type(b) is type(a) and b.args == a.args
        else:
            assert b == a and type(b) is type(a)
    mutable = [1, 2]
    q.put(mutable)
    mutable.append(3)  # a copy went in
    assert q.get() == [1, 2]
    q.put(mutable)
    assert q.get() is not mutable
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        q.put(lambda: None)  # not picklable
    with pytest.raises((pickle.PicklingError, TypeError)):
        q.put(threading.Lock())
    assert q.empty()


def test_codecs():
    q = wq.Queue(codec="bytes")
    q.put(b"raw")
    q.put(bytearray(b"ba"))
    q.put(memoryview(b"mv"))
    assert [q.get(), q.get(), q.get()] == [b"raw", b"ba", b"mv"]
    with pytest.raises(TypeError):
        q.put("str")
    s = wq.SimpleQueue(codec="str")
    s.put("ünï")
    assert s.get() == "ünï"
    with pytest.raises(TypeError):
        s.put(b"bytes")
    import json

    j = wq.LifoQueue(codec=json)
    j.put({"a": [1]})
    assert j.get() == {"a": [1]}
    with pytest.raises(ValueError):
        wq.Queue(codec="yaml")
    with pytest.raises(TypeError):
        wq.Queue(codec=3)


def test_priority_queue_ties_are_fifo_and_priorities_are_int64():
    q = wq.PriorityQueue()
    for item in [(1, "b"), (1, "a"), [0, "list"], (-(2**63), "lowest"), (2**63 - 1, "highest"), 5, True, (1, "c")]:
        q.put(item)
    got = [q.get() for _ in range(q.qsize())]
    # Ties in put order ("b" before "a": Python would compare them); bool is an int (1).
    assert got == [(-(2**63), "lowest"), [0, "list"], (1, "b"), (1, "a"), True, (1, "c"), 5, (2**63 - 1, "highest")]
    for bad in ["text", 1.5, (1.5, "x"), ("a", 1), (), [], None, (2**63, "x"), -(2**63) - 1, {"k": 1}]:
        with pytest.raises(TypeError, match="int64"):
            q.put(bad)
    assert q.empty()
    # Python's own PriorityQueue compares the items instead.
    p = queue.PriorityQueue()
    p.put((1, "b"))
    p.put((1, "a"))
    assert p.get() == (1, "a")


def test_maxsize_is_fixed():
    q = wq.Queue(3)
    assert q.maxsize == 3
    with pytest.raises(AttributeError):
        q.maxsize = 2


def test_unfinished_tasks():
    q = wq.Queue()
    assert q.unfinished_tasks == 0
    q.put(1)
    q.put(2)
    assert q.unfinished_tasks == 2
    q.get()
    q.task_done()
    assert q.unfinished_tasks == 1


def test_not_picklable():
    for q in (wq.Queue(), wq.LifoQueue(), wq.PriorityQueue(), wq.SimpleQueue()):
        with pytest.raises(TypeError, match="cannot pickle 'weft.queue"):
            pickle.dumps(q)


def test_a_subclass_works():
    class Tagged(wq.Queue):
        def put(self, item, block=True, timeout=None):
            super().put(("tag", item), block, timeout)

    q = Tagged(2)
    q.put(1)
    assert q.get() == ("tag", 1) and isinstance(q, wq.Queue)


def test_blocking_get_releases_the_gil():
    q = wq.Queue()
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        with pytest.raises(wq.Empty):
            q.get(timeout=0.2)
        before = counter[0]
        with pytest.raises(wq.Empty):
            q.get(timeout=0.2)
        assert counter[0] > before  # the other thread ran while this one waited
    finally:
        stop.set()
        t.join(JOIN_TIMEOUT)


# --- shutdown (Python 3.13) -----------------------------------------------------------------


def test_shutdown_then_put_and_get(sdmod):
    q = sdmod.Queue()
    assert not q.is_shutdown
    q.put("left")
    q.shutdown()
    assert q.is_shutdown
    with pytest.raises(sdmod.ShutDown):
        q.put("more")
    with pytest.raises(sdmod.ShutDown):
        q.put_nowait("more")
    assert q.get() == "left"  # gets drain what is left...
    with pytest.raises(sdmod.ShutDown):
        q.get()  # ...then raise, without blocking
    with pytest.raises(sdmod.ShutDown):
        q.get_nowait()
    with pytest.raises(sdmod.ShutDown):
        q.get(timeout=0.01)
    q.task_done()
    q.join()
    q.shutdown()  # twice is fine


def test_shutdown_immediate_discards_and_releases_join(sdmod):
    q = sdmod.Queue()
    for i in range(5):
        q.put(i)
    q.get()
    joined = threading.Event()

    def joiner():
        q.join()
        joined.set()

    t = threading.Thread(target=joiner, daemon=True)
    t.start()
    assert not joined.wait(0.05)
    q.shutdown(immediate=True)
    assert q.qsize() == 0 and q.empty()
    with pytest.raises(sdmod.ShutDown):
        q.get_nowait()
    q.task_done()  # the one taken before the shutdown
    assert joined.wait(JOIN_TIMEOUT)
    t.join(JOIN_TIMEOUT)
    with pytest.raises(ValueError):
        q.task_done()


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_wakes_blocked_getters_and_putters(sdmod, immediate):
    empty = sdmod.Queue()
    full = sdmod.Queue(2)
    full.put(1)
    full.put(2)
    outcomes = []
    lock = threading.Lock()

    def getter():
        try:
            empty.get()
            r = "got"
        except sdmod.ShutDown:
            r = "get shutdown"
        with lock:
            outcomes.append(r)

    def putter():
        try:
            full.put(3)
            r = "put"
        except sdmod.ShutDown:
            r = "put shutdown"
        with lock:
            outcomes.append(r)

    ts = Threads()
    ts.start(getter, n=3)
    ts.start(putter, n=3)
    time.sleep(0.1)  # let them block
    assert outcomes == []
    empty.shutdown(immediate)
    full.shutdown(immediate)
    ts.join()
    assert sorted(outcomes) == ["get shutdown"] * 3 + ["put shutdown"] * 3
    if not immediate:  # the full queue still delivers what it holds
        assert [full.get_nowait(), full.get_nowait()] == [1, 2]
    with pytest.raises(sdmod.ShutDown):
        full.get_nowait()


def test_shutdown_of_lifo_and_priority():
    for cls in (wq.LifoQueue, wq.PriorityQueue):
        q = cls()
        q.put((1, "a"))
        q.put((0, "b"))
        q.shutdown()
        with pytest.raises(wq.ShutDown):
            q.put((2, "c"))
        assert len([q.get(), q.get()]) == 2
        with pytest.raises(wq.ShutDown):
            q.get()


# --- many threads -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["Queue", "LifoQueue", "PriorityQueue"])
def test_many_producers_and_consumers_exact_delivery(cls):
    producers, consumers, per_producer = 4, 4, 1500
    q = getattr(wq, cls)(maxsize=16)
    received = [[] for _ in range(consumers)]

    def produce(p):
        for i in range(per_producer):
            q.put((i, p))  # (priority, producer) for PriorityQueue

    def consume(c):
        while True:
            item = q.get()
            q.task_done()
            if item == (-1, -1):
                return
            received[c].append(item)

    ts = Threads()
    for c in range(consumers):
        ts.start(consume, c)
    ps = Threads()
    for p in range(producers):
        ps.start(produce, p)
    ps.join()
    q.join()  # every item taken and marked done
    for _ in range(consumers):
        q.put((-1, -1))
    ts.join()
    everything = sorted(x for r in received for x in r)
    assert everything == sorted((i, p) for p in range(producers) for i in range(per_producer))
    if cls == "Queue":
        # FIFO: each consumer sees each producer's items in the order they were put.
        for r in received:
            for p in range(producers):
                seq = [i for (i, pp) in r if pp == p]
                assert seq == sorted(seq)


# --- asyncio --------------------------------------------------------------------------------


def test_async_get_from_a_thread_producer():
    q = wq.Queue()
    n = 200

    def produce():
        for i in range(n):
            q.put(i)
            if i % 20 == 0:
                time.sleep(0.002)
        for _ in range(3):
            q.put(None)

    async def consumer(out):
        while True:
            item = await q.async_get()
            if item is None:
                return
            out.append(item)

    async def main():
        outs = [[], [], []]
        t = threading.Thread(target=produce, daemon=True)
        t.start()
        ticks = 0

        async def ticker():  # the loop stays responsive while consumers wait
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        tick = asyncio.ensure_future(ticker())
        await asyncio.wait_for(asyncio.gather(*(consumer(o) for o in outs)), JOIN_TIMEOUT)
        tick.cancel()
        t.join(JOIN_TIMEOUT)
        return outs, ticks

    outs, ticks = asyncio.run(main())
    assert sorted(x for o in outs for x in o) == list(range(n))
    for o in outs:
        assert o == sorted(o)
    assert ticks > 0


def test_async_get_competes_with_a_blocking_thread_consumer():
    q = wq.SimpleQueue()
    n = 300
    thread_got = []

    def thread_consumer():
        while True:
            x = q.get()
            if x is None:  # each consumer stops at the first end marker it takes
                return
            thread_got.append(x)

    async def main():
        got = []
        t = threading.Thread(target=thread_consumer, daemon=True)
        t.start()
        for i in range(n):
            q.put(i)
            if i % 10 == 0:
                await asyncio.sleep(0)
        q.put(None)  # one end marker per consumer
        q.put(None)
        while True:
            x = await asyncio.wait_for(q.async_get(), JOIN_TIMEOUT)
            if x is None:
                break
            got.append(x)
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive()
        return got

    got = asyncio.run(main())
    assert sorted(got + thread_got) == list(range(n))
    assert q.empty()


def test_async_get_cancelled_and_shutdown():
    q = wq.Queue()

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.async_get(), 0.05)
        assert not q._waiters  # the reader was removed
        q.put("after")
        assert await q.async_get() == "after"
        q.put("drained")
        q.shutdown()
        assert await q.async_get() == "drained"
        with pytest.raises(wq.ShutDown):
            await q.async_get()

    asyncio.run(main())


def test_async_get_in_two_event_loops_at_once():
    q = wq.Queue()
    results = {}

    def run_loop(name):
        async def main():
            return [await q.async_get() for _ in range(50)]

        results[name] = asyncio.run(main())

    ts = Threads()
    ts.start(run_loop, "a")
    ts.start(run_loop, "b")
    for i in range(100):
        q.put(i)
    ts.join()
    assert sorted(results["a"] + results["b"]) == list(range(100))


def test_queue_fd_is_readable_while_items_are_there():
    import select

    q = wq.Queue()
    fd = q._poll_fd()
    assert select.select([fd], [], [], 0)[0] == []
    q.put(1)
    assert select.select([fd], [], [], 0)[0] == [fd]
    q.get()
    wait_until(lambda: select.select([fd], [], [], 0)[0] == [])
