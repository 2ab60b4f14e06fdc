"""docker/gradescope/run_autograder, run outside a container against a temporary
/autograder-shaped folder (AUTOGRADER_ROOT): the notebook it picks by the metadata written at
release, whatever the upload is called, and the results.json it leaves for Gradescope. The last
test builds the real zip with `grader gradescope` and runs it end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader.course import load_assignment
from tests.conftest import SAMPLES, run_grader

REPO = Path(__file__).resolve().parents[1]
RUN_AUTOGRADER = REPO / "docker" / "gradescope" / "run_autograder"
REFERENCE = SAMPLES / "backprop" / "reference.ipynb"
STUB = SAMPLES / "backprop" / "stub_untouched.ipynb"
OTHER = SAMPLES / "mnist" / "reference.ipynb"
TEST_KEYS = {"name", "score", "max_score", "output", "visibility"}
STAFF = "Please contact the course staff"
#: The environment variables of the machine running the tests that would change the outcome.
CLEARED = ("ASSIGNMENT", "GRADER_PROFILE", "GRADER_COURSE_ROOT")


def autograder_root(tmp_path: Path, files: dict[str, Path | str]) -> Path:
    """tmp_path/autograder with submission/ holding ``files`` (name -> source or text)."""
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "results").mkdir()
    for name, content in files.items():
        target = root / "submission" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_text(content)
    return root


def without_metadata(tmp_path: Path, source: Path) -> Path:
    """``source`` as a notebook not made by `grader release` (no ``metadata.grader``)."""
    nb = json.loads(source.read_text())
    nb["metadata"].pop("grader", None)
    out = tmp_path / "bare.ipynb"
    out.write_text(json.dumps(nb))
    return out


def python_only_bin(tmp_path: Path) -> Path:
    """A folder holding a ``python3`` that runs this Python, and no ``grader`` command."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "python3"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    return folder


def run_autograder(root: Path, *, script: Path = RUN_AUTOGRADER, path: str | None = None,
                   **env: str) -> dict:
    full_env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    full_env.update(
        AUTOGRADER_ROOT=str(root),
        GRADER_VENV=str(root / "no-venv"),  # never a grader installed on this machine by setup.sh
        PATH=path or f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **env,
    )
    proc = subprocess.run(["bash", str(script)], env=full_env, capture_output=True, text=True,
                          timeout=900, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = root / "results" / "results.json"
    assert results.is_file(), proc.stdout + proc.stderr
    data = json.loads(results.read_text())
    check_schema(data)
    data["_log"] = proc.stdout + proc.stderr
    return data


def in_this_course(root: Path, **env: str) -> dict:
    """run_autograder from this checkout, grading backprop with the checkout's hidden suites."""
    return run_autograder(root, GRADER_COURSE_ROOT=str(REPO), ASSIGNMENT="backprop", **env)


def check_schema(data: dict) -> None:
    assert isinstance(data["score"], int | float)
    assert isinstance(data["output"], str) and data["output"]
    assert data.get("visibility", "visible") in (
        "visible",
        "hidden",
        "after_due_date",
        "after_published",
    )
    assert isinstance(data["tests"], list) and data["tests"]
    for test in data["tests"]:
        assert TEST_KEYS <= set(test), test
        assert 0 <= test["score"] <= test["max_score"] or test["max_score"] == 0


def max_score() -> float:
    return load_assignment("backprop", REPO).max_score


@pytest.mark.slow
def test_renamed_upload_is_graded_by_its_own_assignment(tmp_path: Path) -> None:
    # Renamed the way browsers rename a second download, beside another file.
    root = autograder_root(tmp_path, {"backprop (1).ipynb": REFERENCE, "notes.md": "hi"})
    data = in_this_course(root)
    assert sum(t["max_score"] for t in data["tests"]) == max_score()
    assert data["score"] == max_score(), data["_log"]
    assert all(t["score"] == t["max_score"] for t in data["tests"])
    assert "grading " + str(root / "submission" / "backprop (1).ipynb") in data["_log"]


@pytest.mark.slow
def test_released_stub_one_folder_down_gets_zero_with_reasons(tmp_path: Path) -> None:
    # Beside the notebook of another assignment, which is left alone.
    root = autograder_root(tmp_path, {"my-repo/hw.ipynb": STUB, "my-repo/other.ipynb": OTHER})
    data = in_this_course(root)
    assert data["score"] == 0
    assert sum(t["max_score"] for t in data["tests"]) == max_score()
    assert all(t["score"] == 0 for t in data["tests"])
    assert any("NotImplementedError" in t["output"] for t in data["tests"])
    assert STAFF not in data["output"]


def test_notebook_of_another_assignment_says_which_to_upload(tmp_path: Path) -> None:
    root = autograder_root(tmp_path, {"backprop.ipynb": OTHER})
    data = in_this_course(root)
    assert data["score"] == 0
    assert data["output"] == (
        "This Gradescope assignment grades 'backprop', but the notebook you uploaded is the "
        "'mnist' notebook. Upload your completed backprop notebook and submit again.")
    assert data["tests"][0]["output"] == data["output"]
    assert STAFF not in data["output"]


def test_notebook_without_metadata_says_to_download_it_again(tmp_path: Path) -> None:
    root = autograder_root(tmp_path, {"backprop.ipynb": without_metadata(tmp_path, REFERENCE)})
    data = in_this_course(root)
    assert data["score"] == 0
    assert data["output"] == (
        "Expected the backprop notebook as released to you (it names its assignment inside); "
        "found backprop.ipynb, which does not. Download the released backprop notebook again, "
        "copy your answers into it, and submit it.")


def test_submission_without_a_notebook_says_what_to_upload(tmp_path: Path) -> None:
    root = autograder_root(tmp_path, {"answers.py": "print('hi')\n"})
    data = in_this_course(root)
    assert data["score"] == 0
    assert data["output"] == (
        "Expected your backprop notebook (a .ipynb file) in the submission; found no .ipynb file "
        "at all. Upload your completed notebook and submit again.")
    assert STAFF not in data["output"]


def test_quotes_in_a_message_keep_the_json_valid(tmp_path: Path) -> None:
    root = autograder_root(tmp_path, {"a.ipynb": "{}"})
    data = run_autograder(root, GRADER_COURSE_ROOT=str(REPO), ASSIGNMENT='say "hi" \\ bye')
    assert data["output"].startswith(
        'Expected the say "hi" \\ bye notebook as released to you (it names its assignment '
        "inside); found a.ipynb")


def test_grader_that_cannot_run_still_leaves_a_result(tmp_path: Path) -> None:
    root = autograder_root(tmp_path, {"backprop (1).ipynb": REFERENCE})
    # The notebook is picked, but there is no `grader` command: the grader itself is broken.
    data = in_this_course(root, path=f"{python_only_bin(tmp_path)}{os.pathsep}/usr/bin:/bin")
    assert data["score"] == 0
    assert STAFF in data["output"]
    assert data["tests"][0]["name"] == "autograder: grading did not complete"
    assert "grader grade exited with status 127" in data["_log"]


def test_no_python_with_the_grader_still_leaves_a_result(tmp_path: Path) -> None:
    root = autograder_root(tmp_path, {"backprop.ipynb": REFERENCE})
    data = in_this_course(root, path="/usr/bin:/bin")
    assert data["score"] == 0
    assert STAFF in data["output"]
    assert "the notebook could not be chosen" in data["_log"]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ["backprop", "losses_optimizers"])
def test_gradescope_zip_runs_end_to_end(tmp_path: Path, assignment: str) -> None:
    archive_path = tmp_path / f"{assignment}.zip"
    built = run_grader("gradescope", assignment, "--out", str(archive_path))
    assert built.returncode == 0, built.stdout + built.stderr
    assert built.stdout.strip().splitlines()[-1] == (
        f"wrote {archive_path}: upload it as the autograder of '{assignment}' on Gradescope")
    root = tmp_path / "autograder"
    with zipfile.ZipFile(archive_path) as archive:
        names = set(archive.namelist())
        archive.extractall(root / "source")
    assert {"setup.sh", "run_autograder", "pyproject.toml", "grader/cli.py",
            f"autograde_tests/{assignment}/assignment.toml", "grader-assignment.txt"} <= names
    others = [f"autograde_tests/{a}" for a in ("backprop", "mnist", "losses_optimizers")
              if a != assignment]
    assert not any(n.startswith((*others, "solutions/", "tests/")) for n in names)
    # Gradescope keeps the mode bits: run_autograder runs from the unpacked zip.
    run_script = root / "source" / "run_autograder"
    run_script.chmod(0o755)
    (root / "results").mkdir()
    (root / "submission").mkdir()
    shutil.copy(SAMPLES / assignment / "reference.ipynb",
                root / "submission" / f"{assignment} (1).ipynb")
    shutil.copy(OTHER, root / "submission" / "mnist.ipynb")
    data = run_autograder(root, script=run_script)
    assert f"assignment={assignment}" in data["_log"]  # from the zip, not from a file name
    assert data["score"] == load_assignment(assignment, REPO).max_score, data["_log"]
