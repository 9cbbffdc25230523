"""Process workers: weft.futures.ProcessPoolExecutor and weft.Pool running native tasks
(tasks.c, compiled here) in worker processes of every start method (fork, forkserver, spawn) —
submit/map/imap, initializer state and max_tasks_per_child seen from inside the workers,
cancelling pending tasks, shutdown(cancel_futures=True), an endless imap stopped early,
awaiting a process future in asyncio, a worker SIGKILLed in the middle of a task (only that
future fails, with WorkerDiedError naming the pid and the signal; the pool goes on), retries,
two tasks meeting at a barrier from two worker processes, and done callbacks that use the pool.

Worker processes do not share this process's memory: the state a test watches (a gate, a
counter, a barrier) is one of weft's shared objects in the default space, which workers of
every start method reach; its token is in the task's argument (``Gate``, ``Counter`` and
``fields`` from test_pool.py). test_pool.py runs weft.Pool's general tests on process workers
(weft's default start method) as well as on threads."""

import asyncio
import concurrent.futures as cf
import concurrent.futures.process
import ctypes
import gc
import itertools
import multiprocessing
import os
import pickle
import signal
import threading

import pytest

import weft
import weft.futures as wf
import weft.multiprocessing as wmp
from weft import Pool, TaskError, WorkerDiedError
from weft._native import CONSTANTS, live_handles
from weft.spaces import Space

from test_futures import JOIN, build_tasks
from test_pool import Counter, Gate, fields, squares

NOT_FOUND = CONSTANTS["WEFT_NOT_FOUND"]
PERMISSION_DENIED = CONSTANTS["WEFT_PERMISSION_DENIED"]
WORKER_DIED = CONSTANTS["WEFT_WORKER_DIED"]
METHODS = ["fork", "forkserver", "spawn"]

# pytest's hang guard (faulthandler) runs a thread, so forking workers warns (test_process.py
# checks the warning itself).
pytestmark = pytest.mark.filterwarnings("ignore:weft. this process has .* threads:RuntimeWarning")


@pytest.fixture(scope="module")
def tasks_path(tmp_path_factory):
    return build_tasks(tmp_path_factory.mktemp("process_pool_tasks"))


@pytest.fixture(scope="module")
def tasks(tasks_path):
    return ctypes.CDLL(str(tasks_path))


@pytest.fixture
def gate(tasks):
    g = Gate(tasks)
    yield g
    g.open()


@pytest.fixture
def counter():
    return Counter()


@pytest.fixture
def executors(gate):
    """Makes ProcessPoolExecutors; at the end opens the gate and shuts them down."""
    made = []

    def make(*args, **kwargs):
        e = wf.ProcessPoolExecutor(*args, **kwargs)
        made.append(e)
        return e

    yield make
    gate.open()
    for e in made:
        e.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def pools(gate):
    """Makes weft.Pools (process workers); at the end opens the gate and terminates them."""
    made = []

    def make(*args, **kwargs):
        p = Pool(*args, **kwargs)
        made.append(p)
        return p

    yield make
    gate.open()
    for p in made:
        p.terminate()


def numbers(n):
    return [b"%d" % i for i in range(n)]


# --- every start method -------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_executor_submit_and_map_with_every_start_method(executors, tasks, tasks_path, method):
    ex = executors(2, mp_context=method)
    assert ex.start_method == method and ex._max_workers == 2
    assert isinstance(ex, cf.Executor)
    assert ex.submit(tasks.t_square, b"12").result(JOIN) == b"144"
    fs = [ex.submit(tasks.t_square, b"%d" % i) for i in range(200)]
    assert [f.result(JOIN) for f in fs] == squares(200)
    for chunksize in (1, 7, 500):
        assert list(ex.map(tasks.t_square, numbers(300), chunksize=chunksize)) == squares(300)
    pids = {int(p) for p in ex.map(tasks.t_pid, [b""] * 50)}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # the tasks ran in worker processes
    assert ex.submit((str(tasks_path), "t_square"), b"5").result(JOIN) == b"25"  # by symbol
    with pytest.raises(TaskError) as info:
        ex.submit(tasks.t_fail, b"no such widget").result(JOIN)
    assert info.value.task_status == NOT_FOUND and info.value.task_message == "no such widget"
    assert not isinstance(info.value, WorkerDiedError)
    it = ex.map(tasks.t_square_or_fail, [b"1", b"-2", b"3"])
    assert next(it) == b"1"
    with pytest.raises(TaskError, match="bad item -2"):
        next(it)


@pytest.mark.parametrize("method", METHODS)
def test_pool_methods_with_every_start_method(pools, tasks, method):
    p = pools(2, context=method)
    assert p._start_method == method
    assert p.apply(tasks.t_square, b"12") == b"144"
    assert p.apply_async(tasks.t_square, (b"13",)).get(JOIN) == b"169"
    fixed, mixed = [b"%04d" % i for i in range(500)], numbers(500)
    assert p.map(tasks.t_square, fixed) == squares(500)
    assert p.map(tasks.t_square, mixed, 9) == squares(500)
    assert p.map_async(tasks.t_square, mixed).get(JOIN) == squares(500)
    assert list(p.imap(tasks.t_square, iter(mixed), 4)) == squares(500)
    assert sorted(p.imap_unordered(tasks.t_square, iter(mixed))) == sorted(squares(500))
    with pytest.raises(TaskError, match="bad item -3"):
        p.map(tasks.t_square_or_fail, [b"1", b"2", b"-3"])
    assert os.getpid() not in {int(x) for x in p.map(tasks.t_pid, [b""] * 20, 1)}
    p.close()
    p.join()


def test_context_forms(executors, tasks):
    default = weft.get_start_method()
    for context, method in [(None, default), ("spawn", "spawn"), (multiprocessing.get_context("fork"), "fork"),
                            (multiprocessing.get_context("forkserver"), "forkserver"), (weft, default)]:
        ex = executors(1, mp_context=context)
        assert ex.start_method == method and ex._mp_context is context
        assert int(ex.submit(tasks.t_pid).result(JOIN)) != os.getpid()
    weft.set_start_method("spawn")
    try:
        assert executors(1).start_method == "spawn"  # None follows weft's default
    finally:
        weft.set_start_method(default)
    with pytest.raises(ValueError, match="cannot find context for 'thread'"):
        wf.ProcessPoolExecutor(1, mp_context="thread")
    with pytest.raises(TypeError):
        wf.ProcessPoolExecutor(1, mp_context=object())


def test_arguments(tasks):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        wf.ProcessPoolExecutor(0)
    with pytest.raises(ValueError, match="max_tasks_per_child must be >= 1"):
        wf.ProcessPoolExecutor(1, max_tasks_per_child=0)
    with pytest.raises(TypeError, match="max_tasks_per_child must be an integer"):
        wf.ProcessPoolExecutor(1, max_tasks_per_child=1.5)
    with pytest.raises(ValueError):
        wf.ProcessPoolExecutor(1, retries=-1)
    with pytest.raises(TypeError):
        wf.ProcessPoolExecutor(1, initializer=lambda: None)
    ex = wf.ProcessPoolExecutor(initargs=())
    try:
        assert ex._max_workers == weft.cpu_count()
        with pytest.raises(TypeError):
            ex.submit(lambda: None)
        with pytest.raises(TypeError):
            ex.submit(tasks.t_echo, "text")
        with pytest.raises(TypeError):
            ex.map(tasks.t_echo, [b"a"], [b"b"])
        with pytest.raises(TypeError):
            pickle.dumps(ex)
    finally:
        ex.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(tasks.t_echo)
    with wf.ProcessPoolExecutor(1) as ex:
        f = ex.submit(tasks.t_square, b"3")
    assert f.done() and f.result(0) == b"9"  # __exit__ = shutdown(wait=True)


# --- initializer and max_tasks_per_child, seen from inside the workers ----------------------


@pytest.mark.parametrize("method", METHODS)
def test_initializer_builds_state_in_each_worker_process(executors, tasks, counter, method):
    ex = executors(2, mp_context=method, initializer=tasks.t_init_counted, initargs=fields(counter.arg, b"ready"))
    assert set(ex.map(tasks.t_read_tls, [b""] * 60)) == {b"ready"}  # state the initializer built
    ex.shutdown(wait=True)
    assert int(counter) == 2  # once in each worker process


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_max_tasks_per_child_replaces_the_worker_process(executors, tasks, counter, method):
    ex = executors(1, mp_context=method, max_tasks_per_child=2, initializer=tasks.t_init_counted,
                   initargs=fields(counter.arg, b"x"))
    pids = [int(ex.submit(tasks.t_pid).result(JOIN)) for _ in range(8)]
    assert [pids[i] == pids[i + 1] for i in range(0, 8, 2)] == [True] * 4
    assert len(set(pids)) == 4 and os.getpid() not in pids  # a fresh process every two tasks
    ex.shutdown(wait=True)
    assert int(counter) >= 4  # each fresh worker ran the initializer


def test_failing_initializer_breaks_the_process_pool(executors, tasks):
    ex = executors(1, initializer=tasks.t_init_fail)
    with pytest.raises(wf.BrokenProcessPool) as info:
        ex.submit(tasks.t_square, b"1").result(JOIN)
    e = info.value
    assert isinstance(e, concurrent.futures.process.BrokenProcessPool)
    assert e.status == PERMISSION_DENIED and "init refused" in str(e)
    with pytest.raises(wf.BrokenProcessPool, match="init refused"):
        ex.submit(tasks.t_square, b"1")  # the pool is broken: submit itself raises
    with pytest.raises(wf.BrokenProcessPool):
        list(ex.map(tasks.t_square, [b"1"]))


# --- cancelling and shutting down ---------------------------------------------------------


def test_cancel_pending_tasks(executors, tasks, gate, counter):
    ex = executors(1)
    g = ex.submit(gate.task, gate.arg)
    gate.started()
    fs = [ex.submit(tasks.t_count_shared, counter.arg) for _ in range(200)]
    cancelled = [f.cancel() for f in fs]
    # The pool sends a worker some tasks ahead (those count as running, as in Python's
    # executor: cancel() asks, and one still waiting in the worker's queue is taken back and
    # ends cancelled unless the worker took it first); the rest are still pending and cancel.
    assert cancelled.count(True) > 0
    assert all(f.cancelled() and f.done() for f, c in zip(fs, cancelled) if c)
    with pytest.raises(cf.CancelledError):
        fs[cancelled.index(True)].result(0)
    gate.open()
    assert g.result(JOIN) == b"open"
    ran = 0
    for f, c in zip(fs, cancelled):
        if not c:
            wf.wait([f], JOIN)
            if not f.cancelled():
                assert f.result(0) == b"counted"
                ran += 1
    ex.shutdown(wait=True)
    assert int(counter) == ran  # a cancelled task never ran


def test_cancel_running_task_asks_it_to_stop(executors, gate):
    ex = executors(1)
    f = ex.submit(gate.task, gate.arg)
    gate.started()
    assert f.cancel() is False  # running: not cancelled, but asked to stop
    with pytest.raises(cf.CancelledError):
        f.result(JOIN)  # the task saw weft_call_cancelled in its worker process and stopped
    assert f.cancelled()


def test_shutdown_cancel_futures(executors, tasks, gate, counter):
    ex = executors(1)
    g = ex.submit(gate.task, gate.arg)
    gate.started()
    fs = [ex.submit(tasks.t_count_shared, counter.arg) for _ in range(200)]
    ex.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(tasks.t_count_shared, counter.arg)
    gate.open()
    ex.shutdown(wait=True)
    assert g.result(0) == b"open"
    done = [f for f in fs if not f.cancelled()]
    assert len(done) < 200 and all(f.result(0) == b"counted" for f in done)
    assert int(counter) == len(done)


@pytest.mark.parametrize("method", METHODS)
def test_imap_over_an_endless_generator_stopped_early(pools, tasks, method):
    p = pools(2, context=method)
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield b"%d" % i

    it = p.imap(tasks.t_square, endless(), chunksize=2)
    assert [next(it) for _ in range(40)] == squares(40)
    assert len(pulled) <= 40 + 2 + 2 * 2 * 2  # a bounded window ahead
    un = p.imap_unordered(tasks.t_square, endless())
    assert len({next(un) for _ in range(20)}) == 20
    del it, un
    gc.collect()
    assert p.apply(tasks.t_square, b"9") == b"81"  # the pool goes on
    p.close()
    p.join()


# --- asyncio ------------------------------------------------------------------------------


def test_await_a_process_future(executors, tasks, gate):
    ex = executors(2)

    async def main():
        assert await ex.submit(tasks.t_square, b"9") == b"81"
        assert await asyncio.gather(*(ex.submit(tasks.t_square, x) for x in numbers(10))) == squares(10)
        with pytest.raises(TaskError, match="async failure"):
            await ex.submit(tasks.t_fail, b"async failure")
        blocked = ex.submit(gate.task, gate.arg)
        await asyncio.get_running_loop().run_in_executor(None, gate.started)
        asyncio.get_running_loop().call_soon(gate.open)
        assert await blocked == b"open"  # the loop ran (and opened the gate) while it waited

    asyncio.run(main())


# --- a worker killed in the middle of a task ------------------------------------------------


def check_died(e: WorkerDiedError, pid: int):
    assert isinstance(e, TaskError) and isinstance(e, concurrent.futures.process.BrokenProcessPool)
    assert e.status == WORKER_DIED and e.task_status == WORKER_DIED and e.name == "WEFT_WORKER_DIED"
    assert e.pid == pid and e.signal == signal.SIGKILL and e.exitcode is None
    assert f"worker process {pid} was killed by signal 9" in str(e)


@pytest.mark.parametrize("method", METHODS)
def test_worker_killed_mid_task_fails_only_that_future(executors, tasks, gate, method):
    ex = executors(2, mp_context=method)
    victim = ex.submit(gate.task, gate.arg)
    (pid,) = gate.started()
    # Some of these wait in the victim's queue (the pool sends a worker tasks ahead): they go
    # back to the pool when it dies, and run elsewhere.
    others = [ex.submit(tasks.t_square, b"%d" % i) for i in range(50)]
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerDiedError) as info:
        victim.result(JOIN)
    check_died(info.value, pid)
    assert victim.exception(0) is info.value
    assert [f.result(JOIN) for f in others] == squares(50)
    # The pool goes on, with a new worker in place of the dead one.
    assert ex._max_workers == 2
    assert list(ex.map(tasks.t_square, numbers(100))) == squares(100)
    pids = {int(x) for x in ex.map(tasks.t_pid, [b""] * 40)}
    assert pid not in pids and os.getpid() not in pids
    again = ex.submit(gate.task, gate.arg)
    assert gate.started() != [pid]
    gate.open()
    assert again.result(JOIN) == b"open"


def test_worker_exiting_mid_task(executors, tasks):
    ex = executors(1)
    with pytest.raises(WorkerDiedError) as info:
        ex.submit(tasks.t_exit, b"3").result(JOIN)  # the task calls _exit(3)
    e = info.value
    assert e.exitcode == 3 and e.signal is None and e.pid not in (None, os.getpid())
    assert f"worker process {e.pid} exited with code 3" in str(e)
    assert ex.submit(tasks.t_square, b"5").result(JOIN) == b"25"


def test_pool_worker_killed_mid_task(pools, tasks, gate):
    p = pools(2)
    r = p.apply_async(gate.task, gate.arg)
    (pid,) = gate.started()
    m = p.map_async(tasks.t_square, numbers(100))
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerDiedError) as info:
        r.get(JOIN)
    check_died(info.value, pid)
    assert r.ready() and not r.successful()
    assert m.get(JOIN) == squares(100)
    # A map whose item's worker is killed fails with it; the other items run.
    m = p.map_async(gate.task, [gate.arg, gate.arg], chunksize=1)
    pids = gate.started(2)
    os.kill(pids[1], signal.SIGKILL)
    gate.open()
    with pytest.raises(WorkerDiedError) as info:
        m.get(JOIN)
    assert info.value.pid == pids[1]
    # An imap: the item whose worker is killed raises at its place, the iteration goes on.
    g = Gate(tasks)
    it = p.imap(g.task, [g.arg] * 3)
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0)  # starts it
    pids = g.started(2)
    os.kill(pids[0], signal.SIGKILL)
    g.open()
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(next(it))
        except WorkerDiedError as e:
            outcomes.append(e.pid)
    assert sorted(outcomes, key=str) == [pids[0], b"open", b"open"]
    with pytest.raises(StopIteration):
        next(it)
    assert p.apply(tasks.t_square, b"4") == b"16"


def test_retries_run_the_task_again_after_its_worker_died(executors, gate):
    ex = executors(2, retries=1)
    f = ex.submit(gate.task, gate.arg)
    (pid,) = gate.started()
    os.kill(pid, signal.SIGKILL)
    (pid2,) = gate.started()  # the same task, again, in another worker
    assert pid2 != pid
    os.kill(pid2, signal.SIGKILL)  # the retry budget is spent: the future fails
    with pytest.raises(WorkerDiedError) as info:
        f.result(JOIN)
    check_died(info.value, pid2)
    g = ex.submit(gate.task, gate.arg)
    (pid3,) = gate.started()
    os.kill(pid3, signal.SIGKILL)
    gate.started()
    gate.open()
    assert g.result(JOIN) == b"open"


def test_killed_worker_gives_back_the_pools_queues(tasks, gate):
    space = Space.default()

    def one_pool():
        with wf.ProcessPoolExecutor(1) as ex:
            f = ex.submit(gate.task, gate.arg)
            (pid,) = gate.started()
            os.kill(pid, signal.SIGKILL)
            assert isinstance(f.exception(JOIN), WorkerDiedError)
        gc.collect()

    one_pool()
    unused = space.usage()[1]
    one_pool()  # a pool that gave its memory back leaves the next one room to reuse
    assert space.usage()[1] == unused


def test_terminating_an_idle_pool_gives_back_its_queues(tasks):
    # terminate() (and the context manager) closes a pool with nothing left to run instead of
    # killing its workers, so that its queues go back to the default space.
    space = Space.default()

    def one_pool():
        with Pool(2) as p:
            assert p.map(tasks.t_square, numbers(10)) == squares(10)
        gc.collect()

    one_pool()
    unused = space.usage()[1]
    one_pool()
    assert space.usage()[1] == unused


# --- several cores at once ----------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_two_tasks_run_at_once_in_two_worker_processes(executors, tasks, method):
    # A rendezvous: the barrier opens only when both tasks wait at it at the same time (each
    # gives up after 20 s and fails), so both ran at once — in two different processes.
    ex = executors(2, mp_context=method)
    barrier = wmp.Barrier(2)
    fs = [ex.submit(tasks.t_meet, barrier.token()) for _ in range(2)]
    pids = {int(f.result(JOIN)) for f in fs}
    assert len(pids) == 2 and os.getpid() not in pids
    with Pool(2, context=method) as p:
        assert len({int(x) for x in p.map(tasks.t_meet, [barrier.token()] * 2, chunksize=1)}) == 2


# --- callbacks and handles ----------------------------------------------------------------


def test_done_callback_may_use_the_pool(executors, tasks, gate):
    # weft completes a process pool's futures on its collector thread, holding the pool's
    # lock; the binding runs Python callbacks on its own thread, so they may use the pool.
    ex = executors(1)
    f = ex.submit(gate.task, gate.arg)
    gate.started()
    chained, ran_on = [], []
    done = threading.Event()

    def callback(fut):
        ran_on.append(threading.current_thread().name)
        chained.append(ex.submit(tasks.t_square, fut.result(0)[:0] + b"6"))
        done.set()

    f.add_done_callback(callback)
    gate.open()
    assert done.wait(JOIN)
    assert chained[0].result(JOIN) == b"36" and ran_on == ["weft-callbacks"]
    with Pool(1) as p:
        got = []
        finished = threading.Event()
        p.apply_async(tasks.t_square, b"2",
                      callback=lambda v: p.apply_async(tasks.t_square, v,
                                                       callback=lambda w: (got.append(w), finished.set())))
        assert finished.wait(JOIN) and got == [b"16"]


def test_handles_are_freed(tasks):
    gc.collect()
    before = live_handles().get("future", 0)
    before_pools = live_handles().get("pool", 0)
    with wf.ProcessPoolExecutor(2) as e:
        fs = [e.submit(tasks.t_square, b"1") for _ in range(50)]
        wf.wait(fs)
        assert list(e.map(tasks.t_square, numbers(20))) == squares(20)
        del fs
    del e
    gc.collect()
    assert live_handles().get("future", 0) == before
    assert live_handles().get("pool", 0) == before_pools


def test_exports():
    assert weft.ProcessPoolExecutor is wf.ProcessPoolExecutor
    assert weft.WorkerDiedError is wf.WorkerDiedError
    assert issubclass(wf.BrokenProcessPool, concurrent.futures.process.BrokenProcessPool)
    e = WorkerDiedError("worker process 12 exited with code 3 while running the task")
    assert (e.pid, e.signal, e.exitcode) == (12, None, 3)
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is WorkerDiedError and again.pid == 12 and str(again) == str(e)
