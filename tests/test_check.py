"""`grader check`: a student's public checks from the command line."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLES, run_grader


@pytest.mark.slow
def test_reference_passes_the_public_checks():
    proc = run_grader("check", str(SAMPLES / "backprop" / "reference.ipynb"),
                      "--assignment", "backprop")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "6 of 6 public checks passed"


@pytest.mark.slow
def test_untouched_stub_fails_with_a_readable_list():
    proc = run_grader("check", str(SAMPLES / "backprop" / "stub_untouched.ipynb"),
                      "--assignment", "backprop")
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "FAIL sigmoid: at zero"
    assert lines[1].strip().startswith("sigmoid() raised NotImplementedError")
    assert lines[-1] == ("0 of 6 public checks passed — fix the FAIL lines above, then run the "
                         "check again")


@pytest.mark.slow
def test_mnist_public_checks_build_models_without_training():
    proc = run_grader("check", str(SAMPLES / "mnist" / "cnn_32_filters.ipynb"),
                      "--assignment", "mnist", timeout=300)
    assert proc.returncode == 1
    assert ("FAIL build_cnn: parameter count\n     build_cnn(): expected 242,062 parameters, "
            "found 215,370") in proc.stdout
    assert "ok   build_mlp: parameter count" in proc.stdout


def test_unknown_notebook_name_says_how_to_choose(tmp_path):
    path = tmp_path / "homework.ipynb"
    path.write_bytes((SAMPLES / "backprop" / "reference.ipynb").read_bytes())
    proc = run_grader("check", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "grader: error: cannot tell which assignment homework.ipynb is: expected a file named "
        "backprop.ipynb or mnist.ipynb, or pass --assignment NAME")
