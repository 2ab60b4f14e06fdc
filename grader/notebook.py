"""Entry points for notebook cells: the in-notebook public checks, and the hidden part of
nbgrader's autograder cells. Both run the same suites as ``grader grade``, in the kernel.

The in-kernel path is not sandboxed: see the README's section on nbgrader.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["autograde", "run_public_checks"]


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence stderr at the file-descriptor level while tests run: nbgrader zeroes a test
    cell that writes to stderr, and TensorFlow's C++ logging writes there directly."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    real_stderr = sys.stderr
    try:
        os.dup2(devnull, 2)
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - restored below
        yield
    finally:
        sys.stderr.close()
        sys.stderr = real_stderr
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _run(assignment_name: str, namespace: dict[str, Any], *, public: bool,
         functions: tuple[str, ...]) -> list[Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from grader.collect import run_suite
    from grader.course import load_assignment
    from grader.profiles import get_profile
    from grader.submission import InProcessSubmission

    assignment = load_assignment(assignment_name)
    profile = get_profile(os.environ.get("GRADER_PROFILE", "quick"))
    submission = InProcessSubmission(namespace, assignment)
    try:
        with _quiet_stderr():
            results, _errors = run_suite(assignment, submission, profile, mnist_path=None,
                                         public=public, functions=functions)
    finally:
        submission.close()
    return results


def autograde(assignment: str, function: str, namespace: dict[str, Any]) -> float:
    """Run the hidden tests of one function in the kernel; print what failed; return the
    points earned (nbgrader reads the cell's numeric result as partial credit)."""
    from grader.collect import result_lines

    results = _run(assignment, namespace, public=False, functions=(function,))
    earned = sum(r.score for r in results)
    available = sum(r.max_score for r in results)
    print(f"{function}: {earned:g} / {available:g} points")
    print(result_lines(results, indent="  "))
    return float(earned)


def run_public_checks(assignment: str, namespace: dict[str, Any]) -> bool:
    """The public checks, from a cell: prints what passed and what to fix."""
    from grader.collect import result_lines

    results = _run(assignment, namespace, public=True, functions=())
    failed = [r for r in results if r.status != "passed"]
    print(result_lines(results))
    print(f"{len(results) - len(failed)} of {len(results)} public checks passed")
    return not failed
