"""weft.spaces.Space and named objects: create/open/unlink/sweep from Python, named objects
opened by unrelated processes — another Python interpreter and a C program (c_peer.c) sharing
a lock, values and a dict by name."""

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import weft
import weft.multiprocessing as wmp
from weft.spaces import Space
from _mp_support import JOIN_TIMEOUT, children, no_shm_leaks, unique  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_shm_leaks")

HERE = Path(__file__).resolve().parent


@pytest.fixture
def space():
    name = unique("space")
    s = Space.create(name, 1 << 20)
    yield s
    s.close()
    try:
        Space.unlink(name)
    except FileNotFoundError:
        pass


def test_create_open_unlink():
    name = unique("s")
    s = Space.create(name, 1 << 16)
    try:
        assert s.name == name and os.path.exists(f"/dev/shm/weft.{name}")
        assert oct(os.stat(f"/dev/shm/weft.{name}").st_mode & 0o777) == "0o600"
        size, unused = s.usage()
        assert size == 1 << 16 and 0 < unused < size and s.size == size
        assert s.participants() == 1
        with pytest.raises(FileExistsError):
            Space.create(name, 1 << 16)
        with Space.open(name) as t:
            assert t.name == name
            assert t.participants() == 2  # each handle set opened by name counts
        assert t.closed
        assert s.participants() == 1
        with pytest.raises(ValueError):
            t.usage()
        assert repr(s) == f"<weft.spaces.Space {name!r}>"
    finally:
        s.unlink()  # the instance form
    assert not os.path.exists(f"/dev/shm/weft.{name}")
    with pytest.raises(FileNotFoundError):
        Space.open(name)
    with pytest.raises(FileNotFoundError):
        Space.unlink(name)  # the class form
    s.close()


def test_bad_names_and_sizes():
    for bad in ["", ".hidden", "a/b", "x" * 201, "sp ace"]:
        with pytest.raises(ValueError):
            Space.create(bad, 1 << 16)
    with pytest.raises(ValueError):
        Space.create(unique("tiny"), 16)  # smaller than the header
    with pytest.raises(ValueError):
        Space.create(unique("neg"), 0)
    with pytest.raises(TypeError):
        Space()


def test_default_space():
    d = Space.default()
    assert d.name is None and d.size > 0 and d.fd >= 0
    with pytest.raises(ValueError):
        d.unlink()
    with pytest.raises(TypeError):
        __import__("pickle").dumps(d)


def test_named_objects(space):
    lock = wmp.Lock(space=space, name="lock")
    rlock = wmp.RLock(space=space, name="rlock")
    sem = wmp.BoundedSemaphore(2, space=space, name="sem")
    event = wmp.Event(space=space, name="event")
    cond = wmp.Condition(lock, name="cond")  # in the lock's space
    barrier = wmp.Barrier(1, space=space, name="barrier")
    value = wmp.Value("d", 1.5, space=space, name="value")
    array = wmp.Array("i", [1, 2, 3], space=space, name="array")

    with lock:
        assert wmp.Lock.open(space, "lock").locked()
    with rlock:
        assert wmp.RLock.open(space, "rlock")._is_mine()
    sem2 = wmp.Semaphore.open(space, "sem")
    assert isinstance(sem2, wmp.BoundedSemaphore) and sem2.get_value() == 2
    wmp.Event.open(space, "event").set()
    assert event.is_set()
    cond2 = wmp.Condition.open(space, "cond")
    with cond2:
        assert lock.locked()  # the condition found its lock
        cond2.notify_all()
    assert wmp.Barrier.open(space, "barrier").wait(1) == 0
    assert wmp.Value.open(space, "value").value == 1.5
    assert wmp.Array.open(space, "array")[:] == [1, 2, 3]
    with pytest.raises(ValueError):
        wmp.Value.open(space, "array")  # three items: an Array
    with pytest.raises(ValueError):
        wmp.Lock.open(space, "value")  # not a lock
    with pytest.raises(FileNotFoundError):
        wmp.Lock.open(space, "nothing")
    with pytest.raises(FileExistsError):
        wmp.Lock(space=space, name="lock")


def test_objects_outlive_the_space_handle():
    name = unique("closed")
    s = Space.create(name, 1 << 16)
    lock = wmp.Lock(space=s, name="l")
    s.close()
    Space.unlink(name)  # neither the handle nor the name is needed any more
    assert lock.acquire()
    lock.release()


def test_remove_frees_the_name(space):
    first = wmp.Value("i", 1, space=space, name="v")
    space.remove("v")
    with pytest.raises(FileNotFoundError):
        wmp.Value.open(space, "v")
    second = wmp.Value("i", 2, space=space, name="v")
    assert first.value == 1 and second.value == 2
    with pytest.raises(FileNotFoundError):
        space.remove("nothing")


def test_condition_in_another_space_is_refused(space):
    with pytest.raises(ValueError):
        wmp.Condition(wmp.Lock(), space=space)


def test_space_pickles_by_name(space):
    import pickle

    again = pickle.loads(pickle.dumps(space))
    assert again.name == space.name
    again.close()


_PY_PEER = """
import sys
from weft.spaces import Space
import weft.multiprocessing as wmp
space = Space.open(sys.argv[1])
lock = wmp.Lock.open(space, "lock")
total = wmp.Value.open(space, "total")
done = wmp.Event.open(space, "done")
for _ in range(int(sys.argv[2])):
    with lock:
        total.value += 1
done.set()
"""


def test_unrelated_python_process_opens_by_name(space):
    lock = wmp.Lock(space=space, name="lock")
    total = wmp.Value("q", 0, space=space, name="total")
    done = wmp.Event(space=space, name="done")
    peer = subprocess.Popen([sys.executable, "-c", _PY_PEER, space.name, "2000"], env=os.environ.copy())
    for _ in range(2000):
        with lock:
            total.value += 1
    assert peer.wait(JOIN_TIMEOUT) == 0
    assert done.is_set() and total.value == 4000


def test_sweep_removes_spaces_of_dead_processes(space, children):
    name = unique("orphan")

    def orphan():
        s = Space.create(name, 1 << 16)
        wmp.Lock(space=s, name="l")
        os.kill(os.getpid(), signal.SIGKILL)  # never unlinks, never closes

    children.start(orphan)
    assert children.join() == [-signal.SIGKILL]
    assert os.path.exists(f"/dev/shm/weft.{name}")
    assert Space.sweep() >= 1
    assert not os.path.exists(f"/dev/shm/weft.{name}")
    assert os.path.exists(f"/dev/shm/weft.{space.name}")  # ours is alive: kept
    assert weft.spaces.sweep() >= 0


# --- a C program and Python sharing a lock and values by name --------------------------------


@pytest.fixture(scope="module")
def c_peer(tmp_path_factory):
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        pytest.skip("no C compiler (cc) to build c_peer.c")
    exe = tmp_path_factory.mktemp("c_peer") / "c_peer"
    library = Path(weft.LIBRARY_PATH)
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", str(weft.HEADER_PATH.parent),
           str(HERE / "c_peer.c"), "-o", str(exe)]
    if library.is_absolute():
        cmd += [str(library), f"-Wl,-rpath,{library.parent}"]
    else:
        cmd += ["-lweft"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, f"compiling c_peer.c failed:\n{' '.join(cmd)}\n{out.stderr}"
    return str(exe)


def test_c_and_python_share_a_lock_a_value_and_a_dict(space, c_peer, children):
    n = 2000
    lock = wmp.Lock(space=space, name="lock")
    total = wmp.Value("q", 0, space=space, name="total")  # a C weft_array of one int64_t
    atomic = wmp.RawValue("q", 0, space=space, name="atomic")
    shared = wmp.Dict({"count": "0"}, space=space, name="dict", codec="str")
    args = [c_peer, space.name, "lock", "total", "atomic", "dict", str(n)]
    peers = [subprocess.Popen(args, stderr=subprocess.PIPE, text=True) for _ in range(2)]

    def python_side():
        d = wmp.Dict.open(space, "dict", codec="str")
        for _ in range(n):
            with lock:
                total.value += 1
                d["count"] = str(int(d["count"]) + 1)
            atomic.fetch_add(1)

    procs = children.start(python_side, n=2)  # two Python processes...
    thread = threading.Thread(target=python_side)  # ...and a thread of this one
    thread.start()
    thread.join(JOIN_TIMEOUT)
    for p in peers:
        _, err = p.communicate(timeout=JOIN_TIMEOUT)
        assert p.returncode == 0, err
    assert children.join(procs) == [0, 0]
    assert total.value == 5 * n
    assert atomic.value == 5 * n
    assert shared["count"] == str(5 * n)
    assert {k: v for k, v in shared.items() if k.startswith("c-peer-")} == {f"c-peer-{p.pid}": "done" for p in peers}


def test_c_peer_killed_holding_the_lock(space, c_peer):
    lock = wmp.Lock(space=space, name="lock")
    wmp.Value("q", 0, space=space, name="total")
    wmp.Value("q", 0, space=space, name="atomic")
    wmp.Dict(space=space, name="dict")
    out = subprocess.run([c_peer, space.name, "lock", "total", "atomic", "dict", "die"], capture_output=True,
                         text=True, timeout=JOIN_TIMEOUT)
    assert out.returncode == -signal.SIGKILL and out.stdout == "locked\n", out.stderr
    with pytest.raises(weft.OwnerDeadError):
        lock.acquire(timeout=JOIN_TIMEOUT)
    lock.mark_consistent()
    lock.release()
    with lock:
        pass
