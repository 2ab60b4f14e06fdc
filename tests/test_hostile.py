"""Hostile submissions, graded end to end through the real command line.

Every notebook in ``tests/files/hostile/<assignment>/`` attacks the grader (see ``build.py``
there). One ``grader grade`` run per assignment grades them all among honest classmates, two
at a time (a notebook that could stall the checking process would get a run of its own, see
``ALONE``); then each notebook's verdict is checked: the run went on, the attacked function
lost its points for the right reason, the functions it does not touch kept theirs, and nothing
the attack tried to do outside the sandbox happened (no file planted or changed, no connection
made, no process left behind). The classmates' results are compared with a run of the
classmates alone: an attacker must change nothing of theirs.
The mnist run needs the real data (MNIST_NPZ); the whole module needs bubblewrap or namespace
isolation, since these notebooks really do fork-bomb and kill processes.

The per-call and per-submission time limits are shortened through GRADER_CALL_SECONDS and
GRADER_SUBMISSION_SECONDS, and the memory limit through GRADER_MEMORY_MB, so that the run
takes minutes.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import re
import shutil
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
    "backprop": {"GRADER_CALL_SECONDS": "10", "GRADER_SUBMISSION_SECONDS": "60",
                 "GRADER_MEMORY_MB": "2048", "GRADER_SCRATCH_MB": "256"},
    "mnist": {"GRADER_CALL_SECONDS": "120", "GRADER_SUBMISSION_SECONDS": "600",
              "GRADER_SCRATCH_MB": "256"},
}
RUN_TIMEOUT = 1800
CHECKER_PEAK_MB = {"backprop": 1024, "mnist": 3072}
"""The most memory a checking process may reach under these attacks (its own limit,
GRADER_CHECKER_MEMORY_MB, is 6144 MB by default)."""
TARGET = Path(build.TARGET_TREE)
SUITES = ROOT / "autograde_tests"
# Honest classmates graded with the attackers (nothing of theirs may change): the reference
# solution for backprop, the untouched released notebook for mnist (so that nothing trains).
CLASSMATES = {
    "backprop": ROOT / "tests" / "files" / "samples" / "backprop" / "reference.ipynb",
    "mnist": ROOT / "assignments" / "mnist" / "mnist.ipynb",
}
CLASSMATE_NAMES = ("classmate_a", "classmate_b")
TIMING_FIELDS = {"seconds"}


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


def _snapshot(*trees: Path) -> dict[str, str]:
    """Path → hash of every file (and link target) under ``trees``."""
    found: dict[str, str] = {}
    for tree in trees:
        for path in sorted(tree.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            if path.is_symlink():
                found[str(path)] = "link:" + os.readlink(path)
            elif path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[str(path)] = "dir"
    return found


def _plant_target_tree() -> None:
    """The files attacks point links at; the run must leave them byte for byte."""
    shutil.rmtree(TARGET, ignore_errors=True)
    TARGET.mkdir(mode=0o755)
    (TARGET / "victim.txt").write_text("must stay as it is\n")
    np.save(TARGET / "victim.npy", np.arange(4.0))


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
    changed: list[str]
    """Files of the hidden suites and the target tree that the run created, changed or removed."""

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
    from grader.course import load_assignment
    from grader.data import find_data

    found = find_data(load_assignment("mnist"), "mnist")
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
    _plant_target_tree()
    before = _snapshot(SUITES, TARGET)
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
    after = _snapshot(SUITES, TARGET)
    changed = sorted(path for path in before.keys() | after.keys()
                     if before.get(path) != after.get(path))
    shutil.rmtree(TARGET, ignore_errors=True)
    return Run(assignment, out, returncode, output, connections, changed)


# Graded in a run of its own, with a shorter time limit: a checker that blocks on it would
# otherwise hold up the verdicts of every other notebook.
# (Replies cross as messages on a pipe and no path in them is ever opened, so none needs it now.)
ALONE: dict[str, float] = {}


def _notebooks(assignment: str) -> list[Path]:
    return sorted(p for p in (HOSTILE / assignment).glob("*.ipynb") if p.stem not in ALONE)


@pytest.fixture(scope="module")
def classmates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("classmates")
    found: dict[str, list[Path]] = {}
    for assignment, source in CLASSMATES.items():
        (folder / assignment).mkdir()
        found[assignment] = []
        for name in CLASSMATE_NAMES:
            copy = folder / assignment / f"{name}.ipynb"
            shutil.copyfile(source, copy)
            found[assignment].append(copy)
    return found


@pytest.fixture(scope="module")
def backprop_run(tmp_path_factory: pytest.TempPathFactory, classmates: dict[str, list[Path]]) -> Run:
    out = tmp_path_factory.mktemp("hostile-backprop") / "out"
    return _grade("backprop", _notebooks("backprop") + classmates["backprop"], out, RUN_TIMEOUT)


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory, classmates: dict[str, list[Path]]) -> Run:
    out = tmp_path_factory.mktemp("hostile-mnist") / "out"
    return _grade("mnist", _notebooks("mnist") + classmates["mnist"], out, RUN_TIMEOUT)


@pytest.fixture(scope="module")
def classmates_alone(tmp_path_factory: pytest.TempPathFactory,
                     classmates: dict[str, list[Path]]) -> dict[str, Run]:
    """The classmates graded without any attacker: what their results must be."""
    runs = {}
    for assignment, notebooks in classmates.items():
        out = tmp_path_factory.mktemp(f"classmates-{assignment}") / "out"
        runs[assignment] = _grade(assignment, notebooks, out, RUN_TIMEOUT)
    return runs


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
    assert len(build.ATTACKS) >= 30
    for attack in build.ATTACKS:
        path = HOSTILE / attack.assignment / f"{attack.name}.ipynb"
        assert path.is_file(), f"{path} missing: run .venv/bin/python {HOSTILE / 'build.py'}"
    on_disk = {p.stem for assignment in CLASSMATES for p in (HOSTILE / assignment).glob("*.ipynb")}
    assert on_disk == set(ATTACKS), "every notebook has its entry in build.ATTACKS"


@pytest.mark.parametrize("assignment", ["backprop", "mnist"])
def test_every_submission_is_graded_and_the_run_succeeds(
    assignment: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(f"{assignment}_run")
    assert run.returncode == 0, run.output[-4000:]
    with (run.out / "grades.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["student"] for row in rows) == sorted(_names(assignment) + list(CLASSMATE_NAMES))
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
    assert run.changed == [], "the run changed files outside --out: the hidden suites or the target tree"


def _without_timing(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_timing(v) for k, v in data.items() if k not in TIMING_FIELDS}
    if isinstance(data, list):
        return [_without_timing(v) for v in data]
    return data


@pytest.mark.parametrize("assignment", ["backprop", "mnist"])
def test_attackers_change_nothing_of_their_classmates(
    assignment: str, request: pytest.FixtureRequest, classmates_alone: dict[str, Run]
) -> None:
    run: Run = request.getfixturevalue(f"{assignment}_run")
    alone = classmates_alone[assignment]
    assert alone.returncode == 0, alone.output[-2000:]
    for name in CLASSMATE_NAMES:
        assert _without_timing(run.full(name)) == _without_timing(alone.full(name)), name


@pytest.mark.parametrize("assignment", ["backprop", "mnist"])
def test_the_checking_process_stays_within_its_memory(
    assignment: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(f"{assignment}_run")
    peaks = {}
    for log in (run.out / ".logs").glob("*.log"):
        found = re.findall(r"checker: peak memory (\d+) MB", log.read_text(errors="replace"))
        if found:
            peaks[log.stem] = int(found[-1])
    assert len(peaks) >= len(_names(assignment)), sorted(peaks)
    worst = max(peaks, key=lambda name: peaks[name])
    assert peaks[worst] < CHECKER_PEAK_MB[assignment], f"{worst}: {peaks[worst]} MB"


def test_a_notebook_whose_every_function_loops_costs_one_limit_per_function(
        backprop_run: Run) -> None:
    full = backprop_run.full("every_function_loops")
    assert full["limits_hit"] == ["time"]
    functions = {t["function"] for t in full["tests"]}
    # Each function runs into its call limit once; its other tests fail at once.
    assert full["seconds"] < len(functions) * 10 + 30, full["seconds"]
    for test in full["tests"]:
        assert re.search(r"did not finish within \d+ s|not run again|time budget", test["message"]), test


def test_the_private_tmp_and_shm_are_capped(backprop_run: Run) -> None:
    (test, *_) = backprop_run.tests_of("fills_tmp_and_shm", "update")
    found = re.search(r"/tmp=(\d+)MB\(28\) /dev/shm=(\d+)MB\(28\)", test["output"])
    assert found, test["output"][:500]
    assert int(found.group(1)) <= 256 and int(found.group(2)) <= 64


def test_a_scratch_disk_filler_stops_at_the_cap(backprop_run: Run) -> None:
    (test, *_) = backprop_run.tests_of("fills_scratch_disk", "update")
    found = re.search(r"FILLED (\d+) MB: No space left on device", test["output"])
    assert found, test["output"][:500]
    assert int(found.group(1)) <= 256

# ---------------------------------------------------------------------------------------------
# Each notebook's verdict

# name -> (function whose tests must all fail, pattern each failure message must match)
FAILS_WITH = {
    "sys_exit": ("update", r"raised SystemExit: 3"),
    "os_exit": ("update", r"exited with status 0"),
    "sigkill_self": ("update", r"SIGKILL"),
    "infinite_loop": ("update", r"did not finish within 10 s|not run again"),
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
    "returns_huge_array": ("total_error", r"is an array of \d+ MB; the grader accepts arrays up to"),
    "closes_protocol_pipes": ("update", r"notebook's code exited"),
    "writes_huge_file": ("update", r"File too large|larger than the limit|No space left on device"),
    "forges_reply_naming_a_fifo": ("update", r"malformed reply|did not finish|not run again"),
    "forges_reply_with_many_references": (
        "update", r"refers to more than 512 MB of array data|did not finish|not run again"),
    "forges_deeply_nested_reply": ("update", r"malformed reply|did not finish|not run again"),
    "fills_scratch_disk": ("update", r"FILLED \d+ MB: No space left on device"),
    "every_function_loops": ("update", r"did not finish within \d+ s|not run again|time budget"),
    "every_function_sleeps": ("update", r"did not finish within \d+ s|not run again|time budget"),
    "fills_tmp_and_shm": ("update", r"FILLED /tmp=\d+MB\(28\) /dev/shm=\d+MB\(28\)"),
    "zip_bomb_config": ("build_mlp", r"the saved model unpacks to 320 MB"),
    "declares_huge_dense": ("build_mlp", r"declares about [\d,]+ parameters"),
    "declares_huge_gru": ("build_gru", r"declares about [\d,]+ parameters"),
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
