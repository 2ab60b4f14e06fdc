"""The course as data: assignments discovered from autograde_tests/, the course folder found
like nbgrader finds it, a new assignment that releases and grades without touching grader/,
public checks from the released notebook alone, and the Gradescope zip."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.course import course_root, discover_assignments, find_course_root, load_assignment
from grader.errors import ConfigurationError, DataUnavailable
from grader.gradescope_zip import pick_notebook
from grader.release import copy_course

REPO = Path(__file__).resolve().parents[1]
GRADER = [sys.executable, "-m", "grader"]
SCANNED = [REPO / "grader", REPO / "docker" / "gradescope"]


def run(*args: str, cwd: Path, **env: str | None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "GRADER_COURSE_ROOT"}
    full.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([*GRADER, *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=600)


def grader_hashes() -> dict[str, str]:
    return {str(p.relative_to(REPO)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((REPO / "grader").rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def fill(released: Path, out: Path, body: str) -> None:
    """The released notebook with its one answer cell replaced by ``body``."""
    nb = nbformat.read(released, as_version=4)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            cell.source = body
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)


# --- Discovery and the course folder --------------------------------------------------------


def test_grader_names_no_assignment() -> None:
    names = discover_assignments(REPO)
    assert names, "no assignment discovered in autograde_tests/"
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b", re.IGNORECASE)
    hits = []
    for folder in SCANNED:
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not hits, "grader/ names assignments:\n" + "\n".join(hits)


def test_unknown_assignment_lists_the_discovered_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_assignment("nope", REPO)
    assert str(caught.value) == (
        f"unknown assignment 'nope': expected one of {', '.join(discover_assignments(REPO))}")


def test_course_folder_from_parents_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    course = tmp_path / "course"
    (course / "autograde_tests").mkdir(parents=True)
    (course / "deep" / "er").mkdir(parents=True)
    monkeypatch.delenv("GRADER_COURSE_ROOT", raising=False)
    assert find_course_root(course / "deep" / "er") == course.resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert find_course_root() is None
    with pytest.raises(ConfigurationError, match="no course folder found: expected .* or "
                       "GRADER_COURSE_ROOT to be set"):
        course_root()
    monkeypatch.setenv("GRADER_COURSE_ROOT", str(course))
    assert course_root() == course.resolve()


def test_declared_data_is_looked_for_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    import numpy as np

    from grader.course import assignment_from_toml
    from grader.data import load_dataset

    spec = {"notebook": "shapes.ipynb", "functions": ["area"],
            "data": {"grid": {"env": "GRID_NPZ", "keras_cache": "grid.npz"}}}
    shapes = assignment_from_toml("shapes", spec, "assignment.toml", tmp_path)
    monkeypatch.delenv("GRID_NPZ", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cached = tmp_path / "keras" / "datasets" / "grid.npz"
    with pytest.raises(DataUnavailable) as caught:
        load_dataset(shapes, "grid")
    assert str(caught.value) == (
        "the data file 'grid' of 'shapes' is not found: expected it at --data grid=PATH or the "
        f"environment variable GRID_NPZ or {cached}")
    cached.parent.mkdir(parents=True)
    arrays = {k: np.arange(3) for k in ("x_train", "y_train", "x_test", "y_test")}
    np.savez(cached, **arrays)
    assert shapes.data_files() == {"grid": cached}
    monkeypatch.setenv("GRID_NPZ", str(tmp_path / "env.npz"))
    assert shapes.data_files() == {"grid": tmp_path / "env.npz"}
    assert shapes.data_files({"grid": cached}) == {"grid": cached}
    assert shapes.data_paths({"grid": cached}) == (cached.parent.resolve(),)
    assert load_dataset(shapes, "grid", cached).x_train.tolist() == [0, 1, 2]


# --- The instructor's path ------------------------------------------------------------------


@pytest.fixture(scope="module")
def course_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_course(REPO, tmp_path_factory.mktemp("course"))


@pytest.mark.slow
def test_release_check_in_a_second_copy_catches_its_stale_release(course_copy: Path) -> None:
    master = course_copy / "solutions" / "backprop" / "test_public.py"
    original = master.read_text()
    master.write_text(original + "\n\ndef test_sigmoid__new_check(submission):\n    pass\n")
    try:
        done = run("release", "--check", "backprop", cwd=course_copy / "solutions")
    finally:
        master.write_text(original)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"grader: course folder {course_copy.resolve()}" in done.stderr
    assert "differs from a fresh release" in done.stderr


@pytest.mark.slow
def test_a_new_assignment_releases_and_grades_with_grader_unchanged(course_copy: Path) -> None:
    before = grader_hashes()
    made = run("new", "adder", cwd=course_copy)
    assert made.returncode == 0, made.stderr
    master = course_copy / "solutions" / "adder" / "adder.ipynb"
    nb = nbformat.read(master, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = cell.source.replace("return a + b", "total = a\n    total += b\n    return total")
    nbformat.write(nb, master)
    released = run("release", "adder", cwd=course_copy)
    assert released.returncode == 0, released.stderr
    stub = course_copy / "assignments" / "adder" / "adder.ipynb"
    assert nbformat.read(stub, as_version=4).metadata["grader"]["assignment"] == "adder"
    subs = course_copy / "subs"
    fill(stub, subs / "right.ipynb", "def add(a, b):\n    return b + a")
    fill(stub, subs / "wrong.ipynb", "def add(a, b):\n    return a * b")
    graded = run("grade", str(subs), "--assignment", "adder", "--out", "out", "--quiet",
                 cwd=course_copy)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    scores = {s: json.loads((course_copy / "out" / s / "results.json").read_text())["score"]
              for s in ("right", "wrong")}
    assert scores == {"right": 3.0, "wrong": 0.0}
    assert grader_hashes() == before


# --- The student's path ---------------------------------------------------------------------


UNIX_ONLY_BLOCKED = (
    "import sys\n"
    "for name in ('resource', 'fcntl', 'pwd', 'grp', 'termios'):\n"
    "    sys.modules[name] = None\n"
    "from grader.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_the_check_path_imports_without_the_unix_only_modules(tmp_path: Path) -> None:
    script = UNIX_ONLY_BLOCKED.split("from grader.cli")[0] + (
        "import grader.cli, grader.notebook\n"
        "from grader.check import _sandbox, submission_module\n"
        "print(_sandbox()[1])\n"
        "print(submission_module().InProcessSubmission.__name__)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    reason, name = done.stdout.strip().splitlines()
    assert reason.startswith("the sandbox does not import: ") and "resource" in reason
    assert name == "InProcessSubmission"


@pytest.mark.slow
@pytest.mark.parametrize(("body", "code", "last"), [
    ("def add(a, b):\n    return a + b", 0, "1 of 1 public checks passed"),
    ("def add(a, b):\n    return a - b", 1, "0 of 1 public checks passed — fix the FAIL lines "
     "above, then run the check again"),
])
def test_public_checks_run_from_the_notebook_alone(course_copy: Path, tmp_path: Path, body: str,
                                                   code: int, last: str) -> None:
    stub = course_copy / "assignments" / "adder" / "adder.ipynb"
    if not stub.exists():
        pytest.skip("needs the adder assignment of the test above")
    student = tmp_path / "laptop"
    fill(stub, student / "my copy.ipynb", body)
    env = {k: v for k, v in os.environ.items() if k != "GRADER_COURSE_ROOT"}
    done = subprocess.run([sys.executable, "-c", UNIX_ONLY_BLOCKED, "check", "my copy.ipynb"],
                          cwd=student, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == last
    assert lines[0].startswith("note: no sandbox on this machine (the sandbox does not import")


# --- Gradescope -----------------------------------------------------------------------------


def _notebook(path: Path, assignment: str | None) -> Path:
    nb = nbformat.v4.new_notebook()
    if assignment:
        nb.metadata["grader"] = {"assignment": assignment}
    nbformat.write(nb, path)
    return path


def test_gradescope_picks_the_notebook_by_its_metadata(tmp_path: Path) -> None:
    ours = _notebook(tmp_path / "hw (1).ipynb", "alpha")
    other = _notebook(tmp_path / "alpha.ipynb", "beta")
    bare = _notebook(tmp_path / "mine.ipynb", None)
    assert pick_notebook([other, ours], "alpha") == (ours, "")
    assert pick_notebook([other], "alpha") == (None, (
        "This Gradescope assignment grades 'alpha', but the notebook you uploaded is the 'beta' "
        "notebook. Upload your completed alpha notebook and submit again."))
    assert pick_notebook([bare], "alpha") == (None, (
        "Expected the alpha notebook as released to you (it names its assignment inside); found "
        "mine.ipynb, which does not. Download the released alpha notebook again, copy your "
        "answers into it, and submit it."))


@pytest.mark.slow
def test_gradescope_zip_grades_a_renamed_upload(course_copy: Path, tmp_path: Path) -> None:
    stub = course_copy / "assignments" / "adder" / "adder.ipynb"
    if not stub.exists():
        pytest.skip("needs the adder assignment of the test above")
    built = run("gradescope", "adder", "--out", str(tmp_path / "adder.zip"), cwd=course_copy)
    assert built.returncode == 0, built.stderr
    root = tmp_path / "autograder"
    with zipfile.ZipFile(tmp_path / "adder.zip") as archive:
        names = set(archive.namelist())
        archive.extractall(root / "source")
    assert {"setup.sh", "run_autograder", "pyproject.toml", "autograde_tests/adder/assignment.toml",
            "grader/cli.py"} <= names
    (root / "results").mkdir()
    fill(stub, root / "submission" / "adder (1).ipynb", "def add(a, b):\n    return a + b")
    env = {k: v for k, v in os.environ.items() if k not in ("GRADER_COURSE_ROOT", "ASSIGNMENT")}
    env.update(AUTOGRADER_ROOT=str(root), GRADER_VENV=str(root / "no-venv"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    done = subprocess.run(["bash", str(root / "run_autograder")], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 3.0, done.stdout + done.stderr


# --- The command line -----------------------------------------------------------------------


def test_grader_alone_shows_help_and_version() -> None:
    done = run(cwd=REPO)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: grader")
    for command in ("grade", "check", "release", "report", "doctor", "gradescope", "new", "bridge"):
        assert f"    {command}" in done.stdout
    version = run("--version", cwd=REPO)
    assert version.stdout.strip().startswith("grader ")
    helped = run("grade", "--help", cwd=REPO)
    assert "examples:" in helped.stdout
    assert "one of: " + ", ".join(discover_assignments(REPO)) in " ".join(helped.stdout.split())
