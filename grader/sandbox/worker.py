"""The sandboxed worker: runs a submission's answer code and answers calls.

Protocol: one JSON object per line. The worker keeps private copies of its original stdin and
stdout for the protocol; the student's code sees stdin as /dev/null and its prints go to
stderr, which the grader drains and caps. Requests:

    {"op": "load", "cells": [{"index": 3, "source": "..."}], "forbidden": ["tensorflow"],
     "keras": true}
    {"op": "call", "id": 1, "function": "forward", "args": <encoded>, "return_args": false}

Replies: ``{"ok": true, ...}`` or ``{"ok": false, "kind": "...", "message": "..."}``.
Run as ``python -I -m grader.sandbox.worker SCRATCH``.
"""

from __future__ import annotations

import ast
import builtins
import importlib.abc
import json
import linecache
import os
import random
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO


class _BlockImports(importlib.abc.MetaPathFinder):
    """Makes the assignment's forbidden imports fail, and remembers the attempts."""

    def __init__(self, forbidden: list[str]) -> None:
        self.forbidden = set(forbidden)
        self.attempted: list[str] = []

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        top = fullname.split(".")[0]
        if top in self.forbidden:
            if top not in self.attempted:
                self.attempted.append(top)
            raise ImportError(
                f"import of {top!r} is not allowed in this exercise: it must be solved with "
                "NumPy only, no autodiff library"
            )
        return None


def warn_on_overflow() -> Any:
    """NumPy floating-point errors as warnings (recorded per call); underflow stays silent."""
    import numpy as np

    return np.errstate(over="warn", divide="warn", invalid="warn", under="ignore")


def describe_exception(exc: BaseException) -> str:
    """``Type: message``, with a hint for the notebook's untouched stubs."""
    detail = str(exc) or ("not implemented yet — replace `raise NotImplementedError()` with your "
                          "code" if isinstance(exc, NotImplementedError) else "")
    return f"{type(exc).__name__}: {detail}"


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

    def reply(self, payload: dict[str, Any]) -> None:
        from grader.codec import dumps

        self.replies.write(dumps(payload).encode() + b"\n")
        self.replies.flush()

    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        random.seed(0)
        self.blocker = _BlockImports(request.get("forbidden", []))
        sys.meta_path.insert(0, self.blocker)
        import numpy as np

        np.random.seed(0)
        if request.get("keras"):
            import keras

            keras.utils.set_random_seed(0)
            self.keras_model_type = keras.Model
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

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        from grader.codec import decode, encode
        from grader.errors import RefusedValue

        name = request["function"]
        function = self.namespace.get(name)
        if not callable(function):
            return {"ok": False, "kind": "missing", "message": name}
        args, kwargs = decode(request["args"], self.scratch, "an argument", load_model=None)
        if self.keras_model_type is not None:
            import keras

            keras.utils.set_random_seed(0)
        import warnings

        try:
            with warnings.catch_warnings(record=True) as caught, warn_on_overflow():
                warnings.simplefilter("always")
                value = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - SystemExit included: the student's fault
            kind = "memory" if isinstance(exc, MemoryError) else "exception"
            return {"ok": False, "kind": kind, "message": _student_traceback(exc)}
        seen = [f"{w.category.__name__}: {w.message}"[:300] for w in caught[:10]]
        prefix = f"r{request['id']}"
        try:
            encoded = encode(value, self.scratch, f"the value {name}() returned", prefix=prefix,
                             keras_model_type=self.keras_model_type)
            reply: dict[str, Any] = {"ok": True, "value": encoded, "warnings": seen}
            if request.get("return_args"):
                reply["args"] = encode(list(args), self.scratch, "an argument after the call",
                                       prefix=prefix + "a")
        except RefusedValue as exc:
            return {"ok": False, "kind": "refused", "message": str(exc)}
        except BaseException as exc:  # noqa: BLE001 - e.g. a model whose save() misbehaves
            return {"ok": False, "kind": "refused",
                    "message": f"the value {name}() returned could not be sent: {exc}"}
        return reply


def main() -> None:
    scratch = Path(sys.argv[1])
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
    os.chdir(scratch)
    worker = Worker(scratch, replies)
    for line in requests:
        request = json.loads(line)
        if request["op"] == "load":
            worker.reply(worker.load(request))
        elif request["op"] == "call":
            worker.reply(worker.call(request))
        elif request["op"] == "exit":
            break


if __name__ == "__main__":
    main()
