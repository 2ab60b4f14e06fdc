"""nbgrader configuration: this repository is the course directory.

    solutions/<assignment>/    nbgrader's source (the masters, with solutions and hidden tests)
    assignments/<assignment>/  nbgrader's release (what students get)
    submitted/, autograded/, feedback/, gradebook.db   nbgrader's defaults, never committed

Run every nbgrader command from the repository root (or from a copy of it), with the
virtual environment active (nbgrader calls ``alembic`` from PATH):

    nbgrader generate_assignment mnist --force   # or `grader release mnist`, which also checks
    # submissions: submitted/<student_id>/mnist/mnist.ipynb (nbgrader collect, or copy them)
    nbgrader autograde mnist
    nbgrader generate_feedback mnist
    nbgrader export

The autograder cells call the hidden suites in autograde_tests/ through
``grader.notebook.autograde``; their numeric result is the cell's partial credit.
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

# --- Where things are --------------------------------------------------------------------
c.CourseDirectory.root = str(Path(__file__).resolve().parent)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"

# --- Release -----------------------------------------------------------------------------
# The stub that replaces each ### BEGIN SOLUTION / ### END SOLUTION region. The `def` line
# stays outside the region, so students keep the signature and the docstring.
c.ClearSolutions.code_stub = {"python": "raise NotImplementedError()"}

# --- Autograding -------------------------------------------------------------------------
# One cell may train a model with the grading recipe: the `quick` profile takes seconds per
# model, the `full` profile (all 60,000 images) a few minutes per model on a CPU. A cell that
# runs past this limit is interrupted (nbgrader records a CellTimeoutError in it) and the
# cells after it still run.
c.Execute.timeout = 900

# nbgrader gives 0 points to an autograder cell that writes anything to stderr. TensorFlow,
# Keras and absl log to stderr on their own (start-up banners, CPU feature notes, retracing
# warnings); none of that is the student's fault. Quieten TensorFlow's C++ logging in the
# kernels nbgrader starts (they inherit this process's environment) ...
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# ... and drop the stderr outputs that are library logging, whatever gets through. The
# pattern is searched in each stderr output of a cell; errors raised by the student's code
# are "error" outputs, not stderr, and still cost the points.
TF_LOG_PATTERNS = [
    r"^[IWEF]\d{4} \d+:\d+:\d+\.\d+ +\d+ [\w.]+:\d+\]",  # absl / TSL C++ log lines
    r"absl::InitializeLog",
    r"^(WARNING|INFO|ERROR):(absl|tensorflow|keras|h5py)[:.]",  # Python logging of the libraries
    r"[\\/](tensorflow|keras|absl|tf_keras|ml_dtypes|h5py|optree|jax)[\\/].*:\d+: \w*Warning",
    r"oneDNN custom operations",
    r"Could not find cuda drivers|Unable to register cu(DNN|FFT|BLAS) factory",
    r"This TensorFlow binary is optimized",
    r"^To enable the following instructions: .* rebuild TensorFlow",
    r"TF-TRT Warning",
]
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = "(?m)" + "|".join(f"(?:{p})" for p in TF_LOG_PATTERNS)
