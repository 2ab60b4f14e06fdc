"""The `grader` command line. It only parses arguments; each subcommand is a stage's `main`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grader.errors import GraderError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grader", description="Grade deep-learning notebooks with hidden test suites."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    grade = sub.add_parser("grade", help="grade submissions (hardened path)")
    grade.add_argument("submissions", nargs="+", type=Path, help="notebooks or folders")
    grade.add_argument("--assignment", required=True, help="backprop or mnist")
    grade.add_argument("--out", required=True, type=Path, help="results folder")
    grade.add_argument("--profile", default="quick", help="quick (default) or full")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel")
    grade.add_argument("--force", action="store_true", help="regrade submissions already graded")
    grade.add_argument("--mnist", type=Path, default=None, help="MNIST .npz (default: MNIST_NPZ)")
    grade.add_argument(
        "--isolation",
        choices=["auto", "bubblewrap", "namespaces", "rlimits"],
        default="auto",
        help="sandbox level (default: the strongest this host allows)",
    )
    grade.add_argument("--backend", choices=["local", "ray"], default="local")
    grade.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    grade.add_argument("--quiet", action="store_true", help="no progress bar")

    check = sub.add_parser("check", help="run the public checks on your notebook")
    check.add_argument("notebook", type=Path)
    check.add_argument("--assignment", default=None, help="default: from the notebook's name")

    release = sub.add_parser("release", help="generate assignments/ from solutions/ and check it")
    release.add_argument("assignments", nargs="*", help="default: all")
    release.add_argument(
        "--check", action="store_true", help="only verify assignments/ is up to date and leak-free"
    )

    report = sub.add_parser("report", help="class report (HTML) from a results folder")
    report.add_argument("results_dir", type=Path)
    report.add_argument("--out", type=Path, default=None, help="default: RESULTS_DIR/report.html")

    sub.add_parser("doctor", help="what this machine can do, and what is missing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "grade":
            from grader import runner

            return runner.main(
                submissions=args.submissions,
                assignment=args.assignment,
                out=args.out,
                profile=args.profile,
                jobs=args.jobs,
                force=args.force,
                mnist=args.mnist,
                isolation=None if args.isolation == "auto" else args.isolation,
                backend=args.backend,
                address=args.address,
                progress=not args.quiet,
            )
        if args.command == "check":
            from grader import check

            return check.main(notebook=args.notebook, assignment=args.assignment)
        if args.command == "release":
            from grader import release

            return release.main(assignments=args.assignments or None, check_only=args.check)
        if args.command == "report":
            from grader import report

            return report.main(results_dir=args.results_dir, out=args.out)
        if args.command == "doctor":
            from grader import doctor

            return doctor.main()
    except GraderError as exc:
        print(f"grader: error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
