"""Shared-memory spaces: where weft's process-shared objects live.

    from weft.spaces import Space
    from weft import multiprocessing as wmp

    space = Space.create("jobs", 1 << 20)          # the file /dev/shm/weft.jobs, mode 0600
    lock = wmp.Lock(space=space, name="lock")       # named objects in it
    total = wmp.Value("q", 0, space=space, name="total")

    # in any other process of the same user, in any language (C: weft_space_open):
    space = Space.open("jobs")
    lock = wmp.Lock.open(space, "lock")
    total = wmp.Value.open(space, "total")

    Space.unlink("jobs")                            # or space.unlink(): removes the name

Every shared object of :mod:`weft.multiprocessing` is created in a space: by default
(``space=None``) the process's anonymous *default space*, which children started with the
``fork`` start method inherit, and otherwise the named ``Space`` given. A named space persists
until :func:`unlink` (or until :func:`sweep` finds every process that used it dead); weft never
unlinks it behind your back. Objects keep their space mapped while they live, so closing a
``Space`` handle does not invalidate the objects created or opened through it.

Errors: a name that is taken is ``FileExistsError``, a name that does not exist
``FileNotFoundError``, a bad name or size ``ValueError``; other failures ``weft.WeftError``.
"""

from __future__ import annotations

import operator

from ._errors import error_for
from ._native import CONSTANTS, ffi, lib, managed

__all__ = ["Space", "unlink", "sweep", "check"]

_OK = CONSTANTS["WEFT_OK"]
_EXISTS = CONSTANTS["WEFT_EXISTS"]
_NOT_FOUND = CONSTANTS["WEFT_NOT_FOUND"]

# Name errors map to the exceptions Python's own shared-memory code raises.
FILE_ERRORS = {_EXISTS: FileExistsError, _NOT_FOUND: FileNotFoundError}


def check(st: int, overrides: dict | None = None) -> None:
    """Raises the exception for a failed weft status (FileExistsError / FileNotFoundError for
    names, then ``overrides``, then the defaults of :func:`weft._errors.error_for`)."""
    if st != _OK:
        raise error_for(st, {**FILE_ERRORS, **(overrides or {})})


def encode_name(name) -> bytes:
    """A name as the C API takes it (``str`` -> UTF-8 bytes); TypeError otherwise."""
    if isinstance(name, str):
        return name.encode("utf-8")
    if isinstance(name, bytes):
        return name
    raise TypeError(f"a name must be a str, not {type(name).__name__}")


def opt_name(name):
    """``None`` -> NULL, else :func:`encode_name`."""
    return ffi.NULL if name is None else encode_name(name)


def space_ptr(space):
    """The ``weft_space *`` to pass for ``space`` (None: NULL, the default space)."""
    if space is None:
        return ffi.NULL
    if isinstance(space, Space):
        return space._handle()
    raise TypeError(f"space must be a weft.spaces.Space or None, not {type(space).__name__}")


class _ClassOrInstance:
    """``Space.unlink("name")`` on the class, ``space.unlink()`` on an instance."""

    def __init__(self, on_class, on_instance):
        self._on_class = on_class
        self._on_instance = on_instance
        self.__doc__ = on_instance.__doc__

    def __get__(self, obj, cls=None):
        if obj is None:
            return self._on_class
        return self._on_instance.__get__(obj, cls)


def unlink(name: str) -> None:
    """Removes the named space ``name`` (the file ``/dev/shm/weft.<name>``): nobody can open it
    any more; processes that have it open keep using it, and its memory goes with the last of
    them. FileNotFoundError when there is no such space."""
    check(lib.weft_space_unlink(encode_name(name)))


def sweep() -> int:
    """Removes the calling user's named spaces whose every participant process has died
    (exited, even by SIGKILL, without closing its handles); never one with a live participant.
    Returns how many were removed."""
    removed = ffi.new("size_t *")
    check(lib.weft_space_sweep(removed))
    return int(removed[0])


class Space:
    """A handle on a space (``weft_space``): the default anonymous one, or a named one.

    Construct with :meth:`default`, :meth:`create`, :meth:`open` or :meth:`from_fd`. Use it
    as the ``space=`` of the :mod:`weft.multiprocessing` constructors and in their
    ``open(space, name)``. ``close()`` (or leaving a ``with`` block) frees this handle only:
    the space, its name and the objects in it stay.
    """

    __slots__ = ("_ptr", "_name", "__weakref__")

    def __init__(self, *args, **kwargs):
        raise TypeError("use Space.create(name, size), Space.open(name), Space.default() or Space.from_fd(fd)")

    @classmethod
    def _adopt(cls, fn, *args) -> "Space":
        out = ffi.new("weft_space **")
        check(fn(*args, out))
        self = object.__new__(cls)
        self._ptr = managed("space", out[0], lib.weft_space_free)
        raw = lib.weft_space_name(self._ptr)
        self._name = None if raw == ffi.NULL else ffi.string(raw).decode("utf-8")
        return self

    @classmethod
    def default(cls) -> "Space":
        """A handle on this process's default space (anonymous, inherited by forked children;
        ``space=None`` everywhere means this space)."""
        return cls._adopt(lib.weft_space_default)

    @classmethod
    def create(cls, name: str, size: int) -> "Space":
        """Creates the named space ``name`` of ``size`` bytes (about 7 KiB of it is the
        space's header). The name (1 to 200 letters, digits, ``.``, ``_``, ``-``; not starting
        with ``.``) becomes the file ``/dev/shm/weft.<name>``, created exclusively with mode
        0600. FileExistsError when the name is taken, ValueError for a bad name or size."""
        size = operator.index(size)
        if size <= 0:
            raise ValueError("'size' must be a positive number")
        return cls._adopt(lib.weft_space_create, encode_name(name), size)

    @classmethod
    def open(cls, name: str) -> "Space":
        """Opens the named space ``name`` (created by any process of the same user, in any
        language). FileNotFoundError when it does not exist; ValueError when the file is not
        one weft would trust (another owner, another mode, a symbolic link)."""
        return cls._adopt(lib.weft_space_open, encode_name(name))

    @classmethod
    def from_fd(cls, fd: int) -> "Space":
        """Attaches to an anonymous space from a descriptor of it (:attr:`fd` of a space in
        another process, passed over a Unix socket or inherited). The descriptor is
        duplicated; the caller keeps its own."""
        return cls._adopt(lib.weft_space_from_fd, operator.index(fd))

    def _handle(self):
        ptr = self._ptr
        if ptr is None:
            raise ValueError("operation on a closed Space")
        return ptr

    @property
    def name(self) -> str | None:
        """The space's name (``None`` for an anonymous space)."""
        return self._name

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def usage(self) -> tuple[int, int]:
        """``(size, unused)``: the space's size in bytes and the bytes never allocated yet."""
        size = ffi.new("size_t *")
        unused = ffi.new("size_t *")
        check(lib.weft_space_usage(self._handle(), size, unused))
        return int(size[0]), int(unused[0])

    @property
    def size(self) -> int:
        """The space's size in bytes."""
        return self.usage()[0]

    def participants(self) -> int:
        """The number of live processes using the space."""
        live = ffi.new("size_t *")
        check(lib.weft_space_participants(self._handle(), live))
        return int(live[0])

    @property
    def fd(self) -> int:
        """The space's descriptor (borrowed: valid while this handle is open; close-on-exec).
        Duplicate it (``os.dup``) to keep it or to hand it to a child."""
        fd = ffi.new("int32_t *")
        check(lib.weft_space_fd(self._handle(), fd))
        return int(fd[0])

    def remove(self, name: str) -> None:
        """Removes ``name`` from the space's directory of named objects: the object lives on
        while handles to it are open; the name can be reused at once. FileNotFoundError when
        no object has that name."""
        check(lib.weft_space_remove(self._handle(), encode_name(name)))

    def _unlink_self(self) -> None:
        """Removes this named space's name (see :func:`unlink`); this handle and every object
        in the space keep working."""
        if self._name is None:
            raise ValueError("an anonymous space has no name to unlink")
        unlink(self._name)

    unlink = _ClassOrInstance(unlink, _unlink_self)

    sweep = staticmethod(sweep)

    def close(self) -> None:
        """Frees this handle (idempotent). The space and the objects in it stay."""
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            ffi.release(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        if self._name is None:
            raise TypeError("an anonymous Space cannot be pickled (pass its fd instead)")
        return (Space.open, (self._name,))

    def __repr__(self):
        state = " closed" if self._ptr is None else ""
        what = "default (anonymous)" if self._name is None else repr(self._name)
        return f"<weft.spaces.Space {what}{state}>"
