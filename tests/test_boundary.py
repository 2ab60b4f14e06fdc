"""The trust boundary between the checking process and the sandboxed worker.

What the checking process promises itself: it opens nothing the sandbox can write, the
sandbox's disk is capped in total, a function that ran past its time limit is not run again,
a worker that dies before running any student code is the grader's failure (not the
student's), bubblewrap still works where root may not create namespaces, and the checking
process's own memory and time are watched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from grader import check_one
from grader.course import load_assignment
from grader.errors import GRADER_FAILED, CallTimeout, CheckerLimit, WorkerUnavailable
from grader.extract import extract_answer_code
from grader.sandbox import isolation as isolation_module
from grader.sandbox.client import WorkerClient
from grader.sandbox.isolation import Isolation, Limits, detect_isolation, kill_sandbox, spawn_sandboxed
from grader.submission import SandboxSubmission

IS_ROOT = os.geteuid() == 0

LOOPS = """
def sigmoid(z):
    while True:
        pass

def total_error(out_o, target):
    return 0.25
"""

LOAD_NEVER_ENDS = """
import time

class Slow:
    time.sleep(10**9)

def sigmoid(z):
    return 0.5
"""

PLANTS_LINKS = """
import os

class _Plant:
    # At load time: links and FIFOs under every name an argument or reply file could have.
    for i in range(1, 6):
        for name in (f"a{i}-1.npy", f"a{i}-2.npy", f"r{i}-1.npy", f"r{i}-1.keras"):
            try:
                os.symlink("/etc/passwd", name)
            except OSError:
                pass
        try:
            os.mkfifo(f"fifo-{i}.npy")
        except OSError:
            pass

def sigmoid(z):
    import numpy as np
    return 1 / (1 + np.exp(-z))

def listing():
    return sorted(os.listdir("."))
"""

FILLS_SCRATCH = """
def fill():
    written = 0
    chunk = b"x" * 2**20
    try:
        for index in range(10_000):
            with open(f"fill-{index}.bin", "wb") as handle:
                for _ in range(4):
                    handle.write(chunk)
                    written += len(chunk)
    except OSError as exc:
        return written, exc.errno
    return written, 0
"""


def _submission(source: str, **limits: Any) -> SandboxSubmission:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    return SandboxSubmission(extract_answer_code(nb), load_assignment("backprop"),
                             limits=Limits(**limits), isolation=detect_isolation(None))


def _confining() -> Isolation:
    level = detect_isolation(None)
    if level.level == "rlimits":
        pytest.skip("the scratch directory is a host folder at the rlimits level")
    return level


# -- time ------------------------------------------------------------------------------------


def test_a_function_that_timed_out_is_not_run_again() -> None:
    submission = _submission(LOOPS, call_seconds=2.0)
    try:
        with pytest.raises(CallTimeout) as first:
            submission.call("sigmoid", 0.0)
        began = time.monotonic()
        with pytest.raises(CallTimeout) as second:
            submission.call("sigmoid", 1.0)
        assert time.monotonic() - began < 0.5, "the second call must fail at once"
        assert submission.call("total_error", [0.0], [1.0]) == 0.25, "other functions still run"
    finally:
        submission.close()
    assert str(first.value) == (
        "sigmoid(): did not finish within 2 s — look for an infinite loop, a blocking call "
        "(input(), sleep, network) or a very slow computation")
    assert str(second.value) == (
        "sigmoid(): not run again — an earlier call did not finish within 2 s; look for an "
        "infinite loop, a blocking call (input(), sleep, network) or a very slow computation")
    assert submission.limits_hit == ["time"]


def test_a_load_that_timed_out_is_not_tried_again() -> None:
    submission = _submission(LOAD_NEVER_ENDS, call_seconds=1.0)
    try:
        with pytest.raises(CallTimeout):
            submission.call("sigmoid", 0.0)
        began = time.monotonic()
        with pytest.raises(CallTimeout) as again:
            submission.call("sigmoid", 0.0)
        assert time.monotonic() - began < 0.5
        assert not submission.defines("sigmoid")
    finally:
        submission.close()
    assert "loading the notebook: did not finish within 1 s" in str(again.value)


# -- the grader's failures are not the student's ----------------------------------------------


def test_a_worker_that_dies_before_ready_is_the_graders_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """E.g. the worker imported a decoy ``grader`` package, or cannot read the runtime. (A
    worker started on its own: tests/test_template.py has a forked one's.)"""
    monkeypatch.setenv("GRADER_SANDBOX_TEMPLATE", "0")
    decoy = "import sys; sys.stderr.write('ModuleNotFoundError: decoy grader'); sys.exit(1)"
    monkeypatch.setattr(WorkerClient, "worker_argv",
                        staticmethod(lambda scratch: [sys.executable, "-I", "-c", decoy]))
    submission = _submission("def sigmoid(z):\n    return 0.5\n", call_seconds=20.0)
    try:
        with pytest.raises(WorkerUnavailable) as info:
            submission.call("sigmoid", 0.0)
        began = time.monotonic()
        with pytest.raises(WorkerUnavailable):
            submission.call("sigmoid", 0.0)
        assert time.monotonic() - began < 0.5, "a broken worker is not started again per test"
    finally:
        submission.close()
    assert str(info.value) == GRADER_FAILED
    assert "sys.exit" not in str(info.value)
    (detail,) = submission.grader_errors
    assert "before it was ready" in detail and "decoy grader" in detail


def test_the_worker_is_started_isolated_from_the_current_folder() -> None:
    argv = WorkerClient.worker_argv(Path("/scratch"))
    assert argv[:2] == [sys.executable, "-I"]


def _modules_after(imports: str) -> set[str]:
    """The modules a fresh, isolated interpreter holds after ``import <imports>``."""
    code = f"import sys, {imports}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


def test_the_checking_process_does_not_import_the_worker() -> None:
    """The module that runs inside the sandbox is the sandbox's alone: the checking process and
    the worker import what they share from ``grader.sandbox.protocol``."""
    loaded = _modules_after("grader.check_one, grader.submission")
    assert "grader.sandbox.protocol" in loaded and "grader.sandbox.client" in loaded
    assert "grader.sandbox.worker" not in loaded


def test_the_worker_imports_no_numerical_library_before_its_first_request() -> None:
    loaded = _modules_after("grader.sandbox.worker")
    assert "grader.sandbox.protocol" in loaded
    assert not loaded & {"numpy", "tensorflow", "keras", "grader.submission"}


# -- the checking process opens nothing the sandbox can write ---------------------------------


def test_links_and_fifos_planted_in_scratch_are_never_opened() -> None:
    _confining()
    submission = _submission(PLANTS_LINKS, call_seconds=20.0)
    try:
        import numpy as np

        began = time.monotonic()
        for value in (0.0, np.zeros(3), np.ones((2, 2))):
            back = submission.call("sigmoid", value)
            assert np.array_equal(back, 1 / (1 + np.exp(-np.asarray(value))))
        assert time.monotonic() - began < 15, "a FIFO blocked the checking process"
        planted = submission.call("listing")
        assert "a1-1.npy" in planted and "fifo-1.npy" in planted, planted
        assert submission._worker.scratch is not None
        assert list(submission._worker.scratch.iterdir()) == [], (
            "the sandbox's scratch is its own tmpfs: nothing of it shows on the host")
    finally:
        submission.close()


def test_scratch_is_capped_in_total() -> None:
    _confining()
    submission = _submission(FILLS_SCRATCH, call_seconds=60.0, scratch_bytes=24 * 2**20)
    try:
        written, error = submission.call("fill")
    finally:
        submission.close()
    assert error == 28, "ENOSPC: the tmpfs is full"
    assert written <= 24 * 2**20


def test_the_scratch_limit_is_recorded() -> None:
    level = detect_isolation(None)
    lines = isolation_module.limit_details(level, Limits(scratch_bytes=2**30))
    expected = ("scratch: 1024 MiB in total (tmpfs), files up to 256 MiB" if level.level != "rlimits"
                else "scratch: files up to 256 MiB each; no total cap at this level")
    assert expected in lines


# -- bubblewrap where root may not create namespaces -------------------------------------------


@pytest.fixture
def root_mode_fails(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Simulate a container whose security profile forbids namespaces to root, where uid 65534
    may still create a user namespace (the probe of the unprivileged mode is the real one
    elsewhere; here it is taken as working, since this host's Python may not be readable by
    uid 65534)."""
    if not IS_ROOT or isolation_module._tool("bwrap") is None:
        pytest.skip("needs root and bubblewrap")

    def probe(level: str, mode: str = "") -> str | None:
        if level == "bubblewrap" and mode == "root":
            return "bubblewrap (root mode) does not work here: Operation not permitted"
        return None

    caches = (isolation_module._probe, isolation_module._bubblewrap_mode,
              isolation_module._try_level)
    for cached in caches:
        cached.cache_clear()
    monkeypatch.setattr(isolation_module, "_try_level", probe)
    yield
    monkeypatch.undo()
    for cached in caches:
        cached.cache_clear()


def _unprivileged_works() -> bool:
    done = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                           "bwrap", "--unshare-user", "--unshare-net", "--ro-bind", "/", "/",
                           "/bin/true"], capture_output=True, timeout=30)
    return done.returncode == 0


def test_bubblewrap_falls_back_to_an_unprivileged_user_namespace(root_mode_fails: None) -> None:
    chosen = detect_isolation("bubblewrap")
    assert (chosen.level, chosen.mode) == ("bubblewrap", "unprivileged")
    assert (
        "bubblewrap run as uid 65534 in an unprivileged user namespace (root may not create "
        "namespaces here: bubblewrap (root mode) does not work here: Operation not permitted)"
    ) in chosen.details
    assert detect_isolation().level == "bubblewrap", "still the strongest level"


@pytest.mark.parametrize("mode", ["unprivileged", "unprivileged-shared-proc"])
def test_unprivileged_bubblewrap_confines_like_the_root_mode(tmp_path: Path, mode: str) -> None:
    if not IS_ROOT or isolation_module._tool("bwrap") is None or not _unprivileged_works():
        pytest.skip("needs root, bubblewrap, and user namespaces for uid 65534")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    proc = spawn_sandboxed(
        ["/bin/sh", "-c", f"id -u; cat {secret} 2>/dev/null || echo hidden; "
                          "cat /proc/net/dev | grep -c : ; echo x > inside && cat inside; "
                          "for p in /planted /dev/planted /etc/planted; do "
                          "touch $p 2>/dev/null && echo writable || echo read-only; done; "
                          "head -c 100000000 /dev/zero > /dev/shm/f 2>/dev/null || "
                          "echo shm-capped"],
        scratch=scratch, readable=[], env={"PATH": "/usr/bin:/bin"}, limits=Limits(),
        isolation=Isolation("bubblewrap", (), mode))
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        kill_sandbox(proc)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["65534", "hidden", "1", "x", "read-only", "read-only",
                                    "read-only", "shm-capped"], "only the loopback device"
    assert list(scratch.iterdir()) == []


# -- the checking process's own limits --------------------------------------------------------


class _Watched:
    current_input = "the value build_mlp() returned"


def test_the_checker_watchdog_fails_the_running_test_naming_the_input() -> None:
    gave_up: list[tuple[str, str]] = []
    exits: list[int] = []
    watchdog = check_one.CheckerWatchdog(
        _Watched(), memory_bytes=1, seconds=3600,  # type: ignore[arg-type]
        give_up=lambda limit, message: gave_up.append((limit, message)), grace=600,
        exit=exits.append)
    caught: CheckerLimit | None = None
    watchdog.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except CheckerLimit as exc:
        caught = exc
    finally:
        watchdog.stop()
        watchdog.join(timeout=5)
    assert caught is not None, "the watchdog did not interrupt the checking process"
    assert str(caught) == (
        "the value build_mlp() returned: the grader stopped checking it — the checking process "
        "went over its own memory limit (0 MB) while handling it; this assignment's values and "
        "models need far less, so check their sizes (units, filters, array shapes)")
    assert watchdog.hits == ["checker-memory"]
    assert not threading.current_thread().daemon


@pytest.mark.slow
def test_the_checkers_own_memory_limit_is_recorded_and_never_the_graders_failure(
        tmp_path: Path) -> None:
    """A limit so low that the checking process is over it from the start: whatever it was doing
    fails with the message, the limit is in the result, and the run goes on (exit 0)."""
    import json

    from tests.conftest import SAMPLES, run_grader

    out = tmp_path / "out"
    done = run_grader("grade", str(SAMPLES / "backprop" / "reference.ipynb"), "--assignment",
                      "backprop", "--out", str(out), "--quiet",
                      env={"GRADER_CHECKER_MEMORY_MB": "1"}, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    full = json.loads((out / "reference" / "result.full.json").read_text())
    assert "checker-memory" in full["limits_hit"]
    assert full["grader_error"] is None
    hit = [t for t in full["tests"] if t["status"] != "passed"]
    assert hit, "the test running when the limit was hit fails"
    for test in hit:
        assert "the checking process went over its own memory limit (1 MB)" in test["message"]
