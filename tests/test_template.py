"""Workers forked from a template sandbox (grader/sandbox/template.py).

Each forked worker must be confined as a sandbox started on its own is; two forked from one
template at once must share nothing (files, processes, terminals, sockets); nothing one
submission did may reach the next; killing a worker must end everything it started and leave
the template able to fork again; and a template that cannot start must not be used. Every
check runs real student code in real forked workers.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import nbformat
import psutil
import pytest

import grader
from grader.course import load_assignment
from grader.errors import GRADER_FAILED, WorkerCrashed, WorkerUnavailable
from grader.extract import extract_answer_code
from grader.sandbox import forking
from grader.sandbox.forking import ForkedWorker
from grader.sandbox.isolation import Limits, detect_isolation
from grader.submission import SandboxSubmission

ISOLATION = detect_isolation(None)
pytestmark = pytest.mark.skipif(
    not forking.usable(ISOLATION, []),
    reason=f"templates need bubblewrap run as root; here: {ISOLATION.level} {ISOLATION.mode}")

STUDENT = r'''
import builtins, json, os, signal, socket, subprocess, sys, time
import numpy as np

def sigmoid(x):
    return 1 / (1 + np.exp(-x))

def _status():
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields

def facts():
    status = _status()
    return json.dumps({
        "uid": status["Uid"], "gid": status["Gid"], "groups": status["Groups"],
        "caps": {k: status[k][0] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
        "no_new_privs": status["NoNewPrivs"],
        "pid": os.getpid(),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "hostname": socket.gethostname(),
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "cwd": os.getcwd(),
    })

def plant():
    """Leave traces everywhere a classmate could look."""
    for folder in (".", "/tmp", "/dev/shm"):
        with open(os.path.join(folder, "planted"), "w") as f:
            f.write("from the first student")
    global SLEEPER, TERMINAL, LISTENER
    SLEEPER = subprocess.Popen(["sleep", "300"])
    TERMINAL = os.openpty()
    LISTENER = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    LISTENER.bind("\0grader-template-test")
    LISTENER.listen(1)
    np.sum = lambda *a, **k: "patched by the first student"
    builtins.PLANTED = True
    return json.dumps({"sleeper": SLEEPER.pid, "terminals": sorted(os.listdir("/dev/pts"))})

def look():
    """What this worker sees of the traces."""
    seen = {folder: sorted(os.listdir(folder)) for folder in (".", "/tmp", "/dev/shm")}
    seen["terminals"] = sorted(os.listdir("/dev/pts"))
    seen["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    try:
        os.kill(3, signal.SIGKILL)
        seen["kill_pid_3"] = "sent"
    except OSError as exc:
        seen["kill_pid_3"] = type(exc).__name__
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect("\0grader-template-test")
        seen["abstract_socket"] = "connected"
    except OSError as exc:
        seen["abstract_socket"] = type(exc).__name__
    seen["np_sum"] = str(np.sum([1, 2]))
    seen["builtins"] = hasattr(builtins, "PLANTED")
    try:
        open("/etc/planted", "w")
        seen["etc"] = "written"
    except OSError as exc:
        seen["etc"] = type(exc).__name__
    return json.dumps(seen)

def listing(folder):
    try:
        return json.dumps(sorted(os.listdir(folder)))
    except OSError as exc:
        return json.dumps(type(exc).__name__)

def leave_a_stubborn_child():
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.setsid()
        while True:
            time.sleep(1)
    return "started"

def exit_with_seven():
    os._exit(7)

def segfault():
    import ctypes
    ctypes.string_at(0)
'''


def _submission(source: str = STUDENT, call_seconds: float = 30.0,
                hidden: tuple[Path, ...] = ()) -> SandboxSubmission:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    return SandboxSubmission(extract_answer_code(nb), load_assignment("backprop"),
                             limits=Limits(call_seconds=call_seconds), isolation=ISOLATION,
                             hidden=hidden)


def _call_json(submission: SandboxSubmission, function: str) -> dict:
    return json.loads(submission.call(function))


def test_a_forked_worker_is_confined_as_a_sandbox_started_on_its_own() -> None:
    submission = _submission()
    try:
        facts = _call_json(submission, "facts")
        assert isinstance(submission._worker._proc, ForkedWorker)
    finally:
        submission.close()
    assert facts["uid"] == ["65534"] * 4 and facts["gid"] == ["65534"] * 4
    assert facts["groups"] == []
    assert facts["caps"] == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"),
                                          "0000000000000000")
    assert facts["no_new_privs"] == ["1"]
    # pid 2 under its own pid 1: the template and the host are out of sight
    assert (facts["pid"], facts["processes"]) == (2, [1, 2])
    assert facts["hostname"] == "sandbox"
    assert facts["interfaces"] == ["lo"]


def test_two_workers_forked_at_once_share_nothing() -> None:
    first, second = _submission(), _submission()
    try:
        planted = _call_json(first, "plant")
        seen = _call_json(second, "look")
        # the first student is still running, its traces still there for itself
        own = _call_json(first, "look")
        assert isinstance(first._worker._proc, ForkedWorker)
        assert isinstance(second._worker._proc, ForkedWorker)
        assert first._worker._proc.template is second._worker._proc.template
    finally:
        first.close()
        second.close()
    assert planted["sleeper"] == 3 and len(planted["terminals"]) == 2  # ptmx and its pty
    assert "planted" in own["."] and "planted" in own["/tmp"] and own["/dev/shm"] == ["planted"]
    assert own["processes"] == [1, 2, 3] and own["abstract_socket"] == "connected"
    assert "planted" not in seen["."]
    assert "planted" not in seen["/tmp"]
    assert seen["/dev/shm"] == []
    assert seen["terminals"] == ["ptmx"]
    assert seen["processes"] == [1, 2]
    assert seen["kill_pid_3"] == "ProcessLookupError"
    assert seen["abstract_socket"] == "ConnectionRefusedError"
    assert seen["etc"] in ("OSError", "PermissionError")


def test_nothing_of_one_submission_reaches_the_next() -> None:
    first = _submission()
    try:
        _call_json(first, "plant")
        assert _call_json(first, "look")["np_sum"] == "patched by the first student"
    finally:
        first.close()
    second = _submission()
    try:
        seen = _call_json(second, "look")
    finally:
        second.close()
    assert seen["np_sum"] == "3"
    assert seen["builtins"] is False
    assert "planted" not in seen["."] and "planted" not in seen["/tmp"]


def _template_descendants(worker: ForkedWorker) -> list[psutil.Process]:
    """Every process under the template's bubblewrap but bubblewrap's own."""
    proc = worker.template.proc
    assert proc is not None
    return [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() != "bwrap"]


def test_a_kill_ends_everything_the_worker_started_and_the_template_forks_again() -> None:
    submission = _submission()
    try:
        assert submission.call("leave_a_stubborn_child") == "started"
        worker = submission._worker._proc
        assert isinstance(worker, ForkedWorker)
        # bubblewrap's child (the template), the worker's pid 1, the worker, its child
        during = _template_descendants(worker)
        assert len(during) == 4, during
        assert sum(p.uids().real == 65534 for p in during) == 2
    finally:
        submission.close()
    deadline = time.monotonic() + 10
    while len(after := _template_descendants(worker)) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p.uids().real for p in after] == [0], "only the template is left"
    assert worker.returncode == 128 + 9
    again = _submission()
    try:
        assert again.call("sigmoid", 0.0) == 0.5
        assert again._worker._proc.template is worker.template
    finally:
        again.close()


def _crash_message(function: str) -> str:
    """What a fresh forked worker's ``function()`` raises."""
    submission = _submission()
    try:
        with pytest.raises(WorkerCrashed) as crashed:
            submission.call(function)
    finally:
        submission.close()
    return str(crashed.value)


def test_a_forked_workers_exit_is_reported_as_a_started_ones() -> None:
    assert _crash_message("exit_with_seven") == (
        "exit_with_seven(): the notebook's code exited with status 7 (sys.exit or os._exit in "
        "the notebook's code?)")
    assert _crash_message("segfault") == (
        "segfault(): the notebook's code crashed with a segmentation fault (SIGSEGV)")


def test_a_template_that_cannot_start_is_not_used(monkeypatch: pytest.MonkeyPatch,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(forking, "_templates", {})
    monkeypatch.setattr(forking, "_broken", set())
    monkeypatch.setattr(forking, "TEMPLATE_MODULE", "grader.sandbox.no_such_module")
    for _ in range(2):
        submission = _submission()
        try:
            assert submission.call("sigmoid", 0.0) == 0.5
            assert isinstance(submission._worker._proc, subprocess.Popen)
        finally:
            submission.close()
    assert forking._templates == {}
    err = capfd.readouterr().err
    # said once, with the template's own error, and not tried again for the second submission
    assert err.count("grader: a template sandbox could not start (its first message was not "
                     "'ready'; its stderr: ") == 1
    assert "No module named grader.sandbox.no_such_module); each worker is started on its " \
           "own" in err


def test_a_template_whose_forks_cannot_start_is_not_used(
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """The template forks one worker and waits for its ready line before any student's: here
    a memory limit no Python can start under."""
    monkeypatch.setattr(forking, "_templates", {})
    monkeypatch.setattr(forking, "_broken", set())
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(STUDENT)])
    submission = SandboxSubmission(extract_answer_code(nb), load_assignment("backprop"),
                                   limits=Limits(call_seconds=30.0, memory_bytes=2**20),
                                   isolation=ISOLATION)
    try:
        with pytest.raises(WorkerUnavailable):  # started on its own, it fails too
            submission.call("sigmoid", 0.0)
        assert isinstance(submission._worker._proc, subprocess.Popen | None)
    finally:
        submission.close()
    assert forking._templates == {}
    err = capfd.readouterr().err
    assert "grader: a template sandbox could not start (a worker forked from it did not " \
           "start: " in err


def test_a_template_that_ends_under_a_worker_is_the_graders_failure() -> None:
    submission = _submission()
    try:
        assert submission.call("sigmoid", 0.0) == 0.5
        worker = submission._worker._proc
        assert isinstance(worker, ForkedWorker)
        (template,) = [p for p in _template_descendants(worker) if p.uids().real == 0
                       and p.ppid() not in {q.pid for q in _template_descendants(worker)}]
        template.kill()
        template.wait(timeout=10)
        assert worker.template.proc is not None
        worker.template.proc.wait(timeout=10)  # bubblewrap, as the template's sandbox ends
        with pytest.raises(WorkerUnavailable) as lost:
            submission.call("sigmoid", 0.0)
    finally:
        submission.close()
    assert str(lost.value) == GRADER_FAILED
    assert "the template sandbox this worker was forked from ended" in lost.value.detail
    assert submission.grader_errors
    again = _submission()  # a new template
    try:
        assert again.call("sigmoid", 0.0) == 0.5
        assert again._worker._proc.template is not worker.template
    finally:
        again.close()


def test_templates_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADER_SANDBOX_TEMPLATE", "0")
    submission = _submission()
    try:
        facts = _call_json(submission, "facts")
        assert isinstance(submission._worker._proc, subprocess.Popen)
    finally:
        submission.close()
    assert (facts["pid"], facts["uid"]) == (2, ["65534"] * 4)


def test_one_template_serves_submissions_whose_sandboxes_have_the_same_root(
        tmp_path: Path) -> None:
    """Each submission hides its own folders, which no sandbox sees anyway: they share one
    template. A hidden path inside what the sandbox reads changes its root: another template,
    where that path is covered."""
    inside = Path(grader.__file__).parent / "templates"
    assert inside.is_dir()
    workers = []
    seen = []
    try:
        for hidden in ((tmp_path / "a", tmp_path / "out-a"), (tmp_path / "b",),
                       (tmp_path / "c", inside)):
            submission = _submission(hidden=hidden)
            workers.append(submission)
            seen.append(json.loads(submission.call("listing", str(inside))))
        templates = [w._worker._proc.template for w in workers]
    finally:
        for submission in workers:
            submission.close()
    assert templates[0] is templates[1] and templates[2] is not templates[0]
    assert seen[0] == seen[1] == sorted(p.name for p in inside.iterdir())
    assert seen[2] == "PermissionError"


def test_a_reply_left_unread_is_never_taken_for_another_requests() -> None:
    """A thread interrupted (the checking process's own limit) after it sent a request and
    before it read the reply leaves that reply in the socket: the next request skips it."""
    first = _submission()
    try:
        assert first.call("sigmoid", 0.0) == 0.5
        worker = first._worker._proc
        assert isinstance(worker, ForkedWorker)
        template = worker.template
        with template.lock:  # a request whose reply nobody reads
            template.control.send(b"kill " + template._number() + b" 1")
    finally:
        first.close()  # its kill request reads past the unread reply
    assert worker.returncode == 128 + 9
    second = _submission()
    try:
        assert _call_json(second, "facts")["pid"] == 2
        assert second._worker._proc.template is template
    finally:
        second.close()
