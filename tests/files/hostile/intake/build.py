"""Builds the hostile intake inputs: submissions that attack the grader through their names, the
text they make the TA's terminal show, or a malformed file, instead of through their code.

    .venv/bin/python tests/files/hostile/intake/build.py     # rewrite the .ipynb files here

The notebooks written here are plain files with plain names, kept to be read; tests build
them afresh from the current reference notebook. What git cannot hold, or a
checkout should not (names with control characters, ``..ipynb``, a FIFO, links, a folder
named like a notebook, a 60 MB file), :func:`materialise` makes at test time in a folder of
the test's own. ``INTAKE`` says, per submission, its class and what its student must be told.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
REFERENCE = ROOT / "tests" / "files" / "samples" / "backprop" / "reference.ipynb"


@dataclass(frozen=True)
class Intake:
    kind: str
    """names, terminal or malformed."""
    file_name: str
    """The submission's file name (the student id is this without ``.ipynb``)."""
    told: str = ""
    """Text the student's messages must contain (malformed inputs); empty for the others."""
    graded: bool = False
    """True when the submission is a working notebook and keeps the reference's full marks."""


def _reference() -> dict:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def _with_cell(source: str) -> bytes:
    nb = _reference()
    nb["cells"].insert(1, {"cell_type": "code", "execution_count": None, "metadata": {},
                           "outputs": [], "source": source})
    return json.dumps(nb).encode()


def _deep_json() -> bytes:
    depth = 100_000
    return (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {"x": ' + b"[" * depth
            + b"]" * depth + b'}, "cells": []}')


def _cell_metadata_list() -> bytes:
    nb = _reference()
    nb["cells"][2]["metadata"] = ["not", "an", "object"]
    return json.dumps(nb).encode()


def _nbgrader_metadata_string() -> bytes:
    nb = _reference()
    nb["cells"][3]["metadata"]["nbgrader"] = "grade: true"
    return json.dumps(nb).encode()


def _nbformat_v3() -> bytes:
    return json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "backprop"},
                       "worksheets": [{"cells": [{"cell_type": "code", "input": "x = 1",
                                                  "language": "python", "outputs": []}]}]}
                      ).encode()


# Load messages that try markup and escape sequences on the TA's terminal: a class body runs
# when the class is defined, so its exception reaches the grader's summary as a load message.
MARKUP = "class Markup:\n    raise RuntimeError('[/] [bold red]not markup[/bold red] [link=x]')\n"
ESCAPES = ("class Escapes:\n    raise RuntimeError('\\x1b[2J\\x1b[H\\x1b]0;PWNED-TITLE\\x07"
           "\\x1b]8;;http://127.0.0.1/\\x1b\\\\link\\x1b]8;;\\x1b\\\\ \\x9b31m red')\n")

STATIC: dict[str, bytes] = {
    "deep_json.ipynb": _deep_json(),
    "cell_metadata_list.ipynb": _cell_metadata_list(),
    "nbgrader_metadata_string.ipynb": _nbgrader_metadata_string(),
    "nbformat_v3.ipynb": _nbformat_v3(),
    "empty.ipynb": b"",
    "not_utf8.ipynb": b'{"cells": [], "nbformat": 4, "metadata": {"n": "\xff\xfe"}}',
    "markup_in_load_message.ipynb": _with_cell(MARKUP),
    "escapes_in_load_message.ipynb": _with_cell(ESCAPES),
}

INTAKE = [
    Intake("malformed", "deep_json.ipynb", "nested at most 64 levels deep"),
    Intake("malformed", "cell_metadata_list.ipynb",
           "cell 3: expected 'metadata' to be an object, found a list"),
    Intake("malformed", "nbgrader_metadata_string.ipynb",
           "cell 4: expected its nbgrader metadata to be an object, found a string"),
    Intake("malformed", "nbformat_v3.ipynb", "has nbformat 3; expected version 4"),
    Intake("malformed", "empty.ipynb", "empty.ipynb is empty; expected a Jupyter notebook"),
    Intake("malformed", "not_utf8.ipynb", "expected UTF-8 JSON text"),
    Intake("malformed", "folder.ipynb", "folder.ipynb is a folder; expected a notebook file"),
    Intake("malformed", "fifo.ipynb", "fifo.ipynb is a FIFO (named pipe); expected a notebook"),
    Intake("malformed", "link_to_dev_zero.ipynb",
           "link_to_dev_zero.ipynb is a symbolic link; expected a notebook file"),
    Intake("malformed", "link_to_secret.ipynb",
           "link_to_secret.ipynb is a symbolic link; expected a notebook file"),
    Intake("malformed", "huge.ipynb", "huge.ipynb is 60 MB; expected a notebook under 50 MB"),
    Intake("terminal", "markup_in_load_message.ipynb", graded=True),
    Intake("terminal", "escapes_in_load_message.ipynb", graded=True),
    Intake("terminal", "[bold]markup[-name[link=x].ipynb", graded=True),
    Intake("terminal", "\x1b]0;PWNED-TITLE\x07\x1b[2Jescape-name.ipynb", graded=True),
    Intake("names", "..ipynb", graded=True),
    Intake("names", "...ipynb", graded=True),
    Intake("names", "grades.csv.ipynb", graded=True),
    Intake("names", "report.html.ipynb", graded=True),
    Intake("names", ".logs.ipynb", graded=True),
    Intake("names", "Alice.ipynb", graded=True),
    Intake("names", "line\nbreak\ttab.ipynb", graded=True),
    Intake("names", "x" * 240 + ".ipynb", graded=True),
    Intake("names", "a copy of alice given twice", graded=False),
]
"""Every hostile submission; ``a copy of alice given twice`` is not a file: the test passes
``alice.ipynb`` a second time and expects it graded once."""


def materialise(folder: Path, secret: Path) -> list[Path]:
    """Write every hostile submission into ``folder``; return the paths to pass to `grader
    grade` (each one once). ``secret`` is a root-only file a link points at."""
    folder.mkdir(parents=True, exist_ok=True)
    reference = REFERENCE.read_bytes()
    paths = []
    for item in INTAKE:
        path = folder / item.file_name
        if item.file_name in STATIC:  # built afresh: most are the current reference, altered
            path.write_bytes(STATIC[item.file_name])
        elif item.file_name == "folder.ipynb":
            path.mkdir()
            (path / "backprop.ipynb").write_bytes(reference)
        elif item.file_name == "fifo.ipynb":
            os.mkfifo(path)
        elif item.file_name == "link_to_dev_zero.ipynb":
            path.symlink_to("/dev/zero")
        elif item.file_name == "link_to_secret.ipynb":
            path.symlink_to(secret)
        elif item.file_name == "huge.ipynb":
            with open(path, "wb") as handle:
                handle.truncate(60 * 2**20)
        elif item.kind in ("names", "terminal") and item.graded:
            path.write_bytes(reference)
        else:
            continue
        paths.append(path)
    return paths


def main() -> int:
    for name, data in STATIC.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(STATIC)} notebooks to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
