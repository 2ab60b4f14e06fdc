"""The benchmark code at a tiny size: a class of two backprop submissions, graded by both
graders. Checks the report's rows and that the verdicts agree; never the timings, which
belong to docs/benchmarks.md, not to CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT, mnist_npz

sys.path.insert(0, str(ROOT / "bench"))

from make_class import make_class  # noqa: E402


def test_class_cycles_through_the_samples_and_adds_the_experiment_cells(tmp_path: Path) -> None:
    members = make_class("backprop", 3, tmp_path)
    assert [m.sample for m in members] == ["reference", "sigmoid_overflows",
                                           "forward_returns_lists"]
    for member in members:
        assert member.notebook == (tmp_path / "submitted" / member.student / "backprop"
                                   / "backprop.ipynb")
    nb = nbformat.read(members[0].notebook, as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any("for epoch in range(20)" in s for s in sources)
    # The experiments come before the final check cell, as a student would add them.
    last = nb.cells[-1].metadata.get("nbgrader", {}).get("grade_id")
    assert last == "check_your_work"


@pytest.mark.slow
def test_tiny_benchmark_reports_every_run_and_the_graders_agree(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--assignment", "backprop", "--n", "2",
         "--jobs", "1", "--memory-n", "0", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=1200,
        env={**os.environ, "MNIST_NPZ": mnist_npz()})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads((out / "results.json").read_text())
    rows = {(r["assignment"], r["tool"], r["n"], r["jobs"]) for r in report["runs"]}
    assert rows == {("backprop", "limit", 1, 1), ("backprop", "grader", 2, 1),
                    ("backprop", "nbgrader", 2, 1)}
    for run in report["runs"]:
        assert run["problems"] == [], run["problems"]
        assert run["wall_s"] > 0 and run["max_process_rss_mb"] > 0
        if run["tool"] != "limit":
            assert set(run["points"]) == {"s001_reference", "s002_sigmoid_overflows"}
            assert run["points"]["s001_reference"]["backward"] == [6.0, 6.0]
            assert run["points"]["s002_sigmoid_overflows"]["sigmoid"][0] < 2.0

    [agreement] = report["agreement"]
    assert (agreement["first"], agreement["second"]) == ("grader J=1", "nbgrader")
    assert agreement["compared"] == 12 and agreement["agree"] == 12
    assert agreement["disagreements"] == []
    assert all(row["unexpected"] == [] for row in report["expected"])

    for key in ("cpu", "cores", "python", "tensorflow", "nbgrader", "grader"):
        assert report["machine"][key]
    rendered = (out / "report.md").read_text()
    assert "| backprop | grader | 2 | 1 |" in rendered
    assert "| backprop | nbgrader | 2 | 1 (serial) |" in rendered
    assert (out / "benchmarks.png").stat().st_size > 10_000
