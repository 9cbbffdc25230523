"""weft.multiprocessing.Dict and List: Manager().dict()/list() without a manager process,
checked against Python's dict and list and shared with fork children."""

import json
import pickle

import pytest

import weft.multiprocessing as wmp
from weft.spaces import Space
from _mp_support import CTX, JOIN_TIMEOUT, children, no_shm_leaks, unique  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_shm_leaks")


def test_dict_like_a_dict():
    d = wmp.Dict({"a": 1}, b=2)
    ref = {"a": 1, "b": 2}
    assert d == ref and len(d) == 2 and d["a"] == 1 and "b" in d and "z" not in d
    d["c"] = [1, 2]
    d["a"] = "replaced"  # keeps its place
    ref.update(c=[1, 2], a="replaced")
    assert d.keys() == list(ref.keys()) and d.values() == list(ref.values()) and d.items() == list(ref.items())
    assert list(d) == list(ref)
    with pytest.raises(KeyError):
        d["missing"]
    with pytest.raises(KeyError):
        del d["missing"]
    assert d.get("missing") is None and d.get("missing", 5) == 5
    assert d.pop("b") == 2 and d.pop("b", None) is None
    with pytest.raises(KeyError):
        d.pop("b")
    assert d.setdefault("n", 0) == 0 and d.setdefault("n", 9) == 0
    assert d.popitem() == ("n", 0)
    d.update([("x", 1)], y=2)
    assert d.copy() == {"a": "replaced", "c": [1, 2], "x": 1, "y": 2}
    assert isinstance(d.copy(), dict)
    del d["x"]
    assert "x" not in d
    d.clear()
    assert len(d) == 0 and d == {}
    with pytest.raises(KeyError):
        d.popitem()
    d[(1, "tuple")] = None
    assert d[(1, "tuple")] is None
    assert repr(d) == "<weft.multiprocessing.Dict {(1, 'tuple'): None}>"


def test_dict_codecs():
    raw = wmp.Dict(codec="bytes")
    raw[b"k"] = bytearray(b"v")
    assert raw[b"k"] == b"v" and raw.items() == [(b"k", b"v")]
    with pytest.raises(TypeError):
        raw["str"] = b"x"
    text = wmp.Dict(codec="str")
    text["ключ"] = "значение"
    assert text["ключ"] == "значение"
    with pytest.raises(TypeError):
        text["k"] = 1
    as_json = wmp.Dict(codec=json)
    as_json["k"] = {"nested": [1, 2]}
    assert as_json["k"] == {"nested": [1, 2]}
    with pytest.raises(ValueError):
        wmp.Dict(codec="yaml")
    with pytest.raises(TypeError):
        wmp.Dict(codec=42)


def test_dict_shared_with_children(children):
    d = wmp.Dict({"count": 0})
    lock = wmp.Lock()

    def child(i):
        d[f"child-{i}"] = i
        for _ in range(200):
            with lock:
                d["count"] += 1

    procs = [children.start(child, i) for i in range(4)]
    assert children.join(procs) == [0] * 4
    assert d["count"] == 800
    assert {k: v for k, v in d.items() if k != "count"} == {f"child-{i}": i for i in range(4)}


def test_dict_through_a_queue_keeps_its_codec(children):
    queue = CTX.Queue()
    done = CTX.Queue()

    def child():
        d = queue.get(timeout=JOIN_TIMEOUT)
        d["from child"] = d["from parent"].upper()
        done.put(True)

    p = children.start(child)
    d = wmp.Dict(codec="str")
    d["from parent"] = "hello"
    queue.put(d)
    assert done.get(timeout=JOIN_TIMEOUT)
    assert children.join(p) == [0]
    assert d["from child"] == "HELLO"
    again = pickle.loads(pickle.dumps(d))
    assert again["from child"] == "HELLO"


def test_named_dict_and_list_in_a_space():
    name = unique("dict")
    space = Space.create(name, 1 << 20)
    try:
        d = wmp.Dict(space=space, name="d", codec="bytes")
        l = wmp.List(space=space, name="l")
        d[b"k"] = b"v"
        l.append({"x": 1})
        assert wmp.Dict.open(space, "d", codec="bytes")[b"k"] == b"v"
        assert wmp.List.open(space, "l") == [{"x": 1}]
        with pytest.raises(FileExistsError):
            wmp.Dict(space=space, name="d")
        with pytest.raises(ValueError):
            wmp.Dict.open(space, "l")  # a list, not a dict
    finally:
        space.close()
        space.unlink()


def test_list_like_a_list():
    l = wmp.List([1, 2, 3])
    ref = [1, 2, 3]
    for op in (lambda x: x.append(4), lambda x: x.insert(0, 0), lambda x: x.insert(-1, "m"),
               lambda x: x.insert(100, "end"), lambda x: x.insert(-100, "start"), lambda x: x.extend([5, 6])):
        op(l)
        op(ref)
    assert l == ref and len(l) == len(ref) and list(l) == ref
    assert l[0] == ref[0] and l[-1] == ref[-1] and l[2:5] == ref[2:5] and l[::-2] == ref[::-2]
    l[1] = "one"
    ref[1] = "one"
    del l[2]
    del ref[2]
    assert l.pop() == ref.pop() and l.pop(0) == ref.pop(0) and l == ref
    assert l.index("m") == ref.index("m") and l.count(2) == ref.count(2)
    l.remove("m")
    ref.remove("m")
    l.reverse()
    ref.reverse()
    l += ["tail"]
    ref += ["tail"]
    assert l.copy() == ref and isinstance(l.copy(), list)
    with pytest.raises(IndexError):
        l[100]
    with pytest.raises(IndexError):
        l[-100] = 1
    with pytest.raises(IndexError):
        del l[100]
    with pytest.raises(TypeError):
        l[0:1] = [1]
    l.clear()
    assert len(l) == 0 and l == []
    with pytest.raises(IndexError, match="empty"):
        l.pop()
    assert repr(wmp.List(["a"])) == "<weft.multiprocessing.List ['a']>"


def test_list_shared_with_children(children):
    l = wmp.List()

    def child(i):
        for j in range(50):
            l.append((i, j))

    procs = [children.start(child, i) for i in range(4)]
    assert children.join(procs) == [0] * 4
    items = list(l)
    assert sorted(items) == [(i, j) for i in range(4) for j in range(50)]
    for i in range(4):  # each child's appends stay in its order
        assert [j for (c, j) in items if c == i] == list(range(50))
