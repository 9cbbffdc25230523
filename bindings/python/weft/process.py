"""Child processes running *native* tasks: ``multiprocessing.Process`` without an interpreter
in the child.

    import ctypes, weft

    tasks = ctypes.CDLL("./libtasks.so")          # exports weft_status work(weft_call *)
    p = weft.Process(target=tasks.work, args=b"input bytes", start_method="spawn")
    p.start()
    p.join()
    print(p.exitcode, p.result)                    # 0, the bytes the task set as its result

The target is a C function with weft's task signature ``weft_status task(weft_call *call)``
(``weft_task_fn``), given as

* a ctypes function pointer (``ctypes.CDLL(path).task``),
* a cffi function pointer (``ffi.dlopen(path).task`` of any ``cffi.FFI``, or
  ``ffi.addressof(lib, "task")`` / ``ffi.cast(...)``), or
* a ``(library_path, symbol_name)`` pair: the library is loaded in the child (None: the
  program and the libraries loaded with it).

A Python callable is refused with TypeError: use ``multiprocessing.Process`` for Python code.
With the ``forkserver`` (weft's default) and ``spawn`` start methods the child is a fresh image
of the python executable in which libweft takes over at load time: its ``main`` (the
interpreter) never runs, the task is found again by its library and offset, and it sees only
its argument bytes, the descriptors passed with ``fds=`` and weft's shared objects. With
``fork`` the child is a copy of this process (interpreter included, but not running) and calls
the pointer directly.

With ``fork`` the child also inherits this process's signal dispositions: Python's own
handlers (SIGINT's) only set a flag for an interpreter that never runs there, so such a child
ignores Ctrl-C; ``forkserver`` and ``spawn`` children start with the default dispositions.

The task's argument is bytes: ``args`` is a bytes-like object, or a tuple (list) holding at
most one bytes-like object; ``()`` (the default) is an empty argument. ``kwargs`` must be empty.
The task's result bytes are ``Process.result`` once it has ended.

The attributes and methods are those of ``multiprocessing.Process`` (``start``, ``join``,
``is_alive``, ``terminate``, ``kill``, ``close``, ``pid``, ``ident``, ``name``, ``daemon``,
``exitcode``, ``sentinel``), with the same exceptions. Differences: a daemon child is killed
by the kernel when this process ends in any way (even SIGKILL), and it may start children of
its own; ``exitcode`` is 0 when the task succeeded and 1 when it failed.
"""

from __future__ import annotations

import atexit
import concurrent.futures.process as _cf_process
import ctypes
import itertools
import operator
import os
import re
import signal
import threading
import warnings

from ._errors import WeftError, error_for, last_error_message, status_name
from ._native import CONSTANTS, FOREVER, ffi, lib, managed
from ._sync import _ns, _seconds

__all__ = [
    "Process",
    "TaskError",
    "WorkerDiedError",
    "cpu_count",
    "current_process_name",
    "current_pid",
    "parent_pid",
    "get_start_method",
    "set_start_method",
    "START_METHODS",
]

_OK = CONSTANTS["WEFT_OK"]
_TIMEOUT = CONSTANTS["WEFT_TIMEOUT"]
_WOULD_BLOCK = CONSTANTS["WEFT_WOULD_BLOCK"]
_TASK_FAILED = CONSTANTS["WEFT_TASK_FAILED"]
_WORKER_DIED = CONSTANTS["WEFT_WORKER_DIED"]

START_METHODS = {
    "fork": CONSTANTS["WEFT_START_FORK"],
    "forkserver": CONSTANTS["WEFT_START_FORKSERVER"],
    "spawn": CONSTANTS["WEFT_START_SPAWN"],
}
_METHOD_NAMES = {v: k for k, v in START_METHODS.items()}
_MAX_FDS = 200


# --- errors -------------------------------------------------------------------------------


def _os_error_for(status: int, filename=None, overrides: dict | None = None) -> BaseException:
    """Like :func:`weft._errors.error_for`, but a failure with an OS cause (weft's
    ``weft_last_error_errno`` non-zero: WEFT_OS_ERROR, WEFT_PERMISSION_DENIED, the
    WEFT_NOT_FOUND of a program) becomes the matching ``OSError`` subclass
    (``FileNotFoundError``, ``PermissionError``, ``ChildProcessError`` ...), with the strerror
    text as CPython words it and weft's message as a note."""
    err = lib.weft_last_error_errno()
    if err and (overrides is None or status not in overrides):
        message = last_error_message()
        exc = OSError(err, os.strerror(err), filename) if filename is not None else OSError(err, os.strerror(err))
        if message and hasattr(exc, "add_note"):
            exc.add_note(message)
        exc.weft_message = message
        return exc
    return error_for(status, overrides)


class TaskError(WeftError):
    """A native task reported failure (it returned a status other than ``WEFT_OK``).

    ``status`` is ``WEFT_TASK_FAILED``; ``task_status`` the status the task returned,
    ``task_status_name`` its name (``"WEFT_NOT_FOUND"``) and ``task_message`` the message the
    task set with ``weft_call_set_error`` ("" if none). ``message`` is weft's whole text
    ("task failed with WEFT_NOT_FOUND: <task_message>").
    """

    def __init__(self, task_status: int, task_message: str, message: str | None = None):
        self.task_status = int(task_status)
        self.task_status_name = status_name(self.task_status)
        self.task_message = task_message
        if message is None:
            message = f"task failed with {self.task_status_name}: {task_message}"
        super().__init__(_TASK_FAILED, message)

    def __reduce__(self):
        return (type(self), (self.task_status, self.task_message, self.message))


# weft's wording (src/pool/processes.rs): "worker process <pid> was killed by signal <n>
# (<description>) while running the task", "... exited with code <c> ...", "... ended ...";
# a map item's failure puts "item <i> failed: " before it.
_DIED_TEXT = re.compile(r"worker process (\d+) (?:was killed by signal (\d+)|exited with code (-?\d+))?")


class WorkerDiedError(TaskError, _cf_process.BrokenProcessPool):
    """The worker process running a task died before the task finished (killed by a signal,
    crashed, or exited): only that task fails; the pool starts a new worker and goes on.

    A :class:`TaskError` whose ``status`` and ``task_status`` are ``WEFT_WORKER_DIED``, with
    weft's message (``message``, ``task_message``: "worker process 1234 was killed by signal 9
    (Killed) while running the task"); ``pid`` is the worker's pid, ``signal`` the signal that
    ended it and ``exitcode`` the code it exited with (None when not known or not the case).
    It is also a ``concurrent.futures.process.BrokenProcessPool``, the exception Python's
    executor raises when a worker dies, so that code written for Python's executor still
    catches it — but here the pool is not broken."""

    def __init__(self, message: str):
        super().__init__(_WORKER_DIED, message, message)
        self.status = _WORKER_DIED
        self.name = status_name(_WORKER_DIED)
        self.args = (self.status, self.message)
        m = _DIED_TEXT.search(message)
        self.pid = int(m.group(1)) if m else None
        self.signal = int(m.group(2)) if m and m.group(2) else None
        self.exitcode = int(m.group(3)) if m and m.group(3) else None

    def __reduce__(self):
        return (type(self), (self.message,))


# --- the current process ------------------------------------------------------------------


def cpu_count() -> int:
    """The number of CPUs this process may use: those of its affinity mask, further limited by
    a cgroup v2 CPU quota (rounded up); at least 1 (Python 3.13's
    ``os.process_cpu_count()``, which unlike ``os.cpu_count()`` respects the limits)."""
    return int(lib.weft_cpu_count())


def current_process_name() -> str:
    """This process's name as weft knows it: ``"MainProcess"``, or the name its weft parent
    gave it (a native task reads the same with ``weft_process_current_name``)."""
    return ffi.string(lib.weft_process_current_name()).decode("utf-8", "replace")


def current_pid() -> int:
    """This process's id (``os.getpid()``)."""
    return int(lib.weft_process_current_pid())


def parent_pid() -> int:
    """The id of the process that started this one through weft (for a forkserver child, the
    process that asked, not the server), else ``os.getppid()``."""
    return int(lib.weft_process_parent_pid())


def get_start_method() -> str:
    """weft's process-wide default start method: ``"forkserver"`` unless changed."""
    return _METHOD_NAMES[int(lib.weft_process_get_start_method())]


def set_start_method(method: str) -> None:
    """Sets weft's process-wide default start method (``"fork"``, ``"forkserver"`` or
    ``"spawn"``) for processes started without ``start_method``; ValueError for others.
    (weft's default is independent of ``multiprocessing.set_start_method``.)"""
    code = START_METHODS.get(method)
    if code is None:
        raise ValueError(f"cannot find context for {method!r}")
    st = lib.weft_process_set_start_method(code)
    if st != _OK:
        raise error_for(st)


# --- warnings -----------------------------------------------------------------------------

# weft reports conditions such as "forking a process that has other threads" through a hook;
# the binding collects them on the thread that started the process (or the pool) and turns
# them into RuntimeWarnings there (after the C call, so that -W error raises in start()). A
# warning on a thread that is not collecting (a pool's collector thread starting a replacement
# worker) is issued at once.
_pending = threading.local()
_hook_lock = threading.Lock()
_hook = None


@ffi.callback("void(const char *, void *)")
def _warning_hook(message, user):  # pragma: no cover - exercised through fork starts
    try:
        text = ffi.string(message).decode("utf-8", "replace")
        items = getattr(_pending, "items", None)
        if items is None:
            warnings.warn(text, RuntimeWarning, stacklevel=2)
        else:
            items.append(text)
    except BaseException:  # noqa: B902 - never let an exception cross into C
        pass


def _install_warning_hook() -> None:
    global _hook
    if _hook is None:
        with _hook_lock:
            if _hook is None:
                lib.weft_set_warning_hook(_warning_hook, ffi.NULL)
                _hook = _warning_hook


def _collect_warnings() -> None:
    """Collects the warnings of the weft calls this thread makes next (until
    ``_emit_warnings``)."""
    _install_warning_hook()
    _pending.items = []


def _emit_warnings(stacklevel: int = 3) -> None:
    """Issues the warnings collected on this thread, and stops collecting."""
    items = getattr(_pending, "items", None)
    _pending.items = None
    for text in items or ():
        warnings.warn(text, RuntimeWarning, stacklevel=stacklevel)


def _drop_warnings() -> None:
    """Stops collecting, dropping what was collected (the call failed)."""
    _pending.items = None


# --- targets and arguments ----------------------------------------------------------------

_TASK_TYPE = ffi.typeof("weft_task_fn")


def _task_pointer(target):
    """A ``weft_task_fn`` cdata for a ctypes or cffi function pointer, else None."""
    if isinstance(target, ffi.CData):
        t = ffi.typeof(target)
        if t.kind == "function" or (t.kind == "pointer" and t.item.kind in ("function", "void")) or (
            t.kind == "primitive" and t.cname in ("intptr_t", "uintptr_t")
        ):
            addr = int(ffi.cast("uintptr_t", target))
        else:
            raise TypeError(f"a cffi target must be a function pointer, not {t.cname!r}")
        if addr == 0:
            raise ValueError("the target function pointer is NULL")
        return ffi.cast(_TASK_TYPE, addr)
    if isinstance(target, ctypes._CFuncPtr):  # CDLL(path).task, CFUNCTYPE(...)(address)
        addr = ctypes.cast(target, ctypes.c_void_p).value
        if not addr:
            raise ValueError("the target function pointer is NULL")
        return ffi.cast(_TASK_TYPE, addr)
    return None


def _fspath_bytes(p) -> bytes:
    if isinstance(p, bytes):
        return p
    return os.fsencode(os.fspath(p))


def _text_bytes(s, what: str) -> bytes:
    if isinstance(s, bytes):
        b = s
    elif isinstance(s, str):
        b = s.encode("utf-8")
    else:
        raise TypeError(f"{what} must be str or bytes, not {type(s).__name__}")
    if b"\0" in b:
        raise ValueError(f"embedded null byte in {what}")
    return b


def _target_spec(target):
    """('pointer', cdata) or ('symbol', library bytes | None, symbol bytes)."""
    if target is None:
        raise TypeError(
            "weft.Process needs a native target: a ctypes or cffi pointer to a "
            "weft_status task(weft_call *), or a (library_path, symbol_name) pair"
        )
    ptr = _task_pointer(target)
    if ptr is not None:
        return ("pointer", ptr)
    if isinstance(target, tuple):
        if len(target) != 2:
            raise TypeError("a symbol target is a (library_path, symbol_name) pair")
        library, symbol = target
        lib_b = None if library is None else _fspath_bytes(library)
        if lib_b is not None and b"\0" in lib_b:
            raise ValueError("embedded null byte in library path")
        return ("symbol", lib_b, _text_bytes(symbol, "symbol_name"))
    if callable(target):
        raise TypeError(
            f"weft.Process runs native tasks only, not the Python callable {target!r} (the child "
            "has no interpreter): use multiprocessing.Process for Python code, or give a ctypes/cffi "
            "pointer to a weft_status task(weft_call *) or a (library_path, symbol_name) pair"
        )
    raise TypeError(
        f"target must be a ctypes/cffi function pointer or a (library_path, symbol_name) pair, "
        f"not {type(target).__name__}"
    )


def _arg_bytes(args) -> bytes:
    if isinstance(args, (tuple, list)):
        if len(args) == 0:
            return b""
        if len(args) > 1:
            raise TypeError(
                f"a native task takes one bytes-like argument, got {len(args)} arguments; "
                "pack them into bytes (struct, json, ...)"
            )
        args = args[0]
    if isinstance(args, str):
        raise TypeError("a native task's argument must be bytes-like, not str: encode it")
    try:
        with memoryview(args) as m:
            return m.tobytes()
    except TypeError:
        raise TypeError(f"a native task's argument must be bytes-like, not {type(args).__name__}") from None


def _fd_list(fds) -> list[int]:
    out = []
    for f in fds:
        if not isinstance(f, int):
            if hasattr(f, "fileno"):
                f = f.fileno()
            else:
                f = operator.index(f)
        if f < 0:
            raise ValueError(f"file descriptor cannot be a negative integer ({f})")
        out.append(int(f))
    if len(out) > _MAX_FDS:
        raise ValueError(f"at most {_MAX_FDS} descriptors may be passed, got {len(out)}")
    return out


# --- Process ------------------------------------------------------------------------------


def _next_default_name() -> str:
    """``Process-N`` numbered like multiprocessing's own processes of this interpreter (one
    counter for both), ``Process-1:N`` in a multiprocessing child."""
    try:
        import multiprocessing.process as mpp

        count = next(mpp._process_counter)
        identity = mpp.current_process()._identity + (count,)
    except (AttributeError, ImportError):  # pragma: no cover - a future CPython
        identity = (next(_fallback_counter),)
    return "Process-" + ":".join(str(i) for i in identity)


_fallback_counter = itertools.count(1)

# Started processes not yet known to have ended (held, as multiprocessing holds its own):
# the non-daemonic ones are joined at exit, as multiprocessing does.
_children_strong: set = set()


def _join_children_at_exit():
    for p in list(_children_strong):
        try:
            if not p._daemon and p._parent_pid == os.getpid() and not p._closed:
                p.join()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_join_children_at_exit)


def _cleanup():
    """Forgets the children that have ended (as multiprocessing does at each start), so that
    unjoined, unreferenced ones are freed."""
    for p in list(_children_strong):
        if p._ptr is None or p._closed or not lib.weft_process_is_alive(p._ptr):
            _children_strong.discard(p)

_exitcode_to_name = {-int(s): s.name for s in signal.Signals}


class Process:
    """A child process running a native task (see the module documentation)."""

    def __init__(self, target=None, name=None, args=(), kwargs=None, *, daemon=None, start_method=None, fds=()):
        self._spec = _target_spec(target)
        self._target = target  # keeps the object holding the function (a cffi lib) loaded until start
        if kwargs:
            raise TypeError("a native task takes no keyword arguments (kwargs must be empty)")
        self._arg = _arg_bytes(args)
        if start_method is not None and start_method not in START_METHODS:
            raise ValueError(f"cannot find context for {start_method!r}")
        self._start_method = start_method
        self._fds = _fd_list(fds)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, not {type(name).__name__}")
        self._name = name or _next_default_name()
        if b"\0" in self._name.encode("utf-8", "surrogatepass"):
            raise ValueError("embedded null byte in name")
        self._daemon = bool(daemon) if daemon is not None else False
        self._parent_pid = os.getpid()
        self._ptr = None
        self._pid = None
        self._closed = False
        self._outcome = None  # ("ok", bytes) | ("failed", exception factory) once collected
        self._lock = threading.Lock()

    # -- checks

    def _check_closed(self):
        if self._closed:
            raise ValueError("process object is closed")

    # -- start

    def start(self):
        """Starts the child. AssertionError when started twice or from another process (as
        multiprocessing); the errors of weft's start: ValueError for a bad descriptor or a
        target that the start method cannot find again (a run-time generated function with
        forkserver/spawn), FileNotFoundError-like WeftError (WEFT_NOT_FOUND) for a missing
        library or symbol, OSError when fork/spawn failed."""
        self._check_closed()
        assert self._ptr is None, "cannot start a process twice"
        assert self._parent_pid == os.getpid(), "can only start a process object created by current process"
        _cleanup()
        _collect_warnings()
        opts = ffi.new("weft_process_options *")
        name = ffi.new("char[]", self._name.encode("utf-8", "surrogatepass"))
        opts.name = name
        opts.start_method = START_METHODS[self._start_method] if self._start_method else 0
        opts.daemon = self._daemon
        fds = ffi.new("int32_t[]", self._fds) if self._fds else ffi.NULL
        opts.fds = fds
        opts.fd_count = len(self._fds)
        out = ffi.new("weft_process **")
        arg = self._arg
        if self._spec[0] == "pointer":
            st = lib.weft_process_start(self._spec[1], arg, len(arg), opts, out)
        else:
            _, library, symbol = self._spec
            st = lib.weft_process_start_symbol(library if library is not None else ffi.NULL, symbol, arg, len(arg), opts, out)
        if st != _OK:
            _drop_warnings()
            exc = _os_error_for(st)
            raise exc
        self._ptr = managed("process", out[0], lib.weft_process_free)
        self._pid = int(lib.weft_process_pid(self._ptr))
        self._target = self._spec = None  # as multiprocessing: no reference cycles through the target
        _children_strong.add(self)
        _emit_warnings()

    # -- waiting

    def _collect(self, timeout_ns: int) -> bool:
        """One weft_process_join; True once the outcome is known."""
        if self._outcome is not None:
            return True
        res = ffi.new("weft_bytes **")
        st = lib.weft_process_join(self._ptr, timeout_ns, res)
        if st == _OK:
            b = res[0]
            try:
                data = bytes(ffi.buffer(lib.weft_bytes_data(b), lib.weft_bytes_len(b))) if b != ffi.NULL else b""
            finally:
                lib.weft_bytes_free(b)
            outcome = ("ok", data)
        elif st == _TASK_FAILED:
            message = last_error_message()
            ts = ffi.new("weft_status *")
            task_status = ts[0] if lib.weft_process_task_status(self._ptr, ts) == _OK else _TASK_FAILED
            prefix = f"task failed with {status_name(task_status)}: "
            task_message = message[len(prefix):] if message.startswith(prefix) else message
            outcome = ("failed", lambda: TaskError(task_status, task_message, message))
        elif st == _WORKER_DIED:
            message = last_error_message()
            outcome = ("failed", lambda: WeftError(_WORKER_DIED, message))
        elif st in (_TIMEOUT, _WOULD_BLOCK):
            return False
        else:
            raise _os_error_for(st)
        with self._lock:
            if self._outcome is None:
                self._outcome = outcome
        _children_strong.discard(self)
        return True

    def join(self, timeout=None):
        """Waits until the child ends (at most ``timeout`` seconds; None: forever) and returns
        None, as multiprocessing's ``join``: check ``exitcode`` (None while it runs) or
        ``result``. Releases the GIL while it waits."""
        self._check_closed()
        assert self._parent_pid == os.getpid(), "can only join a child process"
        assert self._ptr is not None, "can only join a started process"
        if timeout is None:
            ns = FOREVER
        else:
            t = _seconds(timeout)
            ns = _ns(t) if t > 0 else 0
        self._collect(ns)

    def is_alive(self):
        """True while the child runs (False before start and once it ended)."""
        self._check_closed()
        assert self._parent_pid == os.getpid(), "can only test a child process"
        if self._ptr is None:
            return False
        if lib.weft_process_is_alive(self._ptr):
            return True
        self._collect(0)
        return False

    @property
    def exitcode(self):
        """The child's exit code: None before start and while it runs; 0 when its task
        succeeded, 1 when it failed, the code it passed to ``exit``, or minus the signal that
        ended it (-15 after ``terminate()``, -9 after ``kill()``)."""
        self._check_closed()
        if self._ptr is None:
            return None
        code = ffi.new("int32_t *")
        st = lib.weft_process_exitcode(self._ptr, code)
        if st == _OK:
            return int(code[0])
        if st == _WOULD_BLOCK:
            return None
        raise _os_error_for(st)

    @property
    def result(self) -> bytes:
        """The task's result bytes once the child has ended after a successful task (b"" when
        it set none). Raises the task's failure: :class:`TaskError` (a WeftError with
        ``task_status`` and ``task_message``) when the task returned a failure status, a
        WeftError with status ``WEFT_WORKER_DIED`` when the child ended without reporting
        (killed, or ``exit`` with a non-zero code); ValueError before start or while the
        child runs. Does not wait: ``join()`` first."""
        if self._outcome is None:
            self._check_closed()
            if self._ptr is None:
                raise ValueError("process not started")
            if not self._collect(0):
                raise ValueError("the process has not finished: join() it first")
        kind, value = self._outcome
        if kind == "ok":
            return value
        raise value()

    # -- signals

    def _signal(self, fn):
        self._check_closed()
        if self._ptr is None:
            raise ValueError("process not started")
        st = fn(self._ptr)
        if st != _OK:
            raise _os_error_for(st)

    def terminate(self):
        """Sends SIGTERM (exitcode -15 unless the task handles it). Nothing happens once the
        child has ended."""
        self._signal(lib.weft_process_terminate)

    def kill(self):
        """Sends SIGKILL (exitcode -9). Nothing happens once the child has ended."""
        self._signal(lib.weft_process_kill)

    def send_signal(self, sig):
        """Sends signal ``sig`` (through the pidfd: never to a reused pid)."""
        self._signal(lambda p: lib.weft_process_send_signal(p, int(sig)))

    def close(self):
        """Releases the resources of an ended child (its pidfd); ValueError while it runs.
        Afterwards most attributes raise ValueError, as in multiprocessing (``result`` and
        ``name`` stay available)."""
        if self._closed:
            return
        if self._ptr is not None:
            if lib.weft_process_is_alive(self._ptr):
                raise ValueError(
                    "Cannot close a process while it is still running. You should first call join() or terminate()."
                )
            self._collect(0)
            st = lib.weft_process_close(self._ptr)
            if st != _OK:
                raise _os_error_for(st)
        _children_strong.discard(self)
        self._closed = True

    # -- attributes

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, name):
        assert isinstance(name, str), "name must be a string"
        self._name = name

    @property
    def daemon(self) -> bool:
        """A daemon child is killed (SIGKILL) when this process ends, however it ends.
        Settable before start only."""
        return self._daemon

    @daemon.setter
    def daemon(self, daemonic):
        assert self._ptr is None, "process has already started"
        self._daemon = bool(daemonic)

    @property
    def ident(self):
        """The child's pid; None before start."""
        self._check_closed()
        return self._pid

    pid = ident

    @property
    def sentinel(self) -> int:
        """A descriptor (the child's pidfd, owned by this object) that becomes readable when
        the child ends: for ``select``, ``multiprocessing.connection.wait`` or asyncio."""
        self._check_closed()
        if self._ptr is None:
            raise ValueError("process not started")
        return int(lib.weft_process_fd(self._ptr))

    @property
    def start_method(self) -> str | None:
        """The start method: the one given, or (once started) the one weft used."""
        if self._ptr is not None and not self._closed:
            return _METHOD_NAMES.get(int(lib.weft_process_start_method(self._ptr)), self._start_method)
        return self._start_method

    def __reduce__(self):
        raise TypeError("cannot pickle 'weft.Process' object")

    def __repr__(self):
        exitcode = None
        if self._closed:
            status = "closed"
        elif self._ptr is None:
            status = "initial"
        else:
            exitcode = self.exitcode
            status = "stopped" if exitcode is not None else "started"
        info = [type(self).__name__, f"name={self._name!r}"]
        if self._pid is not None:
            info.append(f"pid={self._pid}")
        info.append(f"parent={self._parent_pid}")
        info.append(status)
        if exitcode is not None:
            info.append(f"exitcode={_exitcode_to_name.get(exitcode, exitcode)}")
        if self._daemon:
            info.append("daemon")
        return "<%s>" % " ".join(info)
