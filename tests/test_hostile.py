"""Hostile submissions, graded end to end through the real command line.

Every notebook in ``tests/files/hostile/<assignment>/`` attacks the grader (see ``build.py``
there). One ``grader grade`` run per assignment grades them all, two at a time (a notebook
that could stall the checking process gets a run of its own, see ``ALONE``); then each
notebook's verdict is checked: the run went on, the attacked function lost its points for the
right reason, the functions it does not touch kept theirs, and nothing the attack tried to do
outside the sandbox happened (no file planted, no connection made, no process left behind).
The mnist run needs the real data (MNIST_NPZ); the whole module needs bubblewrap or namespace
isolation, since these notebooks really do fork-bomb and kill processes.

The per-call and per-submission time limits are shortened through GRADER_CALL_SECONDS and
GRADER_SUBMISSION_SECONDS, and the memory limit through GRADER_MEMORY_MB, so that the run
takes minutes.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grader.errors import ConfigurationError
from grader.sandbox import detect_isolation

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "files" / "hostile"


def _load_build() -> Any:
    spec = importlib.util.spec_from_file_location("hostile_build", HOSTILE / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build()
ATTACKS = {attack.name: attack for attack in build.ATTACKS}
MARKER: str = build.MARKER

# Limits for the run (seconds, MiB): short enough to keep the suite fast, long enough for the
# honest parts of each notebook. mnist's worker imports TensorFlow and builds models.
RUN_LIMITS = {
    "backprop": {"GRADER_CALL_SECONDS": "10", "GRADER_SUBMISSION_SECONDS": "60", "GRADER_MEMORY_MB": "2048"},
    "mnist": {"GRADER_CALL_SECONDS": "120", "GRADER_SUBMISSION_SECONDS": "600"},
}
RUN_TIMEOUT = 1800


def _confining_level() -> str:
    """These notebooks fork-bomb and kill processes: grade them only where a pid namespace
    and an unprivileged uid contain them."""
    try:
        level = detect_isolation().level
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    if level not in ("bubblewrap", "namespaces"):
        pytest.skip(f"isolation here is only {level!r}: hostile notebooks would reach the host")
    return level


def _marker_files() -> list[Path]:
    """Files carrying the attacks' marker in places the host can see."""
    places = [
        Path("/tmp"),
        Path("/var/tmp"),
        Path("/dev/shm"),
        Path("/"),
        Path.home(),
        ROOT,
        ROOT / "tests",
        ROOT / "autograde_tests",
        HOSTILE,
    ]
    found = [p for place in places if place.is_dir() for p in place.glob(f"*{MARKER}*")]
    found += [p for p in ROOT.glob(f"*/*/*{MARKER}*") if ".venv" not in p.parts]
    return sorted(set(found))


def _planted_conftests() -> list[Path]:
    """conftest.py files holding the plants_conftest attack, wherever the host would use them."""
    places = [
        Path("/"),
        Path("/tmp"),
        Path.home(),
        ROOT,
        ROOT / "tests",
        ROOT / "autograde_tests",
        *(ROOT / "autograde_tests").iterdir(),
        *[Path(p) for p in sys.path if p and Path(p).is_dir()],
    ]
    planted = []
    for place in places:
        candidate = place / "conftest.py"
        if candidate.is_file() and MARKER in candidate.read_text(errors="replace"):
            planted.append(candidate)
    return planted


def _marker_processes() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if MARKER.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


@dataclass
class Run:
    assignment: str
    out: Path
    returncode: int
    output: str
    connections: list[str]
    """Connections the loopback listener accepted while the run went on."""

    def results(self, student: str) -> dict[str, Any]:
        return json.loads((self.out / student / "results.json").read_text())

    def full(self, student: str) -> dict[str, Any]:
        return json.loads((self.out / student / "result.full.json").read_text())

    def tests_of(self, student: str, function: str) -> list[dict[str, Any]]:
        return [t for t in self.results(student)["tests"] if t["name"].startswith(function + ":")]


def _listeners() -> Iterator[socket.socket]:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, build.LISTENER_PORT))
        except OSError:
            continue
        listener.listen(8)
        listener.setblocking(False)
        yield listener


def _mnist_or_skip() -> Path:
    """The mnist suite trains in the checking process: it needs the real data (SPEC §2)."""
    from grader.data import find_mnist

    found = find_mnist(None)
    if found is None:
        pytest.skip("MNIST is not available here: set MNIST_NPZ (see .ci/run)")
    return Path(found)


def _grader_command() -> list[str]:
    script = Path(sys.executable).parent / "grader"
    return [str(script)] if script.exists() else [sys.executable, "-m", "grader"]


def _grade(assignment: str, notebooks: list[Path], out: Path, timeout: float) -> Run:
    _confining_level()
    for stale in _marker_files():
        stale.unlink()
    listeners = list(_listeners())
    if not any(sock.family == socket.AF_INET for sock in listeners):
        pytest.skip(f"cannot listen on 127.0.0.1:{build.LISTENER_PORT} for the network check")
    secret = Path(build.HOST_SECRET)
    np.save(secret, np.float64(4242.4242))
    secret.chmod(0o600)
    env = {**os.environ, **RUN_LIMITS[assignment]}
    if assignment == "mnist":
        env["MNIST_NPZ"] = str(_mnist_or_skip())
    command = [
        *_grader_command(),
        "grade",
        *map(str, notebooks),
        "--assignment",
        assignment,
        "--out",
        str(out),
        "--jobs",
        "2",
        "--quiet",
    ]
    grader = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        stdout, _ = grader.communicate(timeout=timeout)
        returncode, output = grader.returncode, stdout.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(grader.pid, signal.SIGKILL)  # the CLI and its checking processes
        grader.communicate()
        returncode, output = -1, f"grader grade did not finish within {timeout:.0f} s"
    finally:
        secret.unlink(missing_ok=True)
    connections = []
    for listener in listeners:
        while True:
            try:
                connection, address = listener.accept()
            except BlockingIOError:
                break
            connections.append(str(address))
            connection.close()
        listener.close()
    return Run(assignment, out, returncode, output, connections)


# Graded in a run of its own, with a shorter time limit: a checker that blocks on it would
# otherwise hold up the verdicts of every other notebook.
ALONE = {"forges_reply_naming_a_fifo": 300}


def _notebooks(assignment: str) -> list[Path]:
    return sorted(p for p in (HOSTILE / assignment).glob("*.ipynb") if p.stem not in ALONE)


@pytest.fixture(scope="module")
def backprop_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("hostile-backprop") / "out"
    return _grade("backprop", _notebooks("backprop"), out, RUN_TIMEOUT)


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("hostile-mnist") / "out"
    return _grade("mnist", _notebooks("mnist"), out, RUN_TIMEOUT)


@pytest.fixture(scope="module")
def alone_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    runs = {}
    for name, timeout in ALONE.items():
        attack = ATTACKS[name]
        out = tmp_path_factory.mktemp(f"hostile-{name}") / "out"
        notebook = HOSTILE / attack.assignment / f"{name}.ipynb"
        runs[name] = _grade(attack.assignment, [notebook], out, timeout)
    return runs


def _run_for(name: str, request: pytest.FixtureRequest) -> Run:
    """The run that graded ``name`` (started on first use; the mnist run starts TensorFlow)."""
    if name in ALONE:
        return request.getfixturevalue("alone_runs")[name]
    return request.getfixturevalue(f"{ATTACKS[name].assignment}_run")


def _names(assignment: str) -> list[str]:
    return [p.stem for p in _notebooks(assignment)]


# ---------------------------------------------------------------------------------------------
# The run as a whole


def test_there_are_enough_hostile_notebooks_and_they_are_built() -> None:
    assert len(build.ATTACKS) >= 22
    for attack in build.ATTACKS:
        path = HOSTILE / attack.assignment / f"{attack.name}.ipynb"
        assert path.is_file(), f"{path} missing: run .venv/bin/python {HOSTILE / 'build.py'}"
    on_disk = {p.stem for p in HOSTILE.glob("*/*.ipynb")}
    assert on_disk == set(ATTACKS), "every notebook has its entry in build.ATTACKS"


@pytest.mark.parametrize("assignment", ["backprop", "mnist"])
def test_every_submission_is_graded_and_the_run_succeeds(
    assignment: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(f"{assignment}_run")
    assert run.returncode == 0, run.output[-4000:]
    with (run.out / "grades.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["student"] for row in rows) == _names(assignment)
    for name in _names(assignment):
        results = run.results(name)
        assert set(results) >= {"score", "tests"}
        assert results["tests"], name
        for test in results["tests"]:
            assert set(test) >= {"name", "score", "max_score", "output", "visibility"}
        full = run.full(name)
        assert full["grader_error"] is None, f"{name}: {full['grader_error']}"
        assert full["isolation"] in ("bubblewrap", "namespaces")


@pytest.mark.parametrize("assignment", ["backprop", "mnist"])
def test_nothing_escaped_the_sandbox(assignment: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(f"{assignment}_run")
    assert run.connections == [], "a submission reached the loopback listener"
    assert _marker_files() == [], "a submission wrote outside its sandbox"
    assert _planted_conftests() == [], "a submission planted a conftest.py the host would use"
    assert _marker_processes() == [], "a submission left a process running after the run"


# ---------------------------------------------------------------------------------------------
# Each notebook's verdict

# name -> (function whose tests must all fail, pattern each failure message must match)
FAILS_WITH = {
    "sys_exit": ("update", r"raised SystemExit: 3"),
    "os_exit": ("update", r"exited with status 0"),
    "sigkill_self": ("update", r"SIGKILL"),
    "infinite_loop": ("update", r"did not finish within 10 s"),
    "memory_bomb": ("update", r"out of memory|MemoryError"),
    "fork_bomb": ("update", r"BlockingIOError|did not finish within 10 s|time budget"),
    "reads_input": ("update", r"EOFError"),
    "segfault": ("update", r"segmentation fault|SIGSEGV"),
    "searches_disk_for_hidden_tests": ("update", r"FOUND: \[\]"),
    "connects_to_listener": ("update", r"CONNECTED: \[\]"),
    "writes_outside_scratch": ("update", r"WROTE \(inside the sandbox\)"),
    "reads_proc_cmdline_environ": ("update", r"LEAKS: \[\]"),
    "plants_conftest": ("update", r"PLANTED \(inside the sandbox\)"),
    "ndarray_subclass": ("total_error", r"ndarray subclass"),
    "equals_everything": ("total_error", r"Anything; expected numbers"),
    "pickle_payload": ("total_error", r"Payload; expected numbers"),
    "returns_huge_array": ("total_error", r"could not be sent|larger than|file size limit"),
    "closes_protocol_pipes": ("update", r"notebook's code exited"),
    "writes_huge_file": ("update", r"File too large|larger than the limit"),
    "forges_reply_naming_a_fifo": ("update", r"refused|not a regular file|did not finish"),
    "sleep_in_default_argument": ("sigmoid", r"did not finish within|time budget"),
    "lambda_layer_payload": ("build_cnn", r"Lambda layer"),
    "fake_count_params": ("build_cnn", r"LooksLikeACNN; expected"),
    "keras_subclass_count_params": ("build_cnn", r"TinyButClaimsTheRightSize|custom"),
    "loads_mnist_test_labels": ("preprocess", r"MNIST FOUND: \[\]"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_verdict(name: str, request: pytest.FixtureRequest) -> None:
    attack = ATTACKS[name]
    run = _run_for(name, request)
    assert run.returncode == 0, f"the run grading {name} failed: {run.output[-2000:]}"
    assert (run.out / name / "results.json").is_file(), f"{name} was not graded: {run.output[-2000:]}"
    results = run.results(name)
    by_function: dict[str, list[dict[str, Any]]] = {}
    for test in results["tests"]:
        by_function.setdefault(test["name"].split(":")[0], []).append(test)

    if attack.assignment == "backprop":
        for function, tests in by_function.items():
            earned = sum(t["score"] for t in tests)
            available = sum(t["max_score"] for t in tests)
            if function in attack.loses:
                assert earned < available, f"{function} kept its points against {name}"
            else:
                assert earned == available, (
                    f"{name} attacks {', '.join(attack.loses) or 'nothing graded'} only, yet "
                    f"{function} lost points: "
                    + "; ".join(t["output"][:300] for t in tests if t["score"] < t["max_score"])
                )

    if name in FAILS_WITH:
        function, pattern = FAILS_WITH[name]
        failed = by_function[function]
        for test in failed:
            assert test["score"] == 0, f"{test['name']}: expected no points against {name}"
            assert re.search(pattern, test["output"]), (
                f"{test['name']}: expected a message matching {pattern!r}, found {test['output'][:500]!r}"
            )


def test_sleep_at_top_level_is_dropped(backprop_run: Run) -> None:
    assert backprop_run.results("sleep_at_top_level")["score"] == 18


def test_huge_output_is_capped_and_graded(backprop_run: Run) -> None:
    assert backprop_run.results("huge_output")["score"] == 18
    for path in (backprop_run.out / "huge_output").iterdir():
        assert path.stat().st_size < 2 * 2**20, f"{path} holds the flood"
    assert "output" in backprop_run.full("huge_output")["limits_hit"]


def test_fake_results_json_changes_nothing(backprop_run: Run) -> None:
    results = backprop_run.results("prints_fake_results_json")
    assert results["score"] < 18
    assert all(t["score"] <= t["max_score"] for t in results["tests"])


def test_autodiff_through_a_removed_import_hook_is_caught(backprop_run: Run) -> None:
    (test,) = [
        t for t in backprop_run.tests_of("removes_import_blocker", "backward") if "autodiff" in t["name"]
    ]
    assert test["score"] == 0, "backward() used TensorFlow's autodiff and kept the point"


def test_symlinks_in_a_forged_reply_read_nothing_from_the_host(backprop_run: Run) -> None:
    for test in backprop_run.tests_of("forges_reply_naming_a_symlink", "update"):
        assert test["score"] == 0
        assert "4242.42" not in test["output"], (
            f"{test['name']}: the checker followed a symlink out of the scratch directory and "
            f"read a host file: {test['output'][:300]!r}"
        )


def test_killing_the_parent_leaves_the_grader_running(backprop_run: Run) -> None:
    assert backprop_run.returncode == 0
    assert backprop_run.results("kills_parent")["score"] == 18
