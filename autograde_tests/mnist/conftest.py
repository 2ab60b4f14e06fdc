"""The mnist assignment's own fixtures: real MNIST, from the file its assignment.toml declares
(``[data.mnist]``: ``--data mnist=PATH``, ``MNIST_NPZ``, Keras' cache), else a download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grader.data import TRAIN_TEST_KEYS, Dataset, keras_cache_path, read_npz
from grader.errors import DataUnavailable

HINT = "set MNIST_NPZ or pass --data mnist=PATH"


def load_mnist(path: Path | None) -> Dataset:
    """Real MNIST from ``path``, or Keras' download; a clear error when offline with none."""
    if path is not None:
        arrays = read_npz(path, TRAIN_TEST_KEYS, hint=HINT)
        for key in ("x_train", "x_test"):
            if arrays[key].dtype != np.uint8 or arrays[key].shape[1:] != (28, 28):
                raise DataUnavailable(
                    f"{path}: {key} must be uint8 images of shape (N, 28, 28), found "
                    f"{arrays[key].dtype} {arrays[key].shape}")
        return Dataset(source=str(path), **arrays)
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - any download failure means the same to the user
        raise DataUnavailable(
            "MNIST is not available offline and could not be downloaded "
            f"({type(exc).__name__}: {exc}); {HINT} (an .npz with {', '.join(TRAIN_TEST_KEYS)}),"
            f" or place it at {keras_cache_path('mnist.npz')}") from exc
    return Dataset(x_train, y_train, x_test, y_test, source="keras.datasets.mnist.load_data()")


@pytest.fixture(scope="session")
def mnist(data_files: dict[str, Path | None]) -> Dataset:
    return load_mnist(data_files.get("mnist"))
