#!/usr/bin/env python3
"""CPython's peer for benches/queue.rs: multiprocessing.Queue, measured in-process.

One command per line on stdin, one answer line on stdout ("ok <ns per operation>" or
"error ..."):

    mpqueue N    a multiprocessing.Queue(maxsize=1024) to a forked consumer child: N 64-byte
                 messages put (blocking), the child gets them all and checks their count;
                 ns per message, from the first put to the child's answer
    handoff N    two multiprocessing.Queue between this process and a forked echo child: N
                 round trips of a 64-byte message; ns per round trip
    quit
"""

import multiprocessing as mp
import sys
import time

MSG = b"m" * 64


def consume(q, done, n):
    got = 0
    while got < n:
        if len(q.get()) != 64:
            raise RuntimeError("bad message")
        got += 1
    done.put(got)


def echo(a, b):
    while True:
        m = a.get()
        if m is None:
            return
        b.put(m)


def mpqueue(n):
    ctx = mp.get_context("fork")
    q = ctx.Queue(maxsize=1024)
    done = ctx.Queue()
    child = ctx.Process(target=consume, args=(q, done, n))
    child.start()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        q.put(MSG)
    if done.get() != n:
        raise RuntimeError("count")
    t = time.perf_counter_ns() - t0
    child.join()
    return t / n


_echo = None


def handoff(n):
    global _echo
    if _echo is None:
        ctx = mp.get_context("fork")
        a, b = ctx.Queue(), ctx.Queue()
        child = ctx.Process(target=echo, args=(a, b), daemon=True)
        child.start()
        _echo = (a, b)
    a, b = _echo
    t0 = time.perf_counter_ns()
    for _ in range(n):
        a.put(MSG)
        if b.get() != MSG:
            raise RuntimeError("bad echo")
    return (time.perf_counter_ns() - t0) / n


def main():
    for line in sys.stdin:
        w = line.split()
        if not w or w[0] == "quit":
            break
        try:
            if w[0] == "mpqueue":
                v = mpqueue(int(w[1]))
            elif w[0] == "handoff":
                v = handoff(int(w[1]))
            else:
                raise ValueError(f"unknown command {w[0]}")
            print(f"ok {v:.1f}", flush=True)
        except Exception as e:  # noqa: BLE001 - reported to the bench
            print(f"error {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
