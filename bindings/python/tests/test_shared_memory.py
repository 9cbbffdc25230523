"""weft.shared_memory.SharedMemory: Python's SharedMemory API over weft's raw named segments,
with no resource tracker."""

import os
import pickle

import pytest

from weft.shared_memory import SharedMemory
from _mp_support import children, no_shm_leaks, unique  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_shm_leaks")


def _path(name):
    return f"/dev/shm/weft.{name}"


@pytest.fixture
def segment():
    shm = SharedMemory(unique("shm"), create=True, size=4096)
    yield shm
    try:
        shm.close()
    finally:
        try:
            shm.unlink()
        except FileNotFoundError:
            pass


def test_create_attach_both_ways(segment):
    assert segment.size == 4096 and len(segment.buf) == 4096
    assert bytes(segment.buf[:8]) == b"\0" * 8  # zero-filled
    assert os.path.exists(_path(segment.name))
    segment.buf[:5] = b"hello"
    other = SharedMemory(segment.name)
    assert other.name == segment.name and other.size == 4096
    assert bytes(other.buf[:5]) == b"hello"
    other.buf[4000:4003] = b"abc"
    assert bytes(segment.buf[4000:4003]) == b"abc"
    other.close()
    assert other.buf is None
    other.close()  # idempotent


def test_random_name_and_unlink():
    shm = SharedMemory(create=True, size=10)
    name = shm.name
    try:
        assert name and os.path.exists(_path(name))
        assert repr(shm) == f"SharedMemory({name!r}, size=10)"
    finally:
        shm.close()
        shm.unlink()
    assert not os.path.exists(_path(name))
    with pytest.raises(FileNotFoundError):
        SharedMemory(name)
    with pytest.raises(FileNotFoundError):
        shm.unlink()


def test_arguments_like_python():
    with pytest.raises(ValueError):
        SharedMemory(create=True, size=-1)
    with pytest.raises(ValueError):
        SharedMemory(create=True)  # size 0
    with pytest.raises(ValueError):
        SharedMemory()  # no name without create
    with pytest.raises(FileNotFoundError):
        SharedMemory(unique("absent"))
    with pytest.raises(ValueError):
        SharedMemory("bad/name", create=True, size=1)


def test_create_existing_name(segment):
    with pytest.raises(FileExistsError):
        SharedMemory(segment.name, create=True, size=10)
    slash = SharedMemory("/" + segment.name)  # Python's names may carry the POSIX slash
    assert slash.name == segment.name
    slash.close()


def test_data_both_ways_with_a_child(segment, children):
    segment.buf[0] = 7

    def child(name):
        shm = SharedMemory(name)  # attach by name
        assert shm.buf[0] == 7
        shm.buf[1] = 8
        shm.close()

    children.run(child, segment.name)
    assert segment.buf[1] == 8
    assert os.path.exists(_path(segment.name))  # the child's exit removed nothing


def test_no_resource_tracker(children):
    name = unique("persist")

    def creator():
        shm = SharedMemory(name, create=True, size=64)
        shm.buf[:4] = b"kept"
        shm.close()  # exits without unlinking

    children.run(creator)
    shm = SharedMemory(name)  # still there: nothing unlinked it behind our back
    try:
        assert bytes(shm.buf[:4]) == b"kept"
    finally:
        shm.close()
        shm.unlink()


def test_close_with_live_views(segment):
    other = SharedMemory(segment.name)
    view = other.buf[10:20]
    with pytest.raises(BufferError):
        other.close()
    view[0] = 1  # the mapping is still there
    assert segment.buf[10] == 1
    del view
    other.close()


def test_view_outliving_the_object_keeps_the_mapping(segment):
    other = SharedMemory(segment.name)
    view = other.buf[0:4]
    del other  # __del__ cannot close while the view lives
    view[:] = b"live"
    assert bytes(segment.buf[:4]) == b"live"
    del view


def test_pickle_attaches_by_name(segment):
    segment.buf[0] = 42
    copy = pickle.loads(pickle.dumps(segment))
    assert copy.name == segment.name and copy.buf[0] == 42
    copy.close()
