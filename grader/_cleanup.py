"""Leftovers of killed gradings: temporary folders and files named after the process that made
them, removed once that process is gone.

Every temporary entry the grader leaves in the temporary folder while it grades carries the id
of the process that created it:

``grader-sbx-<pid>-XXXX``  a sandbox root (folder), made by the checking process
``grader-ray-<pid>-XXXX``  a Ray task's folder (the notebook, the task's output), made by the
                           Ray worker process
``grader-job-<pid>-XXXX``  a checking process' job file, made by the process that starts it
``grader-probe-<pid>-XXXX`` the scratch of a probe of the isolation level (folder)
``grader-fonts-<pid>-XXXX`` where the checking process writes Matplotlib's font list (folder)
``grader-model-<pid>-XXXX`` where the checking process loads a model a sandbox returned (folder)

A process that ends normally removes its own entries. One killed with SIGKILL (a lost node, an
out-of-memory kill, a driver whose Ray tasks are ended) cannot; :func:`sweep_stale` removes
such entries later, when the next grading starts on the same machine.

An entry is removed only when all of these hold: its name has one of the forms above, the
process it names is not running, it belongs to the user running the sweep, and it was last
changed more than ``min_age`` seconds ago (a minute by default: never a folder that a process
which just started is still setting up). The temporary folder must not be shared between
machines or between containers with separate process ids, since a process id is only
meaningful on its own machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_KINDS = ("sbx", "ray", "job", "probe", "fonts", "model")

PREFIXES = tuple(f"grader-{kind}-" for kind in _KINDS)
"""Name prefixes of the grader's temporary entries; each is followed by ``<pid>-``."""

MIN_AGE_SECONDS = 60.0

_NAME = re.compile(rf"^grader-({'|'.join(_KINDS)})-(\d+)-.+$")


def owner_pid(name: str) -> int | None:
    """The process id in a grader temporary entry's name, or None for any other name."""
    match = _NAME.match(name)
    return int(match.group(2)) if match else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _make_writable(function: Callable[..., Any], path: str, _exc: Any) -> None:
    """``rmtree`` error handler: a sandbox may leave read-only folders; open them and retry."""
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
        function(path)


def remove(path: Path) -> bool:
    """Remove a file or a folder tree (never following a symbolic link); True when gone."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        if stat.S_ISDIR(info.st_mode):
            if sys.version_info >= (3, 12):
                shutil.rmtree(path, onexc=_make_writable)
            else:
                shutil.rmtree(path, onerror=_make_writable)
        else:
            path.unlink()
    except OSError:
        pass
    return not os.path.lexists(path)


def _own_entries(tmp: Path | None) -> Iterator[tuple[os.DirEntry[str], int, os.stat_result]]:
    """The grader's entries in ``tmp`` (default: ``tempfile.gettempdir()``) that this user
    owns: each with the pid its name carries and its own (not a link's target) status."""
    uid = os.geteuid()
    try:
        entries = list(os.scandir(tmp or tempfile.gettempdir()))
    except OSError:
        return
    for entry in entries:
        pid = owner_pid(entry.name)
        if pid is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_uid == uid:
            yield entry, pid, info


def _remove_all(paths: Iterator[Path]) -> list[Path]:
    return [path for path in paths if remove(path)]


def sweep_stale(tmp: Path | None = None, *, min_age: float = MIN_AGE_SECONDS) -> list[Path]:
    """Remove the grader's temporary entries in ``tmp`` (default: the temporary folder,
    ``tempfile.gettempdir()``) whose process is gone; return them.

    See the module's docstring for what counts as stale. Errors are not raised: an entry that
    cannot be removed stays for the next sweep.
    """
    now = time.time()

    def stale(entry: os.DirEntry[str], pid: int, info: os.stat_result) -> bool:
        kind_ok = (stat.S_ISREG(info.st_mode) if entry.name.startswith("grader-job-")
                   else stat.S_ISDIR(info.st_mode))
        return kind_ok and now - info.st_mtime >= min_age and not pid_alive(pid)

    return _remove_all(Path(entry.path) for entry, pid, info in _own_entries(tmp)
                       if stale(entry, pid, info))


def remove_owned_by(pids: set[int], tmp: Path | None = None) -> list[Path]:
    """Remove at once (whatever their age) the grader's temporary entries of ``pids``, processes
    the caller has just ended itself; entries of a process still running are kept."""
    return _remove_all(Path(entry.path) for entry, pid, _ in _own_entries(tmp)
                       if pid in pids and not pid_alive(pid))
