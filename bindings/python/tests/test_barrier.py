"""Barrier: the same assertions against threading.Barrier and weft.Barrier."""

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _helpers import wait_until


def test_indices_are_a_permutation_every_round(mod, threads):
    n, rounds = 4, 20
    barrier = mod.Barrier(n, timeout=10)
    per_round = [[] for _ in range(rounds)]

    def party():
        for r in range(rounds):
            per_round[r].append(barrier.wait())

    threads.start(party, n=n).join()
    for indices in per_round:
        assert sorted(indices) == list(range(n))
    assert barrier.n_waiting == 0 and not barrier.broken


def test_properties(mod):
    barrier = mod.Barrier(3)
    assert barrier.parties == 3
    assert barrier.n_waiting == 0
    assert barrier.broken is False


def test_n_waiting_counts_arrivals(mod, threads):
    barrier = mod.Barrier(3)
    threads.start(barrier.wait, 10, n=2)
    wait_until(lambda: barrier.n_waiting == 2)
    assert barrier.wait(10) == 2  # the last to arrive gets parties - 1
    threads.join()
    assert barrier.n_waiting == 0


def test_single_party(mod):
    barrier = mod.Barrier(1)
    assert [barrier.wait() for _ in range(3)] == [0, 0, 0]


def test_action_runs_once_per_round_in_last_thread_before_release(mod, threads):
    n, rounds = 3, 10
    log = []
    released = []

    def action():
        # No party of this round has left wait() yet.
        log.append((threading.get_ident(), len(released)))

    barrier = mod.Barrier(n, action=action, timeout=10)
    lock = threading.Lock()

    def party():
        out = []
        for r in range(rounds):
            i = barrier.wait()
            with lock:
                released.append(r)
            out.append((r, i, threading.get_ident()))
            # Everyone leaves round r before anyone can finish round r + 1 (it needs all n).
        return out

    results = [x for lst in threads.start(party, n=n).join() for x in lst]
    assert len(log) == rounds
    for r in range(rounds):
        ident, released_before = log[r]
        # The thread that ran the action is the one that got index n - 1 in round r.
        last = [t for (rr, i, t) in results if rr == r and i == n - 1]
        assert last == [ident]
        assert released_before == r * n


def test_action_exception_breaks_barrier(mod, threads):
    def action():
        raise ZeroDivisionError("in action")

    barrier = mod.Barrier(3, action=action)

    def party():
        try:
            barrier.wait(10)
        except Exception as e:  # noqa: BLE001
            return type(e)

    threads.start(party, n=2)
    wait_until(lambda: barrier.n_waiting == 2)
    with pytest.raises(ZeroDivisionError, match="in action"):
        barrier.wait(10)  # the last party runs the action and gets its exception
    assert threads.join() == [threading.BrokenBarrierError] * 2
    assert barrier.broken
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(10)


def test_abort_breaks_waiters_and_later_calls(mod, threads):
    barrier = mod.Barrier(3)

    def party():
        with pytest.raises(threading.BrokenBarrierError):
            barrier.wait(10)
        return "broken"

    threads.start(party, n=2)
    wait_until(lambda: barrier.n_waiting == 2)
    barrier.abort()
    assert threads.join() == ["broken", "broken"]
    assert barrier.broken is True
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    barrier.reset()
    assert barrier.broken is False
    # Usable again.
    t = threading.Thread(target=barrier.wait, args=(10,))
    u = threading.Thread(target=barrier.wait, args=(10,))
    t.start()
    u.start()
    assert barrier.wait(10) in (0, 1, 2)
    t.join(10)
    u.join(10)


def test_reset_while_waiting(mod, threads):
    barrier = mod.Barrier(3)

    def party():
        try:
            barrier.wait(10)
        except threading.BrokenBarrierError:
            return "broken"
        return "ok"

    threads.start(party, n=2)
    wait_until(lambda: barrier.n_waiting == 2)
    barrier.reset()
    assert threads.join() == ["broken", "broken"]
    assert barrier.broken is False
    # After the reset the barrier works for a full round.
    t = threading.Thread(target=barrier.wait, args=(10,))
    t.start()
    threads2 = threading.Thread(target=barrier.wait, args=(10,))
    threads2.start()
    assert barrier.wait(10) in (0, 1, 2)
    t.join(10)
    threads2.join(10)
    assert not t.is_alive() and not threads2.is_alive()


def test_timeout_breaks_barrier(mod, threads):
    barrier = mod.Barrier(3)
    t0 = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0.05)
    assert time.monotonic() - t0 >= 0.05
    assert barrier.broken
    barrier.reset()
    assert not barrier.broken


def test_timeout_of_one_party_breaks_the_others(mod, threads):
    barrier = mod.Barrier(3)

    def patient():
        with pytest.raises(threading.BrokenBarrierError):
            barrier.wait(10)
        return "broken"

    threads.start(patient)
    wait_until(lambda: barrier.n_waiting == 1)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0.05)
    assert threads.join() == ["broken"]


def test_default_timeout_from_constructor(mod):
    barrier = mod.Barrier(2, timeout=0.05)
    t0 = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    assert time.monotonic() - t0 >= 0.05
    barrier = mod.Barrier(2, timeout=0.01)
    barrier.reset()
    t0 = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0.1)  # an explicit timeout wins
    assert time.monotonic() - t0 >= 0.1


def test_zero_timeout_does_not_block(mod):
    barrier = mod.Barrier(2)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0)
    barrier = mod.Barrier(1)
    assert barrier.wait(0) == 0  # the last party never waits


def test_repr(mod, threads):
    barrier = mod.Barrier(2)
    assert re.fullmatch(r"<\w+\.Barrier at 0x[0-9a-f]+: waiters=0/2>", repr(barrier))
    threads.start(lambda: pytest.raises(threading.BrokenBarrierError, barrier.wait, 10))
    wait_until(lambda: barrier.n_waiting == 1)
    assert re.fullmatch(r"<\w+\.Barrier at 0x[0-9a-f]+: waiters=1/2>", repr(barrier))
    barrier.abort()
    threads.join()
    assert re.fullmatch(r"<\w+\.Barrier at 0x[0-9a-f]+: broken>", repr(barrier))


def test_weft_barrier_parties_validated():
    """CPython 3.11 accepts Barrier(0), which can never trip; weft refuses it, as newer
    CPython versions do."""
    import weft

    for bad in (0, -1):
        with pytest.raises(ValueError, match="parties must be > 0"):
            weft.Barrier(bad)
    with pytest.raises(TypeError):
        weft.Barrier(2.0)
    with pytest.raises(OverflowError):
        weft.Barrier(2**32)


def test_weft_action_can_be_any_callable():
    import weft

    class Counter:
        def __init__(self):
            self.n = 0

        def __call__(self):
            self.n += 1

    c = Counter()
    barrier = weft.Barrier(1, c)
    for _ in range(5):
        barrier.wait()
    assert c.n == 5
    assert barrier._action is c


N_WAITING_IN_ACTION = r"""
import sys, threading
import weft
mod = weft if sys.argv[1] == "weft" else threading
seen = []
b = mod.Barrier(2, action=lambda: seen.append((b.n_waiting, b.broken, b.parties)))
t = threading.Thread(target=b.wait, daemon=True)
t.start()
b.wait()
t.join(10)
print(seen)
"""


@pytest.mark.parametrize("impl", ["threading", "weft"])
def test_properties_readable_inside_the_action(impl):
    """The action may read the barrier's properties: CPython's n_waiting is then `parties`
    (everyone has arrived, nobody has left). Run in a child with a deadline so a deadlock
    fails the test instead of hanging the suite."""
    import weft

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(weft.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        r = subprocess.run(
            [sys.executable, "-c", N_WAITING_IN_ACTION, impl], env=env, capture_output=True, text=True, timeout=5
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{impl}: Barrier.n_waiting called from the barrier's action deadlocked")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[(2, False, 2)]"
