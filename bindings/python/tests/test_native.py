"""The binding's view of the C library: header parsing, symbols, versions, status mapping."""

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import weft
from weft import _native
from weft._errors import WeftError, error_for

BINDING_DIR = Path(weft.__file__).resolve().parent.parent


def header_functions(text):
    """Function names declared in the header, read independently of the binding's parser:
    declarations start at column 0 with a return type (comment lines start with ' *')."""
    return re.findall(r"^(?!typedef\b)[A-Za-z_][\w \t]*[\s\*](weft_\w+)\(", text, re.M)


def test_header_is_the_generated_one():
    assert weft.HEADER_PATH.name == "weft.h"
    assert "GENERATED" in weft.HEADER_PATH.read_text()


def test_every_header_function_is_in_the_library():
    names = header_functions(weft.HEADER_PATH.read_text())
    assert len(names) > 50, names
    assert sorted(names) == sorted(_native.FUNCTIONS)
    missing = []
    for name in names:
        try:
            fn = getattr(weft.lib, name)  # dlsym
        except AttributeError:
            missing.append(name)
            continue
        assert callable(fn)
    assert not missing, f"declared in weft.h but not exported by {weft.LIBRARY_PATH}: {missing}"


def test_version_matches_header():
    header_version = _native.STRING_CONSTANTS["WEFT_VERSION_STRING"]
    assert weft.version() == header_version == weft.__version__
    assert weft.lib.weft_version_number() == _native.CONSTANTS["WEFT_VERSION_NUMBER"]
    major, minor, patch = (int(x) for x in header_version.split("."))
    assert _native.CONSTANTS["WEFT_VERSION_NUMBER"] == major * 10000 + minor * 100 + patch


def test_constants():
    assert weft.FOREVER == weft.lib.WEFT_FOREVER == 2**64 - 1
    assert weft.lib.WEFT_OK == 0
    statuses = {k: v for k, v in _native.CONSTANTS.items() if re.fullmatch(r"WEFT_[A-Z_]+", k)}
    statuses = {k: v for k, v in statuses.items() if k not in ("WEFT_FOREVER", "WEFT_THREAD_OS_NAME_MAX", "WEFT_TOKEN_MAX")}
    # Constants that are not statuses: versions, stdio modes, run flags, start methods, queue
    # kinds, future states and wait modes.
    not_status = ("WEFT_VERSION", "WEFT_STDIO_", "WEFT_RUN_", "WEFT_START_", "WEFT_QUEUE_", "WEFT_FUTURE_", "WEFT_POOL_", "WEFT_IMAP_",
                  "WEFT_ALL_COMPLETED", "WEFT_FIRST_")
    statuses = {k: v for k, v in statuses.items() if not k.startswith(not_status)}
    assert len(statuses) >= 22
    for name, value in statuses.items():
        # The header's names and the library's table agree.
        assert weft.status_name(value) == name
        assert weft.status_str(value)
    assert weft.status_name(10_000) == "WEFT_UNKNOWN_STATUS"


def test_sanitize_header_handles_guards_and_macros():
    text = r'''
    /* comment with "quotes" and #define inside */
    #ifndef X_H
    #define X_H
    #include <stdint.h>
    #define A 0x10u
    #define B (A * 2 + 1)   // trailing comment
    #define C UINT64_MAX
    #define D ((uint32_t)7)
    #define NAME "a \"b\""
    #define FN(x) ((x) + 1)
    #ifdef __cplusplus
    extern "C" {
    #endif
    typedef struct thing thing;
    int thing_new(const char *name, thing **out);
    #if defined(__cplusplus)
    }
    #else
    void c_only(void);
    #endif
    #ifdef __cplusplus
    }  // extern "C"
    #endif
    #endif
    '''
    cdef, ints, strings = _native.sanitize_header(text)
    assert ints == {"A": 16, "B": 33, "C": 2**64 - 1, "D": 7}
    assert strings == {"NAME": 'a "b"'}
    assert "#include" not in cdef and "extern" not in cdef and "__cplusplus" not in cdef
    assert "c_only" in cdef and "FN" not in cdef
    assert _native.declared_functions(cdef) == ["thing_new", "c_only"]
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)  # parses


def test_extern_c_without_preprocessor_guard_is_removed():
    cdef, _, _ = _native.sanitize_header('extern "C" {\nint f(void);\n}\nstruct s { int a; };\n')
    assert "extern" not in cdef
    assert cdef.count("{") == cdef.count("}") == 1


def test_weft_error_for_unexpected_status():
    st = weft.lib.weft_lock_acquire(weft.ffi.NULL, 0)
    assert st == weft.lib.WEFT_NULL_ARGUMENT
    err = error_for(st)
    assert type(err) is WeftError
    assert err.status == st and err.name == "WEFT_NULL_ARGUMENT"
    assert err.message == weft.last_error_message() != ""
    assert "WEFT_NULL_ARGUMENT" in str(err)
    assert isinstance(err, Exception) and not isinstance(err, RuntimeError)


def test_error_mapping_table():
    lib = weft.lib
    assert type(error_for(lib.WEFT_NOT_OWNER)) is RuntimeError
    assert type(error_for(lib.WEFT_INVALID_STATE)) is RuntimeError
    assert type(error_for(lib.WEFT_INVALID_ARGUMENT)) is ValueError
    assert type(error_for(lib.WEFT_NO_MEMORY)) is MemoryError
    assert type(error_for(lib.WEFT_BROKEN)) is threading.BrokenBarrierError
    assert type(error_for(lib.WEFT_PANIC)) is WeftError
    assert type(error_for(lib.WEFT_CANCELLED)) is WeftError
    e = error_for(lib.WEFT_INVALID_STATE, {lib.WEFT_INVALID_STATE: (ValueError, "custom")})
    assert type(e) is ValueError and str(e) == "custom"
    assert weft.BrokenBarrierError is threading.BrokenBarrierError


def _import_weft(env_updates, code="import weft; print(weft.HEADER_PATH); print(weft.LIBRARY_PATH)"):
    env = {k: v for k, v in os.environ.items() if k not in ("WEFT_HEADER", "WEFT_LIBRARY")}
    env["PYTHONPATH"] = str(BINDING_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_updates)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_header_and_library_from_environment(tmp_path):
    header = tmp_path / "weft.h"
    header.write_text(weft.HEADER_PATH.read_text())
    libdir = Path(weft.LIBRARY_PATH).parent
    r = _import_weft({"WEFT_HEADER": str(header), "WEFT_LIBRARY": str(libdir)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(header), str(libdir / "libweft.so")]


def test_missing_header_or_library_is_a_clear_import_error(tmp_path):
    r = _import_weft({"WEFT_HEADER": str(tmp_path / "nope.h")})
    assert r.returncode != 0 and "ImportError" in r.stderr and "WEFT_HEADER" in r.stderr
    r = _import_weft({"WEFT_LIBRARY": str(tmp_path / "libnope.so")})
    assert r.returncode != 0 and "ImportError" in r.stderr and "WEFT_LIBRARY" in r.stderr


def test_header_library_version_mismatch_is_refused(tmp_path):
    header = tmp_path / "weft.h"
    text = weft.HEADER_PATH.read_text()
    text = re.sub(r'#define WEFT_VERSION_STRING "[^"]*"', '#define WEFT_VERSION_STRING "99.0.0"', text)
    header.write_text(text)
    r = _import_weft({"WEFT_HEADER": str(header), "WEFT_LIBRARY": weft.LIBRARY_PATH})
    assert r.returncode != 0 and "ImportError" in r.stderr and "99.0.0" in r.stderr


def test_default_lookup_uses_the_repository_header_and_build():
    repo = BINDING_DIR.parent.parent
    r = _import_weft({})
    assert r.returncode == 0, r.stderr
    header, library = r.stdout.split()
    assert Path(header) == repo / "include" / "weft.h"
    candidates = [
        repo / "target" / "cdylib" / "release" / "libweft.so",
        repo / "target" / "release" / "libweft.so",
        repo / "target" / "debug" / "libweft.so",
    ]
    expected = next(p for p in candidates if p.is_file())
    assert Path(library) == expected
