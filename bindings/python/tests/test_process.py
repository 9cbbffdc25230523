"""weft.Process: native tasks (tasks.c, compiled here into a shared library) in child processes
started with every start method — result bytes, failures, exit codes and signals, daemons,
names, sentinels, passed descriptors — and the current-process functions. With forkserver and
spawn the child is a fresh image of the python executable in which libweft takes over at load
time: the tests check that the task ran there with no interpreter initialised."""

import cffi
import ctypes
import gc
import multiprocessing.connection
import os
import pickle
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import weft
from weft import WeftError
from weft.process import TaskError

HERE = Path(__file__).resolve().parent
BINDING = HERE.parent
METHODS = ["fork", "forkserver", "spawn"]
JOIN = 20.0  # seconds: "this must finish"; below the suite's 60 s hang guard

# pytest's hang guard (faulthandler) runs a thread, so every fork start warns; one test checks
# the warning itself.
pytestmark = pytest.mark.filterwarnings("ignore:weft. this process has .* threads:RuntimeWarning")


# --- the task library ---------------------------------------------------------------------


def build_tasks(directory: Path) -> Path:
    """Compiles tasks.c into ``directory/libtasks.so`` against the libweft the binding loaded
    (the same file: a second copy would have its own process state). A missing compiler is an
    error: CI installs one."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    assert cc is not None, "no C compiler (cc, or $CC) to build tasks.c: install gcc"
    out = directory / "libtasks.so"
    library = Path(weft.LIBRARY_PATH)
    assert library.is_absolute(), f"libweft was found by the dynamic linker ({library}); cannot link tasks.c"
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I", str(weft.HEADER_PATH.parent),
           str(HERE / "tasks.c"), "-o", str(out), str(library), f"-Wl,-rpath,{library.parent}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"compiling tasks.c failed:\n{' '.join(cmd)}\n{r.stderr}"
    return out


@pytest.fixture(scope="session")
def tasks_path(tmp_path_factory):
    return build_tasks(tmp_path_factory.mktemp("tasks"))


@pytest.fixture(scope="session")
def tasks(tasks_path):
    return ctypes.CDLL(str(tasks_path))


@pytest.fixture
def procs():
    """Processes a test started; any still running at the end are killed and joined."""
    started = []
    yield started
    for p in started:
        try:
            if p.is_alive():
                p.kill()
            p.join(JOIN)
        except ValueError:  # closed
            pass


def run(procs, target, arg=b"", **kw):
    p = weft.Process(target=target, args=arg, **kw)
    procs.append(p)
    p.start()
    return p


def finished(p):
    p.join(JOIN)
    assert p.exitcode is not None, "the child did not finish"
    return p


def info(p) -> dict:
    return dict(line.split("=", 1) for line in p.result.decode().splitlines())


# --- start methods, results, failures -----------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_result_bytes_with_every_start_method(tasks, procs, method):
    p = run(procs, tasks.t_echo, b"hello \x00 world", start_method=method)
    assert isinstance(p.pid, int) and p.pid > 0 and p.pid != os.getpid()
    finished(p)
    assert p.exitcode == 0
    assert p.result == b"hello \x00 world"
    assert p.result == b"hello \x00 world"  # cached, repeatable
    assert not p.is_alive()
    assert p.start_method == method


@pytest.mark.parametrize("method", METHODS)
def test_child_runs_native_code_without_an_interpreter(tasks, procs, method):
    p = run(procs, tasks.t_info, name="native-child", start_method=method)
    d = info(finished(p))
    assert d["name"] == "native-child"
    assert int(d["parent"]) == os.getpid()
    assert int(d["pid"]) == p.pid
    assert d["exe"] == os.readlink("/proc/self/exe")  # the python executable ...
    if method == "fork":
        assert d["interp"] == "1"  # a copy of this process, interpreter state included
    else:
        # ... a fresh image of it, in which libweft took over at load time: Python's main never
        # ran, so the interpreter was never initialised.
        assert d["interp"] == "0"
        assert d["argv0"] == "weft-child"


@pytest.mark.parametrize("method", METHODS)
def test_large_result(tasks, procs, method):
    n = 3 * 1024 * 1024 + 7
    p = finished(run(procs, tasks.t_big, str(n).encode(), start_method=method))
    assert p.exitcode == 0
    assert p.result == bytes(i % 251 for i in range(251)) * (n // 251) + bytes(range(n % 251))


@pytest.mark.parametrize("method", METHODS)
def test_large_argument(tasks, procs, method):
    arg = os.urandom(5 * 1024 * 1024)
    p = finished(run(procs, tasks.t_echo, arg, start_method=method))
    assert p.exitcode == 0 and p.result == arg


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_concurrent_starts_from_threads(tasks, method):
    results, errors = [], []

    def worker(k):
        try:
            for i in range(5):
                p = weft.Process(target=tasks.t_echo, args=b"%d-%d" % (k, i), start_method=method)
                p.start()
                p.join(JOIN)
                results.append((p.exitcode, p.result))
        except BaseException as e:  # noqa: B902
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN * 2)
    assert errors == []
    assert sorted(results) == sorted((0, b"%d-%d" % (k, i)) for k in range(4) for i in range(5))


@pytest.mark.parametrize("method", METHODS)
def test_task_failure(tasks, procs, method):
    p = finished(run(procs, tasks.t_fail, b"no such widget", start_method=method))
    assert p.exitcode == 1
    with pytest.raises(TaskError) as e:
        p.result
    err = e.value
    assert isinstance(err, WeftError)
    assert err.name == "WEFT_TASK_FAILED"
    assert err.task_status_name == "WEFT_NOT_FOUND"
    assert err.task_message == "no such widget"
    assert "no such widget" in str(err)
    assert pickle.loads(pickle.dumps(err)).task_message == "no such widget"
    with pytest.raises(TaskError):  # every access raises
        p.result


@pytest.mark.parametrize("method", METHODS)
def test_exit_codes(tasks, procs, method):
    p = finished(run(procs, tasks.t_exit, b"3", start_method=method))
    assert p.exitcode == 3
    with pytest.raises(WeftError) as e:
        p.result
    assert e.value.name == "WEFT_WORKER_DIED" and not isinstance(e.value, TaskError)
    # Exit status 0 counts as success, with an empty result (as in Python).
    p = finished(run(procs, tasks.t_exit, b"0", start_method=method))
    assert p.exitcode == 0 and p.result == b""


# --- targets ------------------------------------------------------------------------------


def test_target_forms(tasks, tasks_path, procs):
    # ctypes function pointer
    assert finished(run(procs, tasks.t_echo, b"ctypes")).result == b"ctypes"
    # cffi function pointer from the program's own FFI (not weft's)
    ffi = cffi.FFI()
    ffi.cdef("typedef struct weft_call weft_call; int32_t t_echo(weft_call *);")
    clib = ffi.dlopen(str(tasks_path))
    assert finished(run(procs, clib.t_echo, b"cffi")).result == b"cffi"
    assert finished(run(procs, ffi.addressof(clib, "t_echo"), b"addressof")).result == b"addressof"
    # (library, symbol) pairs: str, Path and bytes paths, str and bytes names
    for target in [(str(tasks_path), "t_echo"), (tasks_path, b"t_echo"), (os.fsencode(tasks_path), "t_echo")]:
        for method in METHODS:
            assert finished(run(procs, target, b"sym", start_method=method)).result == b"sym"
    # a static (unexported) function, by address: found again by its offset in the library
    tasks.t_static_pointer.restype = ctypes.c_void_p
    addr = tasks.t_static_pointer()
    hidden_ctypes = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)(addr)
    hidden_cffi = weft.ffi.cast("weft_task_fn", addr)
    for method in METHODS:
        assert finished(run(procs, hidden_ctypes, start_method=method)).result == b"hidden"
        assert finished(run(procs, hidden_cffi, start_method=method)).result == b"hidden"


def test_argument_forms(tasks, procs):
    for arg, expected in [(b"", b""), ((), b""), ([], b""), (b"x", b"x"), ((b"tuple",), b"tuple"),
                          ([bytearray(b"list")], b"list"), (memoryview(b"abcdef")[1:4], b"bcd"),
                          (bytearray(b"ba"), b"ba")]:
        assert finished(run(procs, tasks.t_echo, arg)).result == expected
    # The argument is copied when the Process is made.
    buf = bytearray(b"before")
    p = weft.Process(target=tasks.t_echo, args=buf)
    buf[:] = b"after!"
    procs.append(p)
    p.start()
    assert finished(p).result == b"before"


def test_bad_targets_and_arguments(tasks):
    with pytest.raises(TypeError, match="multiprocessing.Process"):
        weft.Process(target=print)
    with pytest.raises(TypeError, match="multiprocessing.Process"):
        weft.Process(target=lambda: None)
    with pytest.raises(TypeError):
        weft.Process()  # no target: nothing native to run
    with pytest.raises(TypeError):
        weft.Process(target=42)
    with pytest.raises(TypeError):
        weft.Process(target=("only-a-path",))
    with pytest.raises(TypeError):
        weft.Process(target=tasks.t_echo, args="text")
    with pytest.raises(TypeError):
        weft.Process(target=tasks.t_echo, args=(b"a", b"b"))
    with pytest.raises(TypeError):
        weft.Process(target=tasks.t_echo, args=(1,))
    with pytest.raises(TypeError):
        weft.Process(target=tasks.t_echo, kwargs={"a": 1})
    weft.Process(target=tasks.t_echo, kwargs={})  # empty is fine
    with pytest.raises(ValueError):
        weft.Process(target=tasks.t_echo, start_method="thread")
    with pytest.raises(ValueError):
        weft.Process(target=tasks.t_echo, fds=[-1])
    with pytest.raises(ValueError):
        weft.Process(target=weft.ffi.cast("weft_task_fn", 0))


def test_missing_library_or_symbol(tasks_path, tmp_path):
    with pytest.raises(WeftError) as e:
        weft.Process(target=(tasks_path, "no_such_task")).start()
    assert e.value.name == "WEFT_NOT_FOUND"
    with pytest.raises(WeftError) as e:
        weft.Process(target=(tmp_path / "libmissing.so", "t_echo")).start()
    assert e.value.name == "WEFT_NOT_FOUND"


def test_callback_trampoline_needs_fork():
    """A ctypes callback of a Python function exists only at run time: forkserver and spawn
    cannot find it again in a fresh image (weft says so); fork would, but then the child runs
    Python, which weft.Process is not for."""
    cb = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)(lambda call: 0)
    for method in ("forkserver", "spawn"):
        with pytest.raises(ValueError, match="fork"):
            weft.Process(target=cb, start_method=method).start()


# --- lifecycle ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_terminate_and_kill(tasks, procs, method):
    p = run(procs, tasks.t_pause, start_method=method)
    assert p.is_alive() and p.exitcode is None
    p.terminate()
    finished(p)
    assert p.exitcode == -signal.SIGTERM
    assert not p.is_alive()
    with pytest.raises(WeftError) as e:
        p.result
    assert e.value.name == "WEFT_WORKER_DIED"
    p.terminate()  # after the end: nothing happens
    p.kill()

    p = run(procs, tasks.t_pause, start_method=method)
    p.kill()
    assert finished(p).exitcode == -signal.SIGKILL
    assert "exitcode=SIGKILL" in repr(p)

    p = run(procs, tasks.t_pause, start_method=method)
    p.send_signal(signal.SIGUSR1)
    assert finished(p).exitcode == -signal.SIGUSR1

    if method != "fork":
        # A fresh image has the default dispositions. (A fork child inherits this process's:
        # Python's SIGINT handler only sets a flag for an interpreter that never runs there.)
        p = run(procs, tasks.t_pause, start_method=method)
        p.send_signal(signal.SIGINT)
        assert finished(p).exitcode == -signal.SIGINT


def test_join_timeout_and_is_alive(tasks, procs):
    p = run(procs, tasks.t_pause)
    assert p.join(0.05) is None
    assert p.exitcode is None and p.is_alive()
    p.join(0)
    p.join(-1)  # negative: a poll, as multiprocessing
    assert p.exitcode is None and p.is_alive()
    with pytest.raises(ValueError):
        p.result  # still running
    with pytest.raises(ValueError, match="still running"):
        p.close()
    p.kill()
    assert p.join() is None
    assert p.exitcode == -9 and not p.is_alive()


def test_join_releases_the_gil(tasks, procs):
    """join() blocks in C with the GIL released: another Python thread runs meanwhile and ends
    the child (were the GIL held, neither could make progress)."""
    p = run(procs, tasks.t_pause)

    def killer():
        time.sleep(0.1)
        p.kill()

    t = threading.Thread(target=killer)
    t.start()
    p.join()
    t.join(JOIN)
    assert p.exitcode == -signal.SIGKILL


def test_several_threads_join_one_process(tasks, procs):
    p = run(procs, tasks.t_sleep_ms, b"100")
    results = []
    threads = [threading.Thread(target=lambda: (p.join(JOIN), results.append(p.result))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert results == [b"slept"] * 4


@pytest.mark.parametrize("method", METHODS)
def test_sentinel(tasks, procs, method):
    p = run(procs, tasks.t_pause, start_method=method)
    s = p.sentinel
    assert isinstance(s, int) and s >= 0
    assert select.select([s], [], [], 0)[0] == []  # running: not readable
    p.kill()
    assert multiprocessing.connection.wait([s], timeout=JOIN) == [s]
    assert select.select([s], [], [], 0)[0] == [s]
    finished(p)
    assert p.sentinel == s


def test_before_start(tasks):
    p = weft.Process(target=tasks.t_echo)
    assert p.pid is None and p.ident is None
    assert p.exitcode is None
    assert not p.is_alive()
    with pytest.raises(ValueError, match="not started"):
        p.sentinel
    with pytest.raises(ValueError, match="not started"):
        p.result
    with pytest.raises(AssertionError, match="started process"):
        p.join()
    with pytest.raises(ValueError):
        p.terminate()
    assert re.fullmatch(r"<Process name='Process-[\d:]+' parent=\d+ initial>", repr(p))
    p.close()  # an unstarted process may be closed
    with pytest.raises(ValueError, match="closed"):
        p.start()


def test_start_twice_and_pickling(tasks, procs):
    p = run(procs, tasks.t_echo)
    with pytest.raises(AssertionError, match="twice"):
        p.start()
    with pytest.raises(TypeError):
        pickle.dumps(p)
    finished(p)


def test_close(tasks, procs):
    p = finished(run(procs, tasks.t_echo, b"kept"))
    p.close()
    p.close()  # again: fine
    for attr in ("pid", "ident", "exitcode", "sentinel"):
        with pytest.raises(ValueError, match="process object is closed"):
            getattr(p, attr)
    for method in (p.join, p.is_alive, p.terminate, p.kill, p.start):
        with pytest.raises(ValueError, match="process object is closed"):
            method()
    assert p.result == b"kept" and p.name.startswith("Process-")
    assert "closed" in repr(p)


def test_daemon_flag(tasks, procs):
    p = weft.Process(target=tasks.t_echo)
    assert p.daemon is False
    p.daemon = True
    assert p.daemon is True
    assert "daemon" in repr(p)
    procs.append(p)
    p.start()
    with pytest.raises(AssertionError, match="already started"):
        p.daemon = False
    assert finished(p).result == b""
    assert weft.Process(target=tasks.t_echo, daemon=True).daemon is True


_ORPHAN_PARENT = """
import ctypes, sys, weft
tasks = ctypes.CDLL(sys.argv[1])
p = weft.Process(target=tasks.t_pause, daemon=sys.argv[2] == "1", start_method=sys.argv[3])
p.start()
print(p.pid, flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("method", METHODS)
def test_daemon_dies_with_its_parent(tasks_path, method):
    """A daemon child is killed when its (Python) parent is SIGKILLed; a non-daemon survives."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(BINDING), os.environ.get("PYTHONPATH", "")]),
               WEFT_LIBRARY=str(weft.LIBRARY_PATH), WEFT_HEADER=str(weft.HEADER_PATH))
    pidfds = {}
    try:
        for daemon in ("1", "0"):
            parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_PARENT, str(tasks_path), daemon, method],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            line = parent.stdout.readline()
            assert line.strip().isdigit(), f"the parent failed to start its child: {line!r}"
            pidfds[daemon] = os.pidfd_open(int(line))
            parent.kill()
            parent.wait(JOIN)
            parent.stdin.close()
            parent.stdout.close()
        # The daemon ends once its parent is gone.
        assert select.select([pidfds["1"]], [], [], JOIN)[0] == [pidfds["1"]], "the daemon outlived its parent"
        # The other keeps running (still running once the daemon is known dead).
        assert select.select([pidfds["0"]], [], [], 0)[0] == [], "the non-daemon child died with its parent"
    finally:
        for fd in pidfds.values():
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.close(fd)


# --- names --------------------------------------------------------------------------------


def test_names(tasks, procs):
    a = weft.Process(target=tasks.t_echo)
    b = weft.Process(target=tasks.t_echo)
    na, nb = int(a.name.split("-")[1]), int(b.name.split("-")[1])
    assert a.name == f"Process-{na}" and nb == na + 1  # numbered as multiprocessing numbers its own
    mp = multiprocessing.Process(target=print)
    assert mp.name == f"Process-{nb + 1}"  # one counter for both
    a.name = "renamed"
    assert a.name == "renamed"
    with pytest.raises(AssertionError):
        a.name = 3
    with pytest.raises(TypeError):
        weft.Process(target=tasks.t_echo, name=3)
    for method in METHODS:
        p = run(procs, tasks.t_info, name=f"ünïcode {method}", start_method=method)
        assert info(finished(p))["name"] == f"ünïcode {method}"
        assert p.name == f"ünïcode {method}"
    p = run(procs, tasks.t_info)
    assert info(finished(p))["name"] == p.name


def test_fork_child_name_after_the_parent_read_its_own(tasks, procs):
    """The child's name is its own even when the parent asked for its name before forking."""
    assert weft.current_process_name() == "MainProcess"
    p = run(procs, tasks.t_info, name="forked-after-asking", start_method="fork")
    assert info(finished(p))["name"] == "forked-after-asking"


def test_current_process():
    assert weft.current_process_name() == "MainProcess"
    assert weft.parent_pid() == os.getppid()
    assert weft.process.current_pid() == os.getpid()
    n = weft.cpu_count()
    assert isinstance(n, int) and 1 <= n <= len(os.sched_getaffinity(0))


def test_start_method_default(tasks, procs):
    assert weft.process.get_start_method() == "forkserver"
    p = finished(run(procs, tasks.t_echo))
    assert p.start_method == "forkserver"
    weft.process.set_start_method("spawn")
    try:
        assert weft.process.get_start_method() == "spawn"
        p = finished(run(procs, tasks.t_info))
        assert p.start_method == "spawn" and info(p)["argv0"] == "weft-child"
    finally:
        weft.process.set_start_method("forkserver")
    with pytest.raises(ValueError):
        weft.process.set_start_method("thread")


def test_fork_with_threads_warns(tasks, procs):
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with pytest.warns(RuntimeWarning, match="threads"):
            run(procs, tasks.t_echo, start_method="fork")
    finally:
        stop.set()
        t.join(JOIN)
    finished(procs[-1])


# --- passed descriptors -------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_passed_descriptors(tasks, procs, method, tmp_path):
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        with open(tmp_path / "out", "wb") as f:
            p = run(procs, tasks.t_write_fds, b"through fds", start_method=method, fds=[w1, f, w2])
            assert finished(p).result == b"3"
        os.close(w1)
        os.close(w2)
        w1 = w2 = -1
        assert os.read(r1, 100) == b"through fds" and os.read(r1, 100) == b""  # the child's copy is closed
        assert os.read(r2, 100) == b"through fds"
        assert (tmp_path / "out").read_bytes() == b"through fds"
    finally:
        for fd in (r1, w1, r2, w2):
            if fd >= 0:
                os.close(fd)


@pytest.mark.parametrize("method", METHODS)
def test_passed_descriptor_count(tasks, procs, method):
    r, w = os.pipe()
    try:
        p = run(procs, tasks.t_info, fds=[r, w, r], start_method=method)
        assert info(finished(p))["fds"] == "3"
        p = run(procs, tasks.t_info, fds=[w] * 200, start_method=method)
        assert info(finished(p))["fds"] == "200"
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(ValueError):
        weft.Process(target=tasks.t_echo, fds=[0] * 201)


def test_handles_are_freed(tasks):
    from weft._native import live_handles

    gc.collect()
    before = live_handles().get("process", 0)
    ps = [weft.Process(target=tasks.t_echo, args=b"%d" % i) for i in range(5)]
    for p in ps:
        p.start()
    assert live_handles()["process"] == before + 5
    for p in ps:
        p.join(JOIN)
    del ps, p
    gc.collect()
    assert live_handles()["process"] == before
    # Never joined: freed once ended and unreferenced (the next start forgets ended children).
    p = weft.Process(target=tasks.t_echo)
    p.start()
    s = p.sentinel
    assert multiprocessing.connection.wait([s], timeout=JOIN) == [s]
    del p
    q = weft.Process(target=tasks.t_echo)
    q.start()
    q.join(JOIN)
    del q
    gc.collect()
    assert live_handles()["process"] == before
