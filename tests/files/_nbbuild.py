"""What the notebook builders under ``tests/files/`` share: an assignment's released notebook
filled in with the reference solution, answer cells swapped for other code, stable cell ids.

The builders import it by its folder (``sys.path``), since ``tests/files`` is not a package.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]

_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)


@dataclass(frozen=True)
class Rewrite:
    """A notebook built from another by swapping answer cells: a sample mistake or variant
    (built from the reference), or an attack (from the reference or the release)."""

    assignment: str
    name: str
    """The notebook's file name, without ``.ipynb``."""
    loses: tuple[str, ...]
    """Functions that must lose points; every other function keeps the points of the notebook
    it is built from."""
    replace: dict[str, str]
    """Grade id (the function's name) → the new source of that answer cell."""
    extra_cell: str = ""
    """A code cell added after the first code cell (e.g. a forbidden import, or top-level
    code the grader must drop)."""


def answer_id(cell: nbformat.NotebookNode) -> str | None:
    """The grade id of an answer (solution) cell; None for any other cell."""
    meta = cell.metadata.get("nbgrader", {})
    return meta.get("grade_id") if meta.get("solution") else None


def released(assignment: str) -> nbformat.NotebookNode:
    """The notebook students get, as released under ``assignments/``."""
    return nbformat.read(ROOT / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)


def solutions(assignment: str) -> dict[str, str]:
    """Grade id → the reference solution's source of that answer cell (markers removed)."""
    master = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    return {str(answer_id(c)): _MARKERS.sub("", c.source) for c in master.cells if answer_id(c)}


def reference(assignment: str) -> nbformat.NotebookNode:
    """The released notebook with every answer cell filled in with the reference solution."""
    answers = solutions(assignment)
    nb = released(assignment)
    for cell in nb.cells:
        if answer_id(cell) in answers:
            cell.source = answers[answer_id(cell)]
    return nb


def rewritten(nb: nbformat.NotebookNode, rewrite: Rewrite) -> nbformat.NotebookNode:
    """``nb`` with ``rewrite`` applied."""
    return replace_answers(nb, rewrite.replace, rewrite.extra_cell, rewrite.name)


def replace_answers(nb: nbformat.NotebookNode, replace: dict[str, str], extra_cell: str,
                    name: str) -> nbformat.NotebookNode:
    """Swap the answer cells named in ``replace`` (by grade id) and add ``extra_cell`` after
    the first code cell; ``name`` (the notebook's) is named when a grade id is unknown."""
    done = set()
    for cell in nb.cells:
        grade_id = answer_id(cell)
        if grade_id in replace:
            cell.source = replace[grade_id].strip() + "\n"
            done.add(grade_id)
    missing = set(replace) - done
    if missing:
        raise SystemExit(f"{name}: no answer cell for {', '.join(sorted(missing))}")
    if extra_cell:
        first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(first_code + 1, nbformat.v4.new_code_cell(extra_cell.strip()))
    return nb


def with_stable_ids(nb: nbformat.NotebookNode) -> str:
    """The notebook's text, its cell ids numbered (new cells get random ones) so that a
    rebuilt file can be compared with the one on disk."""
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index}"
    return nbformat.writes(nb)


def write_all(notebooks: dict[Path, str], what: str) -> None:
    """Write every built notebook, then say how many."""
    for path, text in notebooks.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(notebooks)} {what}", file=sys.stderr)
