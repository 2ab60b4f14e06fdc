"""Release: generate the student notebooks in ``assignments/`` from the masters in
``solutions/`` with nbgrader, then check that nothing an instructor keeps private got out.

``grader release [NAMES]`` runs ``nbgrader generate_assignment NAME --force`` in the course
directory (``nbgrader_config.py`` at the repository root makes ``solutions/`` the source and
``assignments/`` the release) and checks the result. ``grader release --check`` changes
nothing: it generates each assignment into a temporary folder and reports every difference
with ``assignments/``, then runs the same checks.

The checks, in order:

1. ``check_source``: each master has one autograder cell per graded function, whose points
   equal that function's points in ``autograde_tests/<name>/assignment.toml``.
2. ``compare_release`` (``--check`` only): ``assignments/`` equals a fresh release, cell by
   cell (sources and metadata; volatile editor metadata ignored).
3. ``find_leaks``: no line from a ``### BEGIN SOLUTION`` region, no line from a
   ``### BEGIN HIDDEN TESTS`` region, no nbgrader marker, no call of the hidden suites
   (``autograde(``) and no line of the hidden suites' source appears in a released notebook.

Each problem names the notebook, the cell (index and grade id) and the line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from grader.course import (
    NOTEBOOK_METADATA_KEY,
    PUBLIC_CHECKS_FILE,
    RELEASED,
    SOLUTIONS,
    announce_course,
    course_root,
    discover_assignments,
    load_assignment,
    released_metadata,
)
from grader.errors import ConfigurationError

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
#: Strings that must never appear in a released notebook, whatever their context.
FORBIDDEN_STRINGS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
                     "autograde(")
#: Cell metadata that editors change on their own; never a difference worth reporting.
VOLATILE_CELL_METADATA = ("collapsed", "scrolled", "execution", "ExecuteTime", "jupyter",
                          "jp-MarkdownHeadingCollapsed", "editable", "deletable", "tags")
#: A line of a hidden suite shorter than this (stripped) is too common to count as a leak.
MIN_SUITE_LINE = 25
#: Solution and hidden-test lines shorter than this (``)``, ``],``) are too common to count.
MIN_REGION_LINE = 8


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a release, located precisely enough to fix."""

    notebook: str
    """The notebook, relative to the course directory."""
    where: str
    """The cell ("cell 12 (grade id build_cnn)") or "" for the notebook as a whole."""
    message: str
    """What was expected and what was found."""

    def __str__(self) -> str:
        return f"{self.notebook}, {self.where}: {self.message}" if self.where else (
            f"{self.notebook}: {self.message}"
        )


# --- Reading notebooks -------------------------------------------------------------------


def _cell_label(index: int, cell: NotebookNode) -> str:
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return f"cell {index}" + (f" (grade id {grade_id})" if grade_id else "")


def _region_lines(source: str, markers: tuple[str, str]) -> Iterator[str]:
    """The stripped, non-blank lines strictly inside each ``begin ... end`` region."""
    begin, end = markers
    inside = False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(begin):
            inside = True
        elif stripped.startswith(end):
            inside = False
        elif inside and stripped:
            yield stripped


def _outside_lines(source: str) -> Iterator[str]:
    """The stripped lines outside every solution and hidden-test region."""
    depth = 0
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith((SOLUTION_MARKERS[0], HIDDEN_MARKERS[0])):
            depth += 1
        elif stripped.startswith((SOLUTION_MARKERS[1], HIDDEN_MARKERS[1])):
            depth = max(depth - 1, 0)
        elif depth == 0:
            yield stripped


def _cell_texts(cell: NotebookNode) -> Iterator[tuple[str, str]]:
    """(part, text) for the cell's source and each text it shows as output."""
    yield "source", cell.get("source", "")
    for number, output in enumerate(cell.get("outputs", []), start=1):
        texts: list[str] = []
        if "text" in output:
            texts.append(output["text"])
        for value in output.get("data", {}).values():
            if isinstance(value, str):
                texts.append(value)
        texts.extend(output.get("traceback", []))
        for text in texts:
            yield f"output {number}", text


@dataclass(frozen=True)
class Secrets:
    """What one master notebook keeps from students."""

    solution_lines: frozenset[str]
    hidden_lines: frozenset[str]
    suite_lines: dict[str, str]
    """Non-trivial lines of the hidden suites -> the file they come from."""


def secrets_of(master: NotebookNode, suite_files: Iterable[Path] = ()) -> Secrets:
    """The lines of ``master`` that must not reach students. A line that also appears outside
    every private region (``return model``, ``)``) is public anyway and is not counted."""
    public: set[str] = set()
    solution: set[str] = set()
    hidden: set[str] = set()
    for cell in master.cells:
        public.update(_outside_lines(cell.source))
        solution.update(_region_lines(cell.source, SOLUTION_MARKERS))
        hidden.update(_region_lines(cell.source, HIDDEN_MARKERS))
    suite: dict[str, str] = {}
    for path in suite_files:
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if len(stripped) >= MIN_SUITE_LINE and not stripped.startswith("#"):
                suite.setdefault(stripped, path.name)
    def distinctive(lines: set[str]) -> frozenset[str]:
        return frozenset(line for line in lines - public
                         if len(line) >= MIN_REGION_LINE and any(ch.isalpha() for ch in line))

    return Secrets(
        solution_lines=distinctive(solution),
        hidden_lines=distinctive(hidden),
        suite_lines={line: name for line, name in suite.items() if line not in public},
    )


# --- The checks ----------------------------------------------------------------------------


def find_leaks(released: NotebookNode, secrets: Secrets, notebook: str) -> list[Problem]:
    """Every solution line, hidden-test line, marker or hidden-suite line in ``released``."""
    problems: list[Problem] = []
    for index, cell in enumerate(released.cells):
        for part, text in _cell_texts(cell):
            for number, line in enumerate(text.splitlines(), start=1):
                stripped = line.strip()
                if not stripped:
                    continue
                found = _leak_in_line(stripped, secrets)
                if found:
                    problems.append(Problem(
                        notebook, _cell_label(index, cell),
                        f"{part} line {number} {found}: {stripped!r}",
                    ))
    return problems


def _leak_in_line(line: str, secrets: Secrets) -> str | None:
    if line in secrets.solution_lines:
        return "is solution code (from a ### BEGIN SOLUTION region of the master)"
    if line in secrets.hidden_lines:
        return "is hidden-test code (from a ### BEGIN HIDDEN TESTS region of the master)"
    if line in secrets.suite_lines:
        return f"is a line of the hidden suite {secrets.suite_lines[line]}"
    for marker in FORBIDDEN_STRINGS:
        if marker in line:
            return f"contains {marker!r}, which only the master may hold"
    return None


WORTH = re.compile(r"worth [0-9]+(?:\.[0-9]+)? points?")


def _worth(points: float) -> str:
    return f"worth {points:g} point{'' if points == 1 else 's'}"


def autograder_cells(name: str, master: NotebookNode) -> Iterator[tuple[int, NotebookNode, str | None]]:
    """(index, cell, graded function or None when the call is malformed) per autograder cell."""
    for index, cell in enumerate(master.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade") or meta.get("solution"):
            continue
        call = next((line for line in _region_lines(cell.source, HIDDEN_MARKERS)
                     if line.startswith("autograde(")), None)
        yield index, cell, _called_function(call, name) if call else None


def apply_points(name: str, master: NotebookNode, root: Path | None = None) -> list[str]:
    """Set each autograder cell's nbgrader points and its "worth N points" comment from
    assignment.toml; the labels of the cells changed."""
    expected = load_assignment(name, root).points_by_function()
    changed: list[str] = []
    for index, cell, function in autograder_cells(name, master):
        if function is None or function not in expected:
            continue
        points = expected[function]
        meta = cell.metadata.nbgrader
        source = WORTH.sub(_worth(points), cell.source)
        if float(meta.get("points", -1)) != points or source != cell.source:
            meta["points"] = points
            cell.source = source
            changed.append(_cell_label(index, cell))
    return changed


def check_source(name: str, master: NotebookNode, notebook: str,
                 root: Path | None = None) -> list[Problem]:
    """One autograder cell per graded function, worth that function's points in the toml
    (metadata and "worth N points" comment)."""
    expected = load_assignment(name, root).points_by_function()
    found: dict[str, float] = {}
    problems: list[Problem] = []
    for index, cell, function in autograder_cells(name, master):
        if function is None:
            problems.append(Problem(notebook, _cell_label(index, cell),
                                    f"an autograder cell should hold, inside its hidden region, "
                                    f'only autograde("{name}", "<function>", globals())'))
            continue
        points = float(cell.metadata.nbgrader.get("points", 0))
        found[function] = found.get(function, 0.0) + points
        for said in WORTH.findall(cell.source):
            if function in expected and said != _worth(expected[function]):
                problems.append(Problem(notebook, _cell_label(index, cell),
                                        f"its comment says {said!r}, assignment.toml gives "
                                        f"{expected[function]:g}: run `grader release`"))
    for function, points in expected.items():
        if function not in found:
            problems.append(Problem(notebook, "", f"no autograder cell for {function}() "
                                    f"({points:g} points in assignment.toml)"))
        elif found[function] != points:
            problems.append(Problem(notebook, "", f"the autograder cells for {function}() are "
                                    f"worth {found[function]:g} points; assignment.toml gives "
                                    f"{points:g}: run `grader release`, which sets them"))
    for function in sorted(set(found) - set(expected)):
        problems.append(Problem(notebook, "", f"autograder cell for {function}(), which "
                                "assignment.toml does not grade"))
    return problems


def _called_function(call: str, name: str) -> str | None:
    prefix = f'autograde("{name}", "'
    if call.startswith(prefix) and call.endswith('", globals())'):
        return call[len(prefix):-len('", globals())')]
    return None


def _comparable(cell: NotebookNode) -> dict[str, object]:
    metadata = {k: v for k, v in cell.get("metadata", {}).items()
                if k not in VOLATILE_CELL_METADATA}
    return {"cell_type": cell.cell_type, "source": cell.source, "metadata": metadata}


def compare_release(fresh: NotebookNode, current: NotebookNode, notebook: str) -> list[Problem]:
    """Every cell where ``current`` (assignments/) differs from a fresh release."""
    hint = "run `grader release` to regenerate it from solutions/"
    if fresh.metadata.get(NOTEBOOK_METADATA_KEY) != current.metadata.get(NOTEBOOK_METADATA_KEY):
        return [Problem(notebook, "", f"its metadata.{NOTEBOOK_METADATA_KEY} (the assignment and "
                        f"its public checks) differs from a fresh release: {hint}")]
    if len(fresh.cells) != len(current.cells):
        return [Problem(notebook, "", f"has {len(current.cells)} cells, a fresh release has "
                        f"{len(fresh.cells)}: {hint}")]
    problems: list[Problem] = []
    for index, (want, have) in enumerate(zip(fresh.cells, current.cells, strict=True)):
        want_c, have_c = _comparable(want), _comparable(have)
        for key in ("cell_type", "source", "metadata"):
            if want_c[key] != have_c[key]:
                problems.append(Problem(notebook, _cell_label(index, have),
                                        f"{key} differs from a fresh release: {hint}"))
        if have.get("outputs"):
            problems.append(Problem(notebook, _cell_label(index, have),
                                    f"has outputs; a release has none: {hint}"))
    return problems


# --- Running nbgrader ---------------------------------------------------------------------


def _nbgrader_env() -> dict[str, str]:
    """nbgrader calls ``alembic`` by name: put this interpreter's scripts first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def generate(name: str, root: Path, release_dir: Path | None = None) -> None:
    """``nbgrader generate_assignment NAME --force`` in the course directory ``root``; into
    ``release_dir`` (without touching the gradebook) when given, else into assignments/."""
    command = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force"]
    if release_dir is not None:
        command += ["--no-db", f"--CourseDirectory.release_directory={release_dir}"]
    done = subprocess.run(command, cwd=root, env=_nbgrader_env(), capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise ConfigurationError(
            f"nbgrader generate_assignment {name} failed in {root} (exit {done.returncode}):\n"
            + (done.stderr or done.stdout)[-4000:]
        )


def _read(path: Path) -> NotebookNode:
    return nbformat.read(path, as_version=4)


def stamp_release(name: str, release_dir: Path, root: Path) -> None:
    """Write ``metadata.grader`` into each released notebook: the assignment, its functions and
    forbidden imports, and the public checks released beside it, so that a student's
    ``grader check`` needs nothing else."""
    public = release_dir / PUBLIC_CHECKS_FILE
    source = public.read_text(encoding="utf-8") if public.is_file() else ""
    meta = released_metadata(load_assignment(name, root), source)
    for path in sorted(release_dir.glob("*.ipynb")):
        nb = _read(path)
        nb.metadata[NOTEBOOK_METADATA_KEY] = meta
        nbformat.write(nb, path)


def check_assignment(name: str, root: Path, fresh_dir: Path | None) -> list[Problem]:
    """All checks of one assignment; ``fresh_dir`` holds a fresh release to compare with."""
    source_dir = root / "solutions" / name
    release_dir = root / "assignments" / name
    suites = sorted((root / "autograde_tests" / name).glob("test_*.py"))
    masters = sorted(source_dir.glob("*.ipynb"))
    if not masters:
        return [Problem(f"solutions/{name}", "", "holds no notebook")]
    problems: list[Problem] = []
    for master_path in masters:
        rel_master = master_path.relative_to(root).as_posix()
        released_path = release_dir / master_path.name
        rel_released = released_path.relative_to(root).as_posix()
        master = _read(master_path)
        problems += check_source(name, master, rel_master, root)
        if not released_path.exists():
            problems.append(Problem(rel_released, "", "is missing: run `grader release`"))
            continue
        released = _read(released_path)
        if fresh_dir is not None:
            problems += compare_release(_read(fresh_dir / master_path.name), released,
                                        rel_released)
        problems += find_leaks(released, secrets_of(master, suites), rel_released)
    if fresh_dir is not None:
        fresh_files = {p.name for p in fresh_dir.iterdir()}
        current_files = {p.name for p in release_dir.iterdir()} if release_dir.exists() else set()
        for extra in sorted(current_files - fresh_files):
            problems.append(Problem(f"assignments/{name}/{extra}", "",
                                    "is not part of a fresh release: remove it"))
        for same in sorted(current_files & fresh_files):
            if same.endswith(".ipynb") or not (fresh_dir / same).is_file():
                continue
            if (fresh_dir / same).read_bytes() != (release_dir / same).read_bytes():
                problems.append(Problem(f"assignments/{name}/{same}", "",
                                        "differs from a fresh release: run `grader release`"))
        for missing in sorted(fresh_files - current_files):
            problems.append(Problem(f"assignments/{name}/{missing}", "",
                                    "is missing: run `grader release`"))
    return problems


def main(*, assignments: list[str] | None, check_only: bool, root: Path | None = None) -> int:
    """Release (or with ``check_only``, only verify) the assignments; 0 when all is well."""
    root = (root or course_root()).resolve()
    announce_course(root)
    names = assignments or list(discover_assignments(root))
    for name in names:
        load_assignment(name, root)  # an unknown name is a ConfigurationError with the valid ones
    problems: list[Problem] = []
    with tempfile.TemporaryDirectory(prefix="grader-release-") as tmp:
        for name in names:
            if check_only:
                fresh_root = Path(tmp) / name
                generate(name, root, release_dir=fresh_root)
                stamp_release(name, fresh_root / name, root)
                problems += check_assignment(name, root, fresh_root / name)
            else:
                for master_path in sorted((root / SOLUTIONS / name).glob("*.ipynb")):
                    master = _read(master_path)
                    changed = apply_points(name, master, root)
                    if changed:
                        nbformat.write(master, master_path)
                        print(f"{master_path.relative_to(root).as_posix()}: points set from "
                              f"assignment.toml in {', '.join(changed)}")
                generate(name, root)
                stamp_release(name, root / RELEASED / name, root)
                problems += check_assignment(name, root, None)
                print(f"released {name} -> assignments/{name}/")
    for problem in problems:
        print(f"grader release: {problem}", file=sys.stderr)
    if problems:
        print(f"grader release: {len(problems)} problem(s) in {', '.join(names)}",
              file=sys.stderr)
        return 1
    print(f"{', '.join(names)}: " + ("assignments/ is up to date and " if check_only else "")
          + "no solution or hidden-test text in the release")
    return 0


def copy_course(root: Path, dest: Path) -> Path:
    """A copy of the course directory (masters, release, hidden suites, nbgrader config)
    in ``dest``, for checks and tests that must not touch the real one."""
    for part in ("solutions", "assignments", "autograde_tests"):
        if (root / part).exists():
            shutil.copytree(root / part, dest / part,
                            ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy2(root / "nbgrader_config.py", dest / "nbgrader_config.py")
    return dest
