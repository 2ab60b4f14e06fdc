"""``grader gradescope ASSIGNMENT --out ZIP``: the autograder zip Gradescope asks for.

The zip holds, at its root: ``setup.sh`` and ``run_autograder`` (from ``docker/gradescope/``),
the grader's source (``pyproject.toml``, ``README.md``, ``grader/``, the constraints file),
the one assignment's hidden suite and toml (``autograde_tests/<name>/``), and the data files
the assignment declares (``data/<file>``, with ``grader-data.env`` naming the environment
variable of each). Gradescope unpacks it to ``/autograder/source`` and runs ``setup.sh`` once.

``run_autograder`` grades the submitted notebook whose metadata (written by ``grader release``)
names this assignment, whatever the file is called; :func:`pick_notebook` decides, and says
what to change when no notebook fits.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

from grader.course import (
    NOTEBOOK_METADATA_KEY,
    PACKAGE_DIR,
    SUITES,
    announce_course,
    course_root,
    load_assignment,
)
from grader.errors import ConfigurationError

SCRIPTS = ("setup.sh", "run_autograder")
ASSIGNMENT_FILE = "grader-assignment.txt"
DATA_ENV_FILE = "grader-data.env"


def _grader_source() -> Path:
    """The folder holding the grader's pyproject.toml (a checkout or the course itself)."""
    source = PACKAGE_DIR.parent
    if not (source / "pyproject.toml").is_file():
        raise ConfigurationError(
            f"the grader at {PACKAGE_DIR} is installed without its source (no pyproject.toml in "
            f"{source}): build the zip from a checkout of the grader")
    return source


def _add_tree(archive: zipfile.ZipFile, folder: Path, arcname: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            info = zipfile.ZipInfo(f"{arcname}/{path.relative_to(folder).as_posix()}",
                                   date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)


def _add_file(archive: zipfile.ZipFile, path: Path, arcname: str, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = mode << 16
    archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)


def build_zip(assignment: str, out: Path, *, root: Path,
              data: dict[str, Path] | None = None) -> list[str]:
    """Write the zip; the notes worth printing (data files left out)."""
    spec = load_assignment(assignment, root)
    source = _grader_source()
    notes: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as archive:
        for script in SCRIPTS:
            _add_file(archive, source / "docker" / "gradescope" / script, script, 0o755)
        for name in ("pyproject.toml", "README.md"):
            if (source / name).is_file():
                _add_file(archive, source / name, name)
        _add_file(archive, source / "docker" / "constraints.txt", "docker/constraints.txt")
        _add_tree(archive, source / "grader", "grader")
        _add_tree(archive, spec.suite_dir, f"{SUITES}/{assignment}")
        archive.writestr(ASSIGNMENT_FILE, assignment + "\n")
        env_lines = []
        for key, found in spec.data_files(data).items():
            declared = next(d for d in spec.data if d.key == key)
            if found is None or not found.is_file():
                notes.append(f"data file {key!r} not found (set {declared.env or '--data'}); "
                             "the zip leaves it out and the grader looks for it on Gradescope")
                continue
            _add_file(archive, found, f"data/{found.name}")
            if declared.env:
                env_lines.append(f"{declared.env}=data/{found.name}")
        archive.writestr(DATA_ENV_FILE, "".join(line + "\n" for line in env_lines))
    return notes


def main(*, assignment: str, out: Path | None, data: dict[str, Path] | None = None) -> int:
    root = course_root()
    announce_course(root)
    out = out or Path(f"{assignment}-autograder.zip")
    if out.exists() and out.is_dir():
        raise ConfigurationError(f"--out {out} is a folder: expected the path of a .zip file")
    for note in build_zip(assignment, out, root=root, data=data):
        print(f"note: {note}")
    print(f"wrote {out}: upload it as the autograder of {assignment!r} on Gradescope")
    return 0


# --- Used by run_autograder on Gradescope ------------------------------------------------


def notebook_assignment(path: Path) -> str | None:
    """The assignment a notebook's metadata names, or None (no metadata, not a notebook)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        meta = data.get("metadata", {}).get(NOTEBOOK_METADATA_KEY, {})
        name = meta.get("assignment") if isinstance(meta, dict) else None
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def pick_notebook(notebooks: list[Path], assignment: str) -> tuple[Path | None, str]:
    """The notebook to grade for ``assignment``, or None and what to tell the student."""
    named = {path: notebook_assignment(path) for path in notebooks}
    ours = [path for path, name in named.items() if name == assignment]
    if ours:
        return ours[0], ""
    if not notebooks:
        return None, (f"Expected your {assignment} notebook (a .ipynb file) in the submission; "
                      "found no .ipynb file at all. Upload your completed notebook and submit "
                      "again.")
    others = sorted({name for name in named.values() if name})
    if others:
        return None, (f"This Gradescope assignment grades {assignment!r}, but the notebook you "
                      f"uploaded is the {' and '.join(repr(o) for o in others)} notebook. Upload "
                      f"your completed {assignment} notebook and submit again.")
    files = ", ".join(sorted(p.name for p in notebooks))
    return None, (f"Expected the {assignment} notebook as released to you (it names its "
                  f"assignment inside); found {files}, which does not. Download the released "
                  f"{assignment} notebook again, copy your answers into it, and submit it.")


def _pick_cli(argv: list[str]) -> int:
    """``python -m grader.gradescope_zip pick ASSIGNMENT NOTEBOOK...``: prints the notebook to
    grade, or ``ERROR <message>``."""
    assignment, notebooks = argv[0], [Path(a) for a in argv[1:]]
    found, message = pick_notebook(notebooks, assignment)
    print(str(found) if found is not None else f"ERROR {message}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "pick":
        sys.exit(_pick_cli(sys.argv[2:]))
    print("usage: python -m grader.gradescope_zip pick ASSIGNMENT NOTEBOOK...", file=sys.stderr)
    sys.exit(2)
