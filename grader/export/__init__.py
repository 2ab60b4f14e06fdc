"""Pure exporters of the results model: Gradescope JSON, CSV gradebook, feedback page, class report.

None of them grades anything; each reads :class:`grader.results.SubmissionResult` objects.
"""

from grader.export.classreport import (
    ClassSummary,
    render_class_report,
    summarize,
    write_class_report,
)
from grader.export.feedback import render_feedback, write_feedback
from grader.export.gradebook import write_gradebook
from grader.export.gradescope import to_gradescope, write_results_json

__all__ = [
    "ClassSummary",
    "render_class_report",
    "render_feedback",
    "summarize",
    "to_gradescope",
    "write_class_report",
    "write_feedback",
    "write_gradebook",
    "write_results_json",
]
