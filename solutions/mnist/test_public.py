"""Public checks for the mnist assignment: shapes and parameter counts, no training.
Passing them does not guarantee full marks; the hidden tests also train your models."""

import numpy as np

COUNTS = {"build_mlp": 101_770, "build_cnn": 242_062, "build_lstm": 81_674}


def test_preprocess__shapes(submission):
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    labels = np.arange(4)
    for kind, shape in {"mlp": (4, 784), "cnn": (4, 28, 28, 1), "rnn": (4, 28, 28)}.items():
        x, y = submission.call("preprocess", images, labels, kind=kind)
        assert x.shape == shape, f"preprocess(kind={kind!r}): x shape {x.shape}, expected {shape}"
        assert y.shape == (4, 10), f"preprocess(kind={kind!r}): y shape {y.shape}, expected (4, 10)"


def _count(submission, function):
    model = submission.call(function)
    found = model.count_params()
    assert found == COUNTS[function], (
        f"{function}(): expected {COUNTS[function]:,} parameters, found {found:,} — compare "
        "model.summary() with the table in the notebook")


def test_build_mlp__parameter_count(submission):
    _count(submission, "build_mlp")


def test_build_cnn__parameter_count(submission):
    _count(submission, "build_cnn")


def test_build_lstm__parameter_count(submission):
    _count(submission, "build_lstm")
