"""What a TA sees while a run goes: a progress bar, then a summary table (rich)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from grader.results import SubmissionResult

Callback = Callable[[SubmissionResult, bool], None]


def with_progress(jobs: Sequence[Any], enabled: bool,
                  start: Callable[[Callback], list[SubmissionResult]]) -> list[SubmissionResult]:
    console = Console(stderr=True)
    if not enabled:
        return start(lambda result, skipped: None)
    with Progress(TextColumn("[bold]grading[/]"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.description}"), console=console,
                  transient=False) as bar:
        task = bar.add_task("", total=len(jobs))

        def done(result: SubmissionResult, skipped: bool) -> None:
            note = "already graded" if skipped else f"{result.score:g}/{result.max_score:g}"
            bar.update(task, advance=1, description=f"{result.student}: {note}")

        return start(done)


def print_summary(results: Sequence[SubmissionResult], functions: Sequence[str],
                  out: Path) -> None:
    table = Table(title=f"Scores ({len(results)} submissions) — {out}")
    table.add_column("student")
    shown = [f for f in functions if any(f in r.by_function() for r in results)]
    for function in shown:
        table.add_column(function, justify="right")
    table.add_column("total", justify="right", style="bold")
    table.add_column("notes")
    for result in sorted(results, key=lambda r: r.student):
        per = result.by_function()
        notes = ", ".join(result.limits_hit) or ("grader failed" if result.grader_error else "")
        if result.load_messages and not notes:
            notes = result.load_messages[0][:60]
        table.add_row(result.student,
                      *[f"{per.get(f, (0, 0))[0]:g}/{per.get(f, (0, 0))[1]:g}" for f in shown],
                      f"{result.score:g}/{result.max_score:g}", notes)
    Console(width=160).print(table)
