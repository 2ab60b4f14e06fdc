"""`grader doctor`: the lines it prints, its exit status, and the fix for what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from grader import doctor

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist.npz"


def run_doctor(**env_changes: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    script = Path(sys.executable).parent / "grader"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "grader"]
    cwd = Path(env.get("GRADER_COURSE_ROOT") or REPO)  # the course folder is found from here
    return subprocess.run([*argv, "doctor"], env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def mnist_path() -> Path:
    path = Path(os.environ.get("MNIST_NPZ") or SHARED_MNIST)
    if not path.is_file():
        pytest.skip(f"no MNIST file at {path} (set MNIST_NPZ)")
    return path


LABEL = "Data mnist (for losses_optimizers, mnist)"
DESCRIPTION = "MNIST in Keras' .npz layout (x_train, y_train, x_test, y_test)"


def test_ready_with_the_declared_data(mnist_path: Path) -> None:
    proc = run_doctor(MNIST_NPZ=str(mnist_path), GRADER_COURSE_ROOT=str(REPO))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"TensorFlow: {version('tensorflow')}" in lines
    assert f"Keras: {version('keras')}" in lines
    with np.load(mnist_path) as npz:
        n_train, n_test = len(npz["y_train"]), len(npz["y_test"])
    assert (f"{LABEL}: {mnist_path} (from MNIST_NPZ): x_train {n_train:,}, y_train {n_train:,}, "
            f"x_test {n_test:,}, y_test {n_test:,}") in lines
    from grader.course import discover_assignments

    assert f"Hidden suites: {REPO / 'autograde_tests'} ({', '.join(discover_assignments(REPO))})" in lines
    assert any(line.startswith("GPUs: ") for line in lines)
    assert any(line.startswith("Isolation: ") for line in lines)
    assert any(line.startswith("bubblewrap: ") for line in lines)
    assert any(line.startswith("chromium: ") for line in lines)
    assert lines[-1] == "Ready to grade."
    assert f"grader: course folder {REPO}" in proc.stderr


def test_missing_data_file_gives_the_error_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "mnist.npz"
    proc = run_doctor(MNIST_NPZ=str(missing), GRADER_COURSE_ROOT=str(REPO))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    i = lines.index(f"{LABEL}: MISSING (MNIST_NPZ is {missing}, which is not a file)")
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    assert lines[i + 1] == (
        f"  fix: set MNIST_NPZ to an existing file ({DESCRIPTION}), or unset it and place the "
        f"file at {keras_home / 'datasets' / 'mnist.npz'}")
    assert f"TensorFlow: {version('tensorflow')}" in lines
    assert lines[-1] == "Not ready to grade: data file 'mnist' is missing."


def test_data_nowhere_names_each_place_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    keras_home = tmp_path / "keras"
    monkeypatch.delenv("MNIST_NPZ", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.chdir(REPO)
    report = doctor.Report()
    doctor._check_data(report)
    cached = keras_home / "datasets" / "mnist.npz"
    assert report.lines == [
        f"{LABEL}: MISSING (MNIST_NPZ is not set and there is nothing at {cached})",
        f"  fix: set MNIST_NPZ to the file ({DESCRIPTION}), or pass --data mnist=PATH to "
        "`grader grade`",
        f"  fix: or place it at {cached} (where Keras' datasets download to; KERAS_HOME moves it)",
    ]
    assert report.blockers == ["data file 'mnist' is missing"]


def test_no_hidden_suites(tmp_path: Path) -> None:
    proc = run_doctor(GRADER_COURSE_ROOT=str(tmp_path))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    j = lines.index(f"Hidden suites: MISSING (nothing readable at {tmp_path / 'autograde_tests'})")
    assert lines[j + 1].startswith("  fix: set GRADER_COURSE_ROOT to the course checkout")
    assert not any(line.startswith("Data ") for line in lines)
    assert lines[-1] == "Not ready to grade: the hidden suites are not found."


def course_with_data(tmp_path: Path, table: str) -> Path:
    suite = tmp_path / "autograde_tests" / "shapes"
    suite.mkdir(parents=True)
    (suite / "assignment.toml").write_text(
        'notebook = "shapes.ipynb"\nfunctions = ["area"]\n\n[data.grid]\n' + table
        + '\n[profiles.quick]\ntrain_size = 50\n')
    return tmp_path


def test_unreadable_npz_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "grid.npz"
    np.savez(bad, x_train=np.zeros((3, 2), np.uint8))
    monkeypatch.setenv("GRID_NPZ", str(bad))
    monkeypatch.chdir(course_with_data(tmp_path, 'env = "GRID_NPZ"\nkeys = ["x_train", "y_train"]\n'))
    report = doctor.Report()
    doctor._check_data(report)
    assert report.lines == [
        f"Data grid (for shapes): UNUSABLE ({bad}: expected the arrays x_train, y_train, missing "
        "y_train)",
        "  fix: point GRID_NPZ at a readable .npz",
    ]
    assert report.blockers == ["data file 'grid' is unusable"]


def test_a_file_too_small_for_a_profile_is_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    small = tmp_path / "grid.npz"
    np.savez(small, x_train=np.zeros((20, 2)), y_train=np.zeros(20))
    monkeypatch.chdir(course_with_data(tmp_path, 'env = "GRID_NPZ"\n'))
    monkeypatch.setenv("GRID_NPZ", str(small))
    report = doctor.Report()
    doctor._check_data(report)
    assert report.lines == [
        f"Data grid (for shapes): {small} (from GRID_NPZ): x_train 20, y_train 20",
        "  - too small for --profile quick of shapes: it trains on 50 examples, the file holds 20",
    ]
    assert report.blockers == []  # the other profiles can still grade


def fake_tf(gpus: list[str], growth: bool) -> SimpleNamespace:
    devices = [SimpleNamespace(name=f"/physical_device:{g}") for g in gpus]
    experimental = SimpleNamespace(
        get_memory_growth=lambda gpu: growth,
        get_device_details=lambda gpu: {
            "device_name": "NVIDIA H100 80GB HBM3",
            "compute_capability": (9, 0),
        },
    )
    return SimpleNamespace(
        config=SimpleNamespace(list_physical_devices=lambda kind: devices, experimental=experimental)
    )


def test_gpu_lines_with_memory_growth_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    report = doctor.Report()
    doctor._check_gpus(report, fake_tf(["GPU:0"], growth=False))
    assert report.lines == [
        "GPUs: 1, memory growth on",
        "  - GPU:0: NVIDIA H100 80GB HBM3, compute capability 9.0",
    ]


def test_gpu_memory_growth_off_comes_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    report = doctor.Report()
    doctor._check_gpus(report, fake_tf(["GPU:0", "GPU:1"], growth=False))
    assert report.lines[0] == "GPUs: 2, memory growth off"
    assert report.lines[1] == (
        "  fix: export TF_FORCE_GPU_ALLOW_GROWTH=true so that several grading workers can share "
        "one GPU (the Docker image sets it)"
    )
    assert report.blockers == []  # a GPU setting never stops grading


def test_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    report = doctor.Report()
    doctor._check_gpus(report, fake_tf([], growth=False))
    assert report.lines == ["GPUs: none (TensorFlow sees no GPU; models train on the CPU)"]


def test_missing_tools_come_with_the_apt_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    report = doctor.Report()
    doctor._check_tools(report)
    assert report.lines == [
        "bubblewrap: not found (the strongest sandbox level needs it)",
        "  fix: apt-get install bubblewrap",
        "chromium: not found (optional: grading does not need it)",
        "  fix: apt-get install chromium, to look at feedback.html headlessly",
    ]
    assert report.blockers == []
