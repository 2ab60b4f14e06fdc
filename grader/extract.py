"""Extraction: from a submitted notebook, the answer code only.

Kept: imports, function and class definitions, and assignments whose value calls nothing
(``num_classes = 10``, ``input_shape = (28, 28, 1)``). Dropped: everything else at top level
(training loops, ``model.fit``, plots, prints), IPython magics and shell escapes, and the
course's own test cells. A syntax error is reported with the cell and line.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

# nbformat's validator imports jsonschema, whose format checkers import rfc3987_syntax when it is
# installed (nbformat's jsonschema[format-nongpl] installs it); that module compiles some 35 Lark
# grammars at import, about 2 s of every checking process, for the "iri" formats that no
# notebook schema uses (python-jsonschema/jsonschema#1428). A None entry makes that optional
# import fail, as if the package were absent; a process that already imported it keeps it.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import nbformat  # noqa: E402
from IPython.core.inputtransformer2 import TransformerManager  # noqa: E402

from grader.errors import NotebookUnreadable  # noqa: E402

MAX_NOTEBOOK_BYTES = 50 * 2**20


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
    dropped: int = 0
    """How many top-level statements were dropped."""


def _keeps_nothing_running(node: ast.AST) -> bool:
    """True when evaluating ``node`` calls nothing (no calls, no lambdas, no comprehensions)."""
    forbidden = (ast.Call, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
                 ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr, ast.Subscript)
    return not any(isinstance(sub, forbidden) for sub in ast.walk(node))


def _is_definition(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef
                  | ast.ClassDef):
        return True
    if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        simple = all(isinstance(t, ast.Name | ast.Tuple) for t in targets)
        return simple and _keeps_nothing_running(stmt.value)
    if isinstance(stmt, ast.Try):
        # `try: import x / except ImportError: ...` guarded imports
        return all(_is_definition(s) for s in stmt.body)
    return False


def _is_test_cell(cell: nbformat.NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def _keep_lines(source: str, tree: ast.Module) -> str:
    lines = source.splitlines()
    keep = [False] * len(lines)
    for stmt in tree.body:
        if _is_definition(stmt):
            start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
            end = stmt.end_lineno or stmt.lineno
            for i in range(start - 1, end):
                keep[i] = True
    return "\n".join(line if k else "" for line, k in zip(lines, keep, strict=True))


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a submitted notebook; every way it can be broken is the student's clear error."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise NotebookUnreadable(f"cannot read {path.name}: {exc.strerror}") from None
    if size > MAX_NOTEBOOK_BYTES:
        raise NotebookUnreadable(
            f"{path.name} is {size / 2**20:.0f} MB; expected a notebook under "
            f"{MAX_NOTEBOOK_BYTES // 2**20} MB — clear the outputs (Edit → Clear Outputs of All "
            "Cells) and submit again"
        )
    try:
        raw = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotebookUnreadable(
            f"{path.name} is not a Jupyter notebook: expected JSON, found a file that does not "
            f"parse ({exc}) — submit the .ipynb file saved by Jupyter"
        ) from None
    if not isinstance(raw, dict) or "cells" not in raw:
        found = "no 'cells' list" if isinstance(raw, dict) else f"a JSON {type(raw).__name__}"
        raise NotebookUnreadable(
            f"{path.name} is not a Jupyter notebook: expected an object with 'cells', found {found}"
        )
    if raw.get("nbformat") != 4:
        raise NotebookUnreadable(
            f"{path.name} has nbformat {raw.get('nbformat')!r}; expected version 4 — open and "
            "save it with a current JupyterLab"
        )
    try:
        nb = nbformat.from_dict(raw)
        for cell in nb.cells:
            if isinstance(cell.get("source"), list):
                cell["source"] = "".join(cell["source"])
    except Exception as exc:  # noqa: BLE001 - any malformed structure is the same user error
        raise NotebookUnreadable(f"{path.name}: malformed notebook structure ({exc})") from None
    if not any(c.get("cell_type") == "code" for c in nb.cells):
        raise NotebookUnreadable(f"{path.name} has no code cells; expected the assignment's cells")
    return nb


def extract_answer_code(nb: nbformat.NotebookNode) -> Extracted:
    """The definitions of every code cell, in order."""
    out = Extracted()
    transformer = TransformerManager()
    for index, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code" or _is_test_cell(cell):
            continue
        source = cell.get("source", "")
        if not isinstance(source, str) or not source.strip():
            continue
        try:
            python = transformer.transform_cell(source)
        except Exception:  # noqa: BLE001 - IPython chokes on some broken input; parse it raw
            python = source
        try:
            tree = ast.parse(python)
        except SyntaxError as exc:
            out.messages.append(
                f"syntax error in cell {index}, line {exc.lineno}: {exc.msg} — this cell was "
                "skipped, so the functions it defines are missing; fix it and run the cell"
            )
            continue
        kept = _keep_lines(python, tree)
        out.dropped += sum(1 for s in tree.body if not _is_definition(s))
        if kept.strip():
            out.cells.append(CodeCell(index=index, source=kept))
    return out
