"""The class report: one HTML page for the instructor about a whole grading run.

:func:`summarize` turns the results into numbers (score histogram, pass rate per test, most
common failure messages, submissions that hit limits, grading times, isolation levels);
:func:`render_class_report` lays them out with two pictures. The page is for staff: it shows
the grader's tracebacks, folded, where the grader failed on a submission.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from grader._fsutil import atomic_write_text
from grader.export import figures
from grader.export._html import describe_limit, render
from grader.export.gradebook import fault_summary
from grader.results import SubmissionResult

BANDS = 10
"""The score histogram has this many equal bands of the points available."""

COMMON_FAILURES = 15
"""How many of the most common failure messages the report lists."""


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
    """One failure message, the test it came from, and how many submissions got it."""

    test: str
    message: str
    count: int


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
    """Most frequent (test, message) pairs among failed tests, most frequent first."""
    limits_hit: list[LimitHit]
    times: list[tuple[str, float]]
    """(student, seconds to grade), slowest first."""
    median_seconds: float
    total_seconds: float
    isolation: list[tuple[str, int]]
    """(isolation level, submissions), most frequent first."""
    grader_errors: list[tuple[str, str]]
    """(student, traceback) where the grader itself failed."""


def _band(score: float, max_score: float) -> int:
    percent = round(100 * score / max_score, 6)
    return min(max(int(percent // (100 / BANDS)), 0), BANDS - 1)


def _band_labels() -> list[str]:
    step = 100 // BANDS
    return [f"{lo}–{lo + step}%" for lo in range(0, 100, step)]


def _ranked(counter: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))


def summarize(results: Iterable[SubmissionResult]) -> ClassSummary:
    """The class report's numbers for ``results`` (at least one)."""
    ordered = sorted(results, key=lambda r: r.student)
    if not ordered:
        raise ValueError("summarize() needs at least one result")
    graded = [r for r in ordered if r.max_score > 0]
    counts = [0] * BANDS
    for result in graded:
        counts[_band(result.score, result.max_score)] += 1

    passed: Counter[str] = Counter()
    ran: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    for result in ordered:
        for test in result.tests:
            ran[test.name] += 1
            passed[test.name] += test.status == "passed"
            if test.status in ("failed", "error"):
                failures[(test.name, test.message.strip() or "(no message)")] += 1
    rates = [PassRate(name, passed[name], ran[name]) for name in ran]
    rates.sort(key=lambda p: (p.rate, p.test))
    common = sorted(failures.items(), key=lambda item: (-item[1], item[0]))[:COMMON_FAILURES]

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
        common_failures=[Failure(test, message, n) for (test, message), n in common],
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
    )


def render_class_report(results: Iterable[SubmissionResult]) -> str:
    """The class report for ``results`` as one self-contained HTML document."""
    summary = summarize(results)
    histogram = figures.score_histogram(
        [label for label, _ in summary.histogram], [n for _, n in summary.histogram]
    )
    rates = figures.pass_rates([(p.test, p.rate) for p in summary.pass_rates])
    return render("classreport.html.j2", s=summary, histogram=histogram, rates=rates)


def write_class_report(results: Iterable[SubmissionResult], path: Path) -> None:
    """Write :func:`render_class_report` to ``path`` atomically."""
    atomic_write_text(Path(path), render_class_report(results))
