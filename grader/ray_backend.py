"""``grader grade --backend ray``: the same grading, scheduled on a Ray cluster.

Each submission is one Ray task. The task runs exactly what the local backend runs for one
submission, :func:`grader.runner.grade_in_subprocess` (extract → sandbox → hidden suites in a
fresh checking process), on whichever node Ray picks, and returns the result as a dict. Nodes
need not share a filesystem with the driver:

- the notebook travels as bytes in the task's arguments and is written into a temporary folder
  on the node, under its original file name;
- the task grades into a temporary output folder on the node and returns the result;
- the driver (the machine that runs ``grader grade``) writes ``DIR/<student>/results.json``,
  ``feedback.html``, ``result.full.json`` and ``DIR/.logs/<student>.log`` as tasks finish, once
  per student, in the layout the local backend writes.

A task lost with its node (or its worker process) is retried on another node by Ray
(``GRADER_RAY_RETRIES``, default 3); a task that still fails becomes that student's
grader-failure result, so every submission ends with exactly one result. A restarted driver
skips the students whose ``result.full.json`` is finished, as the local backend does, unless
``--force``.

Resources declared per task (read from the driver's environment):

``GRADER_RAY_CPUS``       CPUs per grading (default 1)
``GRADER_RAY_GPUS``       fraction of a GPU per grading, e.g. 0.25 for four gradings per card
                          (default 0.25 for TensorFlow assignments when the cluster has GPUs,
                          else 0)
``GRADER_RAY_MEMORY_MB``  memory per grading, for Ray's scheduler (default 2048 for NumPy
                          assignments, 4096 for TensorFlow ones, capped at the largest node)
``GRADER_RAY_RETRIES``    retries of a task whose node or worker died (default 3)

The driver's other ``GRADER_*`` settings (time and memory limits of the sandbox) are passed to
every task, so a submission is graded under the same limits wherever it runs. Where each
submission ran is appended to ``DIR/.logs/ray.jsonl``, with the seconds the task took and the
seconds its checking process took (the difference is what the task adds on the node).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.check_one import Job, failed_result, write_outputs
from grader.errors import ConfigurationError
from grader.results import SubmissionResult

INSTALL_HINT = "--backend ray needs Ray: pip install '.[ray]' (or pip install 'ray[default]')"
NODE_LOG = "ray.jsonl"
"""Per run folder, under ``.logs/``: one JSON line per graded submission (student, node, host)."""

ENV_CPUS = "GRADER_RAY_CPUS"
ENV_GPUS = "GRADER_RAY_GPUS"
ENV_MEMORY_MB = "GRADER_RAY_MEMORY_MB"
ENV_RETRIES = "GRADER_RAY_RETRIES"

DEFAULT_GPU_FRACTION = 0.25
DEFAULT_MEMORY_MB = {False: 2048, True: 4096}  # keyed by "the assignment needs TensorFlow"

Callback = Callable[[SubmissionResult, bool], None]


def import_ray() -> Any:
    """Ray, or the install hint as a ConfigurationError."""
    try:
        import ray
    except ImportError:  # also raised when sys.modules["ray"] is None
        raise ConfigurationError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class TaskResources:
    num_cpus: float
    num_gpus: float
    memory_mb: int
    max_retries: int

    def options(self) -> dict[str, Any]:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                "memory": self.memory_mb * 2**20, "max_retries": self.max_retries,
                "retry_exceptions": False}

    def describe(self) -> str:
        return (f"{self.num_cpus:g} CPU, {self.num_gpus:g} GPU, {self.memory_mb} MB "
                f"(set with {ENV_CPUS}, {ENV_GPUS}, {ENV_MEMORY_MB})")


def _number(name: str, default: float, *, minimum: float, integer: bool = False) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{name} must be a {'whole ' if integer else ''}number, found {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum:g}, found {raw!r}")
    return value


def resources_from_env(*, needs_tensorflow: bool, cluster_gpus: float = 0.0,
                       largest_node_memory_mb: int | None = None) -> TaskResources:
    """What one grading task asks of Ray: the environment's values, else the defaults."""
    gpus_default = DEFAULT_GPU_FRACTION if needs_tensorflow and cluster_gpus > 0 else 0.0
    memory_default = DEFAULT_MEMORY_MB[needs_tensorflow]
    if largest_node_memory_mb is not None:
        memory_default = max(1, min(memory_default, largest_node_memory_mb))
    gpus = _number(ENV_GPUS, gpus_default, minimum=0)
    if gpus > 1 and gpus != int(gpus):
        raise ConfigurationError(
            f"{ENV_GPUS} must be a fraction of one GPU or a whole number of GPUs, found {gpus:g}")
    return TaskResources(
        num_cpus=_number(ENV_CPUS, 1, minimum=0),
        num_gpus=gpus,
        memory_mb=int(_number(ENV_MEMORY_MB, memory_default, minimum=1, integer=True)),
        max_retries=int(_number(ENV_RETRIES, 3, minimum=0, integer=True)),
    )


def forwarded_env() -> dict[str, str]:
    """The driver's grading settings (``GRADER_*`` but the Ray ones) that every task applies."""
    return {k: v for k, v in os.environ.items()
            if k.startswith("GRADER_") and not k.startswith("GRADER_RAY_")}


# ---------------------------------------------------------------------------------------------
# The task: runs on a node of the cluster.

@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # noqa: BLE001 - outside Ray (tests call the task body directly)
        return ""


def grade_task(spec: dict[str, Any], notebook: bytes | None,
               env: dict[str, str]) -> dict[str, Any]:
    """Grade one submission on this node with the local backend's own function, in temporary
    folders, and return the result (as a dict), the checking process' log and where it ran.

    ``notebook`` is the file's content; None when the driver found the file too large to send
    (the task then recreates a sparse file of the same size, which the grader refuses with the
    same message as on the driver) or could not read it.
    """
    from grader.data import find_mnist
    from grader.runner import grade_in_subprocess

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grader-ray-") as tmp:
        folder = Path(tmp) / "submission"
        folder.mkdir()
        path = folder / spec["notebook_name"]
        if notebook is not None:
            path.write_bytes(notebook)
        elif spec.get("size") is not None:
            with open(path, "wb") as handle:
                handle.truncate(spec["size"])
        mnist = Path(spec["mnist"]) if spec.get("mnist") else None
        if mnist is not None and not mnist.exists():
            mnist = find_mnist(None)  # this node's own copy (MNIST_NPZ or Keras' cache)
        out = Path(tmp) / "out"
        job = Job(notebook=path, student=spec["student"], assignment=spec["assignment"],
                  profile=spec["profile"], out_dir=out, mnist=mnist,
                  isolation=spec["isolation"])
        with _environ(env):
            grading_started = time.perf_counter()
            result = grade_in_subprocess(job)
            grade_seconds = time.perf_counter() - grading_started
        log_path = out / ".logs" / f"{job.student}.log"
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
    result.notebook = spec["notebook"]  # the driver's path, as the local backend records it
    return {"result": result.to_dict(), "log": log, "node_id": _node_id(),
            "hostname": socket.gethostname(), "pid": os.getpid(),
            "grade_seconds": round(grade_seconds, 3),
            "task_seconds": round(time.perf_counter() - started, 3)}


# ---------------------------------------------------------------------------------------------
# The driver.

def task_spec(job: Job) -> tuple[dict[str, Any], bytes | None]:
    """The task's arguments for ``job``: a JSON-able description and the notebook's bytes."""
    from grader.extract import MAX_NOTEBOOK_BYTES

    spec: dict[str, Any] = {
        "notebook": str(job.notebook), "notebook_name": job.notebook.name,
        "student": job.student, "assignment": job.assignment, "profile": job.profile,
        "mnist": str(job.mnist) if job.mnist else None, "isolation": job.isolation,
        "size": None}
    try:
        size = job.notebook.stat().st_size
        if size > MAX_NOTEBOOK_BYTES:
            spec["size"] = size
            return spec, None
        return spec, job.notebook.read_bytes()
    except OSError:
        return spec, None  # graded as a missing file: the student's "cannot read" result


def _check_reachable(address: str) -> None:
    """Fail at once on a HOST:PORT nobody listens on (Ray itself keeps retrying for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # "auto", "local", ray://...: Ray resolves these itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise ConfigurationError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}): start its head with "
            "`ray start --head --port=PORT` (see docs/ray.md) or correct --address") from None


def _connect(ray: Any, address: str | None) -> bool:
    """Connect to the cluster (``address``, else ``RAY_ADDRESS``, else the cluster started on
    this machine, else a new local one). True when this call connected, so it disconnects."""
    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigurationError(
            f"cannot connect to the Ray cluster at {address or 'the default address'}: {exc} — "
            "start one with `ray start --head` (see docs/ray.md) or pass --address HOST:PORT"
        ) from None
    return True


def _cluster_shape(ray: Any) -> tuple[float, int | None, float]:
    """GPUs in the cluster, memory of the largest node in MB, CPUs in the cluster."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    memory = [int(n.get("Resources", {}).get("memory", 0) // 2**20) for n in nodes]
    total = ray.cluster_resources()
    return float(total.get("GPU", 0)), (max(memory) if memory else None), float(
        total.get("CPU", 0))


def _warn_if_unschedulable(ray: Any, resources: TaskResources) -> None:
    need = {"CPU": resources.num_cpus, "GPU": resources.num_gpus,
            "memory": resources.memory_mb * 2**20}
    for node in ray.nodes():
        have = node.get("Resources", {})
        if node.get("Alive") and all(have.get(k, 0) >= v for k, v in need.items() if v):
            return
    print(f"grader: no node of the Ray cluster can run a grading task yet (each asks for "
          f"{resources.describe()}); the run waits until one joins", file=sys.stderr)


def _append_node_log(out: Path, record: dict[str, Any]) -> None:
    logs = out / ".logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / NODE_LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def _finish(ray: Any, ref: Any, job: Job, resources: TaskResources) -> SubmissionResult:
    """The result of one finished task, its outputs written on the driver."""
    from grader._fsutil import atomic_write_text

    try:
        payload = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - the task's failure becomes a staff-visible result
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        result = failed_result(job, f"the Ray task grading this submission failed (retried up "
                                    f"to {resources.max_retries} times on node loss): {detail}")
        record = {"student": job.student, "node_id": None, "hostname": None,
                  "error": detail[:2000]}
    else:
        result = SubmissionResult.from_dict(payload["result"])
        atomic_write_text(job.out_dir / ".logs" / f"{job.student}.log", payload["log"])
        record = {"student": job.student, "node_id": payload["node_id"],
                  "hostname": payload["hostname"], "pid": payload["pid"],
                  "grade_seconds": payload["grade_seconds"],
                  "task_seconds": payload["task_seconds"]}
    write_outputs(result, job.out_dir)
    _append_node_log(job.out_dir, record)
    return result


def run(jobs: list[Job], *, address: str | None, force: bool,
        on_done: Callback | None = None) -> list[SubmissionResult]:
    """Grade ``jobs`` on the Ray cluster at ``address``, skipping finished ones unless ``force``.

    Same contract as :func:`grader.runner.run`: one result per job, in the jobs' order, and
    ``on_done(result, skipped)`` as each one is known.
    """
    from grader.course import load_assignment
    from grader.runner import split_finished

    ray = import_ray()
    results, todo = split_finished(jobs, force=force, on_done=on_done)
    if not todo:
        return [results[job.student] for job in jobs]

    needs_tf = any(load_assignment(a).needs_tensorflow for a in {j.assignment for j in todo})
    connected_here = _connect(ray, address)
    try:
        gpus, largest_memory, cpus = _cluster_shape(ray)
        resources = resources_from_env(needs_tensorflow=needs_tf, cluster_gpus=gpus,
                                       largest_node_memory_mb=largest_memory)
        _warn_if_unschedulable(ray, resources)
        task = ray.remote(grade_task).options(**resources.options())
        env = forwarded_env()
        # Notebooks go to the object store as tasks are submitted: keep a window in flight
        # rather than the whole class at once.
        window = max(16, 4 * int(cpus / max(resources.num_cpus, 0.01)))
        queue = list(reversed(todo))
        pending: dict[Any, Job] = {}
        while queue or pending:
            while queue and len(pending) < window:
                job = queue.pop()
                spec, notebook = task_spec(job)
                pending[task.remote(spec, notebook, env)] = job
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                result = _finish(ray, ref, job, resources)
                results[job.student] = result
                if on_done:
                    on_done(result, False)
    finally:
        if connected_here:
            ray.shutdown()
    return [results[job.student] for job in jobs]
