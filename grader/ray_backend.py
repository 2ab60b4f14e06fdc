"""``grader grade --backend ray``: the same grading, scheduled on a Ray cluster.

Each submission is one Ray task. The task runs exactly what the local backend runs for one
submission, :func:`grader.checkers.grade_in_subprocess` (extract → sandbox → hidden suites in a
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

Security: a Ray cluster runs any code its clients send. Before connecting, the driver asks the
cluster's GCS for its id without a token; a cluster that answers has authentication off and is
refused (``GRADER_RAY_ALLOW_NO_AUTH=1`` grades on it anyway, with a warning). A cluster that
asks for a token gets this machine's (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``), checked the same way first.

Cleanup: each task works in ``grader-ray-<pid>-XXXX`` in the node's temporary folder, removes it
on every way out Python sees (a cancelled task also ends its checking process and removes that
process' sandbox roots), and first sweeps what killed gradings left on the node
(:mod:`grader._cleanup`). It keeps one thing on purpose: without ``GRADER_TRAINING_CACHE``,
the node's training cache :data:`NODE_CACHE` (training outcomes and the feedback's pictures),
shared by the node's tasks and later runs. Ray's raylet messages (a lost node's state dump) go to
``DIR/.logs/ray-errors.log``; the driver says in one line how many nodes were lost and how many
gradings were retried elsewhere.
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

from grader import _interrupt
from grader.check_one import Job, failed_result, write_outputs
from grader.errors import ConfigurationError
from grader.results import SubmissionResult

INSTALL_HINT = "--backend ray needs Ray: pip install '.[ray]' (or pip install 'ray[default]')"
NODE_LOG = "ray.jsonl"
"""Per run folder, under ``.logs/``: one JSON line per graded submission (student, node, host)."""
NODE_CACHE = "grader-training-cache"
"""Without ``GRADER_TRAINING_CACHE``: the training cache (and its stored pictures) of a node, in
its temporary folder, shared by the node's tasks and kept across runs."""

ENV_CPUS = "GRADER_RAY_CPUS"
ENV_GPUS = "GRADER_RAY_GPUS"
ENV_MEMORY_MB = "GRADER_RAY_MEMORY_MB"
ENV_RETRIES = "GRADER_RAY_RETRIES"
ENV_ALLOW_NO_AUTH = "GRADER_RAY_ALLOW_NO_AUTH"

DEFAULT_GPU_FRACTION = 0.25
DEFAULT_MEMORY_MB = {False: 2048, True: 4096}  # keyed by "the assignment needs TensorFlow"

Callback = Callable[[SubmissionResult, bool], None]


def require_ray() -> None:
    """The install hint as a ConfigurationError when Ray is missing, without importing it."""
    import importlib.util

    if sys.modules.get("ray", False) is None:
        raise ConfigurationError(INSTALL_HINT)
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigurationError(INSTALL_HINT)


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


def _attempt() -> int:
    """Which try of this task runs: 0 for the first, more after a lost node or worker."""
    try:
        import ray

        worker: Any = ray._private.worker.global_worker
        return int(worker.core_worker.get_current_task_attempt_number())
    except Exception:  # noqa: BLE001 - outside Ray, or a Ray without it
        return 0


def _end_children(tmp_root: Path) -> None:
    """End the processes this task started (the checking process, its sandboxes) and remove
    their temporary entries: the task is being cancelled or its worker asked to exit."""
    from grader._cleanup import remove_owned_by

    try:
        import psutil  # installed with Ray
    except ImportError:
        return
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        with contextlib.suppress(psutil.Error, OSError):
            child.kill()
    psutil.wait_procs(children, timeout=10)
    remove_owned_by({child.pid for child in children}, tmp_root)


def grade_task(spec: dict[str, Any], notebook: bytes | None,
               env: dict[str, str]) -> dict[str, Any]:
    """Grade one submission on this node with the local backend's own function, in temporary
    folders, and return the result (as a dict), the checking process' log and where it ran.

    ``notebook`` is the file's content; None when the driver found the file too large to send
    (the task then recreates a sparse file of the same size, which the grader refuses with the
    same message as on the driver) or could not read it.

    The task first removes what killed gradings left on this machine
    (:func:`grader._cleanup.sweep_stale`). Its own folder is ``grader-ray-<pid>-XXXX`` in the
    temporary folder, removed on every way out that Python sees: a cancelled task (Ctrl-C on
    the driver) also ends its checking process and removes that process' sandbox roots.
    """
    from grader._cleanup import remove, sweep_stale
    from grader.checkers import grade_in_subprocess
    from grader.course import load_assignment

    started = time.perf_counter()
    tmp_root = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        sweep_stale(tmp_root)
    tmp = Path(tempfile.mkdtemp(prefix=f"grader-ray-{os.getpid()}-"))
    try:
        folder = tmp / "submission"
        folder.mkdir()
        path = folder / spec["notebook_name"]
        if notebook is not None:
            path.write_bytes(notebook)
        elif spec.get("size") is not None:
            with open(path, "wb") as handle:
                handle.truncate(spec["size"])
        # The driver's data paths where this node has them, else this node's own copies
        # (the environment variable or Keras' cache the assignment declares).
        given = {str(k): Path(v) for k, v in (spec.get("data") or {}).items()}
        here = load_assignment(spec["assignment"]).data_files(
            {k: v for k, v in given.items() if v.exists()})
        data = {k: v for k, v in here.items() if v is not None}
        out = tmp / "out"
        # The training cache: GRADER_TRAINING_CACHE (forwarded from the driver: a folder every
        # node mounts shares it across the cluster), else one per node, shared by its tasks.
        cache = None
        if spec.get("training_cache"):
            shared = env.get("GRADER_TRAINING_CACHE") or os.environ.get("GRADER_TRAINING_CACHE")
            cache = Path(shared) if shared else tmp_root / NODE_CACHE
        job = Job(notebook=path, student=spec["student"], assignment=spec["assignment"],
                  profile=spec["profile"], out_dir=out, data=data,
                  isolation=spec["isolation"], training_cache=cache)
        with _environ(env):
            grading_started = time.perf_counter()
            result = grade_in_subprocess(job)
            grade_seconds = time.perf_counter() - grading_started
        log_path = out / ".logs" / f"{job.student}.log"
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
    except BaseException:
        _end_children(tmp_root)
        raise
    finally:
        remove(tmp)
    result.notebook = spec["notebook"]  # the driver's path, as the local backend records it
    return {"result": result.to_dict(), "log": log, "node_id": _node_id(),
            "hostname": socket.gethostname(), "pid": os.getpid(), "attempt": _attempt(),
            "grade_seconds": round(grade_seconds, 3),
            "task_seconds": round(time.perf_counter() - started, 3)}


# ---------------------------------------------------------------------------------------------
# The driver.

def task_spec(job: Job) -> tuple[dict[str, Any], bytes | None]:
    """The task's arguments for ``job``: a JSON-able description and the notebook's bytes."""
    from grader.extract import MAX_NOTEBOOK_BYTES

    # The job as the checking process gets it; the node picks its own output and cache folders.
    spec: dict[str, Any] = {**job.spec(), "notebook_name": job.notebook.name,
                            "training_cache": job.training_cache is not None, "size": None}
    try:
        size = job.notebook.stat().st_size
        if size > MAX_NOTEBOOK_BYTES:
            spec["size"] = size
            return spec, None
        return spec, job.notebook.read_bytes()
    except OSError:
        return spec, None  # graded as a missing file: the student's "cannot read" result


def _host_port(address: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of a ``HOST:PORT`` address; None for ``auto``, ``ray://…`` or nothing."""
    if not address:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str) -> None:
    """Fail at once on a HOST:PORT nobody listens on (Ray itself keeps retrying for minutes)."""
    target = _host_port(address)
    if target is None:
        return  # "auto", "local", ray://...: Ray resolves these itself
    try:
        socket.create_connection(target, timeout=10).close()
    except OSError as exc:
        raise ConfigurationError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}): start its head with "
            "`ray start --head --port=PORT` (see docs/ray.md) or correct --address") from None


# --- authentication ----------------------------------------------------------------------------
# A Ray cluster runs whatever code its clients send. With token authentication (Ray's
# RAY_AUTH_MODE=token) every request must carry the cluster's token; without it anyone who can
# reach the ports can run code on the grading nodes, which hold the hidden suites and every
# submission. The driver asks the cluster's GCS (the head's --port) for its cluster id without
# a token: an answer means authentication is off.

def local_token() -> str | None:
    """The Ray token this machine would send, where Ray looks for it: ``RAY_AUTH_TOKEN``, then
    the file ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    named = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
    for path in ([Path(named)] if named else []) + [Path.home() / ".ray" / "auth_token"]:
        with contextlib.suppress(OSError):
            token = path.read_text().strip()
            if token:
                return token
    return None


def gcs_accepts(address: str, token: str | None, *, timeout: float = 10) -> bool | None:
    """Whether the GCS at ``HOST:PORT`` answers a request that carries ``token`` (None: no
    token): True when it answers, False when it refuses the token, None when it cannot tell
    (no answer, or not a Ray GCS)."""
    # Plain gRPC, not Ray's generated stubs: importing ray loads its core, which reads
    # RAY_AUTH_MODE once, and the caller sets that only after this answer.
    try:
        import grpc  # installed with Ray
    except ImportError:
        return None
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(address) as channel:
        # An empty GetClusterIdRequest serialises to no bytes; the reply is not parsed.
        call = channel.unary_unary(GCS_GET_CLUSTER_ID, request_serializer=bytes,
                                   response_deserializer=bytes)
        try:
            call(b"", timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            return False if exc.code() == grpc.StatusCode.UNAUTHENTICATED else None
    return True


GCS_GET_CLUSTER_ID = "/ray.rpc.NodeInfoGcsService/GetClusterId"


def _open_cluster(address: str) -> None:
    """Refuse a cluster without authentication, unless GRADER_RAY_ALLOW_NO_AUTH=1 (then warn)."""
    risk = ("anyone who can reach its ports can run code on the grading nodes, which hold the "
            "hidden tests and every submission")
    if os.environ.get(ENV_ALLOW_NO_AUTH, "").strip() == "1":
        print(f"grader: WARNING: the Ray cluster at {address} runs without authentication "
              f"({ENV_ALLOW_NO_AUTH}=1): {risk}. Restart it with RAY_AUTH_MODE=token "
              "(docs/ray.md, Security).", file=sys.stderr)
        return
    raise ConfigurationError(
        f"the Ray cluster at {address} runs without authentication: {risk}. Expected a cluster "
        "started with RAY_AUTH_MODE=token and a token file: restart it so (docs/ray.md, "
        f"Security), or set {ENV_ALLOW_NO_AUTH}=1 to grade on it anyway")


def _check_authentication(address: str) -> None:
    """Before connecting to ``HOST:PORT``: refuse it without authentication; with it, make sure
    this machine holds the cluster's token and that Ray sends it."""
    if gcs_accepts(address, None):
        _open_cluster(address)
        return
    token = local_token()
    if token is None:
        raise ConfigurationError(
            f"the Ray cluster at {address} requires its authentication token and this machine "
            "has none: copy the cluster's token file here and set RAY_AUTH_TOKEN_PATH=FILE (or "
            "RAY_AUTH_TOKEN), see docs/ray.md, Security")
    if gcs_accepts(address, token) is False:
        where = ("RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN", "").strip()
                 else os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token")
        raise ConfigurationError(
            f"the Ray cluster at {address} refuses this machine's authentication token (from "
            f"{where}): expected the token the cluster was started with; copy its token file "
            "here and point RAY_AUTH_TOKEN_PATH at it (docs/ray.md, Security)")
    os.environ["RAY_AUTH_MODE"] = "token"  # Ray sends a token to a given address only so


def _check_address(address: str | None) -> None:
    """For a HOST:PORT address, before Ray is imported (its core reads RAY_AUTH_MODE once, at
    import): fail at once when nobody answers, refuse a cluster without authentication, and
    make Ray send this machine's token to one with it."""
    target = address or os.environ.get("RAY_ADDRESS") or None
    already = sys.modules.get("ray")
    if already is not None and already.is_initialized():
        return
    if target and _host_port(target):
        _check_reachable(target)
        _check_authentication(target)


def _connect(ray: Any, address: str | None) -> bool:
    """Connect to the cluster (``address``, else ``RAY_ADDRESS``, else the cluster started on
    this machine, else a new local one), refusing one without authentication. True when this
    call connected, so it disconnects."""
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigurationError(
            f"cannot connect to the Ray cluster at {address or 'the default address'}: {exc} — "
            "start one with `ray start --head` (see docs/ray.md) or pass --address HOST:PORT"
        ) from None
    if not (target and _host_port(target)):
        # found by Ray ("auto", the cluster last started here, or a new one): ask it now
        try:
            gcs = str(ray.get_runtime_context().gcs_address)
            if _host_port(gcs) and gcs_accepts(gcs, None):
                _open_cluster(gcs)
        except BaseException:
            ray.shutdown()
            raise
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


def _finish(ray: Any, ref: Any, job: Job, resources: TaskResources) -> tuple[SubmissionResult, int]:
    """The result of one finished task, its outputs written on the driver (the checking
    process' log, or why the task failed, in ``.logs/<student>.log``), and the task's try
    (0: first)."""
    from grader._fsutil import atomic_write_text
    from grader.rundir import RunDir

    log = RunDir(job.out_dir).log_path(job.student)
    try:
        payload = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - the task's failure becomes a staff-visible result
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        result = failed_result(job, f"the Ray task grading this submission failed (retried up "
                                    f"to {resources.max_retries} times on node loss): {detail}")
        atomic_write_text(log, f"the Ray task grading {job.notebook} failed; Ray reported:\n"
                               f"{''.join(traceback.format_exception(exc))}")
        record: dict[str, Any] = {"student": job.student, "node_id": None, "hostname": None,
                                  "error": detail[:2000]}
        attempt = 0
    else:
        result = SubmissionResult.from_dict(payload["result"])
        atomic_write_text(log, payload["log"])
        attempt = int(payload.get("attempt", 0))
        record = {"student": job.student, "node_id": payload["node_id"],
                  "hostname": payload["hostname"], "pid": payload["pid"], "attempt": attempt,
                  "grade_seconds": payload["grade_seconds"],
                  "task_seconds": payload["task_seconds"]}
    write_outputs(result, job.out_dir)
    _append_node_log(job.out_dir, record)
    return result, attempt


# --- Ray's own messages, lost nodes, Ctrl-C ------------------------------------------------------

RAY_MESSAGES = "ray-errors.log"
"""Per run folder, under ``.logs/``: what Ray's raylets reported to the driver (node deaths with
their state dumps), kept out of the terminal."""


@contextlib.contextmanager
def _raylet_messages_to(log: Path) -> Iterator[None]:
    """Write the error messages Ray's raylets send the driver into ``log`` instead of the
    terminal (Ray prints them even with ``log_to_driver=False``: on a lost node, some 40 lines
    of state dump above the score table)."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        yield
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None:
        yield
        return

    def to_log(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            original(data, ignore_prefix)
            return
        with contextlib.suppress(OSError):
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a", encoding="utf-8") as handle:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                handle.writelines(f"{stamp} {line}\n" for line in data.get("lines", []))

    ray_worker.print_to_stdstream = to_log
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = original


def _dead_nodes(ray: Any) -> set[str]:
    try:
        return {str(n.get("NodeID")) for n in ray.nodes() if not n.get("Alive")}
    except Exception:  # noqa: BLE001 - the cluster's view is a nicety here
        return set()


def node_loss_line(nodes_lost: int, retried: int, messages: Path | None = None) -> str | None:
    """The one line said about lost nodes and retried gradings; None when there were none."""
    if not nodes_lost and not retried:
        return None
    gradings = f"{retried} grading{'s' if retried != 1 else ''}"
    if nodes_lost:
        nodes = "Ray node lost" if nodes_lost == 1 else f"{nodes_lost} Ray nodes lost"
        line = f"grader: {nodes}, {gradings} retried elsewhere"
    else:
        line = f"grader: {gradings} retried elsewhere after their Ray worker was lost"
    if messages is not None and messages.exists():
        line += f" (Ray's messages: {messages})"
    return line


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Cancel in-flight tasks and give them a few seconds to end their checking processes and
    remove their folders (a second Ctrl-C stops waiting)."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=False)
    with contextlib.suppress(Exception, KeyboardInterrupt):
        ray.wait(refs, num_returns=len(refs), timeout=10)


# --- the run -------------------------------------------------------------------------------------

@dataclass
class _Tally:
    """What the run did so far: finished gradings, retried ones, results by student."""

    results: dict[str, SubmissionResult]
    graded: int = 0
    retried: int = 0


def _grade_all(ray: Any, todo: list[Job], tally: _Tally, on_done: Callback | None, *,
               needs_tf: bool) -> None:
    """Submit one task per job, a window at a time, and write each result as it comes."""
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
    try:
        while queue or pending:
            while queue and len(pending) < window:
                job = queue.pop()
                spec, notebook = task_spec(job)
                pending[task.remote(spec, notebook, env)] = job
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                with _interrupt.deferred():  # written and counted together
                    job = pending.pop(ref)
                    result, attempt = _finish(ray, ref, job, resources)
                    tally.results[job.student] = result
                    tally.graded += 1
                    tally.retried += attempt > 0
                    if on_done:
                        on_done(result, False)
            _interrupt.check()
    except KeyboardInterrupt:
        _cancel(ray, list(pending))
        raise


def _needs_tensorflow(jobs: list[Job]) -> bool:
    from grader.course import load_assignment

    return any(load_assignment(a).needs_tensorflow for a in {j.assignment for j in jobs})


def run(jobs: list[Job], *, address: str | None, force: bool,
        on_done: Callback | None = None) -> list[SubmissionResult]:
    """Grade ``jobs`` on the Ray cluster at ``address``, skipping finished ones unless ``force``.

    Same contract as :func:`grader.runner.run`: one result per job, in the jobs' order, and
    ``on_done(result, skipped)`` as each one is known. On KeyboardInterrupt (Ctrl-C) the tasks
    in flight are cancelled (each ends its checking process and removes its folders) before
    it propagates; what was written stays, and a rerun resumes.
    """
    from grader.checkers import split_finished
    from grader.rundir import RunDir

    require_ray()
    results, todo = split_finished(jobs, force=force, on_done=on_done)
    if not todo:
        return [results[job.student] for job in jobs]
    _check_address(address)
    ray = import_ray()
    out = todo[0].out_dir
    tally = _Tally(results)
    needs_tf = _needs_tensorflow(todo)
    connected_here = _connect(ray, address)
    dead_before = _dead_nodes(ray)
    messages = RunDir(out).logs / RAY_MESSAGES
    try:
        with _raylet_messages_to(messages):
            _grade_all(ray, todo, tally, on_done, needs_tf=needs_tf)
            lost = len(_dead_nodes(ray) - dead_before)
    finally:
        if connected_here:
            with contextlib.suppress(Exception, KeyboardInterrupt):
                ray.shutdown()
    line = node_loss_line(lost, tally.retried, messages)
    if line:
        print(line, file=sys.stderr)
    return [results[job.student] for job in jobs]
