"""The typed results model. Exporters (Gradescope JSON, CSV gradebook, HTML feedback) read it;
only :mod:`grader.export.gradescope` knows Gradescope's schema."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["passed", "failed", "error", "skipped"]


@dataclass
class TestResult:
    """The outcome of one hidden test."""

    __test__ = False  # not a pytest test class, whatever its name

    name: str
    """Display name, always ``"<function>: <what is checked>"``, e.g. ``"build_cnn: parameter count"``."""
    function: str
    """The student function this test grades (the part of ``name`` before the colon)."""
    score: float
    """Points earned."""
    max_score: float
    """Points available."""
    status: Status
    """passed, failed (an assertion or a submission fault), error (the grader broke) or skipped."""
    message: str = ""
    """Student-facing explanation: what was expected, what was found, what to change. Never test source."""
    fault: str | None = None
    """Kind of submission fault behind a failure (timeout, crash, missing, refused, ...) or None."""
    figures: dict[str, Any] = field(default_factory=dict)
    """JSON data for pictures in the feedback (learning curves, confusion matrix, gradients)."""
    seconds: float = 0.0
    """Time the test took in the checking process."""
    bonus: bool = False
    """Extra credit: its points add on top of the total and never count in ``max_score``."""


@dataclass
class SubmissionResult:
    """Everything the grader concluded about one submission."""

    student: str
    """Student identifier (nbgrader student id, or the notebook's file stem)."""
    assignment: str
    """Assignment name (its folder under ``autograde_tests/``)."""
    notebook: str
    """Path of the graded notebook."""
    profile: str
    """Grading profile (``quick`` or ``full``)."""
    tests: list[TestResult] = field(default_factory=list)
    """One entry per hidden test, in suite order."""
    isolation: str = "unknown"
    """Isolation level the student's code ran under (``bubblewrap``, ``namespaces``, ``rlimits``)."""
    isolation_details: list[str] = field(default_factory=list)
    """What that level includes and what was missing on this host."""
    device: str = "CPU"
    """Device the grader trained on, e.g. ``CPU`` or ``GPU:0 (NVIDIA H100)``."""
    load_messages: list[str] = field(default_factory=list)
    """Problems found while loading the notebook (syntax errors with cell and line, forbidden imports)."""
    limits_hit: list[str] = field(default_factory=list)
    """Sandbox limits the submission ran into: ``time``, ``memory``, ``output``, ``processes``."""
    grader_error: str | None = None
    """Traceback when the grader itself failed on this submission (staff only)."""
    seconds: float = 0.0
    """Wall time to grade this submission."""
    grader_version: str = ""
    """Version of the grader that produced this result."""

    @staticmethod
    def is_bonus(test: TestResult) -> bool:
        """Whether ``test`` is extra credit (``bonus = true`` in ``assignment.toml``)."""
        return test.bonus

    @property
    def score(self) -> float:
        """Points earned, bonus points included (they add on top of ``max_score``)."""
        return round(sum(t.score for t in self.tests), 6)

    @property
    def max_score(self) -> float:
        """Points available from the required tests only; bonus points are extra credit."""
        return round(sum(t.max_score for t in self.tests if not self.is_bonus(t)), 6)

    @property
    def bonus_score(self) -> float:
        """Points earned on bonus tests (already inside ``score``)."""
        return round(sum(t.score for t in self.tests if self.is_bonus(t)), 6)

    @property
    def bonus_max_score(self) -> float:
        """Bonus points available on top of ``max_score``."""
        return round(sum(t.max_score for t in self.tests if self.is_bonus(t)), 6)

    def by_function(self) -> dict[str, tuple[float, float]]:
        """Points earned and available per graded function, in suite order."""
        out: dict[str, tuple[float, float]] = {}
        for t in self.tests:
            got, avail = out.get(t.function, (0.0, 0.0))
            out[t.function] = (round(got + t.score, 6), round(avail + t.max_score, 6))
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubmissionResult:
        tests = [TestResult(**t) for t in data.get("tests", [])]
        fields = {k: v for k, v in data.items() if k != "tests"}
        return cls(tests=tests, **fields)

    def save(self, path: Path) -> None:
        from grader._fsutil import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> SubmissionResult:
        return cls.from_dict(json.loads(path.read_text()))
