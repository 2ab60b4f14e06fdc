"""`grader report RESULTS_DIR`: the class report of a grading run, as one HTML page."""

from __future__ import annotations

from pathlib import Path

from grader.errors import ConfigurationError
from grader.export.classreport import write_class_report
from grader.results import SubmissionResult

RESULT_FILE = "result.full.json"
"""What `grader grade` saves per student (the full results model) and what this stage reads."""


def _found(results_dir: Path) -> str:
    entries = sorted(p.name for p in results_dir.iterdir())
    if not entries:
        return "an empty folder"
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    return f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}: {shown}"


def load_results(results_dir: Path) -> list[SubmissionResult]:
    """Every ``RESULTS_DIR/<student>/result.full.json``, by student folder name."""
    if not results_dir.is_dir():
        raise ConfigurationError(
            f"results folder {results_dir} not found: expected the --out folder of a "
            "`grader grade` run"
        )
    paths = sorted(results_dir.glob(f"*/{RESULT_FILE}"))
    if not paths:
        raise ConfigurationError(
            f"no results in {results_dir}: expected <student>/{RESULT_FILE} files written by "
            f"`grader grade --out {results_dir}`, found {_found(results_dir)}"
        )
    results = []
    for path in paths:
        try:
            results.append(SubmissionResult.load(path))
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigurationError(
                f"{path}: not a result this grader can read ({type(exc).__name__}: {exc}); "
                "expected a file written by `grader grade` — regrade that student with --force"
            ) from exc
    return results


def main(*, results_dir: Path, out: Path | None) -> int:
    results = load_results(Path(results_dir))
    target = Path(out) if out is not None else Path(results_dir) / "report.html"
    write_class_report(results, target)
    print(target)
    return 0
