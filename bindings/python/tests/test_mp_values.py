"""weft.multiprocessing.Value and Array: the same assertions against Python's multiprocessing
(fork context) and weft, shared with fork children, plus weft's atomics and named values."""

import ctypes
import pickle

import pytest

import weft.multiprocessing as wmp
from _mp_support import CTX, JOIN_TIMEOUT, children, mp, no_shm_leaks  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_shm_leaks")


# --- Value ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typecode, init",
    [("b", -5), ("B", 200), ("h", -300), ("H", 60000), ("i", -7), ("I", 2**32 - 1), ("l", -(2**40)),
     ("L", 2**64 - 1), ("q", 2**62), ("Q", 2**63), ("f", 1.5), ("d", 0.1), ("c", b"x")],
)
def test_value_type_codes(mp, typecode, init):
    v = mp.Value(typecode, init)
    assert v.value == init and type(v.value) is type(init)
    zero = mp.Value(typecode)
    assert zero.value == (b"\x00" if typecode == "c" else 0)


@pytest.mark.parametrize("ctype", [ctypes.c_int, ctypes.c_double, ctypes.c_ubyte, ctypes.c_longlong,
                                   ctypes.c_int64, ctypes.c_uint32, ctypes.c_char])
def test_value_ctypes_types(mp, ctype):
    v = mp.Value(ctype)
    v.value = ctype(1).value
    assert v.value == ctype(1).value


def test_value_conversions_follow_ctypes(mp):
    v = mp.Value("i", 0)
    v.value = 2**32 + 5  # wraps, as ctypes does
    assert v.value == 5
    with pytest.raises(TypeError):
        v.value = 1.5
    f = mp.Value("f", 0.1)
    assert f.value == ctypes.c_float(0.1).value
    d = mp.Value("d", 3)
    assert d.value == 3.0 and isinstance(d.value, float)


def test_value_get_lock_is_reentrant(mp):
    v = mp.Value("i", 1)
    with v.get_lock():
        v.value += 1
        with v.get_lock():
            v.value += 1
    assert v.value == 3
    assert v.get_lock().acquire(timeout=1)
    v.get_lock().release()
    raw = mp.Value("i", 1, lock=False)
    with pytest.raises(AttributeError):
        raw.get_lock()


def test_value_with_a_given_lock(mp, children):
    lock = mp.RLock()  # .value takes it too: a Lock would deadlock here, in Python as in weft
    v = mp.Value("q", 0, lock=lock)
    assert v.get_lock() is lock

    def work():
        for _ in range(500):
            with v.get_lock():
                v.value += 1

    children.run(work, n=2)
    assert v.value == 1000


def test_value_incremented_by_four_processes(mp, children):
    v = mp.Value("i", 0)

    def work():
        for _ in range(1000):
            with v.get_lock():
                v.value += 1

    children.run(work, n=4)
    assert v.value == 4000


def test_raw_value_and_array(mp):
    v = mp.RawValue("d", 2.5)
    assert v.value == 2.5
    a = mp.RawArray("i", [1, 2, 3])
    assert a[:] == [1, 2, 3] and len(a) == 3


# --- Array ----------------------------------------------------------------------------------


def test_array_indexing_and_slices(mp):
    a = mp.Array("i", 6)
    assert a[:] == [0] * 6 and len(a) == 6
    b = mp.Array("i", range(6))
    assert b[0] == 0 and b[-1] == 5 and b[2:4] == [2, 3] and b[::2] == [0, 2, 4] and b[::-1] == [5, 4, 3, 2, 1, 0]
    assert b[4:100] == [4, 5] and b[3:1] == []
    with pytest.raises(IndexError):
        b[6]
    with pytest.raises(IndexError):
        b[-7] = 1
    b[1] = 10
    b[-1] = 50
    b[2:4] = [20, 30]
    b[::5] = [100, 500]
    assert list(b) == [100, 10, 20, 30, 4, 500]
    with pytest.raises(ValueError):
        b[0:2] = [1]
    with pytest.raises(TypeError):
        b[0] = 1.5
    assert 20 in b
    assert [x for x in b] == b[:]


def test_array_of_doubles_from_ctypes_type(mp):
    a = mp.Array(ctypes.c_double, [1, 2.5])
    assert a[:] == [1.0, 2.5]
    a[0] += 0.25
    assert a[0] == 1.25


def test_char_array(mp):
    a = mp.Array("c", b"hello")
    assert a[0] == b"h" and a[1:3] == b"el" and a.value == b"hello" and a.raw == b"hello"
    a.value = b"hi"
    assert a.value == b"hi" and a.raw == b"hi\x00lo"
    a[0] = b"H"
    assert a.value == b"Hi"
    with pytest.raises(ValueError):
        a.value = b"toolong"
    a.raw = b"abcde"
    assert a[:] == b"abcde"
    assert list(a) == [b"a", b"b", b"c", b"d", b"e"]
    z = mp.Array("c", 3)
    assert z.value == b"" and z.raw == b"\x00\x00\x00"


def test_array_shared_with_children(mp, children):
    a = mp.Array("q", 8)

    def fill(i):
        with a.get_lock():
            a[i] = i * i
            a[7] += 1

    procs = [children.start(fill, i) for i in range(7)]
    assert children.join(procs) == [0] * 7
    assert a[:7] == [i * i for i in range(7)] and a[7] == 7
    with a.get_lock():
        a[0:3] = [9, 9, 9]

    def check():
        assert a[0:3] == [9, 9, 9]

    children.run(check)


# --- weft extras ----------------------------------------------------------------------------


def test_weft_array_needs_one_item():
    with pytest.raises(ValueError):
        wmp.Array("i", 0)
    with pytest.raises(TypeError):
        wmp.Value("u")
    with pytest.raises(TypeError):
        wmp.Value(ctypes.c_bool)


def test_atomics():
    v = wmp.Value("i", 5)
    assert v.load() == 5
    assert v.fetch_add(3) == 5 and v.value == 8
    assert v.fetch_add(-10) == 8 and v.load() == -2
    assert v.compare_exchange(0, 1) == (False, -2)
    assert v.compare_exchange(-2, 7) == (True, -2) and v.value == 7
    v.store(2**32 + 1)  # wraps as ctypes does
    assert v.value == 1
    small = wmp.Value("b", 127)
    assert small.fetch_add(1) == 127 and small.value == -128
    big = wmp.Value("Q", 2**64 - 1)
    assert big.load() == 2**64 - 1
    assert big.fetch_add(1) == 2**64 - 1 and big.value == 0
    assert big.compare_exchange(0, 2**63) == (True, 0) and big.load() == 2**63
    a = wmp.Array("H", [1, 2, 3])
    assert a.fetch_add(-1, 10) == 3 and a.load(2) == 13
    a.store(0, 70000)
    assert a[0] == 70000 % 65536
    assert a.compare_exchange(1, 2, 20) == (True, 2) and a[1] == 20
    with pytest.raises(IndexError):
        a.load(3)
    with pytest.raises(TypeError):
        wmp.Value("d").fetch_add(1)


def test_fetch_add_from_four_processes_without_the_lock(children):
    v = wmp.RawValue("q", 0)
    a = wmp.RawArray("i", 2)

    def work():
        for _ in range(5000):
            v.fetch_add(1)
            a.fetch_add(1, 2)

    children.run(work, n=4)
    assert v.value == 20000 and a[:] == [0, 40000]


def test_values_sent_through_a_queue(children):
    queue = CTX.Queue()
    done = CTX.Queue()

    def child():
        v, a, c, locked = queue.get(timeout=JOIN_TIMEOUT)
        assert isinstance(v, wmp.Value) and isinstance(a, wmp.Array)
        with v.get_lock():
            v.value += 1
        a[1] = 42
        c.value = b"child"
        with locked.get_lock():
            locked.value = 3.5
        done.put(True)

    p = children.start(child)
    lock = wmp.RLock()
    v, a, c = wmp.Value("i", 1), wmp.Array("i", 3), wmp.Array("c", 8)
    locked = wmp.Value("d", 0.0, lock=lock)
    queue.put((v, a, c, locked))
    assert done.get(timeout=JOIN_TIMEOUT)
    assert children.join(p) == [0]
    assert v.value == 2 and a[:] == [0, 42, 0] and c.value == b"child" and locked.value == 3.5
    copy = pickle.loads(pickle.dumps(locked))
    assert copy.get_lock()._is_mine() is False
    original = wmp.RawValue("i", 4)
    raw = pickle.loads(pickle.dumps(original))
    assert raw.value == 4
    with pytest.raises(AttributeError):
        raw.get_lock()
    vcopy = pickle.loads(pickle.dumps(v))
    assert vcopy.get_lock().acquire(timeout=1)
    vcopy.get_lock().release()


def test_a_token_dies_with_the_last_handle():
    v = wmp.Value("i", 1)
    token = v.token()
    del v
    with pytest.raises(FileNotFoundError):
        wmp.Value.from_token(token)


def test_named_values_in_the_default_space():
    v = wmp.Value("q", 5, name="pytest-default-value")
    try:
        w = wmp.Value.open(None, "pytest-default-value")
        w.value += 1
        assert v.value == 6
        with pytest.raises(FileExistsError):
            wmp.Array("i", 2, name="pytest-default-value")  # taken
        with pytest.raises(ValueError):
            wmp.Lock.open(None, "pytest-default-value")  # not a lock
    finally:
        wmp.Space.default().remove("pytest-default-value")
    with pytest.raises(FileNotFoundError):
        wmp.Value.open(None, "pytest-default-value")
    assert v.value == 6  # the object lives while handles are open


def test_repr():
    assert repr(wmp.Value("i", 3)) == "<weft.multiprocessing.Value('i', 3)>"
    assert repr(wmp.Array("d", [1, 2])) == "<weft.multiprocessing.Array('d', [1.0, 2.0])>"
