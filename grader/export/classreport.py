"""The class report: one HTML page for the instructor about a whole grading run.

:func:`summarize` turns the results into numbers (score histogram, pass rate per test, the
most common failures, submissions that hit limits, grading times, isolation levels, every
student's score); :func:`render_class_report` lays them out with two pictures, and a student
list that sorts by name or score without a script (the page allows none). The page is for
staff: it shows the grader's tracebacks, folded, where the grader failed on a submission.

Failures are grouped by test and by their message with the details that differ from student
to student normalised (:func:`normalise_message`: shapes, numbers, cell and line numbers), so
that a class of 200 shows its common mistakes with counts.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from grader._fsutil import atomic_write_text
from grader.export import figures
from grader.export._html import describe_limit, render
from grader.export.gradebook import fault_summary
from grader.results import SubmissionResult

BANDS = 10
"""The score histogram has this many equal bands of the points available."""

COMMON_FAILURES = 10
"""How many of the most common failures the report lists."""

_SHAPE = re.compile(r"\(\s*(?:None|\d+)\s*(?:,\s*(?:None|\d+)\s*)*,?\s*\)")
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
                     r"|\.\d+(?:[eE][-+]?\d+)?|nan|inf)(?![A-Za-z_])")


def normalise_message(message: str) -> str:
    """``message`` with what differs between students of one mistake made alike: shapes become
    ``(…)``, numbers ``#`` (cell and line numbers, values, addresses), runs of spaces one."""
    text = _SHAPE.sub("(…)", message.strip() or "(no message)")
    text = _NUMBER.sub("#", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class PassRate:
    """How many of the submissions that ran a test passed it."""

    test: str
    passed: int
    ran: int

    @property
    def rate(self) -> float:
        return self.passed / self.ran if self.ran else 0.0


@dataclass(frozen=True)
class Failure:
    """One kind of failure: a test and its normalised message, with how many submissions got it."""

    test: str
    message: str
    """One submission's message of this kind, as the student read it (the first by student)."""
    count: int
    pattern: str = ""
    """The normalised message shared by the group (:func:`normalise_message`)."""


@dataclass(frozen=True)
class StudentRow:
    """One student on the report's list."""

    student: str
    score: float
    max_score: float
    link: str | None
    """Relative address of the student's feedback page, when known."""

    @property
    def percent(self) -> float:
        return round(100 * self.score / self.max_score, 6) if self.max_score else 0.0


@dataclass(frozen=True)
class LimitHit:
    student: str
    limits: list[str]
    faults: str


@dataclass(frozen=True)
class ClassSummary:
    """The numbers on the class report."""

    submissions: int
    assignments: list[str]
    profiles: list[str]
    histogram: list[tuple[str, int]]
    """(band label, submissions) from ``0–10%`` to ``90–100%``; the last band includes 100%."""
    ungraded: list[str]
    """Students with no points available (nothing could be graded); not in the histogram."""
    mean_score: float
    median_score: float
    max_score: float
    pass_rates: list[PassRate]
    """Per test, lowest pass rate first (ties by name)."""
    common_failures: list[Failure]
    """Most frequent (test, normalised message) groups among failed tests, most frequent first."""
    limits_hit: list[LimitHit]
    times: list[tuple[str, float]]
    """(student, seconds to grade), slowest first."""
    median_seconds: float
    total_seconds: float
    isolation: list[tuple[str, int]]
    """(isolation level, submissions), most frequent first."""
    grader_errors: list[tuple[str, str]]
    """(student, traceback) where the grader itself failed."""
    students: list[StudentRow]
    """Every student by name, with score and feedback link."""
    students_by_score: list[StudentRow]
    """The same, highest score first (ties by name)."""


def _band(score: float, max_score: float) -> int:
    percent = round(100 * score / max_score, 6)
    return min(max(int(percent // (100 / BANDS)), 0), BANDS - 1)


def _band_labels() -> list[str]:
    step = 100 // BANDS
    return [f"{lo}–{lo + step}%" for lo in range(0, 100, step)]


def _ranked(counter: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))


def _common(ordered: list[SubmissionResult]) -> list[Failure]:
    counts: Counter[tuple[str, str]] = Counter()
    example: dict[tuple[str, str], str] = {}
    for result in ordered:
        for test in result.tests:
            if test.status in ("failed", "error"):
                message = test.message.strip() or "(no message)"
                key = (test.name, normalise_message(message))
                counts[key] += 1
                example.setdefault(key, message)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:COMMON_FAILURES]
    return [Failure(test, example[(test, pattern)], n, pattern)
            for (test, pattern), n in ranked]


def summarize(results: Iterable[SubmissionResult],
              links: Mapping[str, str] | None = None) -> ClassSummary:
    """The class report's numbers for ``results`` (at least one); ``links`` maps students to
    their feedback pages' addresses."""
    ordered = sorted(results, key=lambda r: r.student)
    if not ordered:
        raise ValueError("summarize() needs at least one result")
    graded = [r for r in ordered if r.max_score > 0]
    counts = [0] * BANDS
    for result in graded:
        counts[_band(result.score, result.max_score)] += 1

    passed: Counter[str] = Counter()
    ran: Counter[str] = Counter()
    for result in ordered:
        for test in result.tests:
            ran[test.name] += 1
            passed[test.name] += test.status == "passed"
    rates = [PassRate(name, passed[name], ran[name]) for name in ran]
    rates.sort(key=lambda p: (p.rate, p.test))
    rows = [StudentRow(r.student, r.score, r.max_score, (links or {}).get(r.student))
            for r in ordered]

    scores = [r.score for r in graded] or [0.0]
    seconds = [r.seconds for r in ordered]
    return ClassSummary(
        submissions=len(ordered),
        assignments=sorted({r.assignment for r in ordered}),
        profiles=sorted({r.profile for r in ordered}),
        histogram=list(zip(_band_labels(), counts, strict=True)),
        ungraded=[r.student for r in ordered if r.max_score <= 0],
        mean_score=round(statistics.fmean(scores), 6),
        median_score=round(statistics.median(scores), 6),
        max_score=max((r.max_score for r in ordered), default=0.0),
        pass_rates=rates,
        common_failures=_common(ordered),
        limits_hit=[
            LimitHit(r.student, [describe_limit(x) for x in r.limits_hit], fault_summary(r))
            for r in ordered
            if r.limits_hit
        ],
        times=sorted(((r.student, r.seconds) for r in ordered), key=lambda t: (-t[1], t[0])),
        median_seconds=round(statistics.median(seconds), 3),
        total_seconds=round(sum(seconds), 3),
        isolation=_ranked(Counter(r.isolation for r in ordered)),
        grader_errors=[(r.student, r.grader_error) for r in ordered if r.grader_error],
        students=rows,
        students_by_score=sorted(rows, key=lambda row: (-row.percent, -row.score, row.student)),
    )


def render_class_report(results: Iterable[SubmissionResult],
                        links: Mapping[str, str] | None = None) -> str:
    """The class report for ``results`` as one self-contained HTML document."""
    summary = summarize(results, links)
    histogram = figures.score_histogram(
        [label for label, _ in summary.histogram], [n for _, n in summary.histogram]
    )
    rates = figures.pass_rates([(p.test, p.rate) for p in summary.pass_rates])
    return render("classreport.html.j2", s=summary, histogram=histogram, rates=rates)


def write_class_report(results: Iterable[SubmissionResult], path: Path,
                       links: Mapping[str, str] | None = None) -> None:
    """Write :func:`render_class_report` to ``path`` atomically."""
    atomic_write_text(Path(path), render_class_report(results, links))
