"""weft status codes -> Python exceptions, in one place.

Every wrapper turns a status it does not treat as an ordinary outcome (``WEFT_TIMEOUT`` from an
acquire is ``False``, not an error) into an exception with :func:`error_for`. Statuses that
``threading`` has an exception for become that exception, with CPython's message where the
caller passes it; anything unexpected becomes :class:`WeftError`.
"""

from __future__ import annotations

import threading

from ._native import CONSTANTS, ffi, lib

__all__ = ["WeftError", "error_for", "status_name", "status_str", "last_error_message"]

# Status codes as module constants (WEFT_OK, WEFT_TIMEOUT, ...), straight from the header.
globals().update({k: v for k, v in CONSTANTS.items() if k.startswith("WEFT_")})
__all__ += [k for k in CONSTANTS if k.startswith("WEFT_")]

_status_name = lib.weft_status_name
_status_str = lib.weft_status_str
_last_error_message = lib.weft_last_error_message


def status_name(status: int) -> str:
    """The name of a status code, such as ``"WEFT_TIMEOUT"``."""
    return ffi.string(_status_name(status)).decode()


def status_str(status: int) -> str:
    """The one-line description of a status code."""
    return ffi.string(_status_str(status)).decode()


def last_error_message() -> str:
    """The detail of the last failed weft call on this thread ("" if none)."""
    return ffi.string(_last_error_message()).decode("utf-8", "replace")


class WeftError(Exception):
    """A weft call failed with a status the binding has no better exception for.

    ``status`` is the numeric code, ``name`` its name (``"WEFT_PANIC"``), ``message`` the
    library's detail (``weft_last_error_message()`` at the time of the failure).
    """

    def __init__(self, status: int, message: str | None = None):
        self.status = int(status)
        self.name = status_name(self.status)
        self.message = status_str(self.status) if not message else message
        super().__init__(self.status, self.message)

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


# Default exception class per status; CPython-compatible messages come from the caller.
_DEFAULT = {
    CONSTANTS["WEFT_NOT_OWNER"]: RuntimeError,
    CONSTANTS["WEFT_INVALID_STATE"]: RuntimeError,
    CONSTANTS["WEFT_INVALID_ARGUMENT"]: ValueError,
    CONSTANTS["WEFT_NO_MEMORY"]: MemoryError,
    CONSTANTS["WEFT_BROKEN"]: threading.BrokenBarrierError,
}


def error_for(status: int, overrides: dict | None = None) -> BaseException:
    """The exception for a failed call's ``status``.

    ``overrides`` maps a status to what the calling method raises for it, to match
    ``threading``: an exception class (instantiated with weft's message), or an
    ``(exception class, message)`` pair. Otherwise statuses with a standard meaning map to
    RuntimeError (not owner, invalid state), ValueError (invalid argument), MemoryError,
    threading.BrokenBarrierError; every other status to :class:`WeftError`.
    """
    message = last_error_message()
    spec = overrides.get(status) if overrides else None
    if spec is None:
        spec = _DEFAULT.get(status)
    if spec is None:
        return WeftError(status, message)
    if isinstance(spec, tuple):
        cls, text = spec
        return cls(text) if text is not None else cls()
    if spec is threading.BrokenBarrierError:
        return spec()
    return spec(message or status_str(status))
