"""Matplotlib's font list, handed to each sandbox so that it is not built again there.

On its first import, ``matplotlib.font_manager`` reads every font file it can find (about 130
here) unless its cache folder holds a font list. A sandbox's cache folder (``MPLCONFIGDIR``) is a
new, empty folder in its scratch, so every sandbox paid that scan again: Keras imports pyplot, so
every TensorFlow assignment's sandbox did, before the student's first line.

The checking process writes the list its own Matplotlib uses, keeping only the fonts a sandbox
can read too (Matplotlib's own, and those under the system folders it binds read-only), and
passes it in the worker's environment (:data:`VARIABLE`). The worker takes it out of its
environment and writes it into its own cache folder before anything imports Matplotlib
(:func:`install`). The list goes into the sandbox only; nothing comes back. Where it is missing,
unreadable, or names a font the sandbox cannot open, Matplotlib builds its own list, as before.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path

VARIABLE = "GRADER_MPL_FONTLIST"
LARGEST = 96 * 1024
"""A list larger than this is not passed (the environment of a process is bounded): ~36 KB here."""


@functools.cache
def font_list(readable: tuple[str, ...], hidden: tuple[str, ...] = ()) -> str | None:
    """Matplotlib's font list as JSON, with only the fonts that lie in Matplotlib's own data
    folder (relative names) or under one of ``readable`` and none of ``hidden``; None without
    Matplotlib, or when the list cannot be written or is too large. Computed once per process
    for each pair of arguments."""
    try:
        from matplotlib import font_manager

        with tempfile.TemporaryDirectory(prefix=f"grader-fonts-{os.getpid()}-") as folder:
            path = Path(folder, "fontlist.json")
            font_manager.json_dump(font_manager.fontManager, path)
            data = json.loads(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a shortcut only: without it, each sandbox scans its fonts
        return None
    if not isinstance(data, dict) or "_version" not in data:
        return None
    roots = tuple(map(Path, readable))
    masked = tuple(map(Path, hidden))
    for key in ("ttflist", "afmlist"):
        entries = data.get(key)
        if not isinstance(entries, list):
            return None
        data[key] = [entry for entry in entries
                     if isinstance(entry, dict) and _readable(entry.get("fname"), roots, masked)]
    text = json.dumps(data, separators=(",", ":"))
    return text if len(text) <= LARGEST else None


def _readable(name: object, roots: tuple[Path, ...], masked: tuple[Path, ...]) -> bool:
    """Whether a sandbox can read the font ``name``: by the rule the sandbox's layout is built
    with (:func:`grader.sandbox.isolation.is_under`), under a root and under no hidden path
    (a hidden folder, or the file itself)."""
    from grader.sandbox.isolation import is_under  # not in the worker, which never filters

    if not isinstance(name, str) or not name:
        return False
    if not os.path.isabs(name):
        return ".." not in Path(name).parts  # in Matplotlib's data folder
    path = Path(name)
    return (os.path.normpath(name) == name and any(is_under(path, root) for root in roots)
            and not any(is_under(path, hidden) for hidden in masked))


def install(text: str | None = None) -> None:
    """In the worker, before any import of Matplotlib: take the list out of the environment
    (the student's code does not see it), or take ``text``, and write it where Matplotlib
    looks for it. Does nothing where either is missing or the list is not one; Matplotlib then
    builds its own."""
    taken = os.environ.pop(VARIABLE, "")
    text = taken if text is None else text
    folder = os.environ.get("MPLCONFIGDIR")
    if not text or not folder:
        return
    try:
        version = json.loads(text)["_version"]
        if not isinstance(version, str) or not version.replace(".", "").isalnum():
            return
        os.makedirs(folder, exist_ok=True)
        Path(folder, f"fontlist-v{version}.json").write_text(text, encoding="utf-8")
    except (ValueError, KeyError, TypeError, OSError):
        return
