"""Shared helpers for the grader's own tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "files" / "samples"
GRADER = [sys.executable, "-m", "grader"]


def mnist_npz() -> str:
    path = os.environ.get("MNIST_NPZ")
    if not path or not Path(path).exists():
        pytest.fail("MNIST_NPZ must point to the real MNIST .npz (CI sets it in .ci/run); "
                    f"found {path!r}")
    return path


def run_grader(*args: str, env: dict[str, str] | None = None, timeout: float = 1800
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRADER, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def function_points(out: Path, student: str) -> dict[str, tuple[float, float]]:
    """Per-function (earned, available) from a student's results.json."""
    data = json.loads((out / student / "results.json").read_text())
    points: dict[str, tuple[float, float]] = {}
    for test in data["tests"]:
        function = test["name"].split(":", 1)[0]
        got, avail = points.get(function, (0.0, 0.0))
        points[function] = (got + test["score"], avail + test["max_score"])
    return points
