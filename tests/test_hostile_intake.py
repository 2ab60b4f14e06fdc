"""Hostile intake: submissions that attack the grader through their names, the text they send
to the TA's terminal, or a malformed file (``tests/files/hostile/intake/build.py``).

All of them are graded in one batch through `grader grade`, among reference classmates, and
compared with a run of the classmates alone: the classmates' results are identical, nothing
outside ``--out`` is created or changed, grades.csv lists everyone, the run exits 0, no escape
sequence reaches the terminal, and `grader report` works.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

HERE = ROOT / "tests" / "files" / "hostile" / "intake"
CLASSMATES = ["alice", "bob", "carol"]
SECRET_TEXT = "INTAKE-ROOT-ONLY-SECRET"
FULL_MARKS = 18.0


def _load_build() -> Any:
    spec = importlib.util.spec_from_file_location("intake_build", HERE / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["intake_build"] = module
    spec.loader.exec_module(module)
    return module


build = _load_build()


@dataclass
class Run:
    out: Path
    returncode: int
    output: str

    def results(self) -> dict[str, dict[str, Any]]:
        """Every result.full.json, by the student id it records."""
        found = {}
        for path in sorted(self.out.glob("*/result.full.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            found[data["student"]] = {**data, "_folder": path.parent.name}
        return found


def _grader() -> list[str]:
    script = Path(sys.executable).parent / "grader"
    return [str(script)] if script.exists() else [sys.executable, "-m", "grader"]


def _grade(paths: list[Path], out: Path) -> Run:
    env = {**os.environ, "COLUMNS": "400", "GRADER_COURSE_ROOT": str(ROOT)}
    proc = subprocess.run([*_grader(), "grade", *map(str, paths), "--assignment", "backprop",
                           "--out", str(out), "--jobs", "2", "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, timeout=1200)
    output = (proc.stdout + proc.stderr).decode("utf-8", errors="replace")
    return Run(out, proc.returncode, output)


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every entry under ``root`` but ``skip``: regular files by content hash, others by kind
    (links are not followed, FIFOs not opened)."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        if Path(folder) == skip or skip in Path(folder).parents:
            dirs[:] = []
            continue
        for name in dirs + files:
            path = Path(folder) / name
            if path == skip:
                continue
            info = path.lstat()
            if path.is_symlink():
                seen[str(path)] = "link:" + os.readlink(path)
            elif path.is_file():
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[str(path)] = f"mode:{info.st_mode:o}"
    return seen


def _suites() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "autograde_tests").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def _stable(result: dict[str, Any]) -> dict[str, Any]:
    """A result without what differs between two gradings of one notebook (times)."""
    kept = {k: v for k, v in result.items() if k not in ("seconds", "_folder")}
    kept["tests"] = [{k: v for k, v in t.items() if k != "seconds"} for t in result["tests"]]
    return kept


@dataclass
class Batch:
    alone: Run
    attacked: Run
    attackers: list[Path]
    secret: Path
    report: subprocess.CompletedProcess[bytes]
    before: dict[str, str]
    after: dict[str, str]
    suites_before: str
    suites_after: str


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    root = tmp_path_factory.mktemp("intake")
    classmates = root / "classmates"
    classmates.mkdir()
    for name in CLASSMATES:
        (classmates / f"{name}.ipynb").write_bytes(build.REFERENCE.read_bytes())
    secret = root / "secret.txt"
    secret.write_text(SECRET_TEXT)
    secret.chmod(0o600)
    attackers = build.materialise(root / "attackers", secret)
    alone = _grade([classmates], root / "alone")
    suites_before = _suites()
    before = _snapshot(root, root / "out")
    # alice's notebook is given twice: once in the folder, once by name
    attacked = _grade([classmates, *attackers, classmates / "alice.ipynb"], root / "out")
    after = _snapshot(root, root / "out")
    report = subprocess.run([*_grader(), "report", str(root / "out")], cwd=ROOT,
                            capture_output=True, timeout=300,
                            env={**os.environ, "GRADER_COURSE_ROOT": str(ROOT)})
    return Batch(alone, attacked, attackers, secret, report, before, after, suites_before,
                 _suites())


def _student(path: Path) -> str:
    return path.name[: -len(".ipynb")] or path.name


def test_every_class_has_at_least_two_inputs() -> None:
    kinds = [item.kind for item in build.INTAKE]
    assert all(kinds.count(kind) >= 2 for kind in ("names", "terminal", "malformed"))
    assert sorted(p.name for p in HERE.glob("*.ipynb")) == sorted(build.STATIC), \
        "run tests/files/hostile/intake/build.py"


def test_the_run_exits_0_and_everyone_is_in_grades_csv(batch: Batch) -> None:
    assert batch.alone.returncode == 0, batch.alone.output[-3000:]
    assert batch.attacked.returncode == 0, batch.attacked.output[-3000:]
    with open(batch.attacked.out / "grades.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = sorted(CLASSMATES + [_student(p) for p in batch.attackers])
    assert sorted(row["student"] for row in rows) == expected
    assert sorted(batch.attacked.results()) == expected


def test_classmates_results_are_untouched(batch: Batch) -> None:
    alone, attacked = batch.alone.results(), batch.attacked.results()
    for name in CLASSMATES:
        assert _stable(attacked[name]) == _stable(alone[name]), name
        assert attacked[name]["_folder"] == name
        assert sum(t["score"] for t in attacked[name]["tests"]) == FULL_MARKS


def test_nothing_outside_out_was_created_or_changed(batch: Batch) -> None:
    assert batch.after == batch.before
    assert batch.suites_after == batch.suites_before


def test_every_folder_is_safe_and_unique(batch: Batch) -> None:
    names = [p.name for p in batch.attacked.out.iterdir()]
    # The grader's own: its logs, the gradebook, the class report, the training cache (with
    # the pictures of the feedback pages, stored for the run's other checking processes).
    students = [n for n in names if n not in (".logs", ".cache", "grades.csv", "report.html")]
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", n) for n in students), names
    assert len({n.lower() for n in students}) == len(students)
    assert len(students) == len(CLASSMATES) + len(batch.attackers)
    folders = {s: r["_folder"] for s, r in batch.attacked.results().items()}
    assert folders["Alice"] != "alice" and folders["grades.csv"] != "grades.csv"


@pytest.mark.parametrize("item", [i for i in build.INTAKE if i.graded],
                         ids=lambda i: ascii(i.file_name)[:40])
def test_hostile_names_and_texts_are_graded_like_the_reference(batch: Batch, item: Any) -> None:
    result = batch.attacked.results()[_student(Path(item.file_name))]
    assert sum(t["score"] for t in result["tests"]) == FULL_MARKS
    assert result["grader_error"] is None


@pytest.mark.parametrize("item", [i for i in build.INTAKE if i.kind == "malformed"],
                         ids=lambda i: i.file_name)
def test_malformed_input_is_a_0_with_what_to_fix(batch: Batch, item: Any) -> None:
    result = batch.attacked.results()[_student(Path(item.file_name))]
    assert result["grader_error"] is None
    assert sum(t["score"] for t in result["tests"]) == 0
    assert any(item.told in m for m in result["load_messages"]), result["load_messages"]
    assert all(item.told in t["message"] for t in result["tests"])


def test_links_are_refused_without_naming_their_target(batch: Batch) -> None:
    for folder in batch.attacked.out.rglob("*"):
        if folder.is_file():
            text = folder.read_bytes()
            assert SECRET_TEXT.encode() not in text, folder
            assert str(batch.secret).encode() not in text, folder
            assert b"/dev/zero" not in text, folder


def test_the_terminal_sees_plain_text_only(batch: Batch) -> None:
    output = batch.attacked.output
    assert "Traceback" not in output
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", output), ascii(output[-2000:])
    assert "PWNED-TITLE" not in output
    assert "[bold]markup[-name[link=x]" in output
    assert "[/] [bold red]not markup[/bold red]" in output


def test_the_class_report_works(batch: Batch) -> None:
    assert batch.report.returncode == 0, batch.report.stderr[-2000:]
    page = (batch.attacked.out / "report.html").read_text(encoding="utf-8")
    count = len(CLASSMATES) + len(batch.attackers)
    assert f'<span id="submission-count">{count}</span>' in page
    assert page.count('<a href="') >= 2 * count  # a feedback link per student, in each order
