"""MNIST for the checking process. Real data only.

Load order: an explicit path (argument or ``MNIST_NPZ``), then Keras' cache
(``~/.keras/datasets/mnist.npz``), then ``keras.datasets.mnist.load_data()`` (downloads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader.errors import DataUnavailable
from grader.profiles import Profile

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def for_profile(self, profile: Profile) -> Mnist:
        """The training slice the profile asks for; the test set is always whole."""
        n = profile.train_size
        if n is not None and len(self.x_train) < n:
            raise DataUnavailable(
                f"profile {profile.name!r} trains on the first {n:,} MNIST images, but "
                f"{self.source} holds only {len(self.x_train):,}"
            )
        if n is None and len(self.x_train) < 60_000:
            raise DataUnavailable(
                f"profile {profile.name!r} trains on all 60,000 MNIST images, but {self.source} "
                f"holds only {len(self.x_train):,}; use --profile quick or provide the full set"
            )
        return Mnist(self.x_train[:n], self.y_train[:n], self.x_test, self.y_test, self.source)


def keras_cache_path() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"


def find_mnist(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Where MNIST is, without downloading; None if nowhere."""
    explicit = path or os.environ.get("MNIST_NPZ")
    if explicit:
        return Path(explicit)
    cached = keras_cache_path()
    return cached if cached.exists() else None


def _read_npz(path: Path) -> Mnist:
    if not path.exists():
        raise DataUnavailable(
            f"MNIST file {path} does not exist: set MNIST_NPZ or --mnist to an .npz with the "
            f"keys {', '.join(REQUIRED_KEYS)}"
        )
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in REQUIRED_KEYS if k not in npz.files]
        if missing:
            raise DataUnavailable(
                f"{path} is not an MNIST file in Keras' layout: expected keys "
                f"{', '.join(REQUIRED_KEYS)}, missing {', '.join(missing)}"
            )
        arrays = {k: npz[k] for k in REQUIRED_KEYS}
    for key in ("x_train", "x_test"):
        if arrays[key].dtype != np.uint8 or arrays[key].shape[1:] != (28, 28):
            raise DataUnavailable(
                f"{path}: {key} must be uint8 images of shape (N, 28, 28), found "
                f"{arrays[key].dtype} {arrays[key].shape}"
            )
    return Mnist(source=str(path), **arrays)


def load_mnist(path: str | os.PathLike[str] | None = None) -> Mnist:
    """Real MNIST from the first place that has it; a clear error when offline with none."""
    found = find_mnist(path)
    if found is not None:
        return _read_npz(found)
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - any download failure means the same to the user
        raise DataUnavailable(
            "MNIST is not available offline and could not be downloaded "
            f"({type(exc).__name__}: {exc}). Provide it with --mnist PATH or MNIST_NPZ=PATH "
            f"(an .npz with {', '.join(REQUIRED_KEYS)}), or place it at {keras_cache_path()}"
        ) from exc
    return Mnist(x_train, y_train, x_test, y_test, source="keras.datasets.mnist.load_data()")
