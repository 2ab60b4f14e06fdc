"""Extraction: definitions kept, everything else dropped, broken files reported clearly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from grader.errors import NotebookUnreadable
from grader.extract import extract_answer_code, read_notebook


def _notebook(tmp_path: Path, *sources: str, name: str = "nb.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title")]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def _kept(tmp_path: Path, *sources: str) -> str:
    return "\n".join(c.source for c in extract_answer_code(read_notebook(
        _notebook(tmp_path, *sources))).cells)


def test_keeps_definitions_and_drops_top_level_work(tmp_path):
    kept = _kept(tmp_path, "import numpy as np\nfrom keras import layers\nnum_classes = 10\n"
                 "input_shape = (28, 28, 1)\nmodel = build()\nmodel.fit(x, y, epochs=10)\n"
                 "for i in range(3):\n    print(i)\nplt.plot([1, 2])\n",
                 "@decorate\ndef build():\n    return 1\n\nclass Net:\n    pass\n")
    assert "import numpy as np" in kept and "from keras import layers" in kept
    assert "num_classes = 10" in kept and "input_shape = (28, 28, 1)" in kept
    assert "def build():" in kept and "@decorate" in kept and "class Net:" in kept
    for dropped in ("model = build()", "model.fit", "print(i)", "plt.plot"):
        assert dropped not in kept


def test_drops_magics_and_shell_escapes(tmp_path):
    kept = _kept(tmp_path, "%matplotlib inline\n!pip install torch\nimport os\n")
    assert kept.strip() == "import os"


def test_keeps_line_numbers_of_each_cell(tmp_path):
    extracted = extract_answer_code(read_notebook(_notebook(
        tmp_path, "x = f()\n\ndef g():\n    return 1\n")))
    (cell,) = extracted.cells
    assert cell.index == 2
    assert cell.source.splitlines()[2] == "def g():"


def test_syntax_error_names_cell_and_line(tmp_path):
    extracted = extract_answer_code(read_notebook(_notebook(
        tmp_path, "def ok():\n    return 1\n", "x = 1\ndef broken(:\n    pass\n")))
    assert extracted.messages == [
        "syntax error in cell 3, line 2: invalid syntax — this cell was skipped, so the "
        "functions it defines are missing; fix it and run the cell"
    ]
    assert [c.index for c in extracted.cells] == [2]


def test_skips_course_test_cells(tmp_path):
    path = _notebook(tmp_path, "def f():\n    return 1\n", "from grader.notebook import x\n")
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].metadata["nbgrader"] = {"grade": True, "solution": False, "points": 1}
    nbformat.write(nb, path)
    kept = "\n".join(c.source for c in extract_answer_code(read_notebook(path)).cells)
    assert "grader.notebook" not in kept


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "broken.ipynb is not a Jupyter notebook: expected JSON, found a file that "
                   "does not parse"),
    (b"[1, 2]", "broken.ipynb is not a Jupyter notebook: expected an object with 'cells', "
                "found a JSON list"),
    (json.dumps({"cells": [], "nbformat": 3}).encode(),
     "broken.ipynb has nbformat 3; expected version 4"),
    (json.dumps({"cells": [{"cell_type": "markdown", "source": "hi", "metadata": {}}],
                 "nbformat": 4, "nbformat_minor": 5, "metadata": {}}).encode(),
     "broken.ipynb has no code cells; expected the assignment's cells"),
])
def test_unreadable_notebooks_are_the_students_clear_error(tmp_path, content, message):
    path = tmp_path / "broken.ipynb"
    path.write_bytes(content)
    with pytest.raises(NotebookUnreadable) as info:
        read_notebook(path)
    assert str(info.value).startswith(message)


def test_huge_notebook_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.ipynb"
    with open(path, "wb") as handle:
        handle.truncate(100 * 2**20)
    with pytest.raises(NotebookUnreadable) as info:
        read_notebook(path)
    assert str(info.value) == ("huge.ipynb is 100 MB; expected a notebook under 50 MB — clear "
                               "the outputs (Edit → Clear Outputs of All Cells) and submit again")


def test_checking_process_skips_the_slow_iri_checker_and_still_validates():
    """Each submission's checking process imports the extractor; jsonschema's optional IRI
    checker (seconds of grammar compiling per process) must stay out of it, while nbformat
    still validates notebooks."""
    import subprocess
    import sys

    probe = ("import sys\nimport grader.check_one\nimport nbformat\n"
             "print(sys.modules.get('rfc3987_syntax') is None)\n"
             "good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = 1')])\n"
             "bad = {'cells': [{'cell_type': 'code', 'source': 'x = 1'}], 'metadata': {},\n"
             "       'nbformat': 4, 'nbformat_minor': 5}\n"
             "print(nbformat.validator.isvalid(good), nbformat.validator.isvalid(bad))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True", "False"]


# ---------------------------------------------------------------- the rule (module docstring)


def test_keeps_what_defines_and_drops_what_computes():
    from grader.extract import extract_sources

    kept = "\n".join(c.source for c in extract_sources([
        "import numpy as np\nfrom functools import partial\n"
        "sig = lambda z: 1 / (1 + np.exp(-z))\n"          # a lambda's body may call anything
        "W: np.ndarray = np.zeros((2, 2))\n"              # builders of small values
        "sizes = [n * 2 for n in range(3)]\n"             # comprehensions over such values
        "config = dict(lr=0.5, layers=(2, 2))\n"
        "act = partial(sig)\nlo, hi = -1.0, 1.0\n"
        "eps = np.float64(1e-7)\n",
        "model = build()\nhistory = model.fit(x)\nprint(W)\nW += 1\n"
        "late = lambda z=train(): z\n"                    # its defaults run at definition
        "data = np.load('x.npy')\nfound = [history[k] for k in range(3)]\n"
        "for i in range(3):\n    pass\n",
        "if True:\n    def helper():\n        return 1\nelse:\n    helper = None\n"
        "try:\n    import torch\nexcept ImportError:\n    torch = None\n"
        "if flag():\n    x = 1\n"
        "try:\n    value = compute()\nexcept Exception:\n    value = 0\n",
    ]).cells)
    for line in ("import numpy as np", "sig = lambda z", "W: np.ndarray = np.zeros((2, 2))",
                 "sizes = [n * 2", "config = dict(", "act = partial(sig)", "lo, hi = -1.0",
                 "eps = np.float64", "def helper():", "helper = None", "import torch",
                 "torch = None"):
        assert line in kept, line
    for line in ("model = build()", "model.fit", "print(W)", "W += 1", "late =", "np.load",
                 "found =", "for i", "if flag()", "x = 1", "value = compute()"):
        assert line not in kept, line


def test_extract_sources_numbers_cells_from_1_and_drops_magics():
    from grader.extract import extract_sources

    extracted = extract_sources(["%%time\ndef timed():\n    pass\n",
                                 "!pip install numpy\nimport os\nx = !ls\n",
                                 "def f(:\n"])
    assert [(c.index, c.source) for c in extracted.cells] == [(2, "\nimport os\n")]
    assert extracted.messages[0].startswith("syntax error in cell 3, line 1:")


def test_magic_lines_never_reach_ipythons_transforms(monkeypatch):
    """4,000 %magic lines cost IPython minutes; the line filter handles them without it."""
    import IPython.core.inputtransformer2 as transformers

    from grader.extract import extract_sources

    def refuse(*args, **kwargs):
        raise AssertionError("IPython's transforms ran")

    monkeypatch.setattr(transformers.TransformerManager, "transform_cell", refuse)
    cell = "%time x = 1\n" * 4000 + "def kept():\n    return '%not a magic'\n"
    extracted = extract_sources([cell, "s = '''\n%inside a string\n'''\n!ls\n"])
    assert extracted.cells[0].source.splitlines()[4000:] == [
        "def kept():", "    return '%not a magic'"]
    assert extracted.cells[1].source == "s = '''\n%inside a string\n'''\n"


def test_a_long_cell_ipython_alone_could_read_is_a_syntax_error_not_minutes(monkeypatch):
    import IPython.core.inputtransformer2 as transformers

    from grader.extract import MAX_TRANSFORM_LINES, extract_sources

    monkeypatch.setattr(transformers.TransformerManager, "transform_cell",
                        lambda *a: (_ for _ in ()).throw(AssertionError("transforms ran")))
    extracted = extract_sources(["x = 1\n" * MAX_TRANSFORM_LINES + "obj?\n"])
    assert extracted.cells == []
    assert extracted.messages[0].startswith(
        f"syntax error in cell 1, line {MAX_TRANSFORM_LINES + 1}: invalid syntax")


def test_a_passed_deadline_stops_extraction_with_a_message():
    from grader.extract import extract_sources

    extracted = extract_sources(["import os\n"], deadline=0.0)
    assert extracted.cells == []
    assert extracted.messages == [
        "cell 1 and the cells after it were not read: reading the notebook ran out of the "
        "submission's time — remove very long cells from the notebook"]


# ---------------------------------------------------------------- malformed files


def _reference() -> dict:
    return json.loads((Path(__file__).parent / "files" / "samples" / "backprop"
                       / "reference.ipynb").read_text())


def _cell_meta(value):
    nb = _reference()
    nb["cells"][1]["metadata"] = value
    return json.dumps(nb).encode()


def _nbgrader_meta(value):
    nb = _reference()
    nb["cells"][1]["metadata"]["nbgrader"] = value
    return json.dumps(nb).encode()


FIX_CELL = ("re-create that cell in JupyterLab (or copy it from the released notebook), save "
            "and submit again")
FIX_SAVE = ("open it in JupyterLab, save it (File → Save Notebook) and submit the saved .ipynb "
            "file")


@pytest.mark.parametrize(("content", "message"), [
    (b"", f"nb.ipynb is empty; expected a Jupyter notebook — {FIX_SAVE}"),
    (b"\xff\xfe{}", "nb.ipynb is not a Jupyter notebook: expected UTF-8 JSON text, found a byte "
                    "that is not UTF-8 at position 0 — submit the .ipynb file saved by Jupyter"),
    (b"[" * 100_000 + b"]" * 100_000,
     f"nb.ipynb is not a notebook this grader can read: expected JSON nested at most 64 levels "
     f"deep, found deeper nesting — {FIX_SAVE}"),
    (b'{"cells": {"a": 1}, "nbformat": 4}',
     "nb.ipynb is not a Jupyter notebook: expected 'cells' to be a list, found an object"),
    (json.dumps({"nbformat": 3, "worksheets": []}).encode(),
     f"nb.ipynb has nbformat 3; expected version 4 — {FIX_SAVE} (JupyterLab converts older "
     "notebooks when it saves them)"),
    (_cell_meta(["a", "list"]),
     f"nb.ipynb, cell 2: expected 'metadata' to be an object, found a list — {FIX_CELL}"),
    (_nbgrader_meta("grade"),
     "nb.ipynb, cell 2: expected its nbgrader metadata to be an object, found a string — "
     f"{FIX_CELL}"),
])
def test_malformed_notebooks_say_what_was_expected_and_how_to_fix_it(tmp_path, content, message):
    path = tmp_path / "nb.ipynb"
    path.write_bytes(content)
    with pytest.raises(NotebookUnreadable) as info:
        read_notebook(path)
    assert str(info.value) == message


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.symlink_to("/dev/zero"),
     "nb.ipynb is a symbolic link; expected a notebook file — submit the notebook file itself, "
     "not a link to it"),
    (lambda p: p.mkdir(),
     "nb.ipynb is a folder; expected a notebook file — submit the .ipynb file saved by Jupyter"),
    (os.mkfifo,
     "nb.ipynb is a FIFO (named pipe); expected a notebook file — submit the .ipynb file saved "
     "by Jupyter"),
])
def test_links_folders_and_fifos_are_refused_unread(tmp_path, make, message):
    path = tmp_path / "nb.ipynb"
    make(path)
    with pytest.raises(NotebookUnreadable) as info:
        read_notebook(path)
    assert str(info.value) == message
