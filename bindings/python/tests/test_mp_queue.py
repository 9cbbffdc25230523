"""weft.multiprocessing.Queue, JoinableQueue and SimpleQueue: the same assertions against
Python's multiprocessing (fork context) and weft (the ``mp`` fixture), then real children of
every start method (fork, forkserver, spawn), a consumer process killed while it waits, a named
queue shared with a C program in bytes mode, and asyncio."""

import asyncio
import os
import pickle
import shutil
import signal
import subprocess
import time
from pathlib import Path

import multiprocessing
import pytest

import weft
import weft.multiprocessing as wmp
import weft.queue as wq
from weft.spaces import Space
from _mp_support import JOIN_TIMEOUT, children, mp, no_shm_leaks, unique  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_shm_leaks")

METHODS = ["fork", "forkserver", "spawn"]


def _wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


# --- behaviour shared with multiprocessing --------------------------------------------------


def test_exports():
    assert {"Queue", "JoinableQueue", "SimpleQueue"} <= set(wmp.__all__)
    assert issubclass(wmp.JoinableQueue, wmp.Queue)
    assert wmp.Queue.__module__ == "weft.multiprocessing"


def test_put_get_full_empty(mp):
    q = mp.Queue(2)
    q.put({"first": 1})
    q.put_nowait(("second", [2]))
    assert q.full() and q.qsize() == 2
    with pytest.raises(wq.Full):
        q.put(3, block=False)
    with pytest.raises(wq.Full):
        q.put_nowait(3)
    t0 = time.monotonic()
    with pytest.raises(wq.Full):
        q.put(3, timeout=0.05)
    assert time.monotonic() - t0 >= 0.05
    with pytest.raises(wq.Full):
        q.put(3, True, -1)  # a negative timeout tries once, no ValueError (multiprocessing's rule)
    assert q.get() == {"first": 1}
    assert q.get(timeout=JOIN_TIMEOUT) == ("second", [2])
    assert not q.full() and q.qsize() == 0
    with pytest.raises(wq.Empty):
        q.get(False)
    with pytest.raises(wq.Empty):
        q.get_nowait()
    with pytest.raises(wq.Empty):
        q.get(timeout=0.05)
    with pytest.raises(wq.Empty):
        q.get(True, -1)
    q.put(None)
    assert q.get(timeout=JOIN_TIMEOUT) is None
    _wait_until(q.empty)


def test_unbounded_queue(mp):
    q = mp.Queue()
    for i in range(500):
        q.put_nowait(i)
    assert not q.full()
    assert [q.get(timeout=JOIN_TIMEOUT) for _ in range(500)] == list(range(500))


def test_close_and_join_thread(mp):
    q = mp.Queue()
    q.put(1)
    assert q.get(timeout=JOIN_TIMEOUT) == 1
    with pytest.raises(AssertionError):
        q.join_thread()  # only after close()
    q.cancel_join_thread()
    q.close()
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        q.put(1)
    with pytest.raises(ValueError, match="is closed"):
        q.get()
    with pytest.raises(ValueError, match="is closed"):
        q.get_nowait()
    q.join_thread()


def test_joinable_queue_task_done(mp):
    q = mp.JoinableQueue()
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()
    q.put("job")
    assert q.get(timeout=JOIN_TIMEOUT) == "job"
    q.task_done()
    q.join()
    with pytest.raises(ValueError):
        q.task_done()


def test_simple_queue(mp):
    q = mp.SimpleQueue()
    assert q.empty()
    q.put([1, "two"])
    assert q.get() == [1, "two"]
    assert q.empty()
    q.close()


def _joinable_worker(q, done):
    while True:
        item = q.get()
        if item is None:
            q.task_done()
            return
        time.sleep(0.001)
        with done.get_lock():
            done.value += item
        q.task_done()


def test_joinable_queue_join_waits_for_a_consumer_process(mp, children):
    q = mp.JoinableQueue()
    done = mp.Value("i", 0)
    p = children.start(_joinable_worker, q, done)
    for i in range(1, 51):
        q.put(i)
    q.join()  # returns only once the child marked all 50 done
    assert done.value == sum(range(1, 51))
    q.put(None)
    q.join()
    assert children.join(p) == [0]


# --- children of every start method ---------------------------------------------------------


def _producer(q, n):
    for i in range(n):
        q.put({"i": i, "payload": [i] * (i % 5), "blob": b"\x00" * (i % 3) * 1000})
    q.put(None)


def _consumer(q, results):
    got = []
    while True:
        item = q.get(timeout=JOIN_TIMEOUT)
        if item is None:
            break
        assert item["payload"] == [item["i"]] * (item["i"] % 5)
        assert item["blob"] == b"\x00" * (item["i"] % 3) * 1000
        got.append(item["i"])
    results.put((os.getpid(), got, type(q).__module__))


@pytest.mark.parametrize("method", METHODS)
def test_producer_and_consumer_processes(method):
    ctx = multiprocessing.get_context(method)
    q = wmp.Queue(8)  # bounded: the producer waits for the consumer
    results = wmp.SimpleQueue()
    n = 300
    procs = [ctx.Process(target=_producer, args=(q, n)), ctx.Process(target=_consumer, args=(q, results))]
    for p in procs:
        p.start()
    try:
        pid, got, module = results.get(timeout=JOIN_TIMEOUT)
        assert got == list(range(n)) and module == "weft.multiprocessing" and pid == procs[1].pid
        for p in procs:
            p.join(JOIN_TIMEOUT)
        assert [p.exitcode for p in procs] == [0, 0]
        assert q.empty() and results.empty()
    finally:
        for p in procs:
            if p.exitcode is None:
                p.kill()
                p.join(JOIN_TIMEOUT)


def _numbered_producer(q, p, n):
    for i in range(n):
        q.put((p, i))


def _collector(q, results):
    got = []
    while True:
        item = q.get(timeout=JOIN_TIMEOUT)
        if item is None:
            break
        got.append(item)
    results.put(got)


def test_many_producer_and_consumer_processes_exact_delivery(children):
    producers, consumers, n = 3, 3, 2000
    q = wmp.Queue(32)
    results = wmp.Queue(max_bytes=4 << 20)
    ps = [children.start(_numbered_producer, q, p, n) for p in range(producers)]
    cs = [children.start(_collector, q, results) for _ in range(consumers)]
    assert children.join(ps) == [0] * producers
    for _ in cs:
        q.put(None)
    got = [results.get(timeout=JOIN_TIMEOUT) for _ in cs]
    assert children.join(cs) == [0] * consumers
    assert sorted(x for g in got for x in g) == [(p, i) for p in range(producers) for i in range(n)]
    for g in got:  # FIFO: each consumer sees each producer's items in put order
        for p in range(producers):
            seq = [i for (pp, i) in g if pp == p]
            assert seq == sorted(seq)


def _relay(inbox, results):
    # A queue arrives as an item of another queue (its token, no descriptor).
    extra = inbox.get(timeout=JOIN_TIMEOUT)
    extra.put(("relayed", type(extra).__name__))
    results.put("ok")


@pytest.mark.parametrize("method", METHODS)
def test_a_queue_sent_through_a_queue(method):
    """A queue given to a spawn/forkserver child brings the default space with it; queues sent
    later through it (as items, by token) reach the child too."""
    ctx = multiprocessing.get_context(method)
    inbox = wmp.Queue()
    results = wmp.Queue()
    extra = wmp.JoinableQueue()
    p = ctx.Process(target=_relay, args=(inbox, results))
    p.start()
    try:
        inbox.put(extra)
        assert extra.get(timeout=JOIN_TIMEOUT) == ("relayed", "JoinableQueue")
        assert results.get(timeout=JOIN_TIMEOUT) == "ok"
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0
    finally:
        if p.exitcode is None:
            p.kill()
            p.join(JOIN_TIMEOUT)


def test_pickle_round_trip_in_one_process():
    q = wmp.JoinableQueue(3, codec="str")
    again = pickle.loads(pickle.dumps(q))
    assert type(again) is wmp.JoinableQueue and again.maxsize == 3
    q.put("through the copy")
    assert again.get_nowait() == "through the copy"  # the same queue, the same codec
    assert wmp.Queue.from_token(q.token(), codec="str").qsize() == 0
    assert type(wmp.Queue.from_token(wmp.SimpleQueue().token())) is wmp.SimpleQueue


# --- a process killed while it waits ---------------------------------------------------------


def _blocked_getter(q, ready):
    ready.set()
    q.get()  # blocks until SIGKILLed
    os._exit(3)


def _blocked_putter(q, ready):
    ready.set()
    q.put("never fits")
    os._exit(3)


def _drain(q, n, results):
    results.put([q.get(timeout=JOIN_TIMEOUT) for _ in range(n)])


def test_a_killed_waiting_consumer_breaks_nothing(children):
    q = wmp.Queue(2)
    results = wmp.SimpleQueue()
    ready = wmp.Event()
    getters = [children.start(_blocked_getter, q, ready) for _ in range(2)]
    assert ready.wait(JOIN_TIMEOUT)
    _wait_until(lambda: all(p.is_alive() for p in getters))
    time.sleep(0.2)  # well inside get
    for p in getters:
        os.kill(p.pid, signal.SIGKILL)
    assert children.join(getters) == [-signal.SIGKILL] * 2
    # The queue works for this process and for a new consumer; nothing was lost or taken.
    q.put("a")
    q.put("b")
    assert q.full()
    assert q.get(timeout=JOIN_TIMEOUT) == "a"
    q.put("c")
    p = children.start(_drain, q, 2, results)
    assert results.get(timeout=JOIN_TIMEOUT) == ["b", "c"]
    assert children.join(p) == [0]
    # A producer killed while waiting for room.
    q.put(1)
    q.put(2)
    ready = wmp.Event()
    putter = children.start(_blocked_putter, q, ready)
    assert ready.wait(JOIN_TIMEOUT)
    time.sleep(0.2)
    os.kill(putter.pid, signal.SIGKILL)
    assert children.join(putter) == [-signal.SIGKILL]
    assert [q.get(timeout=JOIN_TIMEOUT), q.get(timeout=JOIN_TIMEOUT)] == [1, 2]
    with pytest.raises(wq.Empty):
        q.get(timeout=0.1)
    q.put("still fine")
    assert q.get(timeout=JOIN_TIMEOUT) == "still fine"


def _wait_for_shutdown(q, results):
    try:
        q.get()
        results.put("got")
    except wq.ShutDown:
        results.put("shut down")


def test_shutdown_reaches_a_waiting_process(children):
    q = wmp.Queue()
    results = wmp.SimpleQueue()
    p = children.start(_wait_for_shutdown, q, results)
    time.sleep(0.1)
    assert not q.is_shutdown
    q.shutdown()
    assert results.get(timeout=JOIN_TIMEOUT) == "shut down"
    assert children.join(p) == [0] and q.is_shutdown
    with pytest.raises(wq.ShutDown):
        q.put(1)


def test_item_larger_than_the_storage():
    q = wmp.Queue(max_bytes=4096)
    with pytest.raises(ValueError):
        q.put(b"x" * 10_000)
    q.put(b"x" * 1000)
    assert q.get_nowait() == b"x" * 1000


# --- named queues, bytes mode, a C peer ------------------------------------------------------


@pytest.fixture
def space():
    name = unique("queue")
    s = Space.create(name, 4 << 20)
    yield s
    s.close()
    try:
        Space.unlink(name)
    except FileNotFoundError:
        pass


def test_named_queues_open_as_their_class(space):
    q = wmp.Queue(space=space, name="q")
    j = wmp.JoinableQueue(4, space=space, name="j")
    s = wmp.SimpleQueue(space=space, name="s", codec="bytes")
    wmp.Dict(space=space, name="d")
    assert type(wmp.Queue.open(space, "q")) is wmp.Queue
    assert type(wmp.Queue.open(space, "j")) is wmp.JoinableQueue and wmp.Queue.open(space, "j").maxsize == 4
    assert type(wmp.JoinableQueue.open(space, "s")) is wmp.SimpleQueue
    with pytest.raises(FileExistsError):
        wmp.Queue(space=space, name="q")
    with pytest.raises(FileNotFoundError):
        wmp.Queue.open(space, "missing")
    with pytest.raises(ValueError):
        wmp.Queue.open(space, "d")  # a dict
    s.put(b"raw")
    assert wmp.SimpleQueue.open(space, "s", codec="bytes").get(timeout=1) == b"raw"
    q.put({"x": 1})
    reopened = pickle.loads(pickle.dumps(wmp.Queue.open(Space.open(space.name), "q")))
    assert reopened.get(timeout=1) == {"x": 1}


def test_shared_lifo_and_priority_queues_made_elsewhere_open_as_queue(space):
    # weft.multiprocessing has no class for them (nor has multiprocessing); C makes them with
    # weft_queue_new_in. Opened, they get in their own order and put with priority 0.
    from weft._native import CONSTANTS, ffi, lib
    from weft.spaces import check, space_ptr

    for kind, name in (("WEFT_QUEUE_LIFO", "lifo"), ("WEFT_QUEUE_PRIORITY", "prio")):
        opts = ffi.new("weft_queue_options *")
        opts.kind = CONSTANTS[kind]
        out = ffi.new("weft_queue **")
        check(lib.weft_queue_new_in(space_ptr(space), name.encode(), opts, out))
        for item, priority in ((b"a", 5), (b"b", -5)):
            assert lib.weft_queue_put_priority(out[0], item, 1, priority, 0) == 0
        q = wmp.Queue.open(space, name, codec="bytes")
        assert type(q) is wmp.Queue
        q.put(b"c")
        got = [q.get(timeout=1) for _ in range(3)]
        assert got == ([b"c", b"b", b"a"] if name == "lifo" else [b"b", b"c", b"a"])
        lib.weft_queue_free(out[0])
        q.close()


C_PRODUCER = r"""
/* Puts N byte strings into a named queue of a named space, as C code sharing a queue with
 * Python would:  q_producer SPACE QUEUE N (open|create)
 *   open:   opens the queue (made by Python), puts "c-item-<i>" for i < N and one binary item,
 *           then shuts the queue down (the consumer's end of stream);
 *   create: creates the queue itself (unbounded FIFO), puts the same items, and exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

static void check(weft_status st, const char *what) {
    if (st != WEFT_OK) {
        fprintf(stderr, "q_producer: %s: %s: %s\n", what, weft_status_name(st), weft_last_error_message());
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: q_producer SPACE QUEUE N (open|create)\n");
        return 2;
    }
    int create = strcmp(argv[4], "create") == 0;
    weft_space *space = NULL;
    weft_queue *q = NULL;
    check(weft_space_open(argv[1], &space), "weft_space_open");
    if (create) {
        weft_queue_options o = {0};
        o.kind = WEFT_QUEUE_FIFO;
        check(weft_queue_new_in(space, argv[2], &o, &q), "weft_queue_new_in");
    } else {
        check(weft_queue_open(space, argv[2], &q), "weft_queue_open");
    }
    long n = strtol(argv[3], NULL, 10);
    for (long i = 0; i < n; i++) {
        char item[32];
        int len = snprintf(item, sizeof item, "c-item-%ld", i);
        check(weft_queue_put(q, item, (size_t)len, WEFT_FOREVER), "weft_queue_put");
    }
    static const unsigned char binary[] = {0, 1, 2, 0, 255};
    check(weft_queue_put(q, binary, sizeof binary, WEFT_FOREVER), "weft_queue_put(binary)");
    if (!create) {
        check(weft_queue_shutdown(q, false), "weft_queue_shutdown");
    }
    weft_queue_free(q);
    weft_space_free(space);
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_producer(tmp_path_factory):
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        pytest.skip("no C compiler (cc) to build the C producer")
    d = tmp_path_factory.mktemp("q_producer")
    src = d / "q_producer.c"
    src.write_text(C_PRODUCER)
    exe = d / "q_producer"
    library = Path(weft.LIBRARY_PATH)
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", str(weft.HEADER_PATH.parent), str(src), "-o", str(exe)]
    if library.is_absolute():
        cmd += [str(library), f"-Wl,-rpath,{library.parent}"]
    else:
        cmd += ["-lweft"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, f"compiling q_producer.c failed:\n{' '.join(cmd)}\n{out.stderr}"
    return str(exe)


def test_c_producer_python_consumer(space, c_producer):
    n = 500
    q = wmp.Queue(8, space=space, name="jobs", codec="bytes")  # bounded: C waits for Python
    peer = subprocess.Popen([c_producer, space.name, "jobs", str(n), "open"], stderr=subprocess.PIPE, text=True)
    got = []
    try:
        while True:
            try:
                got.append(q.get(timeout=JOIN_TIMEOUT))
            except wq.ShutDown:  # the C producer's end of stream
                break
    finally:
        _, err = peer.communicate(timeout=JOIN_TIMEOUT)
    assert peer.returncode == 0, err
    assert got == [b"c-item-%d" % i for i in range(n)] + [b"\x00\x01\x02\x00\xff"]
    assert all(type(x) is bytes for x in got)


def test_queue_created_by_c_outlives_it(space, c_producer):
    out = subprocess.run([c_producer, space.name, "made-by-c", "3", "create"], capture_output=True, text=True,
                         timeout=JOIN_TIMEOUT)
    assert out.returncode == 0, out.stderr
    q = wmp.Queue.open(space, "made-by-c", codec="bytes")
    assert type(q) is wmp.Queue and q.qsize() == 4
    assert [q.get_nowait() for _ in range(4)] == [b"c-item-0", b"c-item-1", b"c-item-2", b"\x00\x01\x02\x00\xff"]
    q.put(b"from python")  # and Python may put in it too
    assert q.get_nowait() == b"from python"
    space.remove("made-by-c")


# --- asyncio ----------------------------------------------------------------------------------


def _slow_producer(q, n):
    for i in range(n):
        q.put(("from child", i))
        if i % 10 == 0:
            time.sleep(0.005)
    q.put(None)


async def _drain_async(q, consumers=2):
    async def consume(out):
        while True:
            item = await q.async_get()
            if item is None:
                return
            out.append(item[1])

    outs = [[] for _ in range(consumers)]
    tasks = [asyncio.ensure_future(consume(o)) for o in outs]
    await asyncio.wait(tasks, timeout=JOIN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    for _ in range(consumers - 1):
        q.put(None)  # stop the other consumers
    await asyncio.wait_for(asyncio.gather(*tasks), JOIN_TIMEOUT)
    return outs


def test_async_get_on_a_shared_queue(children):
    q = wmp.Queue()
    n = 200
    p = children.start(_slow_producer, q, n)
    outs = asyncio.run(_drain_async(q))
    assert children.join(p) == [0]
    assert sorted(x for o in outs for x in o) == list(range(n))


def _async_child(q, results):
    async def main():
        return [await asyncio.wait_for(q.async_get(), JOIN_TIMEOUT) for _ in range(20)]

    results.put(asyncio.run(main()))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_async_get_in_a_child(method, children):
    """The child waits on a descriptor of its own, also after a fork from a process that was
    already polling the queue."""
    q = wmp.SimpleQueue()
    results = wmp.Queue()

    async def warm_up():
        q.put("warm")
        assert await q.async_get() == "warm"

    asyncio.run(warm_up())  # this process's descriptor exists before the child starts
    p = multiprocessing.get_context(method).Process(target=_async_child, args=(q, results))
    p.start()
    children.procs.append(p)
    for i in range(20):
        time.sleep(0.002)
        q.put(i)
    assert results.get(timeout=JOIN_TIMEOUT) == list(range(20))
    assert children.join(p) == [0]
