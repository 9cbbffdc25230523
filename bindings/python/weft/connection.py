"""``multiprocessing.Pipe``, ``Connection``, ``Listener`` and ``Client`` on weft's connections
(``weft_pipe``, ``weft_connection_*``, ``weft_listener_*``, ``weft_client_connect``).

    import weft

    a, b = weft.Pipe()
    a.send({"any": "picklable object"})
    b.recv()                                  # {'any': 'picklable object'}
    a.send_bytes(b"raw bytes")
    b.recv_bytes()                            # b'raw bytes'

    with weft.Listener(("127.0.0.1", 0), authkey=b"secret") as l:   # or a Unix path
        ... weft.Client(l.address, authkey=b"secret") ...

The methods, arguments, return values and exceptions are those of
``multiprocessing.connection``: ``send``/``recv`` pickle (``ForkingPickler``), ``recv_bytes``
raises EOFError once the peer closed and every message was received, OSError("handle is
closed") after ``close()``, OSError("bad message length") beyond ``maxlength`` (and the
connection stops receiving, as CPython's), ``recv_bytes_into`` raises
``multiprocessing.BufferTooShort`` with the whole message as ``args[0]``,
``Listener.accept``/``Client`` raise ``multiprocessing.AuthenticationError`` for a wrong key.

Every blocking call is one C call with the GIL released. Messages of any size are delivered
whole. A ``Connection`` can be given to a ``multiprocessing.Process`` child with any start method
(fork children inherit it; for spawn and forkserver it is pickled with
``multiprocessing.reduction.DupFd``, as CPython pickles its own), or to a native weft.Process
task with ``fds=[conn.fileno()]`` (the task calls ``weft_connection_from_fd``). Pass a connection
before receiving on it: bytes weft has read ahead into its buffer stay in this process.

weft's wire format and handshake are its own: a weft connection talks to weft connections
(from Python, C or any binding), not to CPython's ``multiprocessing.connection``. Because of
that read-ahead buffer, wait on weft connections with :func:`wait` (which knows about it)
rather than ``multiprocessing.connection.wait``/``select`` alone.
"""

from __future__ import annotations

import errno as _errno
import multiprocessing.connection as _mpc
import operator
import os
import threading
from multiprocessing import AuthenticationError, BufferTooShort
from multiprocessing import reduction as _reduction

from ._errors import last_error_message
from ._native import CONSTANTS, FOREVER, ffi, lib, managed
from ._sync import _ns, _seconds
from .process import _os_error_for

__all__ = [
    "Pipe",
    "Connection",
    "Listener",
    "Client",
    "wait",
    "send_handle",
    "recv_handle",
    "AuthenticationError",
    "BufferTooShort",
]

_OK = CONSTANTS["WEFT_OK"]
_TIMEOUT = CONSTANTS["WEFT_TIMEOUT"]
_WOULD_BLOCK = CONSTANTS["WEFT_WOULD_BLOCK"]
_CLOSED = CONSTANTS["WEFT_CLOSED"]
_INVALID_STATE = CONSTANTS["WEFT_INVALID_STATE"]
_INVALID_ARGUMENT = CONSTANTS["WEFT_INVALID_ARGUMENT"]
_BUFFER_TOO_SMALL = CONSTANTS["WEFT_BUFFER_TOO_SMALL"]
_AUTH_FAILED = CONSTANTS["WEFT_AUTH_FAILED"]
_EXISTS = CONSTANTS["WEFT_EXISTS"]
_NOT_FOUND = CONSTANTS["WEFT_NOT_FOUND"]
_UNSUPPORTED = CONSTANTS["WEFT_UNSUPPORTED"]

_ForkingPickler = _reduction.ForkingPickler


def _poll_timeout(timeout) -> int:
    """``poll(timeout)``: None waits forever, <= 0 tries once (as CPython's ``wait``)."""
    if timeout is None:
        return FOREVER
    t = _seconds(timeout)
    if t <= 0:
        return 0
    return _ns(t)


def _take_bytes(b) -> bytes:
    try:
        n = lib.weft_bytes_len(b)
        return bytes(ffi.buffer(lib.weft_bytes_data(b), n)) if n else b""
    finally:
        lib.weft_bytes_free(b)


# --- Connection ---------------------------------------------------------------------------


class Connection:
    """One end of a connection (``multiprocessing.connection.Connection``).

    ``Connection(handle, readable=True, writable=True)`` makes one of a connected stream socket
    descriptor whose peer is a weft connection (inherited, or passed by a parent), taking
    ownership of it, as CPython's constructor does. ``Pipe``, ``Listener.accept`` and ``Client``
    make them otherwise."""

    def __init__(self, handle, readable=True, writable=True):
        handle = handle.__index__()
        if handle < 0:
            raise ValueError("invalid handle")
        if not readable and not writable:
            raise ValueError("at least one of `readable` and `writable` must be True")
        out = ffi.new("weft_connection **")
        st = lib.weft_connection_from_fd(handle, bool(readable), bool(writable), out)
        if st != _OK:
            raise _os_error_for(st)
        self._adopt(out[0])

    @classmethod
    def _from_ptr(cls, ptr):
        self = cls.__new__(cls)
        self._adopt(ptr)
        return self

    def _adopt(self, ptr):
        self._ptr = managed("connection", ptr, lib.weft_connection_free)
        self._closed = False
        self._readable = bool(lib.weft_connection_readable(ptr))
        self._writable = bool(lib.weft_connection_writable(ptr))

    # -- checks (CPython's messages)

    def _check_closed(self):
        if self._closed:
            raise OSError("handle is closed")

    def _check_readable(self):
        if not self._readable:
            raise OSError("connection is write-only")

    def _check_writable(self):
        if not self._writable:
            raise OSError("connection is read-only")

    def _bad_message_length(self):
        if self._writable:
            self._readable = False
        else:
            self.close()
        raise OSError("bad message length")

    def _error(self, st, receiving: bool):
        if st == _CLOSED:
            if self._closed:
                return OSError("handle is closed")
            if receiving:
                return EOFError()
            return BrokenPipeError(_errno.EPIPE, os.strerror(_errno.EPIPE))
        if st == _INVALID_STATE and receiving:
            return OSError(f"cannot receive: {last_error_message()}")
        return _os_error_for(st)

    # -- properties

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    @property
    def readable(self) -> bool:
        """True when this end receives."""
        return self._readable

    @property
    def writable(self) -> bool:
        """True when this end sends."""
        return self._writable

    def fileno(self) -> int:
        """The socket descriptor (owned by the connection)."""
        self._check_closed()
        return int(lib.weft_connection_fd(self._ptr))

    def close(self):
        """Closes the connection (the peer sees end of file once no other process holds the
        socket). Closing again does nothing. Every later call raises OSError("handle is
        closed"); a call already blocked on it in another thread is not interrupted (it ends
        as it would have, and then fails the same way)."""
        if not self._closed:
            self._closed = True
            lib.weft_connection_close(self._ptr)

    # -- sending

    def send_bytes(self, buf, offset=0, size=None):
        """Sends ``buf[offset:offset+size]`` (a bytes-like object; offsets in bytes) as one
        message."""
        self._check_closed()
        self._check_writable()
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast("B")
        n = m.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        self._send(m[offset:offset + size])

    def _send(self, m):
        if len(m) == 0:
            st = lib.weft_connection_send(self._ptr, ffi.NULL, 0)
        else:
            if not m.contiguous:
                m = memoryview(m.tobytes())
            st = lib.weft_connection_send(self._ptr, ffi.from_buffer(m), len(m))
        if st != _OK:
            raise self._error(st, receiving=False)

    def send(self, obj):
        """Sends a picklable object (pickled with ``multiprocessing.reduction.ForkingPickler``)."""
        self._check_closed()
        self._check_writable()
        self._send(memoryview(_ForkingPickler.dumps(obj)))

    # -- receiving

    def _recv(self) -> bytes:
        out = ffi.new("weft_bytes **")
        st = lib.weft_connection_recv(self._ptr, FOREVER, out)
        if st != _OK:
            raise self._error(st, receiving=True)
        return _take_bytes(out[0])

    def _recv_into(self, ptr, cap):
        """(status, length) of one weft_connection_recv_into."""
        n = ffi.new("size_t *")
        st = lib.weft_connection_recv_into(self._ptr, ptr, cap, FOREVER, n)
        return st, int(n[0])

    def recv_bytes(self, maxlength=None):
        """Receives the next message as bytes (waits for it). EOFError when the peer closed
        and every message was received; OSError("bad message length") when it is longer than
        ``maxlength`` (the message is not consumed and this end stops receiving, as in
        CPython)."""
        self._check_closed()
        self._check_readable()
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        if maxlength is None:
            return self._recv()
        # Learn the size without taking the message (a zero-capacity receive), then take it.
        st, size = self._recv_into(ffi.NULL, 0)
        if st == _OK:
            return b""
        if st != _BUFFER_TOO_SMALL:
            raise self._error(st, receiving=True)
        if size > maxlength:
            self._bad_message_length()
        buf = bytearray(size)
        st, n = self._recv_into(ffi.from_buffer(buf), size)
        if st == _BUFFER_TOO_SMALL:  # another thread took it and a larger one is next
            if n > maxlength:
                self._bad_message_length()
            return self._recv()
        if st != _OK:
            raise self._error(st, receiving=True)
        del buf[n:]
        return bytes(buf)

    def recv_bytes_into(self, buf, offset=0):
        """Receives the next message into the writable buffer ``buf`` at byte ``offset`` and
        returns its length. When it does not fit, raises ``multiprocessing.BufferTooShort``
        whose ``args[0]`` is the whole message (consumed)."""
        self._check_closed()
        self._check_readable()
        with memoryview(buf) as m:
            itemsize = m.itemsize
            bytesize = itemsize * len(m)
            if offset < 0:
                raise ValueError("negative offset")
            elif offset > bytesize:
                raise ValueError("offset too large")
            if m.readonly:
                raise TypeError("recv_bytes_into() needs a writable buffer")
            cap = bytesize - offset
            if cap > 0:
                mb = m.cast("B") if (m.format != "B" or m.ndim != 1) else m
                whole = ffi.from_buffer(mb, require_writable=True)  # holds the buffer during the call
                st, n = self._recv_into(whole + offset, cap)
                del whole
                if mb is not m:
                    mb.release()
            else:
                st, n = self._recv_into(ffi.NULL, 0)
            if st == _OK:
                return n
            if st == _BUFFER_TOO_SMALL:
                # The message is still there: take it whole for the exception, as CPython.
                raise BufferTooShort(self._recv())
            raise self._error(st, receiving=True)

    def recv(self):
        """Receives the next message and unpickles it."""
        self._check_closed()
        self._check_readable()
        return _ForkingPickler.loads(self._recv())

    def poll(self, timeout=0.0):
        """True when a receive would not block: a message (or part of one) is there, or end of
        file. Waits up to ``timeout`` seconds (None: forever)."""
        self._check_closed()
        self._check_readable()
        st = lib.weft_connection_poll(self._ptr, _poll_timeout(timeout))
        if st == _OK:
            return True
        if st in (_WOULD_BLOCK, _TIMEOUT):
            return False
        raise self._error(st, receiving=True)

    def _ready_now(self) -> bool:
        """poll(0) for :func:`wait`, False for a closed or write-only end."""
        if self._closed or not self._readable:
            return False
        return lib.weft_connection_poll(self._ptr, 0) == _OK

    # -- descriptors

    def send_handle(self, fd):
        """Sends a duplicate of descriptor ``fd`` (it stays open here) as a message of its own
        (``multiprocessing.reduction.send_handle``); Unix-domain connections only."""
        self._check_closed()
        self._check_writable()
        st = lib.weft_connection_send_fd(self._ptr, operator.index(fd))
        if st != _OK:
            raise self._error(st, receiving=False)

    def recv_handle(self) -> int:
        """Receives a descriptor sent with ``send_handle``, as a new descriptor owned by the
        caller."""
        self._check_closed()
        self._check_readable()
        fd = ffi.new("int *")
        st = lib.weft_connection_recv_fd(self._ptr, FOREVER, fd)
        if st != _OK:
            raise self._error(st, receiving=True)
        return int(fd[0])

    # -- protocol

    def __reduce__(self):
        # multiprocessing's ForkingPickler uses the reducer registered below (its dispatch
        # table comes first); a plain pickle has no way to carry the socket.
        raise TypeError(
            "a weft.connection.Connection can only be pickled by multiprocessing (to a child "
            "process, or over a multiprocessing Queue/Pipe): it carries a socket"
        )

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else f"fd={self.fileno()}"
        mode = "duplex" if self._readable and self._writable else ("read-only" if self._readable else "write-only")
        return f"<weft.connection.Connection {state} {mode}>"


def Pipe(duplex=True):
    """``multiprocessing.Pipe``: a connected pair ``(a, b)``. Duplex: both ends send and
    receive. Otherwise ``a`` only receives and ``b`` only sends."""
    a = ffi.new("weft_connection **")
    b = ffi.new("weft_connection **")
    st = lib.weft_pipe(bool(duplex), a, b)
    if st != _OK:
        raise _os_error_for(st)
    return Connection._from_ptr(a[0]), Connection._from_ptr(b[0])


# --- pickling for multiprocessing children -------------------------------------------------


def _reduce_connection(conn):
    """As CPython's ``reduce_connection``: the descriptor travels with ``DupFd`` (inherited,
    or sent to a spawn/forkserver child), and the child makes a weft Connection of it."""
    df = _reduction.DupFd(conn.fileno())
    return _rebuild_connection, (df, conn.readable, conn.writable)


def _rebuild_connection(df, readable, writable):
    fd = df.detach()
    return Connection(fd, readable, writable)


_reduction.register(Connection, _reduce_connection)


def send_handle(conn, handle, destination_pid=None):
    """``multiprocessing.reduction.send_handle`` for a weft connection (``destination_pid`` is
    accepted for compatibility and unused)."""
    conn.send_handle(handle)


def recv_handle(conn):
    """``multiprocessing.reduction.recv_handle`` for a weft connection."""
    return conn.recv_handle()


# --- wait ---------------------------------------------------------------------------------


def wait(object_list, timeout=None):
    """``multiprocessing.connection.wait`` that also sees messages weft has already read
    ahead into a connection's buffer (which make no descriptor readable). Returns the objects
    of ``object_list`` that are ready."""
    object_list = list(object_list)
    ready = [o for o in object_list if isinstance(o, Connection) and o._ready_now()]
    if ready:
        rest = [o for o in object_list if not any(o is r for r in ready)]
        more = _mpc.wait(rest, 0) if rest else []
        return [o for o in object_list if any(o is r for r in ready + more)]
    return _mpc.wait(object_list, timeout)


# --- addresses ----------------------------------------------------------------------------

_default_family = "AF_UNIX"


def _address_type(address):
    return _mpc.address_type(address)


def _validate_family(family):
    if family not in ("AF_UNIX", "AF_INET"):
        if family == "AF_INET6":
            return
        raise ValueError("Family %s is not recognized." % family)


def _to_weft(address, family) -> bytes:
    """A multiprocessing address -> weft's ``unix:/path``, ``unix:@name`` or
    ``tcp:host:port``."""
    if family in ("AF_INET", "AF_INET6") or isinstance(address, tuple):
        if not (isinstance(address, tuple) and len(address) >= 2):
            raise TypeError(f"an AF_INET address must be a (host, port) tuple, not {address!r}")
        host, port = address[0], address[1]
        if isinstance(host, bytes):
            host = host.decode("ascii")
        host = host or "0.0.0.0"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"tcp:{host}:{int(port)}".encode()
    if isinstance(address, bytes):
        raw = address
    else:
        raw = os.fsencode(address)
    if raw.startswith(b"\0"):
        return b"unix:@" + raw[1:]
    return b"unix:" + raw


def _from_weft(text: str):
    if text.startswith("tcp:"):
        host, _, port = text[4:].rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return (host, int(port))
    if text.startswith("unix:@"):
        return "\0" + text[6:]
    if text.startswith("unix:"):
        return text[5:]
    return text


def _authkey_arg(authkey):
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError("authkey should be a byte string")
    if authkey:
        return authkey, len(authkey)
    return ffi.NULL, 0


def _auth_error():
    """CPython's AuthenticationError (its message), with weft's detail as a note."""
    message = last_error_message()
    exc = AuthenticationError("digest received was wrong")
    if message and hasattr(exc, "add_note"):
        exc.add_note(message)
    return exc


def _address_error(st, address):
    err = lib.weft_last_error_errno()
    if err:
        return _os_error_for(st)
    if st == _EXISTS:
        return OSError(_errno.EADDRINUSE, os.strerror(_errno.EADDRINUSE))
    if st == _NOT_FOUND:
        return FileNotFoundError(_errno.ENOENT, os.strerror(_errno.ENOENT))
    return _os_error_for(st)


# --- Listener and Client ------------------------------------------------------------------


class Listener:
    """``multiprocessing.connection.Listener``: listens at ``address`` — a Unix socket path
    (str; a leading NUL byte names the abstract namespace), or a ``(host, port)`` tuple (port 0
    picks a free port: see ``address``). None: a new socket path in a temporary directory (or
    ``('localhost', 0)`` with ``family='AF_INET'``). ``backlog`` is accepted for compatibility
    (weft uses the system's). With ``authkey`` every client must hold the same key (and the
    listener proves it holds it)."""

    def __init__(self, address=None, family=None, backlog=1, authkey=None):
        family = family or (address and _address_type(address)) or _default_family
        _validate_family(family)
        address = address or _mpc.arbitrary_address("AF_INET" if family == "AF_INET6" else family)
        if authkey is not None and not isinstance(authkey, bytes):
            raise TypeError("authkey should be a byte string")
        key, keylen = _authkey_arg(authkey)
        out = ffi.new("weft_listener **")
        st = lib.weft_listener_new(_to_weft(address, family), key, keylen, out)
        if st != _OK:
            raise _address_error(st, address)
        self._ptr = managed("listener", out[0], lib.weft_listener_free)
        self._family = family
        self._authkey = authkey
        self._address = _from_weft(ffi.string(lib.weft_listener_address(self._ptr)).decode("utf-8", "surrogateescape"))
        self._lock = threading.Lock()
        self._busy = 0
        self._closing = False
        self.last_accepted = None

    def accept(self, timeout=None):
        """Accepts the next client and returns its Connection (waits for it; ``timeout``
        seconds, a weft extension: TimeoutError after). With an authkey,
        ``multiprocessing.AuthenticationError`` for a client with another key (the listener
        keeps working). OSError("listener is closed") after ``close()``."""
        with self._lock:
            if self._ptr is None or self._closing:
                raise OSError("listener is closed")
            self._busy += 1
            ptr = self._ptr
        try:
            out = ffi.new("weft_connection **")
            st = lib.weft_listener_accept(ptr, _poll_timeout(timeout) if timeout is not None else FOREVER, out)
        finally:
            self._leave()
        if st == _OK:
            return Connection._from_ptr(out[0])
        if st == _AUTH_FAILED:
            raise _auth_error()
        if st in (_TIMEOUT, _WOULD_BLOCK):
            raise TimeoutError("no client connected in time")
        if st == _CLOSED:
            raise ConnectionResetError(_errno.ECONNRESET, "the client left during the handshake")
        raise _os_error_for(st)

    def _leave(self):
        with self._lock:
            self._busy -= 1
            free = self._closing and self._busy == 0
        if free:
            self._free()

    def _free(self):
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            # Run the destructor now (closes the socket, removes the socket file).
            ffi.release(ptr)

    def close(self):
        """Closes the listening socket (and removes its socket file). Connections it accepted
        stay open. An ``accept`` in progress in another thread finishes first."""
        with self._lock:
            if self._ptr is None or self._closing:
                return
            self._closing = True
            free = self._busy == 0
        if free:
            self._free()

    @property
    def address(self):
        """The address clients connect to: the socket path, or ``(host, port)`` with the
        actual port."""
        return self._address

    def fileno(self) -> int:
        """The listening socket's descriptor (readable when a client waits)."""
        if self._ptr is None or self._closing:
            raise OSError("listener is closed")
        return int(lib.weft_listener_fd(self._ptr))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __repr__(self):
        return f"<weft.connection.Listener address={self._address!r}{' closed' if self._ptr is None else ''}>"


def Client(address, family=None, authkey=None, *, timeout=None):
    """``multiprocessing.connection.Client``: connects to the Listener at ``address`` and
    returns a Connection. With ``authkey`` both sides prove they hold it:
    ``multiprocessing.AuthenticationError`` otherwise. Nothing listening: FileNotFoundError or
    ConnectionRefusedError, as CPython. ``timeout`` (seconds; a weft extension) bounds the
    connection and the handshake (TimeoutError)."""
    family = family or _address_type(address)
    _validate_family(family)
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError("authkey should be a byte string")
    key, keylen = _authkey_arg(authkey)
    out = ffi.new("weft_connection **")
    st = lib.weft_client_connect(_to_weft(address, family), key, keylen,
                                 FOREVER if timeout is None else max(1, _poll_timeout(timeout)), out)
    if st == _OK:
        return Connection._from_ptr(out[0])
    if st == _AUTH_FAILED:
        raise _auth_error()
    if st in (_TIMEOUT, _WOULD_BLOCK):
        raise TimeoutError("could not connect in time")
    if st == _CLOSED:
        raise ConnectionResetError(_errno.ECONNRESET, "the listener closed the connection during the handshake")
    err = lib.weft_last_error_errno()
    if err:
        raise _os_error_for(st)
    if st == _NOT_FOUND:
        if isinstance(address, tuple):
            raise ConnectionRefusedError(_errno.ECONNREFUSED, os.strerror(_errno.ECONNREFUSED))
        raise FileNotFoundError(_errno.ENOENT, os.strerror(_errno.ENOENT))
    raise _os_error_for(st)
