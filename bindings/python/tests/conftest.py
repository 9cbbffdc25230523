"""Shared fixtures: the same tests run against ``threading`` and ``weft`` to prove drop-in
compatibility; helpers start threads and always join them with a timeout."""

import faulthandler
import os
import sys
import threading
from pathlib import Path

import pytest

# Make `pytest bindings/python/tests` work without PYTHONPATH.
_BINDING_DIR = Path(__file__).resolve().parent.parent
if str(_BINDING_DIR) not in sys.path:
    sys.path.insert(0, str(_BINDING_DIR))

import weft  # noqa: E402
from _helpers import JOIN_TIMEOUT, Threads  # noqa: E402

IMPLEMENTATIONS = {"threading": threading, "weft": weft}

# A test that deadlocks must fail, not hang the suite: dump every thread's stack and exit.
HANG_TIMEOUT = float(os.environ.get("WEFT_TEST_HANG_TIMEOUT", "60"))


@pytest.fixture(autouse=True)
def _hang_guard():
    faulthandler.dump_traceback_later(HANG_TIMEOUT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def mod(request):
    """``threading`` or ``weft``: both must pass every test that uses this fixture."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def threads():
    ts = Threads()
    yield ts
    for t in ts.threads:
        t.join(JOIN_TIMEOUT)
