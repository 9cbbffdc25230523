"""Python's ``subprocess`` on weft's commands (``weft_command_*``).

    from weft import subprocess

    r = subprocess.run(["ls", "-l"], capture_output=True, text=True, check=True)
    with subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as p:
        out, _ = p.communicate(b"data", timeout=5)

``run``, ``Popen``, ``call``, ``check_call`` and ``check_output`` take the arguments of the
standard library's functions listed in their signatures, and return and raise the same things:
``subprocess.CompletedProcess``, ``subprocess.CalledProcessError``,
``subprocess.TimeoutExpired`` (the standard library's classes, re-exported here), and
``FileNotFoundError`` / ``PermissionError`` / ``OSError`` when the program cannot be executed
(raised by ``Popen()`` itself, with the errno and filename CPython gives). ``PIPE``, ``STDOUT``
and ``DEVNULL`` are the standard library's values.

How weft runs them: the child is started with ``clone(CLONE_VFORK | CLONE_PIDFD)`` and tracked by
its pidfd (signals never reach a reused pid); it receives only descriptors 0, 1 and 2 (the
standard library's ``close_fds=True``); ``communicate`` is one C poll loop with the GIL released,
so no amount of data in either direction deadlocks, and it can be resumed after a timeout.

Not supported (use the standard library): ``shell=True``, ``executable``, ``preexec_fn``,
``pass_fds``, ``close_fds=False``, user/group changes. Differences: ``TimeoutExpired`` from
``Popen.communicate`` carries no partial output (weft keeps it: the next ``communicate()``
returns everything, which is what ``run`` does after killing the child, so ``run``'s
``TimeoutExpired`` has the output as in CPython); ``Popen.stdout``/``stderr`` are duplicates of
weft's descriptors: do not mix reading them with ``communicate``.
"""

from __future__ import annotations

import io
import locale
import os
import subprocess as _std
from subprocess import (  # noqa: F401 - re-exported
    DEVNULL,
    PIPE,
    STDOUT,
    CalledProcessError,
    CompletedProcess,
    SubprocessError,
    TimeoutExpired,
)

from ._errors import error_for, last_error_message
from ._native import CONSTANTS, FOREVER, ffi, lib, managed
from .process import _os_error_for

__all__ = [
    "run",
    "Popen",
    "call",
    "check_call",
    "check_output",
    "PIPE",
    "STDOUT",
    "DEVNULL",
    "CompletedProcess",
    "CalledProcessError",
    "TimeoutExpired",
    "SubprocessError",
]

_OK = CONSTANTS["WEFT_OK"]
_TIMEOUT = CONSTANTS["WEFT_TIMEOUT"]
_WOULD_BLOCK = CONSTANTS["WEFT_WOULD_BLOCK"]
_TASK_FAILED = CONSTANTS["WEFT_TASK_FAILED"]
_INVALID_STATE = CONSTANTS["WEFT_INVALID_STATE"]
_INHERIT = CONSTANTS["WEFT_STDIO_INHERIT"]
_PIPE = CONSTANTS["WEFT_STDIO_PIPE"]
_NULL = CONSTANTS["WEFT_STDIO_NULL"]
_FD = CONSTANTS["WEFT_STDIO_FD"]
_MERGE = CONSTANTS["WEFT_STDIO_STDOUT"]
_RUN_CHECK = CONSTANTS["WEFT_RUN_CHECK"]


# --- arguments ----------------------------------------------------------------------------


def _argv(args) -> list:
    """The argument list as the standard library makes it (a str, bytes or path is the
    program alone; shell=False)."""
    if isinstance(args, (str, bytes, os.PathLike)):
        return [args]
    return list(args)


def _encode(x, what="argument") -> bytes:
    b = os.fsencode(x)
    if b"\0" in b:
        raise ValueError("embedded null byte")
    return b


def _timeout_ns(timeout) -> int:
    if timeout is None:
        return FOREVER
    if timeout <= 0:
        return 0
    ns = int(timeout * 1e9)
    return min(max(ns, 1), FOREVER - 1)


def _text_encoding():
    fn = getattr(_std, "_text_encoding", None)
    if fn is not None:
        return fn()
    return locale.getpreferredencoding(False)  # pragma: no cover - older CPython


def _translate_newlines(data: bytes, encoding, errors) -> str:
    data = data.decode(encoding, errors)
    return data.replace("\r\n", "\n").replace("\r", "\n")


def _is(spec, const) -> bool:
    return isinstance(spec, int) and spec == const


def _take_bytes(b):
    """bytes of a weft_bytes (freed); None for NULL."""
    if b == ffi.NULL:
        return None
    try:
        n = lib.weft_bytes_len(b)
        return bytes(ffi.buffer(lib.weft_bytes_data(b), n)) if n else b""
    finally:
        lib.weft_bytes_free(b)


class _Options:
    """A ``weft_command_options`` and everything it points to, kept alive together."""

    def __init__(self, cwd, env, stdin, stdout, stderr, start_new_session):
        self.o = ffi.new("weft_command_options *")
        self._keep = []
        if cwd is not None:
            c = ffi.new("char[]", _encode(cwd))
            self._keep.append(c)
            self.o.cwd = c
        if env is not None:
            entries = []
            for k, v in env.items():
                k = os.fsencode(k)
                if b"=" in k:
                    raise ValueError("illegal environment variable name")
                kv = k + b"=" + os.fsencode(v)
                if b"\0" in kv:
                    raise ValueError("embedded null byte")
                entries.append(ffi.new("char[]", kv))
            arr = ffi.new("const char *[]", entries + [ffi.NULL])
            self._keep += entries
            self._keep.append(arr)
            self.o.env = arr
        self.o.stdin_mode, self.o.stdin_fd = self._stream(stdin, "stdin")
        self.o.stdout_mode, self.o.stdout_fd = self._stream(stdout, "stdout")
        self.o.stderr_mode, self.o.stderr_fd = self._stream(stderr, "stderr")
        self.o.start_new_session = bool(start_new_session)

    @staticmethod
    def _stream(spec, name):
        if spec is None:
            return _INHERIT, -1
        if isinstance(spec, int):
            if spec == PIPE:
                return _PIPE, -1
            if spec == DEVNULL:
                return _NULL, -1
            if spec == STDOUT:
                if name != "stderr":
                    raise ValueError(f"STDOUT can only be used for stderr, not {name}")
                return _MERGE, -1
            if spec < 0:
                raise ValueError(f"bad {name}: {spec}")
            return _FD, spec
        if hasattr(spec, "fileno"):
            return _FD, spec.fileno()
        raise TypeError(f"bad {name}: expected None, PIPE, DEVNULL, STDOUT, a file descriptor or a file object, not "
                        f"{type(spec).__name__}")


def _c_argv(argv):
    if not argv:
        raise IndexError("list index out of range")  # CPython: args[0] of an empty list
    items = [ffi.new("char[]", _encode(a)) for a in argv]
    arr = ffi.new("const char *[]", items + [ffi.NULL])
    return arr, items


def _start_error(st, argv, cwd):
    """The exception for a failed start: OSError subclasses for the program's errno, with the
    filename CPython gives (the program, or the directory that could not be entered)."""
    message = last_error_message()
    filename = argv[0]
    if cwd is not None and "cannot change to directory" in message:
        filename = cwd
    return _os_error_for(st, filename=filename)


# --- Popen --------------------------------------------------------------------------------


class _StdinRaw(io.FileIO):
    """The raw stream of ``Popen.stdin``: a duplicate of weft's write end. Closing it also
    closes weft's end, so the child reads end of file (unless ``communicate`` took over)."""

    def __init__(self, fd, popen):
        super().__init__(fd, "wb", closefd=True)
        self._popen = popen

    def close(self):
        popen, self._popen = getattr(self, "_popen", None), None
        try:
            super().close()
        finally:
            if popen is not None and not popen._stdin_handed_over:
                popen._close_weft_stdin()


class Popen:
    """A started program (``subprocess.Popen``). See the module documentation for what is
    supported; ``args`` is a sequence of program and arguments (str, bytes or paths), or a
    single program. The arguments after ``bufsize`` are keyword-only (the standard library's
    third positional parameter, ``executable``, does not exist here).

    ``stdin``/``stdout``/``stderr``: None (inherit), PIPE, DEVNULL, STDOUT (stderr only), a
    descriptor or a file object. ``Popen.stdin``/``stdout``/``stderr`` are file objects over
    duplicates of weft's pipe descriptors; closing ``Popen.stdin`` also closes weft's end, so
    the child reads end of file."""

    def __init__(self, args, bufsize=-1, *, stdin=None, stdout=None, stderr=None, cwd=None, env=None,
                 universal_newlines=None, start_new_session=False, text=None, encoding=None, errors=None):
        self.args = args
        self.returncode = None
        self._communication_started = False
        self._stdin_handed_over = False
        self.stdin = self.stdout = self.stderr = None
        self._ptr = None

        if text is not None and universal_newlines is not None and bool(universal_newlines) != bool(text):
            raise _std.SubprocessError("Cannot disambiguate when both text and universal_newlines are supplied but "
                                       "different. Pass one or the other.")
        self.text_mode = encoding or errors or text or universal_newlines
        self.encoding = encoding
        self.errors = errors
        if self.text_mode and encoding is None:
            self.encoding = encoding = _text_encoding()
        line_buffering = False
        if self.text_mode and bufsize == 1:
            line_buffering = True
            bufsize = -1

        argv = _argv(args)
        c_argv, keep = _c_argv(argv)
        opts = _Options(cwd, env, stdin, stdout, stderr, start_new_session)
        out = ffi.new("weft_command **")
        st = lib.weft_command_start(c_argv, opts.o, out)
        if st != _OK:
            raise _start_error(st, argv, cwd)
        self._ptr = managed("command", out[0], lib.weft_command_free)
        self.pid = int(lib.weft_command_pid(self._ptr))

        def buffered(raw, cls):
            if bufsize == 0:
                return raw
            size = bufsize if bufsize > 1 else io.DEFAULT_BUFFER_SIZE
            return cls(raw, size)

        fd = lib.weft_command_stdin_fd(self._ptr)
        if fd >= 0:
            self.stdin = buffered(_StdinRaw(os.dup(fd), self), io.BufferedWriter)
            if self.text_mode:
                self.stdin = io.TextIOWrapper(self.stdin, write_through=True, line_buffering=line_buffering,
                                              encoding=encoding, errors=errors)
        fd = lib.weft_command_stdout_fd(self._ptr)
        if fd >= 0:
            self.stdout = buffered(io.FileIO(os.dup(fd), "rb"), io.BufferedReader)
            if self.text_mode:
                self.stdout = io.TextIOWrapper(self.stdout, encoding=encoding, errors=errors)
        fd = lib.weft_command_stderr_fd(self._ptr)
        if fd >= 0:
            self.stderr = buffered(io.FileIO(os.dup(fd), "rb"), io.BufferedReader)
            if self.text_mode:
                self.stderr = io.TextIOWrapper(self.stderr, encoding=encoding, errors=errors)

    # -- weft's stdin

    def _close_weft_stdin(self):
        if self._ptr is not None:
            lib.weft_command_close_stdin(self._ptr)

    # -- waiting

    def _record(self, code) -> int:
        self.returncode = int(code)
        return self.returncode

    def poll(self):
        """The return code once the child has exited (minus the signal that ended it), else
        None. Never blocks."""
        if self.returncode is not None:
            return self.returncode
        rc = ffi.new("int *")
        st = lib.weft_command_poll(self._ptr, rc)
        if st == _OK:
            return self._record(rc[0])
        if st == _WOULD_BLOCK:
            return None
        raise _os_error_for(st)

    def wait(self, timeout=None):
        """Waits for the child to exit and returns its return code; TimeoutExpired after
        ``timeout`` seconds. Releases the GIL while it waits."""
        if self.returncode is not None:
            return self.returncode
        rc = ffi.new("int *")
        st = lib.weft_command_wait(self._ptr, _timeout_ns(timeout), rc)
        if st == _OK:
            return self._record(rc[0])
        if st in (_TIMEOUT, _WOULD_BLOCK):
            raise TimeoutExpired(self.args, timeout)
        raise _os_error_for(st)

    def communicate(self, input=None, timeout=None):
        """Writes ``input`` to the child's stdin (when it is a pipe) and closes it, reads its
        stdout and stderr to the end, waits for it, and returns ``(stdout, stderr)`` (None for
        a stream that is not a pipe). After a TimeoutExpired, call again (without input) to
        continue: nothing read so far is lost."""
        if self._communication_started and input:
            raise ValueError("Cannot send input after starting communication")
        data = None
        if self.stdin is not None and not self._stdin_handed_over:
            if input is not None and self.text_mode and isinstance(input, str):
                input = input.encode(self.encoding, self.errors or "strict")
            if input:
                data = bytes(memoryview(input))
            # Hand stdin over to weft: flush what the program wrote, drop our duplicate
            # (weft's end stays open until it has written the input).
            self._stdin_handed_over = True
            try:
                if not self.stdin.closed:
                    self.stdin.flush()
            except BrokenPipeError:
                pass
            finally:
                try:
                    self.stdin.close()
                except BrokenPipeError:
                    pass
        self._communication_started = True
        out = ffi.new("weft_bytes **")
        err = ffi.new("weft_bytes **")
        if data:
            st = lib.weft_command_communicate(self._ptr, data, len(data), _timeout_ns(timeout), out, err)
        else:
            st = lib.weft_command_communicate(self._ptr, ffi.NULL, 0, _timeout_ns(timeout), out, err)
        if st in (_TIMEOUT, _WOULD_BLOCK):
            raise TimeoutExpired(self.args, timeout)
        if st != _OK:
            raise _os_error_for(st, overrides={_INVALID_STATE: ValueError})
        stdout, stderr = _take_bytes(out[0]), _take_bytes(err[0])
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        if stdout is None and self.stdout is not None:
            stdout = b""
        if stderr is None and self.stderr is not None:
            stderr = b""
        if self.stdout is None:
            stdout = None
        if self.stderr is None:
            stderr = None
        if self.text_mode:
            if stdout is not None:
                stdout = _translate_newlines(stdout, self.encoding, self.errors or "strict")
            if stderr is not None:
                stderr = _translate_newlines(stderr, self.encoding, self.errors or "strict")
        self.wait()
        return stdout, stderr

    # -- signals

    def send_signal(self, sig):
        """Sends ``sig`` to the child; nothing once its return code was collected."""
        if self.returncode is not None:
            return
        st = lib.weft_command_send_signal(self._ptr, int(sig))
        if st != _OK:
            raise _os_error_for(st)

    def terminate(self):
        """Sends SIGTERM."""
        if self.returncode is None:
            st = lib.weft_command_terminate(self._ptr)
            if st != _OK:
                raise _os_error_for(st)

    def kill(self):
        """Sends SIGKILL."""
        if self.returncode is None:
            st = lib.weft_command_kill(self._ptr)
            if st != _OK:
                raise _os_error_for(st)

    # -- context manager

    def __enter__(self):
        return self

    def __exit__(self, exc_type, value, traceback):
        if self.stdout:
            self.stdout.close()
        if self.stderr:
            self.stderr.close()
        try:
            if self.stdin:
                self.stdin.close()
        finally:
            if exc_type is not KeyboardInterrupt:
                self.wait()

    def __repr__(self):
        r = f"<{self.__class__.__name__}: returncode: {self.returncode} args: {self.args!r}>"
        if len(r) > 80:
            r = r[:76] + "...>"
        return r

    def __reduce__(self):
        raise TypeError("cannot pickle 'weft.subprocess.Popen' object")


# --- conveniences -------------------------------------------------------------------------


def run(args, *, input=None, capture_output=False, stdout=None, stderr=None, stdin=None, cwd=None, env=None,
        timeout=None, check=False, text=None, encoding=None, errors=None, universal_newlines=None,
        start_new_session=False):
    """``subprocess.run``: runs ``args``, waits for it, returns a CompletedProcess.

    ``input`` (bytes, or str in text mode) is sent to its stdin; ``capture_output`` pipes
    stdout and stderr; after ``timeout`` seconds the child is killed and TimeoutExpired raised
    (with the output read until then); ``check`` raises CalledProcessError for a non-zero
    return code."""
    if input is not None:
        if stdin is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        stdin = PIPE
    if capture_output:
        if stdout is not None or stderr is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        stdout = stderr = PIPE
    text_mode = encoding or errors or text or universal_newlines
    if timeout is None and not text_mode:
        return _run_native(args, input, stdin, stdout, stderr, cwd, env, check, start_new_session)
    with Popen(args, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env, text=text, encoding=encoding,
               errors=errors, universal_newlines=universal_newlines, start_new_session=start_new_session) as process:
        try:
            out, err = process.communicate(input, timeout=timeout)
        except TimeoutExpired as exc:
            process.kill()
            exc.stdout, exc.stderr = process.communicate()
            raise
        except BaseException:
            process.kill()
            raise
        retcode = process.poll()
        if check and retcode:
            raise CalledProcessError(retcode, process.args, output=out, stderr=err)
    return CompletedProcess(process.args, retcode, out, err)


def _run_native(args, input, stdin, stdout, stderr, cwd, env, check, start_new_session):
    """``run`` without a timeout nor text: one ``weft_command_run`` call."""
    argv = _argv(args)
    c_argv, keep = _c_argv(argv)
    opts = _Options(cwd, env, stdin, stdout, stderr, start_new_session)
    if input is not None:
        data = bytes(memoryview(input))
        buf = ffi.from_buffer(data) if data else ffi.new("char[1]")
        n = len(data)
    else:
        buf, n = ffi.NULL, 0
    rc = ffi.new("int *")
    # A non-NULL output pointer makes weft capture a stream left inheriting: ask only for pipes.
    out = ffi.new("weft_bytes **") if _is(stdout, PIPE) else ffi.NULL
    err = ffi.new("weft_bytes **") if _is(stderr, PIPE) else ffi.NULL
    st = lib.weft_command_run(c_argv, opts.o, buf, n, FOREVER, _RUN_CHECK if check else 0, rc, out, err)
    if st == _OK or st == _TASK_FAILED:
        o = _take_bytes(out[0]) if out != ffi.NULL else None
        e = _take_bytes(err[0]) if err != ffi.NULL else None
        if out != ffi.NULL and o is None:
            o = b""
        if err != ffi.NULL and e is None:
            e = b""
        if st == _TASK_FAILED:
            raise CalledProcessError(int(rc[0]), args, output=o, stderr=e)
        return CompletedProcess(args, int(rc[0]), o, e)
    if st in (CONSTANTS["WEFT_NOT_FOUND"], CONSTANTS["WEFT_PERMISSION_DENIED"], CONSTANTS["WEFT_OS_ERROR"]):
        raise _start_error(st, argv, cwd)
    raise error_for(st)


def call(args, *, timeout=None, **kwargs):
    """``subprocess.call``: runs ``args`` and returns its return code."""
    with Popen(args, **kwargs) as p:
        try:
            return p.wait(timeout=timeout)
        except BaseException:
            p.kill()
            raise


def check_call(args, **kwargs):
    """``subprocess.check_call``: as ``call``; CalledProcessError for a non-zero code."""
    retcode = call(args, **kwargs)
    if retcode:
        raise CalledProcessError(retcode, args)
    return 0


def check_output(args, *, timeout=None, **kwargs):
    """``subprocess.check_output``: runs ``args`` and returns its stdout;
    CalledProcessError for a non-zero return code."""
    if "stdout" in kwargs:
        raise ValueError("stdout argument not allowed, it will be overridden.")
    if "input" in kwargs and kwargs["input"] is None:
        # As CPython: an explicit input=None means empty input.
        text = kwargs.get("universal_newlines") or kwargs.get("text") or kwargs.get("encoding") or kwargs.get("errors")
        kwargs["input"] = "" if text else b""
    return run(args, stdout=PIPE, timeout=timeout, check=True, **kwargs).stdout
