"""Verdicts a student can trust, backprop and the results model: correct answers in any style
score full marks, side properties earn nothing without a result, finite differences are told
from the chain rule, messages name the function at fault, public checks flag the mistakes, and
a bonus is extra credit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

from grader.export.feedback import render_feedback
from grader.export.figures import gradients
from grader.export.gradescope import to_gradescope
from grader.results import SubmissionResult, TestResult
from tests.conftest import SAMPLES, function_points, run_grader

sys.path.insert(0, str(SAMPLES))
from build import MISTAKES, VARIANTS, reference, replace_answers  # noqa: E402

BACKPROP_VARIANTS = [v.name for v in VARIANTS if v.assignment == "backprop"]
FINITE_DIFFERENCES = """
def backward(params, x, target):
    # A central finite difference of the error for every parameter.
    grads = {}
    for key in params:
        up, down = dict(params), dict(params)
        up[key] += 1e-6
        down[key] -= 1e-6
        grads[key] = (total_error(forward(up, x)["out_o"], target)
                      - total_error(forward(down, x)["out_o"], target)) / 2e-6
    return grads
"""
UPDATE_RETURNS_NONE = """
def update(params, grads, lr):
    new = {key: params[key] - lr * grads[key] for key in params}
"""
BACKWARD_RETURNS_NONE = """
def backward(params, x, target):
    pass
"""
# Extra notebooks written here: name -> (answers replaced, functions that must lose points).
EXTRA = {
    "backward_finite_differences": ({"backward": FINITE_DIFFERENCES}, ("backward",)),
    "update_returns_none": ({"update": UPDATE_RETURNS_NONE}, ("update", "train_step")),
    "backward_returns_none": ({"backward": BACKWARD_RETURNS_NONE}, ("backward", "train_step")),
}


def _tests(out: Path, student: str) -> dict[str, dict]:
    data = json.loads((out / student / "result.full.json").read_text())
    return {t["name"]: t for t in data["tests"]}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The backprop variants, the mistakes and the notebooks above, graded once."""
    folder = tmp_path_factory.mktemp("backprop-in")
    for path in (SAMPLES / "backprop").glob("*.ipynb"):
        (folder / path.name).write_text(path.read_text())
    for name, (answers, _) in EXTRA.items():
        nb = replace_answers(reference("backprop"), answers, "", name)
        nbformat.write(nb, folder / f"{name}.ipynb")
    out = tmp_path_factory.mktemp("backprop-out")
    proc = run_grader("grade", str(folder), "--assignment", "backprop", "--out", str(out),
                      "--jobs", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("variant", BACKPROP_VARIANTS)
def test_correct_answers_in_other_styles_score_full_marks(graded, variant):
    points = function_points(graded, variant)
    assert all(got == avail for got, avail in points.values()), points


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXTRA))
def test_extra_mistakes_lose_points_only_where_they_are(graded, name):
    loses = EXTRA[name][1]
    for function, (got, avail) in function_points(graded, name).items():
        assert (got < avail) == (function in loses), (name, function, got, avail)


@pytest.mark.slow
def test_finite_differences_lose_only_the_chain_rule_point(graded):
    tests = _tests(graded, "backward_finite_differences")
    failed = [name for name, t in tests.items() if t["status"] != "passed"]
    assert failed == ["backward: exact chain-rule gradients, not finite differences"]
    message = tests[failed[0]]["message"]
    assert message.startswith("backward() on the worked example: dE/d")
    assert ("a finite-difference estimate, rounded or copied numbers, or float32 arithmetic are "
            "this far off; derive each gradient with the chain rule from one forward pass, in "
            "float64, instead of calling forward() with nudged weights") in message


@pytest.mark.slow
def test_side_properties_earn_nothing_without_a_result(graded):
    update = _tests(graded, "update_returns_none")["update: input params not mutated"]
    assert update["score"] == 0
    assert update["message"] == "update(): expected a dict, found NoneType"
    no_autodiff = _tests(graded, "backward_returns_none")[
        "backward: computed without an autodiff library"]
    assert no_autodiff["score"] == 0
    assert no_autodiff["message"] == "backward(): expected a dict, found NoneType"


@pytest.mark.slow
def test_messages_name_the_function_at_fault(graded):
    wrong_sign = _tests(graded, "backward_wrong_sign")
    # The import rule is about imports: a wrong backward keeps that point.
    assert wrong_sign["backward: computed without an autodiff library"]["status"] == "passed"
    step = wrong_sign["train_step: one step of the worked example"]["message"]
    assert step.endswith("— train_step's result is wrong because backward() is: it returns "
                         "wrong values for these inputs (see the backward tests); fix "
                         "backward() and train_step will follow")
    assert "compute every gradient with the weights before the update" not in step
    assert "dE/dout_o is (out_o - target), not (target - out_o)" in \
        wrong_sign["backward: worked-example gradients"]["message"]
    bias = _tests(graded, "backward_bias_not_shared")["backward: worked-example gradients"]
    assert "b1 and b2 are each shared by two units" in bias["message"]
    after = _tests(graded, "train_step_returns_error_after")[
        "train_step: one step of the worked example"]
    assert "that is the error AFTER the step — compute the error before updating" in \
        after["message"]
    mean = _tests(graded, "total_error_uses_mean")["train_step: one step of the worked example"]
    assert "because total_error() is" in mean["message"]
    skips = _tests(graded, "update_skips_biases")["train_step: one step of the worked example"]
    assert "because update() is" in skips["message"]


@pytest.mark.slow
def test_hard_coded_worked_example_loses_only_what_the_docs_say(graded):
    tests = _tests(graded, "backward_hardcoded_worked_example")
    backward = {name: t["status"] for name, t in tests.items() if name.startswith("backward")}
    assert backward == {
        "backward: worked-example gradients": "passed",
        "backward: random networks against finite differences": "failed",
        "backward: exact chain-rule gradients, not finite differences": "failed",
        "backward: computed without an autodiff library": "passed",
    }


@pytest.mark.slow
def test_the_gradient_figure_names_the_network_it_shows(graded):
    figure = _tests(graded, "backward_wrong_sign")[
        "backward: random networks against finite differences"]["figures"]["gradients"]
    assert figure["network"] == "random network #1"
    assert gradients(figure).caption.startswith("Gradients on random network #1.")


@pytest.mark.slow
def test_public_checks_flag_every_backprop_mistake():
    """``grader check`` on each mistake: what the notebook asks is checked before submitting."""
    missed = []
    for mistake in [m for m in MISTAKES if m.assignment == "backprop"]:
        proc = run_grader("check", str(SAMPLES / "backprop" / f"{mistake.name}.ipynb"))
        if proc.returncode == 0:
            missed.append(mistake.name)
    assert not missed, f"grader check passes these mistakes: {missed}"
    for variant in BACKPROP_VARIANTS + ["reference"]:
        proc = run_grader("check", str(SAMPLES / "backprop" / f"{variant}.ipynb"))
        assert proc.returncode == 0, proc.stdout[-2000:]


# -- bonus: extra credit ----------------------------------------------------------------------
def _result(gru_score: float) -> SubmissionResult:
    tests = [
        TestResult(name="build_mlp: parameter count", function="build_mlp", score=1,
                   max_score=1, status="passed"),
        TestResult(name="build_cnn: parameter count", function="build_cnn", score=0,
                   max_score=1, status="failed", message="expected 242,062 parameters"),
        TestResult(name="build_gru: layers, shapes and parameter count", function="build_gru",
                   score=gru_score, max_score=1, status="passed" if gru_score else "failed",
                   bonus=True),
        TestResult(name="build_gru: accuracy after the grading recipe", function="build_gru",
                   score=gru_score, max_score=1, status="passed" if gru_score else "failed",
                   bonus=True),
    ]
    return SubmissionResult(student="ada", assignment="mnist", notebook="ada.ipynb",
                            profile="quick", tests=tests)


def test_bonus_points_add_on_top_of_the_required_total():
    result = _result(gru_score=1)
    assert (result.score, result.max_score) == (3, 2)
    assert (result.bonus_score, result.bonus_max_score) == (2, 2)
    assert _result(gru_score=0).score == 1


def test_a_bonus_flag_counts_whatever_the_assignment():
    result = SubmissionResult(student="ada", assignment="unknown", notebook="n", profile="quick",
                              tests=[TestResult(name="f: extra", function="f", score=1,
                                                max_score=1, status="passed", bonus=True)])
    assert (result.score, result.max_score, result.bonus_max_score) == (1, 0, 1)
    assert SubmissionResult.from_dict(result.to_dict()).tests[0].bonus


def test_gradescope_and_the_feedback_page_show_the_bonus():
    result = _result(gru_score=1)
    data = to_gradescope(result)
    assert data["score"] == 3
    assert data["output"].endswith(
        "Total: 3 of 2 points, including 2 of 2 bonus points (extra credit, on top of the 2 "
        "required points).")
    tags = {t["name"]: t.get("tags") for t in data["tests"]}
    assert tags["build_gru: accuracy after the grading recipe"] == ["bonus"]
    assert tags["build_mlp: parameter count"] is None
    page = render_feedback(result)
    assert ('including <span id="bonus-score">2</span> of 2 bonus points (extra credit, on top '
            'of the total)') in page
    assert '<span class="badge bonus">bonus</span>' in page
    assert result.to_dict()["tests"][3]["bonus"] is True


def test_the_course_marks_bonus_tests_and_counts_required_points_only():
    from grader.course import load_assignment

    mnist = load_assignment("mnist")
    bonus = {t.name for t in mnist.tests if t.bonus}
    assert bonus == {"build_gru: layers, shapes and parameter count",
                     "build_gru: accuracy after the grading recipe"}
    assert mnist.max_score == sum(t.points for t in mnist.tests) - 2
