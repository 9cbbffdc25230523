#!/usr/bin/env python3
"""CPython's peer for benches/process.rs: multiprocessing and subprocess, measured in-process.

The bench starts this script once and keeps it running, so that Python's start-up is paid once
and its slices can be interleaved with weft's. One command per line on stdin, one answer line
on stdout ("ok <ns per operation>" or "error ..."):

    start METHOD N   N times: Process(target=noop) of context METHOD (fork, forkserver,
                     spawn): start(), join(); checks exitcode 0
    pipe N           a duplex multiprocessing.Pipe to a forked echo child; N round trips of a
                     64-byte message (send_bytes / recv_bytes); checks the echo
    run N            N times subprocess.run(["/bin/true"]); checks returncode 0
    quit
"""

import multiprocessing as mp
import subprocess
import sys
import time


def noop():
    pass


def echo(conn):
    while True:
        try:
            m = conn.recv_bytes()
        except EOFError:
            return
        conn.send_bytes(m)


def start(method, n):
    ctx = mp.get_context(method)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"exitcode {p.exitcode}")
        p.close()
    return (time.perf_counter_ns() - t0) / n


_pipe = None


def pipe(n):
    global _pipe
    if _pipe is None:
        a, b = mp.Pipe()
        child = mp.get_context("fork").Process(target=echo, args=(b,), daemon=True)
        child.start()
        b.close()
        _pipe = a
    msg = b"x" * 64
    t0 = time.perf_counter_ns()
    for _ in range(n):
        _pipe.send_bytes(msg)
        if _pipe.recv_bytes() != msg:
            raise RuntimeError("bad echo")
    return (time.perf_counter_ns() - t0) / n


def run(n):
    t0 = time.perf_counter_ns()
    for _ in range(n):
        if subprocess.run(["/bin/true"]).returncode != 0:
            raise RuntimeError("returncode")
    return (time.perf_counter_ns() - t0) / n


def main():
    for line in sys.stdin:
        w = line.split()
        if not w or w[0] == "quit":
            break
        try:
            if w[0] == "start":
                v = start(w[1], int(w[2]))
            elif w[0] == "pipe":
                v = pipe(int(w[1]))
            elif w[0] == "run":
                v = run(int(w[1]))
            else:
                raise ValueError(f"unknown command {w[0]}")
            print(f"ok {v:.1f}", flush=True)
        except Exception as e:  # report, keep serving
            print(f"error {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
