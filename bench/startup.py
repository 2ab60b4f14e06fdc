"""A sandbox's start-up: from starting a fresh sandboxed worker to its first answer.

    .venv/bin/python bench/startup.py mnist 5      # prints one JSON object

For an assignment that needs TensorFlow the worker imports Keras before its ``ready`` line
(``grader/sandbox/worker.py``), so this is, for mnist, what every student's fresh sandbox costs
before the grader's first call: the isolation's own start (bubblewrap where it is installed),
Python, the Keras import, and loading a one-function notebook. Each start is a new
:class:`~grader.submission.SandboxSubmission`, closed before the next.
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
    for _ in range(args.starts):
        began = time.perf_counter()
        submission = SandboxSubmission(code, assignment, limits=Limits(call_seconds=120.0),
                                       isolation=isolation)
        try:
            if submission.call("answer") != 42:
                raise SystemExit("startup: the worker gave a wrong answer")
        finally:
            submission.close()
        seconds.append(round(time.perf_counter() - began, 3))
    print(json.dumps({"assignment": args.assignment, "isolation": isolation.level,
                      "starts": seconds, "median_s": statistics.median(seconds)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
