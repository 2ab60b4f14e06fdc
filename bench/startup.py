"""A sandbox's start-up: from starting a fresh sandboxed worker to its first answer.

    .venv/bin/python bench/startup.py mnist 5      # prints one JSON object

For an assignment that needs TensorFlow the worker imports Keras before its ``ready`` line
(``grader/sandbox/worker.py``), so this is, for mnist, what every student's fresh sandbox costs
before the grader's first call: the isolation's own start (bubblewrap where it is installed),
Python, the Keras import, and loading a one-function notebook. Each start is a new
:class:`~grader.submission.SandboxSubmission`, closed before the next.

Where workers are forked from a template sandbox (``docs/architecture.md``, "Template
sandboxes"), the first start includes the template's own (its imports), and every later one is
a fork; ``GRADER_SANDBOX_TEMPLATE=0`` measures workers started on their own. The output says
which (``workers``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import nbformat

from grader.course import load_assignment
from grader.extract import extract_answer_code
from grader.sandbox.forking import ForkedWorker
from grader.sandbox.isolation import Limits, detect_isolation
from grader.submission import SandboxSubmission

NOTEBOOK = "def answer():\n    return 42\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment")
    parser.add_argument("starts", type=int, nargs="?", default=5)
    args = parser.parse_args(argv)
    assignment = load_assignment(args.assignment)
    isolation = detect_isolation(None)
    code = extract_answer_code(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(NOTEBOOK)]))
    seconds = []
    forked = []
    for _ in range(args.starts):
        began = time.perf_counter()
        submission = SandboxSubmission(code, assignment, limits=Limits(call_seconds=120.0),
                                       isolation=isolation)
        try:
            if submission.call("answer") != 42:
                raise SystemExit("startup: the worker gave a wrong answer")
            forked.append(isinstance(submission._worker._proc, ForkedWorker))
        finally:
            submission.close()
        seconds.append(round(time.perf_counter() - began, 3))
    workers = ("forked from a template" if all(forked) else
               "started on their own" if not any(forked) else "some forked, some started")
    print(json.dumps({"assignment": args.assignment, "isolation": isolation.level,
                      "workers": workers, "starts": seconds,
                      "median_s": statistics.median(seconds),
                      "median_after_first_s": statistics.median(seconds[1:] or seconds)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
