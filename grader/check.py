"""``grader check NOTEBOOK``: a student's public checks, from what a student has.

A student has the released notebook and the installed grader, never ``autograde_tests/``.
``grader release`` writes into each released notebook ``metadata.grader``: the assignment's
name, its graded functions, its forbidden imports and the source of its public checks. The
checks are found, in order, in that metadata, in ``test_public.py`` beside the notebook, then
in the course folder (``assignments/<name>/test_public.py``), when there is one.

The code checked is exactly what ``grader grade`` extracts from the notebook. Where a sandbox
exists (Linux with namespaces or bubblewrap) it runs there; elsewhere (Windows, macOS) it runs
unconfined, in this process, as the student's own notebook does, and the output says so. The
Unix-only sandbox modules are imported only when a sandbox is used.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from grader.course import (
    PACKAGE_DIR,
    PUBLIC_CHECKS_FILE,
    Assignment,
    announce_course,
    assignment_from_metadata,
    discover_assignments,
    find_course_root,
    load_assignment,
)
from grader.errors import ConfigurationError, GraderError, NotebookUnreadable

if TYPE_CHECKING:
    import nbformat

    from grader.extract import Extracted
    from grader.results import TestResult
    from grader.submission import Submission

UNCONFINED_NOTE = ("no sandbox on this machine ({reason}): the public checks run your code "
                   "unconfined, in this process, as your notebook does")


@dataclass(frozen=True)
class PublicChecks:
    """An assignment and the source of its public checks, and where they came from."""

    assignment: Assignment
    source: str
    origin: str


def grader_metadata(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """``metadata.grader`` of a notebook ({} when it has none)."""
    meta = nb.get("metadata", {}).get("grader", {})
    return dict(meta) if isinstance(meta, dict) else {}


def which_assignment(notebook: Path | None, meta: dict[str, Any], given: str | None,
                     course: Path | None) -> str:
    """``--assignment``, else the notebook's metadata, else the notebook's name in the course."""
    if given:
        return given
    if meta.get("assignment"):
        return str(meta["assignment"])
    names = discover_assignments(course) if course else ()
    if notebook is not None:
        for name in names:
            if notebook.stem == name or notebook.parent.name == name:
                return name
    label = notebook.name if notebook is not None else "this notebook"
    raise ConfigurationError(
        f"cannot tell which assignment {label} is: a notebook released by `grader release` "
        "names it in its metadata, and this one does not; pass --assignment NAME"
        + (f" (one of {', '.join(names)})" if names else ""))


def find_public_checks(name: str, meta: dict[str, Any], beside: Path | None,
                       course: Path | None) -> PublicChecks:
    """The assignment ``name`` and its public checks, from the first place that has them."""
    in_course = course is not None and name in discover_assignments(course)
    if in_course:
        assignment = load_assignment(name, course)
    elif meta.get("assignment") == name:
        assignment = assignment_from_metadata(meta)
    else:
        assignment = Assignment(name=name, notebook=f"{name}.ipynb", functions=(),
                                forbidden_imports=(),
                                needs_tensorflow="keras" in sys.modules)
    if meta.get("assignment") == name and isinstance(meta.get("public_checks"), str):
        return PublicChecks(assignment, meta["public_checks"], "the notebook's metadata")
    candidates = [beside / PUBLIC_CHECKS_FILE] if beside is not None else []
    if course is not None:
        candidates.append(course / "assignments" / name / PUBLIC_CHECKS_FILE)
    for path in candidates:
        if path.is_file():
            return PublicChecks(assignment, path.read_text(encoding="utf-8"), str(path))
    raise ConfigurationError(
        f"the public checks of {name!r} are not found: expected them in the notebook's metadata "
        f"(written by `grader release`) or in {' or '.join(str(p) for p in candidates) or PUBLIC_CHECKS_FILE}"
        "; download the released notebook again, with its test_public.py")


def _sandbox() -> tuple[Any, str]:
    """(isolation, "") where a sandbox runs here; (None, why not) elsewhere."""
    if not sys.platform.startswith("linux"):
        return None, f"{sys.platform} has none"
    try:
        from grader.sandbox.isolation import detect_isolation
    except ImportError as exc:
        return None, f"the sandbox does not import: {exc}"
    try:
        return detect_isolation(), ""
    except GraderError as exc:
        return None, str(exc)


def submission_module() -> ModuleType:
    """:mod:`grader.submission`, also where the sandbox package does not import.

    ``grader.submission`` needs only ``grader/sandbox/client.py`` and ``protocol.py``, which
    are portable, but the package's ``__init__`` imports the Unix-only isolation module. Where
    that import fails, ``grader.sandbox`` is registered as a bare package (its ``__init__`` not
    run), so that the portable modules alone are loaded."""
    try:
        return importlib.import_module("grader.submission")
    except ImportError:
        if "grader.sandbox" in sys.modules:
            raise
    bare = ModuleType("grader.sandbox", "the sandbox package, without its Unix-only parts")
    bare.__path__ = [str(PACKAGE_DIR / "sandbox")]
    bare.__package__ = "grader.sandbox"
    sys.modules["grader.sandbox"] = bare
    return importlib.import_module("grader.submission")


def run_extracted_unconfined(extracted: Extracted) -> tuple[dict[str, Any], list[str]]:
    """Execute the kept code of each cell in a fresh namespace; the problems met, as notes."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    notes: list[str] = []
    for cell in extracted.cells:
        try:
            exec(compile(cell.source, f"<notebook cell {cell.index}>", "exec"), namespace)  # noqa: S102
        except Exception as exc:  # noqa: BLE001 - the student's error is reported, not raised
            notes.append(f"cell {cell.index} raised {type(exc).__name__}: {exc}")
    return namespace, notes


@contextmanager
def public_suite(checks: PublicChecks) -> Iterator[Path]:
    """A temporary folder holding the public checks as ``test_public.py``."""
    with tempfile.TemporaryDirectory(prefix="grader-public-") as tmp:
        (Path(tmp) / PUBLIC_CHECKS_FILE).write_text(checks.source, encoding="utf-8")
        yield Path(tmp)


def run_public(checks: PublicChecks, submission: Submission) -> tuple[list[TestResult], list[str]]:
    from grader.collect import run_suite
    from grader.profiles import get_profile

    with public_suite(checks) as folder:
        return run_suite(checks.assignment, submission, get_profile("quick", checks.assignment),
                         public=True, public_dir=folder)


def summary(results: list[TestResult]) -> str:
    failed = [r for r in results if r.status not in ("passed", "skipped")]
    skipped = sum(r.status == "skipped" for r in results)
    return (f"{len(results) - len(failed) - skipped} of {len(results)} public checks passed"
            + (f", {skipped} skipped" if skipped else "")
            + ("" if not failed else " — fix the FAIL lines above, then run the check again"))


def main(*, notebook: Path, assignment: str | None) -> int:
    from grader.collect import result_lines
    from grader.extract import extract_answer_code, read_notebook

    try:
        nb = read_notebook(notebook)
    except NotebookUnreadable as exc:
        print(f"FAIL {exc}")
        return 1
    course = find_course_root(notebook.resolve().parent) or find_course_root()
    if course is not None:
        announce_course(course)
    meta = grader_metadata(nb)
    name = which_assignment(notebook, meta, assignment, course)
    checks = find_public_checks(name, meta, notebook.resolve().parent, course)
    extracted = extract_answer_code(nb)
    for message in extracted.messages:
        print(f"note: {message}")
    isolation, reason = _sandbox()
    submission: Submission
    if isolation is not None:
        from grader.sandbox.isolation import Limits
        from grader.submission import SandboxSubmission

        submission = SandboxSubmission(extracted, checks.assignment,
                                       limits=Limits(call_seconds=120, submission_seconds=300),
                                       isolation=isolation, hidden=())
    else:
        print("note: " + UNCONFINED_NOTE.format(reason=reason))
        namespace, notes = run_extracted_unconfined(extracted)
        for note in notes:
            print(f"note: {note}")
        submission = submission_module().InProcessSubmission(namespace, checks.assignment)
    try:
        results, errors = run_public(checks, submission)
    finally:
        submission.close()
    for message in submission.load_messages[len(extracted.messages):]:
        print(f"note: {message}")
    print(result_lines(results))
    for error in errors:
        print(f"grader problem: {error.splitlines()[0] if error else ''}")
    print(summary(results))
    return 1 if any(r.status not in ("passed", "skipped") for r in results) or errors else 0
