"""The `grader` command line. It only parses arguments; each subcommand is a stage's `main`.

Every command that reads the course prints the course folder it uses (one line on stderr):
the current folder or its parents holding ``nbgrader_config.py`` or ``autograde_tests/``, else
``GRADER_COURSE_ROOT``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grader import __version__
from grader.errors import ConfigurationError, GraderError

EXAMPLES = {
    "grade": """examples:
  grader grade submitted/ --assignment hw1 --out graded/hw1
  grader grade a.ipynb b.ipynb --assignment hw2 --out graded/hw2 --jobs 2 --profile full
  grader grade submitted/ --assignment hw2 --out graded/hw2 --data images=/data/images.npz""",
    "check": """examples:
  grader check hw1.ipynb
  grader check my_copy.ipynb --assignment hw2""",
    "release": """examples:
  grader release              # every assignment: solutions/ -> assignments/
  grader release hw1
  grader release --check      # change nothing; fail if assignments/ is stale or leaks""",
    "report": """examples:
  grader report graded/hw2
  grader report graded/hw2 --out /tmp/hw2-report.html""",
    "doctor": """examples:
  grader doctor""",
    "gradescope": """examples:
  grader gradescope hw1 --out hw1-autograder.zip""",
    "new": """examples:
  grader new perceptron       # then edit solutions/perceptron/perceptron.ipynb""",
    "bridge": """examples:
  grader grade submitted --assignment hw2 --out graded/hw2
  grader bridge graded/hw2 --assignment hw2 --dry-run
  grader bridge graded/hw2 --assignment hw2""",
}


def _known_assignments() -> tuple[str, ...] | None:
    """The course's assignments, for the help's choices; None outside a course."""
    from grader.course import discover_assignments, find_course_root

    root = find_course_root()
    return discover_assignments(root) if root is not None else None


def _known_profiles(assignments: tuple[str, ...] | None) -> tuple[str, ...]:
    from grader.course import load_assignment
    from grader.profiles import profile_names

    names = list(profile_names())
    for name in assignments or ():
        try:
            names += profile_names(load_assignment(name))
        except GraderError:
            continue
    return tuple(dict.fromkeys(names))


def _data_option(text: str) -> tuple[str, str]:
    key, sep, path = text.partition("=")
    return (key, path) if sep else ("", text)


def _sub(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str,
         description: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=description, epilog=EXAMPLES[name],
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _parser() -> argparse.ArgumentParser:
    assignments = _known_assignments()
    profiles = _known_profiles(assignments)
    listed = f" (one of: {', '.join(assignments)})" if assignments else ""
    parser = argparse.ArgumentParser(
        prog="grader", description="Grade deep-learning notebooks with hidden test suites.",
        epilog="Run `grader COMMAND --help` for a command's options and examples. The course "
        "folder is the current folder or its parents holding nbgrader_config.py or "
        "autograde_tests/, else GRADER_COURSE_ROOT.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    grade = _sub(sub, "grade", "grade submissions (hardened path)",
                 "Grade notebooks with the assignment's hidden suite, each in a sandbox; write "
                 "results.json, feedback.html and grades.csv under --out. Rerunning resumes, and "
                 "regrades notebooks that changed.")
    grade.add_argument("submissions", nargs="+", type=Path, help="notebooks or folders")
    grade.add_argument("--assignment", required=True, choices=assignments or None,
                       help="the assignment to grade" + listed)
    grade.add_argument("--out", required=True, type=Path, help="results folder")
    grade.add_argument("--profile", default="quick", choices=profiles,
                       help="grading recipe (default: quick)")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel")
    grade.add_argument("--force", action="store_true", help="regrade submissions already graded")
    grade.add_argument("--no-cache", action="store_true",
                       help="train every model; neither read nor fill the training cache "
                       "(default: OUT/.cache/training, or GRADER_TRAINING_CACHE)")
    grade.add_argument("--data", action="append", type=_data_option, default=[],
                       metavar="KEY=PATH",
                       help="a data file the assignment declares (assignment.toml [data.KEY]); "
                       "default: its environment variable, then Keras' cache")
    grade.add_argument(
        "--isolation",
        choices=["auto", "bubblewrap", "namespaces", "rlimits"],
        default="auto",
        help="sandbox level (default: the strongest this host allows)",
    )
    grade.add_argument("--backend", choices=["local", "ray"], default="local")
    grade.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    grade.add_argument("--quiet", action="store_true", help="no progress bar")

    check = _sub(sub, "check", "run the public checks on your notebook",
                 "Run the assignment's public checks on a notebook, on exactly the code "
                 "`grader grade` keeps of it. Needs only the released notebook: the assignment "
                 "and its checks are stored in it.")
    check.add_argument("notebook", type=Path)
    check.add_argument("--assignment", default=None,
                       help="default: from the notebook's metadata, else its name" + listed)

    release = _sub(sub, "release", "generate assignments/ from solutions/ and check it",
                   "Generate the student notebooks (assignments/<name>/) from the masters "
                   "(solutions/<name>/) with nbgrader, set the autograder cells' points from "
                   "assignment.toml, store the assignment and its public checks in each "
                   "released notebook, and check that no solution or hidden test got out.")
    release.add_argument("assignments", nargs="*", help="default: all" + listed)
    release.add_argument(
        "--check", action="store_true", help="only verify assignments/ is up to date and leak-free"
    )

    report = _sub(sub, "report", "class report (HTML) from a results folder",
                  "Write the class report of a `grader grade` results folder: scores, common "
                  "failures, and a link to each student's feedback.")
    report.add_argument("results_dir", type=Path)
    report.add_argument("--out", type=Path, default=None, help="default: RESULTS_DIR/report.html")

    _sub(sub, "doctor", "what this machine can do, and what is missing",
         "Check this machine for grading: TensorFlow, GPUs, the sandbox, each assignment's data "
         "and the hidden suites; print a fix for anything missing. Exit 1 when grading cannot "
         "run here.")

    gradescope = _sub(sub, "gradescope", "build the Gradescope autograder zip",
                      "Build the autograder zip Gradescope asks for: setup.sh, run_autograder, "
                      "the grader, the assignment's hidden suite and its data files.")
    gradescope.add_argument("assignment", choices=assignments or None, help="the assignment" + listed)
    gradescope.add_argument("--out", type=Path, default=None,
                            help="the zip to write (default: ASSIGNMENT-autograder.zip)")
    gradescope.add_argument("--data", action="append", type=_data_option, default=[],
                            metavar="KEY=PATH", help="a data file to include (default: where "
                            "its environment variable or Keras' cache says; none: downloaded on "
                            "Gradescope where the assignment allows)")

    new = _sub(sub, "new", "scaffold a new assignment",
               "Create a minimal assignment that releases and grades at once: "
               "autograde_tests/NAME/ (assignment.toml, hidden suite), "
               "solutions/NAME/ (master notebook, public checks).")
    new.add_argument("name", help="a Python identifier, e.g. perceptron")

    bridge = _sub(sub, "bridge", "write `grader grade` scores into nbgrader's gradebook",
                  "Write the scores of a `grader grade` results folder into nbgrader's gradebook "
                  "as manual scores of each function's autograder cell.")
    bridge.add_argument("results_dir", type=Path, help="the --out folder of `grader grade`")
    bridge.add_argument("--assignment", required=True, choices=assignments or None,
                        help="the graded assignment" + listed)
    bridge.add_argument("--course-dir", type=Path, default=None,
                        help="nbgrader course folder (default: the course folder)")
    bridge.add_argument("--db-url", default=None, help="default: sqlite:///COURSE/gradebook.db")
    bridge.add_argument("--dry-run", action="store_true", help="only print the comparison")
    return parser


def _data(options: list[tuple[str, str]], assignment: str) -> dict[str, Path]:
    """``--data`` options as {key: path}; a bare PATH names the assignment's only data file."""
    from grader.course import load_assignment

    declared = [d.key for d in load_assignment(assignment).data]
    out: dict[str, Path] = {}
    for key, path in options:
        if not key:
            if len(declared) != 1:
                raise ConfigurationError(
                    f"--data {path}: {assignment!r} declares {len(declared)} data files "
                    f"({', '.join(declared) or 'none'}); write --data KEY=PATH")
            key = declared[0]
        if key not in declared:
            raise ConfigurationError(
                f"--data {key}={path}: {assignment!r} declares no data file {key!r}; expected "
                f"one of: {', '.join(declared) or 'none'}")
        out[key] = Path(path)
    return out


def _run(args: argparse.Namespace) -> int:
    from grader.course import announce_course, course_root, find_course_root

    if args.command in ("report", "doctor"):
        found = find_course_root()
        if found is not None:
            announce_course(found)
    elif args.command != "check":
        announce_course(course_root())
    if args.command == "grade":
        from grader import runner

        data = _data(args.data, args.assignment)
        return runner.main(
            submissions=args.submissions,
            assignment=args.assignment,
            out=args.out,
            profile=args.profile,
            jobs=args.jobs,
            force=args.force,
            data=data,
            no_cache=args.no_cache,
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
    if args.command == "gradescope":
        from grader import gradescope_zip

        return gradescope_zip.main(assignment=args.assignment, out=args.out,
                                   data=_data(args.data, args.assignment))
    if args.command == "new":
        from grader import scaffold

        return scaffold.main(name=args.name)
    if args.command == "bridge":
        from grader import nbgrader_bridge

        return nbgrader_bridge.main(results_dir=args.results_dir, assignment=args.assignment,
                                    course_dir=args.course_dir, db_url=args.db_url,
                                    dry_run=args.dry_run)
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _run(args)
    except GraderError as exc:
        print(f"grader: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
