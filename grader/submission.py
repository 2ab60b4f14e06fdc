"""The object behind the hidden suites' ``submission`` fixture.

Two implementations with one interface:

- :class:`SandboxSubmission` (the hardened path): the answer code runs in a sandboxed worker
  process; values come back as data (see :mod:`grader.codec`).
- :class:`InProcessSubmission` (nbgrader's in-kernel path): the notebook's own namespace, with
  values passed through the same codec so the suites see the same kinds of values.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader import codec
from grader.course import Assignment
from grader.errors import (
    CallTimeout,
    MissingFunction,
    RefusedValue,
    StudentException,
    SubmissionTimeout,
    WorkerCrashed,
    WorkerUnavailable,
)
from grader.extract import Extracted
from grader.sandbox.client import WorkerClient
from grader.sandbox.protocol import call_recording_warnings, describe_exception

if TYPE_CHECKING:
    from grader.sandbox.isolation import Isolation, Limits


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
        try:
            value, self.last_warnings = call_recording_warnings(target, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - the student's exception is their result
            raise StudentException(f"{function}() raised {describe_exception(exc)}") from None
        self._counter += 1
        keras_model = None
        if self.assignment.needs_tensorflow:
            import keras

            keras_model = keras.Model
        what = f"the value {function}() returned"
        blobs: list[bytes] = []
        encoded = codec.encode(value, what, blobs=blobs, keras_model_type=keras_model,
                               scratch=self._dir)
        after = None
        if return_args:
            arg_blobs: list[bytes] = []
            after = codec.decode(codec.encode(list(args), "an argument", blobs=arg_blobs),
                                 arg_blobs, "an argument")
        return codec.decode(encoded, blobs, what, load_model=codec.load_model_safely), after

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def new_worker(assignment: Assignment, *, limits: Limits, isolation: Isolation,
               hidden: tuple[Path, ...], hit: Callable[[str], None] = lambda _: None
               ) -> WorkerClient:
    """A worker client (not started) for ``assignment``, in a private folder of its own (mode
    0711: no one else can list it) that holds each worker's scratch mount point, named so that
    a sweeper can tell whose it is."""
    root = Path(tempfile.mkdtemp(prefix=f"grader-sbx-{os.getpid()}-"))
    os.chmod(root, 0o711)
    return WorkerClient(root, limits=limits, isolation=isolation, hidden=hidden, hit=hit,
                        preload=("keras",) if assignment.needs_tensorflow else (),
                        forbidden=tuple(assignment.forbidden_imports))


def discard_worker(worker: WorkerClient) -> None:
    """Kill ``worker`` and remove its folder."""
    worker.kill()
    shutil.rmtree(worker.root, ignore_errors=True)


class SandboxSubmission(Submission):
    """The answer code in a sandboxed worker process, answering calls over its pipes.

    Everything crosses as :mod:`grader.codec` messages on the worker's stdin and stdout (see
    :class:`~grader.sandbox.client.WorkerClient`); this process never opens a path the sandbox
    can write. A function that once ran past its time limit is not called again: its later
    calls fail at once with the same message. A notebook whose loading failed is not loaded
    again. A worker that dies before its ``ready`` line is the grader's failure
    (:class:`~grader.errors.WorkerUnavailable`, detail in ``grader_errors``).
    """

    def __init__(self, extracted: Extracted, assignment: Assignment, *, limits: Limits,
                 isolation: Isolation, hidden: tuple[Path, ...] = (),
                 started: float | None = None, standby: WorkerClient | None = None) -> None:
        super().__init__(assignment)
        self.extracted = extracted
        self.limits = limits
        self.isolation = isolation
        self.hidden = hidden
        worker = new_worker(assignment, limits=limits, isolation=isolation, hidden=hidden,
                            hit=self._hit)
        if standby is not None and standby.alive and standby.settings() == worker.settings():
            # A worker started with these very settings while the checking process was busy
            # with the previous submission; no student code has run in it.
            shutil.rmtree(worker.root, ignore_errors=True)
            worker = standby
            worker.report_to(self._hit)
        elif standby is not None:
            discard_worker(standby)
        self._worker = worker
        self._root = worker.root
        self._standby = worker is standby
        self.adopted_standby = self._standby
        """Whether this submission got a worker started ahead, while the previous one was graded."""
        self.load_messages = list(extracted.messages)
        self._deadline = (time.monotonic() if started is None else started) + \
            limits.submission_seconds
        self._defined: set[str] | None = None
        self._ids = 0
        self._loaded_once = False
        self._pending_load: tuple[float, float] | None = None
        """(sent at, time limit) of a load request whose reply has not been read yet."""
        self._load_failure: Exception | None = None
        """Why loading the notebook failed; it is not tried again."""
        self._timed_out: dict[str, str] = {}
        """Functions that ran past their time limit once, with the message of later calls."""
        self._broken: WorkerUnavailable | None = None
        self.grader_errors: list[str] = []
        """The grader's own failures (staff only), e.g. a worker that could not start."""
        self.current_input = "the notebook"
        """What this process is handling now (named when its own limits are hit)."""
        self.max_model_params = assignment.max_model_params or codec.DEFAULT_MAX_MODEL_PARAMS
        self.after_load: Callable[[], None] | None = None
        """Called once when the notebook's loading is over (the checking process starts the
        next submission's worker then, so that it does not slow this one's start-up)."""

    def close(self) -> None:
        self._worker.kill()
        self._pending_load = None
        shutil.rmtree(self._root, ignore_errors=True)

    # -- requests, within the submission's time budget ----------------------------------
    def _remaining(self) -> float:
        return self._deadline - time.monotonic()

    def _out_of_time(self, what: str) -> SubmissionTimeout:
        self._hit("time")
        return SubmissionTimeout(
            f"{what}: not run — the submission used up its "
            f"{self.limits.submission_seconds:.0f} s time budget; look for slow loops or very "
            "large computations")

    def _send(self, payload: dict[str, Any], what: str, blobs: list[bytes] | None = None
              ) -> tuple[float, float]:
        """Write one request; returns (when it was sent, how long its reply may take)."""
        if self._remaining() <= 0:
            raise self._out_of_time(what)
        timeout = min(self.limits.call_seconds, self._remaining())
        try:
            return self._worker.send(payload, what, blobs or [], timeout), timeout
        except WorkerUnavailable as error:  # e.g. the template it was forked from ended
            self._broken = error
            self.grader_errors.append(error.detail)
            raise

    def _receive(self, what: str, started: float, timeout: float, answers: int | str
                 ) -> tuple[dict[str, Any], list[bytes]]:
        """The reply to request ``answers`` (a call's id, or "load"). A reply to an earlier
        request, left unread when this process's own limit interrupted it, is skipped."""
        try:
            while True:
                reply, values = self._worker.receive(what, started, timeout)
                if reply.get("id") == answers:
                    return reply, values
        except WorkerUnavailable as error:
            self._broken = error
            self.grader_errors.append(error.detail)
            raise

    def start(self) -> None:
        """Start the worker and send it the notebook without waiting for the reply, so that its
        start-up (Python, the notebook's imports, TensorFlow) overlaps what the checking process
        does next. The first call that needs the notebook then waits for the reply, within the
        loading call's time limit counted from now; a reply that is complete by then is read even
        if the checking process was busy past that limit. Optional: calls start it when needed."""
        if (self._pending_load is not None or not self.extracted.cells
                or self._load_failure is not None or self._broken is not None):
            return
        if self._standby:  # started already, and not yet sent the notebook
            self._standby = False
        elif self._worker.running:
            return
        else:
            self._worker.start()
        cells = [{"index": c.index, "source": c.source} for c in self.extracted.cells]
        try:
            self._pending_load = self._send(
                {"op": "load", "cells": cells,
                 "forbidden": list(self.assignment.forbidden_imports),
                 "forbidden_message": self.assignment.forbidden_message,
                 "keras": self.assignment.needs_tensorflow},
                "loading the notebook")
        except (WorkerCrashed, SubmissionTimeout, CallTimeout) as exc:
            self._load_failure = exc

    def _ensure_loaded(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self._load_failure is not None:
            raise self._load_failure
        if not self._worker.running and self._pending_load is None:
            self.start()
            if self._load_failure is not None:
                raise self._load_failure
        if self._pending_load is None:
            return
        sent, self._pending_load = self._pending_load, None
        self.current_input = "the notebook"
        try:
            reply, _ = self._receive("loading the notebook", *sent, answers="load")
        except (WorkerCrashed, CallTimeout, SubmissionTimeout, RefusedValue) as exc:
            self._load_failure = exc
            raise
        finally:
            self.run_after_load()
        if reply.get("ok") is False and reply.get("kind") == "grader":
            self.grader_errors.append(f"the worker could not prepare: {reply.get('message')}")
            self._worker.kill()
            self._broken = WorkerUnavailable(str(reply.get("message", ""))[:4000])
            raise self._broken
        defined = reply.get("defined", [])
        self._defined = {str(name) for name in defined} if isinstance(defined, list) else set()
        if not self._loaded_once:
            messages = reply.get("messages", [])
            forbidden = reply.get("forbidden", [])
            self.load_messages += [str(m) for m in messages][:50] if isinstance(messages, list) \
                else []
            self.forbidden_imports = [str(m) for m in forbidden][:20] \
                if isinstance(forbidden, list) else []
            self._loaded_once = True

    def run_after_load(self) -> None:
        """Call :attr:`after_load` if it has not been called yet (once loading is over, or
        when the submission ends without a load)."""
        loaded, self.after_load = self.after_load, None
        if loaded is not None:
            loaded()

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
        if function in self._timed_out:
            raise CallTimeout(self._timed_out[function])
        if self._remaining() <= 0:
            raise self._out_of_time(what)
        try:
            self._ensure_loaded()
        except (WorkerCrashed, CallTimeout, RefusedValue) as exc:
            raise type(exc)(f"{what}: loading the notebook failed — {exc}") from None
        if self._defined is not None and function not in self._defined:
            raise _missing(function)
        self._ids += 1
        call_id = self._ids
        blobs: list[bytes] = []
        encoded_args = codec.encode_args(args, kwargs, blobs)
        try:
            reply, values = self._receive(what, *self._send(
                {"op": "call", "id": call_id, "function": function, "args": encoded_args,
                 "return_args": return_args}, what, blobs), answers=call_id)
        except CallTimeout as exc:
            self._timed_out[function] = (
                f"{what}: not run again — an earlier call did not finish within "
                f"{self._worker.last_timeout:.0f} s; look for an infinite loop, a blocking call "
                "(input(), sleep, network) or a very slow computation")
            raise exc from None
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
        self.current_input = f"the value {what} returned"
        value = codec.decode(reply.get("value"), values, self.current_input,
                             load_model=self._load_model)
        after = None
        if return_args:
            after = codec.decode(reply.get("args"), values, "an argument")
        return value, after

    def _load_model(self, data: bytes, what: str) -> Any:
        return codec.load_model_safely(data, what, max_params=self.max_model_params)
