"""The package's public surface is small and deliberate."""

import grader


def test_public_names_are_pinned():
    assert sorted(grader.__all__) == [
        "GraderError", "SubmissionError", "SubmissionResult", "TestResult", "__version__"]


def test_cli_help_lists_every_command(capsys):
    from grader.cli import main

    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for command in ("grade", "check", "release", "report", "doctor"):
        assert command in out
