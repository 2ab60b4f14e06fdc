"""The sandbox's promises, checked at every isolation level this host offers.

Each test spawns a tiny Python snippet (or a system binary) in a sandbox and checks one exact
outcome. A level that this host cannot provide is skipped with the reason.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from grader.errors import ConfigurationError
from grader.sandbox import (
    LEVELS,
    Isolation,
    Limits,
    detect_isolation,
    exit_signal,
    kill_sandbox,
    python_runtime_paths,
    spawn_sandboxed,
)
from grader.sandbox import isolation as isolation_module

NOBODY = 65534
IS_ROOT = os.geteuid() == 0


def _isolation(level: str) -> Isolation:
    try:
        return detect_isolation(level)
    except ConfigurationError as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=LEVELS)
def level(request: pytest.FixtureRequest) -> Isolation:
    return _isolation(request.param)


@pytest.fixture(params=["bubblewrap", "namespaces"])
def confining_level(request: pytest.FixtureRequest) -> Isolation:
    """Levels that give network, pid and filesystem isolation."""
    return _isolation(request.param)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    path = tmp_path / "scratch"
    path.mkdir()
    return path


def _runs_as_root(isolation: Isolation) -> bool:
    return any(line.startswith("runs as root") for line in isolation.details)


def spawn(
    isolation: Isolation,
    scratch: Path,
    code: str,
    *,
    limits: Limits | None = None,
    readable: Sequence[Path] = (),
    hidden: Sequence[Path] = (),
    env: dict[str, str] | None = None,
    extra_argv: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    return spawn_sandboxed(
        [sys.executable, "-c", textwrap.dedent(code), *extra_argv],
        scratch=scratch,
        readable=[*python_runtime_paths(), *readable],
        env={} if env is None else env,
        limits=limits or Limits(),
        isolation=isolation,
        hidden=hidden,
    )


def run(
    isolation: Isolation, scratch: Path, code: str, timeout: float = 60, **kwargs
) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    proc = spawn(isolation, scratch, code, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_sandbox(proc)
    return proc.returncode, out.decode(), err.decode()


def host_processes_with(marker: str) -> list[int]:
    """Pids of host Python processes with ``marker`` among their arguments (the sandbox's
    launchers, which carry it too, are not counted)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv[0] == sys.executable.encode() and marker.encode() in argv:
            found.append(int(entry))
    return found


def wait_until_gone(marker: str, seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = host_processes_with(marker)
        if not left:
            return []
        time.sleep(0.1)
    return host_processes_with(marker)


# ---------------------------------------------------------------------------------------------
# Detection and the public surface


def test_detect_isolation_picks_the_strongest_level_that_works() -> None:
    chosen = detect_isolation()
    assert chosen.level in LEVELS
    for stronger in LEVELS[: LEVELS.index(chosen.level)]:
        with pytest.raises(ConfigurationError, match=f"'{stronger}' is not available"):
            detect_isolation(stronger)
    assert chosen.details, "the details say what is in force"


def test_unknown_level_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown isolation level 'docker'"):
        detect_isolation("docker")


def test_missing_bubblewrap_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_tool = isolation_module._tool
    monkeypatch.setattr(isolation_module, "_tool", lambda name: None if name == "bwrap" else real_tool(name))
    isolation_module._probe.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="apt-get install bubblewrap"):
            detect_isolation("bubblewrap")
        assert "bubblewrap not installed: apt-get install bubblewrap" in detect_isolation().details
    finally:
        isolation_module._probe.cache_clear()


def test_python_runtime_paths_cover_the_interpreter_and_the_grader() -> None:
    import grader

    paths = python_runtime_paths()
    for needed in (sys.prefix, sys.base_prefix, os.path.dirname(grader.__file__)):
        assert any(Path(needed) == p or p in Path(needed).parents for p in paths), needed
    assert len(paths) == len(set(paths))


def test_one_root_layout_is_rendered_for_bubblewrap_and_for_namespaces(tmp_path: Path) -> None:
    """What is bound, masked and left out is decided once; both renderers follow it."""
    course = tmp_path / "course"
    suites = course / "autograde_tests"
    (suites / "inner").mkdir(parents=True)
    data = course / "data.npz"
    data.write_text("labels")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    layout = isolation_module.root_layout(scratch, [course, suites / "inner"], [suites, data],
                                          2**20)
    binds = [m.target for m in layout.of("bind")]
    assert course in binds and suites / "inner" not in binds, "a path under a hidden one stays out"
    assert [m.target for m in layout.of("mask")] == [suites, data]
    assert [(m.target, m.size) for m in layout.of("scratch")] == [(scratch, 2**20)]

    args, fds = isolation_module._bubblewrap_layout_args(layout)
    for fd in fds:
        os.close(fd)
    script = isolation_module._namespace_script(layout)
    root = str(isolation_module._new_root_mountpoint())
    for path in binds:
        assert ["--ro-bind", str(path), str(path)] == args[args.index(str(path)) - 1:][:3]
        assert f"--rbind '{path}' '{root}{path}'" in script
    assert ["--perms", "0000", "--tmpfs", str(suites)] == args[args.index(str(suites)) - 3:][:4]
    assert ["--ro-bind", "/dev/null", str(data)] == args[args.index(str(data)) - 2:][:3]
    for path in (suites, data):
        assert f"if [ -d '{root}{path}' ]" in script
    assert str(suites / "inner") not in args and str(suites / "inner") not in script
    assert ["--perms", "0777", "--size", str(2**20), "--tmpfs", str(scratch)] == \
        args[args.index(str(scratch)) - 5:][:6]
    assert f"size={2**20},nosuid,nodev sandbox-scratch '{root}{scratch}'" in script


# ---------------------------------------------------------------------------------------------
# Identity and environment


def test_env_holds_only_what_was_passed(
    level: Isolation, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADER_SECRET_TOKEN", "must-not-leak")
    proc = spawn_sandboxed(
        ["/usr/bin/env"],
        scratch=scratch,
        readable=python_runtime_paths(),
        env={"ONLY_THIS": "1", "HOME": str(scratch), "PATH": "/nonexistent"},
        limits=Limits(),
        isolation=level,
    )
    out, err = proc.communicate(timeout=60)
    kill_sandbox(proc)
    assert proc.returncode == 0, err
    assert sorted(out.decode().splitlines()) == sorted(
        ["ONLY_THIS=1", f"HOME={scratch}", "PATH=/nonexistent", f"PWD={scratch}"]
    )


def test_runs_unprivileged_in_scratch(level: Isolation, scratch: Path) -> None:
    code, out, err = run(level, scratch, "import os; print(os.getuid(), os.getgid(), os.getcwd())")
    assert code == 0, err
    uid, gid, cwd = out.split()
    assert cwd == str(scratch)
    if IS_ROOT and not _runs_as_root(level):
        assert (int(uid), int(gid)) == (NOBODY, NOBODY)
    elif not IS_ROOT:
        assert int(uid) == os.getuid()


# ---------------------------------------------------------------------------------------------
# Network


def test_no_connection_to_a_loopback_listener(confining_level: Isolation, scratch: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code, out, err = run(
            confining_level,
            scratch,
            f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=5)
                print("connected")
            except OSError as exc:
                print("blocked", type(exc).__name__)
            """,
        )
        assert code == 0, err
        assert out.split()[0] == "blocked", out
        with pytest.raises(BlockingIOError):
            listener.accept()


# ---------------------------------------------------------------------------------------------
# Filesystem


def test_scratch_is_the_only_writable_place(
    confining_level: Isolation, scratch: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)  # writable by anyone on the host: only the sandbox stops the write
    code, out, err = run(
        confining_level,
        scratch,
        f"""
        import os
        results = []
        targets = [{str(outside / "planted.py")!r}, "/usr/planted.py",
                   {str(scratch.parent / "planted.py")!r}, "/planted.py", "/etc/planted.py",
                   "/dev/planted"]
        for target in targets:
            try:
                open(target, "w").write("x")
                results.append("written")
            except OSError as exc:
                results.append(type(exc).__name__)
        open("inside.txt", "w").write("ok")
        open("/tmp/private.txt", "w").write("ok")
        results.append(open("inside.txt").read())
        print(" ".join(results))
        """,
        readable=[outside],
    )
    assert code == 0, err
    assert "written" not in out.split(), out
    assert out.split()[6:] == ["ok"], "the scratch directory is writable inside"
    assert not (outside / "planted.py").exists()
    assert not (scratch.parent / "planted.py").exists()
    assert list(scratch.iterdir()) == [], "the scratch directory is a private tmpfs"
    assert not Path("/tmp/private.txt").exists(), "the sandbox's /tmp is private"


def test_hidden_and_root_only_files_cannot_be_read(
    confining_level: Isolation, scratch: Path, tmp_path: Path
) -> None:
    course = tmp_path / "course"
    hidden_dir = course / "autograde_tests"
    hidden_dir.mkdir(parents=True)
    (hidden_dir / "test_secret.py").write_text("SECRET = 1\n")
    hidden_file = course / "mnist.npz"
    hidden_file.write_text("labels")
    (course / "public.txt").write_text("public")
    root_only = course / "root_only.txt"
    root_only.write_text("root secret")
    root_only.chmod(0o600)
    code, out, err = run(
        confining_level,
        scratch,
        f"""
        import os
        targets = ["public.txt", "autograde_tests/test_secret.py", "mnist.npz", "root_only.txt"]
        for target in targets:
            try:
                print(target, open(os.path.join({str(course)!r}, target)).read())
            except OSError as exc:
                print(target, type(exc).__name__)
        try:
            print("listing", os.listdir({str(hidden_dir)!r}))
        except OSError as exc:
            print("listing", type(exc).__name__)
        """,
        readable=[course],
        hidden=[hidden_dir, hidden_file],
    )
    assert code == 0, err
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["public.txt"] == "public"
    assert lines["autograde_tests/test_secret.py"] == "PermissionError"
    assert lines["mnist.npz"] == "PermissionError"
    assert lines["listing"] == "PermissionError"
    if IS_ROOT:
        assert lines["root_only.txt"] == "PermissionError"


def test_paths_not_named_are_invisible(confining_level: Isolation, scratch: Path, tmp_path: Path) -> None:
    isolation = confining_level
    unnamed = tmp_path / "other_student.ipynb"
    unnamed.write_text("{}")
    code, out, err = run(
        isolation,
        scratch,
        f"""
        import os
        print(os.path.exists({str(unnamed)!r}), os.path.exists("/etc/shadow"),
              os.path.exists("/root/.bash_history"), sorted(os.listdir("/tmp")))
        """,
    )
    assert code == 0, err
    assert out.split(" ", 3)[:3] == ["False", "False", "False"]
    assert scratch.is_relative_to("/tmp") or out.split(" ", 3)[3].strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Processes


def test_proc_shows_only_the_sandbox(confining_level: Isolation, scratch: Path, tmp_path: Path) -> None:
    marker = f"host-secret-{uuid.uuid4().hex}"
    hidden_suite = tmp_path / marker / "autograde_tests"  # its path must not show either
    hidden_suite.mkdir(parents=True)
    neighbour = subprocess.Popen(["/bin/sh", "-c", f"sleep 60 # {marker}"], env={"SECRET_PATH": marker})
    try:
        code, out, err = run(
            confining_level,
            scratch,
            f"""
            import os
            pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
            seen = []
            for pid in pids:
                for name in ("cmdline", "environ"):
                    try:
                        seen.append(open(f"/proc/{{pid}}/{{name}}", "rb").read())
                    except OSError:
                        pass
            marker = {marker[::-1]!r}[::-1].encode()  # not spelled out in this snippet's cmdline
            print(len(pids), os.getpid() in pids, any(marker in s for s in seen))
            """,
            readable=[tmp_path / marker],
            hidden=[hidden_suite],
        )
    finally:
        neighbour.kill()
        neighbour.wait()
    assert code == 0, err
    count, self_seen, marker_seen = out.split()
    assert int(count) <= 2, "only the sandbox's init and the snippet itself"
    assert (self_seen, marker_seen) == ("True", "False")


def test_fork_bomb_is_contained_and_killed(level: Isolation, scratch: Path) -> None:
    if _runs_as_root(level):
        pytest.skip(f"{level.level}: runs as root here, and RLIMIT_NPROC does not bind root")
    marker = f"forkbomb-{uuid.uuid4().hex}"
    proc = spawn(
        level,
        scratch,
        """
        import os, sys, time
        children = 0
        while True:
            try:
                pid = os.fork()
            except OSError as exc:
                print("stopped", type(exc).__name__, children, flush=True)
                break
            if pid == 0:
                time.sleep(600)
                os._exit(0)
            children += 1
        time.sleep(600)
        """,
        limits=Limits(processes=40),
        extra_argv=[marker],
    )
    try:
        assert proc.stdout is not None
        words = proc.stdout.readline().decode().split()
        assert words[:2] == ["stopped", "BlockingIOError"], words
        assert int(words[2]) < 40
        assert len(host_processes_with(marker)) == int(words[2]) + 1
    finally:
        kill_sandbox(proc)
    assert wait_until_gone(marker) == []
    kill_sandbox(proc)  # idempotent


def test_process_limit_is_per_sandbox(confining_level: Isolation, scratch: Path, tmp_path: Path) -> None:
    if "process limit counted per sandbox (own user namespace)" not in confining_level.details:
        pytest.skip("this host cannot give each sandbox its own user namespace")
    bomb = spawn(
        confining_level,
        scratch,
        """
        import os, time
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(600)
        except OSError:
            print("full", flush=True)
            time.sleep(600)
        """,
        limits=Limits(processes=30),
    )
    try:
        assert bomb.stdout is not None and bomb.stdout.readline() == b"full\n"
        other = tmp_path / "other"
        other.mkdir()
        code, out, err = run(
            confining_level,
            other,
            """
            import threading
            threads = [threading.Thread(target=lambda: None) for _ in range(20)]
            for t in threads: t.start()
            for t in threads: t.join()
            print("threads ok")
            """,
            limits=Limits(processes=30),
        )
        assert (code, out.strip()) == (0, "threads ok"), err
    finally:
        kill_sandbox(bomb)


def test_memory_bomb_gets_memory_error(level: Isolation, scratch: Path) -> None:
    code, out, err = run(
        level,
        scratch,
        """
        hoard = []
        try:
            while True:
                hoard.append(bytearray(64 * 2**20))
        except MemoryError:
            size = len(hoard) * 64
            hoard.clear()
            print("MemoryError after", size, "MiB")
        """,
        limits=Limits(memory_bytes=1 * 2**30),
    )
    assert code == 0, err
    words = out.split()
    assert words[:2] == ["MemoryError", "after"]
    assert int(words[2]) < 1024


def test_file_size_limit(level: Isolation, scratch: Path) -> None:
    code, out, err = run(
        level,
        scratch,
        """
        import errno, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        import os
        try:
            with open("big.bin", "wb") as handle:
                handle.write(b"x" * (3 * 2**20))
            print("written")
        except OSError as exc:
            print(errno.errorcode[exc.errno], os.path.getsize("big.bin"))
        """,
        limits=Limits(file_bytes=2**20),
    )
    assert (code, out.split()) == (0, ["EFBIG", str(2**20)]), err


def test_scratch_is_capped_in_total(confining_level: Isolation, scratch: Path) -> None:
    code, out, err = run(
        confining_level,
        scratch,
        """
        import errno
        written = 0
        try:
            for index in range(100):
                with open(f"part-{index}.bin", "wb") as handle:
                    for _ in range(4):
                        handle.write(b"x" * 2**20)
                        written += 2**20
        except OSError as exc:
            print(errno.errorcode[exc.errno], written // 2**20)
        """,
        limits=Limits(scratch_bytes=16 * 2**20, file_bytes=8 * 2**20),
    )
    assert code == 0, err
    word, megabytes = out.split()
    assert word == "ENOSPC" and int(megabytes) <= 16, out
    assert list(scratch.iterdir()) == [], "nothing of it reaches the host"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("import ctypes; ctypes.string_at(0)", signal.SIGSEGV),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", signal.SIGKILL),
        ("import sys; sys.exit(3)", None),
    ],
    ids=["segfault", "sigkill", "exit"],
)
def test_exit_signal_names_what_ended_the_program(
    level: Isolation, scratch: Path, snippet: str, expected: signal.Signals | None
) -> None:
    code, _, _ = run(level, scratch, snippet)
    assert exit_signal(code, level) == expected
    if expected is None:
        assert code == 3


def _spawn_tree(isolation: Isolation, scratch: Path, marker: str) -> subprocess.Popen[bytes]:
    """A snippet that starts a child in a new session and a double-forked daemon, then waits."""
    proc = spawn(
        isolation,
        scratch,
        """
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]],
                         start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                sleeper = [sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]]
                os.execv(sys.executable, sleeper)
            os._exit(0)
        time.sleep(1)
        print("ready", flush=True)
        time.sleep(600)
        """,
        extra_argv=[marker],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc


def test_killing_the_direct_child_kills_the_whole_tree(confining_level: Isolation, scratch: Path) -> None:
    marker = f"tree-{uuid.uuid4().hex}"
    proc = _spawn_tree(confining_level, scratch, marker)
    try:
        assert len(host_processes_with(marker)) == 3
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert wait_until_gone(marker) == []
    finally:
        kill_sandbox(proc)


def test_kill_sandbox_kills_what_stays_attached(level: Isolation, scratch: Path) -> None:
    marker = f"attached-{uuid.uuid4().hex}"
    proc = spawn(
        level,
        scratch,
        """
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]],
                         start_new_session=True)
        time.sleep(1)
        print("ready", flush=True)
        time.sleep(600)
        """,
        extra_argv=[marker],
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    kill_sandbox(proc)
    assert proc.returncode is not None
    assert wait_until_gone(marker) == []
    kill_sandbox(proc)


def test_sandbox_dies_with_its_parent(level: Isolation, tmp_path: Path) -> None:
    marker = f"orphan-{uuid.uuid4().hex}"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from grader.sandbox import Isolation, Limits, python_runtime_paths, spawn_sandboxed
                proc = spawn_sandboxed(
                    [sys.executable, "-c", "import time; time.sleep(600)", {marker!r}],
                    scratch=Path({str(scratch)!r}), readable=python_runtime_paths(), env={{}},
                    limits=Limits(), isolation=Isolation({level.level!r}, ()))
                print("spawned", flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None and parent.stdout.readline() == b"spawned\n"
    deadline = time.monotonic() + 10
    while not host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert host_processes_with(marker)
    parent.kill()
    parent.wait()
    parent.stdout.close()
    assert wait_until_gone(marker) == []


# ---------------------------------------------------------------------------------------------
# TensorFlow under the limits


@pytest.mark.slow
def test_tensorflow_builds_and_saves_a_model_inside_bubblewrap(scratch: Path) -> None:
    isolation = _isolation("bubblewrap")
    code, out, err = run(
        isolation,
        scratch,
        """
        import keras
        from keras import layers
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(36, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        model.save("cnn.keras")
        import os
        print(os.path.getsize("cnn.keras") > 0, model.count_params())
        """,
        timeout=300,
        env={
            "HOME": str(scratch),
            "KERAS_BACKEND": "tensorflow",
            "CUDA_VISIBLE_DEVICES": "",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        },
    )
    assert code == 0, err[-3000:]
    assert out.split()[-2:] == ["True", "242062"]
