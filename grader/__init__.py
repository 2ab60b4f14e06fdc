"""Auto-grading for the deep-learning course: hidden pytest suites, sandboxed student code."""

from grader.errors import GraderError, SubmissionError
from grader.results import SubmissionResult, TestResult

__version__ = "0.1.0"

__all__ = ["GraderError", "SubmissionError", "SubmissionResult", "TestResult", "__version__"]
