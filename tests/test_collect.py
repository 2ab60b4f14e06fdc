"""Collecting hidden-test outcomes: pass, fail, error, skip and timeout, with messages that
never show test source."""

from __future__ import annotations

import pytest

from grader.collect import run_suite
from grader.course import Assignment, GradedTest
from grader.errors import CallTimeout
from grader.profiles import get_profile
from grader.submission import InProcessSubmission

SUITE = '''
import pytest

SECRET = "hidden-test-source-line"

def test_passes(submission):
    assert submission.call("double", 2) == 4, "double(2) should be 4"

def test_fails(submission):
    found = submission.call("double", 3)
    assert found == 7, f"double(3): expected 7, found {found}"

@pytest.fixture
def broken_fixture():
    raise RuntimeError("fixture bug " + SECRET)

def test_errors(submission, broken_fixture):
    pass

def test_skips(submission):
    pytest.skip("not this time")

def test_times_out(submission):
    submission.call("slow")

def test_missing(submission):
    submission.call("triple", 1)

def test_records_figure(submission, record_property):
    record_property("figure:gradients", {"student": {"w1": 1.0}, "expected": {"w1": 1.0}})
    record_property("note", "measured 42")
'''

IDS = ["test_passes", "test_fails", "test_errors", "test_skips", "test_times_out",
       "test_missing", "test_records_figure"]


@pytest.fixture
def course(tmp_path):
    suite = tmp_path / "autograde_tests" / "demo"
    suite.mkdir(parents=True)
    (suite / "test_demo.py").write_text(SUITE)
    tests = tuple(GradedTest(t, f"double: {t.removeprefix('test_')}", 1.0) for t in IDS)
    return Assignment(name="demo", notebook="demo.ipynb", functions=("double",),
                      forbidden_imports=(), needs_tensorflow=False, tests=tests, root=tmp_path)


def _slow():
    raise CallTimeout("slow(): did not finish within 1 s")


def test_every_outcome_is_collected_in_suite_order(course):
    submission = InProcessSubmission({"double": lambda x: 2 * x, "slow": _slow}, course)
    # InProcessSubmission wraps exceptions from the student's function; make slow() a timeout
    submission.namespace["slow"] = _slow
    results, errors = run_suite(course, submission, get_profile("quick"))
    by_id = {t.name.split(": ")[1]: t for t in results}
    assert [t.name for t in results] == [f"double: {t.removeprefix('test_')}" for t in IDS]
    assert (by_id["passes"].status, by_id["passes"].score) == ("passed", 1.0)
    assert (by_id["fails"].status, by_id["fails"].message) == (
        "failed", "double(3): expected 7, found 6")
    assert by_id["errors"].status == "error"
    assert by_id["errors"].message == "the grader failed on this test — tell your instructor"
    assert by_id["skips"].status == "skipped" and by_id["skips"].score == 0.0
    assert by_id["missing"].fault == "missing"
    assert by_id["missing"].message.startswith("triple(): not defined in the notebook")
    assert by_id["records_figure"].figures == {
        "gradients": {"student": {"w1": 1.0}, "expected": {"w1": 1.0}}}
    assert by_id["records_figure"].message == "measured 42"
    # the grader's own failure is kept for staff, never shown to the student
    assert len(errors) == 1 and "fixture bug" in errors[0]
    assert all("hidden-test-source-line" not in t.message for t in results)


def test_timeout_is_the_submissions_fault(course):
    class Timing(InProcessSubmission):
        def _call(self, function, args, kwargs, return_args):
            if function == "slow":
                raise CallTimeout("slow(): did not finish within 1 s")
            return super()._call(function, args, kwargs, return_args)

    submission = Timing({"double": lambda x: 2 * x}, course)
    results, _ = run_suite(course, submission, get_profile("quick"),
                           functions=("double",))
    timed_out = next(t for t in results if t.name == "double: times_out")
    assert (timed_out.status, timed_out.fault, timed_out.message) == (
        "failed", "timeout", "slow(): did not finish within 1 s")
