"""`grader check`: a student's public checks from the command line."""

from __future__ import annotations

import json
import re

import pytest

from grader.course import discover_assignments
from tests.conftest import ROOT, SAMPLES, run_grader


@pytest.mark.slow
def test_reference_passes_the_public_checks():
    proc = run_grader("check", str(SAMPLES / "backprop" / "reference.ipynb"),
                      "--assignment", "backprop")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.fullmatch(r"(\d+) of \1 public checks passed", proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_untouched_stub_fails_with_a_readable_list():
    proc = run_grader("check", str(SAMPLES / "backprop" / "stub_untouched.ipynb"),
                      "--assignment", "backprop")
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("FAIL sigmoid: ")
    assert lines[1].strip().startswith("sigmoid() raised NotImplementedError")
    summary = re.fullmatch(r"(\d+) of (\d+) public checks passed — fix the FAIL lines above, "
                           r"then run the check again", lines[-1])
    assert summary, lines[-1]
    passed, total = map(int, summary.groups())
    assert passed < total  # only a check that needs no code (no forbidden import) passes
    assert sum(line.startswith("FAIL ") for line in lines) == total - passed


@pytest.mark.slow
def test_mnist_public_checks_build_models_without_training():
    proc = run_grader("check", str(SAMPLES / "mnist" / "cnn_32_filters.ipynb"),
                      "--assignment", "mnist", timeout=300)
    assert proc.returncode == 1
    assert ("FAIL build_cnn: layers and parameter count\n     build_cnn(): expected 242,062 "
            "parameters, found 215,370") in proc.stdout
    assert "ok   build_mlp: layers and parameter count" in proc.stdout


def test_notebook_without_metadata_says_how_to_choose(tmp_path):
    nb = json.loads((SAMPLES / "backprop" / "reference.ipynb").read_text())
    nb["metadata"].pop("grader", None)
    path = tmp_path / "homework.ipynb"
    path.write_text(json.dumps(nb))
    proc = run_grader("check", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "grader: error: cannot tell which assignment homework.ipynb is: a notebook released by "
        "`grader release` names it in its metadata, and this one does not; pass --assignment "
        f"NAME (one of {', '.join(discover_assignments(ROOT))})")


def test_renamed_released_notebook_is_checked_by_its_metadata(tmp_path):
    path = tmp_path / "homework (1).ipynb"
    path.write_bytes((SAMPLES / "backprop" / "stub_untouched.ipynb").read_bytes())
    proc = run_grader("check", str(path), env={"GRADER_COURSE_ROOT": str(tmp_path)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("FAIL sigmoid: ")


def test_a_skipped_public_check_is_shown_as_skipped_and_does_not_fail() -> None:
    from grader.check import summary
    from grader.collect import result_lines
    from grader.results import TestResult

    results = [
        TestResult(name="build_mlp: layers", function="build_mlp", score=0, max_score=0,
                   status="passed"),
        TestResult(name="build_gru: layers", function="build_gru", score=0, max_score=0,
                   status="skipped", message="the bonus build_gru() is not written"),
    ]
    assert result_lines(results) == ("ok   build_mlp: layers\n"
                                      "skip build_gru: layers — the bonus build_gru() is not written")
    assert summary(results) == "1 of 2 public checks passed, 1 skipped"
    results[0].status = "failed"
    assert summary(results).startswith("0 of 2 public checks passed, 1 skipped — fix the FAIL")
