"""Grade one submission, in a fresh checking process: extract → sandbox → hidden suite → result.

Run by the runner as ``python -m grader.check_one JOB.json``; the student's code never runs in
this process, only in the sandboxed worker it starts.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from grader import __version__
from grader.collect import run_suite
from grader.course import load_assignment
from grader.errors import NotebookUnreadable
from grader.extract import extract_answer_code, read_notebook
from grader.profiles import get_profile
from grader.results import SubmissionResult, TestResult
from grader.sandbox.isolation import Isolation, Limits, detect_isolation
from grader.submission import SandboxSubmission

GRADER_FAILED = "the grader failed on this submission — tell your instructor"


@dataclass(frozen=True)
class Job:
    notebook: Path
    student: str
    assignment: str
    profile: str
    out_dir: Path
    mnist: Path | None
    isolation: str | None


def limits_from_env() -> Limits:
    """Default limits, overridable with GRADER_CALL_SECONDS, GRADER_SUBMISSION_SECONDS and
    GRADER_MEMORY_MB (for courses with slower machines, and for tests)."""
    base = Limits()
    return Limits(
        call_seconds=float(os.environ.get("GRADER_CALL_SECONDS", base.call_seconds)),
        submission_seconds=float(os.environ.get("GRADER_SUBMISSION_SECONDS",
                                                base.submission_seconds)),
        memory_bytes=int(os.environ.get("GRADER_MEMORY_MB", base.memory_bytes // 2**20)) * 2**20,
        processes=base.processes,
        file_bytes=base.file_bytes,
        output_bytes=base.output_bytes,
    )


def hidden_paths(job: Job) -> tuple[Path, ...]:
    """What the sandbox must never see: hidden suites, grading data, other submissions."""
    from grader.course import hidden_suites_dir
    from grader.data import find_mnist

    paths = [hidden_suites_dir(), job.notebook.parent.resolve(), job.out_dir.resolve()]
    found = find_mnist(job.mnist)
    if found is not None:
        paths.append(found.resolve().parent)
    # A forbidden library is hidden as well as blocked: code that removes the import blocker
    # still finds nothing to import.
    paths += forbidden_package_dirs(load_assignment(job.assignment).forbidden_imports)
    return tuple(paths)


def forbidden_package_dirs(names: tuple[str, ...]) -> list[Path]:
    """Where the forbidden packages are installed, found without importing them."""
    import importlib.util

    dirs: list[Path] = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            dirs += [Path(p).resolve() for p in spec.submodule_search_locations]
    return dirs


def _all_failed(job: Job, message: str, fault: str) -> list[TestResult]:
    assignment = load_assignment(job.assignment)
    return [TestResult(name=t.name, function=t.function, score=0.0, max_score=t.points,
                       status="failed", message=message, fault=fault) for t in assignment.tests]


def grade(job: Job) -> SubmissionResult:
    started = time.perf_counter()
    assignment = load_assignment(job.assignment)
    profile = get_profile(job.profile)
    isolation: Isolation = detect_isolation(job.isolation)
    result = SubmissionResult(
        student=job.student, assignment=job.assignment, notebook=str(job.notebook),
        profile=job.profile, isolation=isolation.level,
        isolation_details=list(isolation.details), grader_version=__version__)
    try:
        notebook = read_notebook(job.notebook)
    except NotebookUnreadable as exc:
        result.tests = _all_failed(job, str(exc), exc.kind)
        result.load_messages = [str(exc)]
        result.seconds = round(time.perf_counter() - started, 3)
        return result
    extracted = extract_answer_code(notebook)
    submission = SandboxSubmission(extracted, assignment, limits=limits_from_env(),
                                   isolation=isolation, hidden=hidden_paths(job))
    try:
        # The worker boots (Python, the notebook's imports, TensorFlow) while this process
        # loads what it needs anyway: TensorFlow, and matplotlib for the feedback's figures.
        submission.start()
        if assignment.needs_tensorflow:
            from grader.training import configure_determinism, device_description

            configure_determinism()
            result.device = device_description()
        import grader.export.feedback  # noqa: F401
        tests, errors = run_suite(assignment, submission, profile, mnist_path=job.mnist)
    finally:
        submission.close()
    result.tests = tests
    result.load_messages = submission.load_messages + [
        f"import of {name!r} blocked: this exercise is NumPy only"
        for name in submission.forbidden_imports]
    result.limits_hit = submission.limits_hit
    if errors:
        result.grader_error = "\n\n".join(errors)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def write_outputs(result: SubmissionResult, out_dir: Path) -> None:
    """results.json (Gradescope), feedback.html and the full result, each written atomically.
    The full result is written last: its presence marks the submission as done."""
    from grader.export.feedback import write_feedback
    from grader.export.gradescope import write_results_json

    student_dir = out_dir / result.student
    write_results_json(result, student_dir / "results.json")
    write_feedback(result, student_dir / "feedback.html")
    result.save(student_dir / "result.full.json")


def failed_result(job: Job, error: str) -> SubmissionResult:
    """What a student gets when the grader itself broke on their submission."""
    return SubmissionResult(
        student=job.student, assignment=job.assignment, notebook=str(job.notebook),
        profile=job.profile, tests=_all_failed(job, GRADER_FAILED, "grader"),
        grader_error=error, grader_version=__version__)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    spec = json.loads(Path(args[0]).read_text())
    job = Job(notebook=Path(spec["notebook"]), student=spec["student"],
              assignment=spec["assignment"], profile=spec["profile"],
              out_dir=Path(spec["out_dir"]), mnist=Path(spec["mnist"]) if spec["mnist"] else None,
              isolation=spec["isolation"])
    try:
        result = grade(job)
    except Exception:  # noqa: BLE001 - the grader's own failure becomes a staff-visible result
        result = failed_result(job, traceback.format_exc())
    write_outputs(result, job.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
