"""The exporters: Gradescope JSON, CSV gradebook, feedback page, figures and class report.

Results are built by hand here (no grading), so every number the exporters print can be
checked against what went in. ``test_pages_chromium.py`` renders the same samples in a browser.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import struct
from pathlib import Path

import pytest

import grader.export
from grader import cli, report
from grader.errors import ConfigurationError
from grader.export import figures, gradebook
from grader.export.classreport import summarize
from grader.export.feedback import render_feedback, write_feedback
from grader.export.gradebook import write_gradebook
from grader.export.gradescope import to_gradescope, write_results_json
from grader.results import SubmissionResult
from grader.results import TestResult as OneTest  # "Test*" names would be collected by pytest

MNIST_FUNCTIONS = ["preprocess", "build_mlp", "build_cnn", "build_lstm", "build_gru"]
TRACEBACK = (
    'Traceback (most recent call last):\n  File "/srv/grader/collect.py", line 7\nKeyError: x'
)
INJECTION = "<script>alert('x')</script> & \"quoted\""

CNN_MESSAGE = (
    "build_cnn(): expected 242,062 parameters, found 241,990 — the second Conv2D layer has "
    "36 filters of 5×5 in the reference; yours has 35."
)
CURVE = {
    "model": "cnn",
    "loss": [0.61, 0.22, 0.15],
    "accuracy": [0.81, 0.93, 0.95],
    "val_loss": [0.25, 0.18, 0.16],
    "val_accuracy": [0.92, 0.94, 0.95],
}
MATRIX = [[90 if i == j else 1 for j in range(10)] for i in range(10)]
MATRIX_FIGURE = {"model": "cnn", "matrix": MATRIX}
ACCURACY_MESSAGE = "build_cnn(): accuracy 0.912 after the grading recipe, expected ≥ 0.96."
GRADIENTS = {
    "student": {"w1": 0.000439, "w2": 0.000877, "w5": 0.082167, "b1": 0.0, "b2": 0.5},
    "expected": {"w1": 0.000439, "w2": 0.000877, "w5": 0.082167, "b1": 0.008771, "b2": 0.5},
}


def _mnist_tests(passed: set[str], messages: dict[str, str] | None = None) -> list[OneTest]:
    """Five mnist tests worth 10 points; those named in ``passed`` get full points."""
    catalog = [
        ("preprocess: shapes and dtypes for mlp, cnn and rnn", 2.0),
        ("preprocess: pixels scaled to [0, 1], labels one-hot", 2.0),
        ("build_cnn: parameter count", 1.0),
        ("build_cnn: accuracy after the grading recipe", 3.0),
        ("build_lstm: layers and shapes", 2.0),
    ]
    messages = messages or {}
    tests = []
    for name, max_score in catalog:
        ok = name in passed
        tests.append(
            OneTest(
                name=name,
                function=name.split(":")[0],
                score=max_score if ok else 0.0,
                max_score=max_score,
                status="passed" if ok else "failed",
                message="" if ok else messages.get(name, f"{name.split(':')[0]}(): wrong."),
                seconds=0.5,
            )
        )
    return tests


ALL_MNIST = {t.name for t in _mnist_tests(set())}


def perfect() -> SubmissionResult:
    return SubmissionResult(
        student="alice",
        assignment="mnist",
        notebook="submitted/alice/mnist/mnist.ipynb",
        profile="quick",
        tests=_mnist_tests(ALL_MNIST),
        isolation="bubblewrap",
        isolation_details=["bwrap 0.8", "no network"],
        device="CPU",
        seconds=41.25,
        grader_version="0.1.0",
    )


def partial() -> SubmissionResult:
    """4 of 10: preprocess passed; the CNN lost its points (with pictures); the LSTM timed out."""
    tests = _mnist_tests(
        {
            "preprocess: shapes and dtypes for mlp, cnn and rnn",
            "preprocess: pixels scaled to [0, 1], labels one-hot",
        },
        {
            "build_cnn: parameter count": CNN_MESSAGE,
            "build_cnn: accuracy after the grading recipe": ACCURACY_MESSAGE,
            "build_lstm: layers and shapes": "build_lstm() ran past its 60 s limit.",
        },
    )
    tests[3].figures = {"learning_curve": CURVE, "confusion_matrix": MATRIX_FIGURE}
    tests[4].fault = "timeout"
    return SubmissionResult(
        student="bob",
        assignment="mnist",
        notebook="submitted/bob/mnist/mnist.ipynb",
        profile="quick",
        tests=tests,
        isolation="namespaces",
        isolation_details=["no bubblewrap on this host"],
        limits_hit=["time"],
        seconds=75.5,
        grader_version="0.1.0",
    )


def grader_failed() -> SubmissionResult:
    return SubmissionResult(
        student="carol",
        assignment="mnist",
        notebook="submitted/carol/mnist/mnist.ipynb",
        profile="quick",
        isolation="bubblewrap",
        grader_error=TRACEBACK,
        seconds=3.0,
        grader_version="0.1.0",
    )


def injection() -> SubmissionResult:
    """A message and a load message carrying HTML; 2 of 10 points."""
    tests = _mnist_tests(
        {"preprocess: shapes and dtypes for mlp, cnn and rnn"},
        {
            "build_cnn: parameter count": INJECTION,
            "build_cnn: accuracy after the grading recipe": CNN_MESSAGE,
        },
    )
    tests[4].fault = "crash"
    return SubmissionResult(
        student="dave",
        assignment="mnist",
        notebook="submitted/dave/mnist/mnist.ipynb",
        profile="quick",
        tests=tests,
        isolation="bubblewrap",
        load_messages=[f"cell 3, line 1: SyntaxError near {INJECTION}"],
        limits_hit=["memory"],
        seconds=20.0,
        grader_version="0.1.0",
    )


def backprop_with_gradients() -> SubmissionResult:
    test = OneTest(
        name="backward: worked-example gradients",
        function="backward",
        score=0.0,
        max_score=2.0,
        status="failed",
        message="backward(): dE/db1 is 0.0, expected 0.008771 — b1 feeds both hidden units.",
        figures={"gradients": GRADIENTS},
    )
    return SubmissionResult(
        student="erin",
        assignment="backprop",
        notebook="erin.ipynb",
        profile="quick",
        tests=[test],
        isolation="rlimits",
    )


def class_results() -> list[SubmissionResult]:
    return [perfect(), partial(), grader_failed(), injection()]


# ---------------------------------------------------------------- public surface


def test_public_surface_is_pinned():
    assert grader.export.__all__ == [
        "ClassSummary",
        "render_class_report",
        "render_feedback",
        "summarize",
        "to_gradescope",
        "write_class_report",
        "write_feedback",
        "write_gradebook",
        "write_results_json",
    ]


# ---------------------------------------------------------------- Gradescope


def test_gradescope_perfect_exactly():
    data = to_gradescope(perfect())
    assert data == {
        "score": 10.0,
        "output": "Total: 10 of 10 points.",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "execution_time": 41.25,
        "tests": [
            {
                "name": t.name,
                "score": t.max_score,
                "max_score": t.max_score,
                "status": "passed",
                "output": "",
                "visibility": "visible",
            }
            for t in perfect().tests
        ],
        "extra_data": {
            "student": "alice",
            "assignment": "mnist",
            "profile": "quick",
            "isolation": "bubblewrap",
            "isolation_details": ["bwrap 0.8", "no network"],
            "device": "CPU",
            "grader_version": "0.1.0",
            "load_messages": [],
            "limits_hit": [],
            "faults": {},
            "test_errors": {},
            "grader_error": None,
        },
    }


def test_gradescope_partial_scores_names_and_outputs():
    data = to_gradescope(partial())
    assert data["score"] == 4.0 == sum(t["score"] for t in data["tests"])
    assert [t["name"] for t in data["tests"]] == [t.name for t in partial().tests]
    assert all(t["name"].split(":")[0] in MNIST_FUNCTIONS for t in data["tests"])
    assert [t["status"] for t in data["tests"]] == [
        "passed",
        "passed",
        "failed",
        "failed",
        "failed",
    ]
    assert {t["visibility"] for t in data["tests"]} == {"visible"}
    assert data["tests"][2]["output"] == CNN_MESSAGE
    assert data["tests"][4]["output"].startswith(
        "build_lstm() ran past its 60 s limit.\n\n"
        "What to change: Your code ran past its time limit."
    )
    assert data["output"] == (
        "Your code ran into the grader's limits:\n"
        "  - time limit: your code ran too long\n"
        "Total: 4 of 10 points."
    )
    assert data["extra_data"]["faults"] == {"build_lstm: layers and shapes": "timeout"}
    assert "figures" not in json.dumps(data)


def test_gradescope_grader_error_keeps_traceback_for_staff_only():
    data = to_gradescope(grader_failed())
    assert data["output"] == (
        "The grader failed on this submission — tell your instructor.\nTotal: 0 of 0 points."
    )
    assert data["extra_data"]["grader_error"] == TRACEBACK
    student_facing = {k: v for k, v in data.items() if k != "extra_data"}
    assert "Traceback" not in json.dumps(student_facing)


def test_gradescope_test_error_shows_no_internal_message():
    result = perfect()
    result.tests[2].status, result.tests[2].score = "error", 0.0
    result.tests[2].message = TRACEBACK
    data = to_gradescope(result)
    assert data["tests"][2]["output"] == "The grader failed on this test — tell your instructor."
    assert data["tests"][2]["status"] == "failed"
    assert data["extra_data"]["test_errors"] == {"build_cnn: parameter count": TRACEBACK}
    student_facing = {k: v for k, v in data.items() if k != "extra_data"}
    assert "Traceback" not in json.dumps(student_facing)


def test_write_results_json_is_the_dict_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "bob" / "results.json"
    write_results_json(partial(), path)
    assert json.loads(path.read_text(encoding="utf-8")) == to_gradescope(partial())
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


# ---------------------------------------------------------------- gradebook


def test_gradebook_csv_exactly(tmp_path):
    path = tmp_path / "grades.csv"
    write_gradebook(reversed(class_results()), path, MNIST_FUNCTIONS)
    assert path.read_text(encoding="utf-8") == (
        "student,preprocess,build_mlp,build_cnn,build_lstm,build_gru,total,max_score,isolation,faults\n"
        "alice,4,,4,2,,10,10,bubblewrap,\n"
        "bob,4,,0,0,,4,10,namespaces,time limit; timeout\n"
        "carol,,,,,,0,0,bubblewrap,grader error\n"
        "dave,2,,0,0,,2,10,bubblewrap,memory limit; crash\n"
    )


def test_gradebook_adds_functions_not_listed_and_neutralises_formulas(tmp_path):
    result = backprop_with_gradients()
    result.student = '=HYPERLINK("http://x")'
    path = tmp_path / "grades.csv"
    write_gradebook([result], path, ["sigmoid"])
    assert path.read_text(encoding="utf-8").splitlines() == [
        "student,sigmoid,backward,total,max_score,isolation,faults",
        '"\'=HYPERLINK(""http://x"")",,0,0,2,rlimits,',
    ]


def test_gradebook_refuses_two_results_for_one_student(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        write_gradebook([perfect(), perfect()], tmp_path / "grades.csv", MNIST_FUNCTIONS)
    assert str(info.value) == (
        "two results for student 'alice': expected one result per student in a gradebook; "
        "grade each student's submission into its own folder"
    )
    assert not (tmp_path / "grades.csv").exists()


def test_fault_summary_lists_each_kind_once():
    result = partial()
    result.tests[2].fault = "timeout"
    assert gradebook.fault_summary(result) == "time limit; timeout"


# ---------------------------------------------------------------- figures


def _png(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return base64.b64decode(uri[len(prefix) :])


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize(
    ("kind", "data", "size"),
    [
        ("learning_curve", CURVE, (800, 320)),
        ("confusion_matrix", MATRIX_FIGURE, (560, 500)),
        ("gradients", GRADIENTS, (800, 360)),
    ],
)
def test_figures_are_deterministic_pngs(kind, data, size):
    first, second = figures.draw(kind, data), figures.draw(kind, data)
    # Drawn again from scratch (not the picture remembered for this data): the same bytes.
    assert first == second == figures._DRAWERS[kind](copy.deepcopy(data))
    png = _png(first.uri)
    assert _png_size(png) == size
    assert b"Software" not in png and b"matplotlib" not in png.lower()


def test_a_remembered_figure_is_one_of_the_same_data():
    changed = copy.deepcopy(MATRIX_FIGURE)
    changed["matrix"][0][0] += 1
    remembered = figures.draw("confusion_matrix", MATRIX_FIGURE)
    assert figures.draw("confusion_matrix", changed) != remembered
    assert figures.draw("confusion_matrix", changed) == figures._DRAWERS["confusion_matrix"](
        changed)
    assert figures.draw("confusion_matrix", MATRIX_FIGURE) == remembered


@pytest.fixture
def picture_store(tmp_path, monkeypatch):
    """A training cache folder in the environment, and no picture remembered in this process."""
    monkeypatch.setenv("GRADER_TRAINING_CACHE", str(tmp_path / "training"))
    monkeypatch.delenv("GRADER_NO_CACHE", raising=False)
    figures._remembered.cache_clear()
    yield tmp_path / "training" / "pictures"
    figures._remembered.cache_clear()


def _counted(monkeypatch, kind):
    """The data each drawing of ``kind`` gets, from now on."""
    drawn, drawer = [], figures._DRAWERS[kind]

    def counting(data):
        drawn.append(data)
        return drawer(data)

    monkeypatch.setitem(figures._DRAWERS, kind, counting)
    return drawn


def test_a_picture_drawn_by_one_process_is_read_back_by_another(picture_store, monkeypatch):
    drawn = figures.draw("confusion_matrix", MATRIX_FIGURE)
    assert drawn == figures._DRAWERS["confusion_matrix"](copy.deepcopy(MATRIX_FIGURE))
    assert len(list(picture_store.iterdir())) == 1
    figures._remembered.cache_clear()  # another process: nothing remembered, the folder shared
    calls = _counted(monkeypatch, "confusion_matrix")
    assert figures.draw("confusion_matrix", MATRIX_FIGURE) == drawn
    assert calls == []
    changed = copy.deepcopy(MATRIX_FIGURE)
    changed["matrix"][0][0] += 1
    figures.draw("confusion_matrix", changed)  # other data: not the stored picture
    assert calls == [changed]


def test_without_a_cache_no_picture_is_stored(picture_store, monkeypatch):
    monkeypatch.setenv("GRADER_NO_CACHE", "1")
    figures.draw("learning_curve", CURVE)
    assert not picture_store.parent.exists()


@pytest.mark.parametrize("damage", ["not json", "another key", "not a png", "a field more",
                                    "oversized", "a link"])
def test_a_stored_picture_that_cannot_be_trusted_is_drawn_again_and_replaced(
        picture_store, monkeypatch, tmp_path, damage):
    good = figures.draw("learning_curve", CURVE)
    (entry,) = picture_store.iterdir()
    stored = json.loads(entry.read_text())
    entry.unlink()
    if damage == "not json":
        entry.write_text("{")
    elif damage == "another key":
        entry.write_text(json.dumps({**stored, "key": stored["key"].replace("loss", "lose")}))
    elif damage == "not a png":
        fake = "data:image/png;base64," + base64.b64encode(b"GIF89a....").decode()
        entry.write_text(json.dumps({**stored, "uri": fake}))
    elif damage == "a field more":
        entry.write_text(json.dumps({**stored, "script": "alert(1)"}))
    elif damage == "oversized":
        entry.write_text(json.dumps({**stored, "caption": "x" * figures.LARGEST_STORED}))
    else:
        (tmp_path / "elsewhere.json").write_text(json.dumps(stored))
        entry.symlink_to(tmp_path / "elsewhere.json")
    figures._remembered.cache_clear()
    calls = _counted(monkeypatch, "learning_curve")
    assert figures.draw("learning_curve", CURVE) == good
    assert calls == [CURVE]
    assert not entry.is_symlink() and json.loads(entry.read_text()) == stored


def test_figure_captions_state_the_data():
    assert figures.draw("confusion_matrix", MATRIX_FIGURE).caption == (
        "Your cnn model on the grader's test images: 900 of 990 correct (90.9%). "
        "Off-diagonal cells show which digits it confuses."
    )
    assert figures.draw("gradients", GRADIENTS).caption == (
        "Gradients on the worked example. Yours differ from the correct value for b1."
    )
    assert figures.draw("learning_curve", {"loss": [1.0], "accuracy": [0.5]}).caption == (
        "Your model model trained by the grader (1 epochs, fixed seed): "
        "final training accuracy 0.500."
    )


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        (
            "sparkline",
            {},
            "unknown picture kind 'sparkline'; known: learning_curve, confusion_matrix, gradients",
        ),
        ("learning_curve", [1, 2], "learning_curve: expected a dict, found list"),
        (
            "learning_curve",
            {"loss": [], "accuracy": [1]},
            "learning_curve: expected a non-empty list of numbers under 'loss', found list",
        ),
        (
            "learning_curve",
            {"loss": [float("nan")], "accuracy": [1]},
            "learning_curve: 'loss' holds nan, expected finite numbers",
        ),
        (
            "confusion_matrix",
            {"matrix": [[1, 2]]},
            "confusion_matrix: expected a square list of lists under 'matrix'",
        ),
        (
            "confusion_matrix",
            {"matrix": [[-1]]},
            "confusion_matrix: 'matrix' holds -1, expected counts (ints >= 0)",
        ),
        (
            "gradients",
            {"student": {}, "expected": {"w1": "x"}},
            "gradients: expected['w1'] is 'x', expected a number",
        ),
    ],
)
def test_figure_data_errors_say_what_is_wrong(kind, data, message):
    with pytest.raises(figures.FigureDataError) as info:
        figures.draw(kind, data)
    assert str(info.value) == message


# ---------------------------------------------------------------- feedback


def _imgs(page: str) -> list[str]:
    return re.findall(r'<img src="(data:image/png;base64,[A-Za-z0-9+/=]+)"', page)


def _function_points(page: str) -> dict[str, tuple[str, str]]:
    rows = re.findall(
        r'<tr data-function="([^"]+)">.*?<td class="num earned">([^<]*)</td>\s*'
        r'<td class="num available">([^<]*)</td>',
        page,
        re.S,
    )
    return {function: (earned, available) for function, earned, available in rows}


def test_feedback_shows_points_per_function_and_total():
    page = render_feedback(partial())
    assert _function_points(page) == {
        "preprocess": ("4", "4"),
        "build_cnn": ("0", "4"),
        "build_lstm": ("0", "2"),
    }
    assert '<span id="total-score">4</span>' in page
    assert '<span id="max-score">10</span>' in page


def test_feedback_shows_failed_messages_hints_and_one_image_per_figure():
    page = render_feedback(partial())
    assert "expected 242,062 parameters, found 241,990" in page
    assert "What to change: Your code ran past its time limit." in page
    assert len(_imgs(page)) == 2
    assert page.count('<figure class="learning_curve">') == 1
    assert page.count('<figure class="confusion_matrix">') == 1
    assert len(_imgs(render_feedback(backprop_with_gradients()))) == 1
    assert len(_imgs(render_feedback(perfect()))) == 0
    assert 'id="all-passed"' in render_feedback(perfect())


def test_feedback_footer_shows_isolation_and_profile():
    page = render_feedback(partial())
    assert '<dd id="isolation">namespaces</dd>' in page
    assert '<span id="profile">quick</span>' in page


def test_feedback_escapes_html_from_messages():
    page = render_feedback(injection())
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;quoted&#34;" in page
    assert page.count("&lt;script&gt;") == 2  # the test message and the load message


def test_feedback_on_grader_error_says_so_without_traceback():
    page = render_feedback(grader_failed())
    assert "The grader failed on this submission — tell your instructor." in page
    assert "Traceback" not in page and "collect.py" not in page and "KeyError" not in page


def test_feedback_survives_bad_figure_data():
    result = partial()
    result.tests[3].figures = {"confusion_matrix": {"matrix": "oops"}, "learning_curve": CURVE}
    page = render_feedback(result)
    assert len(_imgs(page)) == 1
    assert (
        "Picture unavailable: confusion_matrix: expected a square list of lists under "
        "&#39;matrix&#39;" in page
    )


def test_feedback_loads_nothing_from_elsewhere():
    page = render_feedback(partial())
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "default-src 'none'" in page


def test_write_feedback_is_deterministic(tmp_path):
    write_feedback(partial(), tmp_path / "a.html")
    write_feedback(partial(), tmp_path / "b.html")
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()


# ---------------------------------------------------------------- class report


def test_summary_numbers_equal_the_inputs():
    s = summarize(class_results())
    assert s.submissions == 4
    assert s.assignments == ["mnist"] and s.profiles == ["quick"]
    assert dict(s.histogram) == {
        "0–10%": 0,
        "10–20%": 0,
        "20–30%": 1,
        "30–40%": 0,
        "40–50%": 1,
        "50–60%": 0,
        "60–70%": 0,
        "70–80%": 0,
        "80–90%": 0,
        "90–100%": 1,
    }
    assert s.ungraded == ["carol"]
    assert (s.mean_score, s.median_score, s.max_score) == (5.333333, 4.0, 10.0)
    assert [(p.test, p.passed, p.ran) for p in s.pass_rates] == [
        ("build_cnn: accuracy after the grading recipe", 1, 3),
        ("build_cnn: parameter count", 1, 3),
        ("build_lstm: layers and shapes", 1, 3),
        ("preprocess: pixels scaled to [0, 1], labels one-hot", 2, 3),
        ("preprocess: shapes and dtypes for mlp, cnn and rnn", 3, 3),
    ]
    assert [(f.count, f.test, f.message) for f in s.common_failures[:1]] == [
        (1, "build_cnn: accuracy after the grading recipe", ACCURACY_MESSAGE)
    ]
    assert sum(f.count for f in s.common_failures) == 7
    assert [(h.student, h.limits, h.faults) for h in s.limits_hit] == [
        ("bob", ["time limit: your code ran too long"], "time limit; timeout"),
        ("dave", ["memory limit: your code used too much memory"], "memory limit; crash"),
    ]
    assert s.times == [("bob", 75.5), ("alice", 41.25), ("dave", 20.0), ("carol", 3.0)]
    assert (s.median_seconds, s.total_seconds) == (30.625, 139.75)
    assert s.isolation == [("bubblewrap", 3), ("namespaces", 1)]
    assert s.grader_errors == [("carol", TRACEBACK)]


def test_summary_groups_identical_failure_messages():
    results = [partial(), partial(), injection()]
    for i, result in enumerate(results):
        result.student = f"s{i}"
    top = summarize(results).common_failures[0]
    assert (top.count, top.test) == (2, "build_cnn: accuracy after the grading recipe")
    assert summarize(results).common_failures[1].message == CNN_MESSAGE


def test_score_band_edges():
    result = perfect()
    bands = []
    for earned in (0.0, 0.99, 1.0, 6.999999, 7.0, 9.99, 10.0):
        result.tests = _mnist_tests(set())
        result.tests[0].score = earned
        result.tests[0].max_score = 10.0
        for t in result.tests[1:]:
            t.max_score = 0.0
        hist = summarize([result]).histogram
        bands.append(next(label for label, n in hist if n))
    assert bands == ["0–10%", "0–10%", "10–20%", "60–70%", "70–80%", "90–100%", "90–100%"]


def _save_all(results_dir: Path, results: list[SubmissionResult]) -> None:
    for result in results:
        result.save(results_dir / result.student / "result.full.json")


def test_report_writes_the_page_and_prints_its_path(tmp_path, capsys):
    _save_all(tmp_path, class_results())
    assert report.main(results_dir=tmp_path, out=None) == 0
    target = tmp_path / "report.html"
    assert capsys.readouterr().out == f"{target}\n"
    page = target.read_text(encoding="utf-8")
    assert '<span id="submission-count">4</span>' in page
    assert len(_imgs(page)) == 2
    rates = dict(
        re.findall(r'<tr data-test="([^"]+)">.*?<span class="rate">([^<]+)</span>', page, re.S)
    )
    assert rates["build_cnn: parameter count"] == "33%"
    assert rates["preprocess: shapes and dtypes for mlp, cnn and rnn"] == "100%"
    counts = dict(re.findall(r'<td class="num count" data-band="([^"]+)">(\d+)</td>', page))
    assert counts["40–50%"] == "1" and counts["50–60%"] == "0"
    assert "<script>" not in page
    assert '<strong id="median-seconds">30.6</strong>' in page
    assert '<strong id="mean-score">5.33</strong>' in page


def test_report_out_option(tmp_path, capsys):
    _save_all(tmp_path / "run", [perfect()])
    out = tmp_path / "elsewhere" / "class.html"
    assert report.main(results_dir=tmp_path / "run", out=out) == 0
    assert out.is_file() and not (tmp_path / "run" / "report.html").exists()
    assert capsys.readouterr().out == f"{out}\n"


def test_report_on_an_empty_folder_says_what_it_expected(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        report.main(results_dir=tmp_path, out=None)
    assert str(info.value) == (
        f"no results in {tmp_path}: expected <student>/result.full.json files written by "
        f"`grader grade --out {tmp_path}`, found an empty folder"
    )


def test_report_on_a_folder_of_other_things_lists_what_it_found(tmp_path):
    (tmp_path / "grades.csv").write_text("x")
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "results.json").write_text("{}")
    with pytest.raises(ConfigurationError) as info:
        report.main(results_dir=tmp_path, out=None)
    assert str(info.value).endswith("found 2 entries: alice, grades.csv")


def test_report_on_a_missing_folder(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        report.main(results_dir=tmp_path / "nope", out=None)
    assert str(info.value) == (
        f"results folder {tmp_path / 'nope'} not found: expected the --out folder of a "
        "`grader grade` run"
    )


def test_report_on_an_unreadable_result(tmp_path):
    (tmp_path / "alice").mkdir()
    bad = tmp_path / "alice" / "result.full.json"
    bad.write_text('{"student": "alice", "surprise": 1}')
    with pytest.raises(ConfigurationError) as info:
        report.main(results_dir=tmp_path, out=None)
    assert str(info.value).startswith(f"{bad}: not a result this grader can read (TypeError: ")
    assert str(info.value).endswith(
        "expected a file written by `grader grade` — regrade that student with --force"
    )


def test_cli_report_exits_2_with_the_message(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"grader: error: no results in {tmp_path}: expected")
