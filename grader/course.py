"""Where the course lives and what each assignment is made of.

The hidden suites are found relative to the installed grader (a checkout or the Docker image),
or through ``GRADER_COURSE_ROOT``; a student's copy of the assignments never holds them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from grader.errors import ConfigurationError

PACKAGE_DIR = Path(__file__).resolve().parent


def course_root() -> Path:
    env = os.environ.get("GRADER_COURSE_ROOT")
    return Path(env).resolve() if env else PACKAGE_DIR.parent


def hidden_suites_dir() -> Path:
    return course_root() / "autograde_tests"


def released_dir() -> Path:
    """Where released assignments live: ``assignments/<name>/`` holds the student notebook and
    its public checks (``test_public.py``), copied from ``solutions/<name>/`` at release."""
    return course_root() / "assignments"


@dataclass(frozen=True)
class GradedTest:
    test_id: str
    """The pytest function name in the hidden suite."""
    name: str
    """Display name, ``"<function>: <what>"``."""
    points: float

    @property
    def function(self) -> str:
        return self.name.split(":", 1)[0].strip()


@dataclass(frozen=True)
class Assignment:
    name: str
    notebook: str
    functions: tuple[str, ...]
    forbidden_imports: tuple[str, ...]
    needs_tensorflow: bool
    tests: tuple[GradedTest, ...] = field(default_factory=tuple)

    @property
    def suite_dir(self) -> Path:
        return hidden_suites_dir() / self.name

    @property
    def public_dir(self) -> Path:
        return released_dir() / self.name

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)

    def test(self, test_id: str) -> GradedTest | None:
        return next((t for t in self.tests if t.test_id == test_id), None)

    def points_by_function(self) -> dict[str, float]:
        out: dict[str, float] = {f: 0.0 for f in self.functions}
        for t in self.tests:
            out[t.function] = out.get(t.function, 0.0) + t.points
        return {f: p for f, p in out.items() if p}


ASSIGNMENT_NAMES = ("backprop", "mnist")


@cache
def load_assignment(name: str) -> Assignment:
    """Read ``autograde_tests/<name>/assignment.toml``: the one place points are set."""
    if name not in ASSIGNMENT_NAMES:
        raise ConfigurationError(
            f"unknown assignment {name!r}: expected one of {', '.join(ASSIGNMENT_NAMES)}"
        )
    path = hidden_suites_dir() / name / "assignment.toml"
    if not path.exists():
        raise ConfigurationError(
            f"the hidden suite for {name!r} is not at {path}; set GRADER_COURSE_ROOT to the course "
            "checkout (the folder holding autograde_tests/)"
        )
    data = tomllib.loads(path.read_text())
    tests = tuple(
        GradedTest(test_id=test_id, name=spec["name"], points=float(spec["points"]))
        for test_id, spec in data["tests"].items()
    )
    functions = tuple(data["functions"])
    for t in tests:
        if t.function not in functions:
            raise ConfigurationError(
                f"{path}: test {t.test_id} is named {t.name!r}, which does not start with one of "
                f"the graded functions {', '.join(functions)}"
            )
    return Assignment(
        name=name,
        notebook=data["notebook"],
        functions=functions,
        forbidden_imports=tuple(data.get("forbidden_imports", ())),
        needs_tensorflow=bool(data.get("needs_tensorflow", False)),
        tests=tests,
    )
