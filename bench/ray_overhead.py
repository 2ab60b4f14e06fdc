"""Ray's overhead per submission, on one machine: the backprop class graded one submission at
a time by the local backend and by Ray, interleaved so that both see the same machine load.
For each submission, overhead = time until its outputs are written - time its checking process
took (that of the local backend's thread, that of the Ray task); Ray's overhead is the
difference. Then the whole class two at a time, for the wall time a TA sees.
Usage: python ray_overhead.py RAY_ADDRESS [N]"""

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray

from grader import checkers, ray_backend, runner
from grader.check_one import Job

address = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 13  # the whole backprop sample class
out = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
notebooks = sorted(Path("tests/files/samples/backprop").glob("*.ipynb"))[:n]


def job(notebook: Path, folder: str) -> Job:
    return Job(notebook=notebook.resolve(), student=notebook.stem, assignment="backprop",
               profile="quick", out_dir=out / folder, data={}, isolation=None)


def local_once(notebook: Path) -> tuple[float, float]:
    inner: list[float] = []

    def grade_one(j: Job):
        start = time.perf_counter()
        result = checkers.grade_in_subprocess(j)
        inner.append(time.perf_counter() - start)
        return result

    start = time.perf_counter()
    runner.run([job(notebook, "local")], workers=1, force=True, grade_one=grade_one)
    return time.perf_counter() - start, inner[0]


def ray_once(notebook: Path) -> tuple[float, float]:
    start = time.perf_counter()
    ray_backend.run([job(notebook, "ray")], address=address, force=True)
    total = time.perf_counter() - start
    last = (out / "ray" / ".logs" / ray_backend.NODE_LOG).read_text().splitlines()[-1]
    return total, json.loads(last)["grade_seconds"]


if ray_backend.local_token():  # a cluster with token authentication (docs/ray.md, Security)
    os.environ.setdefault("RAY_AUTH_MODE", "token")
ray.init(address=address, logging_level="WARNING", log_to_driver=False)  # connect once
cold = ray_once(notebooks[0])  # starts Ray's worker processes
rows = []
for notebook in notebooks:
    local_total, local_grade = local_once(notebook)
    ray_total, ray_grade = ray_once(notebook)
    rows.append({"student": notebook.stem, "local_s": round(local_total, 3),
                 "ray_s": round(ray_total, 3),
                 "overhead_s": round((ray_total - ray_grade) - (local_total - local_grade), 3)})
ray.shutdown()

start = time.perf_counter()  # the whole class, two at a time; Ray's includes connecting
runner.run([job(nb, "local2") for nb in notebooks], workers=2, force=True)
local_class = time.perf_counter() - start
start = time.perf_counter()
ray_backend.run([job(nb, "ray2") for nb in notebooks], address=address, force=True)
ray_class = time.perf_counter() - start

overheads = [r["overhead_s"] for r in rows]
print(json.dumps({
    "submissions": len(rows), "first_ray_task_s": round(cold[0], 3),
    "median_overhead_s": statistics.median(overheads),
    "min_overhead_s": min(overheads), "max_overhead_s": max(overheads),
    "median_local_s": statistics.median(r["local_s"] for r in rows),
    "median_ray_s": statistics.median(r["ray_s"] for r in rows),
    "class_local_jobs2_s": round(local_class, 3), "class_ray_two_nodes_s": round(ray_class, 3),
    "rows": rows}, indent=2))
