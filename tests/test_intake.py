"""Intake and the run folder: student ids to folders, discovery, the TA's terminal, resuming on
content, the folder the grader runs from, Ctrl-C, and the TA's outputs (grades.csv, report)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader import report, runner
from grader.errors import ConfigurationError
from grader.export.classreport import normalise_message, render_class_report, summarize
from grader.progress import plain, print_summary
from grader.results import SubmissionResult, TestResult
from grader.rundir import JobRecord, RunDir, assign_folders, is_plain
from tests.conftest import ROOT, SAMPLES, run_grader

BACKPROP = SAMPLES / "backprop"
FUNCTIONS = ["sigmoid", "forward", "total_error", "backward", "update", "train_step"]


def _copy(name: str, to: Path) -> Path:
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(BACKPROP / f"{name}.ipynb", to)
    return to


def _grader() -> list[str]:
    """The installed `grader` script: unlike `python -m`, it does not import from the cwd."""
    script = Path(sys.executable).parent / "grader"
    return [str(script)] if script.exists() else [sys.executable, "-m", "grader"]


# ---------------------------------------------------------------- names become folders


def test_plain_ids_are_their_own_folder():
    assert assign_folders(["alice", "bob.smith", "s_01-x"]) == {
        "alice": "alice", "bob.smith": "bob.smith", "s_01-x": "s_01-x"}


@pytest.mark.parametrize("student", [".", "..", "...", ".logs", "grades.csv", "REPORT.HTML",
                                     "a/b", "tab\there", "esc\x1b[2J", "x" * 65, "", "nul",
                                     "élève", "-rf"])
def test_unsafe_ids_get_a_slug_and_hash(student):
    folder = assign_folders([student])[student]
    assert not is_plain(student)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*-[0-9a-f]{8}", folder), folder
    assert folder.lower() not in (".", "..", "grades.csv", "report.html", ".logs")


def test_folders_are_unique_ignoring_case_and_keep_earlier_owners():
    folders = assign_folders(["alice", "Alice", "ALICE"])
    assert folders["alice"] == "alice"
    assert len({f.lower() for f in folders.values()}) == 3
    # a later run keeps the folders earlier runs gave, whoever comes first now
    again = assign_folders(["ALICE", "alice", "Alice"], existing=folders)
    assert again == {s: folders[s] for s in ["ALICE", "alice", "Alice"]}


def test_a_derived_name_never_takes_a_real_students_folder():
    derived = assign_folders([".."])[".."]
    # a student whose id is exactly that name keeps it; the hostile id moves on
    folders = assign_folders(["..", derived])
    assert folders[derived] == derived
    assert folders[".."] != derived and folders[".."].startswith(derived)
    # an existing folder of another run is never given to someone new
    assert assign_folders(["bob"], occupied=["BOB"])["bob"] != "bob"
    assert assign_folders(["bob"], occupied=["bob"])["bob"] == "bob"


def test_job_record_round_trips():
    record = JobRecord(student="a\nb", folder="a-b-12345678", notebook="/x/a.ipynb",
                       sha256="0" * 64, assignment="backprop", profile="quick")
    assert JobRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


# ---------------------------------------------------------------- discovery


def test_same_file_twice_is_graded_once_and_duplicate_ids_are_numbered(tmp_path):
    alice = _copy("reference", tmp_path / "a" / "alice.ipynb")
    _copy("reference", tmp_path / "b" / "alice.ipynb")
    _copy("reference", tmp_path / "b" / "alice (2).ipynb")
    found = runner.discover([tmp_path / "a", alice, tmp_path / "b"], "backprop")
    assert [(f.student, f.notebook.parent.name, f.notebook.name) for f in found] == [
        ("alice", "a", "alice.ipynb"), ("alice (2)", "b", "alice (2).ipynb"),
        ("alice (3)", "b", "alice.ipynb")]


def test_links_folders_and_fifos_are_submissions_never_followed(tmp_path):
    subs = tmp_path / "subs"
    _copy("reference", subs / "real.ipynb")
    (subs / "link.ipynb").symlink_to(BACKPROP / "reference.ipynb")
    (subs / "dir.ipynb").mkdir()
    os.mkfifo(subs / "pipe.ipynb")
    (subs / "notes.txt").write_text("not a submission")
    found = runner.discover([subs], "backprop")
    assert [f.student for f in found] == ["dir", "link", "pipe", "real"]
    assert found[1].notebook == subs / "link.ipynb"  # not resolved to its target


def test_a_linked_student_folder_in_nbgrader_layout_is_refused_when_read(tmp_path):
    course = tmp_path / "course" / "submitted"
    _copy("reference", course / "ann" / "backprop" / "backprop.ipynb")
    (course / "eve").mkdir(parents=True)
    (course / "eve" / "backprop").symlink_to(tmp_path)
    found = runner.discover([tmp_path / "course"], "backprop")
    assert [(f.student, f.notebook.name) for f in found] == [("ann", "backprop.ipynb"),
                                                            ("eve", "backprop")]


# ---------------------------------------------------------------- the TA's terminal


def test_plain_removes_escapes_and_control_characters():
    text = "a\x1b[2Jb\x1b]0;title\x07c\x1b]8;;http://x\x1b\\d\x9b31me\x00f\u202eg\nh\ti"
    assert plain(text) == "abcdefg h i"
    assert plain("[/] [bold]x[/bold]") == "[/] [bold]x[/bold]"


def _result(student: str, **fields) -> SubmissionResult:
    tests = fields.pop("tests", [TestResult(name="sigmoid: values", function="sigmoid",
                                            score=1.0, max_score=2.0, status="failed",
                                            message="wrong")])
    return SubmissionResult(student=student, assignment="backprop", notebook="x.ipynb",
                            profile="quick", tests=tests, **fields)


def test_summary_shows_student_text_plain_and_notes_whole(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "230")
    note = "cell 3, line 1: RuntimeError: [/] \x1b]0;TITLE\x07 " + "long note " * 12 + "END"
    results = [_result("[/]\x1b[2J", load_messages=[note]), _result("bob")]
    print_summary(results, FUNCTIONS, tmp_path, changed=1)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "TITLE" not in out
    assert "[/]" in out and "END" in out
    assert max(len(line) for line in out.splitlines()) > 160  # the terminal's width is used
    assert "1 submission(s) regraded because their notebook changed" in out


def test_many_long_function_names_leave_the_students_ids_readable(tmp_path, capsys,
                                                                      monkeypatch):
    """Nine graded functions with long names (losses_optimizers has them) in 160 columns."""
    monkeypatch.delenv("COLUMNS", raising=False)
    functions = [f"cross_entropy_from_logits_grad_{i}" for i in range(9)]
    tests = [TestResult(name=f"{f}: values", function=f, score=2.0, max_score=3.0,
                        status="failed", message="wrong") for f in functions]
    print_summary([_result("adam_without_bias_correction", tests=tests)], functions, tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 160
    assert any("adam_without_bias_corr" in line for line in lines), "\n".join(lines)
    assert sum(line.count("2/3") for line in lines) == 9  # every function's score is shown


# ---------------------------------------------------------------- the class report


def test_failure_messages_are_grouped_by_normalised_text():
    assert normalise_message("cell 12, line 3: output shape (None, 28, 10), expected (None, 10)"
                             ) == "cell #, line #: output shape (…), expected (…)"
    assert normalise_message("b2 is 0.5963 but expected 0.6 (w1 = -1.5e-3)") == \
        "b2 is # but expected # (w1 = #)"  # names such as b2 and w1 stay
    results = []
    for i in range(12):
        results.append(_result(f"s{i:02}", tests=[
            TestResult(name="forward: shapes", function="forward", score=0, max_score=1,
                       status="failed", message=f"cell {i + 3}, line {i}: found shape ({i}, 2)"),
            TestResult(name="sigmoid: values", function="sigmoid", score=0, max_score=1,
                       status="failed", message="same text")]))
    failures = summarize(results).common_failures
    assert [(f.test, f.count) for f in failures] == [("forward: shapes", 12),
                                                     ("sigmoid: values", 12)]
    assert failures[0].message == "cell 3, line 0: found shape (0, 2)"
    assert failures[0].pattern == "cell #, line #: found shape (…)"


def test_the_report_lists_students_with_scores_links_and_two_orders():
    results = [_result("zoe", tests=[TestResult(name="sigmoid: values", function="sigmoid",
                                                score=2, max_score=2, status="passed")]),
               _result("<amy>")]
    page = render_class_report(results, links={"zoe": "zoe/feedback.html"})
    by_name = page[page.index('id="students-by-name"'):page.index('id="students-by-score"')]
    by_score = page[page.index('id="students-by-score"'):]
    assert by_name.index("&lt;amy&gt;") < by_name.index(">zoe<")
    assert by_score.index(">zoe<") < by_score.index("&lt;amy&gt;")
    assert '<a href="zoe/feedback.html">feedback</a>' in by_name
    assert "<amy>" not in page and "<script" not in page
    assert '<td class="num score">2 / 2</td>' in by_name


def test_report_links_each_students_feedback_page(tmp_path, capsys):
    for folder, student in [("alice", "alice"), ("x-1234abcd", "x/../y")]:
        result = _result(student)
        result.save(tmp_path / "run" / folder / "result.full.json")
        (tmp_path / "run" / folder / "feedback.html").write_text("ok")
    assert report.main(results_dir=tmp_path / "run", out=tmp_path / "elsewhere" / "r.html") == 0
    page = (tmp_path / "elsewhere" / "r.html").read_text(encoding="utf-8")
    assert 'href="../run/alice/feedback.html"' in page
    assert 'href="../run/x-1234abcd/feedback.html"' in page


def test_report_out_under_a_file_is_a_clear_error(tmp_path):
    _result("alice").save(tmp_path / "run" / "alice" / "result.full.json")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError) as info:
        report.main(results_dir=tmp_path / "run", out=tmp_path / "file" / "report.html")
    assert str(info.value) == (
        f"--out {tmp_path / 'file' / 'report.html'}: {tmp_path / 'file'} is a file, not a "
        "folder; expected a path whose folders exist or can be made — choose another --out")
    with pytest.raises(ConfigurationError) as info:
        report.main(results_dir=tmp_path / "file", out=None)
    assert str(info.value) == (f"results folder {tmp_path / 'file'} is a file: expected the "
                               "--out folder of a `grader grade` run")


# ---------------------------------------------------------------- the run folder


def test_grade_into_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "out").write_text("not a folder")
    for out in (tmp_path / "out", tmp_path / "out" / "deeper"):
        proc = run_grader("grade", str(BACKPROP / "reference.ipynb"), "--assignment",
                          "backprop", "--out", str(out), "--quiet")
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines()[-1] == (
            f"grader: error: --out {out}: {tmp_path / 'out'} is a file; expected a folder for "
            "the results (an existing one, or a new name) — choose another --out")
        assert "Traceback" not in proc.stderr


def test_a_second_assignment_into_the_same_out_is_refused(tmp_path):
    RunDir(tmp_path / "out").prepare("mnist")
    proc = run_grader("grade", str(BACKPROP / "reference.ipynb"), "--assignment", "backprop",
                      "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"grader: error: --out {tmp_path / 'out'} holds the results of assignment 'mnist'; "
        "expected a folder for 'backprop' — grade each assignment into its own --out folder")
    # the same, for a folder of results from before run records existed
    legacy = tmp_path / "legacy"
    _result("alice").save(legacy / "alice" / "result.full.json")
    with pytest.raises(ConfigurationError, match="holds the results of assignment 'backprop'"):
        RunDir(legacy).prepare("mnist")


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_changed_notebook_is_regraded_and_the_summary_says_so(tmp_path):
    subs = tmp_path / "subs"
    _copy("reference", subs / "alice.ipynb")
    _copy("backward_wrong_sign", subs / "bob.ipynb")
    args = ["grade", str(subs), "--assignment", "backprop", "--out", str(tmp_path / "out"),
            "--quiet"]
    first = run_grader(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    bob = tmp_path / "out" / "bob" / "result.full.json"
    alice = tmp_path / "out" / "alice" / "result.full.json"
    before = SubmissionResult.load(bob).score, alice.stat().st_mtime_ns
    assert before[0] < 18

    _copy("reference", subs / "bob.ipynb")  # bob resubmits a corrected notebook
    second = run_grader(*args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert SubmissionResult.load(bob).score == 18
    assert alice.stat().st_mtime_ns == before[1], "an unchanged notebook was regraded"
    assert "1 submission(s) regraded because their notebook changed" in second.stdout
    assert "bob,2,4,1,6,2,3,18,18," in (tmp_path / "out" / "grades.csv").read_text()


@pytest.mark.slow
def test_the_folder_the_grader_runs_from_changes_nothing(tmp_path):
    notebooks = [_copy(name, tmp_path / "subs" / f"{name}.ipynb")
                 for name in ("reference", "backward_wrong_sign")]
    decoy = tmp_path / "clone"
    (decoy / "grader").mkdir(parents=True)
    (decoy / "grader" / "__init__.py").write_text("import os\nos._exit(3)\n")
    (decoy / "grader" / "check_one.py").write_text("import os\nos._exit(3)\n")
    env = {**os.environ, "GRADER_COURSE_ROOT": str(ROOT)}
    scores = {}
    for where in (ROOT, decoy):
        out = tmp_path / f"out-{where.name}"
        proc = subprocess.run([*_grader(), "grade", *map(str, notebooks), "--assignment",
                               "backprop", "--out", str(out), "--quiet"], cwd=where, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        scores[where] = (out / "grades.csv").read_text()
    assert scores[decoy] == scores[ROOT]
    assert "reference,2,4,1,6,2,3,18,18," in scores[decoy]


def _open_in(folder: Path) -> list[int]:
    """Processes holding a file under ``folder`` open (the checking processes hold their log)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            targets = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if any(t.startswith(str(folder)) for t in targets):
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_ctrl_c_stops_at_once_and_a_rerun_resumes(tmp_path):
    subs = tmp_path / "subs"
    names = ["reference", "stub_untouched", "sigmoid_overflows", "update_mutates_params",
             "backward_wrong_sign", "forward_returns_lists"]
    for name in names:
        _copy(name, subs / f"{name}.ipynb")
    # A classmate whose notebook takes 15 s to load (a default argument that sleeps), so that
    # a grading is still under way when the others are done: a warm checking process grades a
    # backprop notebook in well under a second.
    slow = (BACKPROP / "reference.ipynb").read_text().replace(
        "def update(params, grads, lr):", "def update(params, grads, lr, _=__import__('time').sleep(15)):")
    (subs / "slow_to_load.ipynb").write_text(slow)
    names.append("slow_to_load")
    out = tmp_path / "out"
    args = [*_grader(), "grade", str(subs), "--assignment", "backprop", "--out", str(out),
            "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(args, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("*/result.full.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    while not _open_in(out) and time.monotonic() < deadline:  # between two submissions
        time.sleep(0.05)
    assert _open_in(out), "no checking process was running"
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert time.monotonic() - started < 10
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert re.search(r"interrupted — \d+ of 7 submission\(s\) graded in this run are saved in "
                     rf"{re.escape(str(out))}; run the same command again to grade the rest",
                     err), err
    time.sleep(1)
    assert _open_in(out) == [], "checking processes were left running"
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.full.json")}
    assert 1 <= len(finished) < len(names)

    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.full.json")}
    assert sorted(after) == sorted(names)
    assert all(after[s] == finished[s] for s in finished), "finished submissions were regraded"
