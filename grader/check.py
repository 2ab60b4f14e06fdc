"""``grader check NOTEBOOK``: a student's public checks from the command line, with the same
extraction and sandbox as grading, public tests only (no training)."""

from __future__ import annotations

from pathlib import Path

from grader.collect import result_lines, run_suite
from grader.course import ASSIGNMENT_NAMES, load_assignment
from grader.errors import ConfigurationError, NotebookUnreadable
from grader.extract import extract_answer_code, read_notebook
from grader.profiles import get_profile
from grader.sandbox.isolation import Limits, detect_isolation
from grader.submission import SandboxSubmission


def guess_assignment(notebook: Path) -> str:
    for name in ASSIGNMENT_NAMES:
        if notebook.stem == name or notebook.parent.name == name:
            return name
    raise ConfigurationError(
        f"cannot tell which assignment {notebook.name} is: expected a file named "
        f"{' or '.join(n + '.ipynb' for n in ASSIGNMENT_NAMES)}, or pass --assignment NAME")


def main(*, notebook: Path, assignment: str | None) -> int:
    name = assignment or guess_assignment(notebook)
    course = load_assignment(name)
    try:
        extracted = extract_answer_code(read_notebook(notebook))
    except NotebookUnreadable as exc:
        print(f"FAIL {exc}")
        return 1
    for message in extracted.messages:
        print(f"note: {message}")
    submission = SandboxSubmission(extracted, course,
                                   limits=Limits(call_seconds=120, submission_seconds=300),
                                   isolation=detect_isolation(), hidden=())
    try:
        results, errors = run_suite(course, submission, get_profile("quick"), mnist_path=None,
                                    public=True)
    finally:
        submission.close()
    for message in submission.load_messages[len(extracted.messages):]:
        print(f"note: {message}")
    failed = [r for r in results if r.status != "passed"]
    print(result_lines(results))
    for error in errors:
        print(f"grader problem: {error.splitlines()[0] if error else ''}")
    print(f"{len(results) - len(failed)} of {len(results)} public checks passed"
          + ("" if not failed else " — fix the FAIL lines above, then run the check again"))
    return 1 if failed or errors else 0
