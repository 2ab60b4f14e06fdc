"""Benchmark: ``grader grade`` against ``nbgrader autograde`` on the same class, and both against
the limit (the hidden suites' own training and evaluation, run directly in one process).

    MNIST_NPZ=/path/to/mnist.npz .venv/bin/python bench/run.py            # the default plan
    .venv/bin/python bench/run.py --assignment backprop --n 1,10 --jobs 1,2 --memory-n 0

For each assignment: build a class of N submissions (bench/make_class.py; for mnist a
realistic class of 20), grade it with ``grader grade --jobs J`` with the training cache on
(each run with its own fresh ``--out``, so no run starts warm) and with ``--no-cache``, and with
``nbgrader autograde`` (in a temporary copy of the course directory), and record wall time,
per-submission time and its part beyond training, distinct trainings, peak memory, whether all
of them agree on every function's points, and whether the grader's results with and without
the cache are identical apart from timing fields. Writes OUT/results.json (after every run,
so a stopped benchmark keeps what it measured), OUT/report.md (the tables) and a plot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(BENCH))

from make_class import Member, make_class  # noqa: E402


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    """Class sizes graded by both graders (grader at every J, nbgrader once: it has no jobs)."""
    jobs: tuple[int, ...]
    nbgrader_sizes: tuple[int, ...]
    memory_sizes: tuple[int, ...] = ()
    """Larger classes graded by the grader only, at the largest J, for its memory curve."""
    uncached_sizes: tuple[int, ...] = ()
    """Classes (the first N members of the class) graded again with ``--no-cache``."""
    uncached_jobs: tuple[int, ...] = ()
    """The ``--jobs`` values of the ``--no-cache`` runs."""


# The default plan aims at 30 minutes on a 2-core CPU (bench/README.md gives the arithmetic).
# mnist: the realistic class of 20 (bench/make_class.py) with the training cache at J = 1 and
# J = 2; nbgrader (55-110 s per notebook that trains: up to 35 minutes for the 20 alone) and
# the grader without the cache (25-67 s per submission at J = 2) grade the class's first five
# only, a sample that holds every kind of member (the reference, another style, a mistake, other
# hyperparameters, a stub); their cost for the whole class is extrapolated from wall / N, marked so.
# backprop trains nothing, so its plan (the grader's start-up and memory curve, N up to 200) is
# its own: --assignment backprop.
DEFAULT_PLANS = {
    "mnist": Plan(sizes=(20,), jobs=(1, 2), nbgrader_sizes=(5,), uncached_sizes=(5,),
                  uncached_jobs=(2,)),
    "backprop": Plan(sizes=(1, 10, 50), jobs=(1, 2), nbgrader_sizes=(1, 10),
                     memory_sizes=(200,)),
}
# --full: every run on the whole class (mnist: 55 to 100 minutes on 2 cores).
FULL_PLANS = {
    "mnist": Plan(sizes=(20,), jobs=(1, 2), nbgrader_sizes=(20,), uncached_sizes=(20,),
                  uncached_jobs=(1, 2)),
    "backprop": Plan(sizes=(1, 10, 50), jobs=(1, 2), nbgrader_sizes=(1, 10, 50),
                     memory_sizes=(200,), uncached_sizes=(1, 10, 50), uncached_jobs=(1, 2)),
}
TIMING_FIELDS = ("seconds",)
"""Fields of result.full.json (top level and per test, grader/results.py) that are timings:
the only ones allowed to differ between runs with and without the training cache."""
CACHE_LINE = re.compile(r"training cache: hits=(\d+) misses=(\d+) unkeyed=(\d+)")
"""What the checking process writes to OUT/.logs/<student>.log about the training cache."""
_RESULTS: dict[tuple[str, str], dict[str, Any]] = {}
"""(assignment, run name) -> student -> result.full.json without its timing fields."""


@dataclass
class Measured:
    wall_s: float
    returncode: int
    peak_tree_rss_mb: float
    """Largest sum of RSS over the process tree, sampled every 0.2 s (shared pages count
    once per process, so this overstates what the tree really holds)."""
    max_process_rss_mb: float
    """RSS of the largest single process of the tree (the kernel's ru_maxrss via wait4)."""
    log: str


@dataclass
class Run:
    assignment: str
    tool: str
    """"grader", "nbgrader" or "limit"."""
    n: int
    jobs: int
    wall_s: float
    per_submission_median_s: float
    """Grader: the checking process's own time per submission (result.full.json "seconds");
    nbgrader: the kernel's time from the first cell to the last of each notebook."""
    amortised_s: float
    """wall_s / n: what one submission costs in this run, start-up included."""
    peak_tree_rss_mb: float
    max_process_rss_mb: float
    returncode: int
    points: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """student -> function -> [earned, available]."""
    per_submission_s: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    cache: bool | None = None
    """Grader: whether the training cache was on (None: a run from before the cache)."""

    @property
    def label(self) -> str:
        if self.tool != "grader":
            return self.tool
        return f"grader J={self.jobs}" + (" no cache" if self.cache is False else "")

    @property
    def name(self) -> str:
        """The label with the class size: runs of different sizes are compared too."""
        return f"{self.label} N={self.n}"


# -- measuring one command ---------------------------------------------------------------------
def _tree_rss(process: psutil.Process) -> int:
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> Measured:
    """Run ``command``; wall time, sampled peak RSS of its process tree, largest process."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peak = 0
    done = threading.Event()
    with open(log, "wb") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        watched = psutil.Process(proc.pid)

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.2):
                peak = max(peak, _tree_rss(watched))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(wall_s=wall, returncode=proc.returncode,
                    peak_tree_rss_mb=peak / 2**20, max_process_rss_mb=usage.ru_maxrss / 1024,
                    log=log.read_text(errors="replace"))


def _env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="0")


# -- the three ways of grading -------------------------------------------------------------------
def run_limit(assignment: str, work: Path) -> Run:
    got = measure([sys.executable, str(BENCH / "limit.py"), assignment], cwd=ROOT, env=_env(),
                  log=work / f"limit-{assignment}.log")
    lines = [line for line in got.log.splitlines() if line.startswith("{")]
    if got.returncode != 0 or not lines:
        raise SystemExit(f"bench: the limit run for {assignment} failed:\n{got.log[-3000:]}")
    result = json.loads(lines[-1])
    return Run(assignment=assignment, tool="limit", n=1, jobs=1, wall_s=round(got.wall_s, 3),
               per_submission_median_s=result["seconds"], amortised_s=result["seconds"],
               peak_tree_rss_mb=round(got.peak_tree_rss_mb, 1),
               max_process_rss_mb=round(got.max_process_rss_mb, 1), returncode=got.returncode,
               extra={"models": result["models"]})


def run_grader(assignment: str, members: list[Member], class_dir: Path, jobs: int,
               work: Path, *, cache: bool = True) -> Run:
    # Each run its own fresh --out, so that no run starts from another's training cache.
    out = work / f"grader-{assignment}-n{len(members)}-j{jobs}-{'cache' if cache else 'no-cache'}"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "grader", "grade", str(class_dir), "--assignment",
               assignment, "--out", str(out), "--jobs", str(jobs), "--quiet", "--force",
               *([] if cache else ["--no-cache"])]
    got = measure(command, cwd=ROOT, env=_env(), log=out.with_suffix(".log"))
    run = _run_from(assignment, "grader", len(members), jobs, got)
    run.cache = cache
    kept = _RESULTS.setdefault((assignment, run.name), {})
    overheads: dict[str, float] = {}
    if got.returncode != 0:
        run.problems.append(f"grader exited with {got.returncode}: {got.log[-2000:]}")
    for member in members:
        path = out / member.student / "result.full.json"
        if not path.exists():
            run.problems.append(f"{member.student}: no result.full.json")
            continue
        result = json.loads(path.read_text())
        if result.get("grader_error"):
            run.problems.append(f"{member.student}: grader error: {result['grader_error'][:500]}")
        run.per_submission_s[member.student] = float(result.get("seconds") or 0.0)
        # Beyond training: the submission's time less its accuracy tests (those that train).
        overheads[member.student] = round(float(result.get("seconds") or 0.0) - sum(
            t.get("seconds") or 0.0 for t in result["tests"] if _trains(t)), 3)
        kept[member.student] = without_timing(result, class_dir)
        run.points[member.student] = function_points(result)
        run.extra.setdefault("isolation", result.get("isolation"))
        if member.sample == "reference" and "reference" not in run.extra:
            # Where the reference submission's time goes, for the overhead analysis.
            tests = result["tests"]
            run.extra["reference"] = {
                "student": member.student, "seconds": result.get("seconds"),
                "tests_seconds": round(sum(t.get("seconds") or 0.0 for t in tests), 3),
                "accuracy_tests_seconds": round(sum(
                    t.get("seconds") or 0.0 for t in tests if _trains(t)), 3)}
    run.extra["overhead_s"] = overheads
    if overheads:
        run.extra["overhead_median_s"] = round(statistics.median(overheads.values()), 3)
    run.extra["trainings"] = cache_counts(out, members, cache)
    _finish(run)
    return run


def _trains(test: dict[str, Any]) -> bool:
    """The hidden tests that train a model: the accuracy tests."""
    return "accuracy" in test["name"]


def function_points(result: dict[str, Any]) -> dict[str, list[float]]:
    """A result.full.json's points by function: function -> [earned, available]."""
    points: dict[str, list[float]] = {}
    for test in result["tests"]:
        function = test.get("function") or test["name"].split(":", 1)[0]
        earned, available = points.get(function, [0.0, 0.0])
        points[function] = [earned + test["score"], available + test["max_score"]]
    return points


def cache_counts(out: Path, members: list[Member], cache: bool) -> dict[str, Any]:
    """Distinct trainings: the entries of the run's training cache (one per key trained,
    grader/training_cache.py), and the sum of what each checking process says it did with the
    cache (``training cache: hits=H misses=M unkeyed=U ahead=A`` in OUT/.logs/<student>.log;
    a model trained ahead, A, is read back by its own test: a hit)."""
    folder = out / ".cache" / "training"
    counts: dict[str, Any] = {
        "entries": (len(list(folder.glob("*.json"))) if folder.is_dir() else 0) if cache
        else None,
        "hits": 0, "misses": 0, "unkeyed": 0, "logs_with_counts": 0}
    for member in members:
        log = out / ".logs" / f"{member.student}.log"
        found = CACHE_LINE.findall(log.read_text(errors="replace")) if log.is_file() else []
        if found:
            hits, misses, unkeyed = (int(x) for x in found[-1])
            counts["hits"] += hits
            counts["misses"] += misses
            counts["unkeyed"] += unkeyed
            counts["logs_with_counts"] += 1
    # Without the cache nothing is counted: every model that reaches training trains.
    counts["total"] = (counts["hits"] + counts["misses"] + counts["unkeyed"]
                       if cache and counts["logs_with_counts"] else None)
    return counts


def without_timing(result: dict[str, Any], class_dir: Path) -> dict[str, Any]:
    """``result`` without its timing fields, and with the notebook's path relative to the
    class folder (a class of a smaller size lives in another folder)."""
    kept = {k: v for k, v in result.items() if k not in TIMING_FIELDS}
    kept["tests"] = [{k: v for k, v in t.items() if k not in TIMING_FIELDS}
                     for t in result.get("tests", [])]
    notebook = str(kept.get("notebook", ""))
    if notebook.startswith(str(class_dir)):
        kept["notebook"] = notebook[len(str(class_dir)):]
    return kept


def differences(a: Any, b: Any, where: str = "", limit: int = 5) -> list[str]:
    """Where two JSON values differ (at most ``limit`` places)."""
    if type(a) is not type(b):
        return [where or "/"]
    if isinstance(a, dict):
        found: list[str] = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                found.append(f"{where}/{key}")
            else:
                found += differences(a[key], b[key], f"{where}/{key}", limit - len(found))
            if len(found) >= limit:
                break
        return found[:limit]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{where} (length {len(a)} vs {len(b)})"]
        found = []
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            found += differences(x, y, f"{where}/{index}", limit - len(found))
            if len(found) >= limit:
                break
        return found[:limit]
    return [] if a == b else [where or "/"]


def identical(first: Run, second: Run, members: list[Member]) -> dict[str, Any]:
    """Are two grader runs' result.full.json files the same, timing fields aside?"""
    a = _RESULTS.get((first.assignment, first.name), {})
    b = _RESULTS.get((second.assignment, second.name), {})
    found = []
    compared = 0
    for member in members:
        if member.student not in a or member.student not in b:
            found.append(f"{member.student}: no result from "
                         f"{first.name if member.student not in a else second.name}")
            continue
        compared += 1
        where = differences(a[member.student], b[member.student])
        if where:
            found.append(f"{member.student}: {', '.join(where)}")
    return {"assignment": first.assignment, "n": len(members), "first": first.name,
            "second": second.name, "compared": compared,
            "identical": compared - sum(": no result from " not in d for d in found),
            "differences": found}


def nbgrader_course(assignment: str, work: Path) -> Path:
    """A fresh course directory: the config, the source notebook, its release in the gradebook.
    Released once per assignment (set-up, not timed) and copied for every run."""
    template = work / f"course-{assignment}-released"
    if not template.exists():
        (template / "solutions").mkdir(parents=True)
        shutil.copy(ROOT / "nbgrader_config.py", template / "nbgrader_config.py")
        shutil.copytree(ROOT / "solutions" / assignment, template / "solutions" / assignment)
        # The hidden suite: the autograder cells find it in the course folder nbgrader runs in.
        shutil.copytree(ROOT / "autograde_tests" / assignment,
                        template / "autograde_tests" / assignment)
        done = subprocess.run(
            [str(BIN / "nbgrader"), "generate_assignment", assignment, "--force"],
            cwd=template, env=_env(), capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(template, ignore_errors=True)
            raise SystemExit(f"bench: nbgrader generate_assignment failed:\n{done.stderr[-3000:]}")
    course = work / f"course-{assignment}"
    shutil.rmtree(course, ignore_errors=True)
    shutil.copytree(template, course)
    return course


def warm_up(assignment: str) -> None:
    """Load what every run loads once, untimed, so that no run pays for a cold disk cache."""
    modules = "grader.check_one, grader.runner, nbformat, nbgrader.apps, pytest, matplotlib.pyplot"
    if assignment == "mnist":
        modules += ", tensorflow, keras"
    subprocess.run([sys.executable, "-c", f"import {modules}"], cwd=ROOT, env=_env(),
                   capture_output=True, check=True)


def run_nbgrader(assignment: str, members: list[Member], class_dir: Path, work: Path) -> Run:
    course = nbgrader_course(assignment, work)
    shutil.copytree(class_dir / "submitted", course / "submitted")
    command = [str(BIN / "nbgrader"), "autograde", assignment, "--create"]
    got = measure(command, cwd=course, env=_env(),
                  log=work / f"nbgrader-{assignment}-n{len(members)}.log")
    run = _run_from(assignment, "nbgrader", len(members), 1, got)
    if got.returncode != 0:
        run.problems.append(f"nbgrader exited with {got.returncode}: {got.log[-2000:]}")
    run.points = nbgrader_points(course, assignment, members)
    for member in members:
        notebook = course / "autograded" / member.student / assignment / f"{assignment}.ipynb"
        if notebook.exists():
            run.per_submission_s[member.student] = kernel_seconds(notebook)
        else:
            run.problems.append(f"{member.student}: not autograded")
    _finish(run)
    shutil.rmtree(course, ignore_errors=True)
    return run


def nbgrader_points(course: Path, assignment: str,
                    members: list[Member]) -> dict[str, dict[str, list[float]]]:
    """Per student, per graded cell ``test_<function>``: [score, max_score] from the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    points: dict[str, dict[str, list[float]]] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for member in members:
            try:
                submission = gradebook.find_submission(assignment, member.student)
            except MissingEntry:
                continue
            points[member.student] = {
                grade.name.removeprefix("test_"): [float(grade.score), float(grade.max_score)]
                for notebook in submission.notebooks for grade in notebook.grades}
    return points


def kernel_seconds(notebook: Path) -> float:
    """From the first cell's start to the last cell's reply, from nbclient's timing metadata."""
    data = json.loads(notebook.read_text())
    stamps = []
    for cell in data["cells"]:
        timing = cell.get("metadata", {}).get("execution", {})
        stamps += [timing[k] for k in ("iopub.execute_input", "shell.execute_reply") if k in timing]
    if not stamps:
        return 0.0
    parsed = sorted(dt.datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps)
    return round((parsed[-1] - parsed[0]).total_seconds(), 3)


def _run_from(assignment: str, tool: str, n: int, jobs: int, got: Measured) -> Run:
    return Run(assignment=assignment, tool=tool, n=n, jobs=jobs, wall_s=round(got.wall_s, 3),
               per_submission_median_s=0.0, amortised_s=round(got.wall_s / n, 3),
               peak_tree_rss_mb=round(got.peak_tree_rss_mb, 1),
               max_process_rss_mb=round(got.max_process_rss_mb, 1), returncode=got.returncode)


def _finish(run: Run) -> None:
    if run.per_submission_s:
        run.per_submission_median_s = round(statistics.median(run.per_submission_s.values()), 3)


# -- comparing verdicts --------------------------------------------------------------------------
def compare(first: Run, second: Run, members: list[Member]) -> dict[str, Any]:
    """Function by function, do two runs give every student the same points?"""
    disagreements = []
    compared = 0
    for member in members:
        a = first.points.get(member.student)
        b = second.points.get(member.student)
        if a is None or b is None:
            missing = first.name if a is None else second.name
            disagreements.append(f"{member.student}: no points from {missing}")
            continue
        for function in sorted(set(a) | set(b)):
            compared += 1
            got_a = a.get(function, [None])[0]
            got_b = b.get(function, [None])[0]
            if got_a is None or got_b is None or abs(got_a - got_b) > 1e-6:
                disagreements.append(f"{member.student} {function}: {first.name} {got_a}, "
                                     f"{second.name} {got_b}")
    return {"assignment": first.assignment, "n": len(members),
            "first": first.name, "second": second.name, "compared": compared,
            "agree": compared - sum(": no points from " not in d for d in disagreements),
            "disagreements": disagreements}


def expected_verdicts(run: Run, members: list[Member]) -> dict[str, Any]:
    """Against the class's own record of which functions must lose points (the samples' and
    the benchmark's variants', bench/make_class.py)."""
    wrong = []
    for member in members:
        for function, (earned, available) in run.points.get(member.student, {}).items():
            if (function in member.loses) != (earned < available):
                wrong.append(f"{member.student} {function}: {earned}/{available}")
    return {"run": run.name, "unexpected": wrong}


# -- the benchmark -------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                     .splitlines() if line.startswith("MemTotal"))

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "grader", "autograde_tests",
                            "solutions", "nbgrader_config.py"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "memory_gb": round(memory_kb / 2**20, 1), "os": platform.platform(),
            "python": platform.python_version(), "tensorflow": version("tensorflow"),
            "keras": version("keras"), "nbgrader": version("nbgrader"),
            "grader": version("dl-course-grader"), "commit": commit + ("+dirty" if dirty else ""),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def benchmark(plans: dict[str, Plan], out: Path, plot: Path, command: str) -> dict[str, Any]:
    if not os.environ.get("MNIST_NPZ") or not Path(os.environ["MNIST_NPZ"]).exists():
        raise SystemExit("bench: set MNIST_NPZ to the real MNIST .npz (the notebooks and the "
                         "grader both read it)")
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"command": command, "machine": machine(),
                              "started": dt.datetime.now().isoformat(timespec="seconds"),
                              "plans": {a: asdict(p) for a, p in plans.items()},
                              "runs": [], "agreement": [], "identical": [], "expected": []}
    started = time.perf_counter()

    def record(run: Run) -> None:
        run.extra["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        report["runs"].append(asdict(run))
        print(f"[{time.perf_counter() - started:7.1f} s] {run.assignment:8s} {run.label:12s} "
              f"N={run.n:<4d} wall {run.wall_s:8.1f} s  median {run.per_submission_median_s:6.2f} s"
              f"  peak {run.peak_tree_rss_mb:7.0f} MB" + (f"  PROBLEMS: {len(run.problems)}"
                                                          if run.problems else ""),
              file=sys.stderr, flush=True)
        save(report, out)

    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        work = Path(scratch)
        for assignment, plan in plans.items():
            warm_up(assignment)
            record(run_limit(assignment, work))
            graded: list[tuple[Run, list[Member]]] = []
            sizes = set(plan.sizes) | set(plan.nbgrader_sizes) | set(plan.memory_sizes) \
                | set(plan.uncached_sizes)
            for n in sorted(sizes, reverse=True):  # the whole class first, then its samples
                class_dir = work / f"class-{assignment}-n{n}"
                members = make_class(assignment, n, class_dir)
                runs: list[Run] = []
                jobs = plan.jobs if n in plan.sizes else \
                    (max(plan.jobs),) if n in plan.memory_sizes else ()
                for cache, js in ((True, jobs),
                                  (False, plan.uncached_jobs if n in plan.uncached_sizes else ())):
                    for j in js:
                        if j > n and j != min(js):
                            continue  # more workers than submissions: the same as fewer
                        runs.append(run_grader(assignment, members, class_dir, j, work,
                                               cache=cache))
                        record(runs[-1])
                if n in plan.nbgrader_sizes:
                    runs.append(run_nbgrader(assignment, members, class_dir, work))
                    record(runs[-1])
                report["expected"] += [dict(expected_verdicts(r, members), n=n,
                                            assignment=assignment) for r in runs]
                graded += [(r, members) for r in runs]
                shutil.rmtree(class_dir, ignore_errors=True)
            report["agreement"] += agreements(graded)
            report["identical"] += identities(graded)
            save(report, out)
    report["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    report["total_s"] = round(time.perf_counter() - started, 1)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save(report, out)
    (out / "report.md").write_text(render(report))
    draw(report, plot)
    return report


def _common(a: list[Member], b: list[Member]) -> list[Member]:
    """The students two runs both graded: the smaller class is the larger one's first members."""
    return a if len(a) <= len(b) else b


def agreements(graded: list[tuple[Run, list[Member]]]) -> list[dict[str, Any]]:
    """Points, function by function: nbgrader against every grader run, and the first grader
    run (the whole class, cache on, smallest J) against every other grader run."""
    graders = [(r, m) for r, m in graded if r.tool == "grader"]
    rows = []
    if graders:
        base, base_members = graders[0]
        rows += [compare(base, r, _common(base_members, m)) for r, m in graders[1:]]
    for nb, nb_members in ((r, m) for r, m in graded if r.tool == "nbgrader"):
        rows += [compare(r, nb, _common(m, nb_members)) for r, m in graders]
    return rows


def identities(graded: list[tuple[Run, list[Member]]]) -> list[dict[str, Any]]:
    """Whole result.full.json files, timing fields aside: every grader run without the cache
    against every run with it, and the runs with it at different J against each other."""
    graders = [(r, m) for r, m in graded if r.tool == "grader"]
    rows = []
    for index, (first, first_members) in enumerate(graders):
        for second, second_members in graders[index + 1:]:
            if first.cache is False and second.cache is False:
                continue
            rows.append(identical(first, second, _common(first_members, second_members)))
    return rows


def save(report: dict[str, Any], out: Path) -> None:
    path = out / "results.json"
    path.with_suffix(".tmp").write_text(json.dumps(report, indent=1))
    path.with_suffix(".tmp").replace(path)


# -- rendering -----------------------------------------------------------------------------------
def _runs(report: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [r for r in report["runs"] if all(r[k] == v for k, v in match.items())]


def render(report: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md, from the results."""
    lines = ["| assignment | grader | N | J | training cache | wall (s) | per submission, median "
             "(s) | beyond training, median (s) | wall / N (s) | distinct trainings | trainings | "
             "peak RSS, process tree (MB) | largest process (MB) | load average after (1 min) |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["runs"]:
        if r["tool"] == "limit":
            continue
        jobs = str(r["jobs"]) if r["tool"] == "grader" else "1 (serial)"
        cache = {True: "on", False: "off"}.get(r.get("cache"), "—")
        load = r["extra"].get("load_average_after", [float("nan")])[0]
        beyond = r["extra"].get("overhead_median_s", float("nan"))
        distinct, total = _trainings(r)
        lines.append(f"| {r['assignment']} | {r['tool']} | {r['n']} | {jobs} | {cache} | "
                     f"{r['wall_s']:.1f} | {r['per_submission_median_s']:.2f} | "
                     f"{_num(beyond, 2)} | {r['amortised_s']:.2f} | {distinct} | {total} | "
                     f"{r['peak_tree_rss_mb']:.0f} | {r['max_process_rss_mb']:.0f} | "
                     f"{_num(load)} |")
    lines += ["", *headline(report)]
    lines += ["", "| assignment | limit per submission (s) | grader, N=1 (s) | grader overhead "
              "(s) | grader / limit | nbgrader, N=1 (s) | nbgrader / limit | "
              "nbgrader / grader |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for limit in _runs(report, tool="limit"):
        a = limit["assignment"]
        one = _runs(report, assignment=a, tool="grader", n=1, jobs=1)
        nb_one = _runs(report, assignment=a, tool="nbgrader", n=1)
        if not one and not nb_one:
            continue  # no class of one (the mnist class plan): the tables above say it all
        g = one[0]["wall_s"] if one else float("nan")
        nb = nb_one[0]["wall_s"] if nb_one else float("nan")
        lim = limit["per_submission_median_s"]
        lines.append(f"| {a} | {lim:.2f} | {_num(g)} | {_num(g - lim)} | {_ratio(g, lim)} | "
                     f"{_num(nb)} | {_ratio(nb, lim)} | {_ratio(nb, g)} |")
    lines += ["", "| assignment | limit (s) | grader's accuracy tests (s) | other hidden tests "
              "(s) | checking process outside the tests (s) | processes' start-up and writing "
              "the outputs (s) | grader wall, N=1 (s) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for limit in _runs(report, tool="limit"):
        one = _runs(report, assignment=limit["assignment"], tool="grader", n=1, jobs=1)
        ref = one[0]["extra"].get("reference") if one else None
        if not ref:
            continue
        wall = one[0]["wall_s"]
        lines.append(
            f"| {limit['assignment']} | {limit['per_submission_median_s']:.2f} | "
            f"{ref['accuracy_tests_seconds']:.2f} | "
            f"{ref['tests_seconds'] - ref['accuracy_tests_seconds']:.2f} | "
            f"{ref['seconds'] - ref['tests_seconds']:.2f} | {wall - ref['seconds']:.2f} | "
            f"{wall:.1f} |")
    lines += ["", "| assignment | N | nbgrader wall (s) | grader J=1 wall (s) | grader J=2 wall "
              "(s) | nbgrader / grader J=1 | nbgrader / grader J=2 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for nb in _runs(report, tool="nbgrader"):
        a, n = nb["assignment"], nb["n"]
        walls = {r["jobs"]: r["wall_s"] for r in _runs(report, assignment=a, tool="grader", n=n)
                 if r.get("cache") is not False}
        if not walls:
            continue  # a sample of the class: the headline table scales it
        j1, j2 = walls.get(1, float("nan")), walls.get(2, float("nan"))
        lines.append(f"| {a} | {n} | {nb['wall_s']:.1f} | {_num(j1)} | {_num(j2)} | "
                     f"{_ratio(nb['wall_s'], j1)} | {_ratio(nb['wall_s'], j2)} |")
    lines += ["", "| assignment | N | compared | functions compared | agree | disagreements |",
              "|---|---:|---|---:|---:|---|"]
    for row in report["agreement"]:
        what = "; ".join(row["disagreements"]) or "none"
        lines.append(f"| {row['assignment']} | {row['n']} | {row['first']} vs {row['second']} | "
                     f"{row['compared']} | {row['agree']} | {what} |")
    lines += ["", "| assignment | students | compared | results compared | identical apart from "
              "timing | differences |", "|---|---:|---|---:|---:|---|"]
    for row in report.get("identical", []):
        what = "; ".join(row["differences"]) or "none"
        lines.append(f"| {row['assignment']} | {row['n']} | {row['first']} vs {row['second']} | "
                     f"{row['compared']} | {row['identical']} | {what} |")
    return "\n".join(_without_empty_tables(lines)) + "\n"


def _without_empty_tables(lines: list[str]) -> list[str]:
    """Tables with no rows left out (a header, its rule, then a blank line or the end)."""
    out: list[str] = []
    index = 0
    while index < len(lines):
        header = lines[index].startswith("| ") and index + 1 < len(lines) \
            and lines[index + 1].startswith("|---")
        if header and (index + 2 == len(lines) or not lines[index + 2].startswith("|")):
            index += 3  # the header, its rule and the blank line after them
            continue
        out.append(lines[index])
        index += 1
    while out and not out[-1]:
        out.pop()
    return out


def _trainings(run: dict[str, Any]) -> tuple[str, str]:
    """Distinct trainings (the cache's entries after the run) and all trainings asked for
    (hits + misses + unkeyed, summed over the checking processes' logs), as table cells."""
    counts = run["extra"].get("trainings") or {}
    distinct = "—" if counts.get("entries") is None else str(counts["entries"])
    total = "—" if counts.get("total") is None else str(counts["total"])
    if counts.get("total") is not None and counts.get("logs_with_counts", 0) < run["n"]:
        total += f" ({counts['logs_with_counts']} of {run['n']} logs)"
    return distinct, total


def _scaled(runs: list[dict[str, Any]], n: int) -> tuple[float, str]:
    """The wall time of the largest of ``runs``, scaled by wall / N to ``n`` students when it
    graded fewer (marked "est.")."""
    if not runs:
        return float("nan"), "—"
    run = max(runs, key=lambda r: (r["n"], r["jobs"]))
    if run["n"] == n:
        return run["wall_s"], f"{run['wall_s']:.1f}"
    value = run["amortised_s"] * n
    return value, f"{value:.1f} (est. from N={run['n']})"


def headline(report: dict[str, Any]) -> list[str]:
    """The ratios issue 16 asks for, per assignment, on its largest class graded with the cache:
    nbgrader against the grader (cache on, largest J), the grader without the cache against with
    it, the overhead beyond training, and the distinct trainings against all of them. A run on
    fewer students than the class is scaled by wall / N and marked "est."."""
    lines = ["| assignment | N | grader, cache on, J (s) | nbgrader (s) | nbgrader / grader | "
             "cache off (s) | cache off / cache on | beyond training per submission, median "
             "(s) | distinct trainings / trainings |", "|---|---:|---|---|---:|---|---:|---:|---|"]
    for a in dict.fromkeys(r["assignment"] for r in report["runs"]):
        cached = [r for r in _runs(report, assignment=a, tool="grader") if r.get("cache")]
        if not cached:
            continue
        n = max(r["n"] for r in cached)
        best = max((r for r in cached if r["n"] == n), key=lambda r: r["jobs"])
        wall = best["wall_s"]
        nb, nb_text = _scaled(_runs(report, assignment=a, tool="nbgrader"), n)
        off, off_text = _scaled([r for r in _runs(report, assignment=a, tool="grader",
                                                  jobs=best["jobs"]) if r.get("cache") is False], n)
        off_text += f", J={best['jobs']}" if off == off else ""
        beyond = best["extra"].get("overhead_median_s", float("nan"))
        distinct, total = _trainings(best)
        lines.append(f"| {a} | {n} | {wall:.1f}, J={best['jobs']} | {nb_text} | "
                     f"{_ratio(nb, wall)} | {off_text} | {_ratio(off, wall)} | "
                     f"{_num(beyond, 2)} | {distinct} / {total} |")
    return lines


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b and b == b and a == a else "—"


def _num(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if value == value else "—"


def draw(report: dict[str, Any], path: Path) -> None:
    """One row per assignment: wall time, wall time per submission, peak memory, against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    assignments = list(dict.fromkeys(r["assignment"] for r in report["runs"]))
    figure, grid = plt.subplots(len(assignments), 3, figsize=(15, 4 * len(assignments)),
                                squeeze=False)
    for row, assignment in zip(grid, assignments, strict=True):
        series: dict[str, list[dict[str, Any]]] = {}
        sizes = sorted({r["n"] for r in _runs(report, assignment=assignment) if r["tool"] != "limit"})
        for r in _runs(report, assignment=assignment):
            if r["tool"] != "limit":
                series.setdefault(Run(**r).label, []).append(r)
        for label, runs in sorted(series.items()):
            runs.sort(key=lambda r: r["n"])
            ns = [r["n"] for r in runs]
            style = "s--" if label == "nbgrader" else "o-"
            row[0].plot(ns, [r["wall_s"] for r in runs], style, label=label)
            row[1].plot(ns, [r["amortised_s"] for r in runs], style, label=label)
            row[2].plot(ns, [r["peak_tree_rss_mb"] for r in runs], style, label=label)
        for limit in _runs(report, assignment=assignment, tool="limit"):
            seconds = limit["per_submission_median_s"]
            row[1].axhline(seconds, color="gray", linestyle=":")
            row[1].annotate(f"limit: {seconds:.2f} s", (1, seconds), color="gray",
                            fontsize=8, va="bottom")
        titles = ["wall time of the run (s)", "wall time per submission (s)",
                  "peak RSS of the process tree (MB)"]
        for axis, title in zip(row, titles, strict=True):
            axis.set_xscale("log")
            low, high = axis.get_ylim()
            if axis is not row[2] and high > 10 * max(low, 1e-9):
                axis.set_yscale("log")  # spans decades
            else:
                axis.set_ylim(bottom=0)
            for scale in (axis.xaxis, axis.yaxis):
                scale.set_major_formatter(ScalarFormatter())
                scale.set_minor_formatter(NullFormatter())
            axis.set_xticks(sizes)
            axis.set_xlabel("submissions (N)")
            axis.set_title(f"{assignment}: {title}", fontsize=10)
            axis.grid(True, which="both", alpha=0.3)
        row[0].legend(fontsize=8)
    m = report["machine"]
    figure.suptitle(f"{m['cpu']}, {m['usable_cores']} cores, {m['memory_gb']} GB RAM — "
                    f"grader {m['grader']}, nbgrader {m['nbgrader']}, TensorFlow {m['tensorflow']}",
                    fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


# -- command line --------------------------------------------------------------------------------
def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip() and int(x) > 0)


def plans_from(args: argparse.Namespace) -> dict[str, Plan]:
    names = ["mnist", "backprop"] if args.assignment == "all" else [args.assignment]
    plans = {}
    for name in names:
        default = (FULL_PLANS if args.full else DEFAULT_PLANS)[name]
        sizes = _ints(args.n) if args.n else default.sizes
        nb_sizes = (_ints(args.nbgrader_n) if args.nbgrader_n is not None
                    else sizes if args.n else default.nbgrader_sizes)
        memory = (_ints(args.memory_n) if args.memory_n is not None
                  else () if args.n else default.memory_sizes)
        jobs = _ints(args.jobs) if args.jobs else default.jobs
        uncached = (_ints(args.uncached_n) if args.uncached_n is not None
                    else sizes if args.n else default.uncached_sizes)
        uncached_jobs = (_ints(args.uncached_jobs) if args.uncached_jobs is not None
                         else jobs if args.n or args.jobs else default.uncached_jobs)
        plans[name] = Plan(sizes=sizes, jobs=jobs, nbgrader_sizes=nb_sizes, memory_sizes=memory,
                           uncached_sizes=uncached, uncached_jobs=uncached_jobs)
    return plans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", choices=["all", "mnist", "backprop"], default="mnist",
                        help="default: mnist, the realistic class (backprop has a plan of its "
                             "own; all: both, one after the other)")
    parser.add_argument("--full", action="store_true",
                        help="every run on the whole class: nbgrader and --no-cache at every J "
                             "too (mnist: 55 to 100 minutes on 2 cores)")
    parser.add_argument("--n", default=None, help="class sizes, e.g. 1,10,50 (default: the plan)")
    parser.add_argument("--jobs", default=None, help="grader --jobs values, e.g. 1,2")
    parser.add_argument("--nbgrader-n", default=None,
                        help="sizes nbgrader grades (default: --n, or the plan's)")
    parser.add_argument("--memory-n", default=None,
                        help="extra sizes graded by the grader only, at the largest J "
                             "(default: the plan's; 0 for none)")
    parser.add_argument("--uncached-n", default=None,
                        help="sizes graded again with --no-cache (the class's first members; "
                             "default: --n, or the plan's; 0 for none)")
    parser.add_argument("--uncached-jobs", default=None,
                        help="--jobs values of the --no-cache runs (default: --jobs, or the "
                             "plan's)")
    parser.add_argument("--out", type=Path, default=BENCH / "output")
    parser.add_argument("--plot", type=Path, default=None, help="default: OUT/benchmarks.png")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: redraw OUT/report.md and the plot from "
                             "OUT/results.json")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads((args.out / "results.json").read_text())
        (args.out / "report.md").write_text(render(saved))
        draw(saved, args.plot or args.out / "benchmarks.png")
        print(render(saved))
        return 0
    plans = plans_from(args)
    shown = " ".join(sys.argv[1:] if argv is None else argv)
    command = f".venv/bin/python bench/run.py {shown}".strip()
    report = benchmark(plans, args.out, args.plot or args.out / "benchmarks.png", command)
    print(render(report))
    problems = [p for r in report["runs"] for p in r["problems"]]
    disagreements = [d for row in report["agreement"] for d in row["disagreements"]]
    disagreements += [d for row in report["identical"] for d in row["differences"]]
    if problems:
        print("bench: problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    return 1 if problems or disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
