"""What both ends of the worker's pipes share: the requests, and the wording of what it reports.

The checking process (:mod:`grader.sandbox.client`, :mod:`grader.submission`) and the worker
that runs inside the sandbox (:mod:`grader.sandbox.worker`) both import this module, so that
neither imports the other. It must stay importable inside the sandbox: the standard library
only at import time (NumPy is imported when :func:`call_recording_warnings` is called).

Messages are :mod:`grader.codec` frames (a JSON line, then the raw bytes of the arrays it
refers to) on the worker's stdin (requests) and stdout (replies). Before it reads any request,
and so before any student code runs, the worker sends ``{"ready": true}``: a worker that dies
before that line is the grader's failure, not the student's. Requests:

    {"op": "load", "cells": [{"index": 3, "source": "..."}], "forbidden": ["tensorflow"],
     "forbidden_message": "...", "keras": true}
    {"op": "call", "id": 1, "function": "forward", "args": <encoded>, "return_args": false}

Replies: ``{"ok": true, "id": ..., ...}`` or ``{"ok": false, "id": ..., "kind": "...",
"message": "..."}``, where ``id`` is the call's ``id`` (``"load"`` for the load); kind
``grader`` means the worker's own set-up failed (not the student's code). The checking
process skips a reply to an earlier request that it left unread (its own limit interrupted it
while it waited), so that no call ever reads another call's value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def forbidden_import_message(module: str, template: str = "") -> str:
    """The text shown when an import is blocked: the assignment's ``forbidden_message`` (where
    ``{module}`` stands for the module's name), or a generic sentence."""
    if template:
        return template.replace("{module}", module)
    return f"import of {module!r} is not allowed in this assignment"


def call_recording_warnings(function: Callable[..., Any], args: Sequence[Any],
                            kwargs: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Call ``function`` with NumPy's floating-point errors (not underflow) turned into
    warnings; returns its value and its first ten warnings, ``Category: message`` each."""
    import warnings

    import numpy as np

    with warnings.catch_warnings(record=True) as caught, \
            np.errstate(over="warn", divide="warn", invalid="warn", under="ignore"):
        warnings.simplefilter("always")
        value = function(*args, **kwargs)
    return value, [f"{w.category.__name__}: {w.message}"[:300] for w in caught[:10]]


def describe_exception(exc: BaseException) -> str:
    """``Type: message``, with a hint for the notebook's untouched stubs."""
    detail = str(exc) or ("not implemented yet — replace `raise NotImplementedError()` with your "
                          "code" if isinstance(exc, NotImplementedError) else "")
    return f"{type(exc).__name__}: {detail}"
