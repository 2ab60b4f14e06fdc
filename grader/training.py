"""The grading recipe: how the checking process trains and evaluates a student's model.

The accuracy comes from the architecture only. Every layer is rebuilt from its configuration
with re-drawn, seeded weights, and every layer is trained:

- a frozen layer (``trainable=False``) is trained all the same;
- an initialiser that carries data (``Constant``, or any with array values) is replaced by the
  layer's default initialiser, and a fixed initialiser or layer ``seed`` is dropped, so the
  profile's seed draws every weight;
- a regulariser or constraint that is not one of Keras' own data-free ones is removed;
- a layer whose configuration carries an array (e.g. a ``Normalization`` adapted to some data)
  is refused with :class:`ModelRefused`.

Before that, the model is put in its normal form (:func:`normal_form`), so that one architecture
written two ways trains as one: a functional model that is a plain chain of layers becomes the
``Sequential`` of those layers, and an activation layer (``Activation``, a default ``ReLU``,
``Softmax`` on the last axis) right after a ``Dense`` or convolution without an activation
becomes that layer's ``activation``. Both compute the same function with the same weights drawn
in the same order; ``tests/test_training_cache.py`` trains each form both ways and finds the
same outcome, bit for bit.

Each change is reported in :attr:`TrainingOutcome.notes`, so a model brought pre-trained in
any way scores exactly what the same architecture scores untouched. The model is compiled with
the student's optimizer and loss (a loss that cannot take the recipe's one-hot labels is
refused with a message), trained with seeded, deterministic ops, and evaluated on the test set:
the same notebook gives the same accuracy run after run on the same machine.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from grader.data import Dataset
from grader.errors import CheckerLimit
from grader.profiles import Profile

INPUT_KIND = {"mlp": "mlp", "cnn": "cnn", "lstm": "rnn", "gru": "rnn"}
DATA_FREE_REGULARIZERS = frozenset({"L1", "L2", "L1L2", "OrthogonalRegularizer"})
DATA_FREE_CONSTRAINTS = frozenset({"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"})
SPARSE_LOSSES = frozenset({"sparsecategoricalcrossentropy", "sparsecategoricalfocalcrossentropy"})
LARGEST_PLAIN_LIST = 16
"""A configuration list longer than this (of numbers) is data, not a setting."""
FOLDS_INTO = frozenset({"Dense", "Conv1D", "Conv2D", "Conv3D"})
"""Layers whose output is ``activation(...)`` of all they compute: an activation layer right
after one of them (with ``activation="linear"``) is the same as that layer's own activation."""
MASKING = frozenset({"Masking", "Embedding"})
"""Layers that can give their output a mask (``Softmax`` applies a mask; an activation does not)."""


class ModelRefused(Exception):
    """The recipe cannot train this model as it is; the message says why and what to change."""


@dataclass
class TrainingOutcome:
    accuracy: float
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the recipe changed to train the architecture alone (frozen layers, initialisers)."""


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


def _class_name(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("class_name", ""))
    return str(value or "")


def _carries_data(value: Any) -> bool:
    """Whether a configuration value holds an array (a NumPy payload or a long list of numbers)."""
    if isinstance(value, dict):
        return value.get("class_name") == "__numpy__" or any(
            _carries_data(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return (len(value) > LARGEST_PLAIN_LIST and all(isinstance(v, (int, float))
                                                        for v in value)
                or any(isinstance(v, (list, tuple, dict)) and _carries_data(v) for v in value))
    return False


def _default_setting(layer_class: type, key: str) -> Any:
    try:
        parameter = inspect.signature(layer_class).parameters.get(key)
    except (TypeError, ValueError):
        parameter = None
    if parameter is not None and parameter.default is not inspect.Parameter.empty:
        return parameter.default
    return "zeros" if "bias" in key else "glorot_uniform"


def _sanitize(layer_class: type, config: dict[str, Any], where: str, notes: list[str]) -> None:
    """Make ``config`` (a layer's, in place) describe the architecture and nothing more."""
    if config.get("trainable") is False:
        config["trainable"] = True
        notes.append(f"{where} is frozen (trainable=False); the recipe trains every layer")
    if config.get("seed") is not None:
        config["seed"] = None
    for key, value in list(config.items()):
        if key.endswith("_initializer") and isinstance(value, dict):
            if _class_name(value) == "Constant" or _carries_data(value.get("config", {})):
                default = _default_setting(layer_class, key)
                config[key] = default
                notes.append(f"{where}: {key}={_class_name(value)}(...) carries weights; the "
                             f"recipe draws fresh ones with the layer's default "
                             f"({_class_name(default) or 'none'})")
            elif isinstance(value.get("config"), dict) and value["config"].get("seed") is not None:
                value["config"]["seed"] = None
        elif key.endswith(("_regularizer", "_constraint")) and value is not None:
            known = DATA_FREE_REGULARIZERS if key.endswith("_regularizer") \
                else DATA_FREE_CONSTRAINTS
            if _class_name(value) not in known or _carries_data(value):
                config[key] = None
                notes.append(f"{where}: {key}={_class_name(value)} is not one of Keras' own "
                             "data-free ones; the recipe trains without it")
        elif isinstance(value, dict) and isinstance(value.get("config"), dict) and \
                "class_name" in value and key in ("layer", "cell", "backward_layer"):
            _sanitize(object, value["config"], f"{where} ({key})", notes)
        elif key not in ("build_config", "batch_shape", "batch_input_shape", "shape") and \
                _carries_data(value):
            raise ModelRefused(
                f"{where} carries data in its configuration ({key}); the grading recipe trains "
                "the architecture alone from fresh weights — remove that setting, or build the "
                "layer without data")


def _is_keras_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("module") == "keras.layers" \
        and entry.get("registered_name") is None and isinstance(entry.get("config"), dict)


def _chain(config: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The layer entries of a functional model's configuration that is a plain chain (one
    input, each layer called once on the previous layer's output, the last one the output);
    None for anything else."""
    entries = config.get("layers")
    if not isinstance(entries, list) or len(entries) < 2 \
            or not all(_is_keras_entry(e) for e in entries) \
            or entries[0].get("class_name") != "InputLayer" or entries[0].get("inbound_nodes"):
        return None
    names = [e.get("name") for e in entries]
    if len(set(names)) != len(names):
        return None
    for previous, entry in zip(names[:-1], entries[1:], strict=True):
        nodes = entry.get("inbound_nodes")
        # A recorded ``training`` argument is no setting (fit and predict pass their own), and
        # no mask is what a chain without masking layers passes on.
        if not (isinstance(nodes, (list, tuple)) and len(nodes) == 1
                and isinstance(nodes[0], dict) and isinstance(nodes[0].get("kwargs"), dict)
                and all(k == "training" or (k == "mask" and v is None)
                        for k, v in nodes[0]["kwargs"].items())
                and isinstance(nodes[0].get("args"), (list, tuple))
                and len(nodes[0]["args"]) == 1):
            return None
        tensor = nodes[0]["args"][0]
        history = tensor.get("config", {}).get("keras_history") if isinstance(tensor, dict) \
            else None
        if tensor.get("class_name") != "__keras_tensor__" \
                or not isinstance(history, (list, tuple)) or list(history) != [previous, 0, 0]:
            return None
    for key, name in (("input_layers", names[0]), ("output_layers", names[-1])):
        ends = config.get(key)
        if not isinstance(ends, (list, tuple)) or list(ends) not in ([name, 0, 0],
                                                                     [[name, 0, 0]]):
            return None
    return [{k: v for k, v in e.items() if k not in ("name", "inbound_nodes")} for e in entries]


def _activation_of(entry: dict[str, Any]) -> str | None:
    """The activation an activation layer's entry applies, when it is a plain Keras one."""
    config = entry["config"]
    settings = {k: v for k, v in config.items() if k not in ("name", "trainable", "dtype")}
    kind = entry.get("class_name")
    if kind == "Activation" and set(settings) == {"activation"} \
            and isinstance(settings["activation"], str):
        return settings["activation"]
    if kind == "ReLU" and settings == {"max_value": None, "negative_slope": 0.0,
                                       "threshold": 0.0}:
        return "relu"
    if kind == "Softmax" and settings == {"axis": -1}:
        return "softmax"
    return None


def _fold_activations(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``entries`` with each activation layer that can be folded into the layer before it."""
    if any(e.get("class_name") in MASKING for e in entries):
        return entries
    folded: list[dict[str, Any]] = []
    for entry in entries:
        before = folded[-1] if folded else None
        activation = _activation_of(entry) if _is_keras_entry(entry) else None
        if activation is not None and before is not None and _is_keras_entry(before) \
                and before.get("class_name") in FOLDS_INTO \
                and before["config"].get("activation") == "linear" \
                and before["config"].get("dtype") == entry["config"].get("dtype"):
            folded[-1] = {**before, "config": {**before["config"], "activation": activation}}
            continue
        folded.append(entry)
    return folded


def normal_form(model: Any) -> Any:
    """``model`` as the recipe trains it: a functional chain as a ``Sequential``, activation
    layers folded into the layer before them. The same model when there is nothing to change
    (or it is not a Sequential or functional model of Keras' own layers)."""
    import keras

    kind = type(model).__name__
    if not type(model).__module__.startswith("keras.") or kind not in ("Sequential",
                                                                       "Functional"):
        return model
    try:
        config = model.get_config()
    except Exception:  # noqa: BLE001 - a configuration Keras cannot give: train as it is
        return model
    entries = _chain(config) if kind == "Functional" else config.get("layers")
    if not isinstance(entries, list) or not all(_is_keras_entry(e) for e in entries):
        return model
    folded = _fold_activations(entries)
    if kind == "Sequential" and len(folded) == len(entries):
        return model
    normal = {"name": config.get("name"), "trainable": config.get("trainable", True),
              "layers": folded}
    if "dtype" in config:
        normal["dtype"] = config["dtype"]
    try:
        return keras.Sequential.from_config(normal)
    except Exception:  # noqa: BLE001 - what Keras cannot rebuild so is trained as written
        return model


def fresh_copy(model: Any, seed: int, notes: list[str] | None = None, *,
               normalise: bool = True) -> Any:
    """Same architecture and compile settings, every layer re-drawn under ``seed`` and
    trainable, in its normal form (:func:`normal_form`) unless ``normalise`` is False. What had
    to change to get there is appended to ``notes``."""
    import keras

    found = notes if notes is not None else []

    def rebuild(layer: Any) -> Any:
        config = layer.get_config()
        _sanitize(type(layer), config, f"layer {layer.name!r} ({type(layer).__name__})", found)
        return type(layer).from_config(config)

    written = normal_form(model) if normalise else model  # builds layers: before the seed
    keras.utils.set_random_seed(seed)
    clone = keras.models.clone_model(written, clone_function=rebuild)
    if not clone.trainable:
        found.append("the model is frozen (trainable=False); the recipe trains every layer")
    clone.trainable = True
    for layer in clone.layers:
        layer.trainable = True
    config = model.get_compile_config() or {}
    optimizer = config.get("optimizer") or "adam"
    if isinstance(optimizer, dict):
        optimizer = keras.optimizers.deserialize(optimizer)
    loss = config.get("loss") or "categorical_crossentropy"
    loss_name = _class_name(loss) if isinstance(loss, dict) else str(loss)
    if loss_name.replace("_", "").lower() in SPARSE_LOSSES:
        raise ModelRefused(
            f"the model is compiled with loss {loss_name!r}, which expects integer labels, but "
            "the grading recipe trains on one-hot labels of shape (N, 10), as preprocess() "
            "returns them — compile with loss='categorical_crossentropy'")
    if isinstance(loss, dict):
        loss = keras.losses.deserialize(loss)
    clone.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return clone


AHEAD_LARGEST_PARAMS = 2_000_000
"""A model with more parameters than this is not trained ahead (:func:`train_ahead`): its
training is left to its own test, within that test's limits."""
_AHEAD: list[tuple[Any, str, Profile, Dataset]] = []
"""Models this submission's suite will train later (:func:`train_ahead`), the first one to try
first."""


def train_ahead(model: Any, model_kind: str, profile: Profile, data: Dataset) -> None:
    """Say that a later test of this submission trains ``model``. With a training cache on,
    while :func:`train_and_evaluate` waits for another process that trains a model it needs
    (the same model, in a classmate's submission), this process trains one of these instead,
    under the cache's lock of its key, and stores the outcome for the test that needs it: the
    waiting time is used, and every key is still trained once, by the recipe. Without a cache
    it does nothing."""
    from grader.training_cache import TrainingCache

    if TrainingCache.from_environment() is not None:
        _AHEAD.append((model, model_kind, profile, data))


def forget_ahead() -> None:
    """Drop the models :func:`train_ahead` was told about (the checking process does so
    between submissions)."""
    _AHEAD.clear()


def _train_one_ahead() -> bool:
    """Train the first model told to :func:`train_ahead` that no entry stores and no process is
    training; True once one is trained (the caller's random state is then changed)."""
    import keras

    from grader.training_cache import STATS, TrainingCache, training_key

    cache = TrainingCache.from_environment()
    while _AHEAD and cache is not None:
        model, model_kind, profile, data = _AHEAD.pop(0)
        try:
            if model.count_params() > AHEAD_LARGEST_PARAMS:
                continue
            notes: list[str] = []
            clone = fresh_copy(model, profile.seed, notes)
            key = training_key(clone, model_kind=model_kind, profile=profile, data=data)
            if key is None:
                continue
            if cache.fill(key, functools.partial(_fit_and_evaluate, clone, model_kind, profile,
                                                 data.for_profile(profile), notes)):
                STATS.ahead += 1
                return True
        except Exception as exc:  # noqa: BLE001 - its own test trains it and says what is wrong
            if isinstance(exc, CheckerLimit):
                raise  # this process's own limit, raised into it: not this model's business
            continue
        finally:
            keras.backend.clear_session(free_memory=False)
    return False


def train_and_evaluate(model: Any, model_kind: str, profile: Profile, data: Dataset) -> TrainingOutcome:
    """Train a fresh copy of ``model`` under the profile's recipe; accuracy on the test set.

    With a training cache (:mod:`grader.training_cache`), a fresh copy already trained under
    the same key is not trained again: its stored outcome comes back, with this copy's notes.
    While another process trains that key, this one trains a model told to
    :func:`train_ahead` meanwhile."""
    import keras

    from grader.training_cache import STATS, through_cache

    configure_determinism()
    _AHEAD[:] = [entry for entry in _AHEAD if entry[0] is not model]  # its own test is now
    notes: list[str] = []
    clone = fresh_copy(model, profile.seed, notes)
    sliced = data.for_profile(profile)
    hits_before = STATS.hits
    waited = False

    def meanwhile() -> bool:
        nonlocal waited
        waited = True
        return _train_one_ahead()

    def train() -> TrainingOutcome:
        # After anything done meanwhile (fresh copies, trainings), the fresh copy is made
        # again: the random state is then exactly what it is when one is trained at once.
        fresh = fresh_copy(model, profile.seed) if waited else clone
        return _fit_and_evaluate(fresh, model_kind, profile, sliced, notes)

    outcome = through_cache(clone, model_kind=model_kind, profile=profile, data=data,
                            train=train, meanwhile=meanwhile)
    # Python's garbage collection (seconds with TensorFlow loaded) only after a training: an
    # outcome read back leaves a model's worth of garbage, which the next collection takes.
    keras.backend.clear_session(free_memory=STATS.hits == hits_before)
    return replace(outcome, notes=notes)


def unautotuned_batches(x: np.ndarray, y: np.ndarray | None = None, *, batch_size: int,
                        shuffle: bool = False) -> dict[str, Any]:
    """The arguments of ``fit`` or ``predict`` that give Keras's own batches of ``x`` (and
    ``y``), with tf.data's autotuning off.

    ``model.fit(x, y, shuffle=True)`` makes a new iterator of Keras's array pipeline for each
    epoch, and deleting the old one waits for tf.data's autotuning thread, the training doing
    nothing meanwhile. Two processes training four models each on two cores (a course's
    reference models, quick profile) spent 0.07 to 5.1 s per training between an epoch's start
    and its first batch, median 1.1 s; without the autotuning, 0.06 to 0.14 s.

    These are Keras's own batches: the same seeded shuffle, the same partial last batch and a
    known number of steps (without it Keras iterates otherwise, and the outcome changes), so a
    training is the same to the bit (``tests/test_training.py`` compares them), without the
    autotuning. Where this Keras has no such pipeline, the arrays themselves (autotuned)."""
    import tensorflow as tf

    try:
        from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

        adapter = ArrayDataAdapter(x, y, batch_size=batch_size, shuffle=shuffle)
        dataset = adapter.get_tf_dataset().apply(
            tf.data.experimental.assert_cardinality(adapter.num_batches))
    except (ImportError, AttributeError, TypeError, ValueError):
        arrays = {"x": x, "batch_size": batch_size}
        return {**arrays, "y": y, "shuffle": shuffle} if y is not None else arrays
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = dataset.with_options(options)
    # Keras's ``shuffle`` would only warn: the dataset shuffles each epoch itself
    return {"x": dataset, "shuffle": False} if y is not None else {"x": dataset}


def _fit_and_evaluate(clone: Any, model_kind: str, profile: Profile, data: Dataset,
                      notes: list[str]) -> TrainingOutcome:
    kind = INPUT_KIND[model_kind]
    x_train, y_train = reference_inputs(data.x_train, data.y_train, kind)
    x_test, y_test = reference_inputs(data.x_test, data.y_test, kind)
    started = time.perf_counter()
    history = clone.fit(**unautotuned_batches(x_train, y_train, batch_size=profile.batch_size,
                                              shuffle=True),
                        epochs=profile.epochs[model_kind], verbose=0)
    seconds = time.perf_counter() - started
    probabilities = clone.predict(**unautotuned_batches(x_test, batch_size=1024), verbose=0)
    predicted = np.argmax(probabilities, axis=1)
    accuracy = float(np.mean(predicted == data.y_test))
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (data.y_test.astype(int), predicted), 1)
    return TrainingOutcome(
        accuracy=accuracy,
        seconds=seconds,
        history={k: [float(v) for v in vals] for k, vals in history.history.items()},
        confusion=confusion.tolist(),
        notes=list(notes),
    )
