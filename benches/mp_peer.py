#!/usr/bin/env python3
"""CPython's multiprocessing peer for benches/space.rs (DESIGN.md section 6).

The bench starts this script once and keeps it running, so that Python's start-up is paid
once and its slices can be interleaved with weft's. It reads one command per line on stdin
and answers one line on stdout:

    lock N [CPU0 CPU1]
              two processes each run N times:
                  with lock:                      # multiprocessing.Lock
                      counter.value += 1          # RawValue('q'), shared memory
                      if last.value != me:        # RawValue('i'): who held it last
                          last.value = me
                          handoffs += 1
              answer: "ok <elapsed_ns> <handoffs>"
    value N [CPU0 CPU1]
              two processes each run N times:
                  with v.get_lock():              # multiprocessing.Value('q')
                      v.value += 1
              answer: "ok <elapsed_ns> 0"
    quit

The two workers are forked `multiprocessing.Process` children; with CPU0 CPU1 given (and not
-1), worker i first pins itself to CPU i. Each takes the lock once
(untimed warm-up), signals that it is ready, then waits for a start event, so that process
creation is not timed. elapsed_ns is the time from the earliest worker's start to the latest
worker's end (CLOCK_MONOTONIC, which all processes share). The parent checks the final
count (2 N): a lock that fails to exclude loses increments, and the run then answers
"error ...".
"""

import multiprocessing as mp
import os
import sys
import time

ctx = mp.get_context("fork")


def pin(cpus, me):
    if cpus and cpus[me] >= 0:
        os.sched_setaffinity(0, {cpus[me]})


def lock_worker(me, n, cpus, lock, counter, last, ready, go, times, handoffs_out):
    pin(cpus, me)
    with lock:  # warm-up, untimed
        pass
    ready.release()
    go.wait()
    t0 = time.monotonic_ns()
    handoffs = 0
    for _ in range(n):
        with lock:
            counter.value += 1
            if last.value != me:
                last.value = me
                handoffs += 1
    t1 = time.monotonic_ns()
    times[2 * me] = t0
    times[2 * me + 1] = t1
    handoffs_out[me] = handoffs


def value_worker(me, n, cpus, v, ready, go, times):
    pin(cpus, me)
    with v.get_lock():  # warm-up, untimed
        pass
    ready.release()
    go.wait()
    t0 = time.monotonic_ns()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    t1 = time.monotonic_ns()
    times[2 * me] = t0
    times[2 * me + 1] = t1


def run(kind, n, cpus):
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    times = ctx.RawArray("q", 4)
    handoffs = ctx.RawArray("q", 2)
    if kind == "lock":
        lock = ctx.Lock()
        counter = ctx.RawValue("q", 0)
        last = ctx.RawValue("i", -1)
        procs = [
            ctx.Process(target=lock_worker, args=(me, n, cpus, lock, counter, last, ready, go, times, handoffs))
            for me in range(2)
        ]
        result = counter
    elif kind == "value":
        v = ctx.Value("q", 0)
        procs = [ctx.Process(target=value_worker, args=(me, n, cpus, v, ready, go, times)) for me in range(2)]
        result = v
    else:
        return "error unknown command " + kind
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    go.set()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        return "error a worker failed: exit codes %s" % [p.exitcode for p in procs]
    if result.value != 2 * n:
        return "error lost updates: count %d, expected %d" % (result.value, 2 * n)
    elapsed = max(times[1], times[3]) - min(times[0], times[2])
    return "ok %d %d" % (elapsed, handoffs[0] + handoffs[1])


def main():
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            answer = run(words[0], int(words[1]), [int(c) for c in words[2:4]])
        except Exception as e:  # report, do not die: the bench prints the message
            answer = "error %r" % (e,)
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
