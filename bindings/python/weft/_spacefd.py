"""Passing an anonymous space to a spawn or forkserver child.

A child started by multiprocessing's spawn or forkserver method is a fresh interpreter that
does not have its parent's default space (an anonymous mapping). A shared object pickled for
such a child therefore carries the space's descriptor too (``multiprocessing.reduction.DupFd``:
passed with the child's start), and the child attaches the space from it before opening the
object's token. Named spaces need nothing: their tokens carry the name. Forked children inherit
the mapping, and pickling outside a child's start passes no descriptor.
"""

import os
import weakref
from multiprocessing import context as _mp_context
from multiprocessing import reduction as _mp_reduction

from .spaces import Space

_default = None  # (pid, Space): a handle on the default space, for its descriptor
_attached = {}  # space uid (token bytes 16..24) -> Space attached from a parent's descriptor
_dupfds = weakref.WeakKeyDictionary()  # spawning Popen -> {fd: DupFd}: one DupFd per fd


def _default_space():
    global _default
    pid = os.getpid()
    if _default is None or _default[0] != pid:
        _default = (pid, Space.default())
    return _default[1]


def _anonymous_uid(token):
    """The space uid of a token for an object in an anonymous space; None for a named space
    (the token carries the name) or a token format this binding does not know."""
    if len(token) >= 40 and token[:4] == b"wftk" and token[4] == 1 and token[5] == 0:
        return token[16:24]
    return None


def for_child(space, token):
    """A DupFd of the anonymous space the object ``token`` designates lives in (``space``: the
    Space the object was made in, None for the default one), when the object is being pickled
    for the start of a spawn or forkserver child; else None."""
    popen = _mp_context.get_spawning_popen()
    if popen is None:
        return None
    uid = _anonymous_uid(token)
    if uid is None:
        return None
    if space is None or space.closed or space.name is not None:
        space = _attached.get(uid) or _default_space()
    fd = space.fd
    memo = _dupfds.get(popen)
    if memo is None:
        memo = _dupfds[popen] = {}
    df = memo.get(fd)
    if df is None:
        df = memo[fd] = _mp_reduction.DupFd(fd)
    return df


def attach(token, dupfd):
    """In the child: the space ``dupfd`` (from :func:`for_child`) passes, attached once per
    space and kept for the life of the process."""
    uid = _anonymous_uid(token)
    space = _attached.get(uid)
    if space is None:
        fd = dupfd.detach()
        try:
            space = Space.from_fd(fd)
        finally:
            os.close(fd)
        _attached[uid] = space
    return space
