"""A grading run: find the submissions, grade each in its own checking process (``--jobs`` at
a time), show progress, resume where a killed run stopped, write the gradebook and a summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from grader.check_one import Job, failed_result, write_outputs
from grader.course import load_assignment
from grader.errors import ConfigurationError
from grader.profiles import get_profile
from grader.results import SubmissionResult

RESULT_FILE = "result.full.json"


@dataclass(frozen=True)
class Found:
    student: str
    notebook: Path


def _pick_notebook(folder: Path, preferred: str) -> Path | None:
    candidates = sorted(folder.glob("*.ipynb"))
    named = [c for c in candidates if c.name == preferred]
    return (named or candidates)[0] if candidates else None


def discover(paths: Iterable[Path], assignment: str) -> list[Found]:
    """Notebooks, nbgrader's ``submitted/<student>/<assignment>/`` layout, or flat folders."""
    notebook_name = load_assignment(assignment).notebook
    found: list[Found] = []
    for path in paths:
        if path.is_file():
            parts = path.resolve().parts
            nbgrader_like = len(parts) >= 4 and parts[-2] == assignment and parts[-4] == "submitted"
            found.append(Found(parts[-3] if nbgrader_like else path.stem, path))
        elif path.is_dir():
            root = path / "submitted" if (path / "submitted").is_dir() else path
            nested = sorted(p for p in root.glob(f"*/{assignment}") if p.is_dir())
            for folder in nested:
                notebook = _pick_notebook(folder, notebook_name)
                if notebook is not None:
                    found.append(Found(folder.parent.name, notebook))
            if not nested:
                found += [Found(nb.stem, nb) for nb in sorted(root.glob("*.ipynb"))]
        else:
            raise ConfigurationError(
                f"submission path {path} does not exist: expected a notebook or a folder")
    if not found:
        raise ConfigurationError(
            "no submissions found: expected .ipynb files, a folder of <student>.ipynb files, or "
            f"nbgrader's submitted/<student>/{assignment}/{notebook_name} layout under "
            + ", ".join(str(p) for p in paths))
    seen: dict[str, int] = {}
    unique = []
    for item in found:
        count = seen.get(item.student, 0)
        seen[item.student] = count + 1
        unique.append(item if count == 0 else Found(f"{item.student}-{count + 1}", item.notebook))
    return unique


def _already_graded(out: Path, job: Job) -> bool:
    path = out / job.student / RESULT_FILE
    if not path.exists():
        return False
    try:
        previous = SubmissionResult.load(path)
    except (ValueError, TypeError, KeyError):
        return False
    return (previous.assignment == job.assignment and previous.profile == job.profile
            and previous.notebook == str(job.notebook) and previous.grader_error is None)


def check_seconds() -> float:
    """Wall-clock limit of one checking process (GRADER_CHECK_SECONDS, default 3600 s): the
    grader's own safety net should a submission manage to stall the checker."""
    return float(os.environ.get("GRADER_CHECK_SECONDS", 3600))


def grade_in_subprocess(job: Job) -> SubmissionResult:
    """Grade one submission in a fresh checking process; the grader's own crash is recorded."""
    logs = job.out_dir / ".logs"
    logs.mkdir(parents=True, exist_ok=True)
    spec = {"notebook": str(job.notebook), "student": job.student,
            "assignment": job.assignment, "profile": job.profile,
            "out_dir": str(job.out_dir), "mnist": str(job.mnist) if job.mnist else None,
            "isolation": job.isolation}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="0")
    log = logs / f"{job.student}.log"
    limit = check_seconds()
    try:
        with open(log, "wb") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "grader.check_one", handle.name],
                                    stdout=sink, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                sink.write(f"\nchecking process killed after {limit:.0f} s\n".encode())
                code = -signal.SIGKILL
    finally:
        os.unlink(handle.name)
    path = job.out_dir / job.student / RESULT_FILE
    if code == 0 and path.exists():
        return SubmissionResult.load(path)
    tail = log.read_text(errors="replace")[-4000:]
    result = failed_result(job, f"checking process exited with {code}:\n{tail}")
    write_outputs(result, job.out_dir)
    return result


def split_finished(jobs: list[Job], *, force: bool,
                   on_done: Callable[[SubmissionResult, bool], None] | None = None,
                   ) -> tuple[dict[str, SubmissionResult], list[Job]]:
    """The results already on disk (reported to ``on_done`` as skipped) and the jobs left.
    Every backend resumes through this."""
    results: dict[str, SubmissionResult] = {}
    todo = []
    for job in jobs:
        if not force and _already_graded(job.out_dir, job):
            results[job.student] = SubmissionResult.load(job.out_dir / job.student / RESULT_FILE)
            if on_done:
                on_done(results[job.student], True)
        else:
            todo.append(job)
    return results, todo


def run(jobs: list[Job], *, workers: int, force: bool,
        on_done: Callable[[SubmissionResult, bool], None] | None = None,
        grade_one: Callable[[Job], SubmissionResult] = grade_in_subprocess,
        ) -> list[SubmissionResult]:
    """Grade ``jobs`` with ``workers`` in parallel, skipping finished ones unless ``force``."""
    results, todo = split_finished(jobs, force=force, on_done=on_done)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(grade_one, job): job for job in todo}
        for future in as_completed(futures):
            result = future.result()
            results[result.student] = result
            if on_done:
                on_done(result, False)
    return [results[job.student] for job in jobs]


def main(*, submissions: list[Path], assignment: str, out: Path, profile: str, jobs: int,
         force: bool, mnist: Path | None, isolation: str | None, backend: str = "local",
         address: str | None = None, progress: bool = True) -> int:
    from grader import progress as ui
    from grader.data import find_mnist
    from grader.export.gradebook import write_gradebook
    from grader.sandbox.isolation import detect_isolation

    course = load_assignment(assignment)
    get_profile(profile)
    detect_isolation(isolation)  # fail early, with the reason, if a forced level is unavailable
    if jobs < 1:
        raise ConfigurationError(f"--jobs must be at least 1, found {jobs}")
    found = discover(submissions, assignment)
    mnist_path = find_mnist(mnist)
    out = out.resolve()
    job_list = [Job(notebook=f.notebook.resolve(), student=f.student, assignment=assignment,
                    profile=profile, out_dir=out,
                    mnist=mnist_path.resolve() if mnist_path else None, isolation=isolation)
                for f in found]
    if backend == "ray":
        from grader.ray_backend import run as run_ray

        results = ui.with_progress(job_list, progress, lambda cb: run_ray(
            job_list, address=address, force=force, on_done=cb))
    else:
        results = ui.with_progress(job_list, progress, lambda cb: run(
            job_list, workers=jobs, force=force, on_done=cb))
    everyone = [SubmissionResult.load(p) for p in sorted(out.glob(f"*/{RESULT_FILE}"))]
    write_gradebook(everyone, out / "grades.csv", course.functions)
    ui.print_summary(results, course.functions, out)
    broken = [r.student for r in results if r.grader_error]
    if broken:
        print(f"grader: the grader itself failed on {len(broken)} submission(s): "
              f"{', '.join(broken)} — see {out}/.logs/ and result.full.json", file=sys.stderr)
        return 1
    return 0
