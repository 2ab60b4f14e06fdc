"""Grading profiles: how much data, how many epochs, which thresholds.

Every assignment has the profiles ``quick`` (the default) and ``full``; an assignment that
trains models sets their numbers in its ``assignment.toml``::

    [profiles.quick]
    train_size = 10_000              # the first N training examples; omit for all of them
    full_train_size = 60_000         # with no train_size: how many "all" must be
    epochs = { mlp = 5, cnn = 3 }
    batch_size = 128
    thresholds = { mlp = 0.92, cnn = 0.96 }

Thresholds depend on the profile (data and budget), never on the machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from grader.errors import ConfigurationError

if TYPE_CHECKING:
    from grader.course import Assignment


@dataclass(frozen=True)
class Profile:
    name: str
    train_size: int | None = None
    """How many training examples (the first N); None means all of them."""
    epochs: dict[str, int] = field(default_factory=dict)
    batch_size: int = 128
    thresholds: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    full_train_size: int | None = None
    """With ``train_size`` None: how many examples the whole training set must hold."""
    description: str = ""


BASE_PROFILES: dict[str, Profile] = {
    "quick": Profile(name="quick", description="the default: a slice of the data, seconds per "
                     "model"),
    "full": Profile(name="full", description="all the data: minutes per model"),
}
#: The model kinds of the bench scripts (bench/limit.py).
MODEL_KINDS = ("mlp", "cnn", "lstm", "gru")
KEYS = ("train_size", "full_train_size", "epochs", "batch_size", "thresholds", "seed",
        "description")


def profile_names(assignment: Assignment | None = None) -> tuple[str, ...]:
    declared = tuple(assignment.profiles) if assignment is not None else ()
    return tuple(dict.fromkeys((*BASE_PROFILES, *declared)))


def get_profile(name: str, assignment: Assignment | None = None) -> Profile:
    """The profile ``name``, with the numbers ``assignment`` declares for it."""
    names = profile_names(assignment)
    if name not in names:
        raise ConfigurationError(
            f"unknown grading profile {name!r}: expected one of {', '.join(names)}")
    profile = BASE_PROFILES.get(name, Profile(name=name))
    declared: Mapping[str, Any] = assignment.profiles.get(name, {}) if assignment else {}
    unknown = sorted(set(declared) - set(KEYS))
    if unknown:
        raise ConfigurationError(
            f"assignment {assignment.name if assignment else ''!r}: [profiles.{name}] has the "
            f"unknown key(s) {', '.join(unknown)}; expected some of {', '.join(KEYS)}")
    values: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v
                              for k, v in declared.items()}
    return replace(profile, **values)
