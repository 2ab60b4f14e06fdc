"""Extraction: from a submitted notebook, the answer code only.

The rule (the notebooks state it to students in one paragraph). Kept, at the top level of a
code cell:

- imports (``import x``, ``from x import y``);
- ``def``, ``async def`` and ``class`` statements, with their decorators;
- ``if`` and ``try`` blocks made only of kept statements (an ``if``'s condition follows the
  rule for values below);
- assignments, plain or annotated, to a name or a tuple of names, whose value reads only
  names that built-ins or kept statements before it define, and contains no call except
  lambdas (a lambda's body may call anything; its default values may not) and calls of these
  builders of small values: ``tuple``, ``list``, ``dict``, ``set``, ``frozenset``, ``int``,
  ``float``, ``str``, ``bool``, ``range``, ``slice``, ``functools.partial`` (or ``partial``),
  and NumPy's ``array``, ``asarray``, ``float32``, ``float64``, ``int32``, ``int64``,
  ``zeros``, ``ones``, ``full``, ``eye``, ``arange``, ``linspace`` (as ``np.X`` or
  ``numpy.X``). Comprehensions over such values are values too.

Dropped: everything else at top level (expression statements, loops, other calls such as
``model.fit``, plots, prints, augmented assignments), IPython magics (a ``%%`` cell magic drops
its whole cell) and shell escapes, and the course's own test cells. A syntax error is
reported with the cell and line.

The work is bounded before any of it is done: a notebook file is read only when it is a
regular file (never a link, folder or FIFO) under :data:`MAX_NOTEBOOK_BYTES`; its JSON may nest
:data:`MAX_JSON_DEPTH` levels; at most :data:`MAX_CODE_BYTES` of code are looked at; magic and
shell lines are blanked by a cheap line filter, and IPython's own transforms (slow on long
cells) run only on cells that still do not parse and are under :data:`MAX_TRANSFORM_LINES`
lines. Extraction may be given a deadline, so that it counts against the submission's time.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# nbformat's validator imports jsonschema, whose format checkers import rfc3987_syntax when it is
# installed (nbformat's jsonschema[format-nongpl] installs it); that module compiles some 35 Lark
# grammars at import, about 2 s of every checking process, for the "iri" formats that no
# notebook schema uses (python-jsonschema/jsonschema#1428). A None entry makes that optional
# import fail, as if the package were absent; a process that already imported it keeps it.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import nbformat  # noqa: E402

from grader._fsutil import NotRegularFile, TooLarge, read_regular_file  # noqa: E402
from grader.errors import NotebookUnreadable  # noqa: E402

MAX_NOTEBOOK_BYTES = 50 * 2**20
MAX_JSON_DEPTH = 64
"""Jupyter writes notebooks some 6 levels deep; widget state in metadata adds a few more."""
MAX_CODE_BYTES = 4 * 2**20
"""Code looked at per notebook; cells after this much are skipped, with a message."""
MAX_TRANSFORM_LINES = 400
"""IPython's transforms run only on cells up to this long (they cost seconds on long cells)."""
MAX_TRANSFORM_BYTES = 64 * 2**10

BUILDERS = frozenset({"tuple", "list", "dict", "set", "frozenset", "int", "float", "str", "bool",
                      "range", "slice", "partial", "functools.partial"})
NUMPY_BUILDERS = frozenset({"array", "asarray", "float32", "float64", "int32", "int64", "zeros",
                            "ones", "full", "eye", "arange", "linspace"})
BUILDERS |= {f"{module}.{name}" for module in ("np", "numpy") for name in NUMPY_BUILDERS}

_FIX_SAVE = "open it in JupyterLab, save it (File → Save Notebook) and submit the saved .ipynb"


@dataclass(frozen=True)
class CodeCell:
    index: int
    """1-based position of the cell in the notebook (markdown cells count)."""
    source: str
    """The cell's kept statements, with line numbers preserved (dropped lines are blank)."""


@dataclass
class Extracted:
    cells: list[CodeCell] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    """Problems a student should know about (syntax errors with cell and line)."""
    seconds: float = 0.0
    """Time extraction took (it counts against the submission's time)."""


# ------------------------------------------------------------------------------ the rule

def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__doc__", "__builtins__"}


class _Scope:
    """Names that kept statements have bound so far (None once a ``from x import *`` is kept)."""

    def __init__(self) -> None:
        self.names: set[str] | None = set(_BUILTINS)

    def knows_all(self, node: ast.AST) -> bool:
        if self.names is None:
            return True
        local = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
                 and not isinstance(n.ctx, ast.Load)}
        loads: list[ast.AST] = [node]
        while loads:
            sub = loads.pop()
            if isinstance(sub, ast.Lambda):  # its body runs later, when everything is defined
                loads += [*sub.args.defaults, *(d for d in sub.args.kw_defaults if d)]
                continue
            if (isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)
                    and sub.id not in self.names and sub.id not in local):
                return False
            loads += ast.iter_child_nodes(sub)
        return True

    def bind(self, stmt: ast.stmt) -> None:
        if self.names is None:
            return
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            for alias in stmt.names:
                if alias.name == "*":
                    self.names = None
                    return
                self.names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            self.names.add(stmt.name)
        else:
            targets = (stmt.targets if isinstance(stmt, ast.Assign)
                       else [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
            self.names.update(n.id for t in targets for n in ast.walk(t)
                              if isinstance(n, ast.Name))


def _is_value(node: ast.AST) -> bool:
    """True when ``node`` calls nothing but the builders, lambdas aside (their bodies are not
    run at definition; their defaults are)."""
    pending: list[ast.AST] = [node]
    while pending:
        sub = pending.pop()
        if isinstance(sub, ast.Lambda):
            pending += [*sub.args.defaults, *(d for d in sub.args.kw_defaults if d is not None)]
            continue
        if isinstance(sub, ast.Await | ast.Yield | ast.YieldFrom | ast.NamedExpr):
            return False
        if isinstance(sub, ast.Call) and _dotted(sub.func) not in BUILDERS:
            return False
        pending += ast.iter_child_nodes(sub)
    return True


def _is_target(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return True
    return isinstance(node, ast.Tuple | ast.List) and all(_is_target(e) for e in node.elts)


def _value(node: ast.AST, scope: _Scope) -> bool:
    return _is_value(node) and scope.knows_all(node)


def is_kept(stmt: ast.stmt, scope: _Scope | None = None) -> bool:
    """Whether extraction keeps this top-level statement (the rule in the module docstring),
    given the names kept statements before it bound (``scope``, updated when kept)."""
    scope = scope if scope is not None else _Scope()
    if isinstance(stmt, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef
                  | ast.ClassDef):
        kept = True
    elif isinstance(stmt, ast.Assign):
        kept = all(_is_target(t) for t in stmt.targets) and _value(stmt.value, scope)
    elif isinstance(stmt, ast.AnnAssign):
        kept = (isinstance(stmt.target, ast.Name) and _value(stmt.annotation, scope)
                and (stmt.value is None or _value(stmt.value, scope)))
    elif isinstance(stmt, ast.If | ast.Try):
        inner = _Scope()  # a block's names count only when the whole block is kept
        inner.names = None if scope.names is None else set(scope.names)
        if isinstance(stmt, ast.If):
            heads: list[ast.expr] = [stmt.test]
            body = [*stmt.body, *stmt.orelse]
        else:
            heads = [h.type for h in stmt.handlers if h.type is not None]
            body = [*stmt.body, *(s for h in stmt.handlers for s in h.body), *stmt.orelse,
                    *stmt.finalbody]
        if all(_value(h, scope) for h in heads) and all(is_kept(s, inner) for s in body):
            scope.names = inner.names
            return True
        return False
    else:
        kept = False
    if kept:
        scope.bind(stmt)
    return kept


def _keep_lines(source: str, tree: ast.Module, scope: _Scope) -> str:
    lines = source.splitlines()
    keep = [False] * len(lines)
    for stmt in tree.body:
        if is_kept(stmt, scope):
            start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
            end = stmt.end_lineno or stmt.lineno
            for i in range(start - 1, min(end, len(lines))):
                keep[i] = True
    return "\n".join(line if k else "" for line, k in zip(lines, keep, strict=True))


# ------------------------------------------------------------------------------ magics

_MAGIC = re.compile(r"[ \t]*(?:[%!]|[A-Za-z_][\w \t,.]*=[ \t]*[%!])")


def _without_magics(source: str) -> tuple[str, set[int]]:
    """Each magic or shell line (and its ``\\`` continuations) as ``pass``, at its indentation,
    so that line numbers and blocks survive; and the 1-based numbers of the lines replaced."""
    lines = source.split("\n")
    replaced: set[int] = set()
    continuing = False
    for number, line in enumerate(lines):
        if continuing or _MAGIC.match(line):
            indent = line[: len(line) - len(line.lstrip())]
            lines[number] = "" if continuing else f"{indent}pass"
            replaced.add(number + 1)
            continuing = line.rstrip().endswith("\\")
    return "\n".join(lines), replaced


def _string_lines(tree: ast.Module) -> set[int]:
    """Lines inside multi-line string literals (after their first line)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            end = node.end_lineno or node.lineno
            inside.update(range(node.lineno + 1, end + 1))
    return inside


def _as_python(source: str) -> tuple[str, ast.Module]:
    """The cell as Python and its tree; raises SyntaxError (of the untransformed cell)."""
    try:
        return source, ast.parse(source)
    except SyntaxError as error:
        first = error
    filtered, replaced = _without_magics(source)
    try:
        tree = ast.parse(filtered)
    except SyntaxError:
        pass
    else:
        restore = replaced & _string_lines(tree)
        if not restore:
            return filtered, tree
        original, lines = source.split("\n"), filtered.split("\n")
        for number in restore:  # a string's own lines that merely looked like magics
            lines[number - 1] = original[number - 1]
        try:
            return "\n".join(lines), ast.parse("\n".join(lines))
        except SyntaxError:
            pass
    if source.count("\n") < MAX_TRANSFORM_LINES and len(source) < MAX_TRANSFORM_BYTES:
        from IPython.core.inputtransformer2 import TransformerManager

        try:
            python = TransformerManager().transform_cell(source)
            return python, ast.parse(python)
        except Exception:  # noqa: BLE001, S110 - IPython chokes on some broken input
            pass
    raise first


# ------------------------------------------------------------------------------ extraction

def _extract(cells: Iterable[tuple[int, str]], deadline: float | None) -> Extracted:
    started = time.monotonic()
    out = Extracted()
    budget = MAX_CODE_BYTES
    scope = _Scope()
    for index, source in cells:
        if not source.strip() or source.lstrip().startswith("%%"):
            continue
        budget -= len(source)
        if budget < 0:
            out.messages.append(
                f"cell {index} and the cells after it were not read: the notebook holds more "
                f"than {MAX_CODE_BYTES // 2**20} MB of code; expected the assignment's cells — "
                "remove pasted data or generated code from the notebook")
            break
        if deadline is not None and time.monotonic() > deadline:
            out.messages.append(
                f"cell {index} and the cells after it were not read: reading the notebook ran "
                "out of the submission's time — remove very long cells from the notebook")
            break
        try:
            python, tree = _as_python(source)
        except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
            line = getattr(exc, "lineno", None)
            message = getattr(exc, "msg", None) or str(exc)
            out.messages.append(
                f"syntax error in cell {index}, line {line}: {message} — this cell was "
                "skipped, so the functions it defines are missing; fix it and run the cell")
            continue
        kept = _keep_lines(python, tree, scope)
        if kept.strip():
            out.cells.append(CodeCell(index=index, source=kept))
    out.seconds = round(time.monotonic() - started, 3)
    return out


def _is_test_cell(cell: Any) -> bool:
    metadata = cell.get("metadata", {})
    meta = metadata.get("nbgrader", {}) if isinstance(metadata, dict) else {}
    return isinstance(meta, dict) and bool(meta.get("grade")) and not meta.get("solution")


def extract_answer_code(nb: nbformat.NotebookNode, *, deadline: float | None = None
                        ) -> Extracted:
    """The kept statements of every code cell, in order (the course's test cells skipped).

    ``deadline`` (a ``time.monotonic()`` value) stops extraction with a message when passed."""
    def code_cells() -> Iterable[tuple[int, str]]:
        for index, cell in enumerate(nb.cells, start=1):
            if cell.get("cell_type") != "code" or _is_test_cell(cell):
                continue
            source = cell.get("source", "")
            if isinstance(source, list):
                source = "".join(s for s in source if isinstance(s, str))
            if isinstance(source, str):
                yield index, source

    return _extract(code_cells(), deadline)


def extract_sources(sources: Sequence[str], *, deadline: float | None = None) -> Extracted:
    """What :func:`extract_answer_code` keeps from code given as cell sources (numbered from 1),
    e.g. the cells a kernel has executed: the in-notebook checks run on exactly this."""
    return _extract(enumerate(sources, start=1), deadline)


# ------------------------------------------------------------------------------ reading

def _unreadable(message: str) -> NotebookUnreadable:
    return NotebookUnreadable(message)


def _depth_exceeds(value: Any, limit: int) -> bool:
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            pending += [(v, depth + 1) for v in item.values() if isinstance(v, dict | list)]
        elif isinstance(item, list):
            pending += [(v, depth + 1) for v in item if isinstance(v, dict | list)]
    return False


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _read_bytes(path: Path) -> bytes:
    name = path.name
    try:
        return read_regular_file(path, MAX_NOTEBOOK_BYTES)
    except NotRegularFile as exc:
        what = ("the notebook file itself, not a link to it" if exc.found == "a symbolic link"
                else "the .ipynb file saved by Jupyter")
        raise _unreadable(f"{name} is {exc.found}; expected a notebook file — submit {what}"
                          ) from None
    except TooLarge as exc:
        raise _unreadable(
            f"{name} is {exc.size / 2**20:.0f} MB; expected a notebook under "
            f"{MAX_NOTEBOOK_BYTES // 2**20} MB — clear the outputs (Edit → Clear Outputs of All "
            "Cells) and submit again") from None
    except OSError as exc:
        raise _unreadable(f"cannot read {name}: {exc.strerror}; expected a readable notebook "
                          "file — submit the .ipynb file saved by Jupyter") from None


def _parse(path: Path, data: bytes) -> Any:
    name = path.name
    if not data.strip():
        raise _unreadable(f"{name} is empty; expected a Jupyter notebook — {_FIX_SAVE} file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _unreadable(
            f"{name} is not a Jupyter notebook: expected UTF-8 JSON text, found a byte that is "
            f"not UTF-8 at position {exc.start} — submit the .ipynb file saved by Jupyter"
        ) from None
    try:
        raw = json.loads(text)
    except RecursionError:
        raw = None
        deep = True
    except ValueError as exc:
        raise _unreadable(
            f"{name} is not a Jupyter notebook: expected JSON, found a file that does not "
            f"parse ({exc}) — submit the .ipynb file saved by Jupyter") from None
    else:
        deep = _depth_exceeds(raw, MAX_JSON_DEPTH)
    if deep:
        raise _unreadable(
            f"{name} is not a notebook this grader can read: expected JSON nested at most "
            f"{MAX_JSON_DEPTH} levels deep, found deeper nesting — {_FIX_SAVE} file")
    return raw


def _check_structure(name: str, raw: Any) -> None:
    if not isinstance(raw, dict):
        raise _unreadable(f"{name} is not a Jupyter notebook: expected an object with 'cells', "
                          f"found a JSON {type(raw).__name__}")
    version = raw.get("nbformat")
    if version != 4:
        found = repr(version) if version is not None else "none"
        if version is None and "cells" not in raw:
            raise _unreadable(f"{name} is not a Jupyter notebook: expected an object with "
                              "'cells', found no 'cells' list")
        raise _unreadable(f"{name} has nbformat {found}; expected version 4 — {_FIX_SAVE} "
                          "file (JupyterLab converts older notebooks when it saves them)")
    cells = raw.get("cells")
    if not isinstance(cells, list):
        raise _unreadable(f"{name} is not a Jupyter notebook: expected 'cells' to be a list, "
                          f"found {_json_kind(cells)}")
    for number, cell in enumerate(cells, start=1):
        where = f"{name}, cell {number}"
        fix = ("re-create that cell in JupyterLab (or copy it from the released notebook), "
               "save and submit again")
        if not isinstance(cell, dict):
            raise _unreadable(f"{where}: expected an object, found {_json_kind(cell)} — {fix}")
        if not isinstance(cell.get("cell_type"), str):
            raise _unreadable(f"{where}: expected a 'cell_type' text, found "
                              f"{_json_kind(cell.get('cell_type'))} — {fix}")
        source = cell.get("source", "")
        if not (isinstance(source, str)
                or isinstance(source, list) and all(isinstance(s, str) for s in source)):
            raise _unreadable(f"{where}: expected 'source' to be text or a list of lines, found "
                              f"{_json_kind(source)} — {fix}")
        metadata = cell.get("metadata", {})
        if not isinstance(metadata, dict):
            raise _unreadable(f"{where}: expected 'metadata' to be an object, found "
                              f"{_json_kind(metadata)} — {fix}")
        nbgrader = metadata.get("nbgrader", {})
        if not isinstance(nbgrader, dict):
            raise _unreadable(f"{where}: expected its nbgrader metadata to be an object, found "
                              f"{_json_kind(nbgrader)} — {fix}")


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a submitted notebook; every way it can be broken is the student's clear error."""
    raw = _parse(path, _read_bytes(path))
    _check_structure(path.name, raw)
    try:
        nb = nbformat.from_dict(raw)
        for cell in nb.cells:
            if isinstance(cell.get("source"), list):
                cell["source"] = "".join(cell["source"])
    except Exception as exc:  # noqa: BLE001 - any malformed structure is the same user error
        raise _unreadable(f"{path.name}: malformed notebook structure ({exc}); expected a "
                          f"notebook saved by Jupyter — {_FIX_SAVE} file") from None
    if not any(c.get("cell_type") == "code" for c in nb.cells):
        raise _unreadable(f"{path.name} has no code cells; expected the assignment's cells")
    return nb
