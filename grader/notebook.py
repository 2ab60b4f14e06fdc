"""Entry points for notebook cells: the in-notebook public checks, and the hidden part of
nbgrader's autograder cells. Both run the same suites as ``grader grade``, in the kernel; the
public checks run on what ``grader grade`` extracts from the cells the kernel ran.

The in-kernel path is not sandboxed: see the README's section on nbgrader.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
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


def _run(assignment_name: str, namespace: dict[str, Any], *, functions: tuple[str, ...]
         ) -> list[Any]:
    """The hidden tests of ``functions`` on the kernel's namespace (nbgrader's autograder)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from grader.check import submission_module
    from grader.collect import run_suite
    from grader.course import load_assignment
    from grader.profiles import get_profile

    assignment = load_assignment(assignment_name)
    profile = get_profile(os.environ.get("GRADER_PROFILE", "quick"), assignment)
    submission = submission_module().InProcessSubmission(namespace, assignment)
    try:
        with _quiet_stderr():
            results, _errors = run_suite(assignment, submission, profile, functions=functions)
    finally:
        submission.close()
    return results


def autograde(assignment: str, function: str, namespace: dict[str, Any]) -> float:
    """Run the hidden tests of one function in the kernel; print what failed; return the
    points earned (nbgrader reads the cell's numeric result as partial credit)."""
    from grader.collect import result_lines

    results = _run(assignment, namespace, functions=(function,))
    earned = sum(r.score for r in results)
    available = sum(r.max_score for r in results)
    print(f"{function}: {earned:g} / {available:g} points")
    print(result_lines(results, indent="  "))
    return float(earned)


def executed_cells(namespace: dict[str, Any]) -> list[str]:
    """The sources of the cells the kernel ran, oldest first: IPython's ``In`` list from the
    namespace, else from the running shell."""
    history = namespace.get("In")
    if not isinstance(history, list):
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            shell = None
        history = shell.user_ns.get("In") if shell is not None else None
    if not isinstance(history, list):
        raise RuntimeError(
            "run_public_checks() reads the cells this kernel ran (IPython's In list), and found "
            "none: call it from a notebook cell, or run `grader check NOTEBOOK` in a terminal")
    return [str(source) for source in history if str(source).strip()]


def _current_notebook() -> Path | None:
    """The notebook this kernel belongs to, where Jupyter says so (``JPY_SESSION_NAME``)."""
    name = os.environ.get("JPY_SESSION_NAME", "")
    path = Path(name) if name.endswith(".ipynb") else None
    return path if path is not None and path.is_file() else None


def run_public_checks(assignment: str, namespace: dict[str, Any]) -> bool:
    """The public checks, from a cell: prints what passed and what to fix.

    They run on exactly what ``grader grade`` keeps of the notebook: the cells this kernel ran
    are put together as a notebook, passed through the same extraction, executed in a fresh
    namespace, and checked there. A helper that extraction drops is missing here too."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import nbformat

    from grader.check import (
        find_public_checks,
        grader_metadata,
        run_extracted_unconfined,
        run_public,
        submission_module,
        summary,
    )
    from grader.collect import result_lines
    from grader.course import find_course_root
    from grader.extract import extract_answer_code, read_notebook

    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in executed_cells(namespace)])
    extracted = extract_answer_code(notebook)
    path = _current_notebook()
    meta = grader_metadata(read_notebook(path)) if path is not None else {}
    if meta.get("assignment") != assignment:
        meta = {}
    course = find_course_root()
    checks = find_public_checks(assignment, meta, path.parent if path else Path.cwd(), course)
    for message in extracted.messages:
        print(f"note: {message}")
    kept, notes = run_extracted_unconfined(extracted)
    for note in notes:
        print(f"note: {note}")
    submission = submission_module().InProcessSubmission(kept, checks.assignment)
    try:
        with _quiet_stderr():
            results, _errors = run_public(checks, submission)
    finally:
        submission.close()
    print(result_lines(results))
    print(summary(results))
    return all(r.status in ("passed", "skipped") for r in results)
