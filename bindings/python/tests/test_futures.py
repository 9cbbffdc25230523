"""weft.futures: Future, wait, as_completed and ThreadPoolExecutor over native tasks (tasks.c,
compiled here into a shared library) — results and failures, timeouts, cancellation of pending
and running tasks, done callbacks, asyncio, shutdown, initializers, the ways to name a native
function, and the GIL released while waiting (two CPU-bound tasks really run at once)."""

import asyncio
import concurrent.futures as cf
import ctypes
import gc
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import cffi
import pytest

import weft
import weft.futures as wf
from weft import TaskError, WeftError
from weft._native import CONSTANTS, live_handles

HERE = Path(__file__).resolve().parent
JOIN = 20.0  # seconds: "this must finish" (below the suite's hang guard)

NOT_FOUND = CONSTANTS["WEFT_NOT_FOUND"]
PERMISSION_DENIED = CONSTANTS["WEFT_PERMISSION_DENIED"]
TASK_FAILED = CONSTANTS["WEFT_TASK_FAILED"]


def build_tasks(directory: Path) -> Path:
    """Compiles tasks.c into ``directory/libtasks.so`` against the libweft the binding loaded."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    assert cc is not None, "no C compiler (cc, or $CC) to build tasks.c: install gcc"
    out = directory / "libtasks.so"
    library = Path(weft.LIBRARY_PATH)
    assert library.is_absolute(), f"libweft was found by the dynamic linker ({library}); cannot link tasks.c"
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I", str(weft.HEADER_PATH.parent),
           str(HERE / "tasks.c"), "-o", str(out), str(library), f"-Wl,-rpath,{library.parent}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"compiling tasks.c failed:\n{' '.join(cmd)}\n{r.stderr}"
    return out


@pytest.fixture(scope="module")
def tasks_path(tmp_path_factory):
    return build_tasks(tmp_path_factory.mktemp("futures_tasks"))


@pytest.fixture(scope="module")
def tasks(tasks_path):
    t = ctypes.CDLL(str(tasks_path))
    t.t_gate_reset()
    return t


@pytest.fixture
def ex():
    executors = []

    def make(*args, **kwargs):
        e = wf.ThreadPoolExecutor(*args, **kwargs)
        executors.append(e)
        return e

    yield make
    for e in executors:
        e.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def gate(tasks):
    """The library's gate (t_gate tasks block on it), closed for the test, opened after it."""
    tasks.t_gate_reset()
    yield tasks
    tasks.t_gate_open()


def wait_until(pred, timeout=JOIN):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def started_after(tasks, n0, n):
    wait_until(lambda: tasks.t_started() >= n0 + n)


# --- submit, result, failures -------------------------------------------------------------


def test_submit_results_exact(ex, tasks):
    e = ex(4)
    fs = [e.submit(tasks.t_square, b"%d" % i) for i in range(2000)]
    assert [f.result(JOIN) for f in fs] == [b"%d" % (i * i) for i in range(2000)]
    assert all(f.done() and not f.cancelled() and not f.running() for f in fs)
    assert all(f.exception(0) is None for f in fs)
    f = e.submit(tasks.t_echo)  # no argument: empty bytes
    assert f.result(JOIN) == b""
    assert e.submit(tasks.t_echo, b"\0x\0").result(JOIN) == b"\0x\0"
    assert e.submit(tasks.t_echo, bytearray(b"ba")).result(JOIN) == b"ba"
    assert e.submit(tasks.t_echo, memoryview(b"mv")).result(JOIN) == b"mv"
    big = os.urandom(1 << 20)
    assert e.submit(tasks.t_echo, big).result(JOIN) == big


def test_failure_raises_task_error_with_status(ex, tasks):
    e = ex(2)
    f = e.submit(tasks.t_fail, b"no such thing")
    exc = f.exception(JOIN)
    assert isinstance(exc, TaskError) and isinstance(exc, WeftError)
    assert exc.task_status == NOT_FOUND
    assert exc.task_status_name == "WEFT_NOT_FOUND"
    assert exc.task_message == "no such thing"
    assert exc.status == TASK_FAILED
    with pytest.raises(TaskError) as info:
        f.result()
    assert info.value is exc  # the same exception object each time
    assert f.exception() is exc
    assert f.done() and not f.cancelled()
    assert "raised TaskError" in repr(f)


def test_arguments_are_checked(ex, tasks):
    e = ex(1)
    with pytest.raises(TypeError):
        e.submit(tasks.t_echo, "text")  # str is not bytes
    with pytest.raises(TypeError):
        e.submit(tasks.t_echo, b"a", b"b")  # one argument only
    with pytest.raises(TypeError):
        e.submit(tasks.t_echo, x=b"a")
    with pytest.raises(TypeError):
        e.submit(lambda call: 0, b"")  # a Python function
    with pytest.raises(TypeError):
        e.submit(ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(lambda call: 0))  # a ctypes callback
    ffi = cffi.FFI()
    with pytest.raises(TypeError):
        e.submit(ffi.callback("int(void *)", lambda call: 0))  # a cffi callback
    with pytest.raises(TypeError):
        e.submit(3.5)
    with pytest.raises(ValueError):
        e.submit(0)
    with pytest.raises(ValueError):
        wf.ThreadPoolExecutor(0)
    with pytest.raises(ValueError):
        wf.ThreadPoolExecutor(-1)


def test_native_function_forms(ex, tasks, tasks_path):
    e = ex(2)
    # ctypes pointer of a CDLL function
    assert e.submit(tasks.t_square, b"3").result(JOIN) == b"9"
    # integer address
    addr = ctypes.cast(tasks.t_square, ctypes.c_void_p).value
    assert e.submit(addr, b"4").result(JOIN) == b"16"
    # ctypes CFUNCTYPE made from an address (not a Python callback)
    proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
    assert e.submit(proto(addr), b"5").result(JOIN) == b"25"
    # cffi function pointer, from another FFI
    ffi = cffi.FFI()
    ffi.cdef("int t_square(void *call);")
    lib = ffi.dlopen(str(tasks_path))
    assert e.submit(lib.t_square, b"6").result(JOIN) == b"36"
    assert e.submit(ffi.addressof(lib, "t_square"), b"7").result(JOIN) == b"49"
    # (library_path, symbol) pair: str, Path or bytes
    assert e.submit((str(tasks_path), "t_square"), b"8").result(JOIN) == b"64"
    assert e.submit((tasks_path, b"t_square"), b"9").result(JOIN) == b"81"
    with pytest.raises(WeftError) as info:
        e.submit((str(tasks_path), "no_such_symbol"))
    assert info.value.name == "WEFT_NOT_FOUND"
    with pytest.raises(WeftError):
        e.submit(("/nonexistent/libnothing.so", "f"))
    with pytest.raises(TypeError):
        e.submit((str(tasks_path),))


def test_result_timeout_not_early(ex, gate):
    e = ex(1)
    f = e.submit(gate.t_gate)
    with pytest.raises(cf.TimeoutError):
        f.result(0)
    with pytest.raises(TimeoutError):  # the builtin, as concurrent.futures raises since 3.11
        f.exception(timeout=0)
    t0 = time.monotonic()
    with pytest.raises(cf.TimeoutError):
        f.result(0.05)
    assert time.monotonic() - t0 >= 0.05
    assert not f.done()
    gate.t_gate_open()
    assert f.result(JOIN) == b"open"


def test_failure_with_a_timeout_status_is_not_a_timeout():
    f = wf.Future()
    f.set_exception(TaskError(CONSTANTS["WEFT_TIMEOUT"], "my own timeout"))
    with pytest.raises(TaskError) as info:
        f.result(0)
    assert info.value.task_status_name == "WEFT_TIMEOUT"


# --- cancellation -------------------------------------------------------------------------


def test_cancel_pending_never_runs(ex, gate):
    e = ex(1)
    blocker = e.submit(gate.t_gate)
    n0 = gate.t_count_value()
    wait_until(blocker.running)
    f = e.submit(gate.t_count)
    assert not f.running() and not f.done()
    assert f.cancel() is True
    assert f.cancelled() and f.done()
    assert f.cancel() is True  # again
    with pytest.raises(cf.CancelledError):
        f.result()
    with pytest.raises(cf.CancelledError):
        f.exception()
    assert "cancelled" in repr(f)
    gate.t_gate_open()
    assert blocker.result(JOIN) == b"open"
    e.shutdown(wait=True)
    assert gate.t_count_value() == n0


@pytest.mark.parametrize("task", ["t_until_cancelled", "t_wait_cancelled"])
def test_cancel_running_asks_the_task(ex, tasks, task):
    e = ex(1)
    n0 = tasks.t_started()
    f = e.submit(getattr(tasks, task))
    started_after(tasks, n0, 1)
    wait_until(f.running)
    assert f.cancel() is False  # running: Python's answer
    with pytest.raises(cf.CancelledError):
        f.result(JOIN)  # the task honoured the request (a weft wait inside it was woken)
    assert f.cancelled()
    assert e.submit(tasks.t_square, b"2").result(JOIN) == b"4"  # the worker goes on
    assert f.cancel() is True


def test_cancel_finished_is_false(ex, tasks):
    f = ex(1).submit(tasks.t_echo, b"x")
    assert f.result(JOIN) == b"x"
    assert f.cancel() is False
    assert not f.cancelled()


# --- callbacks ------------------------------------------------------------------------------


def test_done_callback_called_exactly_once(ex, gate):
    e = ex(2)
    calls = []
    threads = []

    def cb(fut):
        calls.append(fut)
        threads.append(threading.get_ident())

    f = e.submit(gate.t_gate)
    f.add_done_callback(cb)
    f.add_done_callback(cb)
    assert calls == []
    gate.t_gate_open()
    assert f.result(JOIN) == b"open"
    wait_until(lambda: len(calls) == 2)
    assert calls == [f, f]
    assert threading.get_ident() not in threads  # ran on the worker that finished it
    # Added to a finished future: at once, on this thread.
    f.add_done_callback(cb)
    assert calls == [f, f, f] and threads[-1] == threading.get_ident()
    time.sleep(0.05)
    assert len(calls) == 3  # never again


def test_done_callback_on_cancel_and_failure(ex, gate, caplog):
    e = ex(1)
    blocker = e.submit(gate.t_gate)
    f = e.submit(gate.t_count)
    seen = []
    f.add_done_callback(lambda fut: seen.append(("cancel", fut.cancelled())))
    assert f.cancel()
    assert seen == [("cancel", True)]  # on the cancelling thread, before cancel() returned
    bad = e.submit(gate.t_fail, b"oops")
    bad.add_done_callback(lambda fut: seen.append(("fail", type(fut.exception()).__name__)))

    def boom(fut):
        raise RuntimeError("callback error")

    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        bad.add_done_callback(boom)
        gate.t_gate_open()
        blocker.result(JOIN)
        bad.exception(JOIN)
        wait_until(lambda: ("fail", "TaskError") in seen)
        wait_until(lambda: "exception calling callback" in caplog.text)
    assert "callback error" in caplog.text


# --- wait and as_completed ------------------------------------------------------------------


def test_wait_modes(ex, gate):
    e = ex(3)
    blocked = e.submit(gate.t_gate)
    quick = e.submit(gate.t_square, b"3")
    failing = e.submit(gate.t_fail, b"x")
    done, not_done = wf.wait([blocked, quick], return_when=wf.FIRST_COMPLETED, timeout=JOIN)
    assert done == {quick} and not_done == {blocked}
    done, not_done = wf.wait([blocked, quick, failing], return_when=wf.FIRST_EXCEPTION, timeout=JOIN)
    assert failing in done and blocked in not_done
    t0 = time.monotonic()
    done, not_done = wf.wait([blocked, quick], timeout=0.05)  # ALL_COMPLETED times out
    assert time.monotonic() - t0 >= 0.05
    assert done == {quick} and not_done == {blocked}
    assert wf.wait([]) == (set(), set())
    with pytest.raises(ValueError):
        wf.wait([quick], return_when="SOMETIMES")
    with pytest.raises(TypeError):
        wf.wait([cf.Future()])
    gate.t_gate_open()
    done, not_done = wf.wait([blocked, quick, failing, quick])
    assert done == {blocked, quick, failing} and not_done == set()
    assert isinstance(wf.wait([quick]), tuple) and wf.wait([quick]).done == {quick}


def test_as_completed(ex, gate):
    e = ex(2)
    first = e.submit(gate.t_square, b"2")
    first.result(JOIN)
    blocked = e.submit(gate.t_gate)
    it = wf.as_completed([blocked, first, first])
    assert next(it) is first  # finished already: first
    with pytest.raises(cf.TimeoutError):
        next(wf.as_completed([blocked], timeout=0.02))
    gate.t_gate_open()
    assert next(it) is blocked
    with pytest.raises(StopIteration):
        next(it)
    assert list(wf.as_completed([])) == []
    many = [e.submit(gate.t_square, b"%d" % i) for i in range(200)]
    got = list(wf.as_completed(many, timeout=JOIN))
    assert len(got) == 200 and set(got) == set(many)


def test_as_completed_timeout_message(ex, gate):
    e = ex(1)
    fs = [e.submit(gate.t_gate), e.submit(gate.t_gate)]
    with pytest.raises(cf.TimeoutError, match=r"2 \(of 2\) futures unfinished"):
        for _ in wf.as_completed(fs, timeout=0.01):
            pass


# --- map ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunksize", [1, 7, 10_000])
def test_map_ordered_exact(ex, tasks, chunksize):
    e = ex(3)
    items = [b"%d" % i for i in range(500)]
    assert list(e.map(tasks.t_square, items, chunksize=chunksize)) == [b"%d" % (i * i) for i in range(500)]
    assert list(e.map(tasks.t_square, iter(items[:3]), chunksize=chunksize)) == [b"0", b"1", b"4"]
    assert list(e.map(tasks.t_square, [], chunksize=chunksize)) == []


def test_map_failure_raises_at_its_place(ex, tasks):
    e = ex(2)
    items = [b"1", b"2", b"-3", b"4"]
    it = e.map(tasks.t_square_or_fail, items)
    assert next(it) == b"1"
    assert next(it) == b"4"
    with pytest.raises(TaskError) as info:
        next(it)
    assert info.value.task_status == NOT_FOUND
    assert info.value.task_message == "bad item -3"
    with pytest.raises(StopIteration):
        next(it)
    # The very first item failing: raised when iterating, not by map().
    it = e.map(tasks.t_square_or_fail, [b"-1", b"2"])
    with pytest.raises(TaskError):
        next(it)


def test_map_timeout_and_early_close_cancels(ex, gate):
    e = ex(1)
    n0 = gate.t_count_value()
    it = e.map(gate.t_gate, [b""] * 3, timeout=0.05)
    with pytest.raises(cf.TimeoutError):
        next(it)
    blocker = e.submit(gate.t_gate)
    it = e.map(gate.t_count, [b""] * 20)
    it.close()  # never iterated: every item not started is cancelled
    gate.t_gate_open()
    blocker.result(JOIN)
    e.shutdown(wait=True)
    assert gate.t_count_value() == n0


def test_map_arguments(ex, tasks):
    e = ex(1)
    with pytest.raises(TypeError):
        e.map(tasks.t_echo, [b"a"], [b"b"])
    with pytest.raises(ValueError):
        e.map(tasks.t_echo, [b"a"], chunksize=0)
    with pytest.raises(TypeError):
        e.map(tasks.t_echo, ["str"])


# --- shutdown -----------------------------------------------------------------------------


def test_shutdown_cancel_futures_wakes_waiters(ex, gate):
    e = ex(1)
    running = e.submit(gate.t_gate)
    wait_until(running.running)
    pending = [e.submit(gate.t_count) for _ in range(5)]
    results = []

    def waiter():
        try:
            pending[2].result()
        except cf.CancelledError:
            results.append("cancelled")

    def completer():
        results.append(len(list(wf.as_completed(pending))))

    ts = [threading.Thread(target=waiter), threading.Thread(target=completer)]
    for t in ts:
        t.start()
    time.sleep(0.05)  # let them block in C
    e.shutdown(wait=False, cancel_futures=True)
    for t in ts:
        t.join(JOIN)
    assert sorted(results, key=str) == [5, "cancelled"]
    assert all(f.cancelled() for f in pending)
    assert not running.done()  # a running task is not cancelled by shutdown
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        e.submit(gate.t_count)
    with pytest.raises(RuntimeError):
        e.map(gate.t_count, [b""])
    gate.t_gate_open()
    e.shutdown(wait=True)
    assert running.result(0) == b"open"
    e.shutdown()  # again: fine


def test_context_manager_waits(tasks):
    with wf.ThreadPoolExecutor(2) as e:
        fs = [e.submit(tasks.t_square, b"%d" % i) for i in range(100)]
    assert all(f.done() for f in fs)  # __exit__ = shutdown(wait=True)
    with pytest.raises(RuntimeError):
        e.submit(tasks.t_square, b"1")
    assert isinstance(e, cf.Executor)


def test_default_workers_is_cpu_count(ex):
    assert ex()._max_workers == weft.cpu_count()
    assert ex(3)._max_workers == 3


# --- initializer --------------------------------------------------------------------------


def test_initializer_thread_local_state(ex, tasks):
    n0 = tasks.t_init_count()
    e = ex(3, initializer=tasks.t_init_tls, initargs=b"ready")
    fs = [e.submit(tasks.t_read_tls) for _ in range(60)]
    assert {f.result(JOIN) for f in fs} == {b"ready"}
    e.shutdown(wait=True)
    assert tasks.t_init_count() - n0 == 3  # once per worker


def test_failing_initializer_breaks_the_pool(ex, tasks):
    e = ex(2, initializer=tasks.t_init_fail)
    with pytest.raises(wf.BrokenThreadPool) as info:
        for _ in range(10_000):
            e.submit(tasks.t_count).result(JOIN)
            time.sleep(0.001)
    assert isinstance(info.value, cf.thread.BrokenThreadPool)
    assert info.value.status == PERMISSION_DENIED
    assert "init refused" in str(info.value)
    with pytest.raises(wf.BrokenThreadPool):
        e.submit(tasks.t_count)


# --- handles and futures made by the program ------------------------------------------------


def test_program_made_future():
    f = wf.Future()
    assert not f.done() and not f.running()
    assert f.set_running_or_notify_cancel() is True
    assert f.running()
    f.set_result(b"made")
    assert f.result(0) == b"made"
    with pytest.raises(cf.InvalidStateError):
        f.set_result(b"again")
    g = wf.Future()
    err = ValueError("mine")
    g.set_exception(err)
    assert g.exception(0) is err
    with pytest.raises(ValueError, match="mine"):
        g.result(0)
    h = wf.Future()
    assert h.cancel()
    assert h.set_running_or_notify_cancel() is False
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(wf.Future())


def test_handles_are_freed(tasks):
    gc.collect()
    before = live_handles().get("future", 0)
    before_ac = live_handles().get("as_completed", 0)
    with wf.ThreadPoolExecutor(2) as e:
        fs = [e.submit(tasks.t_square, b"1") for _ in range(50)]
        wf.wait(fs)
        list(wf.as_completed(fs))
        del fs
    del e
    gc.collect()
    assert live_handles().get("future", 0) == before
    assert live_handles().get("as_completed", 0) == before_ac


# --- asyncio ------------------------------------------------------------------------------


def test_await_in_asyncio(ex, gate):
    e = ex(2)

    async def main():
        f = e.submit(gate.t_gate)
        other = asyncio.ensure_future(asyncio.sleep(0.01, "slept"))
        # Two awaiters of the same future in one loop.
        a = asyncio.ensure_future(_await(f))
        b = asyncio.ensure_future(_await(f))
        assert await other == "slept"  # the loop runs while the future is pending
        assert not a.done() and not b.done()
        gate.t_gate_open()
        assert await a == b"open" and await b == b"open"
        assert await f == b"open"  # finished already
        bad = e.submit(gate.t_fail, b"async failure")
        with pytest.raises(TaskError, match="async failure"):
            await bad

    async def _await(f):
        return await f

    asyncio.run(main())


def test_cancelling_the_awaiting_task_cancels_the_future(ex, tasks):
    e = ex(1)

    async def main():
        f = e.submit(tasks.t_wait_cancelled)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_await(f), 0.05)
        return f

    async def _await(f):
        return await f

    f = asyncio.run(main())
    with pytest.raises(cf.CancelledError):
        f.result(JOIN)  # the running task was asked to stop and did


# --- the GIL ------------------------------------------------------------------------------


def test_two_cpu_bound_tasks_run_at_once_with_the_gil_released(ex, tasks):
    tasks.t_spin_reset()
    e = ex(2)
    fs = [e.submit(tasks.t_spin), e.submit(tasks.t_spin)]
    seen = []

    def observer():
        # Runs Python code while the main thread waits in result(): possible only if that
        # wait released the GIL. Releases the spinners once both spin at the same time.
        deadline = time.monotonic() + JOIN
        while tasks.t_spin_running() < 2 and time.monotonic() < deadline:
            pass  # busy: Python bytecode, holding the GIL whenever it can
        seen.append(tasks.t_spin_running())
        tasks.t_spin_release()

    t = threading.Thread(target=observer)
    t.start()
    assert fs[0].result(JOIN) == b"spun"  # would time out if result() held the GIL
    assert fs[1].result(JOIN) == b"spun"
    t.join(JOIN)
    assert seen == [2]
    assert tasks.t_spin_peak() == 2  # both ran at once
