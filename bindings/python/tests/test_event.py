"""Event: the same assertions against threading.Event and weft.Event."""

import re
import time
import warnings

import pytest

from _helpers import wait_until


def test_set_clear_is_set(mod):
    e = mod.Event()
    assert e.is_set() is False
    e.set()
    assert e.is_set() is True
    e.set()
    assert e.is_set() is True
    e.clear()
    assert e.is_set() is False
    e.clear()
    assert e.is_set() is False


def test_wait_returns_flag(mod):
    e = mod.Event()
    assert e.wait(0) is False
    assert e.wait(-1) is False  # a negative timeout does not block
    assert e.wait(0.001) is False
    e.set()
    assert e.wait() is True
    assert e.wait(0) is True
    assert e.wait(None) is True
    assert e.wait(timeout=5) is True


@pytest.mark.parametrize("timeout", [0.05, 0.1])
def test_timed_out_wait_takes_at_least_its_timeout(mod, timeout):
    e = mod.Event()
    t0 = time.monotonic()
    assert e.wait(timeout) is False
    assert time.monotonic() - t0 >= timeout


def test_set_wakes_every_waiter(mod, threads):
    e = mod.Event()
    started = []

    def waiter():
        started.append(1)
        return e.wait(10)

    threads.start(waiter, n=5)
    wait_until(lambda: len(started) == 5)
    time.sleep(0.02)
    e.set()
    assert threads.join() == [True] * 5


def test_waiters_with_timeout_time_out_then_succeed(mod, threads):
    e = mod.Event()
    first = []

    def waiter():
        first.append(e.wait(0.05))
        return e.wait(10)

    threads.start(waiter, n=3)
    wait_until(lambda: len(first) == 3)  # nobody sets the event before these time out
    e.set()
    assert first == [False] * 3
    assert threads.join() == [True] * 3


def test_clear_then_wait_blocks_again(mod, threads):
    e = mod.Event()
    e.set()
    e.clear()
    assert e.wait(0.01) is False
    threads.start(lambda: e.wait(10))
    time.sleep(0.02)
    e.set()
    assert threads.join() == [True]


def test_wait_timeout_types(mod):
    e = mod.Event()
    with pytest.raises(TypeError):
        e.wait("1")
    with pytest.raises(OverflowError):
        e.wait(mod.TIMEOUT_MAX * 2)
    assert e.wait(float("nan")) is False


def test_isSet_is_deprecated(mod):
    e = mod.Event()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert e.isSet() is False
    assert any(issubclass(x.category, DeprecationWarning) for x in w)


def test_repr(mod):
    e = mod.Event()
    assert re.fullmatch(r"<\w+\.Event at 0x[0-9a-f]+: unset>", repr(e))
    e.set()
    assert re.fullmatch(r"<\w+\.Event at 0x[0-9a-f]+: set>", repr(e))


def test_many_rounds(mod, threads):
    """Ping-pong between two threads with two events, many rounds."""
    ping, pong = mod.Event(), mod.Event()
    rounds = 200

    def player():
        for _ in range(rounds):
            assert ping.wait(10)
            ping.clear()
            pong.set()

    threads.start(player)
    for _ in range(rounds):
        ping.set()
        assert pong.wait(10)
        pong.clear()
    threads.join()
