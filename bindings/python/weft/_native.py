"""Loading libweft: the generated header is the one source of the declarations.

At import this module finds ``weft.h``, turns it into something ``cffi``'s ``cdef`` accepts
(no preprocessor, no ``extern "C"`` guard, ``#define`` constants evaluated to integers), declares
it, and opens ``libweft.so`` in ABI mode. Nothing here is written by hand from the header, so
the declarations cannot drift from it.

Header:  $WEFT_HEADER, else ``weft.h`` shipped inside this package, else the repository's
         ``include/weft.h`` (``bindings/python/weft/../../../include/weft.h``).
Library: $WEFT_LIBRARY, else ``libweft.so`` shipped inside this package, else the
         repository's ``target/cdylib/release``, ``target/release``, ``target/debug``, else the
         system's dynamic-linker search (``libweft.so``).
"""

from __future__ import annotations

import ast
import itertools
import operator
import os
import re
from pathlib import Path

import cffi

__all__ = [
    "ffi",
    "lib",
    "HEADER_PATH",
    "LIBRARY_PATH",
    "CONSTANTS",
    "STRING_CONSTANTS",
    "FUNCTIONS",
    "FOREVER",
    "sanitize_header",
    "find_header",
    "find_library",
]

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent.parent.parent

# Macros from <stdint.h>/<stddef.h> a generated header may use in a constant's value.
_KNOWN_MACROS = {
    "UINT8_MAX": 2**8 - 1,
    "UINT16_MAX": 2**16 - 1,
    "UINT32_MAX": 2**32 - 1,
    "UINT64_MAX": 2**64 - 1,
    "INT8_MAX": 2**7 - 1,
    "INT16_MAX": 2**15 - 1,
    "INT32_MAX": 2**31 - 1,
    "INT64_MAX": 2**63 - 1,
    "INT8_MIN": -(2**7),
    "INT16_MIN": -(2**15),
    "INT32_MIN": -(2**31),
    "INT64_MIN": -(2**63),
    "SIZE_MAX": 2**64 - 1,
    "true": 1,
    "false": 0,
}

_COMMENT_OR_STRING = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
_DEFINE = re.compile(r"#\s*define\s+([A-Za-z_]\w*)(\([^)]*\))?\s*(.*)$")
_INT_LITERAL = re.compile(r"\b(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)(?:[uU](?:ll|LL|l|L)?|(?:ll|LL|l|L)[uU]?)?\b")
_CAST = re.compile(r"\(\s*(?:const\s+)?(?:unsigned\s+|signed\s+)?(?:u?int(?:8|16|32|64|ptr)_t|size_t|ssize_t|weft_status|char|short|int|long(?:\s+long)?|unsigned|signed)\s*\)")
_EXTERN_C = re.compile(r'extern\s+"C(?:\+\+)?"\s*\{')

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.BitXor: operator.xor,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert}


def _eval_int(expr: str, known: dict) -> int | None:
    """Evaluates a C integer constant expression (literals with suffixes, casts, + - * / % << >>
    | & ^ ~, parentheses, names of known constants); None when it is anything else."""
    text = _CAST.sub("", expr.strip())
    if not text:
        return None

    def literal(m: re.Match) -> str:
        tok = m.group(1)
        if tok.startswith(("0x", "0X")):
            return str(int(tok, 16))
        if len(tok) > 1 and tok.startswith("0"):
            return str(int(tok, 8))
        return tok

    text = _INT_LITERAL.sub(literal, text)
    # C's integer division truncates; for the non-negative values of a header, // is the same.
    text = re.sub(r"(?<![/])/(?![/])", "//", text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name):
            if node.id in known:
                return known[node.id]
            raise ValueError(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        raise ValueError(ast.dump(node))

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError):
        return None


def _strip_comments(text: str) -> str:
    def repl(m: re.Match) -> str:
        s = m.group(0)
        if s.startswith("/*"):
            # Keep line structure so preprocessor lines stay on their own lines.
            return " " + "\n" * s.count("\n")
        if s.startswith("//"):
            return ""
        return s

    return _COMMENT_OR_STRING.sub(repl, text)


def _drop_unmatched_closing_braces(text: str) -> str:
    out = []
    depth = 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                continue  # the closer of a removed extern "C" {
            depth -= 1
        out.append(ch)
    return "".join(out)


def sanitize_header(text: str):
    """Turns the generated header into declarations cffi's ``cdef`` parses.

    Returns ``(cdef_text, int_constants, string_constants)``: preprocessor lines are removed
    (blocks under ``#ifdef __cplusplus`` entirely), the ``extern "C"`` guard goes, and every
    ``#define NAME <integer expression>`` becomes ``#define NAME <value>`` (evaluated here, with
    ``UINT64_MAX`` and friends known, so ``WEFT_FOREVER`` is 2**64 - 1); string macros are
    returned separately, other macros are dropped.
    """
    text = text.replace("\r\n", "\n")
    text = re.sub(r"\\\n", " ", text)  # line continuations
    text = _strip_comments(text)

    ints: dict[str, int] = {}
    strings: dict[str, str] = {}
    kept: list[str] = []
    defines: list[str] = []
    # Conditional blocks: (is the condition about __cplusplus, is this branch C++-only);
    # content is skipped while any open branch is C++-only. Others (include guards) are kept.
    stack: list[tuple[bool, bool]] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#"):
            directive = stripped[1:].strip()
            word = directive.split(None, 1)[0] if directive else ""
            if word in ("if", "ifdef", "ifndef", "elif"):
                cxx = "__cplusplus" in directive
                negated = word == "ifndef" or "!" in directive
                entry = (cxx, cxx and not negated)  # (about C++?, skip this branch?)
                if word == "elif":
                    if stack:
                        stack[-1] = entry
                else:
                    stack.append(entry)
                continue
            if word == "else":
                if stack and stack[-1][0]:
                    stack[-1] = (True, not stack[-1][1])
                continue
            if word == "endif":
                if stack:
                    stack.pop()
                continue
            if any(skip for _, skip in stack):
                continue
            if word == "define":
                m = _DEFINE.match("#" + directive)
                if m and not m.group(2):
                    name, value = m.group(1), m.group(3).strip()
                    if not value:
                        continue  # include guard
                    sm = re.fullmatch(r'"((?:\\.|[^"\\])*)"', value)
                    if sm:
                        strings[name] = ast.literal_eval('"' + sm.group(1) + '"')
                        continue
                    v = _eval_int(value, {**_KNOWN_MACROS, **ints})
                    if v is not None:
                        ints[name] = v
                        defines.append(f"#define {name} {v}")
            continue  # include, pragma, undef, error, ...
        if any(skip for _, skip in stack):
            continue
        kept.append(line)

    body = "\n".join(kept)
    body = _EXTERN_C.sub("", body)
    body = _drop_unmatched_closing_braces(body)
    body = re.sub(r"\n\s*\n+", "\n", body).strip() + "\n"
    return "\n".join(defines) + "\n" + body, ints, strings


def declared_functions(cdef_text: str) -> list[str]:
    """Names of the functions declared (not typedef'd) in sanitized header text."""
    names = []
    depth = 0
    stmt: list[str] = []
    for ch in cdef_text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == ";" and depth == 0:
            s = "".join(stmt).strip()
            stmt = []
            if not s or s.startswith("typedef") or s.startswith("#"):
                continue
            m = re.match(r"[\w\s\*]*?\b([A-Za-z_]\w*)\s*\(", s)
            if m:
                names.append(m.group(1))
            continue
        stmt.append(ch)
    return names


def find_header() -> Path:
    """The header to declare: $WEFT_HEADER, the package's copy, or the repository's."""
    env = os.environ.get("WEFT_HEADER")
    if env:
        p = Path(env)
        if not p.is_file():
            raise ImportError(f"weft: WEFT_HEADER={env!r} is not a file")
        return p
    candidates = [_PACKAGE_DIR / "weft.h", _REPO_ROOT / "include" / "weft.h"]
    for p in candidates:
        if p.is_file():
            return p
    raise ImportError(
        "weft: cannot find weft.h; set WEFT_HEADER to the generated header (tried: "
        + ", ".join(str(c) for c in candidates)
        + ")"
    )


def find_library() -> str:
    """The library to open: $WEFT_LIBRARY, the package's copy, the repository's build
    directories, or the bare name for the dynamic linker's search."""
    env = os.environ.get("WEFT_LIBRARY")
    if env:
        p = Path(env)
        if p.is_dir():
            p = p / "libweft.so"
        if not p.is_file():
            raise ImportError(f"weft: WEFT_LIBRARY={env!r} is not a library file")
        return str(p)
    candidates = [
        _PACKAGE_DIR / "libweft.so",
        _REPO_ROOT / "target" / "cdylib" / "release" / "libweft.so",
        _REPO_ROOT / "target" / "release" / "libweft.so",
        _REPO_ROOT / "target" / "debug" / "libweft.so",
    ]
    for p in candidates:
        if p.is_file():
            return str(p)
    return "libweft.so"


HEADER_PATH = find_header()
_CDEF, CONSTANTS, STRING_CONSTANTS = sanitize_header(HEADER_PATH.read_text(encoding="utf-8"))
FUNCTIONS = declared_functions(_CDEF)

ffi = cffi.FFI()
try:
    ffi.cdef(_CDEF)
except cffi.CDefError as e:  # pragma: no cover - would mean the header grew new syntax
    raise ImportError(f"weft: cffi cannot parse {HEADER_PATH}: {e}") from e

LIBRARY_PATH = find_library()
try:
    lib = ffi.dlopen(LIBRARY_PATH)
except OSError as e:
    raise ImportError(
        f"weft: cannot load {LIBRARY_PATH}: {e}. Build it with `cargo build --release` or set "
        "WEFT_LIBRARY to the path of libweft.so"
    ) from e

FOREVER = CONSTANTS.get("WEFT_FOREVER", 2**64 - 1)

_header_version = STRING_CONSTANTS.get("WEFT_VERSION_STRING")
_library_version = ffi.string(lib.weft_version()).decode()
if _header_version is not None and _header_version != _library_version:
    raise ImportError(
        f"weft: header {HEADER_PATH} is version {_header_version} but library {LIBRARY_PATH} "
        f"is version {_library_version}; point WEFT_HEADER/WEFT_LIBRARY at a matching pair"
    )


# Handle accounting: every C object created through the binding is counted when created and
# when its destructor runs, so tests can check each handle is freed exactly once. itertools
# counters advance atomically under the GIL, and take no lock, so a destructor run by the
# garbage collector at any point cannot deadlock on them.
_created: dict[str, itertools.count] = {}
_freed: dict[str, itertools.count] = {}


def _counter_value(c: itertools.count) -> int:
    return int(repr(c)[len("count("):-1])


def live_handles() -> dict[str, int]:
    """Number of C objects of each kind created by the binding and not yet freed."""
    return {k: _counter_value(_created[k]) - _counter_value(_freed[k]) for k in _created}


def managed(kind: str, ptr, free_fn, keepalive=None):
    """Ties the C object ``ptr`` to the returned cdata: ``free_fn`` runs exactly once, when the
    cdata is garbage-collected. ``keepalive`` (anything the C object calls back into, such as a
    barrier's action handle) is referenced by the destructor, so it outlives the C object."""
    created = _created.get(kind)
    if created is None:
        created = _created.setdefault(kind, itertools.count())
        _freed.setdefault(kind, itertools.count())
    freed = _freed[kind]
    next(created)

    def destroy(p, free_fn=free_fn, freed=freed, keepalive=keepalive):
        free_fn(p)
        next(freed)

    return ffi.gc(ptr, destroy)
