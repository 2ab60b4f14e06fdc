"""Every exception the grader raises, in one tree.

    GraderError                      the grader itself could not run (exit code 2)
    ├── ConfigurationError           bad command line, unknown assignment or profile
    ├── DataUnavailable              an assignment's data file could not be found
    └── WorkerUnavailable            the sandboxed worker died before running any student code
    SubmissionError                  a fault of one submission; it becomes that student's result
    ├── NotebookUnreadable           not JSON, not a notebook, no cells, too large
    ├── MissingFunction              the notebook does not define the function a test calls
    ├── StudentException             the student's function raised
    ├── CallTimeout                  a call ran past its time limit
    ├── SubmissionTimeout            the whole submission ran past its time budget
    ├── WorkerCrashed                the sandboxed process died (memory limit, segfault, exit)
    ├── RefusedValue                 a returned value cannot cross the sandbox boundary safely
    └── CheckerLimit                 checking a returned value took the checking process past
                                     its own memory or time limit

Each message says what was expected, what was found and where to look.
"""

from __future__ import annotations


class GraderError(Exception):
    """The grader itself could not do its job; not the student's fault."""


class ConfigurationError(GraderError):
    """The command line or the course layout is wrong."""


class DataUnavailable(GraderError):
    """An assignment's declared data file was not found in any of the places it may be."""


GRADER_FAILED = "the grader failed on this submission — tell your instructor"
"""What a student reads where the grader, not the submission, failed."""


class WorkerUnavailable(GraderError):
    """The sandboxed worker could not start (it died, or never answered, before running any
    student code). The message is :data:`GRADER_FAILED`; ``detail`` is for staff."""

    def __init__(self, detail: str) -> None:
        super().__init__(GRADER_FAILED)
        self.detail = detail


class SubmissionError(Exception):
    """A fault of one submission. It costs that submission points; the run goes on."""

    #: short machine-readable kind, used in results and the class report
    kind = "submission"


class NotebookUnreadable(SubmissionError):
    kind = "unreadable"


class MissingFunction(SubmissionError):
    kind = "missing"


class StudentException(SubmissionError):
    kind = "exception"


class CallTimeout(SubmissionError):
    kind = "timeout"


class SubmissionTimeout(SubmissionError):
    kind = "timeout"


class WorkerCrashed(SubmissionError):
    kind = "crash"


class RefusedValue(SubmissionError):
    kind = "refused"


class CheckerLimit(SubmissionError):
    kind = "refused"
