"""``grader new NAME``: a minimal assignment that releases and grades at once.

It writes, in the course folder::

    autograde_tests/NAME/assignment.toml   functions, points, forbidden imports
    autograde_tests/NAME/test_NAME.py      the hidden suite, against the `submission` fixture
    solutions/NAME/NAME.ipynb              the master: a solution region, an autograder cell
                                           and the check cell
    solutions/NAME/test_public.py          the public checks, released with the notebook

One graded function, ``add(a, b)``, to replace with the real exercise (docs/authoring.md).
"""

from __future__ import annotations

import keyword
from pathlib import Path

import nbformat

from grader.course import SOLUTIONS, SUITES, TOML, announce_course, course_root
from grader.errors import ConfigurationError

TOML_TEXT = '''# The one place the {name} assignment's points are set.
# Each hidden test: its pytest function name = {{ name = "<function>: <what>", points = N }}.
notebook = "{name}.ipynb"
functions = ["add"]
# Imports the sandbox makes fail, and what the student reads then ({{module}}: the name).
forbidden_imports = []
forbidden_message = "import of '{{module}}' is not allowed in this exercise"
needs_tensorflow = false

[tests]
test_add_small_numbers = {{ name = "add: small whole numbers", points = 1 }}
test_add_random_floats = {{ name = "add: random floats", points = 2 }}
'''

SUITE_TEXT = '''"""Hidden tests of the {name} assignment: each test's name and points are in
assignment.toml; messages say what was expected, what was found and what to change."""

import numpy as np


def test_add_small_numbers(submission):
    found = submission.call("add", 2, 3)
    assert found == 5, f"add(2, 3): expected 5, found {{found!r}} — return the sum of a and b"


def test_add_random_floats(submission):
    rng = np.random.default_rng(0)
    for a, b in rng.normal(size=(5, 2)):
        found = submission.call("add", float(a), float(b))
        assert np.isclose(found, a + b), (
            f"add({{a:.3f}}, {{b:.3f}}): expected {{a + b:.3f}}, found {{found!r}} — return a + b")
'''

PUBLIC_TEXT = '''"""Public checks of the {name} assignment: released with the notebook, run by its check cell
and by `grader check {name}.ipynb`. Name each `test_<function>__<what>`."""


def test_add__small_numbers(submission):
    found = submission.call("add", 1, 1)
    assert found == 2, f"add(1, 1): expected 2, found {{found!r}} — return the sum of a and b"
'''

SOLUTION_CELL = '''def add(a, b):
    """The sum of a and b."""
    ### BEGIN SOLUTION
    return a + b
    ### END SOLUTION'''

AUTOGRADER_CELL = '''# Autograder cell for add(): the hidden tests run here when your notebook
# is graded. It is worth 3 points; it stays empty in your copy.
### BEGIN HIDDEN TESTS
from grader.notebook import autograde
autograde("{name}", "add", globals())
### END HIDDEN TESTS'''

CHECK_CELL = '''from grader.notebook import run_public_checks

run_public_checks("{name}", globals())'''


def _nbgrader(grade_id: str, *, solution: bool = False, grade: bool = False,
              points: float | None = None) -> dict[str, object]:
    meta: dict[str, object] = {"grade": grade, "grade_id": grade_id, "locked": not solution,
                               "schema_version": 3, "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def master_notebook(name: str) -> nbformat.NotebookNode:
    cells = [
        nbformat.v4.new_markdown_cell(
            f"# {name}\n\nWhat you will build, the learning goal and the time it takes.\n\n"
            "Write your code where a cell says `raise NotImplementedError()`. Graded functions "
            "must be defined at the top level of a cell: the grader keeps imports, definitions "
            "and constants, and drops code that computes at top level."),
        nbformat.v4.new_markdown_cell("## Adding two numbers\n\nImplement `add(a, b)`."),
        nbformat.v4.new_code_cell(SOLUTION_CELL, metadata=_nbgrader("add", solution=True)),
        nbformat.v4.new_code_cell(AUTOGRADER_CELL.format(name=name),
                                  metadata=_nbgrader("test_add", grade=True, points=3.0)),
        nbformat.v4.new_markdown_cell("## Check your work\n\nRuns the public checks on the "
                                      "functions you defined above."),
        nbformat.v4.new_code_cell(CHECK_CELL.format(name=name),
                                  metadata=_nbgrader("check_your_work")),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                 "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def scaffold(name: str, root: Path) -> list[Path]:
    """Write the new assignment's files; the paths written."""
    if not name.isidentifier() or keyword.iskeyword(name) or name != name.lower():
        raise ConfigurationError(
            f"grader new {name!r}: expected a lowercase Python identifier (letters, digits and "
            "underscores, not starting with a digit), e.g. perceptron")
    suite, solutions = root / SUITES / name, root / SOLUTIONS / name
    for folder in (suite, solutions):
        if folder.exists():
            raise ConfigurationError(f"grader new {name!r}: {folder} already exists; choose "
                                     "another name or remove it first")
    suite.mkdir(parents=True)
    solutions.mkdir(parents=True)
    files = {
        suite / TOML: TOML_TEXT.format(name=name),
        suite / f"test_{name}.py": SUITE_TEXT.format(name=name),
        solutions / "test_public.py": PUBLIC_TEXT.format(name=name),
    }
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    notebook = solutions / f"{name}.ipynb"
    nbformat.write(master_notebook(name), notebook)
    return [*files, notebook]


def main(*, name: str, root: Path | None = None) -> int:
    root = (root or course_root()).resolve()
    announce_course(root)
    for path in scaffold(name, root):
        print(f"wrote {path.relative_to(root).as_posix()}")
    print(f"next: edit solutions/{name}/{name}.ipynb and autograde_tests/{name}/, then run "
          f"`grader release {name}` (docs/authoring.md)")
    return 0
