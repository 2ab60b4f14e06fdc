"""A grading run: find the submissions, grade them in checking processes (``--jobs`` at a
time, each worker's process kept warm across submissions: :mod:`grader.checkers`), show
progress, resume where a killed run stopped, write the gradebook and a summary.

Student ids come from file and folder names; :mod:`grader.rundir` turns each into a safe,
unique folder (the job's ``student``) and keeps the id itself for the results and reports.
Resuming keys on the notebook's content: a notebook whose bytes changed since it was graded is
graded again. Ctrl-C stops the checking processes at once; what finished stays, and running
the same command again grades the rest.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from grader import _interrupt
from grader.check_one import Job
from grader.checkers import Interrupted, WarmChecker, split_finished, stop_all
from grader.course import load_assignment
from grader.errors import ConfigurationError
from grader.profiles import get_profile
from grader.results import SubmissionResult
from grader.rundir import RESULT_FILE, JobRecord, RunDir, assign_folders, notebook_sha256

__all__ = ["RESULT_FILE", "Found", "discover", "main", "run"]

NOTEBOOK_SUFFIX = ".ipynb"
INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as shells report it."""


@dataclass(frozen=True)
class Found:
    student: str
    """The student's id, from the file or folder name (shown as it is, never used as a path)."""
    notebook: Path
    """The submitted path, absolute, its last part not resolved: a link stays a link, and the
    checking process refuses it."""


def _student_of(name: str) -> str:
    stem = name[: -len(NOTEBOOK_SUFFIX)] if name.endswith(NOTEBOOK_SUFFIX) else name
    return stem or name


def _notebooks_in(folder: Path) -> list[Path]:
    """Every entry named ``*.ipynb`` (files, links, folders, FIFOs alike: each is a student,
    and the checking process says what is wrong with the ones that are no notebook)."""
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(NOTEBOOK_SUFFIX))
    except OSError:
        return []


def _pick_notebook(folder: Path, preferred: str) -> Path | None:
    candidates = _notebooks_in(folder)
    named = [c for c in candidates if c.name == preferred]
    return (named or candidates)[0] if candidates else None


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _in_folder(path: Path, assignment: str, notebook_name: str) -> list[Found]:
    root = path / "submitted" if _real_dir(path / "submitted") else path
    try:
        children = sorted(root.iterdir())
    except OSError as exc:
        raise ConfigurationError(
            f"cannot list {path} ({exc.strerror}): expected a folder of submissions") from None
    found: list[Found] = []
    nested = False
    for child in children:
        inner = child / assignment
        if not _real_dir(child) or not os.path.lexists(inner):
            continue
        nested = True
        if _real_dir(inner):
            notebook = _pick_notebook(inner, notebook_name)
            if notebook is not None:
                found.append(Found(child.name, notebook))
        else:  # a link or a file where the assignment's folder belongs: refused when read
            found.append(Found(child.name, inner))
    if not nested:
        found = [Found(_student_of(nb.name), nb) for nb in _notebooks_in(root)]
    return found


def _one_path(path: Path, assignment: str, notebook_name: str) -> list[Found]:
    path = path.absolute()
    if not os.path.lexists(path):
        raise ConfigurationError(
            f"submission path {path} does not exist: expected a notebook or a folder")
    # A name ending in .ipynb is one submission, whatever it is (a link to a folder included);
    # the folder the TA names is followed even when it is a link.
    if path.is_dir() and not path.name.endswith(NOTEBOOK_SUFFIX):
        return _in_folder(path, assignment, notebook_name)
    parts = path.parts
    nbgrader_like = len(parts) >= 4 and parts[-2] == assignment and parts[-4] == "submitted"
    return [Found(parts[-3] if nbgrader_like else _student_of(path.name), path)]


def _file_key(path: Path) -> tuple[int, int] | str:
    try:
        info = os.lstat(path)
    except OSError:
        return str(path)
    return (info.st_dev, info.st_ino)


def discover(paths: Iterable[Path], assignment: str) -> list[Found]:
    """Notebooks, nbgrader's ``submitted/<student>/<assignment>/`` layout, or flat folders.

    The same file given twice is one submission. Two files with the same student id are both
    graded: the second is ``id (2)``, the third ``id (3)``, ids no file can take from another.
    """
    paths = list(paths)
    notebook_name = load_assignment(assignment).notebook
    found: list[Found] = []
    for path in paths:
        found += _one_path(path, assignment, notebook_name)
    if not found:
        raise ConfigurationError(
            "no submissions found: expected .ipynb files, a folder of <student>.ipynb files, or "
            f"nbgrader's submitted/<student>/{assignment}/{notebook_name} layout under "
            + ", ".join(str(p) for p in paths))
    files: set[tuple[int, int] | str] = set()
    ids = {item.student for item in found}
    seen: dict[str, int] = {}
    unique = []
    for item in found:
        key = _file_key(item.notebook)
        if key in files:
            continue
        files.add(key)
        count = seen.get(item.student, 0) + 1
        seen[item.student] = count
        student = item.student
        while count > 1 and student in ids:
            student = f"{item.student} ({count})"
            count += 1 if student in ids else 0
        ids.add(student)
        unique.append(Found(student, item.notebook))
    return unique


def run(jobs: list[Job], *, workers: int, force: bool,
        on_done: Callable[[SubmissionResult, bool], None] | None = None,
        grade_one: Callable[[Job], SubmissionResult] | None = None,
        ) -> list[SubmissionResult]:
    """Grade ``jobs`` with ``workers`` in parallel, skipping finished ones unless ``force``.

    Each worker thread keeps one warm checking process (:class:`grader.checkers.WarmChecker`)
    unless ``grade_one`` grades instead. While there are more jobs waiting than workers, a
    thread also takes its next job with the current one, so that the next sandbox starts while
    the current results are written. On KeyboardInterrupt the jobs not started are dropped and
    the running checking processes killed before it propagates."""
    results, todo = split_finished(jobs, force=force, on_done=on_done)
    workers = max(1, workers)
    waiting = deque(todo)
    lock = threading.Lock()
    finished: queue.Queue[tuple[Job, SubmissionResult | None, BaseException | None]] = \
        queue.Queue()

    def take(least: int = 1) -> Job | None:
        with lock:
            return waiting.popleft() if len(waiting) >= least else None

    def work() -> None:
        checker = WarmChecker() if grade_one is None else None
        try:
            job = take()
            while job is not None:
                following = take(least=workers) if checker is not None else None
                try:
                    result = checker.grade(job, following) if checker is not None else \
                        grade_one(job)  # type: ignore[misc]
                except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
                    finished.put((job, None, exc))
                    return
                finished.put((job, result, None))
                job = following if following is not None else take()
        finally:
            if checker is not None:
                checker.close()  # it ends at the end of its input

    threads = [threading.Thread(target=work, name=f"grader-worker-{i}", daemon=True)
               for i in range(min(workers, len(todo)))]
    for thread in threads:
        thread.start()
    try:
        left = len(todo)
        while left:
            _interrupt.check()
            with _interrupt.deferred():  # what finished is recorded and counted first
                try:
                    job, result, error = finished.get(timeout=1.0)
                except queue.Empty:
                    continue
                if error is not None:
                    raise error
                assert result is not None
                results[job.student] = result
                left -= 1
                if on_done:
                    on_done(result, False)
    except (KeyboardInterrupt, Interrupted):
        with lock:
            waiting.clear()
        stop_all()
        raise
    except BaseException:
        with lock:  # the gradings under way finish; no new one starts
            waiting.clear()
        raise
    for thread in threads:
        thread.join()
    return [results[job.student] for job in jobs]


@dataclass
class _Plan:
    """The run's jobs, with what the run folder needs to know about each."""

    run_dir: RunDir
    jobs: list[Job]
    students: dict[str, str]
    """Folder → the student's id."""
    hashes: dict[str, str | None]
    """Folder → the notebook's sha256."""
    changed: list[str]
    """Folders graded before whose notebook has changed since."""


def _plan(found: list[Found], *, out: Path, assignment: str, profile: str, force: bool,
          data: dict[str, Path], isolation: str | None, training_cache: Path | None) -> _Plan:
    run_dir = RunDir(out)
    run_dir.prepare(assignment)
    records = run_dir.records()
    folders = assign_folders([f.student for f in found],
                             existing={s: r.folder for s, r in records.items()},
                             occupied=run_dir.occupied())
    jobs, students, hashes, changed = [], {}, {}, []
    for item in found:
        folder = folders[item.student]
        students[folder] = item.student
        hashes[folder] = notebook_sha256(item.notebook)
        jobs.append(Job(notebook=item.notebook, student=folder, assignment=assignment,
                        profile=profile, out_dir=out, data=data, isolation=isolation,
                        training_cache=training_cache))
        record = records.get(item.student)
        if (not force and record is not None and run_dir.result_path(folder).exists()
                and record.sha256 != hashes[folder]):
            changed.append(folder)
    return _Plan(run_dir, jobs, students, hashes, changed)


@dataclass
class _Tally:
    """How far a run got, for the message after Ctrl-C."""

    graded: int = 0
    total: int = 0


def _finisher(plan: _Plan, tally: _Tally) -> Callable[[SubmissionResult, bool], None]:
    """What happens as each result is known: the student's own id put back in it (the checking
    process knows only the folder) and the job record written, which marks it done for this
    notebook's content."""
    from grader.rundir import write_student_outputs

    by_notebook = {str(job.notebook): job for job in plan.jobs}
    by_folder = {job.student: job for job in plan.jobs}

    def finish(result: SubmissionResult, skipped: bool) -> None:
        job = by_notebook.get(result.notebook) or by_folder.get(result.student)
        if job is None:  # a finished result of a notebook since moved: it has its id already
            return
        folder = job.student
        student = plan.students[folder]
        if result.student != student:
            result.student = student
            write_student_outputs(result, plan.run_dir.folder(folder))
        if not skipped:
            plan.run_dir.write_record(JobRecord(
                student=student, folder=folder, notebook=str(job.notebook),
                sha256=plan.hashes[folder], assignment=job.assignment, profile=job.profile))
            tally.graded += 1

    return finish


def training_cache_folder(out: Path) -> Path:
    """``GRADER_TRAINING_CACHE`` (a cache shared across runs, or by a Ray cluster's nodes on a
    shared folder), else the run's own ``OUT/.cache/training``."""
    from grader.training_cache import CACHE_ENV

    shared = os.environ.get(CACHE_ENV)
    return Path(shared).resolve() if shared else RunDir(out).training_cache


def main(*, submissions: list[Path], assignment: str, out: Path, profile: str, jobs: int,
         force: bool, data: dict[str, Path] | None = None, isolation: str | None = None,
         backend: str = "local", no_cache: bool = False,
         address: str | None = None, progress: bool = True) -> int:
    """`grader grade`: 0 when every submission was graded, 1 when the grader itself failed on
    one, 130 after Ctrl-C (what finished is kept; the same command resumes)."""
    from grader import progress as ui

    tally = _Tally()
    with _interrupt.recorded():
        try:
            return _main(submissions=submissions, assignment=assignment, out=out,
                         profile=profile, jobs=jobs, force=force, data=data or {},
                         isolation=isolation, backend=backend, no_cache=no_cache,
                         address=address, progress=progress, tally=tally)
        except (KeyboardInterrupt, Interrupted):
            stop_all()
            ui.print_interrupted(tally.graded, tally.total, out.resolve())
            return INTERRUPTED


def _main(*, submissions: list[Path], assignment: str, out: Path, profile: str, jobs: int,
          force: bool, data: dict[str, Path], isolation: str | None, backend: str,
          no_cache: bool,
          address: str | None, progress: bool, tally: _Tally) -> int:
    from grader import progress as ui
    from grader.export.gradebook import write_gradebook
    from grader.sandbox.isolation import detect_isolation

    course = load_assignment(assignment)
    get_profile(profile)
    detect_isolation(isolation)  # fail early, with the reason, if a forced level is unavailable
    if jobs < 1:
        raise ConfigurationError(f"--jobs must be at least 1, found {jobs}")
    found = discover(submissions, assignment)
    # Each data file the assignment declares, found once here (explicit path, its environment
    # variable, Keras' cache); a missing one is the suite's clear error, test by test.
    found_data = {key: path.resolve() for key, path in course.data_files(data).items()
                  if path is not None}
    out = out.resolve()
    plan = _plan(found, out=out, assignment=assignment, profile=profile, force=force,
                 data=found_data, isolation=isolation,
                 training_cache=None if no_cache else training_cache_folder(out))
    tally.total = len(plan.jobs)
    finish = _finisher(plan, tally)
    if backend == "ray":
        from grader.ray_backend import run as run_ray

        results = ui.with_progress(plan.jobs, progress, finish, lambda cb: run_ray(
            plan.jobs, address=address, force=force, on_done=cb))
    else:
        results = ui.with_progress(plan.jobs, progress, finish, lambda cb: run(
            plan.jobs, workers=jobs, force=force, on_done=cb))
    everyone = [SubmissionResult.load(p) for p in plan.run_dir.result_paths()]
    write_gradebook(everyone, plan.run_dir.grades, course.functions)
    ui.print_summary(results, course.functions, out, changed=len(plan.changed))
    broken = [r.student for r in results if r.grader_error]
    if broken:
        ui.print_grader_failed(broken, out)
        return 1
    return 0
