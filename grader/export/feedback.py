"""The feedback page a student reads: one self-contained HTML file per submission.

Points per function, what failed and what to change, the pictures the hidden tests left
(learning curves, confusion matrices, gradients), and in a footer the conditions the code was
graded under. Built only from the results model, which holds no test source; every value is
HTML-escaped, pictures are inline ``data:`` URIs, and the page loads nothing from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from grader._fsutil import atomic_write_text
from grader.export import figures
from grader.export._html import GRADER_FAILED, describe_limit, render, student_output
from grader.results import SubmissionResult, TestResult


@dataclass(frozen=True)
class _FunctionRow:
    function: str
    earned: float
    available: float
    passed: int
    tests: int
    bonus: bool = False
    """Every test of the function is extra credit."""


@dataclass
class _TestView:
    test: TestResult
    output: str
    pictures: list[figures.Picture] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    bonus: bool = False


def _function_rows(result: SubmissionResult) -> list[_FunctionRow]:
    rows = []
    for function, (earned, available) in result.by_function().items():
        tests = [t for t in result.tests if t.function == function]
        passed = sum(t.status == "passed" for t in tests)
        bonus = bool(tests) and all(result.is_bonus(t) for t in tests)
        rows.append(_FunctionRow(function, earned, available, passed, len(tests), bonus))
    return rows


def _test_view(test: TestResult, bonus: bool) -> _TestView:
    view = _TestView(test, student_output(test), bonus=bonus)
    ordered = [k for k in figures.KINDS if k in test.figures]
    ordered += sorted(k for k in test.figures if k not in figures.KINDS)
    for kind in ordered:
        try:
            view.pictures.append(figures.draw(kind, test.figures[kind]))
        except figures.FigureDataError as exc:
            view.unavailable.append(str(exc))
    return view


def render_feedback(result: SubmissionResult) -> str:
    """The feedback page for ``result`` as one HTML document (UTF-8 text)."""
    views = [_test_view(t, result.is_bonus(t)) for t in result.tests]
    return render(
        "feedback.html.j2",
        result=result,
        grader_failed=GRADER_FAILED if result.grader_error else None,
        functions=_function_rows(result),
        tests=views,
        to_fix=[v for v in views if v.test.status != "passed"],
        with_pictures=[v for v in views if v.pictures or v.unavailable],
        limits=[describe_limit(limit) for limit in result.limits_hit],
    )


def write_feedback(result: SubmissionResult, path: Path) -> None:
    """Write :func:`render_feedback` to ``path`` atomically (readers never see half a page)."""
    atomic_write_text(Path(path), render_feedback(result))
