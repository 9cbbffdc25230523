#!/usr/bin/env python3
"""CPython's peer for benches/pool.rs: concurrent.futures.ThreadPoolExecutor and
ProcessPoolExecutor, and multiprocessing.Pool, measured in-process.

The bench starts this script once and keeps it running, so that Python's start-up (and each
executor's thread start-up) is paid once and its slices can be interleaved with weft's. One
command per line on stdin, one answer line on stdout ("ok <value>..." or "error ..."):

    tpe N W BURST      a ThreadPoolExecutor(W), made once per W: N trivial tasks
                       (inc(x) = x + 1), submitted in bursts of at most BURST; after each
                       burst every future's result is read and checked; ns per task
    calibrate MS       "ok ITERS NS": the iterations of spin() that take about MS ms of CPU
                       time on this interpreter, and the CPU ns one call of that size took
    spin W M ITERS     a ThreadPoolExecutor(W): M tasks spin(seed, ITERS) (a pure-Python
                       CPU-bound loop) submitted at once, every result read and checked
                       against the value computed once beforehand; ns per task
    ppe N W BURST      a ProcessPoolExecutor(W) (fork context), made once per W: N trivial
                       tasks inc(x), submitted in bursts of at most BURST; after each burst
                       every future's result is read and checked; ns per task
    mpapply N W BURST  a multiprocessing.Pool(W) (fork context), made once per W: N trivial
                       tasks, apply_async(inc, (x,)) one per task in bursts of at most BURST,
                       then .get() of each checked; ns per task
    mpmap N W          Pool(W).map(inc, range(B, B + N)) with Pool.map's default chunking
                       (len / (4 W), rounded up); the list checked after the clock stops;
                       ns per item
    pspin KIND W M ITERS  KIND ppe (ProcessPoolExecutor(W).submit) or mp
                       (multiprocessing.Pool(W).apply_async): M tasks spin(seed, ITERS)
                       submitted at once, every result checked; ns per task
    quit

The process pools' workers are forked once, when a pool is first used (the bench's warm-up
call), and reused by every later command, as the bench reuses weft's pools.
"""

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
import multiprocessing as mp
import sys
import time

SEEDS = 16

_executors = {}


def executor(w):
    ex = _executors.get(w)
    if ex is None:
        ex = _executors[w] = ThreadPoolExecutor(max_workers=w)
    return ex


_ctx = mp.get_context("fork")
_ppes = {}
_mppools = {}


def ppe_of(w):
    ex = _ppes.get(w)
    if ex is None:
        ex = _ppes[w] = ProcessPoolExecutor(max_workers=w, mp_context=_ctx)
    return ex


def mppool_of(w):
    p = _mppools.get(w)
    if p is None:
        p = _mppools[w] = _ctx.Pool(w)
    return p


def inc(x):
    return x + 1


_next = 0


def tpe(n, w, burst):
    """n trivial tasks on a ThreadPoolExecutor(w), in bursts; ns per task."""
    global _next
    ex = executor(w)
    submit = ex.submit
    left = n
    elapsed = 0
    while left:
        k = min(left, burst)
        base = _next
        _next += k
        t0 = time.perf_counter_ns()
        fs = [submit(inc, base + i) for i in range(k)]
        for i, f in enumerate(fs):
            if f.result() != base + i + 1:
                raise RuntimeError(f"task {i}: wrong result {f.result()}")
        elapsed += time.perf_counter_ns() - t0
        left -= k
    return elapsed / n


def ppe(n, w, burst):
    """n trivial tasks on a ProcessPoolExecutor(w), in bursts; ns per task."""
    global _next
    submit = ppe_of(w).submit
    left = n
    elapsed = 0
    while left:
        k = min(left, burst)
        base = _next
        _next += k
        t0 = time.perf_counter_ns()
        fs = [submit(inc, base + i) for i in range(k)]
        for i, f in enumerate(fs):
            if f.result() != base + i + 1:
                raise RuntimeError(f"task {i}: wrong result {f.result()}")
        elapsed += time.perf_counter_ns() - t0
        left -= k
    return elapsed / n


def mpapply(n, w, burst):
    """n trivial tasks on a multiprocessing.Pool(w), one apply_async each, in bursts; ns per
    task."""
    global _next
    apply_async = mppool_of(w).apply_async
    left = n
    elapsed = 0
    while left:
        k = min(left, burst)
        base = _next
        _next += k
        t0 = time.perf_counter_ns()
        rs = [apply_async(inc, (base + i,)) for i in range(k)]
        for i, r in enumerate(rs):
            v = r.get()
            if v != base + i + 1:
                raise RuntimeError(f"task {i}: wrong result {v}")
        elapsed += time.perf_counter_ns() - t0
        left -= k
    return elapsed / n


def mpmap(n, w):
    """multiprocessing.Pool(w).map of inc over n items, default chunking; ns per item. The
    result list is checked after the clock stops."""
    global _next
    pool = mppool_of(w)
    base = _next
    _next += n
    t0 = time.perf_counter_ns()
    r = pool.map(inc, range(base, base + n))
    elapsed = time.perf_counter_ns() - t0
    if len(r) != n or r != list(range(base + 1, base + n + 1)):
        raise RuntimeError(f"map: wrong results ({len(r)} for {n} items)")
    return elapsed / n


def spin(seed, iters):
    """A pure-Python CPU-bound loop (holds the GIL throughout)."""
    x = seed + 1
    for i in range(iters):
        x = (x * 1103515245 + i) & 0xFFFFFFFF
    return x


_expected = {}


def expected(iters):
    e = _expected.get(iters)
    if e is None:
        e = _expected[iters] = [spin(s, iters) for s in range(SEEDS)]
    return e


def calibrate(ms):
    """Timed in this thread's CPU time, so that neighbours on a busy machine do not shrink it."""
    iters = 1000
    while True:
        t0 = time.thread_time_ns()
        spin(0, iters)
        t = max(1, time.thread_time_ns() - t0)
        if t >= 20_000_000 or iters >= 1 << 30:
            break
        iters *= 2
    want = max(1, int(iters * ms * 1e6 / t))
    t0 = time.thread_time_ns()
    spin(0, want)
    return want, time.thread_time_ns() - t0


def spin_tasks(w, m, iters):
    """m CPU-bound tasks on a ThreadPoolExecutor(w); ns per task."""
    ex = executor(w)
    exp = expected(iters)
    t0 = time.perf_counter_ns()
    fs = [ex.submit(spin, i % SEEDS, iters) for i in range(m)]
    for i, f in enumerate(fs):
        if f.result() != exp[i % SEEDS]:
            raise RuntimeError(f"task {i}: wrong result {f.result()}")
    return (time.perf_counter_ns() - t0) / m


def pspin(kind, w, m, iters):
    """m CPU-bound tasks on a process pool of w workers; ns per task."""
    exp = expected(iters)
    t0 = time.perf_counter_ns()
    if kind == "ppe":
        submit = ppe_of(w).submit
        fs = [submit(spin, i % SEEDS, iters) for i in range(m)]
        got = (f.result() for f in fs)
    elif kind == "mp":
        apply_async = mppool_of(w).apply_async
        rs = [apply_async(spin, (i % SEEDS, iters)) for i in range(m)]
        got = (r.get() for r in rs)
    else:
        raise ValueError(f"unknown pool kind {kind}")
    for i, v in enumerate(got):
        if v != exp[i % SEEDS]:
            raise RuntimeError(f"task {i}: wrong result {v}")
    return (time.perf_counter_ns() - t0) / m


def main():
    for line in sys.stdin:
        w = line.split()
        if not w or w[0] == "quit":
            break
        try:
            if w[0] == "tpe":
                print(f"ok {tpe(int(w[1]), int(w[2]), int(w[3])):.1f}", flush=True)
            elif w[0] == "calibrate":
                iters, ns = calibrate(float(w[1]))
                print(f"ok {iters} {ns}", flush=True)
            elif w[0] == "spin":
                print(f"ok {spin_tasks(int(w[1]), int(w[2]), int(w[3])):.1f}", flush=True)
            elif w[0] == "ppe":
                print(f"ok {ppe(int(w[1]), int(w[2]), int(w[3])):.1f}", flush=True)
            elif w[0] == "mpapply":
                print(f"ok {mpapply(int(w[1]), int(w[2]), int(w[3])):.1f}", flush=True)
            elif w[0] == "mpmap":
                print(f"ok {mpmap(int(w[1]), int(w[2])):.2f}", flush=True)
            elif w[0] == "pspin":
                print(f"ok {pspin(w[1], int(w[2]), int(w[3]), int(w[4])):.1f}", flush=True)
            else:
                raise ValueError(f"unknown command {w[0]}")
        except Exception as e:  # noqa: BLE001 - reported to the bench, which aborts
            print(f"error {type(e).__name__}: {e}", flush=True)
    for ex in _executors.values():
        ex.shutdown(wait=True)
    for ex in _ppes.values():
        ex.shutdown(wait=True)
    for p in _mppools.values():
        p.close()
        p.join()


if __name__ == "__main__":
    main()
