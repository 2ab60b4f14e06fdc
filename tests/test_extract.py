"""Extraction: definitions kept, everything else dropped, broken files reported clearly."""

from __future__ import annotations

import json
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
