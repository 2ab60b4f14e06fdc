"""The losses_optimizers assignment's own fixtures: a small slice of real MNIST for the short
training run, from the file its assignment.toml declares (``[data.mnist]``: ``--data
mnist=PATH``, ``MNIST_NPZ``, Keras' cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grader.data import TRAIN_TEST_KEYS, Dataset, keras_cache_path, read_npz
from grader.errors import DataUnavailable

HINT = "set MNIST_NPZ or pass --data mnist=PATH"


@pytest.fixture(scope="session")
def mnist(data_files: dict[str, Path | None]) -> Dataset:
    """Real MNIST; a clear error, not a download, when no file is found (the training run uses a
    few hundred images, and grading must not depend on the network)."""
    path = data_files.get("mnist")
    if path is None:
        raise DataUnavailable(
            f"the adam_step training check needs MNIST and found none: {HINT} (an .npz with "
            f"{', '.join(TRAIN_TEST_KEYS)}), or place it at {keras_cache_path('mnist.npz')}")
    arrays = read_npz(path, TRAIN_TEST_KEYS, hint=HINT)
    if arrays["x_train"].dtype != np.uint8 or arrays["x_train"].shape[1:] != (28, 28):
        raise DataUnavailable(f"{path}: x_train must be uint8 images of shape (N, 28, 28), found "
                              f"{arrays['x_train'].dtype} {arrays['x_train'].shape}")
    return Dataset(source=str(path), **arrays)
