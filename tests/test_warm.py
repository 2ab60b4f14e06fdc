"""Warm checking processes: one per ``--jobs`` worker grades submission after submission, and
nothing of one submission reaches the next. Each class is graded once per module."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nbformat
import pytest

from grader.release import copy_course
from tests.conftest import ROOT, SAMPLES

pytestmark = pytest.mark.slow

GRADER = [sys.executable, "-m", "grader"]
STARTED_AHEAD = "checker: sandbox started ahead, while the previous submission was graded"
PID = re.compile(r"^checker: peak memory \d+ MB, now \d+ MB, [\d.]+ s, pid (\d+)$", re.M)


def grade(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "GRADER_COURSE_ROOT"}
    return subprocess.run([*GRADER, "grade", "--quiet", *args], cwd=cwd, env={**full, **env},
                          capture_output=True, text=True, timeout=900)


def pids(out: Path) -> dict[str, int]:
    """The checking process that graded each student, from the line each log ends with."""
    found = {}
    for log in sorted((out / ".logs").glob("*.log")):
        match = PID.findall(log.read_text(errors="replace"))
        assert len(match) == 1, f"{log}: expected one 'checker: ... pid N' line, found {match}"
        found[log.stem] = int(match[0])
    return found


def comparable(path: Path) -> object:
    """A result.full.json without what only timing changes."""
    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "seconds"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(json.loads(path.read_text()))


# --- The backprop samples: warm against one fresh process per submission --------------------


@pytest.fixture(scope="module")
def backprop_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("warm")
    warm, cold = base / "warm", base / "cold"
    done = grade(str(SAMPLES / "backprop"), "--assignment", "backprop", "--out", str(warm),
                 "--jobs", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    done = grade(str(SAMPLES / "backprop"), "--assignment", "backprop", "--out", str(cold),
                 "--jobs", "2", GRADER_CHECKER_JOBS="1")
    assert done.returncode == 0, done.stdout + done.stderr
    return warm, cold


def test_one_warm_process_grades_the_whole_class_at_one_job(backprop_runs):
    warm, cold = backprop_runs
    served = pids(warm)
    assert len(served) == len(list((SAMPLES / "backprop").glob("*.ipynb"))) > 10
    assert len(set(served.values())) == 1, served
    assert len(set(pids(cold).values())) == len(served), "GRADER_CHECKER_JOBS=1: one each"


def test_each_sandbox_after_the_first_starts_while_the_previous_submission_finishes(
        backprop_runs):
    warm, cold = backprop_runs
    ahead = {log.stem for log in (warm / ".logs").glob("*.log") if STARTED_AHEAD in
             log.read_text(errors="replace")}
    graded = sorted(log.stem for log in (warm / ".logs").glob("*.log"))
    # One job at a time, in the order found: only the first submission's sandbox starts with it.
    assert set(graded) - ahead == {graded[0]}
    assert not any(STARTED_AHEAD in log.read_text(errors="replace")
                   for log in (cold / ".logs").glob("*.log"))


def test_warm_results_are_those_of_a_fresh_process_each(backprop_runs):
    """The class holds the realistic mistakes, the untouched stub and a blocked import: each
    student's result, graded after all the others in one process, is what a fresh process
    gives that student alone."""
    warm, cold = backprop_runs
    for path in sorted(cold.glob("*/result.full.json")):
        assert comparable(warm / path.parent.name / "result.full.json") == comparable(path), \
            path.parent.name


# --- State in a hidden suite does not carry over ----------------------------------------------


LEAKY_SUITE = '''"""A hidden suite with module-level state: each submission must see it fresh."""

SEEN = []


def test_add_small_numbers(submission):
    SEEN.append(1)
    assert len(SEEN) == 1, f"this module has graded {len(SEEN)} submissions"
    assert submission.call("add", 2, 3) == 5


def test_add_random_floats(submission):
    assert submission.call("add", 0.5, 0.25) == 0.75
'''


def test_module_state_of_a_hidden_suite_is_fresh_for_each_submission(tmp_path: Path) -> None:
    course = copy_course(ROOT, tmp_path / "course")
    made = subprocess.run([*GRADER, "new", "leaky"], cwd=course, capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, made.stderr
    (course / "autograde_tests" / "leaky" / "test_leaky.py").write_text(LEAKY_SUITE)
    released = subprocess.run([*GRADER, "release", "leaky"], cwd=course, capture_output=True,
                              text=True, timeout=300)
    assert released.returncode == 0, released.stderr
    stub = nbformat.read(course / "assignments" / "leaky" / "leaky.ipynb", as_version=4)
    for cell in stub.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            cell.source = "def add(a, b):\n    return a + b"
    subs = course / "subs"
    subs.mkdir()
    for student in ("ada", "ben", "cy", "dee"):
        nbformat.write(stub, subs / f"{student}.ipynb")
    done = grade(str(subs), "--assignment", "leaky", "--out", "out", "--jobs", "1", cwd=course)
    assert done.returncode == 0, done.stdout + done.stderr
    out = course / "out"
    assert len(set(pids(out).values())) == 1
    scores = {s: json.loads((out / s / "results.json").read_text())["score"]
              for s in ("ada", "ben", "cy", "dee")}
    assert scores == {"ada": 3.0, "ben": 3.0, "cy": 3.0, "dee": 3.0}, [
        t["output"] for s in ("ben", "cy") for t in
        json.loads((out / s / "results.json").read_text())["tests"]]
    shutil.rmtree(out)


def test_a_process_that_dies_is_replaced_and_its_submission_blamed_on_the_grader(
        tmp_path: Path) -> None:
    """A checking process killed mid-run (here: past GRADER_CHECK_SECONDS) costs that
    submission a grader failure, and the next submission gets a new process."""
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("a_reference", "b_reference"):
        shutil.copy(SAMPLES / "backprop" / "reference.ipynb", subs / f"{name}.ipynb")
    out = tmp_path / "out"
    done = grade(str(subs), "--assignment", "backprop", "--out", str(out), "--jobs", "1",
                 GRADER_CHECK_SECONDS="0.5")
    assert done.returncode == 1, done.stdout + done.stderr
    results = {s: json.loads((out / s / "result.full.json").read_text())
               for s in ("a_reference", "b_reference")}
    for result in results.values():
        assert result["grader_error"].startswith("checking process killed after 0 s"), result
    logs = Counter(p.name for p in (out / ".logs").glob("*.log"))
    assert logs == Counter({"a_reference.log": 1, "b_reference.log": 1})
