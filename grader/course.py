"""Where the course lives and what each assignment is made of.

The course folder is found the way nbgrader finds its course: the current folder or the first
of its parents that holds ``nbgrader_config.py`` or ``autograde_tests/``; else the folder named
by ``GRADER_COURSE_ROOT``; else it is an error. Each assignment is a folder
``autograde_tests/<name>/`` holding ``assignment.toml`` (its functions, points, forbidden
imports, data and profiles), its hidden suite (``test_*.py``) and its own fixtures
(``conftest.py``). The grader names no assignment: it reads these files.

A student's copy of the course never holds ``autograde_tests/``; what a student's checks need
travels inside the released notebook (see :mod:`grader.check`).
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from grader.errors import ConfigurationError

PACKAGE_DIR = Path(__file__).resolve().parent
COURSE_ENV = "GRADER_COURSE_ROOT"
#: A folder holding one of these is a course folder.
COURSE_MARKERS = ("nbgrader_config.py", "autograde_tests")
SUITES = "autograde_tests"
RELEASED = "assignments"
SOLUTIONS = "solutions"
TOML = "assignment.toml"


def find_course_root(start: Path | None = None) -> Path | None:
    """The course folder for ``start`` (default: the current folder), or None if none."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in COURSE_MARKERS):
            return folder
    env = os.environ.get(COURSE_ENV)
    return Path(env).resolve() if env else None


def course_root(start: Path | None = None) -> Path:
    """The course folder; a :class:`ConfigurationError` that says how to name one if none."""
    found = find_course_root(start)
    if found is None:
        raise ConfigurationError(
            f"no course folder found: expected {Path.cwd()} or one of its parents to hold "
            f"{' or '.join(COURSE_MARKERS)}, or {COURSE_ENV} to be set; run the command in the "
            f"course folder, or set {COURSE_ENV}=/path/to/the/course")
    return found


_announced: set[Path] = set()


def announce_course(root: Path) -> None:
    """One line on stderr naming the course folder a command uses (once per process)."""
    if root not in _announced:
        _announced.add(root)
        print(f"grader: course folder {root}", file=sys.stderr)


def hidden_suites_dir(root: Path | None = None) -> Path:
    return (root or course_root()) / SUITES


def released_dir(root: Path | None = None) -> Path:
    """Where released assignments live: ``assignments/<name>/`` holds the student notebook and
    its public checks (``test_public.py``), copied from ``solutions/<name>/`` at release."""
    return (root or course_root()) / RELEASED


def discover_assignments(root: Path | None = None) -> tuple[str, ...]:
    """The assignments of a course: each ``autograde_tests/<name>/assignment.toml``, sorted."""
    suites = hidden_suites_dir(root)
    if not suites.is_dir():
        return ()
    return tuple(sorted(p.parent.name for p in suites.glob(f"*/{TOML}") if p.is_file()))


@dataclass(frozen=True)
class GradedTest:
    test_id: str
    """The pytest function name in the hidden suite."""
    name: str
    """Display name, ``"<function>: <what>"``."""
    points: float
    bonus: bool = False
    """Extra credit (``bonus = true``): its points add on top and never count in ``max_score``."""

    @property
    def function(self) -> str:
        return self.name.split(":", 1)[0].strip()


@dataclass(frozen=True)
class DataFile:
    """A data file an assignment's fixtures read, declared under ``[data.<key>]``.

    Looked for, in order: an explicit path (``--data KEY=PATH``), the environment variable
    ``env``, then ``~/.keras/datasets/<keras_cache>`` (``KERAS_HOME`` moves it)."""

    key: str
    env: str = ""
    keras_cache: str = ""
    description: str = ""
    keys: tuple[str, ...] = ()
    """For an ``.npz``: the arrays it must hold (``grader doctor`` checks them); () for any."""

    @property
    def cache_path(self) -> Path | None:
        """Where Keras' cache would hold the file (None: the file is not in Keras' cache)."""
        return keras_home() / "datasets" / self.keras_cache if self.keras_cache else None

    def find(self, explicit: str | os.PathLike[str] | None = None) -> Path | None:
        """Where the file is, without downloading; None if nowhere."""
        given = explicit or (os.environ.get(self.env) if self.env else None)
        if given:
            return Path(given)
        cached = self.cache_path
        return cached if cached is not None and cached.exists() else None


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


DEFAULT_FORBIDDEN_MESSAGE = "this exercise must not use {module}"


@dataclass(frozen=True)
class Assignment:
    name: str
    notebook: str
    functions: tuple[str, ...]
    forbidden_imports: tuple[str, ...]
    needs_tensorflow: bool
    tests: tuple[GradedTest, ...] = field(default_factory=tuple)
    forbidden_message: str = DEFAULT_FORBIDDEN_MESSAGE
    """What a student reads when an import is blocked; ``{module}`` is the blocked name."""
    max_model_params: int | None = None
    """The largest model (in parameters) a submission may return; None: no bound."""
    data: tuple[DataFile, ...] = ()
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """``[profiles.<name>]`` tables of the toml, read by :func:`grader.profiles.get_profile`."""
    root: Path | None = None
    """The course folder the assignment was read from; None: the current course."""

    @property
    def course_dir(self) -> Path:
        return self.root or course_root()

    @property
    def suite_dir(self) -> Path:
        return hidden_suites_dir(self.course_dir) / self.name

    @property
    def public_dir(self) -> Path:
        return released_dir(self.course_dir) / self.name

    @property
    def max_score(self) -> float:
        """The required points; extra-credit tests add on top."""
        return sum(t.points for t in self.tests if not t.bonus)

    def points_by_function(self) -> dict[str, float]:
        out: dict[str, float] = {f: 0.0 for f in self.functions}
        for t in self.tests:
            out[t.function] = out.get(t.function, 0.0) + t.points
        return {f: p for f, p in out.items() if p}

    def forbidden_text(self, module: str) -> str:
        """The message for a blocked import of ``module``."""
        return self.forbidden_message.replace("{module}", module)

    def data_files(self, explicit: Mapping[str, str | os.PathLike[str] | None] | None = None
                   ) -> dict[str, Path | None]:
        """Each declared data file's location (None where not found)."""
        given = explicit or {}
        return {d.key: d.find(given.get(d.key)) for d in self.data}

    def data_paths(self, explicit: Mapping[str, str | os.PathLike[str] | None] | None = None
                   ) -> tuple[Path, ...]:
        """The folders holding the assignment's data: what a sandbox must hide."""
        return tuple(dict.fromkeys(p.resolve().parent for p in
                                   self.data_files(explicit).values() if p is not None))


def load_assignment(name: str, root: Path | None = None) -> Assignment:
    """Read ``autograde_tests/<name>/assignment.toml`` of the course: the one place points are
    set."""
    return _load(name, (root or course_root()).resolve())


@cache
def _load(name: str, root: Path) -> Assignment:
    known = discover_assignments(root)
    if name not in known:
        expected = ", ".join(known) if known else f"none: {hidden_suites_dir(root)} holds no */{TOML}"
        raise ConfigurationError(f"unknown assignment {name!r}: expected one of {expected}")
    path = hidden_suites_dir(root) / name / TOML
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    return assignment_from_toml(name, data, path, root)


def assignment_from_toml(name: str, data: Mapping[str, Any], path: Path | str,
                         root: Path | None) -> Assignment:
    """An :class:`Assignment` from the parsed toml ``data`` (``path`` names it in errors)."""
    for key in ("notebook", "functions"):
        if key not in data:
            raise ConfigurationError(f"{path}: missing the key {key!r}")
    tests = tuple(
        GradedTest(test_id=test_id, name=spec["name"], points=float(spec["points"]),
                   bonus=bool(spec.get("bonus", False)))
        for test_id, spec in data.get("tests", {}).items()
    )
    functions = tuple(data["functions"])
    for t in tests:
        if t.function not in functions:
            raise ConfigurationError(
                f"{path}: test {t.test_id} is named {t.name!r}, which does not start with one of "
                f"the graded functions {', '.join(functions)}"
            )
    data_files = tuple(
        DataFile(key=key, env=str(spec.get("env", "")), keras_cache=str(spec.get("keras_cache", "")),
                 description=str(spec.get("description", "")),
                 keys=tuple(str(k) for k in spec.get("keys", ())))
        for key, spec in data.get("data", {}).items()
    )
    max_params = data.get("max_model_params")
    return Assignment(
        name=name,
        notebook=data["notebook"],
        functions=functions,
        forbidden_imports=tuple(data.get("forbidden_imports", ())),
        forbidden_message=str(data.get("forbidden_message", DEFAULT_FORBIDDEN_MESSAGE)),
        needs_tensorflow=bool(data.get("needs_tensorflow", False)),
        max_model_params=int(max_params) if max_params is not None else None,
        data=data_files,
        profiles=dict(data.get("profiles", {})),
        tests=tests,
        root=root,
    )


# --- What a released notebook carries (``metadata.grader``) --------------------------------

NOTEBOOK_METADATA_KEY = "grader"
PUBLIC_CHECKS_FILE = "test_public.py"


def released_metadata(assignment: Assignment, public_checks: str) -> dict[str, Any]:
    """``metadata.grader`` of a released notebook: what the student's checks need, with no
    hidden file (the names of the graded functions, the forbidden imports, the public checks).
    Points and hidden tests stay out."""
    return {
        "assignment": assignment.name,
        "notebook": assignment.notebook,
        "functions": list(assignment.functions),
        "forbidden_imports": list(assignment.forbidden_imports),
        "forbidden_message": assignment.forbidden_message,
        "needs_tensorflow": assignment.needs_tensorflow,
        "public_checks": public_checks,
    }


def assignment_from_metadata(meta: Mapping[str, Any]) -> Assignment:
    """The :class:`Assignment` a released notebook describes (no hidden tests, no points)."""
    return Assignment(
        name=str(meta["assignment"]),
        notebook=str(meta.get("notebook", f"{meta['assignment']}.ipynb")),
        functions=tuple(meta.get("functions", ())),
        forbidden_imports=tuple(meta.get("forbidden_imports", ())),
        forbidden_message=str(meta.get("forbidden_message", DEFAULT_FORBIDDEN_MESSAGE)),
        needs_tensorflow=bool(meta.get("needs_tensorflow", False)),
    )
