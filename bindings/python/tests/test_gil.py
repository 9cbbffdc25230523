"""Blocking weft calls release the GIL; C calls back into Python from the waiting threads.

Each GIL scenario runs in a child interpreter with a deadline: if a blocked call held the GIL,
the main thread could never run again and the child would hang, which the deadline turns into
a failure instead of a hung suite.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import weft

BINDING_DIR = Path(weft.__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    r"""
    import sys, threading, time
    import weft

    kind = sys.argv[1]
    state = {"entered": False, "result": None}

    if kind == "lock":
        obj = weft.Lock(); obj.acquire()
        block = lambda: obj.acquire()
        unblock = obj.release
    elif kind == "rlock":
        obj = weft.RLock(); obj.acquire(); obj.acquire()
        block = lambda: obj.acquire()
        def unblock():
            obj.release(); obj.release()
    elif kind == "semaphore":
        obj = weft.Semaphore(0)
        block = lambda: obj.acquire()
        unblock = obj.release
    elif kind == "event":
        obj = weft.Event()
        block = lambda: obj.wait()
        unblock = obj.set
    elif kind == "condition":
        obj = weft.Condition(weft.Lock())
        def block():
            with obj:
                state["entered"] = True  # under the lock: once main gets it, we are waiting
                return obj.wait()
        def unblock():
            with obj:
                obj.notify()
    elif kind == "barrier":
        ran_in = []
        obj = weft.Barrier(2, action=lambda: ran_in.append(threading.get_ident()))
        block = lambda: obj.wait()
        def unblock():
            assert obj.wait() == 1  # main arrives last and runs the action
            assert ran_in == [threading.get_ident()]
    else:
        raise SystemExit("unknown kind " + kind)

    def blocker():
        state["entered"] = True
        state["result"] = block()

    t = threading.Thread(target=blocker, daemon=True)
    t.start()
    while not state["entered"]:
        time.sleep(0.001)
    time.sleep(0.1)  # let the blocker get into the C call

    # The main thread keeps running Python code while the other one is blocked in C.
    n = 0
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        n += 1
    assert n > 1000, n
    assert t.is_alive() and state["result"] is None, state

    unblock()
    t.join(10)
    assert not t.is_alive()
    print("ok", kind, state["result"], n)
    """
)


@pytest.mark.parametrize("kind", ["lock", "rlock", "semaphore", "event", "condition", "barrier"])
def test_blocked_call_releases_the_gil(kind, tmp_path):
    script = tmp_path / "gil.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(BINDING_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        r = subprocess.run(
            [sys.executable, str(script), kind], env=env, capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{kind}: the child hung: a blocked weft call kept the GIL")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"ok {kind}"), r.stdout


def test_other_threads_progress_while_many_block(threads):
    """Eight threads blocked in weft waits; a ninth Python thread still counts freely."""
    lock = weft.Lock()
    event = weft.Event()
    cond = weft.Condition()
    lock.acquire()
    threads.start(lambda: lock.acquire() and lock.release(), n=3)
    threads.start(event.wait, n=3)

    def cond_waiter():
        with cond:
            return cond.wait(10)

    threads.start(cond_waiter, n=2)
    time.sleep(0.05)
    counted = []

    def counter():
        n = 0
        end = time.monotonic() + 0.1
        while time.monotonic() < end:
            n += 1
        counted.append(n)

    c = threading.Thread(target=counter)
    c.start()
    c.join(10)
    assert counted and counted[0] > 1000
    lock.release()
    event.set()
    with cond:
        cond.notify_all()
    threads.join()


def test_c_predicate_callback_runs_in_the_waiting_thread(threads):
    """weft_condition_wait_for with a Python predicate through ffi.callback: C calls back into
    Python (taking the GIL) from a thread that is otherwise blocked in C without it."""
    ffi, lib = weft.ffi, weft.lib
    cond = weft.Condition()
    state = {"n": 0}
    calls = []

    @ffi.callback("bool(void *)")
    def predicate(ctx):
        calls.append(threading.get_ident())
        return state["n"] >= 3

    def waiter():
        with cond:
            st = lib.weft_condition_wait_for(cond._ptr, predicate, ffi.NULL, weft.FOREVER)
            assert cond._is_owned()  # the lock is held again
        return st, threading.get_ident()

    threads.start(waiter)
    for _ in range(3):
        time.sleep(0.01)
        with cond:
            state["n"] += 1
            cond.notify_all()
    [(st, ident)] = threads.join()
    assert st == lib.WEFT_OK
    assert len(calls) >= 2 and set(calls) == {ident}

    # Timeout: the predicate stays false; the call fails after at least its timeout.
    with cond:
        state["n"] = 0
        t0 = time.monotonic()
        st = lib.weft_condition_wait_for(cond._ptr, predicate, ffi.NULL, 50_000_000)
        elapsed = time.monotonic() - t0
    assert st == lib.WEFT_TIMEOUT and elapsed >= 0.05
