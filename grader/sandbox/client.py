"""The checking process's end of the sandboxed worker: starting it, talking to it, killing it.

:class:`WorkerClient` starts ``python -I -m grader.sandbox.worker`` confined (see
:mod:`grader.sandbox.isolation`) and exchanges :mod:`grader.codec` messages with it over its
stdin and stdout (the requests and replies are in :mod:`grader.sandbox.protocol`). Every write
and read has a deadline, and every reply is bounded before it is parsed; the worker's stderr
(the student's prints) is drained and capped. This process never opens a path the sandbox can
write.

Nothing Unix-only is imported before a worker starts, so that :mod:`grader.submission`, which
imports this module, loads where the isolation module does not.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader import codec
from grader.errors import CallTimeout, RefusedValue, WorkerCrashed, WorkerUnavailable

if TYPE_CHECKING:
    from grader.sandbox.forking import ForkedWorker
    from grader.sandbox.isolation import Isolation, Limits

READY_SECONDS = 120.0
"""How long a worker may take to start (Python and its imports, Keras where preloaded) before
the grader gives up."""


class _OutputDrain(threading.Thread):
    """Reads the worker's stderr (the student's prints), keeping only the first bytes."""

    def __init__(self, stream: Any, keep: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.keep = stream, keep
        self.kept = bytearray()
        self.total = 0

    def run(self) -> None:
        while chunk := self.stream.read1(65536):
            self.total += len(chunk)
            if len(self.kept) < self.keep:
                self.kept += chunk[: self.keep - len(self.kept)]


class WorkerClient:
    """One sandboxed worker at a time, started afresh after each kill.

    Failures come back as the exceptions the hidden suites see: :class:`CallTimeout`,
    :class:`WorkerCrashed`, :class:`RefusedValue`, and :class:`WorkerUnavailable` for a worker
    that dies before its ``ready`` line (the grader's failure). Each limit the worker runs into
    is reported to ``hit`` (``"time"``, ``"memory"``, ``"output"``).
    """

    def __init__(self, root: Path, *, limits: Limits, isolation: Isolation,
                 hidden: tuple[Path, ...], hit: Callable[[str], None],
                 preload: tuple[str, ...] = (), forbidden: tuple[str, ...] = ()) -> None:
        self.root = root
        """A private folder holding each worker's scratch mount point."""
        self.limits = limits
        self.isolation = isolation
        self.hidden = hidden
        self.preload = preload
        """Modules the worker imports before its ``ready`` line (``keras`` where the assignment
        needs TensorFlow), with the assignment's ``forbidden`` imports failing meanwhile."""
        self.forbidden = forbidden
        self._hit = hit
        self.scratch: Path | None = None
        """The running (or last) worker's scratch directory."""
        self.last_timeout = float(limits.call_seconds)
        """The time limit of the last request that ran past it."""
        self._proc: subprocess.Popen[bytes] | ForkedWorker | None = None
        self._drain: _OutputDrain | None = None
        self._inbox = bytearray()
        self._ready = False

    @property
    def running(self) -> bool:
        """Whether a worker is started (and not killed since)."""
        return self._proc is not None

    @staticmethod
    def worker_argv(scratch: Path) -> list[str]:
        return [sys.executable, "-I", "-m", "grader.sandbox.worker", str(scratch)]

    def start(self) -> None:
        from grader.sandbox import forking
        from grader.sandbox.isolation import python_runtime_paths, spawn_sandboxed

        readable = python_runtime_paths()
        self._inbox = bytearray()
        self._ready = False
        # Forked from a template that imported the assignment's libraries once, where the
        # isolation allows it; else started on its own.
        forked = forking.fork_worker(limits=self.limits, isolation=self.isolation,
                                     readable=readable, hidden=self.hidden,
                                     preload=self.preload, forbidden=self.forbidden,
                                     env_for=self._environment)
        if forked is not None:
            self.scratch = Path(forked.template.root, "template")
            self._proc = forked
        else:
            # A fresh, empty folder each time; the sandbox mounts its own capped tmpfs on it
            # where the level allows, and this process never opens anything inside it.
            self.scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=self.root))
            os.chmod(self.scratch, 0o755)
            self._proc = spawn_sandboxed(self.worker_argv(self.scratch), scratch=self.scratch,
                                         readable=readable, env=self._environment(self.scratch),
                                         limits=self.limits, isolation=self.isolation,
                                         hidden=self.hidden)
        self._drain = _OutputDrain(self._proc.stderr, self.limits.output_bytes)
        self._drain.start()

    def _environment(self, scratch: Path, hidden: tuple[Path, ...] | None = None
                     ) -> dict[str, str]:
        """The worker's environment, for its scratch directory (and ``hidden``, where not this
        client's own)."""
        from grader.sandbox import fonts
        from grader.sandbox.isolation import SYSTEM_TREES, python_runtime_paths

        hidden = self.hidden if hidden is None else hidden
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(scratch),
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(scratch / ".mpl"),
            "KERAS_HOME": str(scratch / ".keras"),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1",
            "TF_NUM_INTRAOP_THREADS": "1",
            "LANG": "C.UTF-8",
        }
        font_list = fonts.font_list(tuple(map(str, (*SYSTEM_TREES, *python_runtime_paths()))),
                                    tuple(map(str, hidden)))
        if font_list is not None:
            env[fonts.VARIABLE] = font_list
        if self.preload:
            env["GRADER_PRELOAD"] = ",".join(self.preload)
            env["GRADER_PRELOAD_FORBIDDEN"] = ",".join(self.forbidden)
        return env

    @property
    def alive(self) -> bool:
        """Whether a worker is started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def settings(self) -> tuple[object, ...]:
        """What a worker is started with: a worker started for one submission serves another
        only where these are equal."""
        return (self.limits, self.isolation, self.hidden, self.preload, self.forbidden)

    def report_to(self, hit: Callable[[str], None]) -> None:
        """Where the limits this worker runs into are reported from now on."""
        self._hit = hit

    def kill(self) -> None:
        """Kill the worker and everything it started; safe to call twice."""
        from grader.sandbox.isolation import kill_sandbox

        if self._proc is not None:
            kill_sandbox(self._proc)
            if self._drain is not None:
                self._drain.join(timeout=5)
                if self._drain.total > self.limits.output_bytes:
                    self._hit("output")
            self._proc = None
            self._inbox = bytearray()

    # -- what ended the worker ----------------------------------------------------------
    def _exit_reason(self) -> str:
        assert self._proc is not None
        from grader.sandbox.isolation import exit_signal

        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        sig = exit_signal(code, self.isolation)
        if sig is not None:
            if sig == signal.SIGSEGV:
                return "crashed with a segmentation fault (SIGSEGV)"
            if sig == signal.SIGKILL:
                return "was killed (SIGKILL) — it may have run out of memory or killed itself"
            if sig == signal.SIGXFSZ:
                self._hit("output")
                return "wrote a file larger than the limit (SIGXFSZ)"
            return f"was killed by signal {sig.name}"
        return f"exited with status {code} (sys.exit or os._exit in the notebook's code?)"

    def _break(self, what: str) -> WorkerUnavailable:
        """The worker failed before running any student code: the grader's failure."""
        reason = "stopped answering" if self._proc is None else self._exit_reason()
        stderr = bytes(self._drain.kept[-8000:]).decode(errors="replace") if self._drain else ""
        self.kill()
        return WorkerUnavailable(f"{what}: the sandboxed worker {reason} before it was ready "
                                 f"(isolation {self.isolation.level}); its stderr:\n{stderr}")

    def _timeout(self, what: str, timeout: float) -> CallTimeout:
        self.last_timeout = timeout
        self._hit("time")
        self.kill()
        return CallTimeout(
            f"{what}: did not finish within {timeout:.0f} s — look for an infinite loop, a "
            "blocking call (input(), sleep, network) or a very slow computation")

    def _crashed(self, what: str) -> WorkerCrashed | WorkerUnavailable:
        reason = self._exit_reason()
        if getattr(self._proc, "template_lost", False):
            # The template sandbox it was forked from ended, and the worker with it: the
            # grader's failure, never the student's.
            stderr = bytes(self._drain.kept[-4000:]).decode(errors="replace") if self._drain else ""
            self.kill()
            return WorkerUnavailable(f"{what}: the template sandbox this worker was forked from "
                                     f"ended (isolation {self.isolation.level}); the worker's "
                                     f"stderr:\n{stderr}")
        if "memory" in reason:
            self._hit("memory")
        self.kill()
        return WorkerCrashed(f"{what}: the notebook's code {reason}")

    # -- the pipes ----------------------------------------------------------------------
    def send(self, payload: dict[str, Any], what: str, blobs: list[bytes], timeout: float) -> float:
        """Write one request within ``timeout`` seconds; returns when it was sent."""
        assert self._proc is not None and self._proc.stdin is not None
        started = time.monotonic()
        if self._ready:
            self._inbox = bytearray()  # nothing may answer a request before it is sent
        fd = self._proc.stdin.fileno()
        os.set_blocking(fd, False)
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_WRITE)
            for chunk in codec.frame(payload, blobs):
                view = memoryview(chunk)
                while view:
                    left = timeout - (time.monotonic() - started)
                    if not selector.select(timeout=max(left, 0.0)):
                        raise self._timeout(what, timeout)
                    try:
                        view = view[os.write(fd, view[: 2**20]):]
                    except BlockingIOError:
                        continue
                    except OSError:
                        raise self._crashed(what) from None
        return started

    def receive(self, what: str, started: float, timeout: float
                ) -> tuple[dict[str, Any], list[bytes]]:
        """Wait for the reply to the request sent at ``started`` (after the worker's ``ready``
        line, the first time)."""
        if not self._ready:
            # The worker's own start-up is the grader's time, not the student's: it has a
            # limit of its own, and the reply's limit counts from the moment it is ready.
            header, _ = self._read_message(what, started, max(timeout, READY_SECONDS))
            if header.get("ready") is not True:
                raise self._break(f"{what}: the worker's first message was not 'ready'")
            self._ready = True
            started = max(started, time.monotonic() - 0.05)
        return self._read_message(what, started, timeout)

    def _read_message(self, what: str, started: float, timeout: float
                      ) -> tuple[dict[str, Any], list[bytes]]:
        """One message from the worker, within the time left and the codec's size limits."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        buffer = self._inbox
        header: dict[str, Any] | None = None
        sizes: list[int] = []
        start = end = 0
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                if header is None and (newline := buffer.find(b"\n")) >= 0:
                    header, sizes = self._parse_header(bytes(buffer[:newline]), what)
                    start = newline + 1
                    end = start + sum(sizes)
                if header is None and len(buffer) > codec.MAX_LINE_BYTES:
                    self.kill()
                    raise RefusedValue(f"{what}: the reply is larger than "
                                       f"{codec.MAX_LINE_BYTES} bytes")
                if header is not None and len(buffer) >= end:
                    break
                left = timeout - (time.monotonic() - started)
                # Past the limit, a reply already waiting is still read: it came while this
                # process was busy (a load sent by start()), and that delay is not the student's.
                if not selector.select(timeout=max(left, 0.0)):
                    if not self._ready:
                        raise self._break(f"{what}: no answer within {timeout:.0f} s")
                    raise self._timeout(what, timeout)
                chunk = os.read(fd, 2**20)
                if not chunk:
                    if not self._ready:
                        raise self._break(what)
                    raise self._crashed(what)
                buffer += chunk
        view = memoryview(buffer)
        blobs = []
        for size in sizes:
            blobs.append(bytes(view[start:start + size]))
            start += size
        view.release()
        del buffer[:end]
        return header, blobs

    def _parse_header(self, line: bytes, what: str) -> tuple[dict[str, Any], list[int]]:
        try:
            header = json.loads(line)
            if not isinstance(header, dict):
                raise ValueError("not an object")
            return header, codec.blob_sizes(header, what)
        except (ValueError, RecursionError):
            self.kill()
            raise RefusedValue(f"{what}: malformed reply from the sandbox") from None
        except RefusedValue:
            self.kill()
            raise
