"""Finding and reading the data files an assignment declares (``[data.<key>]`` in its toml).

The grader knows no dataset: an assignment names each file it needs (an environment variable,
a file name in Keras' cache) and its own ``conftest.py`` turns the file into a fixture, with
:func:`read_npz` and :class:`Dataset` for the common case of a train/test ``.npz``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grader.course import (
    Assignment,
    keras_home,
)
from grader.errors import DataUnavailable

TRAIN_TEST_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Dataset:
    """Training and test arrays, in Keras' ``load_data()`` layout."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def for_profile(self, profile: Any) -> Dataset:
        """The training slice the profile asks for (``profile.train_size``: the first N, None
        for all and ``profile.full_train_size`` checked); the test set is always whole."""
        n = profile.train_size
        if n is not None and len(self.x_train) < n:
            raise DataUnavailable(
                f"profile {profile.name!r} trains on the first {n:,} training examples, but "
                f"{self.source} holds only {len(self.x_train):,}"
            )
        full = getattr(profile, "full_train_size", None)
        if n is None and full and len(self.x_train) < full:
            raise DataUnavailable(
                f"profile {profile.name!r} trains on all {full:,} training examples, but "
                f"{self.source} holds only {len(self.x_train):,}; use --profile quick or provide "
                "the full set"
            )
        return Dataset(self.x_train[:n], self.y_train[:n], self.x_test, self.y_test, self.source)


def keras_cache_path(file_name: str) -> Path:
    return keras_home() / "datasets" / file_name


def read_npz(path: Path, keys: tuple[str, ...] = TRAIN_TEST_KEYS, *, hint: str = "") -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` at ``path``; a :class:`DataUnavailable` that names
    what is missing otherwise (``hint`` says how to provide the file)."""
    if not path.exists():
        raise DataUnavailable(f"data file {path} does not exist{': ' + hint if hint else ''}; "
                              f"expected an .npz with the keys {', '.join(keys)}")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in keys if k not in npz.files]
        if missing:
            raise DataUnavailable(
                f"{path}: expected the keys {', '.join(keys)}, missing {', '.join(missing)}")
        return {k: npz[k] for k in keys}


def find_data(assignment: Assignment, key: str, explicit: str | os.PathLike[str] | None = None
              ) -> Path | None:
    """Where the assignment's data file ``key`` is, without downloading; None if nowhere."""
    spec = next((d for d in assignment.data if d.key == key), None)
    if spec is None:
        raise DataUnavailable(f"assignment {assignment.name!r} declares no data file {key!r}")
    return spec.find(explicit)


def load_dataset(assignment: Assignment, key: str, explicit: str | os.PathLike[str] | None = None
                 ) -> Dataset:
    """The assignment's data file ``key``, read as a train/test :class:`Dataset`."""
    spec = next((d for d in assignment.data if d.key == key), None)
    found = find_data(assignment, key, explicit)
    if found is None or spec is None:
        places = [f"--data {key}=PATH"]
        if spec is not None and spec.env:
            places.append(f"the environment variable {spec.env}")
        if spec is not None and spec.cache_path is not None:
            places.append(str(spec.cache_path))
        raise DataUnavailable(f"the data file {key!r} of {assignment.name!r} is not found: "
                              f"expected it at {' or '.join(places)}")
    return Dataset(source=str(found), **read_npz(found))
