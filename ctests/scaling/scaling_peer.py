#!/usr/bin/env python3
"""The Python peer of weft's scaling program (ctests/scaling/scaling.c): the same experiment
with concurrent.futures.

A pure-Python CPU-bound task (xorshift64 rounds over a seed, calibrated to --task-us
microseconds) runs T tasks per worker over a ThreadPoolExecutor and a ProcessPoolExecutor of
k = 1..N workers: both pools are built and warmed up before timing, then all tasks are
submitted and all results collected, wall clock. The thread pool cannot scale (the GIL lets one
thread run Python at a time); the process pool can, minus its pickling and pipe overhead.

Every result is verified as in scaling.c: the task returns its index and value, and the value
is checked against the seed multiplied by the GF(2) matrix of the rounds (xorshift64 is linear
over GF(2)). A wrong or missing result exits with status 1.

Run alone it prints a table; with --machine (how `weft_scaling --python` runs it) it prints
lines for the C program instead:
    peer python VERSION rounds ROUNDS
    row KIND WORKERS TASKS SECONDS        (KIND: threads or processes)
Standard library only.
"""

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import platform
import sys
import time

MASK = (1 << 64) - 1
WARMUP_TASKS_PER_WORKER = 2


def xorshift_rounds(x, rounds):
    """`rounds` rounds of Marsaglia's xorshift64 (13, 7, 17) from `x`."""
    for _ in range(rounds):
        x ^= (x << 13) & MASK
        x ^= x >> 7
        x ^= (x << 17) & MASK
    return x


def task(index, seed, rounds):
    """The task both pools run (a module-level function: process workers import it)."""
    return index, xorshift_rounds(seed, rounds)


def seed_of(index):
    """The seed of task `index`: splitmix64 of it, never 0 (as seed_of in scaling.c)."""
    z = (index + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    z ^= z >> 31
    return z or 1


# ---- expected values: xorshift64 as a 64x64 matrix over GF(2), by columns ----------------------

def gf2_apply(cols, x):
    r = 0
    while x:
        low = x & -x
        r ^= cols[low.bit_length() - 1]
        x ^= low
    return r


def gf2_rounds(rounds):
    """The matrix of `rounds` rounds: the one-round matrix to that power, by squaring."""
    step = [xorshift_rounds(1 << b, 1) for b in range(64)]
    acc = [1 << b for b in range(64)]
    while rounds:
        if rounds & 1:
            acc = [gf2_apply(step, c) for c in acc]
        step = [gf2_apply(step, c) for c in step]
        rounds >>= 1
    return acc


def calibrate(task_us):
    """Rounds that take about `task_us` microseconds: the fastest of five timings, scaled."""
    probe = 20000
    best = float("inf")
    for i in range(5):
        t0 = time.perf_counter()
        xorshift_rounds(seed_of(i), probe)
        best = min(best, time.perf_counter() - t0)
    return max(1, int(task_us / (best * 1e6 / probe)))


def run_tasks(pool, what, tasks, rounds, expected):
    """Submits `tasks` tasks, collects every result in order, and returns the seconds taken;
    then verifies every result (outside the timed part)."""
    t0 = time.perf_counter()
    futures = [pool.submit(task, i, seed_of(i), rounds) for i in range(tasks)]
    results = [f.result() for f in futures]
    seconds = time.perf_counter() - t0
    for i, r in enumerate(results):
        want = gf2_apply(expected, seed_of(i))
        if r != (i, want):
            sys.exit(f"scaling_peer: {what}: task {i} gave {r!r}, expected {(i, want)!r}")
    return seconds


def usable_cpus():
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"wants a positive integer, not {text}")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=positive, default=usable_cpus(), help="largest worker count (default: usable CPUs)")
    parser.add_argument("--tasks-per-worker", type=positive, default=500, help="timed tasks per worker (default 500)")
    parser.add_argument("--task-us", type=positive, default=1000, help="task duration in microseconds (default 1000)")
    parser.add_argument("--start-method", choices=["fork", "forkserver", "spawn"], default="fork",
                        help="start method of the process pool (default fork)")
    parser.add_argument("--machine", action="store_true", help="print lines for weft_scaling --python")
    args = parser.parse_args()

    rounds = calibrate(args.task_us)
    expected = gf2_rounds(rounds)
    if gf2_apply(expected, seed_of(12345)) != xorshift_rounds(seed_of(12345), rounds):
        sys.exit(f"scaling_peer: the GF(2) matrix of {rounds} rounds disagrees with the rounds themselves")
    context = multiprocessing.get_context(args.start_method)

    if args.machine:
        print(f"peer python {platform.python_version()} rounds {rounds}", flush=True)
    else:
        print(f"Python {platform.python_version()} scaling: pure-Python xorshift64 task of ~{args.task_us} us "
              f"({rounds} rounds), {args.tasks_per_worker} tasks per worker, workers 1..{args.workers}, "
              f"process start method {args.start_method}, {usable_cpus()} usable CPUs")
        print(f"{'kind':<10} {'workers':>7} {'tasks':>7} {'seconds':>9} {'tasks/s':>10} {'speedup':>8}", flush=True)

    one_worker = {}
    for k in range(1, args.workers + 1):
        # Both pools before any timing, the process pool first (as scaling.c does).
        with cf.ProcessPoolExecutor(max_workers=k, mp_context=context) as procs, \
                cf.ThreadPoolExecutor(max_workers=k) as threads:
            warm = k * WARMUP_TASKS_PER_WORKER
            run_tasks(threads, "thread pool warm-up", warm, rounds, expected)
            run_tasks(procs, "process pool warm-up", warm, rounds, expected)
            tasks = k * args.tasks_per_worker
            for kind, pool in (("threads", threads), ("processes", procs)):
                seconds = run_tasks(pool, kind, tasks, rounds, expected)
                rate = tasks / seconds
                one_worker.setdefault(kind, rate)
                if args.machine:
                    print(f"row {kind} {k} {tasks} {seconds:.6f}", flush=True)
                else:
                    print(f"{kind:<10} {k:>7} {tasks:>7} {seconds:>9.4f} {rate:>10.1f} {rate / one_worker[kind]:>7.2f}x",
                          flush=True)


if __name__ == "__main__":
    main()
