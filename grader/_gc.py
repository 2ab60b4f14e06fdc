"""Heavy imports without the garbage collector, then frozen.

Importing TensorFlow and Keras makes about a million objects, and while it does, the cyclic
garbage collector runs again and again over a heap that only grows: a quarter of the import's
time (2.55 s against 3.55 s for ``import keras`` on the 2-core VM of ``docs/benchmarks.md``).
What an import makes lives as long as the process, so :func:`imports_then_frozen` turns the
collector off for the imports, then moves everything they made into the permanent generation
(:func:`gc.freeze`) so that no later collection walks it, and turns the collector back on.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def imports_then_frozen(*, collect: bool = False) -> Iterator[None]:
    """Run the block (imports) with the collector off; then freeze what exists and turn the
    collector back on, also when the block raises. ``collect=True`` first frees the import's
    garbage cycles (a tenth of a second with TensorFlow loaded), worth it in a process that lives
    for many submissions; a short-lived one keeps them (a few megabytes)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collect:
            gc.collect()
        gc.freeze()
        if was_enabled:
            gc.enable()
