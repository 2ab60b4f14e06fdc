"""The CSV gradebook of a run: one row per student, one column per graded function.

Columns: ``student`` (the id as submitted, whatever folder the run gave it), one per function
(points earned; empty when no test of that function ran for that student), ``total``,
``max_score`` (the required points; bonus points add on top of ``total``), ``isolation`` and
``faults`` (the limits the submission hit and the kinds of fault behind its failed tests, e.g.
``time limit; timeout``).
Rows are sorted by student. Text cells that a spreadsheet would run as a formula (starting with
``=``, ``+``, ``-``, ``@``) are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from grader._fsutil import atomic_write_text
from grader.errors import ConfigurationError
from grader.export._html import points
from grader.results import SubmissionResult

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def fault_summary(result: SubmissionResult) -> str:
    """``"time limit; timeout; crash"``: limits hit, then fault kinds, each once, in order."""
    items = [f"{limit} limit" for limit in result.limits_hit]
    items += [t.fault for t in result.tests if t.fault]
    if result.grader_error:
        items.append("grader error")
    return "; ".join(dict.fromkeys(items))


def gradebook_rows(
    results: Iterable[SubmissionResult], functions: Sequence[str]
) -> list[list[str]]:
    """The gradebook as rows of text, header first. Functions found in the results but not in
    ``functions`` get columns after the listed ones, so no points go missing."""
    ordered = sorted(results, key=lambda r: r.student)
    seen: dict[str, None] = {}
    for result in ordered:
        if result.student in seen:
            raise ConfigurationError(
                f"two results for student {result.student!r}: expected one result per student "
                "in a gradebook; grade each student's submission into its own folder"
            )
        seen[result.student] = None
    columns = list(dict.fromkeys(functions))
    for result in ordered:
        columns += [f for f in result.by_function() if f not in columns]
    rows = [["student", *columns, "total", "max_score", "isolation", "faults"]]
    for result in ordered:
        earned = result.by_function()
        rows.append(
            [
                _cell(result.student),
                *(points(earned[f][0]) if f in earned else "" for f in columns),
                points(result.score),
                points(result.max_score),
                _cell(result.isolation),
                _cell(fault_summary(result)),
            ]
        )
    return rows


def write_gradebook(
    results: Iterable[SubmissionResult], path: Path, functions: Sequence[str]
) -> None:
    """Write the gradebook CSV to ``path`` atomically."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(gradebook_rows(results, functions))
    atomic_write_text(Path(path), buffer.getvalue())
