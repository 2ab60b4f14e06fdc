"""Gradescope's ``results.json``: the only module that knows Gradescope's schema.

Gradescope's autograder specification: a top-level ``score``, a list of ``tests`` with
``name``, ``score``, ``max_score``, ``status`` (``passed`` / ``failed``), ``output`` and
``visibility``, the run's ``execution_time``, and ``extra_data`` that Gradescope keeps but never
shows to the student. What only staff should see (the grader's traceback, the isolation
details, errors inside the grader) goes into ``extra_data``; every ``output`` is student text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grader._fsutil import atomic_write_text
from grader.export._html import GRADER_FAILED, describe_limit, points, student_output
from grader.results import SubmissionResult, TestResult

VISIBILITY = "visible"
"""Tests and the overall output are shown to students as soon as the grade is published."""


def _test(test: TestResult, bonus: bool) -> dict[str, Any]:
    return {
        "name": test.name,
        "score": test.score,
        "max_score": test.max_score,
        "status": "passed" if test.status == "passed" else "failed",
        "output": student_output(test),
        "visibility": VISIBILITY,
        **({"tags": ["bonus"], "extra_data": {"bonus": True}} if bonus else {}),
    }


def _summary(result: SubmissionResult) -> str:
    """The overall text Gradescope shows above the tests."""
    lines = []
    if result.grader_error:
        lines.append(GRADER_FAILED)
    if result.load_messages:
        lines.append("Problems found while reading your notebook:")
        lines.extend(f"  - {message}" for message in result.load_messages)
    if result.limits_hit:
        lines.append("Your code ran into the grader's limits:")
        lines.extend(f"  - {describe_limit(limit)}" for limit in result.limits_hit)
    total = f"Total: {points(result.score)} of {points(result.max_score)} points"
    if result.bonus_max_score:
        total += (f", including {points(result.bonus_score)} of "
                  f"{points(result.bonus_max_score)} bonus points (extra credit, on top of the "
                  f"{points(result.max_score)} required points)")
    lines.append(total + ".")
    return "\n".join(lines)


def _extra_data(result: SubmissionResult) -> dict[str, Any]:
    return {
        "student": result.student,
        "assignment": result.assignment,
        "profile": result.profile,
        "isolation": result.isolation,
        "isolation_details": list(result.isolation_details),
        "device": result.device,
        "grader_version": result.grader_version,
        "load_messages": list(result.load_messages),
        "limits_hit": list(result.limits_hit),
        "faults": {t.name: t.fault for t in result.tests if t.fault},
        "test_errors": {t.name: t.message for t in result.tests if t.status == "error"},
        "grader_error": result.grader_error,
    }


def to_gradescope(result: SubmissionResult) -> dict[str, Any]:
    """``result`` in Gradescope's ``results.json`` schema (a JSON-ready dict)."""
    return {
        "score": result.score,
        "output": _summary(result),
        "visibility": VISIBILITY,
        "stdout_visibility": "hidden",
        "execution_time": round(result.seconds, 3),
        "tests": [_test(t, result.is_bonus(t)) for t in result.tests],
        "extra_data": _extra_data(result),
    }


def write_results_json(result: SubmissionResult, path: Path) -> None:
    """Write :func:`to_gradescope` to ``path`` atomically."""
    text = json.dumps(to_gradescope(result), indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(Path(path), text)
