"""Grade a submission in a checking process: extract → sandbox → hidden suite → result.

Run as ``python -m grader.check_one JOB.json`` (one submission, then exit) or ``--serve`` (a
warm process grading one submission after another: :mod:`grader.checkers`); the student's code
never runs in this process, only in the sandboxed worker it starts for each submission.

This process has limits of its own (:class:`CheckerWatchdog`): its memory (RSS, at most
``GRADER_CHECKER_MEMORY_MB``, default 6144) and its wall-clock time (``GRADER_CHECKER_SECONDS``,
default 90 % of the runner's ``GRADER_CHECK_SECONDS``). Past either, the test that is running
fails with a message naming the value being checked, and the limit is recorded in the result's
``limits_hit`` (``checker-memory``, ``checker-time``); should that not bring it back under the
limit, every test fails with that message and the process ends with its result written.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader import __version__
from grader._gc import imports_then_frozen
from grader.collect import run_suite
from grader.course import load_assignment
from grader.errors import GRADER_FAILED, CheckerLimit, NotebookUnreadable
from grader.extract import extract_answer_code, read_notebook
from grader.profiles import get_profile
from grader.results import SubmissionResult, TestResult
from grader.sandbox.client import WorkerClient
from grader.sandbox.isolation import Isolation, Limits, detect_isolation, limit_details
from grader.sandbox.protocol import forbidden_import_message
from grader.submission import SandboxSubmission, discard_worker, new_worker

__all__ = ["GRADER_FAILED", "Job", "failed_result", "grade", "main", "write_outputs"]


@dataclass(frozen=True)
class Job:
    notebook: Path
    student: str
    assignment: str
    profile: str
    out_dir: Path
    data: dict[str, Path]
    """The assignment's data files found for this run, by the key its toml declares them under."""
    isolation: str | None
    training_cache: Path | None = None
    """Where training outcomes are cached and reused (``grader.training_cache``); None: off."""

    def spec(self) -> dict[str, Any]:
        """The job as JSON, for the checking process and for Ray tasks."""
        return {"notebook": str(self.notebook), "student": self.student,
                "assignment": self.assignment, "profile": self.profile,
                "out_dir": str(self.out_dir), "data": {k: str(v) for k, v in self.data.items()},
                "isolation": self.isolation,
                "training_cache": str(self.training_cache) if self.training_cache else None}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Job:
        return cls(notebook=Path(spec["notebook"]), student=spec["student"],
                   assignment=spec["assignment"], profile=spec["profile"],
                   out_dir=Path(spec["out_dir"]),
                   data={str(k): Path(v) for k, v in (spec.get("data") or {}).items()},
                   isolation=spec["isolation"],
                   training_cache=Path(spec["training_cache"]) if spec.get("training_cache")
                   else None)


def limits_from_env() -> Limits:
    """Default limits, overridable with GRADER_CALL_SECONDS, GRADER_SUBMISSION_SECONDS,
    GRADER_MEMORY_MB and GRADER_SCRATCH_MB (for courses with slower machines, and for tests)."""
    base = Limits()
    return Limits(
        call_seconds=float(os.environ.get("GRADER_CALL_SECONDS", base.call_seconds)),
        submission_seconds=float(os.environ.get("GRADER_SUBMISSION_SECONDS",
                                                base.submission_seconds)),
        memory_bytes=int(os.environ.get("GRADER_MEMORY_MB", base.memory_bytes // 2**20)) * 2**20,
        processes=base.processes,
        file_bytes=base.file_bytes,
        output_bytes=base.output_bytes,
        scratch_bytes=int(os.environ.get("GRADER_SCRATCH_MB", base.scratch_bytes // 2**20)) * 2**20,
    )


def hidden_paths(job: Job) -> tuple[Path, ...]:
    """What the sandbox must never see: hidden suites, grading data, other submissions."""
    from grader.course import hidden_suites_dir

    assignment = load_assignment(job.assignment)
    paths = [hidden_suites_dir(), job.notebook.parent.resolve(), job.out_dir.resolve()]
    paths += assignment.data_paths(job.data)
    if job.training_cache is not None:  # under --out by default; a user cache may be elsewhere
        paths.append(job.training_cache.resolve())
    # A forbidden library is hidden as well as blocked: code that removes the import blocker
    # still finds nothing to import.
    paths += forbidden_package_dirs(load_assignment(job.assignment).forbidden_imports)
    return tuple(paths)


def forbidden_package_dirs(names: tuple[str, ...]) -> list[Path]:
    """Where the forbidden packages are installed, found without importing them."""
    import importlib.util

    dirs: list[Path] = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            dirs += [Path(p).resolve() for p in spec.submodule_search_locations]
    return dirs


def checker_memory_bytes() -> int:
    return int(float(os.environ.get("GRADER_CHECKER_MEMORY_MB", 6144)) * 2**20)


def checker_seconds() -> float:
    default = 0.9 * float(os.environ.get("GRADER_CHECK_SECONDS", 3600))
    return float(os.environ.get("GRADER_CHECKER_SECONDS", default))


class CheckerWatchdog(threading.Thread):
    """Watches this process's memory and time. Past a limit it raises :class:`CheckerLimit` in
    the main thread (the running test fails, naming ``submission.current_input``); still past
    it ``grace`` seconds later, or past 1.5 times the memory limit, it calls ``give_up`` (which
    writes the result) and ends the process."""

    def __init__(self, submission: SandboxSubmission, *, memory_bytes: int, seconds: float,
                 give_up: Callable[[str, str], None], grace: float = 30.0,
                 exit: Callable[[int], None] = os._exit) -> None:
        super().__init__(daemon=True, name="checker-watchdog")
        self.submission = submission
        self.memory_bytes = memory_bytes
        self.seconds = seconds
        self.give_up = give_up
        self.grace = grace
        self.exit = exit
        self.hits: list[str] = []
        self.messages: list[str] = []
        """What the running test was told, each time a limit was hit."""
        self._main = threading.main_thread().ident
        self._began = time.monotonic()
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def message(self, limit: str) -> str:
        what = self.submission.current_input
        if limit == "checker-memory":
            bound = f"memory limit ({self.memory_bytes // 2**20} MB)"
        else:
            bound = f"time limit ({self.seconds:.0f} s)"
        return (f"{what}: the grader stopped checking it — the checking process went over its own "
                f"{bound} while handling it; this assignment's values and models need far less, "
                "so check their sizes (units, filters, array shapes)")

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        raised_at: float | None = None
        while not self._halt.wait(0.2):
            rss = me.memory_info().rss
            now = time.monotonic()
            limit = ("checker-memory" if rss > self.memory_bytes
                     else "checker-time" if now - self._began > self.seconds else None)
            if limit is None:
                raised_at = None
                continue
            if limit not in self.hits:
                self.hits.append(limit)
            if raised_at is None:
                raised_at = now
                self.messages.append(self.message(limit))
                self._raise_in_main(self.messages[-1])
            elif now - raised_at > self.grace or rss > 1.5 * self.memory_bytes:
                self.give_up(limit, self.message(limit))
                self.exit(0)
                return

    def _raise_in_main(self, message: str) -> None:
        def init(exc: CheckerLimit, *args: object) -> None:
            CheckerLimit.__init__(exc, message)

        error = type("CheckerLimit", (CheckerLimit,), {"__init__": init})
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._main or 0),
                                                   ctypes.py_object(error))


def _all_failed(job: Job, message: str, fault: str) -> list[TestResult]:
    assignment = load_assignment(job.assignment)
    return [TestResult(name=t.name, function=t.function, score=0.0, max_score=t.points,
                       status="failed", message=message, fault=fault, bonus=t.bonus)
            for t in assignment.tests]


def _import_for(assignment: Any, result: SubmissionResult) -> None:
    """What grading needs (TensorFlow where the assignment trains, matplotlib for the feedback's
    figures). Where this process has not imported them yet, the imports run without the garbage
    collector and what they made is then frozen (grader/_gc.py): it lives as long as the
    process, so neither the import nor the collections that :func:`forget` and Keras run after
    every submission walk it again (about a million objects)."""
    needed = ["grader.export.feedback", *(["tensorflow"] if assignment.needs_tensorflow else [])]
    first = any(name not in sys.modules for name in needed)
    with imports_then_frozen(collect=True) if first else contextlib.nullcontext():
        if assignment.needs_tensorflow:
            from grader.training import configure_determinism, device_description

            configure_determinism()
            result.device = device_description()
        import grader.export.feedback  # noqa: F401


class Standby:
    """The sandboxed worker for the next submission, started while this one is graded (once
    this one's worker has loaded the notebook), so that its start-up (Python, TensorFlow) runs
    while this process and this submission's worker wait on each other. No student code has
    run in it; the
    next submission adopts it when its settings are the ones it would start a worker with
    (:class:`~grader.submission.SandboxSubmission`), else it is discarded."""

    def __init__(self) -> None:
        self.worker: WorkerClient | None = None

    def start(self, job: Job) -> None:
        self.discard()
        worker = None
        try:
            assignment = load_assignment(job.assignment)
            worker = new_worker(assignment, limits=limits_from_env(),
                                isolation=detect_isolation(job.isolation),
                                hidden=hidden_paths(job))
            worker.start()
        except Exception as exc:  # noqa: BLE001 - the next submission starts its own worker
            if worker is not None:
                discard_worker(worker)
            if isinstance(exc, CheckerLimit):
                raise  # this process's own limit, raised into it while it started the worker
            return
        self.worker = worker

    def take(self) -> WorkerClient | None:
        worker, self.worker = self.worker, None
        return worker

    def discard(self) -> None:
        if self.worker is not None:
            discard_worker(self.take())  # type: ignore[arg-type]


STANDBY = Standby()


def grade(job: Job, following: Job | None = None) -> SubmissionResult:
    started = time.perf_counter()
    began = time.monotonic()  # extraction counts against the submission's time budget
    assignment = load_assignment(job.assignment)
    profile = get_profile(job.profile)
    isolation: Isolation = detect_isolation(job.isolation)
    limits = limits_from_env()
    result = SubmissionResult(
        student=job.student, assignment=job.assignment, notebook=str(job.notebook),
        profile=job.profile, isolation=isolation.level,
        isolation_details=list(isolation.details) + limit_details(isolation, limits),
        grader_version=__version__)
    try:
        notebook = read_notebook(job.notebook)
    except NotebookUnreadable as exc:
        result.tests = _all_failed(job, str(exc), exc.kind)
        result.load_messages = [str(exc)]
        result.seconds = round(time.perf_counter() - started, 3)
        return result
    extracted = extract_answer_code(notebook, deadline=began + limits.submission_seconds)
    submission = SandboxSubmission(extracted, assignment, limits=limits,
                                   isolation=isolation, hidden=hidden_paths(job), started=began,
                                   standby=STANDBY.take())
    if submission.adopted_standby:
        print("checker: sandbox started ahead, while the previous submission was graded",
              flush=True)

    def give_up(limit: str, message: str) -> None:
        submission.close()
        result.tests = _all_failed(job, message, "refused")
        result.limits_hit = [*submission.limits_hit, limit]
        result.seconds = round(time.perf_counter() - started, 3)
        write_outputs(result, job.out_dir)
        _log_usage(started)
        if _serving is not None:  # the watchdog ends this process next: say it is done
            _serving.reply(retire=True)

    watchdog = CheckerWatchdog(submission, memory_bytes=checker_memory_bytes(),
                               seconds=checker_seconds(), give_up=give_up)
    try:
        # The worker boots (Python, the notebook's imports, TensorFlow) while this process
        # loads what it needs anyway: TensorFlow, and matplotlib for the feedback's figures.
        submission.start()
        if following is not None and _serving is not None:
            # The next submission's worker boots while this one is graded, once this one's
            # worker has loaded the notebook (or, without a notebook to load, after its tests).
            submission.after_load = lambda: STANDBY.start(following)
        _import_for(assignment, result)
        # Armed once this process's own imports are done: an exception raised into an import
        # would leave a half-imported module behind.
        watchdog.start()
        tests, errors = run_suite(assignment, submission, profile, data=job.data)
    except CheckerLimit as exc:  # this process's own limit, hit outside any test
        tests, errors = _all_failed(job, str(exc), exc.kind), []
    finally:
        watchdog.stop()
        if watchdog.is_alive():
            watchdog.join(timeout=5)
        submission.close()
        submission.run_after_load()
    if watchdog.messages:
        # Where the limit interrupted pytest's own machinery, what broke was this process's
        # limit, not the grader: the student reads which value was too large.
        for test in tests:
            if test.status == "error":
                test.status, test.message, test.fault = "failed", watchdog.messages[0], "refused"
        for error in errors:
            print(f"checker: after its own limit was hit: {error[-2000:]}", flush=True)
        errors = []
    if submission.grader_errors:
        # The worker could not start: no test result says anything about the student's code.
        errors = [*errors, *submission.grader_errors]
        for test in tests:
            if GRADER_FAILED in test.message:
                test.status, test.message, test.fault, test.score = "error", GRADER_FAILED, \
                    "grader", 0.0
    result.tests = tests
    template = str(getattr(assignment, "forbidden_message", "") or "")
    result.load_messages = submission.load_messages + [
        f"{forbidden_import_message(name, template)} (the import was blocked)"
        for name in submission.forbidden_imports]
    result.limits_hit = submission.limits_hit + [
        hit for hit in watchdog.hits if hit not in submission.limits_hit]
    if errors:
        result.grader_error = "\n\n".join(errors)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def write_outputs(result: SubmissionResult, out_dir: Path) -> None:
    """results.json (Gradescope), feedback.html and the full result, each written atomically.
    The full result is written last: its presence marks the submission as done."""
    from grader.export.feedback import write_feedback
    from grader.export.gradescope import write_results_json

    student_dir = out_dir / result.student
    write_results_json(result, student_dir / "results.json")
    write_feedback(result, student_dir / "feedback.html")
    result.save(student_dir / "result.full.json")


def failed_result(job: Job, error: str) -> SubmissionResult:
    """What a student gets when the grader itself broke on their submission."""
    return SubmissionResult(
        student=job.student, assignment=job.assignment, notebook=str(job.notebook),
        profile=job.profile, tests=_all_failed(job, GRADER_FAILED, "grader"),
        grader_error=error, grader_version=__version__)


def _log_usage(started: float) -> None:
    """Lines in the submission's log: this process's memory (its peak so far, and now) and
    time, and what the training cache did for this submission."""
    from grader.training_cache import STATS

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"checker: peak memory {peak} MB, now {_rss_bytes() >> 20} MB, "
          f"{time.perf_counter() - started:.1f} s, pid {os.getpid()}", flush=True)
    print(f"training cache: hits={STATS.hits} misses={STATS.misses} unkeyed={STATS.unkeyed} "
          f"ahead={STATS.ahead}", flush=True)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _use_training_cache(job: Job) -> None:
    """This process's training cache is the job's, or none (``grader grade --no-cache``)."""
    from grader.training_cache import CACHE_ENV, NO_CACHE_ENV

    if job.training_cache is None:
        os.environ[NO_CACHE_ENV] = "1"
    else:
        os.environ.pop(NO_CACHE_ENV, None)
        os.environ[CACHE_ENV] = str(job.training_cache)


def grade_and_write(job: Job, following: Job | None = None) -> SubmissionResult:
    """Grade ``job`` and write its outputs; the grader's own failure becomes a staff-visible
    result, never an exception."""
    from grader import training_cache

    _use_training_cache(job)
    training_cache.STATS = training_cache.CacheStats()
    started = time.perf_counter()
    try:
        result = grade(job, following)
    except Exception:  # noqa: BLE001 - the grader's own failure becomes a staff-visible result
        result = failed_result(job, traceback.format_exc())
    write_outputs(result, job.out_dir)
    _log_usage(started)
    return result


def forget(suite_dir: Path) -> None:
    """What one submission leaves in this process, gone before the next: the hidden suites'
    modules (pytest keeps them in ``sys.modules``; a module-level value set while grading one
    submission must not be seen by the next), Keras' global state, and garbage. Nothing here
    came from student code, which never runs in this process; the next submission is graded
    as it would be by a fresh process (``tests/test_warm.py``)."""
    import gc

    suites = str(suite_dir.resolve()) + os.sep
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(suites):
            del sys.modules[name]
    if "keras" in sys.modules:
        import keras

        from grader.training import forget_ahead

        forget_ahead()
        keras.backend.clear_session(free_memory=False)
    gc.collect()


def _retire_after(result: SubmissionResult) -> bool:
    """Whether this warm process should end after ``result``: it hit its own limits, broke,
    or has grown past half its memory limit."""
    own_limits = any(hit.startswith("checker-") for hit in result.limits_hit)
    return own_limits or result.grader_error is not None or \
        _rss_bytes() > checker_memory_bytes() // 2


class _Control:
    """The warm process's answers to the runner, on its original stdout."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w")
        self._lock = threading.Lock()

    def reply(self, *, retire: bool) -> None:
        with self._lock:
            self._out.write(json.dumps({"pid": os.getpid(), "retire": retire}) + "\n")
            self._out.flush()


_serving: _Control | None = None


def serve() -> int:
    """``--serve``: grade one job per line of stdin (``{"spec": ..., "log": PATH}``), each
    with its own log on stdout and stderr, and answer each with one JSON line on the original
    stdout once the outputs are written (:class:`grader.checkers.WarmChecker`)."""
    global _serving
    control = _serving = _Control()
    quiet = os.open(os.devnull, os.O_WRONLY)
    startup_err = os.dup(2)
    os.dup2(quiet, 1)
    for line in sys.stdin:
        request = json.loads(line)
        job = Job.from_spec(request["spec"])
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                      | os.O_CLOEXEC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        try:
            following = Job.from_spec(request["next"]) if request.get("next") else None
            result = grade_and_write(job, following)
            retire = _retire_after(result)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(quiet, 1)
            os.dup2(startup_err, 2)
        forget(load_assignment(job.assignment).suite_dir)
        control.reply(retire=retire)
        if retire:
            break
    STANDBY.discard()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args == ["--serve"]:
        return serve()
    grade_and_write(Job.from_spec(json.loads(Path(args[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
