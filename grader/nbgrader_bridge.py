"""Bring ``grader grade`` scores into nbgrader's gradebook.

nbgrader's in-kernel autograding runs student code in the process that scores it; ``grader
grade`` is the hardened path. A TA who runs both keeps nbgrader's workflow (formgrader,
feedback, ``nbgrader export``) and makes the hardened scores the official ones:

    grader grade submitted --assignment hw1 --out graded/hw1
    grader bridge graded/hw1 --assignment hw1

For every student in the results folder (its ``result.full.json``) and every graded
function, the points ``grader grade`` gave (the sum of the tests named ``"<function>: ..."``)
become the *manual score* of that function's autograder cell (grade id ``test_<function>``).
nbgrader counts a manual score instead of the automatic one, and keeps the automatic one, so
the formgrader shows both and
``nbgrader export`` exports the hardened total. The command prints both side by side and
marks every function where they differ.

A submission the grader failed on (its result records a grader error) is left
alone and reported: a grader fault never becomes a student's zero.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from grader.course import announce_course, course_root, load_assignment
from grader.errors import ConfigurationError


@dataclass(frozen=True)
class FunctionScore:
    """One student's points on one graded function, from ``grader grade``."""

    student: str
    function: str
    score: float
    max_score: float


def read_results(results_dir: Path, assignment: str) -> tuple[list[FunctionScore], list[str]]:
    """Per-function points from each ``<student>/result.full.json`` of a ``grader grade`` run,
    and the problems (unreadable results, grader failures, another assignment) that keep a
    student out."""
    from grader.results import SubmissionResult
    from grader.rundir import RunDir

    functions = load_assignment(assignment).functions
    scores: list[FunctionScore] = []
    problems: list[str] = []
    paths = RunDir(results_dir).result_paths()
    if not paths:
        raise ConfigurationError(
            f"{results_dir} holds no <student>/result.full.json: pass the --out folder of "
            "`grader grade`"
        )
    for path in paths:
        try:
            result = SubmissionResult.load(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path.parent.name}: {path} is not a grader result ({exc}); skipped")
            continue
        student = result.student
        if result.assignment != assignment:
            problems.append(f"{student}: {path} grades {result.assignment!r}, not "
                            f"{assignment!r}; skipped")
            continue
        if result.grader_error or any(t.status == "error" for t in result.tests):
            problems.append(
                f"{student}: the grader failed on this submission (see {path}); nothing written "
                "— fix the grader problem and grade it again"
            )
            continue
        totals = {f: [0.0, 0.0] for f in functions}
        for test in result.tests:
            if test.function not in totals:
                problems.append(f"{student}: test {test.name!r} grades no function of "
                                f"{assignment}; ignored")
                continue
            totals[test.function][0] += float(test.score)
            totals[test.function][1] += float(test.max_score)
        scores += [FunctionScore(student, f, round(got, 6), round(avail, 6))
                   for f, (got, avail) in totals.items() if avail]
    return scores, problems


def write_to_gradebook(
    scores: list[FunctionScore], assignment: str, db_url: str, *, dry_run: bool = False
) -> tuple[list[str], list[str]]:
    """Set each function's autograder cell's manual score; returns (report lines, problems)."""
    from nbgrader.api import Gradebook, MissingEntry

    notebook = Path(load_assignment(assignment).notebook).stem
    lines = [f"{'student':<20} {'function':<12} {'nbgrader':>9} {'grader':>7} {'max':>5}"]
    problems: list[str] = []
    with Gradebook(db_url) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise ConfigurationError(
                f"the gradebook {db_url} has no assignment {assignment!r}: run `nbgrader "
                f"generate_assignment {assignment}` in the course directory first"
            ) from None
        for item in scores:
            cell = f"test_{item.function}"
            try:
                grade_cell = gb.find_grade_cell(cell, notebook, assignment)
            except MissingEntry:
                problems.append(f"{item.student}: the gradebook has no autograder cell {cell} "
                                f"in {notebook}.ipynb; {item.function}() not written")
                continue
            if grade_cell.max_score != item.max_score:
                problems.append(
                    f"{item.student}: {cell} is worth {grade_cell.max_score:g} points in the "
                    f"gradebook but {item.max_score:g} in the grader's results; release the "
                    "assignment again so that both read assignment.toml"
                )
                continue
            grade = _grade(gb, cell, notebook, assignment, item.student)
            auto = "-" if grade.auto_score is None else f"{grade.auto_score:g}"
            mark = "" if grade.auto_score == item.score else "   <- differs"
            lines.append(f"{item.student:<20} {item.function:<12} {auto:>9} "
                         f"{item.score:>7g} {item.max_score:>5g}{mark}")
            if not dry_run:
                grade.manual_score = item.score
                grade.needs_manual_grade = False
        if not dry_run:
            gb.db.commit()
    return lines, problems


def _grade(gb, cell: str, notebook: str, assignment: str, student: str):  # type: ignore[no-untyped-def]
    """The student's grade row for ``cell``, creating the student and an empty submission
    when nbgrader has not seen them yet."""
    from nbgrader.api import MissingEntry

    try:
        return gb.find_grade(cell, notebook, assignment, student)
    except MissingEntry:
        gb.update_or_create_student(student)
        try:
            gb.find_submission(assignment, student)
        except MissingEntry:
            with warnings.catch_warnings():
                # nbgrader's own add_submission trips SQLAlchemy's autoflush warning; harmless.
                warnings.filterwarnings("ignore", message=".*not in session.*")
                gb.add_submission(assignment, student)
        return gb.find_grade(cell, notebook, assignment, student)


def main(*, results_dir: Path, assignment: str, course_dir: Path | None = None,
         db_url: str | None = None, dry_run: bool = False) -> int:
    """Write the results into the gradebook; 0 when every student was written."""
    course_dir = (course_dir or course_root()).resolve()
    announce_course(course_dir)
    db_url = db_url or f"sqlite:///{course_dir / 'gradebook.db'}"
    scores, problems = read_results(results_dir, assignment)
    lines, more = write_to_gradebook(scores, assignment, db_url, dry_run=dry_run)
    print("\n".join(lines))
    for problem in problems + more:
        print(f"nbgrader_bridge: {problem}", file=sys.stderr)
    written = len({s.student for s in scores})
    verb = "would write" if dry_run else "wrote"
    print(f"{verb} grader scores of {written} student(s) into {db_url} as manual scores")
    return 1 if problems or more else 0
