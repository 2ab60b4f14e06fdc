"""Ctrl-C during a grading run, noticed even where Python drops the KeyboardInterrupt.

Python raises KeyboardInterrupt wherever the main thread happens to be; inside a weakref
callback or a ``__del__`` it is only printed ("Exception ignored in ...") and the run would go
on. The handler installed here also records the request, and the backends' waiting loops
:func:`check` it, so that the run stops all the same, and the dropped one prints nothing.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

REQUESTED = threading.Event()
"""Set by Ctrl-C (SIGINT) while a run's handler is installed."""


_deferring = 0


def _on_sigint(signum: int, frame: Any) -> None:
    REQUESTED.set()
    if not _deferring:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Ctrl-C inside the block is recorded and raised only at its end, so that a finished
    grading is written and counted as one step (main thread)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring:
        check()


def _quiet_unraisable(default: Any) -> Any:
    def hook(unraisable: Any) -> None:
        if REQUESTED.is_set() and isinstance(unraisable.exc_value, KeyboardInterrupt):
            return  # recorded in REQUESTED: the run stops at its next check
        default(unraisable)

    return hook


@contextlib.contextmanager
def recorded() -> Iterator[None]:
    """Record Ctrl-C while the block runs (main thread only; elsewhere nothing changes)."""
    REQUESTED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # Outside this block REQUESTED stays clear: check() and deferred() then do nothing.
    previous_handler = signal.signal(signal.SIGINT, _on_sigint)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_unraisable(previous_hook)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        sys.unraisablehook = previous_hook
        REQUESTED.clear()


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came, even one that Python dropped."""
    if REQUESTED.is_set():
        raise KeyboardInterrupt
