"""The object behind the hidden suites' ``submission`` fixture.

Two implementations with one interface:

- :class:`SandboxSubmission` (the hardened path): the answer code runs in a sandboxed worker
  process; values come back as data (see :mod:`grader.codec`).
- :class:`InProcessSubmission` (nbgrader's in-kernel path): the notebook's own namespace, with
  values passed through the same codec so the suites see the same kinds of values.
"""

from __future__ import annotations

import copy
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from grader import codec
from grader.course import Assignment
from grader.errors import (
    CallTimeout,
    MissingFunction,
    RefusedValue,
    StudentException,
    SubmissionTimeout,
    WorkerCrashed,
)
from grader.extract import Extracted
from grader.sandbox.worker import describe_exception, warn_on_overflow

MAX_REPLY_BYTES = 16 * 2**20
NOBODY = 65534


def _missing(function: str) -> MissingFunction:
    return MissingFunction(
        f"{function}(): not defined in the notebook — expected a function named {function}; "
        "check its spelling, that the cell defining it has no syntax error, and that the "
        "definition is at the top level of a cell"
    )


class Submission(ABC):
    """What a hidden test may ask of a student's code."""

    def __init__(self, assignment: Assignment) -> None:
        self.assignment = assignment
        self.limits_hit: list[str] = []
        self.load_messages: list[str] = []
        self.forbidden_imports: list[str] = []
        self.last_warnings: list[str] = []
        """Warnings (e.g. overflow) the last call emitted."""

    @abstractmethod
    def defines(self, function: str) -> bool:
        """Whether the notebook defines ``function``."""

    @abstractmethod
    def _call(self, function: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              return_args: bool) -> tuple[Any, list[Any] | None]: ...

    def call(self, function: str, *args: Any, **kwargs: Any) -> Any:
        """Call the student's ``function``; the value comes back decoded and validated."""
        return self._call(function, args, kwargs, False)[0]

    def call_and_return_args(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, list[Any]]:
        """Call, and also return the positional arguments as they are after the call."""
        value, after = self._call(function, args, kwargs, True)
        return value, after or []

    def _hit(self, limit: str) -> None:
        if limit not in self.limits_hit:
            self.limits_hit.append(limit)

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release processes and files."""


class InProcessSubmission(Submission):
    """The notebook kernel's namespace (nbgrader autograde). Not isolated: see the README."""

    def __init__(self, namespace: dict[str, Any], assignment: Assignment) -> None:
        super().__init__(assignment)
        self.namespace = namespace
        self._dir = Path(tempfile.mkdtemp(prefix="grader-inproc-"))
        self._counter = 0
        self.forbidden_imports = [m for m in assignment.forbidden_imports if m in sys.modules
                                  and any(getattr(v, "__name__", "").split(".")[0] == m
                                          for v in namespace.values())]

    def defines(self, function: str) -> bool:
        return callable(self.namespace.get(function))

    def _call(self, function: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              return_args: bool) -> tuple[Any, list[Any] | None]:
        target = self.namespace.get(function)
        if not callable(target):
            raise _missing(function)
        args, kwargs = copy.deepcopy((args, kwargs))
        import warnings


        try:
            with warnings.catch_warnings(record=True) as caught, warn_on_overflow():
                warnings.simplefilter("always")
                value = target(*args, **kwargs)
            self.last_warnings = [f"{w.category.__name__}: {w.message}" for w in caught[:10]]
        except Exception as exc:  # noqa: BLE001 - the student's exception is their result
            raise StudentException(f"{function}() raised {describe_exception(exc)}") from None
        self._counter += 1
        keras_model = None
        if self.assignment.needs_tensorflow:
            import keras

            keras_model = keras.Model
        encoded = codec.encode(value, self._dir, f"the value {function}() returned",
                               prefix=f"r{self._counter}", keras_model_type=keras_model)
        after = None
        if return_args:
            after = codec.decode(codec.encode(list(args), self._dir, "an argument",
                                              prefix=f"r{self._counter}a"), self._dir, "argument")
        return codec.decode(encoded, self._dir, f"the value {function}() returned"), after

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


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


class SandboxSubmission(Submission):
    """The answer code in a sandboxed worker process, answering calls over a pipe."""

    def __init__(self, extracted: Extracted, assignment: Assignment, *, limits: Any,
                 isolation: Any, hidden: tuple[Path, ...] = ()) -> None:
        super().__init__(assignment)
        self.extracted = extracted
        self.limits = limits
        self.isolation = isolation
        self.hidden = hidden
        # A private folder (mode 0711: no one else can list it) holding each worker's scratch.
        self._root = Path(tempfile.mkdtemp(prefix="grader-"))
        os.chmod(self._root, 0o711)
        self.load_messages = list(extracted.messages)
        self._deadline = time.monotonic() + limits.submission_seconds
        self._proc: subprocess.Popen[bytes] | None = None
        self._drain: _OutputDrain | None = None
        self._scratch: Path | None = None
        self._defined: set[str] | None = None
        self._dead_reason: str | None = None
        self._ids = 0
        self._loaded_once = False
        self._pending_load: tuple[float, float] | None = None
        """(sent at, time limit) of a load request whose reply has not been read yet."""
        self._load_error: Exception | None = None

    # -- process management -------------------------------------------------------------
    def _spawn(self) -> None:
        from grader.sandbox.isolation import python_runtime_paths, spawn_sandboxed

        self._scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=self._root))
        if os.geteuid() == 0:
            os.chown(self._scratch, NOBODY, NOBODY)
        os.chmod(self._scratch, 0o755)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self._scratch),
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(self._scratch / ".mpl"),
            "KERAS_HOME": str(self._scratch / ".keras"),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1",
            "TF_NUM_INTRAOP_THREADS": "1",
            "LANG": "C.UTF-8",
        }
        argv = [sys.executable, "-I", "-m", "grader.sandbox.worker", str(self._scratch)]
        self._proc = spawn_sandboxed(argv, scratch=self._scratch, readable=python_runtime_paths(),
                                     env=env, limits=self.limits, isolation=self.isolation,
                                     hidden=self.hidden)
        self._drain = _OutputDrain(self._proc.stderr, self.limits.output_bytes)
        self._drain.start()

    def _kill(self) -> None:
        from grader.sandbox.isolation import kill_sandbox

        if self._proc is not None:
            kill_sandbox(self._proc)
            if self._drain is not None:
                self._drain.join(timeout=5)
                if self._drain.total > self.limits.output_bytes:
                    self._hit("output")
            self._proc = None
            self._pending_load = None

    def close(self) -> None:
        self._kill()
        self._scratch = None
        shutil.rmtree(self._root, ignore_errors=True)

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

    # -- protocol -----------------------------------------------------------------------
    def _remaining(self) -> float:
        return self._deadline - time.monotonic()

    def _request(self, payload: dict[str, Any], what: str) -> dict[str, Any]:
        return self._receive(what, *self._send(payload, what))

    def _send(self, payload: dict[str, Any], what: str) -> tuple[float, float]:
        """Write one request; returns (when it was sent, how long its reply may take)."""
        if self._remaining() <= 0:
            self._hit("time")
            raise SubmissionTimeout(
                f"{what}: not run — the submission used up its {self.limits.submission_seconds:.0f} s "
                "time budget; look for slow loops or very large computations"
            )
        assert self._proc is not None and self._proc.stdin is not None
        assert self._proc.stdout is not None
        timeout = min(self.limits.call_seconds, self._remaining())
        try:
            self._proc.stdin.write(codec.dumps(payload).encode() + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            reason = self._exit_reason()
            self._dead_reason = reason
            self._kill()
            raise WorkerCrashed(f"{what}: the notebook's code {reason}") from None
        return time.monotonic(), timeout

    def _receive(self, what: str, started: float, timeout: float) -> dict[str, Any]:
        """Wait for the reply to the request sent at ``started``."""
        assert self._proc is not None and self._proc.stdout is not None
        buffer = bytearray()
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in buffer:
                left = timeout - (time.monotonic() - started)
                # Past the limit, a reply already waiting is still read: it came while this
                # process was busy (a load sent by start()), and that delay is not the student's.
                if not selector.select(timeout=max(left, 0.0)):
                    self._hit("time")
                    self._kill()
                    raise CallTimeout(
                        f"{what}: did not finish within {timeout:.0f} s — look for an infinite "
                        "loop, a blocking call (input(), sleep, network) or a very slow computation"
                    )
                chunk = os.read(fd, 65536)
                if not chunk:
                    reason = self._exit_reason()
                    if "memory" in reason:
                        self._hit("memory")
                    self._kill()
                    raise WorkerCrashed(f"{what}: the notebook's code {reason}")
                buffer += chunk
                if len(buffer) > MAX_REPLY_BYTES:
                    self._kill()
                    raise RefusedValue(f"{what}: the reply is larger than {MAX_REPLY_BYTES} bytes")
        try:
            reply = json.loads(buffer[: buffer.index(b"\n")])
        except ValueError:
            self._kill()
            raise RefusedValue(f"{what}: malformed reply from the sandbox") from None
        if not isinstance(reply, dict):
            raise RefusedValue(f"{what}: malformed reply from the sandbox")
        return reply

    def start(self) -> None:
        """Start the worker and send it the notebook without waiting for the reply, so that its
        start-up (Python, the notebook's imports, TensorFlow) overlaps what the checking process
        does next. The first call that needs the notebook then waits for the reply, within the
        loading call's time limit counted from now; a reply that is complete by then is read even
        if the checking process was busy past that limit. Optional: calls start it when needed."""
        if self._proc is not None or self._pending_load is not None or not self.extracted.cells:
            return
        self._spawn()
        cells = [{"index": c.index, "source": c.source} for c in self.extracted.cells]
        try:
            self._pending_load = self._send(
                {"op": "load", "cells": cells,
                 "forbidden": list(self.assignment.forbidden_imports),
                 "keras": self.assignment.needs_tensorflow},
                "loading the notebook")
        except (WorkerCrashed, SubmissionTimeout) as exc:
            self._load_error = exc

    def _ensure_loaded(self) -> None:
        if self._proc is None and self._pending_load is None and self._load_error is None:
            self.start()
        if self._load_error is not None:
            error, self._load_error = self._load_error, None
            raise error
        if self._pending_load is None:
            return
        sent, self._pending_load = self._pending_load, None
        reply = self._receive("loading the notebook", *sent)
        defined = reply.get("defined", [])
        self._defined = {str(name) for name in defined} if isinstance(defined, list) else set()
        if not self._loaded_once:
            self.load_messages += [str(m) for m in reply.get("messages", [])][:50]
            self.forbidden_imports = [str(m) for m in reply.get("forbidden", [])]
            self._loaded_once = True

    def defines(self, function: str) -> bool:
        if not self.extracted.cells:
            return False
        try:
            self._ensure_loaded()
        except (WorkerCrashed, CallTimeout, SubmissionTimeout, RefusedValue):
            return False
        return self._defined is not None and function in self._defined

    def _call(self, function: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              return_args: bool) -> tuple[Any, list[Any] | None]:
        what = f"{function}()"
        if not self.extracted.cells:
            raise _missing(function)
        try:
            self._ensure_loaded()
        except (WorkerCrashed, CallTimeout) as exc:
            raise type(exc)(f"{what}: loading the notebook failed — {exc}") from None
        if self._defined is not None and function not in self._defined:
            raise _missing(function)
        self._ids += 1
        assert self._scratch is not None
        encoded_args = codec.encode_args(args, kwargs, self._scratch, prefix=f"a{self._ids}")
        reply = self._request({"op": "call", "id": self._ids, "function": function,
                               "args": encoded_args, "return_args": return_args}, what)
        if not reply.get("ok"):
            kind, message = reply.get("kind"), str(reply.get("message", ""))[:2000]
            if kind == "missing":
                raise _missing(function)
            if kind == "refused":
                raise RefusedValue(f"{what}: {message}")
            if kind == "memory":
                self._hit("memory")
                raise StudentException(
                    f"{what} ran out of memory (limit {self.limits.memory_bytes // 2**20} MB): "
                    f"{message}"
                )
            raise StudentException(f"{what} raised {message}")
        warned = reply.get("warnings", [])
        self.last_warnings = [str(w) for w in warned][:10] if isinstance(warned, list) else []
        value = codec.decode(reply.get("value"), self._scratch, f"the value {what} returned")
        after = None
        if return_args:
            after = codec.decode(reply.get("args"), self._scratch, "an argument", load_model=None)
        return value, after
