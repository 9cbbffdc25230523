"""Helpers for the tests: threads joined with a timeout, polling with a deadline."""

import threading
import time

# Generous bound for "this must happen": joins, waits for other threads to make progress.
JOIN_TIMEOUT = 10.0


class Threads:
    """Starts threads running ``fn(*args)``, collects their results and exceptions."""

    def __init__(self):
        self.threads = []
        self.results = []
        self.errors = []
        self._lock = threading.Lock()

    def start(self, fn, *args, n=1):
        for _ in range(n):
            t = threading.Thread(target=self._run, args=(fn, args), daemon=True)
            self.threads.append(t)
            t.start()
        return self

    def _run(self, fn, args):
        try:
            r = fn(*args)
        except BaseException as e:  # noqa: B902 - reported by join()
            with self._lock:
                self.errors.append(e)
        else:
            with self._lock:
                self.results.append(r)

    def join(self, timeout=JOIN_TIMEOUT, raise_errors=True):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, f"{len(alive)} thread(s) still running after {timeout} s"
        if raise_errors and self.errors:
            raise self.errors[0]
        return self.results



def wait_until(predicate, timeout=JOIN_TIMEOUT, interval=0.001):
    """Polls ``predicate`` until true; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        time.sleep(interval)
