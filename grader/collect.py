"""Running a hidden suite and collecting its outcomes as :class:`TestResult` objects.

Two small plugin objects are passed to ``pytest.main``: :class:`Fixtures` provides the
``submission``, ``profile`` and ``data_files`` fixtures the suites are written against;
:class:`Collector` keeps, per test, the call phase or the first failing phase. Messages
come from exceptions only (assertions run with ``--assert=plain``), never from test source.
"""

from __future__ import annotations

import io
import os
from collections.abc import Generator, Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from grader.course import Assignment
from grader.errors import GraderError, SubmissionError
from grader.profiles import BASE_PROFILES, Profile, get_profile
from grader.results import Status, TestResult

if TYPE_CHECKING:
    from grader.submission import Submission

FIGURE_PREFIX = "figure:"
NOTE = "note"
"""A passing test may say what it measured: ``record_property("note", "...")``."""


class Fixtures:
    """The fixtures every suite may use: ``submission``, ``profile`` and ``data_files`` (each
    data file the assignment declares -> its path, or None). An assignment's own fixtures (its
    data, loaded from ``data_files``) live in its ``conftest.py``."""

    def __init__(self, submission: Submission, profile: Profile,
                 data_files: Mapping[str, Path | None]) -> None:
        self._submission = submission
        self._profile = profile
        self._data_files = dict(data_files)

    @pytest.fixture(name="submission")
    def submission_fixture(self) -> Submission:
        return self._submission

    @pytest.fixture(name="profile")
    def profile_fixture(self) -> Profile:
        return self._profile

    @pytest.fixture(name="data_files", scope="session")
    def data_files_fixture(self) -> dict[str, Path | None]:
        return dict(self._data_files)


@dataclass
class _Outcome:
    status: Status = "passed"
    called: bool = False
    """Whether the test's call phase reported; a test only passes once it has."""
    message: str = ""
    fault: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    grader_error: str | None = None


def describe_failure(exc: BaseException) -> tuple[str, str | None]:
    """A student-facing message and fault kind for an exception raised in a test."""
    if isinstance(exc, SubmissionError):
        return str(exc), exc.kind
    if isinstance(exc, AssertionError):
        # Plain asserts carry only their message; should pytest's assertion rewriting be active
        # (an enclosing pytest session), drop its explanation, which quotes test source.
        return str(exc).split("\nassert ")[0] or "a check failed", None
    return (f"the value returned could not be checked ({type(exc).__name__}: {exc}) — compare "
            "what your function returns with the types in the assignment's instructions"), None


class Collector:
    """Keeps one outcome per test: the call phase, or the first phase that did not pass."""

    def __init__(self) -> None:
        self.outcomes: dict[str, _Outcome] = {}
        self.order: list[str] = []

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        name = item.name
        if name not in self.outcomes:
            self.outcomes[name] = _Outcome()
            self.order.append(name)
        outcome = self.outcomes[name]
        note = ""
        for key, value in item.user_properties:
            if isinstance(key, str) and key.startswith(FIGURE_PREFIX):
                outcome.figures[key[len(FIGURE_PREFIX):]] = value
            elif key == NOTE:
                note = str(value)
        if call.when == "call":
            outcome.seconds = call.duration
            outcome.called = True
        if outcome.status != "passed":
            return report
        if report.passed and call.when == "call":
            outcome.message = note
        if report.skipped:
            outcome.status = "skipped"
            outcome.message = "skipped"
        elif report.failed and call.excinfo is not None:
            exc = call.excinfo.value
            if call.when == "call" or isinstance(exc, SubmissionError):
                outcome.status = "failed"
                outcome.message, outcome.fault = describe_failure(exc)
            else:
                outcome.status = "error"
                outcome.message = ("the grader failed on this test — tell your instructor")
                outcome.grader_error = str(report.longrepr)
        return report


def run_suite(assignment: Assignment, submission: Submission, profile: Profile, *,
              data: Mapping[str, str | os.PathLike[str] | None] | None = None,
              mnist_path: Path | None = None, public: bool = False,
              functions: tuple[str, ...] = (), public_dir: Path | None = None,
              ) -> tuple[list[TestResult], list[str]]:
    """Run the hidden (or public) suite against ``submission``.

    ``data`` gives explicit paths of the assignment's data files (by key); ``mnist_path`` is
    the old spelling of the same for an assignment with one data file. The public checks are
    read from ``public_dir`` (default: the released assignment's folder).
    Returns the results in the order of ``assignment.toml`` and any grader errors (staff only).
    """
    explicit = dict(data or {})
    if mnist_path is not None and len(assignment.data) == 1:
        explicit.setdefault(assignment.data[0].key, mnist_path)
    if profile == BASE_PROFILES.get(profile.name):
        profile = get_profile(profile.name, assignment)  # with the assignment's own numbers
    suite = (public_dir or assignment.public_dir) if public else assignment.suite_dir
    selected = [t for t in assignment.tests if not functions or t.function in functions]
    if public:
        args = [str(suite)]
    else:
        files = sorted(suite.glob("test_*.py"))
        if not files:
            raise GraderError(f"no hidden tests in {suite}")
        wanted = {t.test_id for t in selected}
        args = [str(f) for f in files]
        args += ["-k", " or ".join(sorted(wanted))] if functions else []
    collector = Collector()
    plugins = [Fixtures(submission, profile, assignment.data_files(explicit)), collector]
    options = ["-q", "--assert=plain", "--import-mode=importlib", "-p", "no:cacheprovider",
               "-p", "no:randomly",
               # Its garbage collections at the end of every session cost seconds with
               # TensorFlow loaded; an unraisable exception would only ever be a warning.
               "-p", "no:unraisableexception",
               "--rootdir", str(suite), "--confcutdir", str(suite), "-o", "addopts=",
               "-W", "ignore::DeprecationWarning", "-W", "ignore::UserWarning",
               "--no-header", "-o", "console_output_style=classic"]
    sink = io.StringIO()
    with redirect_stdout(sink), redirect_stderr(sink):
        code = pytest.main(options + args, plugins=plugins)
    if code == pytest.ExitCode.INTERRUPTED:
        # Ctrl-C, or a notebook cell's timeout: nothing after this point may count as passed.
        raise KeyboardInterrupt("the hidden tests were interrupted")
    for outcome in collector.outcomes.values():
        if outcome.status == "passed" and not outcome.called:
            outcome.status = "failed"
            outcome.message = "this check did not run to completion"
    errors = [o.grader_error for o in collector.outcomes.values() if o.grader_error]
    if code in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR,
                pytest.ExitCode.NO_TESTS_COLLECTED):
        errors.append(f"pytest exited with {code!r}:\n{sink.getvalue()[-4000:]}")
    if public:
        return [_public_result(name, collector.outcomes[name]) for name in collector.order], errors
    results = []
    for test in selected:
        got = collector.outcomes.get(test.test_id)
        if got is None:
            got = _Outcome(status="error", message="the grader failed on this test — tell your "
                           "instructor", grader_error=f"{test.test_id} was not collected")
            errors.append(got.grader_error or "")
        results.append(TestResult(
            name=test.name, function=test.function,
            score=test.points if got.status == "passed" else 0.0, max_score=test.points,
            status=got.status, message=got.message, fault=got.fault, figures=got.figures,
            seconds=round(got.seconds, 3), bonus=test.bonus))
    return results, errors


def result_lines(results: list[TestResult], indent: str = "") -> str:
    """``ok  name`` or ``FAIL name`` and the message beneath: what a student reads in a terminal
    or a notebook cell."""
    lines = []
    for r in results:
        if r.status == "passed":
            lines.append(f"{indent}ok   {r.name}")
        elif r.status == "skipped":
            lines.append(f"{indent}skip {r.name}" + (f" — {r.message}" if r.message else ""))
        else:
            lines.append(f"{indent}FAIL {r.name}\n{indent}     {r.message}")
    return "\n".join(lines)


def _public_result(test_id: str, outcome: _Outcome) -> TestResult:
    function, _, what = test_id.removeprefix("test_").partition("__")
    return TestResult(name=f"{function}: {what.replace('_', ' ')}", function=function, score=0.0,
                      max_score=0.0, status=outcome.status, message=outcome.message,
                      fault=outcome.fault, seconds=round(outcome.seconds, 3))

