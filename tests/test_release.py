"""The release stage: solutions/ (nbgrader masters) -> assignments/ (what students get).

- the committed release equals a fresh `nbgrader generate_assignment` and leaks nothing;
- the leak check and the comparison catch planted problems, with messages that say where;
- the masters themselves are right: the solution code reproduces SPEC's worked example and
  parameter counts, the public check cells pass on it, the stubs keep the signatures.
"""

from __future__ import annotations

import copy
import inspect
import math
import shutil
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

from grader import release
from grader.course import course_root, load_assignment

ROOT = course_root()
ASSIGNMENTS = ("backprop", "mnist")


def master(name: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)


def released(name: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "assignments" / name / f"{name}.ipynb", as_version=4)


def nbgrader_meta(cell: nbformat.NotebookNode) -> dict[str, Any]:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def cell_index(nb: nbformat.NotebookNode, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == grade_id)


def secrets(name: str) -> release.Secrets:
    suites = sorted((ROOT / "autograde_tests" / name).glob("test_*.py"))
    return release.secrets_of(master(name), suites)


# --- The committed release ----------------------------------------------------------------


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_committed_release_leaks_nothing(name: str) -> None:
    problems = release.find_leaks(released(name), secrets(name), f"assignments/{name}")
    assert problems == []


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_masters_grade_every_function_with_the_toml_points(name: str) -> None:
    assert release.check_source(name, master(name), f"solutions/{name}") == []
    points = {
        nbgrader_meta(c)["grade_id"]: nbgrader_meta(c)["points"]
        for c in master(name).cells
        if nbgrader_meta(c).get("grade")
    }
    assert points == {f"test_{f}": p for f, p in load_assignment(name).points_by_function().items()}


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_master_cells_follow_nbgrader_schema_3(name: str) -> None:
    grade_ids = []
    for cell in master(name).cells:
        meta = nbgrader_meta(cell)
        if not meta:
            continue
        assert meta["schema_version"] == 3
        grade_ids.append(meta["grade_id"])
        if meta["solution"]:
            assert not meta["grade"] and not meta["locked"], meta
            assert "### BEGIN SOLUTION" in cell.source and cell.source.startswith("def "), meta
        elif meta["grade"]:
            assert meta["locked"] and meta["points"] > 0, meta
            assert "### BEGIN HIDDEN TESTS" in cell.source, meta
        else:
            assert meta["locked"], f"{meta['grade_id']}: a check cell is read-only"
        assert not cell.get("outputs"), f"{meta['grade_id']}: masters are committed without outputs"
    assert len(grade_ids) == len(set(grade_ids)), "grade ids must be unique"


@pytest.mark.slow
def test_release_check_passes_on_the_committed_release(capsys: pytest.CaptureFixture[str]) -> None:
    """Regenerates both assignments with nbgrader into a temp folder and compares."""
    assert release.main(assignments=None, check_only=True) == 0, capsys.readouterr().err


# --- The checks catch planted problems ----------------------------------------------------


def test_leak_check_catches_a_planted_solution_line() -> None:
    nb = released("backprop")
    index = cell_index(nb, "backward")
    nb.cells[index].source += "\n    delta_o = (out_o - target) * out_o * (1.0 - out_o)"
    line = len(nb.cells[index].source.splitlines())
    problems = release.find_leaks(nb, secrets("backprop"), "assignments/backprop/backprop.ipynb")
    assert [str(p) for p in problems] == [
        f"assignments/backprop/backprop.ipynb, cell {index} (grade id backward): source line "
        f"{line} is solution code (from a ### BEGIN SOLUTION region of the master): "
        "'delta_o = (out_o - target) * out_o * (1.0 - out_o)'"
    ]


def test_leak_check_catches_hidden_tests_markers_and_outputs() -> None:
    nb = released("mnist")
    nb.cells[0].source += '\nautograde("mnist", "build_cnn", globals())'
    nb.cells.append(nbformat.v4.new_markdown_cell("notes\n### BEGIN HIDDEN TESTS"))
    check = cell_index(nb, "check_build_cnn")
    nb.cells[check].outputs = [
        nbformat.v4.new_output(
            "stream",
            name="stdout",
            text='layers.Conv2D(36, kernel_size=(5, 5), padding="same", activation="relu"),\n',
        )
    ]
    messages = [str(p) for p in release.find_leaks(nb, secrets("mnist"), "mnist.ipynb")]
    assert messages[0].startswith("mnist.ipynb, cell 0: source line ")
    assert "is hidden-test code" in messages[0] and "build_cnn" in messages[0]
    assert messages[1] == (
        f"mnist.ipynb, cell {check} (grade id check_build_cnn): output 1 line 1 is solution code "
        "(from a ### BEGIN SOLUTION region of the master): "
        "'layers.Conv2D(36, kernel_size=(5, 5), padding=\"same\", activation=\"relu\"),'"
    )
    assert messages[2] == (
        f"mnist.ipynb, cell {len(nb.cells) - 1}: source line 2 contains 'BEGIN HIDDEN TESTS', "
        "which only the master may hold: '### BEGIN HIDDEN TESTS'"
    )
    assert len(messages) == 3


def test_leak_check_catches_a_line_of_a_hidden_suite(tmp_path: Path) -> None:
    suite = tmp_path / "test_secret.py"
    suite.write_text(
        "def test_x(submission):\n    assert submission.call('f') == 'sekrit-value-42'\n"
    )
    nb = released("backprop")
    nb.cells[0].source += "\nassert submission.call('f') == 'sekrit-value-42'"
    problems = release.find_leaks(nb, release.secrets_of(master("backprop"), [suite]), "b.ipynb")
    assert len(problems) == 1
    assert "is a line of the hidden suite test_secret.py" in str(problems[0])


def test_short_common_lines_are_not_leaks() -> None:
    nb = released("mnist")
    nb.cells[0].source += "\n)\n],\n[\nx = 1"
    assert release.find_leaks(nb, secrets("mnist"), "mnist.ipynb") == []


def test_compare_release_reports_each_changed_cell() -> None:
    fresh = released("mnist")
    current = copy.deepcopy(fresh)
    index = cell_index(current, "build_cnn")
    current.cells[index].source = current.cells[index].source.replace("def build_cnn", "def cnn")
    current.cells[index].metadata["nbgrader"]["points"] = 99
    current.cells[index].metadata["collapsed"] = True  # volatile: not reported
    problems = [str(p) for p in release.compare_release(fresh, current, "nb.ipynb")]
    hint = "run `grader release` to regenerate it from solutions/"
    assert problems == [
        f"nb.ipynb, cell {index} (grade id build_cnn): source differs from a fresh release: {hint}",
        f"nb.ipynb, cell {index} (grade id build_cnn): metadata differs from a fresh release: "
        f"{hint}",
    ]
    current.cells.pop()
    assert release.compare_release(fresh, current, "nb.ipynb")[0].message.startswith(
        f"has {len(fresh.cells) - 1} cells, a fresh release has {len(fresh.cells)}"
    )


def test_check_source_reports_points_that_disagree_with_the_toml() -> None:
    nb = master("mnist")
    nb.cells[cell_index(nb, "test_build_cnn")].metadata["nbgrader"]["points"] = 5
    nb.cells.pop(cell_index(nb, "test_build_gru"))
    messages = [str(p) for p in release.check_source("mnist", nb, "m.ipynb")]
    assert messages == [
        "m.ipynb: the autograder cells for build_cnn() are worth 5 points; assignment.toml "
        "gives 7: run `grader release`, which sets them",
        "m.ipynb: no autograder cell for build_gru() (2 points in assignment.toml)",
    ]


@pytest.mark.slow
def test_release_check_fails_on_a_planted_leak(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    course = release.copy_course(ROOT, tmp_path)
    path = course / "assignments" / "backprop" / "backprop.ipynb"
    nb = nbformat.read(path, as_version=4)
    index = cell_index(nb, "update")
    nb.cells[index].source = nb.cells[index].source.replace(
        "raise NotImplementedError()",
        "return {key: float(params[key] - lr * grads[key]) for key in params}",
    )
    nbformat.write(nb, path)
    assert release.main(assignments=["backprop"], check_only=True, root=course) == 1
    err = capsys.readouterr().err
    where = f"assignments/backprop/backprop.ipynb, cell {index} (grade id update)"
    assert f"grader release: {where}: source differs from a fresh release" in err
    assert (
        f"grader release: {where}: source line 3 is solution code (from a ### BEGIN SOLUTION "
        "region of the master): 'return {key: float(params[key] - lr * grads[key]) for key in "
        "params}'"
    ) in err
    # Releasing again repairs it.
    assert release.main(assignments=["backprop"], check_only=False, root=course) == 0
    assert release.main(assignments=["backprop"], check_only=True, root=course) == 0
    shutil.rmtree(course)


# --- The masters' code --------------------------------------------------------------------


def run_cells(nb: nbformat.NotebookNode, keep: set[str], namespace: dict[str, Any]) -> None:
    """Execute the solution cells and the named setup cells of a master, in order."""
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and (meta.get("solution") or cell.get("id") in keep):
            exec(compile(cell.source, f"<{cell.get('id')}>", "exec"), namespace)


def checks_of(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [
        c
        for c in nb.cells
        if nbgrader_meta(c).get("grade_id", "").startswith("check_")
        and nbgrader_meta(c)["grade_id"] != "check_your_work"
    ]


@pytest.fixture(scope="module")
def backprop_solution() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    run_cells(master("backprop"), {"setup-code"}, namespace)
    return namespace


def test_backprop_solution_reproduces_the_worked_example(backprop_solution: dict[str, Any]) -> None:
    ns = backprop_solution
    params, x, target = ns["params"], ns["x"], ns["target"]
    values = ns["forward"](params, x)
    assert set(values) == {"net_h", "out_h", "net_o", "out_o"}
    for value in values.values():
        assert value.shape == (2,) and value.dtype == np.float64
    assert np.allclose(values["out_h"], [0.593269992, 0.596884378], atol=1e-9)
    assert np.allclose(values["out_o"], [0.75136507, 0.772928465], atol=1e-8)
    error = ns["total_error"](values["out_o"], target)
    assert isinstance(error, float) and math.isclose(error, 0.298371109, abs_tol=1e-9)
    grads = ns["backward"](params, x, target)
    assert set(grads) == set(params)
    assert math.isclose(grads["w5"], 0.082167041, abs_tol=1e-9)
    before = dict(params)
    new_params, error_before = ns["train_step"](params, x, target, lr=0.5)
    assert params == before and new_params is not params
    assert math.isclose(error_before, 0.298371109, abs_tol=1e-9)
    expected = [0.149780716, 0.19956143, 0.24975114, 0.29950229,
                0.35891648, 0.408666186, 0.511301270, 0.561370121]
    assert np.allclose([new_params[f"w{k}"] for k in range(1, 9)], expected, atol=1e-8)
    # The biases move too, by the summed error signals.
    assert math.isclose(new_params["b1"], 0.35 - 0.5 * grads["b1"])
    assert math.isclose(new_params["b2"], 0.60 - 0.5 * grads["b2"])


def test_backprop_solution_matches_finite_differences_on_random_networks(
    backprop_solution: dict[str, Any],
) -> None:
    ns = backprop_solution
    rng = np.random.default_rng(0)
    for _ in range(5):
        params = {k: float(v) for k, v in zip(ns["params"], rng.normal(size=10), strict=True)}
        x, target = rng.uniform(size=2), rng.uniform(size=2)
        grads = ns["backward"](params, x, target)
        for key in params:
            up, down = dict(params), dict(params)
            up[key] += 1e-6
            down[key] -= 1e-6
            numeric = (
                ns["total_error"](ns["forward"](up, x)["out_o"], target)
                - ns["total_error"](ns["forward"](down, x)["out_o"], target)
            ) / 2e-6
            assert math.isclose(grads[key], numeric, abs_tol=1e-8), key


def test_backprop_sigmoid_is_stable_for_floats_and_arrays(
    backprop_solution: dict[str, Any],
) -> None:
    sigmoid = backprop_solution["sigmoid"]
    with np.errstate(over="raise"):
        assert sigmoid(1000.0) == 1.0 and sigmoid(-1000.0) == 0.0
        assert isinstance(sigmoid(0.5), float)
        assert np.allclose(sigmoid(np.array([[-1000.0, 0.0], [3.0, 1000.0]])),
                           [[0.0, 0.5], [1 / (1 + math.exp(-3.0)), 1.0]])


def test_backprop_public_check_cells_pass_on_the_solution(
    backprop_solution: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = dict(backprop_solution)
    for cell in checks_of(master("backprop")):
        exec(compile(cell.source, cell.get("id", "check"), "exec"), namespace)
    assert "dE/dw5: yours  0.082167041" in capsys.readouterr().out


@pytest.fixture(scope="module")
def mnist_solution() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    run_cells(master("mnist"), {"setup-imports", "settings-code"}, namespace)
    return namespace


@pytest.mark.parametrize(
    ("function", "parameters", "input_shape"),
    [
        ("build_mlp", 101_770, (None, 784)),
        ("build_cnn", 242_062, (None, 28, 28, 1)),
        ("build_lstm", 81_674, (None, 28, 28)),
        ("build_gru", 61_962, (None, 28, 28)),
    ],
)
def test_mnist_solution_models_match_spec(
    mnist_solution: dict[str, Any], function: str, parameters: int, input_shape: tuple[Any, ...]
) -> None:
    model = mnist_solution[function]()
    assert model.count_params() == parameters
    assert model.input_shape == input_shape and model.output_shape == (None, 10)
    assert model.compiled and model.loss == "categorical_crossentropy"


def test_mnist_solution_preprocess_matches_spec(mnist_solution: dict[str, Any]) -> None:
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28).__mod__(256).astype(np.uint8)
    labels = np.array([3, 0, 9])
    saved = images.copy(), labels.copy()
    for kind, shape in {"mlp": (3, 784), "cnn": (3, 28, 28, 1), "rnn": (3, 28, 28)}.items():
        x, y = mnist_solution["preprocess"](images, labels, kind)
        assert x.shape == shape and x.dtype == np.float32 and y.dtype == np.float32
        assert x.min() == 0.0 and x.max() == 1.0
        assert y.shape == (3, 10) and (y.sum(axis=1) == 1).all()
        assert (y.argmax(axis=1) == labels).all()
    assert (images == saved[0]).all() and (labels == saved[1]).all()
    with pytest.raises(ValueError, match="'mlp', 'cnn' or 'rnn', got 'svm'"):
        mnist_solution["preprocess"](images, labels, "svm")


def test_mnist_public_check_cells_pass_on_the_solution(
    mnist_solution: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from grader.course import load_assignment
    from grader.data import load_dataset

    data = load_dataset(load_assignment("mnist"), "mnist")
    namespace = dict(mnist_solution, train_images=data.x_train[:10], train_labels=data.y_train[:10])
    for cell in checks_of(master("mnist")):
        exec(compile(cell.source, cell.get("id", "check"), "exec"), namespace)
    assert "Total params: 242,062" in capsys.readouterr().out.replace("\x1b", "")


# --- The released stubs -------------------------------------------------------------------


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_released_stubs_keep_signatures_and_raise(name: str) -> None:
    solution_ns: dict[str, Any] = {}
    stub_ns: dict[str, Any] = {}
    run_cells(master(name), set(), solution_ns)
    run_cells(released(name), set(), stub_ns)
    for function in load_assignment(name).functions:
        assert inspect.signature(stub_ns[function]) == inspect.signature(solution_ns[function])
        assert stub_ns[function].__doc__ == solution_ns[function].__doc__
    for cell in released(name).cells:
        if nbgrader_meta(cell).get("solution"):
            assert cell.source.rstrip().endswith("raise NotImplementedError()"), cell.source
        if nbgrader_meta(cell).get("grade"):
            assert "autograde" not in cell.source and "HIDDEN" not in cell.source
