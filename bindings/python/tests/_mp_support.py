"""Helpers for the cross-process tests (test_mp_*, test_shared_memory, test_spaces): fork
children that are always joined, unique names for named segments, and the check that no test
leaves a ``/dev/shm/weft.*`` entry behind."""

import glob
import itertools
import multiprocessing
import os
import time

import pytest

import weft.multiprocessing as wmp

CTX = multiprocessing.get_context("fork")
# Below the suite's 60 s hang guard, so that a stuck child fails its test (and is killed)
# before the guard ends the whole run.
JOIN_TIMEOUT = 20

# Every named space or segment a test creates starts with this, so leftovers are found (and
# removed) without touching anyone else's.
PREFIX = f"pytest{os.getpid()}-"
_serial = itertools.count()


def unique(tag: str) -> str:
    return f"{PREFIX}{tag}-{next(_serial)}"


def leftovers():
    return sorted(glob.glob(f"/dev/shm/weft.{PREFIX}*"))


@pytest.fixture
def no_shm_leaks():
    """Fails a test that leaves a named space or segment of its own in /dev/shm."""
    yield
    left = leftovers()
    for path in left:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    assert left == [], f"the test left {left} in /dev/shm"


IMPLEMENTATIONS = {"multiprocessing": CTX, "weft": wmp}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def mp(request):
    """Python's multiprocessing (fork context) or weft.multiprocessing: tests using this
    fixture prove the drop-in behaves like the original."""
    return IMPLEMENTATIONS[request.param]


class Children:
    """Starts fork children; ``join()`` waits for them and returns their exit codes. Children
    still alive at the end of a test are killed."""

    def __init__(self):
        self.procs = []

    def start(self, target, *args, n=1):
        started = []
        for _ in range(n):
            p = CTX.Process(target=target, args=args, daemon=True)
            p.start()
            started.append(p)
        self.procs += started
        return started if n > 1 else started[0]

    def join(self, procs=None):
        procs = self.procs if procs is None else procs
        if not isinstance(procs, list):
            procs = [procs]
        deadline = time.monotonic() + JOIN_TIMEOUT
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        assert all(p.exitcode is not None for p in procs), "a child did not finish"
        return [p.exitcode for p in procs]

    def run(self, target, *args, n=1):
        """Starts ``n`` children and asserts they all exit with status 0."""
        procs = self.start(target, *args, n=n)
        assert self.join(procs) == [0] * n

    def cleanup(self):
        for p in self.procs:
            if p.exitcode is None:
                p.kill()
                p.join(5)


@pytest.fixture
def children():
    c = Children()
    yield c
    c.cleanup()
