"""The benchmark code at a tiny size: a class of two backprop submissions, graded by both
graders. Checks the report's rows and that the verdicts agree; never the timings, which
belong to docs/benchmarks.md, not to CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
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
    assert [m.loses for m in members] == [(), ("sigmoid",), ("forward",)]
    for member in members:
        assert member.notebook == (tmp_path / "submitted" / member.student / "backprop"
                                   / "backprop.ipynb")
    nb = nbformat.read(members[0].notebook, as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any("for epoch in range(20)" in s for s in sources)
    # The experiments come before the final check cell, as a student would add them.
    last = nb.cells[-1].metadata.get("nbgrader", {}).get("grade_id")
    assert last == "check_your_work"


def _answers(notebook: Path) -> dict[str, str]:
    nb = nbformat.read(notebook, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def test_mnist_class_is_mostly_correct_in_varied_styles_with_mistakes_and_stubs(
        tmp_path: Path) -> None:
    members = make_class("mnist", 20, tmp_path)
    kinds = Counter(m.kind for m in members)
    assert kinds == {"reference": 2, "style": 7, "hyperparameters": 2, "mistake": 7, "stub": 2}
    assert len({m.sample for m in members if m.kind == "style"}) == 6
    assert next(m for m in members if m.kind == "stub").loses == (
        "preprocess", "build_mlp", "build_cnn", "build_lstm", "build_gru")
    assert all(m.loses == () for m in members if m.kind in ("reference", "style",
                                                            "hyperparameters"))
    # Every notebook trains at top level, outside any guard, as the course material does.
    for member in members:
        sources = [c.source for c in nbformat.read(member.notebook, as_version=4).cells]
        assert any("epochs=experiment_epochs" in s for s in sources), member.student
        assert any("plt.show()" in s for s in sources), member.student
    # A class of five is the first five of the class of twenty, and holds every kind.
    five = make_class("mnist", 5, tmp_path / "five")
    assert [m.student for m in five] == [m.student for m in members[:5]]
    assert {m.kind for m in five} == {"reference", "style", "mistake", "hyperparameters", "stub"}


def test_style_variants_change_how_the_models_are_written_not_what_they_are(
        tmp_path: Path) -> None:
    by_sample = {m.sample: m for m in make_class("mnist", 20, tmp_path)}
    reference = _answers(by_sample["reference"].notebook)
    written = {name: _answers(m.notebook) for name, m in by_sample.items()}
    assert "net.add(layers.Dense(128" in written["style_sequential_add"]["build_mlp"]
    assert "keras.Model(inputs=pixels" in written["style_functional_named"]["build_mlp"]
    assert "from keras.layers import" in written["style_from_imports_input_shape"]["build_mlp"]
    assert "input_shape=(784,)" in written["style_from_imports_input_shape"]["build_mlp"]
    assert "InputLayer(shape=(n_inputs,))" in written["style_keywords_comments"]["build_mlp"]
    for name in ("style_sequential_add", "style_functional_named",
                 "style_from_imports_input_shape", "style_keywords_comments"):
        changed = {k for k in reference if written[name][k] != reference[k]}
        assert changed and changed <= {"build_mlp", "build_cnn", "build_lstm", "build_gru"}, name
    # The allowed hyperparameters: an optimizer, a learning rate, an initialiser.
    assert "Adam(learning_rate=0.002)" in written[
        "hyperparameters_learning_rate_initialiser"]["build_mlp"]
    assert 'kernel_initializer="he_normal"' in written[
        "hyperparameters_learning_rate_initialiser"]["build_cnn"]
    assert by_sample["mistake_mlp_dropout_0_3"].loses == ("build_mlp",)


@pytest.mark.slow
def test_tiny_benchmark_reports_every_run_and_the_graders_agree(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--assignment", "backprop", "--n", "2",
         "--jobs", "1", "--memory-n", "0", "--uncached-n", "2", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=1200,
        env={**os.environ, "MNIST_NPZ": mnist_npz()})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads((out / "results.json").read_text())
    rows = {(r["assignment"], r["tool"], r["n"], r["jobs"], r["cache"]) for r in report["runs"]}
    assert rows == {("backprop", "limit", 1, 1, None), ("backprop", "grader", 2, 1, True),
                    ("backprop", "grader", 2, 1, False), ("backprop", "nbgrader", 2, 1, None)}
    for run in report["runs"]:
        assert run["problems"] == [], run["problems"]
        assert run["wall_s"] > 0 and run["max_process_rss_mb"] > 0
        if run["tool"] != "limit":
            assert set(run["points"]) == {"s001_reference", "s002_sigmoid_overflows"}
            assert run["points"]["s001_reference"]["backward"] == [6.0, 6.0]
            assert run["points"]["s002_sigmoid_overflows"]["sigmoid"][0] < 2.0
        if run["tool"] == "grader":
            # Backprop trains nothing: no cache entries, no training asked for.
            assert run["extra"]["trainings"]["entries"] == (0 if run["cache"] else None)
            assert set(run["extra"]["overhead_s"]) == {"s001_reference",
                                                       "s002_sigmoid_overflows"}

    pairs = {(row["first"], row["second"]): row for row in report["agreement"]}
    assert set(pairs) == {("grader J=1 N=2", "grader J=1 no cache N=2"),
                          ("grader J=1 N=2", "nbgrader N=2"),
                          ("grader J=1 no cache N=2", "nbgrader N=2")}
    for row in pairs.values():
        assert row["compared"] == 12 and row["agree"] == 12
        assert row["disagreements"] == []
    [same] = report["identical"]
    assert (same["first"], same["second"]) == ("grader J=1 N=2", "grader J=1 no cache N=2")
    assert same["compared"] == 2 and same["identical"] == 2 and same["differences"] == []
    assert all(row["unexpected"] == [] for row in report["expected"])

    for key in ("cpu", "cores", "python", "tensorflow", "nbgrader", "grader"):
        assert report["machine"][key]
    rendered = (out / "report.md").read_text()
    assert "| backprop | grader | 2 | 1 | on |" in rendered
    assert "| backprop | grader | 2 | 1 | off |" in rendered
    assert "| backprop | nbgrader | 2 | 1 (serial) | — |" in rendered
    assert "| backprop | 2 | grader J=1 N=2 vs grader J=1 no cache N=2 | 2 | 2 | none |" \
        in rendered
    assert (out / "benchmarks.png").stat().st_size > 10_000

    # --render redraws the same tables from results.json alone.
    (out / "report.md").unlink()
    again = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--render", "--out",
                            str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "report.md").read_text() == rendered


def test_identity_check_names_the_field_that_differs() -> None:
    import run as bench_run

    first = {"student": "s", "score": 1.0, "tests": [{"name": "f: x", "seconds": 1.0,
                                                      "message": "ok"}], "seconds": 9.0}
    second = {"student": "s", "score": 1.0, "tests": [{"name": "f: x", "seconds": 2.5,
                                                       "message": "changed"}], "seconds": 3.0}
    a = bench_run.without_timing(first, Path("/class"))
    b = bench_run.without_timing(second, Path("/class"))
    assert bench_run.differences(a, b) == ["/tests/0/message"]
    second["tests"][0]["message"] = "ok"
    assert bench_run.differences(a, bench_run.without_timing(second, Path("/class"))) == []


@pytest.mark.slow
def test_startup_reports_each_start_of_a_fresh_sandbox() -> None:
    got = subprocess.run([sys.executable, str(ROOT / "bench" / "startup.py"), "backprop", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-2000:]
    report = json.loads(got.stdout.strip().splitlines()[-1])
    assert report["assignment"] == "backprop"
    assert len(report["starts"]) == 2
    assert report["median_s"] == pytest.approx(sum(report["starts"]) / 2)
    assert all(start > 0 for start in report["starts"])
    assert report["isolation"] in ("bubblewrap", "namespaces", "rlimits")
    from grader.sandbox import forking
    from grader.sandbox.isolation import detect_isolation, python_runtime_paths

    forks = forking.usable(detect_isolation(None), python_runtime_paths())
    assert report["workers"] == ("forked from a template" if forks else "started on their own")
    assert report["median_after_first_s"] == report["starts"][1]


def test_tree_memory_counts_a_page_shared_with_a_fork_once_as_pss() -> None:
    """A parent holding about 320 MB forks a child that shares those pages: summed RSS counts
    them twice, PSS once."""
    code = ("import os, time, numpy; a = numpy.ones(40_000_000); pid = os.fork(); "
            "time.sleep(2.5); os._exit(0) if pid == 0 else os.waitpid(pid, 0)")
    got = subprocess.run([sys.executable, str(ROOT / "bench" / "tree_memory.py"),
                          sys.executable, "-c", code],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr[-2000:]
    report = json.loads(got.stdout.strip().splitlines()[-1])
    assert report["returncode"] == 0
    assert 300 <= report["peak_tree_pss_mb"] <= 450, report
    assert report["peak_tree_rss_mb"] >= 1.7 * report["peak_tree_pss_mb"], report


def test_tree_memory_without_a_command_says_how_to_call_it() -> None:
    got = subprocess.run([sys.executable, str(ROOT / "bench" / "tree_memory.py")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert got.returncode == 2
    assert got.stderr == "usage: bench/tree_memory.py COMMAND [ARGUMENT...]\n"
