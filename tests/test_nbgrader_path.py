"""The TA's nbgrader path, end to end, with real nbgrader commands in a copy of the course.

Three students per assignment: the reference answers, the untouched release, and one realistic
mistake. `nbgrader autograde` must give full marks, 0, and exactly the points of the functions
the mistake leaves intact; per function, the same points as `grader grade` on the same
notebooks; feedback that holds no line of the hidden suites; and a gradebook that `nbgrader
export` and `grader bridge` both read. TensorFlow runs with its most verbose logging
(TF_CPP_MIN_LOG_LEVEL=0) so that a log line on stderr would show up as a lost point.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from grader import nbgrader_bridge, release
from grader.course import course_root, load_assignment

ROOT = course_root()
ASSIGNMENTS = ("backprop", "mnist", "losses_optimizers")
STUDENTS = ("reference", "untouched", "mistake")
#: One realistic mistake per assignment: (solution cell, text, replaced by).
MISTAKES = {
    # A wrong sign on one gradient. train_step calls backward, so it is wrong too.
    "backprop": ("backward", '"w5": float(delta_o[0] * h1)', '"w5": -float(delta_o[0] * h1)'),
    # A recurrent layer that returns the whole sequence: output (None, 28, 10).
    "mnist": ("build_gru", "layers.GRU(128)", "layers.GRU(128, return_sequences=True)"),
    # Adam without the first moment's bias correction.
    "losses_optimizers": ("adam_step", "m_hat = new_m / (1.0 - beta1**t)", "m_hat = new_m"),
}
#: The functions each mistake breaks; every other function is intact.
BROKEN = {"backprop": {"backward", "train_step"}, "mnist": {"build_gru"},
          "losses_optimizers": {"adam_step"}}


# --- Building the course copy and the students ----------------------------------------------


def _nbgrader_meta(cell: Any) -> dict[str, Any]:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def student_notebook(name: str, student: str) -> nbformat.NotebookNode:
    """The released notebook as a student hands it in."""
    nb = nbformat.read(ROOT / "assignments" / name / f"{name}.ipynb", as_version=4)
    if student == "untouched":
        return nb
    master = nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)
    answers = {
        _nbgrader_meta(c)["grade_id"]: c.source
        for c in master.cells
        if _nbgrader_meta(c).get("solution")
    }
    for cell in nb.cells:
        grade_id = _nbgrader_meta(cell).get("grade_id")
        if grade_id in answers:
            cell.source = "\n".join(
                line for line in answers[grade_id].splitlines()
                if line.strip() not in release.SOLUTION_MARKERS
            )
    if student == "mistake":
        grade_id, old, new = MISTAKES[name]
        cell = next(c for c in nb.cells if _nbgrader_meta(c).get("grade_id") == grade_id)
        assert old in cell.source, f"the {name} mistake no longer applies to {grade_id}"
        cell.source = cell.source.replace(old, new)
    return nb


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, (
        f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
        f"{done.stderr[-6000:]}"
    )
    return done


def nbgrader(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "nbgrader", *args], cwd, **env)


def grader(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "grader", *args], cwd)


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A graded copy of the course: nbgrader autograde, feedback and export, and grader grade,
    on the same submitted notebooks."""
    if not os.environ.get("MNIST_NPZ"):
        pytest.fail("MNIST_NPZ is not set: point it at the MNIST .npz (CI sets it in .ci/run)")
    course = release.copy_course(ROOT, tmp_path_factory.mktemp("course"))
    for name in ASSIGNMENTS:
        for student in STUDENTS:
            folder = course / "submitted" / student / name
            folder.mkdir(parents=True)
            nbformat.write(student_notebook(name, student), folder / f"{name}.ipynb")
    for name in ASSIGNMENTS:
        nbgrader("generate_assignment", name, "--force", cwd=course)
        nbgrader("autograde", name, cwd=course, TF_CPP_MIN_LOG_LEVEL="0")
        nbgrader("generate_feedback", name, cwd=course)
        grader("grade", "submitted", "--assignment", name, "--out", f"graded/{name}", "--quiet",
               cwd=course)
    nbgrader("export", cwd=course)
    return course


def gradebook_points(course: Path, name: str, student: str) -> dict[str, float]:
    """Points per function from nbgrader's gradebook (autograder cell test_<function>)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        notebook = gb.find_submission_notebook(name, name, student)
        return {g.name.removeprefix("test_"): float(g.score) for g in notebook.grades}


def grader_points(course: Path, name: str, student: str) -> dict[str, float]:
    """Points per function from `grader grade`'s results.json."""
    data = json.loads((course / "graded" / name / student / "results.json").read_text())
    out: dict[str, float] = {}
    for test in data["tests"]:
        function = test["name"].split(":", 1)[0]
        out[function] = out.get(function, 0.0) + float(test["score"])
    return out


# --- The end-to-end checks ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_gradebook_totals_are_full_zero_and_the_intact_functions(course: Path, name: str) -> None:
    points = load_assignment(name).points_by_function()
    intact = sum(p for f, p in points.items() if f not in BROKEN[name])
    totals = {s: sum(gradebook_points(course, name, s).values()) for s in STUDENTS}
    assert (totals["reference"], totals["untouched"]) == (sum(points.values()), 0.0)
    # The broken functions lose points (not always all: a wrong backward is still NumPy only).
    assert intact <= totals["mistake"] < sum(points.values())
    mistake = gradebook_points(course, name, "mistake")
    assert {f for f, p in mistake.items() if p != points[f]} == BROKEN[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
@pytest.mark.parametrize("student", STUDENTS)
def test_nbgrader_and_grader_grade_agree_per_function(
    course: Path, name: str, student: str
) -> None:
    assert gradebook_points(course, name, student) == grader_points(course, name, student)


@pytest.mark.slow
def test_export_csv_holds_the_gradebook_totals(course: Path) -> None:
    with (course / "grades.csv").open(newline="") as handle:
        rows = {(r["assignment"], r["student_id"]): float(r["score"]) for r in csv.DictReader(handle)}
    expected = {
        (name, student): sum(gradebook_points(course, name, student).values())
        for name in ASSIGNMENTS
        for student in STUDENTS
    }
    assert rows == expected


def hidden_suite_lines() -> set[str]:
    """Lines of the hidden suites worth hiding: code, not the student-facing message text
    (string literals) the collector shows on purpose, and nothing too short to tell apart."""
    lines = set()
    for path in (ROOT / "autograde_tests").rglob("test_*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if (
                len(stripped) >= release.MIN_SUITE_LINE
                and not stripped.startswith("#")
                and not re.match(r"""^[rbfu]*["']""", stripped, re.IGNORECASE)
            ):
                lines.add(stripped)
    return lines


@pytest.mark.slow
def test_feedback_holds_no_line_of_the_hidden_suites(course: Path) -> None:
    secret = hidden_suite_lines()
    assert len(secret) > 50, "the hidden suites should be readable from the checkout"
    pages = sorted((course / "feedback").rglob("*.html"))
    assert len(pages) == len(ASSIGNMENTS) * len(STUDENTS)
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
        leaked = sorted(line for line in secret if line in text)
        assert leaked == [], f"{page.relative_to(course)} shows hidden-suite lines: {leaked[:3]}"
        # What the autograder cells show instead: the call and the per-test outcome.
        assert "autograde(" in text and " points" in text


@pytest.mark.slow
def test_no_autograder_cell_lost_points_to_stderr(course: Path) -> None:
    """TensorFlow logged at full verbosity; no autograder cell kept a stderr output."""
    for name in ASSIGNMENTS:
        for student in ("reference", "mistake"):
            path = course / "autograded" / student / name / f"{name}.ipynb"
            nb = nbformat.read(path, as_version=4)
            for cell in nb.cells:
                if _nbgrader_meta(cell).get("grade"):
                    streams = [o for o in cell.outputs if o.get("name") == "stderr"]
                    assert streams == [], f"{path}: {_nbgrader_meta(cell)['grade_id']}: {streams}"


@pytest.mark.slow
def test_bridge_writes_grader_scores_as_manual_scores(course: Path, tmp_path: Path) -> None:
    from nbgrader.api import Gradebook

    db = tmp_path / "gradebook.db"
    shutil.copy(course / "gradebook.db", db)
    results = tmp_path / "graded"
    shutil.copytree(course / "graded" / "mnist", results)
    # The hardened path disagrees on one student's CNN (as it would for a submission that
    # cheats the in-kernel path): its score is the one that must reach the export.
    path = results / "reference" / "result.full.json"
    data = json.loads(path.read_text())
    for test in data["tests"]:
        if test["name"] == "build_cnn: parameter count":
            test["score"] = 0.0
    path.write_text(json.dumps(data))
    assert nbgrader_bridge.main(results_dir=results, assignment="mnist",
                                db_url=f"sqlite:///{db}") == 0
    with Gradebook(f"sqlite:///{db}") as gb:
        grade = gb.find_grade("test_build_cnn", "mnist", "mnist", "reference")
        assert (grade.auto_score, grade.manual_score, grade.score) == (7.0, 6.0, 6.0)
        assert gb.find_submission("mnist", "reference").score == 28.0
        assert gb.find_submission("mnist", "mistake").score == 27.0
    export = tmp_path / "export.csv"
    nbgrader("export", f"--CourseDirectory.db_url=sqlite:///{db}", f"--to={export}", cwd=course)
    with export.open(newline="") as handle:
        rows = {(r["assignment"], r["student_id"]): float(r["score"]) for r in csv.DictReader(handle)}
    assert rows[("mnist", "reference")] == 28.0
    assert rows[("backprop", "reference")] == 18.0


# --- A cell that runs past the time limit ---------------------------------------------------


@pytest.mark.slow
def test_a_cell_past_the_timeout_costs_that_cell_only(tmp_path: Path) -> None:
    """update() never returns: its autograder cell is interrupted and scores 0; the kernel lives
    on and the later cells are graded (this student's train_step does its own update)."""
    course = release.copy_course(ROOT, tmp_path)
    nb = student_notebook("backprop", "reference")
    for cell in nb.cells:
        grade_id = _nbgrader_meta(cell).get("grade_id")
        if grade_id == "update":
            cell.source = cell.source.replace(
                "    return {key:",
                "    keys, index = list(params), 0\n"
                "    while index < len(keys):  # index never moves on\n"
                "        key = keys[index]\n"
                "    return {key:",
            )
        if grade_id == "train_step":
            cell.source = cell.source.replace(
                "return update(params, grads, lr), error",
                "return {key: params[key] - lr * grads[key] for key in params}, error",
            )
    folder = course / "submitted" / "slow" / "backprop"
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "backprop.ipynb")
    nbgrader("generate_assignment", "backprop", "--force", cwd=course)
    nbgrader("autograde", "backprop", "--Execute.timeout=20", cwd=course)
    points = gradebook_points(course, "backprop", "slow")
    expected = dict(load_assignment("backprop").points_by_function(), update=0.0)
    assert points == expected
    graded = nbformat.read(course / "autograded" / "slow" / "backprop" / "backprop.ipynb", 4)
    cell = next(c for c in graded.cells if _nbgrader_meta(c).get("grade_id") == "test_update")
    assert any(o.get("ename") == "CellTimeoutError" for o in cell.outputs), cell.outputs


# --- nbgrader's configuration -----------------------------------------------------------------


def load_config() -> Any:
    from traitlets.config.loader import PyFileConfigLoader

    saved = dict(os.environ)
    try:
        return PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_config_makes_the_repository_the_course_directory() -> None:
    config = load_config()
    assert Path(config.CourseDirectory.root) == ROOT
    assert config.CourseDirectory.source_directory == "solutions"
    assert config.CourseDirectory.release_directory == "assignments"
    assert config.ClearSolutions.code_stub == {"python": "raise NotImplementedError()"}
    assert config.Execute.timeout >= 600


#: What TensorFlow 2.21, Keras 3 and absl write to stderr (captured from real runs).
TF_STDERR = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795431604.666627    6036 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.\n",
    "E0000 00:00:1795431922.713386    8526 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n",
    "E0000 00:00:1795431928.741314    8526 node_def_util.cc:682] NodeDef mentions attribute "
    "use_unbounded_threadpool which is not in the op definition\n",
    "/opt/venv/lib/python3.11/site-packages/keras/src/layers/core/dense.py:95: UserWarning: "
    "Do not pass an `input_shape`/`input_dim` argument to a layer.\n"
    "  super().__init__(activity_regularizer=activity_regularizer, **kwargs)\n",
    "WARNING:absl:You are saving your model as an HDF5 file via `model.save()`.\n",
    "W0000 00:00:1795431928.741314    8526 loop_optimizer.cc:933] Skipping loop optimization\n",
]


def graded_cell(stderr: list[str], points: float) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("autograde(...)")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                 "points": 7, "grade_id": "test_build_cnn", "schema_version": 3}
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=t) for t in stderr]
    cell.outputs += [
        nbformat.v4.new_output("stream", name="stdout", text="build_cnn: 7 / 7 points\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": str(points)},
                               execution_count=1),
    ]
    return cell


def grade_after_ignore_pattern(cell: nbformat.NotebookNode) -> float | None:
    from nbgrader.preprocessors import IgnorePattern
    from nbgrader.utils import determine_grade

    nb = nbformat.v4.new_notebook(cells=[cell])
    nb, _ = IgnorePattern(config=load_config())(nb, {})
    return determine_grade(nb.cells[0])[0]


def test_tensorflow_logging_costs_no_point() -> None:
    for text in TF_STDERR:
        assert grade_after_ignore_pattern(graded_cell([text], 7.0)) == 7.0, text
    assert grade_after_ignore_pattern(graded_cell(TF_STDERR, 5.0)) == 5.0


def test_other_stderr_still_costs_the_cell_as_nbgrader_intends() -> None:
    assert grade_after_ignore_pattern(graded_cell(["my debug output\n"], 7.0)) == 0.0


@pytest.mark.slow
def test_live_tensorflow_stderr_costs_no_point() -> None:
    """The stderr of a real TensorFlow start-up and training step, at full verbosity."""
    code = (
        "import numpy as np, keras\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, input_shape=(4,))])\n"
        "model.compile(loss='mse', optimizer='adam')\n"
        "model.fit(np.zeros((8, 4)), np.zeros((8, 2)), verbose=0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_env(TF_CPP_MIN_LOG_LEVEL="0"),
                          capture_output=True, text=True, check=True)
    # One chunk per log record: an indented line continues the record above it (the source
    # line Python prints under a warning).
    chunks: list[str] = []
    for line in done.stderr.splitlines():
        if line.strip() and chunks and line[:1].isspace():
            chunks[-1] += line + "\n"
        elif line.strip():
            chunks.append(line + "\n")
    assert chunks, "expected TensorFlow to log something on stderr"
    for chunk in chunks:
        assert grade_after_ignore_pattern(graded_cell([chunk], 7.0)) == 7.0, chunk


# --- The bridge on its own ----------------------------------------------------------------------


def write_results(folder: Path, student: str, scores: dict[str, float],
                  grader_error: str | None = None) -> None:
    """A result.full.json as `grader grade` writes it, one test per function."""
    from grader.results import SubmissionResult, TestResult

    points = load_assignment("backprop").points_by_function()
    tests = [TestResult(name=f"{f}: everything", function=f, score=scores.get(f, p),
                        max_score=p, status="passed") for f, p in points.items()]
    result = SubmissionResult(student=student, assignment="backprop", notebook="x.ipynb",
                              profile="quick", tests=tests, grader_error=grader_error)
    (folder / student).mkdir(parents=True)
    result.save(folder / student / "result.full.json")


@pytest.mark.slow
def test_bridge_creates_missing_submissions_and_skips_grader_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbgrader.api import Gradebook

    course = release.copy_course(ROOT, tmp_path / "course")
    nbgrader("generate_assignment", "backprop", "--force", cwd=course)
    results = tmp_path / "graded"
    write_results(results, "ada", {"backward": 2.0})
    write_results(results, "bob", {}, grader_error="Traceback ...")
    code = nbgrader_bridge.main(results_dir=results, assignment="backprop", course_dir=course)
    captured = capsys.readouterr()
    assert code == 1
    assert "bob: the grader failed on this submission" in captured.err
    assert "ada                  backward             -       2     6   <- differs" in captured.out
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert gb.find_submission("backprop", "ada").score == 14.0
        with pytest.raises(Exception, match="No such"):
            gb.find_submission("backprop", "bob")


def test_bridge_refuses_a_folder_without_results(tmp_path: Path) -> None:
    from grader.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="holds no <student>/result.full.json"):
        nbgrader_bridge.main(results_dir=tmp_path, assignment="backprop", course_dir=tmp_path)
