"""weft.Pipe / Connection / Listener / Client against multiprocessing's (tests parametrized
with ``Pipe`` run against both), connections given to multiprocessing children (fork, spawn,
forkserver) and to native weft.Process tasks (tasks.c), and weft.connection.wait."""

import array
import gc
import multiprocessing
import multiprocessing.connection as mpc
import os
import pickle
import socket
import threading
import time

import pytest

import weft
import weft.connection as wc
from weft.connection import AuthenticationError, BufferTooShort
from test_process import JOIN, build_tasks

PIPES = {"multiprocessing": multiprocessing.Pipe, "weft": weft.Pipe}

pytestmark = pytest.mark.filterwarnings("ignore:weft. this process has .* threads:RuntimeWarning")


@pytest.fixture(params=sorted(PIPES))
def Pipe(request):
    return PIPES[request.param]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    import ctypes

    return ctypes.CDLL(str(build_tasks(tmp_path_factory.mktemp("conn_tasks"))))


def test_exports():
    assert weft.Pipe is wc.Pipe and weft.Connection is wc.Connection
    assert weft.Listener is wc.Listener and weft.Client is wc.Client
    assert wc.AuthenticationError is multiprocessing.AuthenticationError
    assert wc.BufferTooShort is multiprocessing.BufferTooShort


# --- the Connection API, compared with multiprocessing's ----------------------------------


def test_send_recv_objects_and_bytes(Pipe):
    a, b = Pipe()
    assert (a.readable, a.writable, b.readable, b.writable) == (True, True, True, True)
    for obj in [None, 1, "text", {"k": [1, 2.5, (3,)]}, b"bytes", list(range(1000))]:
        a.send(obj)
        assert b.recv() == obj
        b.send(obj)
        assert a.recv() == obj
    a.send_bytes(b"")
    assert b.recv_bytes() == b""
    a.send_bytes(b"hello")
    r = b.recv_bytes()
    assert r == b"hello" and type(r) is bytes
    a.send_bytes(bytearray(b"0123456789"), 2)
    assert b.recv_bytes() == b"23456789"
    a.send_bytes(b"0123456789", 2, 3)
    assert b.recv_bytes() == b"234"
    a.send_bytes(memoryview(b"0123456789"), 10)
    assert b.recv_bytes() == b""
    a.send_bytes(array.array("i", [1, 2, 3]), 4, 4)  # offsets in bytes
    assert b.recv_bytes() == array.array("i", [2]).tobytes()
    for args, match in [((-1,), "offset is negative"), ((11,), "buffer length < offset"),
                        ((0, -1), "size is negative"), ((5, 6), "buffer length < offset \\+ size")]:
        with pytest.raises(ValueError, match=match):
            a.send_bytes(b"0123456789", *args)
    a.close()
    b.close()


def test_one_way(Pipe):
    r, w = Pipe(duplex=False)
    assert (r.readable, r.writable, w.readable, w.writable) == (True, False, False, True)
    with pytest.raises(OSError, match="connection is read-only"):
        r.send(1)
    with pytest.raises(OSError, match="connection is write-only"):
        w.recv()
    with pytest.raises(OSError, match="connection is write-only"):
        w.poll()
    w.send_bytes(b"x")
    assert r.recv_bytes() == b"x"
    r.close()
    w.close()


def test_poll(Pipe):
    a, b = Pipe()
    assert b.poll() is False
    assert b.poll(0.01) is False
    assert b.poll(-1) is False
    a.send_bytes(b"m")
    assert b.poll() is True and b.poll(None) is True
    assert b.recv_bytes() == b"m"
    assert b.poll(0) is False
    a.close()
    assert b.poll() is True  # end of file: a receive would not block
    with pytest.raises(EOFError):
        b.recv_bytes()
    b.close()


def test_eof_after_buffered_messages(Pipe):
    a, b = Pipe()
    for i in range(5):
        a.send(i)
    a.close()
    assert [b.recv() for _ in range(5)] == list(range(5))
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(EOFError):
        b.recv_bytes()
    b.close()


def test_closed(Pipe):
    a, b = Pipe()
    assert not a.closed
    a.close()
    assert a.closed
    a.close()  # again: nothing
    for call in (a.fileno, a.recv, a.recv_bytes, lambda: a.send(1), lambda: a.send_bytes(b"x"), a.poll,
                 lambda: a.recv_bytes_into(bytearray(4))):
        with pytest.raises(OSError, match="handle is closed"):
            call()
    with b:
        assert isinstance(b.fileno(), int)
    assert b.closed


def test_send_to_a_closed_peer(Pipe):
    a, b = Pipe()
    b.close()
    with pytest.raises(BrokenPipeError):
        a.send_bytes(b"x")
    a.close()


def test_recv_bytes_maxlength(Pipe):
    a, b = Pipe()
    a.send_bytes(b"12345")
    assert b.recv_bytes(5) == b"12345"
    a.send_bytes(b"")
    assert b.recv_bytes(0) == b""
    with pytest.raises(ValueError, match="negative maxlength"):
        b.recv_bytes(-1)
    a.send_bytes(b"123456")
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(5)
    # A duplex end stops receiving (CPython cannot resynchronise either) but still sends.
    assert not b.readable and not b.closed
    with pytest.raises(OSError, match="connection is write-only"):
        b.recv_bytes()
    b.send_bytes(b"still sends")
    assert a.recv_bytes() == b"still sends"
    # A read-only end is closed.
    r, w = Pipe(duplex=False)
    w.send_bytes(b"too long")
    with pytest.raises(OSError, match="bad message length"):
        r.recv_bytes(3)
    assert r.closed
    for c in (a, b, w):
        c.close()


def test_recv_bytes_into(Pipe):
    a, b = Pipe()
    buf = bytearray(10)
    a.send_bytes(b"abc")
    assert b.recv_bytes_into(buf) == 3 and buf == b"abc" + bytes(7)
    a.send_bytes(b"xyz")
    assert b.recv_bytes_into(buf, 7) == 3 and buf == b"abc\0\0\0\0xyz"
    # Typed buffers: offsets in bytes.
    arr = array.array("i", [0] * 4)
    a.send(None)  # a pickled message first, to be skipped
    b.recv()
    a.send_bytes(array.array("i", [7, 8]))
    assert b.recv_bytes_into(arr, 4) == 8 and list(arr) == [0, 7, 8, 0]
    # Too short: BufferTooShort carries the whole message (consumed).
    a.send_bytes(b"0123456789AB")
    with pytest.raises(BufferTooShort) as e:
        b.recv_bytes_into(buf)
    assert e.value.args[0] == b"0123456789AB"
    a.send_bytes(b"abc")
    with pytest.raises(BufferTooShort) as e:
        b.recv_bytes_into(buf, 8)
    assert e.value.args[0] == b"abc"
    a.send_bytes(b"next")
    assert b.recv_bytes() == b"next"  # the stream is intact
    a.send_bytes(b"")
    assert b.recv_bytes_into(bytearray(0)) == 0
    with pytest.raises(ValueError, match="negative offset"):
        b.recv_bytes_into(buf, -1)
    with pytest.raises(ValueError, match="offset too large"):
        b.recv_bytes_into(buf, 11)
    a.close()
    b.close()


def test_large_messages_and_threads(Pipe):
    a, b = Pipe()
    big = os.urandom(20 * 1024 * 1024)
    t = threading.Thread(target=lambda: [a.send_bytes(big), [a.send(i) for i in range(2000)]])
    t.start()
    assert b.recv_bytes() == big
    assert [b.recv() for _ in range(2000)] == list(range(2000))
    t.join(JOIN)
    buf = bytearray(len(big) + 10)
    t = threading.Thread(target=a.send_bytes, args=(big,))
    t.start()
    assert b.recv_bytes_into(buf, 10) == len(big) and buf[10:] == big
    t.join(JOIN)
    a.close()
    b.close()


def test_context_manager(Pipe):
    a, b = Pipe()
    with a, b:
        a.send(1)
        assert b.recv() == 1
    assert a.closed and b.closed


# --- weft specifics -----------------------------------------------------------------------


def test_close_while_another_thread_receives():
    """Closing does not interrupt a receive blocked in another thread (nor does closing a
    socket in CPython): it ends when the peer closes, with OSError("handle is closed"), and
    every later call fails at once."""
    a, b = weft.Pipe()
    errors = []

    def receive():
        try:
            b.recv_bytes()
        except BaseException as e:  # noqa: B902
            errors.append(e)

    t = threading.Thread(target=receive)
    t.start()
    time.sleep(0.1)
    b.close()
    with pytest.raises(OSError, match="handle is closed"):
        b.recv_bytes()
    a.close()
    t.join(JOIN)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], OSError), errors


def test_connection_from_a_descriptor():
    a, b = weft.Pipe()
    fd = os.dup(b.fileno())
    b.close()
    c = weft.Connection(fd)  # owns fd now
    a.send("via fd")
    assert c.recv() == "via fd"
    c.close()
    with pytest.raises(ValueError):
        weft.Connection(-1)
    with pytest.raises(ValueError):
        weft.Connection(0, readable=False, writable=False)
    r, w = os.pipe()
    try:
        with pytest.raises(ValueError):
            weft.Connection(r)  # not a socket
    finally:
        os.close(r)
        os.close(w)
    a.close()


def test_send_and_receive_descriptors():
    a, b = weft.Pipe()
    r, w = os.pipe()
    try:
        wc.send_handle(a, w, os.getpid())
        a.send_bytes(b"after the descriptor")
        got = wc.recv_handle(b)
        assert got != w
        os.write(got, b"through a passed descriptor")
        os.close(got)
        assert os.read(r, 100) == b"through a passed descriptor"
        assert b.recv_bytes() == b"after the descriptor"
        a.send_bytes(b"bytes")
        with pytest.raises(OSError):
            b.recv_handle()  # the next message is not a descriptor ...
        assert b.recv_bytes() == b"bytes"  # ... and stays readable
    finally:
        os.close(r)
        os.close(w)
        a.close()
        b.close()


def test_wait_sees_messages_read_ahead():
    a, b = weft.Pipe()
    c, d = weft.Pipe()
    for i in range(3):
        a.send_bytes(b"%d" % i)
    assert b.recv_bytes() == b"0"  # may read the others ahead into weft's buffer
    assert wc.wait([b, d], timeout=0) == [b]
    assert b.recv_bytes() == b"1" and b.recv_bytes() == b"2"
    assert wc.wait([b, d], timeout=0) == []
    c.send_bytes(b"x")
    assert wc.wait([b, d], timeout=JOIN) == [d]
    a.send_bytes(b"y")
    assert wc.wait([d, b], timeout=JOIN) == [d, b]
    for x in (a, b, c, d):
        x.close()


def test_handles_are_freed():
    from weft._native import live_handles

    gc.collect()
    before = live_handles().get("connection", 0)
    pairs = [weft.Pipe() for _ in range(10)]
    assert live_handles()["connection"] == before + 20
    del pairs
    gc.collect()
    assert live_handles()["connection"] == before


def test_pickling():
    from multiprocessing.reduction import ForkingPickler

    a, b = weft.Pipe()
    with pytest.raises(TypeError, match="multiprocessing"):
        pickle.dumps(b)
    # ForkingPickler carries the socket (here within this process, by the resource sharer).
    c = ForkingPickler.loads(ForkingPickler.dumps(b))
    assert type(c) is weft.Connection and c.fileno() != b.fileno()
    assert (c.readable, c.writable) == (True, True)
    a.send("to the copy")
    assert c.recv() == "to the copy"
    r, w = weft.Pipe(duplex=False)
    w2 = ForkingPickler.loads(ForkingPickler.dumps(w))
    assert (w2.readable, w2.writable) == (False, True)
    w2.send_bytes(b"via the copy")
    assert r.recv_bytes() == b"via the copy"
    for x in (a, b, c, r, w, w2):
        x.close()


# --- multiprocessing children -------------------------------------------------------------


def _mp_child(conn, one_way_w):
    """Runs in a multiprocessing child: echoes one object and reports on the one-way end."""
    obj = conn.recv()
    conn.send(("echo", obj, type(conn).__module__))
    conn.send_bytes(b"raw from child")
    one_way_w.send_bytes(b"one way")
    conn.close()
    one_way_w.close()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pipe_with_a_multiprocessing_child(method):
    ctx = multiprocessing.get_context(method)
    a, b = weft.Pipe()
    r, w = weft.Pipe(duplex=False)
    p = ctx.Process(target=_mp_child, args=(b, w))
    p.start()
    try:
        a.send({"hello": method})
        assert a.recv() == ("echo", {"hello": method}, "weft.connection")
        assert a.recv_bytes() == b"raw from child"
        assert r.recv_bytes() == b"one way"
        p.join(JOIN)
        assert p.exitcode == 0
        # Once the child and this process have closed the other ends: end of file.
        b.close()
        w.close()
        with pytest.raises(EOFError):
            a.recv()
        with pytest.raises(EOFError):
            r.recv_bytes()
    finally:
        if p.exitcode is None:
            p.kill()
            p.join(JOIN)
        for c in (a, b, r, w):
            c.close()


def test_connection_through_a_multiprocessing_queue():
    """Sending a Connection itself over a queue to a spawn child (ForkingPickler, DupFd)."""
    ctx = multiprocessing.get_context("spawn")
    a, b = weft.Pipe()
    r, w = weft.Pipe(duplex=False)
    q = ctx.Queue()
    p = ctx.Process(target=_queue_child, args=(q,))
    p.start()
    try:
        q.put((b, w))
        a.send("over a queue")
        assert a.recv() == ("echo", "over a queue", "weft.connection")
        assert a.recv_bytes() == b"raw from child"
        assert r.recv_bytes() == b"one way"
        p.join(JOIN)
        assert p.exitcode == 0
    finally:
        if p.exitcode is None:
            p.kill()
            p.join(JOIN)
        q.close()
        for c in (a, b, r, w):
            c.close()


def _queue_child(q):
    conn, w = q.get()
    _mp_child(conn, w)


# --- native children ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_native_task_sends_on_a_passed_connection(tasks, method):
    r, w = weft.Pipe(duplex=False)
    p = weft.Process(target=tasks.t_conn_send, args=b"from C", fds=[w.fileno()], start_method=method)
    p.start()
    try:
        assert r.recv_bytes() == b"from C"
        assert r.recv_bytes() == b"bye"
        p.join(JOIN)
        assert p.exitcode == 0 and p.result == b"sent"
        w.close()
        with pytest.raises(EOFError):
            r.recv_bytes()
    finally:
        if p.is_alive():
            p.kill()
        p.join(JOIN)
        r.close()
        w.close()


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_native_task_serves_a_duplex_connection(tasks, method):
    """(Not fork: a fork child also holds this process's end, so it would never read end of
    file.)"""
    a, b = weft.Pipe()
    p = weft.Process(target=tasks.t_conn_echo, fds=[b], start_method=method)
    p.start()
    b.close()  # the child has its own copy
    try:
        for msg in [b"one", b"", b"x" * (3 * 1024 * 1024)]:
            a.send_bytes(msg)
            assert a.recv_bytes() == b"echo:" + msg
        a.send({"pickled": True})
        assert pickle.loads(a.recv_bytes()[5:]) == {"pickled": True}
        a.close()  # end of file for the task
        p.join(JOIN)
        assert p.exitcode == 0 and p.result == b"4"
    finally:
        if p.is_alive():
            p.kill()
        p.join(JOIN)
        a.close()


# --- Listener and Client ------------------------------------------------------------------


def _serve(listener, results, n=1):
    for _ in range(n):
        try:
            c = listener.accept()
        except BaseException as e:  # noqa: B902
            results.append(e)
            continue
        results.append(c.recv())
        c.send("welcome")
        c.close()


@pytest.mark.parametrize("kind", ["unix", "abstract", "tcp", "default", "AF_INET"])
def test_listener_and_client(kind, tmp_path):
    if kind == "unix":
        listener = wc.Listener(str(tmp_path / "sock"), authkey=b"key")
    elif kind == "abstract":
        listener = wc.Listener(f"\0weft-test-{os.getpid()}-{time.monotonic_ns()}", authkey=b"key")
    elif kind == "tcp":
        listener = wc.Listener(("127.0.0.1", 0), authkey=b"key")
    elif kind == "default":
        listener = wc.Listener(authkey=b"key")
    else:
        listener = wc.Listener(family="AF_INET", authkey=b"key")
    with listener:
        address = listener.address
        if kind == "unix":
            assert address == str(tmp_path / "sock") and os.path.exists(address)
        elif kind == "abstract":
            assert address.startswith("\0")
        elif kind == "default":
            assert isinstance(address, str) and os.path.exists(address)
        else:
            assert isinstance(address, tuple) and address[1] > 0
            if kind == "tcp":
                assert address[0] == "127.0.0.1"
        results = []
        t = threading.Thread(target=_serve, args=(listener, results))
        t.start()
        with wc.Client(address, authkey=b"key") as c:
            c.send("hi")
            assert c.recv() == "welcome"
        t.join(JOIN)
        assert results == ["hi"]
    if kind in ("unix", "default"):
        assert not os.path.exists(address)  # the socket file goes with the listener
    with pytest.raises(OSError, match="listener is closed"):
        listener.accept()
    listener.close()  # again: nothing


@pytest.mark.parametrize("address", ["unix", "tcp"])
def test_wrong_authkey(address, tmp_path):
    addr = str(tmp_path / "sock") if address == "unix" else ("127.0.0.1", 0)
    with wc.Listener(addr, authkey=b"right") as listener:
        results = []
        t = threading.Thread(target=_serve, args=(listener, results, 2))
        t.start()
        with pytest.raises(AuthenticationError):
            wc.Client(listener.address, authkey=b"wrong")
        # The listener keeps working after a failed handshake.
        with wc.Client(listener.address, authkey=b"right") as c:
            c.send("second")
            assert c.recv() == "welcome"
        t.join(JOIN)
        assert isinstance(results[0], AuthenticationError) and results[1] == "second"


def test_no_authkey_and_argument_checks(tmp_path):
    with wc.Listener(str(tmp_path / "s")) as listener:
        results = []
        t = threading.Thread(target=_serve, args=(listener, results))
        t.start()
        with wc.Client(listener.address) as c:
            c.send(1)
            assert c.recv() == "welcome"
        t.join(JOIN)
        with pytest.raises(TypeError, match="authkey should be a byte string"):
            wc.Client(listener.address, authkey="text")
        with pytest.raises(OSError):
            wc.Listener(listener.address)  # in use
    with pytest.raises(TypeError, match="authkey should be a byte string"):
        wc.Listener(str(tmp_path / "t"), authkey="text")
    with pytest.raises(ValueError):
        wc.Listener(r"\\.\pipe\windows")


def test_client_errors_match_multiprocessing(tmp_path):
    missing = str(tmp_path / "missing")
    a, b = (pytest.raises(OSError, mpc.Client, missing).value, pytest.raises(OSError, wc.Client, missing).value)
    assert type(a) is type(b) is FileNotFoundError
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound, never listening, now closed: nothing listens there
    a, b = (pytest.raises(OSError, mpc.Client, ("127.0.0.1", port)).value,
            pytest.raises(OSError, wc.Client, ("127.0.0.1", port)).value)
    assert type(a) is type(b) is ConnectionRefusedError


def test_timeouts(tmp_path):
    with wc.Listener(str(tmp_path / "s"), authkey=b"k") as listener:
        with pytest.raises(TimeoutError):
            listener.accept(timeout=0.05)
        with pytest.raises(TimeoutError):
            wc.Client(listener.address, authkey=b"k", timeout=0.2)  # nobody accepts
