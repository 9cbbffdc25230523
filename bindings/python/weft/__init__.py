"""weft: Python's ``threading`` primitives backed by libweft, the native C-ABI library.

    import weft

    lock = weft.Lock()
    with lock:
        ...

``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Event``, ``Condition`` and
``Barrier`` are drop-in replacements for the classes of the same names in ``threading``: same
arguments, return values, exceptions and messages (``BrokenBarrierError`` is
``threading.BrokenBarrierError`` itself). Blocking calls release the GIL while they wait.

Native tasks (C functions ``weft_status task(weft_call *)``) run in child processes
(``weft.Process``), on pools of worker processes or threads (``weft.Pool``, ``weft.ThreadPool``,
as ``multiprocessing``'s) and behind futures (``weft.futures.ProcessPoolExecutor``,
``ThreadPoolExecutor``, as ``concurrent.futures``'); see those modules.

The declarations come from the generated header ``weft.h`` at import (see ``weft._native``):
set ``WEFT_HEADER`` and ``WEFT_LIBRARY`` to choose the header and ``libweft.so``.
"""

from ._native import FOREVER, HEADER_PATH, LIBRARY_PATH, ffi, lib
from ._errors import WeftError, last_error_message, status_name, status_str
from ._sync import (
    TIMEOUT_MAX,
    Barrier,
    BoundedSemaphore,
    BrokenBarrierError,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
)
from ._sync import __all__ as _sync_all

__all__ = [
    *_sync_all,
    "WeftError",
    "status_name",
    "status_str",
    "last_error_message",
    "version",
    "FOREVER",
    "HEADER_PATH",
    "LIBRARY_PATH",
    "ffi",
    "lib",
]


def version() -> str:
    """The version of the loaded libweft, such as ``"0.1.0"``."""
    return ffi.string(lib.weft_version()).decode()


__version__ = version()

# Process-shared objects (multiprocessing drop-ins), raw shared memory and spaces.
from . import multiprocessing, shared_memory, spaces  # noqa: E402
from . import connection, process, queue, subprocess  # noqa: E402
from .connection import Client, Connection, Listener, Pipe  # noqa: E402
from .process import (  # noqa: E402
    Process,
    TaskError,
    WorkerDiedError,
    cpu_count,
    current_process_name,
    get_start_method,
    parent_pid,
    set_start_method,
)
from .multiprocessing import NotRecoverableError, OwnerDeadError  # noqa: E402
from .shared_memory import SharedMemory  # noqa: E402
from .spaces import Space  # noqa: E402
from . import futures, pool  # noqa: E402
from .futures import ProcessPoolExecutor, ThreadPoolExecutor  # noqa: E402
from .pool import Pool, ThreadPool  # noqa: E402

# (The module names stay out of __all__: `from weft import *` must not rebind a program's
# own `multiprocessing`.)
__all__ += [
    "OwnerDeadError",
    "NotRecoverableError",
    "SharedMemory",
    "Space",
    "Process",
    "TaskError",
    "WorkerDiedError",
    "Pipe",
    "Connection",
    "Listener",
    "Client",
    "cpu_count",
    "current_process_name",
    "parent_pid",
    "get_start_method",
    "set_start_method",
    "Pool",
    "ThreadPool",
    "ThreadPoolExecutor",
    "ProcessPoolExecutor",
]
