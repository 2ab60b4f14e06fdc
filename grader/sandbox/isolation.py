"""How a worker process is confined.

Three levels, strongest first; :func:`detect_isolation` picks the strongest this host allows
(it tries each one for real, since a binary being installed does not mean the kernel or a
container lets it work):

``bubblewrap``
    ``bwrap`` builds a new root from read-only binds of the system libraries, the Python
    runtime and the paths the caller names; the scratch directory (a size-capped tmpfs) is the
    only writable place besides a private empty ``/tmp`` and ``/dev/shm`` (capped tmpfs too);
    the rest of the new root, ``/dev`` included, is remounted read-only. New network, pid, ipc, uts (and
    cgroup) namespaces, its own ``/proc`` and a minimal ``/dev``. When the grader is root the
    code runs as uid/gid 65534 with no capabilities and ``no_new_privs``; when it is not, as the
    grader's own uid inside a user namespace with all capabilities dropped. Where root may not
    create namespaces (a container under its runtime's default security profile), bubblewrap
    itself is started as uid 65534 with an unprivileged user namespace (``unprivileged``
    mode); detection tries the root mode first and records which one is in force.
``namespaces``
    Without bubblewrap, the same with util-linux: ``unshare`` gives new network, pid, ipc, uts
    and mount namespaces, and a shell running as root inside them builds the same kind of new
    root on a tmpfs (the scratch directory a size-capped tmpfs too), switches to it with
    ``pivot_root`` and detaches the host's, then drops privileges (uid 65534 when root).
``rlimits``
    resource limits, a new session and (when root) uid 65534; no network or filesystem
    isolation beyond what file permissions give. The scratch directory is a host folder: only
    the per-file size limit holds, not a total.

The two confining levels build one root, described once by :func:`root_layout` and rendered
as bubblewrap options or as the namespace script.

Every level applies the same resource limits (address space, process count, file size, no core
files). The process-count limit counts threads too. Where a user namespace can be created for
the sandbox the count is per sandbox; otherwise every sandbox running as uid 65534 shares it.

The sandbox dies with the thread that spawned it (``PR_SET_PDEATHSIG``): spawn it from a thread
that outlives it, e.g. the one that waits for it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grader.errors import ConfigurationError

if TYPE_CHECKING:
    from grader.sandbox.forking import ForkedWorker

LEVELS = ("bubblewrap", "namespaces", "rlimits")
"""Isolation levels, strongest first."""

NOBODY = 65534
"""The unprivileged uid and gid sandboxed code runs as when the grader is root."""

_PR_SET_PDEATHSIG = 1

TEMPLATE_VARIABLE = "GRADER_SANDBOX_TEMPLATE"
"""``0`` turns template sandboxes off (:mod:`grader.sandbox.forking`): every worker is then
started on its own."""


def templates_enabled() -> bool:
    return os.environ.get(TEMPLATE_VARIABLE, "1") != "0"


def templates_usable(level: str, mode: str, readable: Sequence[Path]) -> bool:
    """Whether workers may be forked from a template sandbox (:mod:`grader.sandbox.forking`):
    turned on, bubblewrap run as root (the template needs root in its sandbox to make each
    worker's namespaces and mounts), and nothing the sandbox reads under /tmp or /dev/shm,
    which each worker covers with its own tmpfs."""
    if not templates_enabled() or level != "bubblewrap" or mode != "root":
        return False
    return not any(is_under(Path(path), private) for path in readable
                   for private, _ in PRIVATE_TMPFS)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed submission."""

    call_seconds: float = 300.0
    """Wall-clock limit of one call; enforced by the caller, which kills the sandbox."""
    submission_seconds: float = 1200.0
    """Wall-clock limit of a whole submission; enforced by the caller."""
    memory_bytes: int = 8 * 2**30
    """Address-space limit (RLIMIT_AS) of every process in the sandbox."""
    processes: int = 1024
    """Process and thread limit (RLIMIT_NPROC). TensorFlow starts dozens of threads per process."""
    file_bytes: int = 256 * 2**20
    """Largest file the sandbox may write (RLIMIT_FSIZE)."""
    scratch_bytes: int = 2**30
    """Total size of the scratch directory (a tmpfs at the bubblewrap and namespaces levels;
    not enforced at the rlimits level, where only ``file_bytes`` holds)."""
    output_bytes: int = 256 * 1024
    """How much of stdout/stderr the caller keeps."""


@dataclass(frozen=True)
class Isolation:
    """The isolation in force for a sandbox, as recorded in every result."""

    level: str
    """``"bubblewrap"``, ``"namespaces"`` or ``"rlimits"``."""
    details: tuple[str, ...]
    """What is in force and what was missing, one human-readable line each."""
    mode: str = ""
    """How ``bubblewrap`` is run: as root, ``"root"``; by a root grader as uid 65534 in an
    unprivileged user namespace, ``"unprivileged"``; by a grader that is not root (always in a
    user namespace), ``"user-namespace"``. Empty for the other levels."""


# ---------------------------------------------------------------------------------------------
# What the sandboxed Python needs


def python_runtime_paths() -> list[Path]:
    """The directories a Python with this environment needs to read: the venv, the base
    installation, the site-packages and the ``grader`` package itself (editable installs
    live outside site-packages). Nested paths are folded into their parents."""
    import grader

    candidates = [
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["platstdlib"],
        *site.getsitepackages(),
        os.path.dirname(os.path.realpath(sys.executable)),
        os.path.dirname(os.path.abspath(grader.__file__)),
    ]
    paths = {Path(os.path.abspath(p)) for p in candidates if p and os.path.exists(p)}
    return _fold(paths)


def _fold(paths: set[Path] | list[Path]) -> list[Path]:
    """Drop every path that lies under another one of the set; sorted."""
    result: list[Path] = []
    for path in sorted(set(paths), key=lambda p: (len(p.parts), str(p))):
        if not any(is_under(path, kept) for kept in result):
            result.append(path)
    return sorted(result)


def is_under(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


# System paths the dynamic loader and the interpreter need, bound read-only by bubblewrap.
SYSTEM_TREES = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
_SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/fonts",
    "/sys/devices/system/cpu",
)
PRIVATE_TMPFS = ((Path("/dev/shm"), 64 * 2**20), (Path("/tmp"), 256 * 2**20))
"""The sandbox's private, empty, writable tmpfs mounts (mode 1777) and their sizes."""

# Minimal account files so that libraries asking "who am I" get an answer.
_PASSWD = (
    "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


# ---------------------------------------------------------------------------------------------
# Detection


def detect_isolation(prefer: str | None = None) -> Isolation:
    """The strongest isolation this host allows, or exactly ``prefer`` when given.

    Raises :class:`~grader.errors.ConfigurationError` when ``prefer`` is unknown or cannot
    work here, with the reason and how to fix it.
    """
    if prefer is not None and prefer not in LEVELS and prefer != "auto":
        raise ConfigurationError(
            f"unknown isolation level {prefer!r}: expected one of {', '.join(LEVELS)} or auto"
        )
    missing: list[str] = []
    for level in LEVELS:
        if prefer not in (None, "auto", level):
            continue
        problem = _probe(level)
        if problem is None:
            mode = _bubblewrap_mode() if level == "bubblewrap" else ""
            return Isolation(level, tuple(_describe(level, mode)) + tuple(missing), mode)
        if prefer == level:
            raise ConfigurationError(f"isolation level {level!r} is not available on this host: {problem}")
        missing.append(problem)
    raise ConfigurationError(  # only reachable if even rlimits fails
        "no isolation level works on this host: " + "; ".join(missing)
    )


def _is_root() -> bool:
    return os.geteuid() == 0


@functools.cache
def _probe(level: str) -> str | None:
    """None when ``level`` works here, else why not (with the fix where there is one)."""
    if level == "bubblewrap":
        if _tool("bwrap") is None:
            return "bubblewrap not installed: apt-get install bubblewrap"
        if _tool("prlimit") is None or (_is_root() and _tool("setpriv") is None):
            return "bubblewrap needs prlimit and setpriv: apt-get install util-linux"
        if _bubblewrap_mode() == "":
            return _bubblewrap_problem()
        return None
    elif level == "namespaces":
        for name in ("unshare", "setpriv", "prlimit", "mount", "umount", "pivot_root"):
            if _tool(name) is None:
                return f"namespaces need {name} from util-linux: apt-get install util-linux mount"
    return _try_level(level)


BUBBLEWRAP_MODES = ("root", "unprivileged", "unprivileged-shared-proc")
"""How bubblewrap may be run when the grader is root, tried in this order. The last is for
containers: their runtime masks parts of /proc, and the kernel then refuses a fresh /proc in a
user namespace, so the container's own /proc is bound read-only instead (the sandbox lists the
container's processes but, in its own pid namespace and as uid 65534, cannot signal or trace
them)."""


@functools.cache
def _bubblewrap_mode() -> str:
    """The first bubblewrap mode that works here (``"user-namespace"`` when the grader is not
    root: it then always runs bwrap with a user namespace), or ``""`` when none does."""
    if not _is_root():
        return "user-namespace" if _try_level("bubblewrap") is None else ""
    for mode in BUBBLEWRAP_MODES:
        if _try_level("bubblewrap", mode) is None:
            return mode
    return ""


def _bubblewrap_problem() -> str:
    modes = BUBBLEWRAP_MODES if _is_root() else ("",)
    return "; ".join(problem for mode in modes if (problem := _try_level("bubblewrap", mode)))


@functools.cache
def _try_level(level: str, mode: str = "") -> str | None:
    """Run ``python -c 'pass'`` at ``level``; None when it works, else what went wrong."""
    with tempfile.TemporaryDirectory(prefix=f"grader-probe-{os.getpid()}-") as tmp:
        # The folder stays the grader's (0711, as a sandbox root), so that a sweep can remove
        # it if this process is killed; only the scratch inside goes to the sandbox's user.
        os.chmod(tmp, 0o711)
        scratch = Path(tmp, "scratch")
        scratch.mkdir()
        isolation = Isolation(level, (), mode)
        try:
            proc = spawn_sandboxed(
                [sys.executable, "-I", "-S", "-c", "pass"],
                scratch=scratch,
                readable=python_runtime_paths(),
                env={},
                limits=Limits(),
                isolation=isolation,
            )
        except OSError as exc:
            return f"{level} could not start: {exc}"
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            kill_sandbox(proc)
            return f"{level} did not start within 60 s"
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip().splitlines()
            label = f"{level} ({mode} mode)" if mode else level
            return f"{label} does not work here: {reason[-1] if reason else proc.returncode}"
    return None


@functools.cache
def _own_user_namespace() -> bool:
    """Whether uid 65534 (or the grader's uid) may create a user namespace, which makes the
    process-count limit count the sandbox's processes only."""
    unshare = _tool("unshare")
    if unshare is None:
        return False
    argv = [unshare, "--user", "--", "/bin/true"]
    if _is_root():
        setpriv = _tool("setpriv")
        if setpriv is None:
            return False
        argv = [setpriv, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", *argv]
    try:
        return subprocess.run(argv, env={}, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def _nobody_runs_python() -> bool:
    """Whether uid 65534 can run this interpreter (it cannot when it lives under /root)."""
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", "pass"],
            env={},
            cwd="/",
            capture_output=True,
            timeout=60,
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _describe(level: str, mode: str = "") -> list[str]:
    root = _is_root()
    per_sandbox = _own_user_namespace()
    nproc = (
        "process limit counted per sandbox (own user namespace)"
        if per_sandbox
        else "process limit shared by all sandboxes of the same uid"
    )
    if level in ("bubblewrap", "namespaces"):
        tool = ("bubblewrap " + _bwrap_version() if level == "bubblewrap"
                else "unshare and pivot_root (util-linux)")
        how = []
        if level == "bubblewrap" and root:
            how = (["bubblewrap run as root"] if mode == "root" else
                   [f"bubblewrap run as uid {NOBODY} in an unprivileged user namespace (root may "
                    "not create namespaces here: " + (_try_level("bubblewrap", "root") or "")
                    + ")"])
            if templates_usable(level, mode, python_runtime_paths()):
                how.append("workers forked from a template sandbox that imported the "
                           "assignment's libraries once (started on their own where it cannot "
                           "start); a forked one gets new pid, mount, network, ipc and uts "
                           "namespaces and its own scratch, /tmp, /dev/shm, /proc and /dev/pts "
                           "before any student code")
            if mode == "unprivileged-shared-proc":
                how.append("/proc: the container's, read-only (its runtime masks /proc, so no "
                           "fresh one can be mounted): the sandbox lists the container's "
                           "processes but cannot signal or trace them")
        return [
            tool,
            *how,
            "no network (network namespace)",
            "own pid namespace (container's /proc, read-only), ipc and uts namespaces"
            if mode == "unprivileged-shared-proc" else
            "own /proc (pid namespace), ipc and uts namespaces",
            "read-only view of system libraries, the Python runtime and named paths only",
            "writable: the scratch directory (a size-capped tmpfs) and a private /tmp",
            f"runs as uid {NOBODY}, no capabilities, no_new_privs"
            if root
            else f"runs as uid {os.getuid()} in a user namespace, no capabilities",
            "rlimits: address space, processes, file size, no core files",
            nproc,
        ]
    details = [
        "rlimits: address space, processes, file size, no core files",
        "new session; child processes that leave it may outlive a kill",
        "no network isolation",
        "no filesystem isolation (file permissions only)",
        "scratch: a host folder; only the per-file size limit holds, not a total",
    ]
    if root and _nobody_runs_python():
        details.append(f"runs as uid {NOBODY}")
    elif root:
        details.append(f"runs as root: uid {NOBODY} cannot read the Python runtime at {sys.base_prefix}")
    else:
        details.append(f"runs as uid {os.getuid()} (the grader's own user)")
    details.append("process limit shared by all sandboxes of the same uid")
    return details


@functools.cache
def _bwrap_version() -> str:
    bwrap = _tool("bwrap")
    try:
        out = subprocess.run([bwrap or "bwrap", "--version"], capture_output=True, timeout=10)
        return out.stdout.decode().split()[-1]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "(unknown version)"


@functools.cache
def _tool(name: str) -> str | None:
    return shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin")


# ---------------------------------------------------------------------------------------------
# The sandbox's root: described once, rendered for bubblewrap and for the namespaces level


@dataclass(frozen=True)
class Mount:
    """One entry of the sandbox's new root: what appears at ``target``."""

    kind: str
    """``"bind"``: the host's ``target``, read-only. ``"scratch"``: the scratch directory, an
    empty tmpfs of ``size`` bytes, writable. ``"tmpfs"``: a private, empty, writable tmpfs of
    ``size`` bytes (``/tmp``, ``/dev/shm``). ``"symlink"``: a link to ``source``. ``"file"``: a
    read-only file holding ``source``. ``"proc"``: a fresh ``/proc`` for the pid namespace, or,
    with ``source`` ``"/proc"``, the host's, read-only. ``"dev"``: a minimal ``/dev`` (null,
    zero, full, random, urandom, tty and the standard streams). ``"mask"``: a hidden path inside
    a bound one, covered (a folder by an empty tmpfs nobody may enter, anything else by an empty
    file nobody may open)."""
    target: Path
    source: str = ""
    mode: int = 0o755
    size: int = 0


@dataclass(frozen=True)
class RootLayout:
    """The file system the sandboxed program sees, built by :func:`root_layout` and rendered by
    :func:`_bubblewrap_layout_args` and :func:`_namespace_script`.

    Entries of one kind are in the order they are mounted (binds and the scratch directory
    together, parents first); each renderer mounts the kinds in the order its mechanism needs.
    Nothing else of the host is reachable, and the new root itself is read-only."""

    mounts: tuple[Mount, ...]
    workdir: Path
    """Where the program starts: the scratch directory."""

    def of(self, *kinds: str) -> list[Mount]:
        return [m for m in self.mounts if m.kind in kinds]


def root_layout(scratch: Path, readable: Sequence[Path], hidden: Sequence[Path],
                scratch_bytes: int, *, shared_proc: bool = False) -> RootLayout:
    """Read-only binds of the system libraries, a few /etc files and ``readable``; the scratch
    directory as a tmpfs of ``scratch_bytes``; private /tmp and /dev/shm; /proc and a minimal
    /dev; account files naming root and nobody. A bound path that lies under a ``hidden`` one
    (or is ``/``) is left out, and a hidden path under a bound one is masked."""
    mounts: list[Mount] = []
    requested: list[tuple[Path, str]] = []  # (path, "bind" or "scratch")
    for tree in SYSTEM_TREES:
        if os.path.islink(tree):
            mounts.append(Mount("symlink", Path(tree), source=os.readlink(tree)))
        elif os.path.isdir(tree):
            requested.append((Path(tree), "bind"))
    requested += [(Path(extra), "bind") for extra in _SYSTEM_FILES if os.path.exists(extra)]
    requested += [(path, "bind") for path in readable]
    requested.append((scratch, "scratch"))
    for path, kind in sorted(requested, key=lambda r: len(r[0].parts)):
        if kind == "scratch":
            mounts.append(Mount("scratch", path, mode=0o777, size=scratch_bytes))
        elif path != Path("/") and not any(is_under(path, h) for h in hidden):
            mounts.append(Mount("bind", path))
    mounts += [Mount("mask", path) for path in hidden
               if any(is_under(path, p) and path != p for p, _ in requested)]
    mounts += [
        Mount("file", Path("/etc/passwd"), source=_PASSWD, mode=0o644),
        Mount("file", Path("/etc/group"), source=_GROUP, mode=0o644),
        Mount("proc", Path("/proc"), source="/proc" if shared_proc else ""),
        Mount("dev", Path("/dev")),
        *(Mount("tmpfs", target, mode=0o1777, size=size) for target, size in PRIVATE_TMPFS),
    ]
    return RootLayout(tuple(mounts), workdir=scratch)


def hidden_in_layout(readable: Sequence[Path], hidden: Sequence[Path]) -> tuple[Path, ...]:
    """The ``hidden`` paths that change :func:`root_layout` for ``readable``: those under a path
    the layout binds (masked there) or above one (whose bind is left out). Any other hidden
    path is out of the sandbox's sight anyway; two sets with the same paths here give the same
    root."""
    requested = [*(Path(tree) for tree in SYSTEM_TREES), *map(Path, _SYSTEM_FILES),
                 *(Path(os.path.abspath(p)) for p in readable)]
    paths = {Path(os.path.abspath(h)) for h in hidden}
    return tuple(sorted(h for h in paths
                        if any(is_under(h, r) or is_under(r, h) for r in requested)))


def _bubblewrap_layout_args(layout: RootLayout) -> tuple[list[str], list[int]]:
    """The layout as bubblewrap options, and the file descriptors they name (the caller
    passes them to bwrap and closes them)."""
    args: list[str] = []
    for mount in layout.of("proc"):
        args += ["--ro-bind", "/proc", "/proc"] if mount.source else ["--proc", "/proc"]
    args += ["--dev", "/dev"] if layout.of("dev") else []
    for mount in layout.of("tmpfs"):
        args += ["--perms", f"{mount.mode:04o}", "--size", str(mount.size),
                 "--tmpfs", str(mount.target)]
    # Directories bwrap would create for mount points come out 0700 when it runs as root,
    # which uid 65534 could not enter: create every ancestor first, world-readable. This
    # comes after the /tmp tmpfs, which may hold the scratch directory.
    bound = {mount.target for mount in layout.of("bind", "scratch")}
    ancestors = {parent for path in bound for parent in path.parents} | {Path("/etc")}
    ancestors -= {Path("/"), Path("/tmp"), Path("/proc"), Path("/dev")}
    for directory in sorted(ancestors, key=lambda p: (len(p.parts), str(p))):
        if not any(is_under(directory, path) for path in bound):
            args += ["--perms", "0755", "--dir", str(directory)]
    for mount in layout.of("symlink"):
        args += ["--symlink", mount.source, str(mount.target)]
    for mount in layout.of("bind", "scratch"):
        if mount.kind == "scratch":
            args += ["--perms", f"{mount.mode:04o}", "--size", str(mount.size),
                     "--tmpfs", str(mount.target)]
        else:
            args += ["--ro-bind", str(mount.target), str(mount.target)]
    data_fds: list[int] = []
    for mount in layout.of("file"):
        fd = _memfd(mount.source.encode())
        data_fds.append(fd)
        args += ["--perms", f"{mount.mode:04o}", "--ro-bind-data", str(fd), str(mount.target)]
    for mount in layout.of("mask"):
        path = mount.target
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            args += ["--perms", "0000", "--tmpfs", str(path)]
        else:
            args += ["--ro-bind", "/dev/null", str(path)]
    # In a user namespace the sandbox owns the new root, /dev and the folders made for mount
    # points: make them read-only, so that the capped tmpfs mounts stay the only writable places.
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    args += ["--chdir", str(layout.workdir)]
    return args, data_fds


# ---------------------------------------------------------------------------------------------
# Spawning


def spawn_sandboxed(
    argv: list[str],
    *,
    scratch: Path,
    readable: Sequence[Path],
    env: Mapping[str, str],
    limits: Limits,
    isolation: Isolation,
    hidden: Sequence[Path] = (),
    stdin: int | None = None,
    template: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` confined at ``isolation.level``; stdin (unless given), stdout and stderr
    are pipes.

    The child gets exactly ``env`` plus ``PWD`` (the scratch directory) and runs in
    ``scratch``, the only writable place besides a private /tmp where the level allows one.
    It can read ``readable`` and what the interpreter needs, cannot read ``hidden`` (covered
    where the level allows it), has no network, runs as an unprivileged uid when the grader is
    root, and lives in its own session. Stop it with :func:`kill_sandbox`.

    ``template=True`` (bubblewrap run as root only) starts a template sandbox
    (:mod:`grader.sandbox.template`): the same sandbox, but its program keeps root and its
    capabilities inside it, without the resource limits, since it gives each worker it forks
    the privilege drop and the limits itself. It runs no student code.
    """
    if template and (isolation.level != "bubblewrap" or isolation.mode != "root"):
        raise ConfigurationError("a template sandbox needs bubblewrap run as root")
    scratch = Path(os.path.abspath(scratch))
    readable_paths = _fold([Path(os.path.abspath(p)) for p in readable if os.path.exists(p)])
    hidden_paths = [Path(os.path.abspath(p)) for p in hidden]
    if _is_root() and (isolation.level != "rlimits" or _nobody_runs_python()):
        _give_to_nobody(scratch)
    if isolation.level in ("bubblewrap", "namespaces"):
        layout = root_layout(scratch, readable_paths, hidden_paths, limits.scratch_bytes,
                             shared_proc=isolation.mode == "unprivileged-shared-proc")
        if isolation.level == "namespaces":
            return _spawn_namespaces(argv, layout, env, limits)
        return _spawn_bubblewrap(argv, layout, env, limits,
                                 unprivileged=_is_root() and isolation.mode.startswith("unprivileged"),
                                 stdin=stdin, template=template)
    if isolation.level == "rlimits":
        return _spawn_rlimits(argv, scratch, env, limits)
    raise ConfigurationError(f"unknown isolation level {isolation.level!r}")


def _give_to_nobody(scratch: Path) -> None:
    """Make the scratch directory belong to uid 65534. Called before the sandbox starts, on a
    folder its caller has just created: only the folder itself changes owner (never a link,
    never anything inside it), and nothing in it is touched once sandboxed code runs."""
    fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, NOBODY, NOBODY)
    finally:
        os.close(fd)


def limit_details(isolation: Isolation, limits: Limits) -> list[str]:
    """The limits in force for one submission, one line each, for its result."""
    mib = 2**20
    scratch = (f"scratch: {limits.scratch_bytes // mib} MiB in total (tmpfs), files up to "
               f"{limits.file_bytes // mib} MiB" if isolation.level != "rlimits" else
               f"scratch: files up to {limits.file_bytes // mib} MiB each; no total cap at "
               "this level")
    return [
        f"time: {limits.call_seconds:g} s per call, {limits.submission_seconds:g} s per "
        "submission",
        f"memory: {limits.memory_bytes // mib} MiB of address space per process",
        scratch,
    ]


def _prlimit_argv(limits: Limits) -> list[str]:
    prlimit = _tool("prlimit") or "prlimit"
    return [
        prlimit,
        f"--as={limits.memory_bytes}",
        f"--nproc={limits.processes}",
        f"--fsize={limits.file_bytes}",
        "--core=0",
        "--",
    ]


def _drop_argv(*, as_root: bool = True) -> list[str]:
    """Inner command prefix that gives up root for good (or, not root, every capability);
    ``as_root=False`` where the sandbox was started unprivileged already."""
    setpriv = _tool("setpriv") or "setpriv"
    caps = ["--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    if _is_root() and as_root:
        ids = ["--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
        return [setpriv, *ids, *caps, "--"]
    return [setpriv, *caps, "--"]


def _userns_argv() -> list[str]:
    """A fresh user namespace after the privilege drop, so that RLIMIT_NPROC (set after it)
    counts this sandbox's processes only."""
    if not _own_user_namespace():
        return []
    return [_tool("unshare") or "unshare", "--user", "--"]


def die_with_parent() -> None:
    """For ``preexec_fn``: the child gets SIGKILL when the thread that started it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _spawn_bubblewrap(argv: list[str], layout: RootLayout, env: Mapping[str, str],
                      limits: Limits, *, unprivileged: bool = False, stdin: int | None = None,
                      template: bool = False) -> subprocess.Popen[bytes]:
    bwrap = _tool("bwrap") or "bwrap"
    args = [
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
    ]
    if not _is_root() or unprivileged:
        args += ["--unshare-user", "--cap-drop", "ALL"]
    layout_args, data_fds = _bubblewrap_layout_args(layout)
    args += [*layout_args, "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    command = argv if template else [*_drop_argv(as_root=not unprivileged), *_userns_argv(),
                                     *_prlimit_argv(limits), *argv]
    outer = [bwrap]
    if unprivileged:
        # bwrap itself gives up root first, so the namespaces are an unprivileged user's.
        outer = [_tool("setpriv") or "setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                 "--clear-groups", "--inh-caps=-all", "--ambient-caps=-all",
                 "--bounding-set=-all", "--", bwrap]

    # Options travel through a file descriptor so that /proc/1/cmdline inside the sandbox
    # shows the command but not the layout of the host.
    args_fd = _memfd(b"".join(a.encode() + b"\0" for a in args))
    try:
        return subprocess.Popen(
            [*outer, "--args", str(args_fd), "--", *command],
            stdin=subprocess.PIPE if stdin is None else stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},
            cwd="/",
            pass_fds=(args_fd, *data_fds),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    finally:
        for fd in (args_fd, *data_fds):
            os.close(fd)


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("grader-sandbox", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _spawn_namespaces(argv: list[str], layout: RootLayout, env: Mapping[str, str],
                      limits: Limits) -> subprocess.Popen[bytes]:
    unshare = _tool("unshare") or "unshare"
    ns = ["--net", "--pid", "--ipc", "--uts", "--mount", "--fork", "--kill-child"]
    ns += ["--propagation", "private"]
    if not _is_root():
        ns = ["--user", "--map-root-user", *ns]
    # The script names the hidden paths: it travels in the environment of the namespace's
    # init (pid 1, the shell), which the sandboxed code may not read, and not in its
    # command line, which it may.
    script = _namespace_script(layout)
    inner = [*_drop_argv(), *_userns_argv(), *_prlimit_argv(limits), *argv]
    return subprocess.Popen(
        [unshare, *ns, "--", "/bin/sh", "-euc", f'eval "${_SCRIPT_VARIABLE}"', "sandbox", *inner],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, _SCRIPT_VARIABLE: script},
        cwd="/",
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


_SCRIPT_VARIABLE = "SANDBOX_SETUP"

_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def _new_root_mountpoint() -> Path:
    """An existing directory to build the new root on, inside the private mount namespace
    (the host's copy is left untouched)."""
    for candidate in ("/dev/shm", "/run", "/mnt", "/media", "/srv", "/opt"):
        path = Path(candidate)
        if path.is_dir() and not path.is_symlink():
            return path
    raise ConfigurationError("namespaces isolation needs one of /dev/shm, /run or /mnt")


def _namespace_script(layout: RootLayout) -> str:
    """Shell run as root inside the new mount namespace, as its pid 1; ends by running
    ``"$@"`` and exiting with its status. It stays as pid 1 (rather than exec'ing) because the
    privilege drop would clear the parent-death signal that ``unshare --kill-child`` set.

    Like bubblewrap, it builds the new root ``layout`` describes on an empty tmpfs, then
    ``pivot_root`` into it and detaches the old root, so nothing else of the host is reachable.
    Whether a masked path is a folder is checked inside the new root.
    """
    q = _shell_quote
    root = _new_root_mountpoint()
    r = q(root)
    # Absolute paths: the caller's PATH (which the sandboxed program gets) may not hold them.
    mount, umount, pivot_root, mkdir, touch, ln, chmod, rmdir = (
        q(_tool(name) or name)
        for name in ("mount", "umount", "pivot_root", "mkdir", "touch", "ln", "chmod", "rmdir")
    )

    def inside(path: Path | str) -> str:
        return q(str(root) + str(path))

    def bind(source: Path, target: Path) -> list[str]:
        made = (f"{mkdir} -p {inside(target)}" if source.is_dir() else
                f"{mkdir} -p {inside(target.parent)} && {touch} {inside(target)}")
        return [made, f"{mount} --rbind {q(source)} {inside(target)}",
                f"{mount} -o remount,bind,ro,nosuid {inside(target)}"]

    lines = [f"{mount} -t tmpfs -o mode=0755,size=64m,nosuid sandbox-root {r}"]
    for tmpfs in layout.of("tmpfs"):
        lines += [f"{mkdir} -p -m {tmpfs.mode:04o} {inside(tmpfs.target)}",
                  f"{mount} -t tmpfs -o mode={tmpfs.mode:04o},size={tmpfs.size},nosuid,nodev "
                  f"sandbox-{tmpfs.target.name} {inside(tmpfs.target)}"]
    lines += [f"{ln} -s {q(link.source)} {inside(link.target)}" for link in layout.of("symlink")]
    for entry in layout.of("bind", "scratch"):
        if entry.kind == "scratch":
            lines.append(f"{mkdir} -p {inside(entry.target)}")
            lines.append(f"{mount} -t tmpfs -o mode={entry.mode:04o},size={entry.size},nosuid,"
                         f"nodev sandbox-scratch {inside(entry.target)}")
        else:
            lines += bind(entry.target, entry.target)
    lines.append(f"{touch} {inside('/.hidden')} && {chmod} 0000 {inside('/.hidden')}")
    for mask in layout.of("mask"):
        target = inside(mask.target)
        lines.append(
            f"if [ -d {target} ] && [ ! -L {target} ]; then "
            f"{mount} -t tmpfs -o mode=0000,size=4k hidden {target}; "
            f"elif [ -e {target} ]; then {mount} --bind {inside('/.hidden')} {target}; fi"
        )
    for file in layout.of("file"):
        lines.append(f"{mkdir} -p {inside(file.target.parent)} && "
                     f"printf '%s' {q(file.source)} > {inside(file.target)}")
    for proc in layout.of("proc"):
        if proc.source:
            lines += bind(Path(proc.source), proc.target)
        else:
            lines += [f"{mkdir} -p {inside(proc.target)}",
                      f"{mount} -t proc -o nosuid,nodev,noexec proc {inside(proc.target)}"]
    if layout.of("dev"):
        lines.append(f"{mkdir} -p {inside('/dev')}")
        for device in _DEVICES:
            if os.path.exists(f"/dev/{device}"):
                lines.append(f"{touch} {inside('/dev/' + device)}")
                lines.append(f"{mount} --bind /dev/{device} {inside('/dev/' + device)}")
        for name, target in (
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ):
            lines.append(f"{ln} -s {target} {inside('/dev/' + name)}")
    lines += [
        f"cd {r}",
        f"{mkdir} .old-root",
        f"{pivot_root} . .old-root",
        f"{umount} -l /.old-root",
        f"{rmdir} /.old-root",
        f"{mount} -o remount,bind,ro /",
        f"cd {q(layout.workdir)}",
        f"unset OLDPWD {_SCRIPT_VARIABLE}",
        '"$@"',
    ]
    return "\n".join(lines)


def _shell_quote(path: Path | str) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"


def _spawn_rlimits(
    argv: list[str], scratch: Path, env: Mapping[str, str], limits: Limits
) -> subprocess.Popen[bytes]:
    def preexec() -> None:
        die_with_parent()
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    drop: dict[str, object] = {}
    if _is_root() and _nobody_runs_python():
        drop = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "PWD": str(scratch)},
        cwd=str(scratch),
        start_new_session=True,
        preexec_fn=preexec,
        **drop,
    )


def exit_signal(returncode: int | None, isolation: Isolation) -> signal.Signals | None:
    """The signal that ended a sandboxed program, or None when it exited normally (or runs).

    At the rlimits level the program is the direct child and Popen reports a death by signal N
    as ``-N``. At the bubblewrap and namespaces levels it runs under bwrap or a shell, which
    report it as exit status ``128 + N``; an explicit ``sys.exit(128 + N)`` looks the same.
    """
    if returncode is None:
        return None
    number = -returncode if returncode < 0 else 0
    if isolation.level != "rlimits" and 128 < returncode < 128 + signal.NSIG:
        number = returncode - 128
    try:
        return signal.Signals(number) if number else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Killing


def kill_sandbox(proc: subprocess.Popen[bytes] | ForkedWorker) -> None:
    """Kill everything the sandbox started and reap ``proc``; safe to call twice.

    With bubblewrap or namespaces, killing the outer process tears down the pid namespace and
    every process in it; so does killing a forked worker's pid 1
    (:class:`~grader.sandbox.forking.ForkedWorker`). At the rlimits level the process group and
    every descendant still attached to the tree are stopped, then killed.
    """
    if proc.returncode is None:
        if isinstance(proc, subprocess.Popen):
            _kill_tree(proc.pid)
        else:
            proc.kill()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - the kernel should not let this happen
        pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def _kill_tree(pid: int) -> None:
    try:
        import psutil

        descendants = psutil.Process(pid).children(recursive=True)
    except Exception:  # psutil missing, or the process is gone already
        descendants = []
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for target in descendants:
            try:
                os.kill(target.pid, sig)
            except OSError:
                pass
        try:
            os.killpg(pid, sig)
        except OSError:
            pass
        try:
            os.kill(pid, sig)
        except OSError:
            pass
