"""The GPU measurement of docs/benchmarks.md, in one command for a short lease on a GPU machine:
the mnist class graded with the `full` profile by 1 and 4 workers sharing the card, with the
training cache on and off.

    MNIST_NPZ=/path/to/full/mnist.npz python bench/gpu.py [--n 8] [--jobs 1,4] [--out DIR]

It needs the grader installed with a GPU build of TensorFlow, and MNIST with all 60,000
training images (the `full` profile refuses fewer). Each run is `grader grade --profile full
--jobs J [--no-cache]` on the same class (bench/make_class.py; a fresh --out each, so no run
starts from another's cache); it writes OUT/gpu.json with the machine, `nvidia-smi`'s view of
the card, and per run the wall time, wall / N, the median per-submission time, the device each
result records, the GPU memory used at its peak (sampled with nvidia-smi), the distinct
trainings, and whether every verdict matched the class's record and the cache-off run.
`--profile quick --n 2 --jobs 1` runs the same machinery on a CPU machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_class import make_class  # noqa: E402
from run import (  # noqa: E402
    ROOT,
    _env,
    cache_counts,
    expected_verdicts,
    function_points,
    machine,
    measure,
    without_timing,
)


def nvidia_smi(*query: str) -> list[str]:
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(query)}",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.strip().splitlines() if done.returncode == 0 else []


class GpuMemory(threading.Thread):
    """The card's used memory, sampled every half second; ``peak_mb`` at the end."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.5):
            for line in nvidia_smi("memory.used"):
                self.peak_mb = max(self.peak_mb, int(float(line.split(",")[0])))

    def stop(self) -> int:
        self._halt.set()
        self.join(timeout=5)
        return self.peak_mb


def grade(class_dir: Path, members: list[Any], work: Path, *, profile: str, jobs: int,
          cache: bool) -> dict[str, Any]:
    out = work / f"j{jobs}-{'cache' if cache else 'no-cache'}"
    command = [sys.executable, "-m", "grader", "grade", str(class_dir), "--assignment", "mnist",
               "--out", str(out), "--jobs", str(jobs), "--profile", profile, "--quiet",
               "--force", *([] if cache else ["--no-cache"])]
    sampler = GpuMemory()
    sampler.start()
    got = measure(command, cwd=ROOT, env=_env(), log=out.with_suffix(".log"))
    peak_gpu = sampler.stop()
    results, seconds, devices = {}, [], set()
    for member in members:
        path = out / member.student / "result.full.json"
        if path.exists():
            result = json.loads(path.read_text())
            results[member.student] = result
            seconds.append(float(result.get("seconds") or 0))
            devices.add(str(result.get("device")))
    points = {student: function_points(result) for student, result in results.items()}
    return {"jobs": jobs, "cache": cache, "returncode": got.returncode,
            "wall_s": round(got.wall_s, 1),
            "wall_per_submission_s": round(got.wall_s / len(members), 2),
            "per_submission_median_s": round(statistics.median(seconds), 2) if seconds else None,
            "devices": sorted(devices), "peak_gpu_memory_mb": peak_gpu,
            "peak_tree_rss_mb": round(got.peak_tree_rss_mb),
            "trainings": cache_counts(out, members, cache),
            "graded": len(results), "points": points,
            "comparable": {s: without_timing(r, class_dir) for s, r in results.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8, help="class size (default 8)")
    parser.add_argument("--jobs", default="1,4", help="--jobs values (default 1,4)")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "output" / "gpu")
    args = parser.parse_args(argv)
    jobs = tuple(int(j) for j in args.jobs.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "profile": args.profile, "n": args.n,
                              "gpu": nvidia_smi("name", "memory.total", "driver_version"),
                              "runs": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        work = Path(scratch)
        class_dir = work / "class"
        members = make_class("mnist", args.n, class_dir)
        for cache in (True, False):
            for j in jobs:
                run = grade(class_dir, members, work, profile=args.profile, jobs=j, cache=cache)
                state = "on" if cache else "off"
                print(f"[{time.perf_counter() - started:6.0f} s] J={j} cache={state}: "
                      f"wall {run['wall_s']} s, {run['wall_per_submission_s']} s per submission, "
                      f"GPU memory peak {run['peak_gpu_memory_mb']} MB, "
                      f"{run['graded']}/{args.n} graded, exit {run['returncode']}", flush=True)
                report["runs"].append(run)
        expected = [expected_verdicts(_as_run(r), members) for r in report["runs"]]
    first = report["runs"][0]["comparable"]
    report["identical_apart_from_timing"] = all(r["comparable"] == first for r in report["runs"])
    report["expected_verdicts"] = expected
    for run in report["runs"]:
        run.pop("comparable")
    report["total_s"] = round(time.perf_counter() - started, 1)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"} | {"runs": [
        {k: v for k, v in r.items() if k != "points"} for r in report["runs"]]}, indent=1))
    ok = report["identical_apart_from_timing"] and all(
        r["returncode"] == 0 and r["graded"] == args.n for r in report["runs"])
    return 0 if ok else 1


def _as_run(run: dict[str, Any]) -> Any:
    """What expected_verdicts reads: ``name`` and, per student and function, [earned,
    available]."""
    return SimpleNamespace(name=f"grader J={run['jobs']} cache {'on' if run['cache'] else 'off'}",
                           points=run["points"])


if __name__ == "__main__":
    sys.exit(main())
