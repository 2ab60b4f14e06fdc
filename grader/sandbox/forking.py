"""The checking process's end of a template sandbox (:mod:`grader.sandbox.template`).

:func:`fork_worker` gives a :class:`ForkedWorker`, which the worker client uses as it uses the
``Popen`` of a sandbox started on its own: three pipes, ``poll``, ``wait`` and a kill. The
template for a set of worker settings is started on first use, in a sandbox of its own, from a
thread that lives as long as it does (a sandbox dies with the thread that started it), and is
kept for later submissions of the same settings. A template that cannot start, or stops
answering, is not used again: the worker is then started on its own, as without a template.

Templates are used where bubblewrap runs as root, which lets the template make each worker's
namespaces (see :func:`usable`); ``GRADER_SANDBOX_TEMPLATE=0`` turns them off.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from grader.sandbox.isolation import PRIVATE_TMPFS, Isolation, Limits, templates_usable

TEMPLATE_MODULE = "grader.sandbox.template"
"""What the template sandbox runs."""

MAX_TEMPLATES = 4
"""Templates kept per checking process; the least recently used idle one is ended beyond it."""

REPLY_SECONDS = 30.0
"""How long the template may take to answer a request (a fork takes milliseconds)."""


def usable(isolation: Isolation, readable: Sequence[Path]) -> bool:
    """Whether workers at ``isolation`` that read ``readable`` may be forked from a template
    (:func:`~grader.sandbox.isolation.templates_usable`)."""
    return templates_usable(isolation.level, isolation.mode, readable)


class TemplateUnavailable(Exception):
    """The template could not start or stopped answering."""


class ForkedWorker:
    """A worker forked from a template, seen like the ``Popen`` of a sandbox: ``stdin``,
    ``stdout``, ``stderr``, ``returncode``, ``poll()``, ``wait(timeout)``, and ``kill()``, which
    ends the worker's pid namespace (the worker and everything it started)."""

    def __init__(self, template: _Template, pid: int, stdin: IO[bytes], stdout: IO[bytes],
                 stderr: IO[bytes], status: int) -> None:
        self.template = template
        self.namespace_pid = pid
        """The worker's pid 1, as the template sees it (not a pid of this machine's)."""
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self._status = status
        self.returncode: int | None = None
        self.template_lost = False
        """Whether the worker ended because its template did (not the student's doing)."""

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._status], [], [], 0)[0]:
            self._read_status()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._status], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired("sandboxed worker", timeout or 0.0)
            self._read_status()
        assert self.returncode is not None
        return self.returncode

    def _read_status(self) -> None:
        try:
            text = os.read(self._status, 64)
            code = int(text)
        except (OSError, ValueError):  # no status: the template ended, and the worker with it
            code = 128 + signal.SIGKILL
            self.template_lost = True
        self.returncode = code
        os.close(self._status)
        self.template.ended()

    def kill(self) -> None:
        if self.returncode is None:
            self.template.kill(self.namespace_pid)


def _close_streams(worker: ForkedWorker) -> None:
    for stream in (worker.stdin, worker.stdout, worker.stderr):
        try:
            stream.close()
        except OSError:
            pass


class _Template:
    """One template sandbox and the thread that started it."""

    STDERR_BYTES = 8192
    """How much of the template's stderr is kept (the end), for staff."""

    def __init__(self, start: Callable[[socket.socket], subprocess.Popen[bytes]],
                 root: Path, limits: Limits) -> None:
        self.root = root
        self.stderr = bytearray()
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.error = ""
        self.live = 0
        """Workers forked and not yet seen to end."""
        self.requests = 0
        self.used = time.monotonic()
        started = threading.Event()

        def run() -> None:
            try:
                self.proc = start(theirs)
            except OSError as exc:
                self.error = f"could not start: {exc}"
                return
            finally:
                theirs.close()
                started.set()
            # This thread lives as long as the template: the sandbox dies with it.
            assert self.proc.stderr is not None
            while chunk := os.read(self.proc.stderr.fileno(), 65536):
                self.stderr = (self.stderr + chunk)[-self.STDERR_BYTES:]
            self.proc.wait()

        self.thread = threading.Thread(target=run, name="grader-template", daemon=True)
        self.thread.start()
        started.wait()
        if self.proc is None:
            raise TemplateUnavailable(self.error)
        from grader.sandbox.client import READY_SECONDS

        try:
            if self._receive(READY_SECONDS) != b"ready":
                raise TemplateUnavailable("its first message was not 'ready'" + self._stderr())
            self._probe(limits)
        except BaseException:
            self.close()
            raise

    def _stderr(self) -> str:
        """The end of the template's stderr, once it has ended (waiting a few seconds for
        that; else nothing)."""
        if self.proc is None:
            return ""
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return ""
        self.thread.join(timeout=5)
        text = bytes(self.stderr).decode(errors="replace").strip()
        return f"; its stderr: {text[-2000:]}" if text else ""

    def _probe(self, limits: Limits) -> None:
        """Fork one worker and wait for its ``ready`` line: a host where a fork cannot confine
        itself (a mount, a namespace refused) is found here, before any student's worker."""
        from grader.sandbox.client import READY_SECONDS

        probe = self.fork(limits)
        line, err = b"", ""
        try:
            fd = probe.stdout.fileno()
            deadline = time.monotonic() + READY_SECONDS
            while b"\n" not in line and len(line) < 65536:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    break
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                line += chunk
            try:
                ready = json.loads(line.split(b"\n")[0]).get("ready") is True
            except (ValueError, AttributeError):
                ready = False
            probe.kill()
            probe.wait(REPLY_SECONDS)
            if not ready:
                os.set_blocking(probe.stderr.fileno(), False)
                err = (probe.stderr.read() or b"")[-2000:].decode(errors="replace").strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            ready, err = False, str(exc)
        finally:
            probe.kill()
            _close_streams(probe)
        if not ready:
            raise TemplateUnavailable(f"a worker forked from it did not start: {err or line!r}")

    def _receive(self, timeout: float) -> bytes:
        if not select.select([self.control], [], [], timeout)[0]:
            raise TemplateUnavailable(f"no answer within {timeout:.0f} s")
        try:
            return self.control.recv(4096)
        except OSError as exc:
            raise TemplateUnavailable(f"its socket failed: {exc}") from None

    def fork(self, limits: Limits) -> ForkedWorker:
        limits_json = json.dumps({"memory_bytes": limits.memory_bytes,
                                  "processes": limits.processes,
                                  "file_bytes": limits.file_bytes,
                                  "scratch_bytes": limits.scratch_bytes}).encode()
        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        theirs = (stdin_r, stdout_w, stderr_w, status_w)
        ours = (stdin_w, stdout_r, stderr_r, status_r)
        try:
            with self.lock:
                self.used = time.monotonic()
                number = self._number()
                try:
                    socket.send_fds(self.control, [b"fork " + number + b" " + limits_json],
                                    list(theirs))
                except OSError as exc:
                    raise TemplateUnavailable(f"its socket failed: {exc}") from None
                reply = self._reply_to(number)
                if reply.startswith(b"pid "):
                    self.live += 1
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        if not reply.startswith(b"pid "):
            for fd in ours:
                os.close(fd)
            raise TemplateUnavailable(reply.decode(errors="replace")[:500] or "no reply")
        return ForkedWorker(self, int(reply[4:]), open(stdin_w, "wb"),  # noqa: SIM115
                            open(stdout_r, "rb"), open(stderr_r, "rb"), status_r)  # noqa: SIM115

    def kill(self, pid: int) -> None:
        with self.lock:
            number = self._number()
            try:
                self.control.send(b"kill " + number + f" {pid}".encode())
                self._reply_to(number)
            except (OSError, TemplateUnavailable):
                self.close()  # ending the template ends every worker it forked

    def _number(self) -> bytes:
        self.requests += 1
        return str(self.requests).encode()

    def _reply_to(self, number: bytes) -> bytes:
        """The reply to request ``number``, without it. A reply to an earlier request, left
        unread when an exception interrupted this thread while it waited, is skipped."""
        deadline = time.monotonic() + REPLY_SECONDS
        while True:
            reply = self._receive(max(deadline - time.monotonic(), 0.0))
            answered, _, rest = reply.partition(b" ")
            if answered == number:
                return rest

    def ended(self) -> None:
        """One of its workers was seen to end (or was killed)."""
        with self.lock:
            self.live = max(self.live - 1, 0)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        from grader.sandbox.isolation import kill_sandbox

        if self.proc is not None:
            kill_sandbox(self.proc)
        self.control.close()
        self.thread.join(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


_templates: dict[tuple[object, ...], _Template] = {}
_broken: set[tuple[object, ...]] = set()
_retired: list[_Template] = []
"""Templates no longer used that still had live workers when they failed."""
_lock = threading.Lock()


def fork_worker(*, limits: Limits, isolation: Isolation, readable: Sequence[Path],
                hidden: Sequence[Path], preload: tuple[str, ...], forbidden: tuple[str, ...],
                env_for: Callable[[Path, tuple[Path, ...]], Mapping[str, str]]
                ) -> ForkedWorker | None:
    """A worker forked from the template for these settings (started on first use), or None
    where templates are not used or this one failed (the caller then starts the worker on its
    own).

    One template serves every worker whose sandbox would have the same root: the hidden paths
    that change the root layout (:func:`~grader.sandbox.isolation.hidden_in_layout`; another
    submission's own folders are out of sight either way), the same preloaded modules and
    forbidden imports, the same isolation. ``env_for(scratch, hidden)`` is the worker's
    environment for a scratch directory: the template is started with it, and its workers
    inherit it."""
    if not usable(isolation, readable):
        return None
    from grader.sandbox.isolation import hidden_in_layout

    hidden = hidden_in_layout(readable, hidden)
    key = (isolation, tuple(map(str, readable)), hidden, preload, forbidden)
    with _lock:
        if key in _broken:
            return None
        template = _templates.get(key)
        if template is not None and not template.alive:
            _templates.pop(key).close()
            template = None
        if template is None:
            _evict()
            try:
                template = _start(limits, isolation, readable, hidden, env_for)
            except TemplateUnavailable as exc:
                _broken.add(key)
                _report(f"a template sandbox could not start ({exc}); each worker is started "
                        "on its own")
                return None
            _templates[key] = template
    try:
        return template.fork(limits)
    except TemplateUnavailable as exc:
        with _lock:
            if _templates.get(key) is template:
                del _templates[key]
            _broken.add(key)
            if template.live:
                _retired.append(template)  # its workers go on; ended with the process
            else:
                template.close()
        _report(f"a template sandbox stopped working ({exc}); each worker is started on its own")
        return None


def _evict() -> None:
    """Below :data:`MAX_TEMPLATES`: the least recently used template with no live worker ends."""
    while len(_templates) >= MAX_TEMPLATES:
        idle = [(t.used, key) for key, t in _templates.items() if t.live == 0]
        if not idle:
            return
        _templates.pop(min(idle, key=lambda pair: pair[0])[1]).close()


def _start(limits: Limits, isolation: Isolation, readable: Sequence[Path],
           hidden: tuple[Path, ...],
           env_for: Callable[[Path, tuple[Path, ...]], Mapping[str, str]]) -> _Template:
    from grader.sandbox.isolation import _own_user_namespace, spawn_sandboxed

    root = Path(tempfile.mkdtemp(prefix=f"grader-sbx-{os.getpid()}-"))
    os.chmod(root, 0o711)
    scratch = root / "template"
    scratch.mkdir()
    os.chmod(scratch, 0o755)
    settings = json.dumps({"own_user_namespace": _own_user_namespace(),
                           "private_tmpfs": [[str(target), size] for target, size in PRIVATE_TMPFS]})
    argv = [sys.executable, "-I", "-m", TEMPLATE_MODULE, str(scratch), settings]

    def start(control: socket.socket) -> subprocess.Popen[bytes]:
        return spawn_sandboxed(argv, scratch=scratch, readable=readable,
                               env=env_for(scratch, hidden),
                               limits=limits, isolation=isolation, hidden=hidden,
                               stdin=control.fileno(), template=True)

    try:
        return _Template(start, root, limits)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _report(message: str) -> None:
    print(f"grader: {message}", file=sys.stderr)


@atexit.register
def close_all() -> None:
    """End every template (and the workers forked from them) and remove their folders."""
    with _lock:
        while _templates:
            _templates.popitem()[1].close()
        while _retired:
            _retired.pop().close()
