"""docker/gradescope/run_autograder, run outside a container against a temporary
/autograder-shaped folder (AUTOGRADER_ROOT): the results.json it leaves for Gradescope."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN_AUTOGRADER = REPO / "docker" / "gradescope" / "run_autograder"
REFERENCE = REPO / "solutions" / "backprop" / "backprop.ipynb"
STUB = REPO / "assignments" / "backprop" / "backprop.ipynb"
TEST_KEYS = {"name", "score", "max_score", "output", "visibility"}
STAFF = "Please contact the course staff"


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


def run_autograder(root: Path, *, path: str | None = None, **env: str) -> dict:
    full_env = {k: v for k, v in os.environ.items() if k not in ("ASSIGNMENT", "GRADER_PROFILE")}
    full_env.update(
        AUTOGRADER_ROOT=str(root),
        GRADER_VENV=str(root / "no-venv"),  # never a grader installed on this machine by setup.sh
        PATH=path or f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        GRADER_COURSE_ROOT=str(REPO),
        **env,
    )
    proc = subprocess.run(
        ["bash", str(RUN_AUTOGRADER)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = root / "results" / "results.json"
    assert results.is_file(), proc.stdout + proc.stderr
    data = json.loads(results.read_text())
    check_schema(data)
    data["_log"] = proc.stdout + proc.stderr
    return data


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


@pytest.mark.slow
def test_reference_notebook_gets_full_marks(tmp_path: Path) -> None:
    root = autograder_root(tmp_path, {"backprop.ipynb": REFERENCE})
    data = run_autograder(root)
    max_score = sum(t["max_score"] for t in data["tests"])
    assert max_score == 18
    assert data["score"] == max_score, data["_log"]
    assert all(t["score"] == t["max_score"] for t in data["tests"])
    assert "assignment=backprop" in data["_log"]  # detected from the notebook's name


@pytest.mark.slow
def test_released_stub_gets_zero_with_reasons(tmp_path: Path) -> None:
    # Renamed the way browsers rename a second download; ASSIGNMENT says which assignment.
    root = autograder_root(tmp_path, {"backprop (1).ipynb": STUB})
    data = run_autograder(root, ASSIGNMENT="backprop")
    assert data["score"] == 0
    assert sum(t["max_score"] for t in data["tests"]) == 18
    assert all(t["score"] == 0 for t in data["tests"])
    assert any("NotImplementedError" in t["output"] for t in data["tests"])
    assert STAFF not in data["output"]


@pytest.mark.slow
def test_notebook_one_folder_down_is_found(tmp_path: Path) -> None:
    root = autograder_root(tmp_path, {"my-repo/backprop.ipynb": REFERENCE, "my-repo/notes.md": "hi"})
    data = run_autograder(root)
    assert data["score"] == 18


def test_grader_that_cannot_run_still_leaves_a_result(tmp_path: Path) -> None:
    root = autograder_root(tmp_path, {"backprop.ipynb": REFERENCE})
    # No `grader` on PATH at all: the grader itself is broken, not the submission.
    data = run_autograder(root, path="/usr/bin:/bin")
    assert data["score"] == 0
    assert STAFF in data["output"]
    assert data["tests"][0]["name"] == "autograder: grading did not complete"
    assert "grader grade exited with status 127" in data["_log"]


def test_submission_without_a_notebook_says_what_to_upload(tmp_path: Path) -> None:
    root = autograder_root(tmp_path, {"answers.py": "print('hi')\n"})
    data = run_autograder(root, path="/usr/bin:/bin", ASSIGNMENT="backprop")
    assert data["score"] == 0
    assert data["output"].startswith(
        "Expected one notebook named backprop.ipynb in your submission; found no .ipynb file at all."
    )
    assert STAFF not in data["output"]


def test_quotes_in_a_message_keep_the_json_valid(tmp_path: Path) -> None:
    root = autograder_root(tmp_path, {"a.ipynb": "{}", "b.ipynb": "{}"})
    data = run_autograder(root, path="/usr/bin:/bin", ASSIGNMENT='say "hi" \\ bye')
    assert data["output"].startswith(
        'Expected one notebook named say "hi" \\ bye.ipynb in your submission; found 2 notebooks'
    )
