"""The losses_optimizers assignment end to end: its master and release, `grader grade` on the
reference, the untouched release and realistic mistakes (each losing points exactly on the
functions at fault), `grader check` on the same samples, and `grader release --check`."""

from __future__ import annotations

import importlib.util
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from grader import release
from grader.course import course_root, load_assignment
from tests.conftest import SAMPLES, function_points, mnist_npz, run_grader

NAME = "losses_optimizers"
FOLDER = SAMPLES / NAME
ROOT = course_root()


def _builder():
    spec = importlib.util.spec_from_file_location("losses_optimizers_samples", FOLDER / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


BUILD = _builder()
MISTAKES = BUILD.MISTAKES


# --- Fast: the course files agree with each other ------------------------------------------


def test_samples_are_built_from_the_current_notebooks() -> None:
    stale = [path.name for path, text in BUILD.build_all().items()
             if not path.exists() or path.read_text() != text]
    assert not stale, (f"sample notebooks out of date: {', '.join(stale)} — run "
                       f".venv/bin/python tests/files/samples/{NAME}/build.py")


def test_at_least_ten_mistakes_each_blaming_graded_functions() -> None:
    functions = load_assignment(NAME).functions
    assert len(MISTAKES) >= 10
    for mistake in MISTAKES:
        assert mistake.loses and set(mistake.loses) <= set(functions), mistake.name
    blamed = {f for m in MISTAKES for f in m.loses}
    assert blamed == set(functions), f"no sample mistake in {set(functions) - blamed}"


def test_master_grades_every_function_with_the_toml_points_and_release_leaks_nothing() -> None:
    master = nbformat.read(ROOT / "solutions" / NAME / f"{NAME}.ipynb", as_version=4)
    assert release.check_source(NAME, master, f"solutions/{NAME}") == []
    released = nbformat.read(ROOT / "assignments" / NAME / f"{NAME}.ipynb", as_version=4)
    secrets = release.secrets_of(master, sorted((ROOT / "autograde_tests" / NAME).glob("test_*.py")))
    assert release.find_leaks(released, secrets, f"assignments/{NAME}") == []


# --- Slow: every path a course runs ---------------------------------------------------------


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(f"graded-{NAME}")
    proc = run_grader("grade", str(FOLDER), "--assignment", NAME, "--out", str(out), "--jobs", "2",
                      "--quiet", env={"MNIST_NPZ": mnist_npz()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _tests(out: Path, student: str) -> dict[str, dict]:
    data = json.loads((out / student / "results.json").read_text())
    return {t["name"]: t for t in data["tests"]}


@pytest.mark.slow
def test_reference_scores_full_marks(graded: Path) -> None:
    points = function_points(graded, "reference")
    assert all(got == avail for got, avail in points.values()), points
    assert sum(a for _, a in points.values()) == load_assignment(NAME).max_score


@pytest.mark.slow
def test_untouched_release_scores_zero_because_of_the_stubs(graded: Path) -> None:
    data = json.loads((graded / "stub_untouched" / "results.json").read_text())
    assert data["score"] == 0
    for test in data["tests"]:
        assert test["status"] == "failed", test
        assert "NotImplementedError" in test["output"], test


@pytest.mark.slow
def test_each_mistake_loses_points_only_where_it_is(graded: Path) -> None:
    wrong = []
    for mistake in MISTAKES:
        for function, (got, avail) in function_points(graded, mistake.name).items():
            should_lose = function in mistake.loses
            if should_lose and got >= avail:
                wrong.append(f"{mistake.name}: {function} kept all {avail:g} points")
            if not should_lose and got < avail:
                wrong.append(f"{mistake.name}: {function} lost points ({got:g}/{avail:g})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_messages_say_what_was_expected_and_what_to_change(graded: Path) -> None:
    extremes = _tests(graded, "softmax_without_max_subtraction")[
        "softmax: logits of ±1000 without overflow"]
    assert extremes["output"] == (
        "softmax() on logits of ±1000: expected finite numbers, found nan or inf at [0, 0] — "
        "subtract each row's maximum before np.exp, so that no exponent is positive "
        "(np.exp(1000) overflows to inf, and inf / inf is nan)")
    training = _tests(graded, "adam_without_bias_correction")[
        "adam_step: softmax regression on MNIST reaches Keras' Adam loss"]
    assert training["output"].startswith(
        "adam_step(): 30 full-batch steps (lr=0.01) of softmax regression on 500 MNIST images "
        "reach a loss of 0.0061; keras.optimizers.Adam reaches 0.1281 (tolerance ±0.001) — "
        "check the bias correction"), training["output"]
    full = json.loads((graded / "softmax_uses_keras_ops" / "result.full.json").read_text())
    assert ("cell 5, line 1: ImportError: import of 'keras' is not allowed in this exercise: "
            "write the losses and optimisers with NumPy only") in full["load_messages"]


@pytest.mark.slow
def test_grader_check_passes_the_reference_and_flags_every_mistake() -> None:
    names = ["reference", *(m.name for m in MISTAKES)]

    def check(name: str):
        return run_grader("check", str(FOLDER / f"{name}.ipynb"), "--assignment", NAME,
                          timeout=600)

    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = dict(zip(names, pool.map(check, names), strict=True))
    reference = procs.pop("reference")
    assert reference.returncode == 0, reference.stdout + reference.stderr
    assert reference.stdout.strip().splitlines()[-1] == "19 of 19 public checks passed"
    loses = {m.name: m.loses for m in MISTAKES}
    unflagged = []
    for name, proc in procs.items():
        failed = {line.split()[1].rstrip(":") for line in proc.stdout.splitlines()
                  if line.startswith("FAIL ")}
        if proc.returncode != 1 or not failed & set(loses[name]):
            unflagged.append(f"{name}: exit {proc.returncode}, FAIL lines for {sorted(failed)}")
    assert not unflagged, "\n".join(unflagged)


@pytest.mark.slow
def test_release_check_passes() -> None:
    proc = run_grader("release", "--check", NAME, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
