"""What the exporters share: the HTML templates and the sentences a student reads."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from grader.results import TestResult

GRADER_FAILED = "The grader failed on this submission — tell your instructor."
"""Shown to the student instead of any traceback when ``SubmissionResult.grader_error`` is set."""

TEST_ERROR = "The grader failed on this test — tell your instructor."
"""Shown to the student for a test whose status is ``error`` (the grader broke, not the student)."""

FAULT_HINTS: dict[str, str] = {
    "timeout": "Your code ran past its time limit. Look for loops that never end, input() calls, "
    "or training at the top level of a function the grader calls; the grader trains your "
    "models itself.",
    "crash": "The process running your code stopped: the memory limit, a crash, or a call to "
    "exit. Do not call sys.exit(), os._exit() or quit(), and avoid building very large arrays.",
    "missing": "Define this function at the top level of your notebook with exactly this name, "
    "then restart the kernel and run all cells to check that it is defined.",
    "exception": "Your function raised an exception; the message above says which and where. "
    "Run the public checks in your notebook to see it happen.",
    "refused": "Return plain values: NumPy arrays of numbers, floats, lists and dicts, or a "
    "Keras model built from standard layers (no Lambda layers, no custom classes).",
    "unreadable": "Your notebook file could not be read. Save it in Jupyter, download it again "
    "(File → Download) and submit that file.",
    "syntax": "Fix the syntax error at the cell and line shown, then restart the kernel and run "
    "all cells.",
    "forbidden": "This exercise must be solved without the library named above; remove the import "
    "and compute the values with NumPy.",
}
"""What to change, per kind of submission fault (``TestResult.fault``)."""

LIMITS: dict[str, str] = {
    "time": "time limit: your code ran too long",
    "memory": "memory limit: your code used too much memory",
    "output": "output limit: your code printed too much",
    "processes": "process limit: your code started too many processes",
    "checker-memory": "the grader's memory limit: a value your code returned was too large to "
                      "check (see the failed tests)",
    "checker-time": "the grader's time limit: checking a value your code returned took too long "
                    "(see the failed tests)",
}
"""How each sandbox limit (``SubmissionResult.limits_hit``) is described to people."""


def describe_limit(limit: str) -> str:
    return LIMITS.get(limit, f"{limit} limit")


def student_output(test: TestResult) -> str:
    """The text a student sees for one test: its message, and what to change after a fault."""
    if test.status == "error":
        return TEST_ERROR
    text = test.message.strip()
    hint = FAULT_HINTS.get(test.fault or "") if test.status != "passed" else None
    if hint:
        text = f"{text}\n\nWhat to change: {hint}" if text else f"What to change: {hint}"
    return text


def points(value: float) -> str:
    """``3.0 -> "3"``, ``2.5 -> "2.5"``, ``1/3 -> "0.333333"``: no float noise, no exponent."""
    text = f"{round(value, 6):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("grader", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["points"] = points
    return env


def render(template: str, **context: Any) -> str:
    """Render one of ``grader/templates/`` with every value HTML-escaped."""
    return _environment().get_template(template).render(**context)
