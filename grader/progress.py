"""What a TA sees while a run goes: a progress bar, then a summary table (rich).

Student text (ids, load messages, notes) is shown as plain text: never read as rich markup,
and with escape sequences and other control characters removed (:func:`plain`), so that no
submission can break the table or reach the terminal.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from grader.results import SubmissionResult

Callback = Callable[[SubmissionResult, bool], None]

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, screen clears
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b.?"  # any other escape
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def plain(text: str) -> str:
    """``text`` safe for a terminal: escape sequences and control characters (C0, C1, bidi
    overrides) removed, line breaks and tabs turned into spaces."""
    text = _ESCAPES.sub("", str(text)).replace("\t", " ").replace("\r\n", " ").replace("\n", " ")
    return "".join(ch for ch in text if not (unicodedata.category(ch) == "Cc" or ch in _BIDI))


def with_progress(jobs: Sequence[Any], enabled: bool, finish: Callback,
                  start: Callable[[Callback], list[SubmissionResult]]) -> list[SubmissionResult]:
    """Run ``start(callback)``; the callback calls ``finish`` for each result, then advances the
    bar (when ``enabled``)."""
    if not enabled:
        return start(finish)
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]grading[/]"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.description}", markup=False),
                  console=console, transient=False) as bar:
        task = bar.add_task("", total=len(jobs))

        def done(result: SubmissionResult, skipped: bool) -> None:
            finish(result, skipped)
            note = "already graded" if skipped else f"{result.score:g}/{result.max_score:g}"
            bar.update(task, advance=1, description=f"{plain(result.student)[:60]}: {note}")

        return start(done)


def _sized() -> bool:
    """Whether the terminal's width is known (a terminal, or COLUMNS); else 160 columns."""
    return sys.stdout.isatty() or bool(os.environ.get("COLUMNS"))


def _notes(result: SubmissionResult) -> str:
    notes = ", ".join(result.limits_hit) or ("grader failed" if result.grader_error else "")
    if result.load_messages and not notes:
        notes = result.load_messages[0]
    return plain(notes)


def print_summary(results: Sequence[SubmissionResult], functions: Sequence[str],
                  out: Path, *, changed: int = 0) -> None:
    """The score table, as wide as the terminal (``COLUMNS``, else 160 columns when output is
    not a terminal); long ids and notes wrap rather than being cut."""
    table = Table(title=Text(f"Scores ({len(results)} submissions) — {plain(str(out))}"))
    longest = max((len(plain(r.student)) for r in results), default=7)
    table.add_column("student", overflow="fold", max_width=40, min_width=min(longest, 24))
    shown = [f for f in functions if any(f in r.by_function() for r in results)]
    for function in shown:
        # Long function names fold, so that many functions still leave room for the ids.
        table.add_column(function, justify="right", overflow="fold")
    table.add_column("total", justify="right", style="bold", no_wrap=True)
    table.add_column("notes", overflow="fold")
    for result in sorted(results, key=lambda r: r.student):
        per = result.by_function()
        table.add_row(Text(plain(result.student)),
                      *[f"{per.get(f, (0, 0))[0]:g}/{per.get(f, (0, 0))[1]:g}" for f in shown],
                      f"{result.score:g}/{result.max_score:g}", Text(_notes(result)))
    console = Console() if _sized() else Console(width=160)
    console.print(table)
    if changed:
        console.print(Text(f"{changed} submission(s) regraded because their notebook changed "
                           "since the last run."))


def print_grader_failed(students: Sequence[str], out: Path) -> None:
    names = ", ".join(plain(s) for s in students)
    print(f"grader: the grader itself failed on {len(students)} submission(s): {names} — see "
          f"{out}/.logs/ and result.full.json", file=sys.stderr)


def print_interrupted(graded: int, total: int, out: Path) -> None:
    print(f"\ngrader: interrupted — {graded} of {total} submission(s) graded in this run are "
          f"saved in {out}; run the same command again to grade the rest (finished ones are "
          "skipped).", file=sys.stderr)
