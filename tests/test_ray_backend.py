"""The Ray backend: a real two-node Ray cluster on loopback grades the backprop samples.

The cluster is made of ``ray start`` processes (a head with the custom resource ``head`` and a
second node with ``node2``), each with its own temporary folder and ports, so that the test
neither meets nor stops any other Ray cluster on the machine. Teardown kills exactly the
processes of this cluster (found by their temporary folder, with their children); ``ray stop``
is not used because it stops every Ray process of the user on the machine.

Clusters start with token authentication (RAY_AUTH_MODE=token, a token file of the test) unless
a test needs one without; the nodes of a cluster share a temporary folder of their own
(``TMPDIR``), so that what gradings leave there can be checked without meeting other runs.
Clusters are module-scoped: each starts once for the whole file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from grader import ray_backend
from grader.check_one import Job
from grader.errors import ConfigurationError
from grader.results import SubmissionResult

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "files" / "samples" / "backprop"
RAY = Path(sys.executable).with_name("ray")
TIMING_FIELDS = {"execution_time", "seconds"}

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::FutureWarning",
                                        "ignore::ResourceWarning")


# --- without Ray ---------------------------------------------------------------------------

def test_without_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    job = _jobs(tmp_path, 1)[0]
    with pytest.raises(ConfigurationError) as info:
        ray_backend.run([job], address=None, force=False, on_done=None)
    assert str(info.value) == (
        "--backend ray needs Ray: pip install '.[ray]' (or pip install 'ray[default]')")


def test_resources_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRADER_RAY_CPUS", "GRADER_RAY_GPUS", "GRADER_RAY_MEMORY_MB",
                 "GRADER_RAY_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    numpy_only = ray_backend.resources_from_env(needs_tensorflow=False, cluster_gpus=8)
    assert (numpy_only.num_cpus, numpy_only.num_gpus, numpy_only.memory_mb) == (1, 0, 2048)
    keras = ray_backend.resources_from_env(needs_tensorflow=True, cluster_gpus=2,
                                           largest_node_memory_mb=3000)
    assert (keras.num_gpus, keras.memory_mb, keras.max_retries) == (0.25, 3000, 3)
    assert ray_backend.resources_from_env(needs_tensorflow=True).num_gpus == 0  # no GPU there
    monkeypatch.setenv("GRADER_RAY_GPUS", "0.5")
    monkeypatch.setenv("GRADER_RAY_CPUS", "2")
    monkeypatch.setenv("GRADER_RAY_MEMORY_MB", "6000")
    options = ray_backend.resources_from_env(needs_tensorflow=True).options()
    assert options == {"num_cpus": 2, "num_gpus": 0.5, "memory": 6000 * 2**20,
                       "max_retries": 3, "retry_exceptions": False}
    monkeypatch.setenv("GRADER_RAY_GPUS", "1.5")
    with pytest.raises(ConfigurationError, match="GRADER_RAY_GPUS"):
        ray_backend.resources_from_env(needs_tensorflow=True)
    monkeypatch.setenv("GRADER_RAY_GPUS", "a quarter")
    with pytest.raises(ConfigurationError, match="GRADER_RAY_GPUS must be a number"):
        ray_backend.resources_from_env(needs_tensorflow=True)


def test_task_spec_sends_the_notebook_not_its_path(tmp_path: Path) -> None:
    job = _jobs(tmp_path, 1)[0]
    spec, data = ray_backend.task_spec(job)
    assert data == job.notebook.read_bytes()
    assert spec["notebook_name"] == job.notebook.name and spec["size"] is None
    json.dumps(spec)  # plain data only


def test_node_loss_line(tmp_path: Path) -> None:
    assert ray_backend.node_loss_line(0, 0) is None
    assert ray_backend.node_loss_line(1, 3) == "grader: Ray node lost, 3 gradings retried elsewhere"
    assert ray_backend.node_loss_line(2, 1) == (
        "grader: 2 Ray nodes lost, 1 grading retried elsewhere")
    assert ray_backend.node_loss_line(0, 2) == (
        "grader: 2 gradings retried elsewhere after their Ray worker was lost")
    messages = tmp_path / "ray-errors.log"
    messages.write_text("raylet died\n")
    assert ray_backend.node_loss_line(1, 1, messages) == (
        f"grader: Ray node lost, 1 grading retried elsewhere (Ray's messages: {messages})")


def test_an_address_nobody_answers_fails_at_once(tmp_path: Path) -> None:
    if importlib.util.find_spec("ray") is None:  # not imported: see the driver fixture
        pytest.skip("Ray is not installed (pip install '.[ray]')")
    port = _free_port()  # closed again: nothing listens there
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        ray_backend.run(_jobs(tmp_path, 1), address=f"127.0.0.1:{port}", force=False)
    assert time.monotonic() - started < 30


# --- a local cluster ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalCluster:
    """A head and further nodes, each a ``ray start`` with its own temp folder and ports."""

    def __init__(self, *, auth: bool = True) -> None:
        self.nodes: list[tuple[Path, tuple[str, ...]]] = []
        self.address = ""
        self.node2: Path | None = None
        self.own = Path(tempfile.mkdtemp(prefix="grader-test-ray-"))
        self.token = self.own / "token"
        self.token.write_text(secrets.token_hex(32))
        self.token.chmod(0o600)
        self.tmp = self.own / "tmp"  # the nodes' TMPDIR: what gradings leave lands here
        self.tmp.mkdir()
        auth_env = ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token)} if auth
                    else {"RAY_AUTH_MODE": "disabled"})
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", TMPDIR=str(self.tmp),
                        **auth_env,
                        # find a dead node in seconds rather than half a minute; give a busy
                        # machine time to start a node
                        RAY_health_check_period_ms="1000", RAY_health_check_timeout_ms="3000",
                        RAY_health_check_failure_threshold="4",
                        RAY_raylet_start_wait_time_s="180",
                        RAY_agent_register_timeout_ms="180000")

    def _start(self, *args: str, resources: dict[str, float], markers: tuple[str, ...] = ()
               ) -> Path:
        """``ray start`` a node; on a busy machine its agents can miss Ray's start-up window,
        so a failed start is cleaned up and tried again."""
        for attempt in range(3):
            folder = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: socket paths
            self.nodes.append((folder, markers))
            first = random.randrange(20000, 60000, 100)
            command = [
                str(RAY), "start", *args, "--node-ip-address=127.0.0.1", "--num-cpus=1",
                "--num-gpus=0", f"--resources={json.dumps(resources)}", f"--temp-dir={folder}",
                "--object-store-memory=80000000", "--disable-usage-stats",
                f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
                f"--metrics-export-port={_free_port()}",
                f"--dashboard-agent-listen-port={_free_port()}",
                f"--dashboard-agent-grpc-port={_free_port()}",
                f"--runtime-env-agent-port={_free_port()}",
                f"--min-worker-port={first}", f"--max-worker-port={first + 60}"]
            done = subprocess.run(command, env=self.env, capture_output=True, text=True,
                                  timeout=240, check=False)
            if done.returncode == 0:
                return folder
            print(f"ray start attempt {attempt + 1} failed: {done.stderr[-300:]}",
                  file=sys.stderr)
            self.kill_node(folder)
            if attempt == 2:
                raise AssertionError(f"ray start failed 3 times:\n{done.stdout}{done.stderr}")
        raise AssertionError("unreachable")

    def start_head(self) -> None:
        port = _free_port()
        client = _free_port()
        # the client server's command line names the GCS port, not the temp folder
        self._start("--head", f"--port={port}", "--include-dashboard=false",
                    f"--dashboard-port={_free_port()}", f"--ray-client-server-port={client}",
                    resources={"head": 1}, markers=(f"--port={client} ", f":{port} "))
        self.address = f"127.0.0.1:{port}"

    def add_node(self, resources: dict[str, float]) -> Path:
        return self._start(f"--address={self.address}", resources=resources)

    def processes(self, folder: Path) -> list:
        """Every process of the node started with ``folder``, its workers included."""
        import psutil

        markers = [str(folder)] + [m for f, ms in self.nodes if f == folder for m in ms]
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            try:
                line = " ".join(proc.info["cmdline"] or []) + " "
                if any(marker in line for marker in markers):
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        found[child.pid] = child
            except psutil.Error:
                continue
        return list(found.values())

    def kill_node(self, folder: Path) -> int:
        procs = self.processes(folder)
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except Exception:  # noqa: BLE001 - already gone
                pass
        return len(procs)

    def stop(self) -> None:
        folders = [folder for folder, _ in reversed(self.nodes)]
        for folder in folders:
            self.kill_node(folder)
        deadline = time.monotonic() + 20
        while any(self.processes(f) for f in folders) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [p.pid for f in folders for p in self.processes(f)]
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(self.own, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"

    def leftovers(self) -> list[str]:
        """The grader's entries in the nodes' temporary folder, the nodes' training cache aside
        (kept across runs by design; backprop stores its feedback's pictures there)."""
        return sorted(p.name for p in self.tmp.iterdir()
                      if p.name.startswith("grader-") and p.name != ray_backend.NODE_CACHE)


def _started(*, auth: bool, second_node: bool) -> Iterator[LocalCluster]:
    if not RAY.exists():
        pytest.skip("Ray is not installed (pip install '.[ray]')")
    local = LocalCluster(auth=auth)
    try:
        local.start_head()
        if second_node:
            local.node2 = local.add_node({"node2": 1})
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two nodes (resources ``head`` and ``node2``) with token authentication."""
    yield from _started(auth=True, second_node=True)


@pytest.fixture(scope="module")
def open_cluster() -> Iterator[LocalCluster]:
    """One node, authentication off."""
    yield from _started(auth=False, second_node=False)


@pytest.fixture
def driver(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> LocalCluster:
    """This process, as a driver holding the cluster's token (as a TA's machine would)."""
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(cluster.token))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    # Set before this process first imports Ray, whose core reads it once (the grader sets it
    # itself before importing Ray; a test that imports Ray directly needs it already).
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    return cluster


def _jobs(out: Path, count: int) -> list[Job]:
    notebooks = sorted(SAMPLES.glob("*.ipynb"))
    picked = (notebooks * (count // len(notebooks) + 1))[:count]
    jobs = []
    for i, notebook in enumerate(picked):
        student = notebook.stem if i < len(notebooks) else f"{notebook.stem}-{i}"
        jobs.append(Job(notebook=notebook.resolve(), student=student, assignment="backprop",
                        profile="quick", out_dir=out.resolve(), data={}, isolation=None))
    return jobs


def _comparable(path: Path) -> dict:
    data = json.loads(path.read_text())
    data.pop("execution_time", None)
    return data


def _node_records(out: Path) -> list[dict]:
    log = out / ".logs" / ray_backend.NODE_LOG
    return [json.loads(line) for line in log.read_text().splitlines()]


def _node_ids(cluster: LocalCluster) -> dict[str, str]:
    """Custom resource name (head, node2) -> node id, read from the cluster itself."""
    code = ("import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(json.dumps({r: n['NodeID'] for n in ray.nodes() if n['Alive'] "
            "for r in ('head', 'node2') if r in n['Resources']}))")
    done = subprocess.run([sys.executable, "-c", code, cluster.address], capture_output=True,
                          text=True, timeout=120, check=True, env=cluster.env)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- grading on the cluster -----------------------------------------------------------------

@pytest.mark.slow
def test_two_nodes_grade_like_the_local_backend(driver: LocalCluster, tmp_path: Path) -> None:
    from grader import runner

    ids = _node_ids(driver)
    assert set(ids) == {"head", "node2"}

    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    local = runner.run(_jobs(local_out, 12), workers=2, force=False)
    seen: list[tuple[str, bool]] = []
    jobs = _jobs(ray_out, 12)
    results = ray_backend.run(jobs, address=driver.address, force=False,
                              on_done=lambda r, skipped: seen.append((r.student, skipped)))

    assert [r.student for r in results] == [j.student for j in jobs]
    assert sorted(s for s, _ in seen) == sorted(j.student for j in jobs)
    assert not any(skipped for _, skipped in seen)
    for mine, theirs in zip(results, local, strict=True):
        assert mine.grader_error is None, mine.grader_error
        assert mine.notebook == theirs.notebook
        assert (mine.score, mine.load_messages, mine.limits_hit) == (
            theirs.score, theirs.load_messages, theirs.limits_hit)
        for name in ("results.json", "feedback.html", "result.full.json"):
            assert (ray_out / mine.student / name).exists()
        assert _comparable(ray_out / mine.student / "results.json") == _comparable(
            local_out / theirs.student / "results.json")
        assert (ray_out / ".logs" / f"{mine.student}.log").exists()

    records = _node_records(ray_out)
    assert sorted(r["student"] for r in records) == sorted(j.student for j in jobs)
    assert {r["node_id"] for r in records} == set(ids.values()), "both nodes graded"
    assert driver.leftovers() == []  # every task removed its folders

    # a restarted driver skips what is finished; --force grades again
    seen.clear()
    again = ray_backend.run(jobs, address=driver.address, force=False,
                            on_done=lambda r, skipped: seen.append((r.student, skipped)))
    assert all(skipped for _, skipped in seen) and len(seen) == len(jobs)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in results]
    assert len(_node_records(ray_out)) == len(jobs)


def _wait_for(predicate: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _checking_processes(cluster: LocalCluster, folder: Path) -> list:
    import psutil

    found = []
    for proc in cluster.processes(folder):
        try:
            if "grader.check_one" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
def test_a_task_cancelled_mid_grade_leaves_nothing(driver: LocalCluster, tmp_path: Path) -> None:
    """Ctrl-C on the driver cancels its tasks: each ends its checking process and sandbox and
    removes its folders on the node."""
    import psutil

    assert driver.node2 is not None
    ray = ray_backend.import_ray()
    ray_backend._connect(ray, driver.address)
    try:
        spec, notebook = ray_backend.task_spec(_jobs(tmp_path, 1)[0])
        task = ray.remote(ray_backend.grade_task).options(
            num_cpus=1, resources={"node2": 1}, max_retries=0)
        ref = task.remote(spec, notebook, {})
        _wait_for(lambda: any(n.startswith("grader-sbx-") for n in driver.leftovers()), 120,
                  "the task's sandbox")
        checkers = _checking_processes(driver, driver.node2)
        assert checkers and any(n.startswith("grader-ray-") for n in driver.leftovers())
        ray.cancel(ref)
        with pytest.raises(ray.exceptions.TaskCancelledError):
            ray.get(ref, timeout=60)
    finally:
        ray.shutdown()
    _wait_for(lambda: not driver.leftovers(), 30, f"removal of {driver.leftovers()}")
    assert not [p.pid for p in checkers if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
def test_ctrl_c_stops_the_driver_promptly(driver: LocalCluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, RAY_AUTH_TOKEN_PATH=str(driver.token), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "grader", "grade", str(SAMPLES), "--assignment", "backprop",
         "--out", str(out), "--backend", "ray", "--address", driver.address, "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: list(out.glob("*/result.full.json")) or proc.poll() is not None, 240,
                  "a first result")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    graded = len(list(out.glob("*/result.full.json")))
    assert re.search(rf"grader: interrupted — {graded} of {len(list(SAMPLES.glob('*.ipynb')))} "
                     r"submission\(s\) graded in this "
                     r"run are saved in .*; run the same command again to grade the rest", stderr)
    assert took < 30, f"{took:.1f} s from Ctrl-C to exit"
    _wait_for(lambda: not driver.leftovers(), 30, f"removal of {driver.leftovers()}")


# --- authentication -----------------------------------------------------------------------

@pytest.mark.slow
def test_a_cluster_without_authentication_is_refused(
        open_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = open_cluster.address
    monkeypatch.delenv("GRADER_RAY_ALLOW_NO_AUTH", raising=False)
    with pytest.raises(ConfigurationError) as info:
        ray_backend.run(_jobs(tmp_path, 1), address=address, force=False)
    assert str(info.value) == (
        f"the Ray cluster at {address} runs without authentication: anyone who can reach its "
        "ports can run code on the grading nodes, which hold the hidden tests and every "
        "submission. Expected a cluster started with RAY_AUTH_MODE=token and a token file: "
        "restart it so (docs/ray.md, Security), or set GRADER_RAY_ALLOW_NO_AUTH=1 to grade on "
        "it anyway")
    assert not (tmp_path / "reference").exists()

    # Allowed, through the command line: a driver process of its own, since Ray's core keeps
    # the authentication mode it read first for the life of a process.
    out = tmp_path / "allowed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    done = subprocess.run(
        [sys.executable, "-m", "grader", "grade", str(SAMPLES / "reference.ipynb"),
         "--assignment", "backprop", "--out", str(out), "--backend", "ray", "--address",
         address, "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**env, "GRADER_RAY_ALLOW_NO_AUTH": "1"})
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "reference" / "result.full.json").read_text())
    assert result["grader_error"] is None
    assert sum(t["score"] for t in result["tests"]) == sum(t["max_score"] for t in result["tests"])
    assert (f"grader: WARNING: the Ray cluster at {address} runs without authentication "
            "(GRADER_RAY_ALLOW_NO_AUTH=1)") in done.stderr


@pytest.mark.slow
def test_a_missing_or_wrong_token_is_named(cluster: LocalCluster, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigurationError) as info:
        ray_backend.run(_jobs(tmp_path, 1), address=cluster.address, force=False)
    assert str(info.value) == (
        f"the Ray cluster at {cluster.address} requires its authentication token and this "
        "machine has none: copy the cluster's token file here and set RAY_AUTH_TOKEN_PATH=FILE "
        "(or RAY_AUTH_TOKEN), see docs/ray.md, Security")
    wrong = tmp_path / "wrong-token"
    wrong.write_text("0" * 64)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(wrong))
    with pytest.raises(ConfigurationError) as info:
        ray_backend.run(_jobs(tmp_path, 1), address=cluster.address, force=False)
    assert str(info.value) == (
        f"the Ray cluster at {cluster.address} refuses this machine's authentication token "
        f"(from {wrong}): expected the token the cluster was started with; copy its token file "
        "here and point RAY_AUTH_TOKEN_PATH at it (docs/ray.md, Security)")


# --- a lost node (last: it kills the second node) -------------------------------------------

@pytest.mark.slow
def test_a_node_lost_mid_run(driver: LocalCluster, tmp_path: Path,
                             capfd: pytest.CaptureFixture[str]) -> None:
    import psutil

    node2 = driver.node2
    assert node2 is not None
    ids = _node_ids(driver)
    jobs = _jobs(tmp_path / "ray", 8)
    killed: dict[str, int] = {}

    def kill_when_node2_grades() -> None:
        """Kill the second node while one of its tasks is inside a checking process."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            for proc in driver.processes(node2):
                try:
                    if "grader.check_one" in " ".join(proc.cmdline()):
                        killed["processes"] = driver.kill_node(node2)
                        return
                except psutil.Error:
                    continue
            time.sleep(0.2)

    killer = threading.Thread(target=kill_when_node2_grades, daemon=True)
    killer.start()
    written: list[str] = []
    capfd.readouterr()
    results = ray_backend.run(jobs, address=driver.address, force=False,
                              on_done=lambda r, skipped: written.append(r.student))
    killer.join(timeout=5)
    err = capfd.readouterr().err

    assert killed, "the second node never started a grading"
    assert Counter(written) == Counter(j.student for j in jobs)  # each exactly once
    assert [r.student for r in results] == [j.student for j in jobs]
    for result in results:
        assert result.grader_error is None, (result.student, result.grader_error)
        assert SubmissionResult.load(tmp_path / "ray" / result.student / "result.full.json"
                                     ).to_dict() == result.to_dict()
    records = _node_records(tmp_path / "ray")
    assert Counter(r["student"] for r in records) == Counter(j.student for j in jobs)
    # what was lost with node2 was graded again on the head
    assert {r["node_id"] for r in records} <= set(ids.values())
    assert any(r["node_id"] == ids["head"] for r in records)

    # one line about it, and none of Ray's state dump
    retried = sum(1 for r in records if r.get("attempt", 0) > 0)
    assert retried >= 1
    lines = [line for line in err.splitlines() if line.strip()]
    gradings = "grading" if retried == 1 else "gradings"
    assert any(line.startswith(f"grader: Ray node lost, {retried} {gradings} retried elsewhere")
               for line in lines), err
    assert not [line for line in lines if not line.startswith("grader: ")], err

    # the killed node left its task's folder (and its job file or sandbox, depending on how far
    # the grading got); the next task on the machine removes them once they are a minute old
    left = driver.leftovers()
    assert any(n.startswith("grader-ray-") for n in left), left
    assert any(n.startswith(("grader-sbx-", "grader-job-")) for n in left), left
    for name in left:
        os.utime(driver.tmp / name, (time.time() - 120,) * 2)
    again = [j for j in _jobs(tmp_path / "again", 13) if j.student == "reference"]
    ray_backend.run(again, address=driver.address, force=False)
    assert driver.leftovers() == []
