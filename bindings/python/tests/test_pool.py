"""weft.Pool and weft.ThreadPool: multiprocessing.Pool's API over weft worker processes and
threads running native tasks (tasks.c, compiled here); every test that makes sense for both
runs against both (the ``kind`` fixture) — apply/apply_async, map/map_async (items of one size
and of mixed sizes, chunk sizes), imap/imap_unordered (lazy input, failures at their place, a
failing iterable), initializer, maxtasksperchild, close/join/terminate, the context manager —
and CPU-bound tasks running at once on threads while Python waits with the GIL released.

The tasks of process workers cannot see this process's memory, so the state a test watches
(a gate, counters) lives in weft's shared objects of the default space, whose tokens the tasks
receive in their argument (see ``Gate`` and ``fields``). test_process_pool.py covers what only
process workers do (start methods, dead workers, retries, ProcessPoolExecutor)."""

import ctypes
import gc
import itertools
import multiprocessing
import os
import pickle
import struct
import threading
import time

import pytest

import weft
import weft.multiprocessing as wmp
from weft import Pool, TaskError, ThreadPool
from weft._native import CONSTANTS

from test_futures import JOIN, build_tasks, wait_until  # noqa: F401 - shared helpers

NOT_FOUND = CONSTANTS["WEFT_NOT_FOUND"]
PERMISSION_DENIED = CONSTANTS["WEFT_PERMISSION_DENIED"]
KINDS = {"threads": ThreadPool, "processes": Pool}


def fields(*parts: bytes) -> bytes:
    """A task argument made of several fields (tasks.c's ``fields``): each its length as a
    native uint32, then its bytes."""
    return b"".join(struct.pack("=I", len(p)) + p for p in parts)


class Gate:
    """A gate that holds t_gate_shared tasks on worker threads and processes alike: each task
    reports its start (its pid) on a shared queue, then waits until the shared event is set
    (or it is asked to cancel). ``arg`` is the tasks' argument."""

    def __init__(self, tasks):
        self.task = tasks.t_gate_shared
        self.event = wmp.Event()
        self.queue = wmp.Queue(codec="bytes")
        self.arg = fields(self.event.token(), self.queue.token())

    def started(self, n=1) -> list:
        """Waits until ``n`` more gate tasks run; their pids."""
        return [int(self.queue.get(timeout=JOIN)) for _ in range(n)]

    def open(self):
        self.event.set()


class Counter:
    """A shared int64 that t_count_shared tasks (argument ``arg``) and t_init_counted add 1 to."""

    def __init__(self):
        self.value = wmp.Value("q", 0)
        self.arg = self.value.token()

    def __int__(self):
        return int(self.value.value)


@pytest.fixture(scope="module")
def tasks_path(tmp_path_factory):
    return build_tasks(tmp_path_factory.mktemp("pool_tasks"))


@pytest.fixture(scope="module")
def tasks(tasks_path):
    t = ctypes.CDLL(str(tasks_path))
    t.t_gate_reset()
    return t


@pytest.fixture(params=sorted(KINDS))
def kind(request):
    """The pool class: ThreadPool (worker threads) or Pool (worker processes, weft's default
    start method)."""
    return KINDS[request.param]


@pytest.fixture
def pools(kind):
    made = []

    def make(*args, **kwargs):
        p = kind(*args, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.terminate()


@pytest.fixture
def gate(tasks):
    g = Gate(tasks)
    yield g
    g.open()


@pytest.fixture
def counter():
    return Counter()


def squares(n):
    return [b"%d" % (i * i) for i in range(n)]


# --- apply --------------------------------------------------------------------------------


def test_apply_and_apply_async(pools, tasks):
    p = pools(2)
    assert p.apply(tasks.t_square, b"12") == b"144"
    assert p.apply(tasks.t_square, (b"13",)) == b"169"  # args as a one-item tuple
    assert p.apply(tasks.t_echo) == b""
    r = p.apply_async(tasks.t_square, b"5")
    assert r.get(JOIN) == b"25"
    assert r.ready() and r.successful()
    with pytest.raises(TaskError) as info:
        p.apply(tasks.t_fail, b"nope")
    assert info.value.task_status == NOT_FOUND and info.value.task_message == "nope"
    bad = p.apply_async(tasks.t_fail, b"later")
    bad.wait(JOIN)
    assert bad.ready() and not bad.successful()
    with pytest.raises(TaskError):
        bad.get()
    with pytest.raises(TypeError):
        p.apply(tasks.t_echo, b"x", {"k": 1})
    with pytest.raises(TypeError):
        p.apply(lambda: None)


def test_async_result_timeout_and_not_ready(pools, gate):
    p = pools(1)
    r = p.apply_async(gate.task, gate.arg)
    gate.started()
    assert not r.ready()
    with pytest.raises(ValueError, match="not ready"):
        r.successful()
    t0 = time.monotonic()
    with pytest.raises(multiprocessing.TimeoutError):
        r.get(0.05)
    assert time.monotonic() - t0 >= 0.05
    r.wait(0.01)
    assert not r.ready()
    gate.open()
    assert r.get(JOIN) == b"open"


def test_callbacks(pools, tasks):
    p = pools(2)
    got, errors = [], []
    done = threading.Event()
    r = p.apply_async(tasks.t_square, b"4", callback=lambda v: (got.append(v), done.set()))
    assert r.get(JOIN) == b"16"
    assert done.wait(JOIN) and got == [b"16"]
    done.clear()
    r = p.apply_async(tasks.t_fail, b"bad", callback=got.append, error_callback=lambda e: (errors.append(e), done.set()))
    with pytest.raises(TaskError):
        r.get(JOIN)
    assert done.wait(JOIN)
    assert len(errors) == 1 and isinstance(errors[0], TaskError) and got == [b"16"]
    done.clear()
    m = p.map_async(tasks.t_square, [b"1", b"2"], callback=lambda v: (got.append(v), done.set()))
    assert m.get(JOIN) == [b"1", b"4"]
    assert done.wait(JOIN) and got[-1] == [b"1", b"4"]


# --- map ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunksize", [None, 1, 7, 100_000])
def test_map_exact_fixed_and_mixed_sizes(pools, tasks, chunksize):
    p = pools(3)
    fixed = [b"%04d" % i for i in range(1000)]  # one size: weft's map_async
    assert p.map(tasks.t_square, fixed, chunksize) == squares(1000)
    mixed = [b"%d" % i for i in range(1000)]  # mixed sizes: an imap holding every chunk
    assert p.map(tasks.t_square, mixed, chunksize) == squares(1000)
    assert p.map(tasks.t_square, iter(mixed[:5]), chunksize) == squares(5)
    assert p.map(tasks.t_square, [], chunksize) == []
    assert p.map(tasks.t_echo, [b"", b""], chunksize) == [b"", b""]  # empty items
    r = p.map_async(tasks.t_square, mixed, chunksize)
    assert r.get(JOIN) == squares(1000)
    assert r.successful()


@pytest.mark.parametrize("items", [[b"%03d" % i for i in range(300)], [b"%d" % i for i in range(300)]],
                         ids=["fixed", "mixed"])
@pytest.mark.parametrize("chunksize", [1, 7, 1000])
def test_map_first_failing_item(pools, tasks, items, chunksize):
    p = pools(3)
    items = list(items)
    items[123] = b"-" + items[123][1:]
    items[200] = b"-" + items[200][1:]
    with pytest.raises(TaskError) as info:
        p.map(tasks.t_square_or_fail, items, chunksize)
    e = info.value
    assert e.task_status == NOT_FOUND
    assert "item 123 failed" in e.task_message and "200" not in e.task_message
    r = p.map_async(tasks.t_square_or_fail, items, chunksize)
    r.wait(JOIN)
    assert r.ready() and not r.successful()


def test_map_arguments(pools, tasks):
    p = pools(1)
    with pytest.raises(ValueError):
        p.map(tasks.t_square, [b"1"], 0)
    with pytest.raises(TypeError):
        p.map(tasks.t_square, ["1"])
    with pytest.raises(TypeError):
        p.map(print, [b"1"])


# --- imap ---------------------------------------------------------------------------------


def test_imap_ordered_lazy_over_an_endless_iterable(pools, tasks):
    # Stopped early: the pool goes on.
    p = pools(2)
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(threading.get_ident())
            yield b"%d" % i

    it = p.imap(tasks.t_square, endless(), chunksize=3)
    assert pulled == []  # nothing read before the first next
    for i in range(50):
        assert next(it) == b"%d" % (i * i)
        # Read at most a bounded window ahead: the chunk being delivered and 2 x workers chunks.
        assert len(pulled) <= i + 1 + 3 + 2 * 2 * 3
    assert set(pulled) == {threading.get_ident()}  # read on the consuming thread
    del it
    gc.collect()
    assert p.apply(tasks.t_square, b"7") == b"49"
    p.close()
    p.join()


def test_imap_unordered_every_item_once(pools, tasks):
    p = pools(3)
    for chunksize in (1, 4, 64):
        got = list(p.imap_unordered(tasks.t_square, (b"%d" % i for i in range(1000)), chunksize))
        assert sorted(got) == sorted(squares(1000))
        assert len(got) == 1000


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_imap_item_failure_then_iteration_goes_on(pools, tasks, method):
    p = pools(2)
    items = [b"%d" % i for i in range(20)]
    items[7] = b"-7"
    it = getattr(p, method)(tasks.t_square_or_fail, items)
    ok, failures = [], []
    while True:
        try:
            ok.append(next(it))
        except StopIteration:
            break
        except TaskError as e:
            failures.append(e)
            if method == "imap":
                assert len(ok) == 7  # at its place
    assert len(failures) == 1 and failures[0].task_message == "bad item -7"
    assert sorted(ok) == sorted(s for i, s in enumerate(squares(20)) if i != 7)
    if method == "imap":
        assert ok == [s for i, s in enumerate(squares(20)) if i != 7]


def test_imap_failing_iterable(pools, tasks):
    p = pools(2)

    def items():
        yield b"1"
        yield b"2"
        raise KeyError("source broke")

    it = p.imap(tasks.t_square, items())
    assert next(it) == b"1"
    assert next(it) == b"4"
    with pytest.raises(KeyError, match="source broke"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    it = p.imap(tasks.t_square, [b"1", "not bytes"])
    assert next(it) == b"1"
    with pytest.raises(TypeError):
        next(it)


def test_imap_next_timeout(pools, gate):
    p = pools(1)
    it = p.imap(gate.task, [gate.arg, gate.arg])
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0)
    t0 = time.monotonic()
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0.03)
    assert time.monotonic() - t0 >= 0.03
    gate.open()
    assert list(it) == [b"open", b"open"]
    with pytest.raises(ValueError):
        p.imap(gate.task, [], chunksize=0)


# --- initializer and maxtasksperchild ---------------------------------------------------------


def test_initializer_runs_once_per_worker(pools, tasks, counter):
    p = pools(3, initializer=tasks.t_init_counted, initargs=fields(counter.arg, b"per-worker"))
    assert set(p.map(tasks.t_read_tls, [b""] * 200, 1)) == {b"per-worker"}  # state it built
    p.close()
    p.join()
    assert int(counter) == 3


def test_failing_initializer(pools, kind, tasks):
    p = pools(1, initializer=tasks.t_init_fail)
    broken = weft.futures.BrokenProcessPool if kind is Pool else weft.futures.BrokenThreadPool
    with pytest.raises(broken, match="init refused") as info:
        for _ in range(1000):
            p.apply(tasks.t_count)
            time.sleep(0.001)
    assert info.value.status == PERMISSION_DENIED
    with pytest.raises(broken):
        p.apply_async(tasks.t_count)


def test_maxtasksperchild_replaces_workers(pools, kind, tasks, counter):
    p = pools(1, initializer=tasks.t_init_counted, initargs=fields(counter.arg, b"x"), maxtasksperchild=2)
    workers = [p.apply(tasks.t_worker) for _ in range(8)]  # "pid:thread ident"
    assert [workers[i] == workers[i + 1] for i in range(0, 8, 2)] == [True] * 4
    assert len(set(workers)) == 4  # a fresh worker every two tasks
    pids = {int(w.split(b":")[0]) for w in workers}
    assert pids == ({os.getpid()} if kind is ThreadPool else pids - {os.getpid()})
    assert len(pids) == (1 if kind is ThreadPool else 4)
    p.close()
    p.join()
    assert int(counter) >= 4  # each replacement ran the initializer


def test_constructor_arguments(kind, tasks):
    with pytest.raises(ValueError):
        kind(0)
    with pytest.raises(ValueError):
        kind(2, maxtasksperchild=0)
    with pytest.raises(ValueError):
        kind(2, maxtasksperchild=1.5)
    with pytest.raises(TypeError):
        kind(2, initializer=lambda: None)
    p = kind()
    assert p._processes == weft.cpu_count()
    assert "state=RUN" in repr(p) and kind.__name__ in repr(p)
    with pytest.raises(NotImplementedError):
        pickle.dumps(p)
    p.terminate()
    assert issubclass(ThreadPool, Pool)  # as multiprocessing.pool.ThreadPool


@pytest.mark.filterwarnings("ignore:weft. this process has .* threads:RuntimeWarning")  # the fork workers
def test_pool_context_arguments(tasks):
    for context, method in [(None, weft.get_start_method()), ("spawn", "spawn"), ("fork", "fork"),
                            (multiprocessing.get_context("spawn"), "spawn"), (weft, weft.get_start_method())]:
        with Pool(1, context=context) as p:
            assert p._start_method == method
            assert int(p.apply(tasks.t_pid)) != os.getpid()  # a worker process
    with pytest.raises(ValueError, match="cannot find context"):
        Pool(1, context="thread")
    with pytest.raises(TypeError):
        Pool(1, context=3)
    with pytest.raises(TypeError):
        ThreadPool(1, context="spawn")  # threads have no start method


# --- close, join, terminate -------------------------------------------------------------------


def test_close_join(pools, gate, tasks):
    p = pools(2)
    with pytest.raises(ValueError, match="still running"):
        p.join()
    rs = [p.apply_async(gate.task, gate.arg) for _ in range(2)]
    gate.started(2)  # (before more tasks: a thread worker may take a batch of queued tasks)
    rs += [p.apply_async(tasks.t_square, b"%d" % i) for i in range(20)]
    p.close()
    for call in (lambda: p.apply(tasks.t_square, b"1"), lambda: p.map(tasks.t_square, [b"1"]),
                 lambda: p.imap(tasks.t_square, [b"1"]), lambda: p.apply_async(tasks.t_count)):
        with pytest.raises(ValueError, match="Pool not running"):
            call()
    joined = threading.Event()
    t = threading.Thread(target=lambda: (p.join(), joined.set()))
    t.start()
    assert not joined.wait(0.05)  # two tasks still block
    gate.open()
    t.join(JOIN)
    assert joined.is_set()
    assert [r.get(0) for r in rs] == [b"open", b"open"] + squares(20)


def test_imap_consumed_after_close(pools, tasks):
    # multiprocessing's pattern: start an imap, close, then consume, then join.
    p = pools(2)
    it = p.imap(tasks.t_square, (b"%d" % i for i in range(100)), chunksize=3)
    p.close()
    assert list(it) == squares(100)
    p.join()


def test_join_goes_through_unconsumed_imaps(pools, tasks):
    # close and join before consuming: join runs the imap's input through, the iterator keeps
    # the results.
    p = pools(2)
    it = p.imap(tasks.t_square, (b"%d" % i for i in range(50)))
    failing = p.imap_unordered(tasks.t_square_or_fail, [b"1", b"-2"])
    p.close()
    p.join()
    assert list(it) == squares(50)
    got = []
    with pytest.raises(TaskError):
        for x in failing:
            got.append(x)
    assert got in ([b"1"], [])
    assert list(failing) == ([] if got else [b"1"])


def test_terminate_cancels(pools, tasks, counter):
    # The gate is never opened: thread workers' tasks are asked to stop, worker processes
    # are killed.
    p = pools(2)
    g = Gate(tasks)
    running = [p.apply_async(g.task, g.arg) for _ in range(2)]
    g.started(2)
    queued = [p.apply_async(tasks.t_count_shared, counter.arg) for _ in range(10)]
    p.terminate()
    for r in running + queued:
        assert r.ready() and not r.successful()
    assert int(counter) == 0
    with pytest.raises(ValueError):
        p.apply(tasks.t_count)
    p.join()  # after terminate: fine


def test_imap_after_terminate_ends_with_errors_not_silently(pools, gate):
    p = pools(1)
    it = p.imap(gate.task, itertools.repeat(gate.arg))
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0)  # the first chunks are in flight, blocked
    p.terminate()
    errors = []
    while True:
        try:
            r = next(it)
        except StopIteration:
            break
        except Exception as e:  # noqa: BLE001
            errors.append(type(e))
            continue
        raise AssertionError(f"a result after terminate: {r!r}")
    assert errors[-1] is ValueError  # the pool is not running: the imap could not go on
    assert set(errors[:-1]) == {weft.futures.CancelledError} and len(errors) >= 2


def test_context_manager_terminates(kind, tasks):
    g = Gate(tasks)  # never opened
    with kind(1) as p:
        r = p.apply_async(g.task, g.arg)
        g.started()
    assert r.ready() and not r.successful()  # __exit__ = terminate
    with pytest.raises(ValueError):
        with p:
            pass


def test_several_pools(pools, gate, tasks):
    a, b = pools(1), pools(2)
    blocked = a.apply_async(gate.task, gate.arg)
    gate.started()
    assert b.map(tasks.t_square, [b"%d" % i for i in range(100)]) == squares(100)
    assert not blocked.ready()
    a.terminate()
    assert b.apply(tasks.t_square, b"3") == b"9"


# --- the GIL ------------------------------------------------------------------------------


def test_cpu_bound_tasks_run_at_once_while_python_waits(tasks):
    # Thread workers: the spinners' counters are in this process (test_process_pool.py meets
    # two worker processes at a barrier).
    tasks.t_spin_reset()
    p = ThreadPool(2)
    seen = []

    def observer():
        deadline = time.monotonic() + JOIN
        while tasks.t_spin_running() < 2 and time.monotonic() < deadline:
            pass  # Python bytecode: runs only while the waiting thread has released the GIL
        seen.append(tasks.t_spin_running())
        tasks.t_spin_release()

    r = p.map_async(tasks.t_spin, [b"", b""], chunksize=1)
    t = threading.Thread(target=observer)
    t.start()
    try:
        assert r.get(JOIN) == [b"spun", b"spun"]  # get() waits in C, GIL released
    finally:
        t.join(JOIN)
        p.terminate()
    assert seen == [2] and tasks.t_spin_peak() == 2
