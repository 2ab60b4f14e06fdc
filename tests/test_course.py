"""The course end to end through `grader grade`: reference answers, the untouched release and
realistic mistakes, each losing points exactly on the functions at fault."""

from __future__ import annotations

import json
import sys

import pytest

from grader.course import load_assignment
from tests.conftest import SAMPLES, function_points, mnist_npz, run_grader

sys.path.insert(0, str(SAMPLES))
from build import MISTAKES, build_all  # noqa: E402


def test_samples_are_built_from_the_current_notebooks():
    stale = [path.name for path, text in build_all().items()
             if not path.exists() or path.read_text() != text]
    assert not stale, (f"sample notebooks out of date: {', '.join(stale)} — run "
                       ".venv/bin/python tests/files/samples/build.py")


def test_at_least_fifteen_mistakes_across_both_assignments():
    assert len(MISTAKES) >= 15
    for mistake in MISTAKES:
        functions = load_assignment(mistake.assignment).functions
        assert set(mistake.loses) <= set(functions), mistake.name


@pytest.fixture(scope="module", params=["backprop", "mnist"])
def graded(request, tmp_path_factory):
    assignment = request.param
    out = tmp_path_factory.mktemp(f"graded-{assignment}")
    proc = run_grader("grade", str(SAMPLES / assignment), "--assignment", assignment,
                      "--out", str(out), "--jobs", "2", "--quiet", env={"MNIST_NPZ": mnist_npz()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return assignment, out


@pytest.mark.slow
def test_reference_scores_full_marks(graded):
    assignment, out = graded
    points = function_points(out, "reference")
    assert all(got == avail for got, avail in points.values()), points
    course = load_assignment(assignment)
    assert sum(a for _, a in points.values()) == sum(t.points for t in course.tests)
    assert course.max_score == sum(t.points for t in course.tests if not t.bonus)


@pytest.mark.slow
def test_untouched_release_scores_zero_because_of_the_stubs(graded):
    assignment, out = graded
    data = json.loads((out / "stub_untouched" / "results.json").read_text())
    assert data["score"] == 0
    for test in data["tests"]:
        assert test["status"] == "failed", test
        # every loss is the stub's NotImplementedError, not a grader error
        assert "NotImplementedError" in test["output"] or "not run" in test["output"], test


@pytest.mark.slow
def test_each_mistake_loses_points_only_where_it_is(graded):
    assignment, out = graded
    wrong = []
    for mistake in [m for m in MISTAKES if m.assignment == assignment]:
        points = function_points(out, mistake.name)
        for function, (got, avail) in points.items():
            should_lose = function in mistake.loses
            if should_lose and got >= avail:
                wrong.append(f"{mistake.name}: {function} kept all {avail:g} points")
            if not should_lose and got < avail:
                wrong.append(f"{mistake.name}: {function} lost points ({got:g}/{avail:g})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_messages_say_what_was_expected_and_found(graded):
    assignment, out = graded
    if assignment != "mnist":
        pytest.skip("the parameter-count message is a build_cnn test")
    data = json.loads((out / "cnn_32_filters" / "results.json").read_text())
    (count,) = [t for t in data["tests"] if t["name"] == "build_cnn: parameter count"]
    assert count["output"].startswith(
        "build_cnn(): expected 242,062 parameters, found 215,370 — the second Conv2D layer has "
        "14,436 parameters (filters=36, kernel_size=(5, 5), padding='same') in the reference; "
        "yours has 12,832")
    data = json.loads((out / "lstm_returns_sequences" / "results.json").read_text())
    (arch,) = [t for t in data["tests"] if t["name"] == "build_lstm: layers and shapes"]
    assert arch["output"].startswith(
        "build_lstm(): output shape (None, 28, 10), expected (None, 10) — an LSTM that feeds a "
        "Dense classifier must not return sequences")


@pytest.mark.slow
def test_grading_twice_gives_identical_results(graded, tmp_path):
    assignment, out = graded
    again = tmp_path / "again"
    second = "cnn_valid_padding" if assignment == "mnist" else "backward_wrong_sign"
    proc = run_grader("grade", str(SAMPLES / assignment / "reference.ipynb"),
                      str(SAMPLES / assignment / f"{second}.ipynb"),
                      "--assignment", assignment, "--out", str(again), "--quiet",
                      env={"MNIST_NPZ": mnist_npz()})
    assert proc.returncode == 0, proc.stderr[-3000:]

    def stable(path):
        data = json.loads(path.read_text())
        data.pop("execution_time", None)
        data["extra_data"].pop("seconds", None)
        return data

    for student in {p.parent.name for p in again.glob("*/results.json")}:
        assert stable(again / student / "results.json") == stable(out / student / "results.json")
        first = json.loads((out / student / "result.full.json").read_text())
        second = json.loads((again / student / "result.full.json").read_text())
        assert [t["figures"] for t in first["tests"]] == [t["figures"] for t in second["tests"]]
        assert [t["message"] for t in first["tests"]] == [t["message"] for t in second["tests"]]
