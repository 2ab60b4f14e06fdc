"""`grader report RESULTS_DIR`: the class report of a grading run, as one HTML page."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from grader.errors import ConfigurationError
from grader.export.classreport import write_class_report
from grader.results import SubmissionResult
from grader.rundir import FEEDBACK, RESULT_FILE, RunDir

__all__ = ["RESULT_FILE", "load_results", "main"]


def _found(results_dir: Path) -> str:
    entries = sorted(p.name for p in results_dir.iterdir())
    if not entries:
        return "an empty folder"
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    return f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}: {shown}"


def _load(results_dir: Path) -> list[tuple[str, SubmissionResult]]:
    """(folder, result) for every ``RESULTS_DIR/<folder>/result.full.json``, by folder name."""
    if not results_dir.is_dir():
        state = "is a file" if results_dir.exists() else "not found"
        raise ConfigurationError(
            f"results folder {results_dir} {state}: expected the --out folder of a "
            "`grader grade` run"
        )
    paths = RunDir(results_dir).result_paths()
    if not paths:
        raise ConfigurationError(
            f"no results in {results_dir}: expected <student>/{RESULT_FILE} files written by "
            f"`grader grade --out {results_dir}`, found {_found(results_dir)}"
        )
    loaded = []
    for path in paths:
        try:
            loaded.append((path.parent.name, SubmissionResult.load(path)))
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigurationError(
                f"{path}: not a result this grader can read ({type(exc).__name__}: {exc}); "
                "expected a file written by `grader grade` — regrade that student with --force"
            ) from exc
    return loaded


def load_results(results_dir: Path) -> list[SubmissionResult]:
    """Every ``RESULTS_DIR/<student>/result.full.json``, by student folder name."""
    return [result for _, result in _load(Path(results_dir))]


def _check_target(target: Path) -> None:
    for parent in [target, *target.parents]:
        if not parent.exists():
            continue
        if parent == target and parent.is_dir():
            raise ConfigurationError(
                f"--out {target} is a folder; expected the path of the HTML file to write, "
                f"e.g. {target / 'report.html'}")
        if parent != target and not parent.is_dir():
            raise ConfigurationError(
                f"--out {target}: {parent} is a file, not a folder; expected a path whose "
                "folders exist or can be made — choose another --out")
        if parent != target:
            break


def main(*, results_dir: Path, out: Path | None) -> int:
    results_dir = Path(results_dir)
    loaded = _load(results_dir)
    target = Path(out) if out is not None else results_dir / "report.html"
    _check_target(target)
    base = target.absolute().parent
    links = {result.student: quote(os.path.relpath(
        (results_dir / folder / FEEDBACK).absolute(), base)) for folder, result in loaded
        if (results_dir / folder / FEEDBACK).is_file()}
    try:
        write_class_report([result for _, result in loaded], target, links)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the report to {target} ({exc.strerror}); expected a path this user "
            "can write — choose another --out") from None
    print(target)
    return 0
