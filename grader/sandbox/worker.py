"""The sandboxed worker: runs a submission's answer code and answers calls.

The requests, the replies and the ``ready`` line are described in
:mod:`grader.sandbox.protocol`. The worker keeps private copies of its original stdin and stdout
for the protocol; the student's code sees stdin as /dev/null and its prints go to stderr, which
the grader drains and caps. Run as ``python -I -m grader.sandbox.worker SCRATCH``.
"""

from __future__ import annotations

import ast
import builtins
import importlib.abc
import linecache
import os
import random
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO

from grader.sandbox import fonts
from grader.sandbox.protocol import (
    call_recording_warnings,
    describe_exception,
    forbidden_import_message,
)


class _BlockImports(importlib.abc.MetaPathFinder):
    """Makes the assignment's forbidden imports fail, and remembers the attempts."""

    def __init__(self, forbidden: list[str], message: str = "") -> None:
        self.forbidden = set(forbidden)
        self.message = message
        self.attempted: list[str] = []

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        top = fullname.split(".")[0]
        if top in self.forbidden:
            if top not in self.attempted:
                self.attempted.append(top)
            raise ImportError(forbidden_import_message(top, self.message))
        return None


def _student_traceback(exc: BaseException) -> str:
    """The exception with the student's own frames only (cells), never the grader's."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell")]
    where = "".join(
        f"  {f.filename[1:-1]}, line {f.lineno}, in {f.name}: {(f.line or '').strip()}\n"
        for f in frames[-3:]
    )
    head = describe_exception(exc)[:1000]
    return f"{head}\n{where}".rstrip()


class Worker:
    def __init__(self, scratch: Path, replies: BinaryIO) -> None:
        self.scratch = scratch
        self.replies = replies
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self.blocker: _BlockImports | None = None
        self.keras_model_type: type | None = None

    def reply(self, payload: dict[str, Any], blobs: list[bytes] | None = None) -> None:
        from grader.codec import write_message

        write_message(self.replies, payload, blobs or [])

    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            self._prepare(request)
        except BaseException:  # noqa: BLE001 - the worker's own set-up: the grader's failure
            return {"ok": False, "kind": "grader", "message": traceback.format_exc()[-4000:]}
        return self._run_cells(request)

    def _prepare(self, request: dict[str, Any]) -> None:
        """Seeds, the import blocker and Keras: before any student code."""
        random.seed(0)
        self.blocker = _BlockImports(list(request.get("forbidden", [])),
                                     str(request.get("forbidden_message") or ""))
        sys.meta_path.insert(0, self.blocker)
        import numpy as np

        np.random.seed(0)
        if request.get("keras"):
            import keras

            keras.utils.set_random_seed(0)
            self.keras_model_type = keras.Model

    def _run_cells(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.blocker is not None
        messages: list[str] = []
        for cell in request["cells"]:
            filename = f"<cell {cell['index']}>"
            source = cell["source"]
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            try:
                tree = ast.parse(source, filename)
            except SyntaxError as exc:
                messages.append(f"syntax error in cell {cell['index']}, line {exc.lineno}: {exc.msg}")
                continue
            # Statement by statement, so that one failing import does not hide the functions.
            for stmt in tree.body:
                module = ast.Module(body=[stmt], type_ignores=[])
                try:
                    exec(compile(module, filename, "exec"), self.namespace)  # noqa: S102
                except BaseException as exc:  # noqa: BLE001 - the student's fault, reported
                    messages.append(
                        f"cell {cell['index']}, line {stmt.lineno}: {type(exc).__name__}: {exc}"
                    )
        defined = sorted(k for k, v in self.namespace.items() if callable(v) and not
                         k.startswith("_"))
        return {
            "ok": True,
            "defined": defined,
            "messages": messages,
            "forbidden": list(self.blocker.attempted),
        }

    def call(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        from grader.codec import decode, encode
        from grader.errors import RefusedValue

        name = request["function"]
        function = self.namespace.get(name)
        if not callable(function):
            return {"ok": False, "kind": "missing", "message": name}, []
        args, kwargs = decode(request["args"], blobs, "an argument")
        if self.keras_model_type is not None:
            import keras

            keras.utils.set_random_seed(0)
        try:
            value, seen = call_recording_warnings(function, args, kwargs)
        except BaseException as exc:  # noqa: BLE001 - SystemExit included: the student's fault
            kind = "memory" if isinstance(exc, MemoryError) else "exception"
            return {"ok": False, "kind": kind, "message": _student_traceback(exc)}, []
        out: list[bytes] = []
        try:
            encoded = encode(value, f"the value {name}() returned", blobs=out,
                             keras_model_type=self.keras_model_type, scratch=self.scratch)
            reply: dict[str, Any] = {"ok": True, "value": encoded, "warnings": seen}
            if request.get("return_args"):
                reply["args"] = encode(list(args), "an argument after the call", blobs=out)
        except RefusedValue as exc:
            return {"ok": False, "kind": "refused", "message": str(exc)}, []
        except BaseException as exc:  # noqa: BLE001 - e.g. a model whose save() misbehaves
            return {"ok": False, "kind": "refused",
                    "message": f"the value {name}() returned could not be sent: {exc}"}, []
        return reply, out


def _preload() -> None:
    """Import what the assignment's code is graded with (``GRADER_PRELOAD``, e.g. ``keras``)
    before the ``ready`` line, with the assignment's forbidden imports already failing
    (``GRADER_PRELOAD_FORBIDDEN``): the import is the grader's start-up time, not the student's,
    and it can happen while the checking process is still busy with the previous submission.
    The load request imports them anyway, before any student code; seeds are set there."""
    names = [n for n in os.environ.pop("GRADER_PRELOAD", "").split(",") if n]
    forbidden = [n for n in os.environ.pop("GRADER_PRELOAD_FORBIDDEN", "").split(",") if n]
    if not names:
        return
    import importlib

    from grader._gc import imports_then_frozen

    blocker = _BlockImports(forbidden)
    sys.meta_path.insert(0, blocker)
    try:
        # Without the collector, then frozen: what the imports made lives as long as the
        # process, and no collection walks it again (grader/_gc.py).
        with imports_then_frozen():
            for name in names:
                importlib.import_module(name)
    finally:
        sys.meta_path.remove(blocker)


def main() -> None:
    scratch = Path(sys.argv[1])
    requests, replies = _take_protocol_streams()
    os.chdir(scratch)
    fonts.install()  # before anything imports Matplotlib
    _preload()
    serve(scratch, requests, replies)


def _take_protocol_streams() -> tuple[BinaryIO, BinaryIO]:
    """Private copies of stdin and stdout for the protocol; the student's code then sees stdin
    as /dev/null, and its prints go to stderr."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
    return requests, replies


def serve(scratch: Path, requests: BinaryIO, replies: BinaryIO) -> None:
    """Say ``ready``, then answer requests until stdin closes."""
    from grader.codec import read_message

    worker = Worker(scratch, replies)
    worker.reply({"ready": True})
    while (message := read_message(requests, "a request")) is not None:
        request, blobs = message
        # Each reply names the request it answers (the checking process skips any reply it
        # left unread, e.g. when its own limit interrupted it while it waited).
        if request["op"] == "load":
            worker.reply({**worker.load(request), "id": "load"})
        elif request["op"] == "call":
            payload, reply_blobs = worker.call(request, blobs)
            worker.reply({**payload, "id": request.get("id")}, reply_blobs)


if __name__ == "__main__":
    main()
