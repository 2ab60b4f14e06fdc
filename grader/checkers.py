"""Checking processes: where each submission is graded, outside the sandbox.

A checking process (``python -I -m grader.check_one``) extracts a submission, starts its
sandboxed worker, runs the hidden suite against it and writes the results; it never runs
student code. Starting one costs an interpreter and the imports of TensorFlow, pytest and
matplotlib, so the local backend keeps one **warm** process per ``--jobs`` worker
(:class:`WarmChecker`, ``--serve`` mode) and sends it one submission after another. Each
submission still gets its own fresh sandbox and its own log; between submissions the process
forgets what the last one left (:func:`grader.check_one.forget`), and it is replaced after
``GRADER_CHECKER_JOBS`` submissions (default 50; 1 gives a fresh process per submission), after
any submission that hit its own limits or broke the grader, and when its memory has grown past
half its limit.

Both backends share this module: the local one (:func:`grader.runner.run`) and each Ray task
(:mod:`grader.ray_backend`), which uses a cold process per task.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from grader.check_one import Job, failed_result, write_outputs
from grader.results import SubmissionResult
from grader.rundir import RunDir, notebook_sha256

__all__ = ["Interrupted", "WarmChecker", "check_seconds", "checker_jobs", "grade_in_subprocess",
           "split_finished", "stop_all"]

JOBS_ENV = "GRADER_CHECKER_JOBS"
DEFAULT_JOBS = 50


def check_seconds() -> float:
    """Wall-clock limit of one submission in a checking process (GRADER_CHECK_SECONDS, default
    3600 s): the grader's own safety net should a submission manage to stall the checker."""
    return float(os.environ.get("GRADER_CHECK_SECONDS", 3600))


def checker_jobs() -> int:
    """How many submissions one warm checking process grades before it is replaced."""
    try:
        return max(1, int(os.environ.get(JOBS_ENV, DEFAULT_JOBS)))
    except ValueError:
        return DEFAULT_JOBS


class Interrupted(Exception):
    """The run is stopping (Ctrl-C): a checking process was killed for that, not by its
    submission, so no result is written for it."""


class _Checkers:
    """The running checking processes, so that Ctrl-C can kill their process groups."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self.stopping = False

    def start(self, argv: list[str], **options: object) -> subprocess.Popen[bytes]:
        from grader.sandbox.isolation import die_with_parent

        with self._lock:
            if self.stopping:
                raise Interrupted
            # Its own process group (killed whole), and it dies with the thread that waits for
            # it, so that a killed grader or Ray worker leaves no orphan grading on.
            proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
                argv, start_new_session=True, preexec_fn=die_with_parent,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),  # -I ignores PYTHON* variables
                **options)
            self._running.add(proc)
            return proc

    def finished(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.discard(proc)

    def stop_all(self) -> None:
        with self._lock:
            self.stopping = True
            for proc in self._running:
                _kill_group(proc)


_CHECKERS = _Checkers()


def stop_all() -> None:
    """Ctrl-C: kill every checking process of this run; no new one starts."""
    _CHECKERS.stop_all()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass


def _argv(*extra: str) -> list[str]:
    """``python -I``: the folder the grader is started from, and PYTHON* variables, never
    change which code grades."""
    return [sys.executable, "-I", "-m", "grader.check_one", *extra]


def _broken(job: Job, error: str) -> SubmissionResult:
    result = failed_result(job, error)
    write_outputs(result, job.out_dir)
    return result


def _log_tail(job: Job) -> str:
    log = RunDir(job.out_dir).log_path(job.student)
    try:
        return log.read_text(errors="replace")[-4000:]
    except OSError:
        return ""


def _load_result(job: Job) -> SubmissionResult | None:
    path = RunDir(job.out_dir).result_path(job.student)
    return SubmissionResult.load(path) if path.exists() else None


def grade_in_subprocess(job: Job) -> SubmissionResult:
    """Grade one submission in a fresh checking process; the grader's own crash is recorded."""
    run_dir = RunDir(job.out_dir)
    run_dir.logs.mkdir(parents=True, exist_ok=True)
    # Named for this process, so that a sweep after a killed run removes it (grader._cleanup).
    with tempfile.NamedTemporaryFile("w", prefix=f"grader-job-{os.getpid()}-", suffix=".json",
                                     delete=False) as handle:
        json.dump(job.spec(), handle)
    limit = check_seconds()
    try:
        with open(run_dir.log_path(job.student), "wb") as sink:
            proc = _CHECKERS.start(_argv(handle.name), stdout=sink, stderr=subprocess.STDOUT)
            try:
                code = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait()
                sink.write(f"\nchecking process killed after {limit:.0f} s\n".encode())
                code = -signal.SIGKILL
            finally:
                _CHECKERS.finished(proc)
    finally:
        os.unlink(handle.name)
    if _CHECKERS.stopping:
        raise Interrupted
    result = _load_result(job) if code == 0 else None
    return result or _broken(job, f"checking process exited with {code}:\n{_log_tail(job)}")


class WarmChecker:
    """One long-lived checking process, fed one submission at a time; not thread-safe (each
    worker thread of a run has its own).

    The protocol is one JSON line each way on the process's stdin and stdout:
    ``{"spec": job, "log": path, "next": job or null}`` in, ``{"pid": ..., "retire": bool}``
    out once the results are written. The process writes the submission's log itself, to
    ``path``; ``next`` is the submission it will get next, whose sandbox it starts early."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._startup: IO[bytes] | None = None
        self.served = 0
        self.started = 0
        """How many processes this checker has started."""

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            # What the process says before its first submission (import warnings, a crash at
            # start-up) goes to a file of its own, quoted should it die.
            self._startup = tempfile.TemporaryFile(prefix=f"grader-job-{os.getpid()}-")
            self._proc = _CHECKERS.start(_argv("--serve"), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._startup)
            self.served = 0
            self.started += 1
        return self._proc

    def _startup_text(self) -> str:
        if self._startup is None:
            return ""
        self._startup.seek(0)
        return self._startup.read()[-4000:].decode(errors="replace")

    def grade(self, job: Job, following: Job | None = None) -> SubmissionResult:
        """Grade ``job``; ``following``, when known, is the submission this process grades
        next: its sandbox starts while ``job``'s outputs are being written."""
        run_dir = RunDir(job.out_dir)
        run_dir.logs.mkdir(parents=True, exist_ok=True)
        log = run_dir.log_path(job.student)
        proc = self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        request = json.dumps({"spec": job.spec(), "log": str(log),
                              "next": following.spec() if following else None}) + "\n"
        limit = check_seconds()
        try:
            proc.stdin.write(request.encode())
            proc.stdin.flush()
            reply = _read_line(proc.stdout, time.monotonic() + limit)
        except OSError:
            reply = b""
        if reply is None:  # past the limit: the process goes, with whatever it was doing
            self._discard()
            with open(log, "ab") as sink:
                sink.write(f"\nchecking process killed after {limit:.0f} s\n".encode())
            if _CHECKERS.stopping:
                raise Interrupted
            return _broken(job, f"checking process killed after {limit:.0f} s:\n"
                                f"{_log_tail(job)}")
        if not reply:  # it died
            code = proc.wait()
            startup = self._startup_text()
            self._discard()
            if _CHECKERS.stopping:
                raise Interrupted
            return _broken(job, f"checking process exited with {code}:\n{_log_tail(job)}"
                                + (f"\nbefore its first submission:\n{startup}" if startup
                                   else ""))
        self.served += 1
        answer = json.loads(reply)
        if answer.get("retire") or self.served >= checker_jobs():
            self.close()
        return _load_result(job) or _broken(
            job, f"checking process wrote no result:\n{_log_tail(job)}")

    def _discard(self) -> None:
        if self._proc is not None:
            _kill_group(self._proc)
        self.close()

    def close(self) -> None:
        """End the process (it exits at the end of its input) and forget it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                _kill_group(proc)
                proc.wait()
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()
                _CHECKERS.finished(proc)
        if self._startup is not None:
            self._startup.close()
            self._startup = None


def _read_line(stream: IO[bytes], deadline: float) -> bytes | None:
    """One line from ``stream`` (b"" at its end), or None past ``deadline``. Reads byte by
    byte from the file descriptor, so that nothing sits unread in a buffer."""
    fd = stream.fileno()
    line = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if not ready:
            if _CHECKERS.stopping:
                return b""
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            return b""
        line += chunk
        if chunk == b"\n":
            return bytes(line)


def _already_graded(out: Path, job: Job) -> bool:
    """A finished result of this assignment and profile, for the notebook's current content
    (as recorded when it was graded; without a record, for the same path)."""
    run_dir = RunDir(out)
    path = run_dir.result_path(job.student)
    if not path.exists():
        return False
    try:
        previous = SubmissionResult.load(path)
    except (ValueError, TypeError, KeyError):
        return False
    if (previous.assignment != job.assignment or previous.profile != job.profile
            or previous.grader_error is not None):
        return False
    record = run_dir.record(job.student)
    if record is None:
        return previous.notebook == str(job.notebook)
    return record.sha256 is not None and record.sha256 == notebook_sha256(job.notebook)


def split_finished(jobs: list[Job], *, force: bool,
                   on_done: Callable[[SubmissionResult, bool], None] | None = None,
                   ) -> tuple[dict[str, SubmissionResult], list[Job]]:
    """The results already on disk (reported to ``on_done`` as skipped) and the jobs left.
    Every backend resumes through this."""
    results: dict[str, SubmissionResult] = {}
    todo = []
    for job in jobs:
        if not force and _already_graded(job.out_dir, job):
            results[job.student] = SubmissionResult.load(RunDir(job.out_dir).result_path(
                job.student))
            if on_done:
                on_done(results[job.student], True)
        else:
            todo.append(job)
    return results, todo
