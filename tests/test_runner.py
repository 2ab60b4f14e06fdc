"""A grading run: finding submissions, bad command lines, and a run killed mid-way."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from grader.errors import ConfigurationError
from grader.runner import discover
from tests.conftest import GRADER, ROOT, SAMPLES, run_grader


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLES / "backprop" / "reference.ipynb", path)
    return path


def test_discovers_flat_folders_files_and_nbgrader_layout(tmp_path):
    _touch(tmp_path / "flat" / "alice.ipynb")
    _touch(tmp_path / "flat" / "bob.ipynb")
    _touch(tmp_path / "course" / "submitted" / "carol" / "backprop" / "backprop.ipynb")
    _touch(tmp_path / "course" / "submitted" / "dave" / "backprop" / "backprop.ipynb")
    single = _touch(tmp_path / "course" / "submitted" / "erin" / "backprop" / "backprop.ipynb")
    found = discover([tmp_path / "flat", tmp_path / "course", single], "backprop")
    # erin's notebook given twice is one submission
    assert [f.student for f in found] == ["alice", "bob", "carol", "dave", "erin"]


def test_no_submissions_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        discover([tmp_path], "backprop")
    assert str(info.value).startswith(
        "no submissions found: expected .ipynb files, a folder of <student>.ipynb files, or "
        "nbgrader's submitted/<student>/backprop/backprop.ipynb layout under ")


@pytest.mark.parametrize(("args", "message"), [
    (["--assignment", "vision"], "invalid choice: 'vision'"),
    (["--assignment", "backprop", "--profile", "huge"], "invalid choice: 'huge'"),
    (["--assignment", "backprop", "--jobs", "0"],
     "grader: error: --jobs must be at least 1, found 0"),
])
def test_bad_command_lines_exit_2_with_the_reason(tmp_path, args, message):
    proc = run_grader("grade", str(SAMPLES / "backprop" / "reference.ipynb"), "--out",
                      str(tmp_path / "out"), *args)
    assert proc.returncode == 2
    assert message in proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_killed_run_resumes_and_loses_nothing(tmp_path):
    subs = tmp_path / "subs"
    names = ["reference", "stub_untouched", "sigmoid_overflows", "update_mutates_params",
             "backward_wrong_sign", "forward_returns_lists"]
    for name in names:
        _touch(subs / f"{name}.ipynb").write_bytes(
            (SAMPLES / "backprop" / f"{name}.ipynb").read_bytes())
    out = tmp_path / "out"
    args = [*GRADER, "grade", str(subs), "--assignment", "backprop", "--out", str(out),
            "--jobs", "1", "--quiet"]
    proc = subprocess.Popen(args, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(out.glob("*/result.full.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.full.json")}
    assert 2 <= len(finished) < len(names), finished
    # every finished result is whole (atomic writes): it parses
    from grader.results import SubmissionResult
    for student in finished:
        SubmissionResult.load(out / student / "result.full.json")

    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.full.json")}
    assert sorted(after) == sorted(names)
    assert all(after[s] == finished[s] for s in finished), "finished submissions were regraded"
    rows = (out / "grades.csv").read_text().splitlines()
    assert len(rows) == 1 + len(names)

    forced = subprocess.run([*args, "--force"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert forced.returncode == 0
    regraded = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.full.json")}
    assert all(regraded[s] != after[s] for s in names), "--force should regrade everything"
