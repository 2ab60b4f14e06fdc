"""The grading recipe: how the checking process trains and evaluates a student's model.

The model is rebuilt from its saved architecture with fresh, seeded weights and compiled with
the student's compile settings (optimizer config, loss, metrics), so weights a submission brings
change nothing. Training is seeded and uses deterministic ops: the same notebook gives the same
accuracy run after run on the same machine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grader.data import Mnist
from grader.profiles import Profile

INPUT_KIND = {"mlp": "mlp", "cnn": "cnn", "lstm": "rnn", "gru": "rnn"}


@dataclass
class TrainingOutcome:
    accuracy: float
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)


def configure_determinism() -> None:
    """Seeded, deterministic TensorFlow; GPU memory growth so several graders share a card."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised: growth was set earlier in this process
    tf.config.experimental.enable_op_determinism()


def device_description() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU:0 ({details.get('device_name', 'unknown')})"


def reference_inputs(images: np.ndarray, labels: np.ndarray, kind: str) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
    """The grader's own preprocessing (never the student's) for the recipe."""
    x = images.astype("float32") / 255.0
    if kind == "mlp":
        x = x.reshape(len(x), 784)
    elif kind == "cnn":
        x = x.reshape(len(x), 28, 28, 1)
    y = np.eye(10, dtype="float32")[labels.astype("int64")]
    return x, y


def fresh_copy(model: Any, seed: int) -> Any:
    """Same architecture and compile settings, new seeded weights."""
    import keras

    keras.utils.set_random_seed(seed)
    clone = keras.models.clone_model(model)
    config = model.get_compile_config() or {}
    optimizer = config.get("optimizer") or "adam"
    if isinstance(optimizer, dict):
        optimizer = keras.optimizers.deserialize(optimizer)
    loss = config.get("loss") or "categorical_crossentropy"
    if isinstance(loss, dict):
        loss = keras.losses.deserialize(loss)
    clone.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return clone


def train_and_evaluate(model: Any, model_kind: str, profile: Profile, data: Mnist) -> TrainingOutcome:
    """Train a fresh copy of ``model`` under the profile's recipe; accuracy on the test set."""
    import keras

    configure_determinism()
    data = data.for_profile(profile)
    kind = INPUT_KIND[model_kind]
    x_train, y_train = reference_inputs(data.x_train, data.y_train, kind)
    x_test, y_test = reference_inputs(data.x_test, data.y_test, kind)
    clone = fresh_copy(model, profile.seed)
    started = time.perf_counter()
    history = clone.fit(x_train, y_train, batch_size=profile.batch_size,
                        epochs=profile.epochs[model_kind], shuffle=True, verbose=0)
    seconds = time.perf_counter() - started
    probabilities = clone.predict(x_test, batch_size=1024, verbose=0)
    predicted = np.argmax(probabilities, axis=1)
    accuracy = float(np.mean(predicted == data.y_test))
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (data.y_test.astype(int), predicted), 1)
    keras.backend.clear_session()
    return TrainingOutcome(
        accuracy=accuracy,
        seconds=seconds,
        history={k: [float(v) for v in vals] for k, vals in history.history.items()},
        confusion=confusion.tolist(),
    )
