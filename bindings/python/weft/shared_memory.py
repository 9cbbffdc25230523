"""``multiprocessing.shared_memory.SharedMemory`` on weft's raw named segments.

    from weft.shared_memory import SharedMemory

    shm = SharedMemory(create=True, size=4096)     # a fresh random name
    shm.buf[:5] = b"hello"
    other = SharedMemory(shm.name)                 # any process of the same user, any language
    bytes(other.buf[:5])                           # b'hello'
    other.close(); shm.close(); shm.unlink()

The segment ``name`` is the file ``/dev/shm/weft.<name>`` (C: ``weft_shm_open(name)``),
created exclusively with mode 0600; attaching checks the owner and the mode.

Unlike Python's class there is **no resource tracker**: weft never unlinks a segment behind
your back — not when the creating process exits, not when a process that merely attached
exits (Python's tracker does both, the second being a long-standing bug). A segment lives
until :meth:`SharedMemory.unlink` (or ``weft_shm_unlink`` from C), so call it once, from the
process that owns the segment's lifetime. (``weft.spaces.sweep()`` never touches raw
segments.) The ``track`` argument of Python 3.13 is accepted and ignored.
"""

from __future__ import annotations

import operator
import sys

from ._native import ffi, lib
from .spaces import check, encode_name

__all__ = ["SharedMemory"]


def _strip(name):
    if isinstance(name, str) and name.startswith("/"):
        return name[1:]  # Python's names may carry the POSIX leading slash
    return name


class SharedMemory:
    """``SharedMemory(name=None, create=False, size=0)``: creates (``create=True``) or
    attaches to the named segment ``name``; ``create=True`` without a name picks a fresh random
    one. ``name``, ``size``, ``buf`` (a writable memoryview over the whole mapping),
    ``close()`` (unmaps; BufferError while views of ``buf`` are still alive), ``unlink()``
    (removes the name; FileNotFoundError when it is already gone). FileExistsError /
    FileNotFoundError / ValueError as Python's class raises them."""

    _buf = None
    _data = None
    _name = None
    _size = 0

    def __init__(self, name=None, create=False, size=0, *, track=True):
        size = operator.index(size)
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create and size == 0:
            raise ValueError("'size' must be a positive number different from zero")
        if name is None and not create:
            raise ValueError("'name' can only be None if create=True")
        name = _strip(name)
        out = ffi.new("weft_shm **")
        if create:
            check(lib.weft_shm_create(ffi.NULL if name is None else encode_name(name), size, out))
        else:
            check(lib.weft_shm_open(encode_name(name), out))
        handle = out[0]
        self._name = ffi.string(lib.weft_shm_name(handle)).decode("utf-8")
        self._size = int(lib.weft_shm_size(handle))
        # The mapping is unmapped when this owner cdata dies: it is referenced by the cffi
        # buffer under `buf`, so even a slice of `buf` outliving this object keeps it mapped.
        self._data = ffi.gc(ffi.cast("char *", lib.weft_shm_data(handle)), lambda _p, h=handle: lib.weft_shm_free(h))
        self._buf = memoryview(ffi.buffer(self._data, self._size))

    def __del__(self):
        try:
            self.close()
        except (OSError, BufferError):
            pass

    def __reduce__(self):
        return (self.__class__, (self.name, False, self.size))

    def __repr__(self):
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"

    @property
    def buf(self):
        """A writable memoryview of the segment's bytes (None after close())."""
        return self._buf

    @property
    def name(self):
        """The segment's name (without the ``weft.`` file prefix)."""
        return self._name

    @property
    def size(self):
        """The segment's size in bytes."""
        return self._size

    def close(self):
        """Unmaps the segment from this process; the segment and its name stay. BufferError
        ("cannot close exported pointers exist") while other views of ``buf`` live."""
        buf, self._buf = self._buf, None
        if buf is not None:
            try:
                buf.release()
            except BufferError:
                self._buf = buf
                raise BufferError("cannot close exported pointers exist") from None
        data = self._data
        if data is None:
            return
        # Our reference, getrefcount's argument and `data` here: anything more is a cffi buffer
        # still exported through a slice of buf.
        if sys.getrefcount(data) > 3:
            raise BufferError("cannot close exported pointers exist")
        self._data = None
        ffi.release(data)

    def unlink(self):
        """Removes the segment's name: nobody can attach any more; processes that have it
        mapped keep it until they close it. Call it once, from one process."""
        check(lib.weft_shm_unlink(encode_name(self._name)))
