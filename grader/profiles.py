"""Grading profiles: which data, how many epochs, which accuracy thresholds.

Thresholds depend on the profile (data and budget), never on the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from grader.errors import ConfigurationError

MODEL_KINDS = ("mlp", "cnn", "lstm", "gru")


@dataclass(frozen=True)
class Profile:
    name: str
    train_size: int | None
    """How many training images (the first N); None means all of them."""
    epochs: dict[str, int]
    batch_size: int
    thresholds: dict[str, float]
    seed: int = 0


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        train_size=10_000,
        epochs={"mlp": 5, "cnn": 3, "lstm": 3, "gru": 3},
        batch_size=128,
        thresholds={"mlp": 0.92, "cnn": 0.96, "lstm": 0.87, "gru": 0.85},
    ),
    "full": Profile(
        name="full",
        train_size=None,
        epochs={"mlp": 5, "cnn": 3, "lstm": 3, "gru": 3},
        batch_size=128,
        thresholds={"mlp": 0.965, "cnn": 0.98, "lstm": 0.96, "gru": 0.96},
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown grading profile {name!r}: expected one of {', '.join(PROFILES)}"
        ) from None
