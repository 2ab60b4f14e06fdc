"""Hidden tests: preprocessing and the MLP, CNN, LSTM and GRU models on MNIST.

Models come back from the student's code as `.keras` files loaded with safe_mode=True. The
accuracy tests train a fresh, seeded copy of each model with the grading recipe
(grader.training) on images the student's code never sees labels of.
"""

from __future__ import annotations

import weakref

import numpy as np
import pytest

from grader.errors import CheckerLimit, StudentException
from grader.training import ModelRefused, train_ahead, train_and_evaluate

# Reference layer sequences: (class name, settings that must match, parameters of the layer).
MLP = [("Dense", {"units": 128, "activation": "relu"}, 100_480),
       ("Dropout", {"rate": 0.2}, 0),
       ("Dense", {"units": 10, "activation": "softmax"}, 1_290)]
CNN = [("Conv2D", {"filters": 16, "kernel_size": (5, 5), "padding": "same",
                   "activation": "relu"}, 416),
       ("MaxPooling2D", {"pool_size": (2, 2)}, 0),
       ("Conv2D", {"filters": 36, "kernel_size": (5, 5), "padding": "same",
                   "activation": "relu"}, 14_436),
       ("MaxPooling2D", {"pool_size": (2, 2)}, 0),
       ("Dropout", {"rate": 0.25}, 0),
       ("Flatten", {}, 0),
       ("Dense", {"units": 128, "activation": "relu"}, 225_920),
       ("Dropout", {"rate": 0.5}, 0),
       ("Dense", {"units": 10, "activation": "softmax"}, 1_290)]
LSTM = [("LSTM", {"units": 128, "return_sequences": False}, 80_384),
        ("Dense", {"units": 10, "activation": "softmax"}, 1_290)]
GRU = [("GRU", {"units": 128, "return_sequences": False}, 60_672),
       ("Dense", {"units": 10, "activation": "softmax"}, 1_290)]

MODELS = {
    "mlp": ("build_mlp", MLP, (None, 784), 101_770),
    "cnn": ("build_cnn", CNN, (None, 28, 28, 1), 242_062),
    "lstm": ("build_lstm", LSTM, (None, 28, 28), 81_674),
    "gru": ("build_gru", GRU, (None, 28, 28), 61_962),
}
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]
# What the reference architecture reaches under each profile's recipe: the median over 20 seeds
# of `bench/calibrate.py` (docs/course.md records the whole distribution).
REFERENCE_ACCURACY = {
    "quick": {"mlp": 0.934, "cnn": 0.969, "lstm": 0.894, "gru": 0.874},
}
# The settings that describe a layer of each kind, in messages.
DESCRIBED = {
    "Dense": ("units", "activation"),
    "Conv2D": ("filters", "kernel_size", "padding", "activation"),
    "MaxPooling2D": ("pool_size",),
    "Dropout": ("rate",),
    "LSTM": ("units", "return_sequences"),
    "GRU": ("units", "return_sequences"),
    "SimpleRNN": ("units", "return_sequences"),
}
ACTIVATION_LAYERS = ("Activation", "ReLU", "Softmax")


def _activation_name(value):
    """An activation's name, whether given as a string, a callable or a serialized object."""
    if value is None:
        return "linear"
    if isinstance(value, dict):
        config = value.get("config")
        value = config if isinstance(config, str) else (
            (config or {}).get("name") or value.get("class_name") or "")
    name = getattr(value, "__name__", value)
    return str(name).lower()


def _activation_of_layer(layer):
    """The activation an activation layer applies, or None if ``layer`` is not a plain one."""
    kind = type(layer).__name__
    config = layer.get_config()
    if kind == "Activation":
        return _activation_name(config.get("activation"))
    if kind == "ReLU" and not config.get("max_value") and not config.get("negative_slope") \
            and not config.get("threshold"):
        return "relu"
    if kind == "Softmax":
        return "softmax"
    return None


class _Canonical:
    """One layer of the canonical form: its class, its settings (activations by name, with an
    activation layer that follows it folded in) and the Keras layer(s) behind it."""

    def __init__(self, layer):
        self.layer = layer
        self.kind = type(layer).__name__
        self.config = layer.get_config()
        if "activation" in self.config:
            self.config["activation"] = _activation_name(self.config["activation"])

    def settings(self, wanted):
        out = {}
        for key in wanted:
            value = self.config.get(key)
            out[key] = tuple(value) if isinstance(value, list) else value
        return out

    def describe(self, keys=None):
        keys = DESCRIBED.get(self.kind, ()) if keys is None else keys
        return _describe(self.kind, self.settings(keys))

    def count_params(self):
        return self.layer.count_params()


def _canonical(model):
    """The model's layers with Input layers dropped and every activation layer (Activation,
    ReLU, Softmax) folded into the layer before it when that layer has no activation of its
    own: `Dense(10); Activation('softmax')` is `Dense(10, activation='softmax')`. Sequential,
    functional and loop-built models give the same form."""
    out = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        activation = _activation_of_layer(layer)
        if activation is not None and out and out[-1].config.get("activation") == "linear":
            out[-1].config["activation"] = activation
            continue
        out.append(_Canonical(layer))
    return out


def _describe(name, settings):
    inner = ", ".join(f"{k}={v!r}" for k, v in settings.items())
    return f"{name}({inner})"


_BUILT = weakref.WeakKeyDictionary()
"""Per submission, the model each build function returned: built once, then read by the
architecture, parameter count, compile and accuracy tests (none of them changes it; the
accuracy test trains a fresh copy)."""


def _build(submission, kind):
    function = MODELS[kind][0]
    try:
        built = _BUILT.setdefault(submission, {})
    except TypeError:  # a submission that cannot be remembered: build every time
        built = {}
    if kind in built:
        return built[kind]
    model = submission.call(function)
    assert hasattr(model, "layers") and hasattr(model, "count_params"), (
        f"{function}(): expected a compiled keras model, found {type(model).__name__}"
    )
    built[kind] = model
    return model


def _check_architecture(submission, kind):
    function, reference, input_shape, _ = MODELS[kind]
    model = _build(submission, kind)
    found_in = tuple(model.inputs[0].shape)
    assert found_in == input_shape, (
        f"{function}(): input shape {found_in}, expected {input_shape} — start the model with "
        f"keras.Input(shape={input_shape[1:]})"
    )
    found_out = tuple(model.outputs[0].shape)
    if found_out != (None, 10) and kind in ("lstm", "gru") and len(found_out) == 3:
        raise AssertionError(
            f"{function}(): output shape {found_out}, expected (None, 10) — "
            f"{'an' if kind == 'lstm' else 'a'} {kind.upper()} that feeds a Dense classifier "
            "must not return sequences"
        )
    assert found_out == (None, 10), (
        f"{function}(): output shape {found_out}, expected (None, 10) — the last layer is "
        "Dense(10, softmax), one probability per digit"
    )
    layers = _canonical(model)
    for index, (name, wanted, _) in enumerate(reference):
        where = f"layer {index + 1}"
        expected = _describe(name, wanted)
        assert index < len(layers), (
            f"{function}(): {where} expected {expected}, found no more layers — "
            f"the reference has {len(reference)} layers, yours has {len(layers)}; add {expected}"
        )
        layer = layers[index]
        if layer.kind != name:
            after = f"after {layers[index - 1].describe()}" if index else "first"
            if layer.kind in ACTIVATION_LAYERS and index:
                raise AssertionError(
                    f"{function}(): {where} expected {expected}, found {layer.describe()} "
                    f"{after}, which already has an activation — remove the {layer.kind} layer")
            if index + 1 < len(reference) and reference[index + 1][0] == layer.kind:
                raise AssertionError(
                    f"{function}(): {where} expected {expected}, found {layer.describe()} — "
                    f"the {expected} layer is missing; add it {after}")
            raise AssertionError(
                f"{function}(): {where} expected {expected}, found {layer.describe()} — "
                f"replace it with {expected}")
        found = layer.settings(wanted)
        assert found == wanted, (
            f"{function}(): {where} expected {expected}, found {_describe(name, found)} — "
            "change " + ", ".join(f"{k} to {v!r}" for k, v in wanted.items() if found[k] != v)
        )
    assert len(layers) == len(reference), (
        f"{function}(): expected {len(reference)} layers, found {len(layers)} — remove "
        + ", ".join(extra.describe() for extra in layers[len(reference):])
    )


def _check_parameter_count(submission, kind):
    function, reference, _, expected = MODELS[kind]
    model = _build(submission, kind)
    found = model.count_params()
    if found == expected:
        return
    hint = ""
    layers = _canonical(model)
    seen: dict[str, int] = {}
    for index, (name, wanted, params) in enumerate(reference):
        seen[name] = seen.get(name, 0) + 1
        if index >= len(layers):
            break
        layer = layers[index]
        if layer.kind == name and layer.count_params() != params:
            what = ", ".join(f"{k}={v!r}" for k, v in wanted.items() if k != "activation")
            keys = [k for k in wanted if k != "activation"]
            hint = (f" — the {ORDINALS[seen[name] - 1]} {name} layer has {params:,} parameters "
                    f"({what}) in the reference; yours has {layer.count_params():,} "
                    f"({layer.describe(keys)})")
            break
    hint = hint or " — compare your model.summary() with the table in the notebook"
    raise AssertionError(f"{function}(): expected {expected:,} parameters, found {found:,}{hint}")


def _check_compile(submission, kind):
    function = MODELS[kind][0]
    model = _build(submission, kind)
    config = model.get_compile_config()
    assert config and config.get("optimizer"), (
        f"{function}(): the model is not compiled — call model.compile(optimizer=..., "
        "loss='categorical_crossentropy', metrics=['accuracy']) before returning it"
    )
    loss = config.get("loss")
    loss_name = loss if isinstance(loss, str) else (loss or {}).get("class_name", repr(loss))
    assert str(loss_name).replace("_", "").lower() == "categoricalcrossentropy", (
        f"{function}(): loss {loss_name!r}, expected 'categorical_crossentropy' — the labels are "
        "one-hot over 10 classes (sparse_categorical_crossentropy is for integer labels)"
    )
    if isinstance(loss, dict):
        assert not loss.get("config", {}).get("from_logits"), (
            f"{function}(): the loss has from_logits=True, but the last layer is a softmax — "
            "use from_logits=False"
        )
    names = []
    for metric in config.get("metrics") or []:
        names.append(metric if isinstance(metric, str) else metric.get("class_name", ""))
    assert any(str(n).lower() in ("accuracy", "acc", "categoricalaccuracy") for n in names), (
        f"{function}(): metrics {names}, expected an accuracy metric — pass "
        "metrics=['accuracy'] to compile()"
    )


def _train_ahead(submission, kind, profile, mnist):
    """Tell the grader which models the accuracy tests after this one train: while it waits
    for a classmate's identical model to finish training, it trains one of these (the last one
    first; grader.training.train_ahead). A model that cannot be built now is left to its own
    tests."""
    try:
        told = _BUILT.setdefault(submission, {}).setdefault("ahead", set())
    except TypeError:
        return
    later = list(MODELS)[list(MODELS).index(kind) + 1:]
    for other in reversed(later):
        if other in told:
            continue
        told.add(other)
        try:
            model = _build(submission, other)
        except CheckerLimit:
            raise
        except Exception:  # noqa: BLE001 - reported by that model's own tests
            continue
        train_ahead(model, other, profile, mnist)


def _check_accuracy(submission, kind, profile, mnist, record_property):
    function = MODELS[kind][0]
    model = _build(submission, kind)
    _train_ahead(submission, kind, profile, mnist)
    try:
        outcome = train_and_evaluate(model, kind, profile, mnist)
    except ModelRefused as exc:
        raise AssertionError(f"{function}(): {exc}") from None
    record_property("figure:learning_curve", {"model": kind, **outcome.history})
    record_property("figure:confusion_matrix", {"model": kind, "matrix": outcome.confusion})
    threshold = profile.thresholds[kind]
    epochs = profile.epochs[kind]
    reference = REFERENCE_ACCURACY.get(profile.name, {}).get(kind)
    reaches = f"; the reference model reaches about {reference}" if reference else ""
    changed = ("; to train the architecture alone the recipe changed: " + "; ".join(
        outcome.notes)) if outcome.notes else ""
    record_property("note", f"test accuracy {outcome.accuracy:.4f} (at least {threshold} "
                            f"needed{reaches}){changed}")
    assert outcome.accuracy >= threshold, (
        f"{function}(): test accuracy {outcome.accuracy:.4f} after the grading recipe "
        f"({epochs} epochs, batch {profile.batch_size}, fresh seeded weights, profile "
        f"{profile.name!r}), expected at least {threshold}: "
        f"{threshold - outcome.accuracy:.4f} below the threshold{reaches} — check the layers, "
        "activations and optimizer against the notebook's instructions; the learning curve "
        f"below shows how training went{changed}"
    )


# -- preprocess -------------------------------------------------------------------------------
EXPECTED_X_SHAPE = {"mlp": (784,), "cnn": (28, 28, 1), "rnn": (28, 28)}


@pytest.fixture
def sample(mnist):
    return mnist.x_train[:64].copy(), mnist.y_train[:64].astype("int64")


def _preprocess(submission, images, labels, kind):
    return _check_pair(submission.call("preprocess", images, labels, kind=kind), kind, None)


def _check_pair(result, kind, n):
    """``result`` is a tuple (x, y) of NumPy arrays (with ``n`` rows each, if given)."""
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"preprocess(kind={kind!r}): expected a tuple (x, y), found {type(result).__name__}"
    )
    x, y = result
    for name, value in (("x", x), ("y", y)):
        assert isinstance(value, np.ndarray), (
            f"preprocess(kind={kind!r}): {name} should be a NumPy array, found "
            f"{type(value).__name__}"
        )
        assert n is None or (value.ndim > 0 and len(value) == n), (
            f"preprocess(kind={kind!r}): {name} should have one row per image ({n}), found shape "
            f"{value.shape}"
        )
    return x, y


def test_preprocess_shapes(submission, sample):
    images, labels = sample
    n = len(images)
    for kind, shape in EXPECTED_X_SHAPE.items():
        x, y = _preprocess(submission, images, labels, kind)
        assert x.shape == (n, *shape), (
            f"preprocess(kind={kind!r}): x has shape {x.shape}, expected {(n, *shape)}"
        )
        assert x.dtype == np.float32, (
            f"preprocess(kind={kind!r}): x has dtype {x.dtype}, expected float32 — use "
            "images.astype('float32') / 255"
        )
        assert y.shape == (n, 10), (
            f"preprocess(kind={kind!r}): y has shape {y.shape}, expected {(n, 10)} — the labels "
            "must be one-hot encoded (keras.utils.to_categorical(labels, 10))"
        )
        assert y.dtype == np.float32, (
            f"preprocess(kind={kind!r}): y has dtype {y.dtype}, expected float32"
        )


def test_preprocess_values(submission, sample):
    images, labels = sample
    for kind in EXPECTED_X_SHAPE:
        x, y = _preprocess(submission, images, labels, kind)
        assert x.size == images.size and np.allclose(
            x.reshape(images.shape), images.astype("float32") / 255.0, atol=1e-6), (
            f"preprocess(kind={kind!r}): x should be the pixels divided by 255 (range [0, 1]); "
            f"found values from {float(x.min()):.3f} to {float(x.max()):.3f}"
        )
        assert y.shape == (len(labels), 10) and np.array_equal(
            y, np.eye(10, dtype="float32")[labels]), (
            f"preprocess(kind={kind!r}): y should be one-hot (a 1.0 in column label, 0.0 "
            f"elsewhere); for label {int(labels[0])} found {np.asarray(y[0]).tolist()}"
        )


def test_preprocess_no_mutation(submission, sample):
    images, labels = sample
    result, (images_after, labels_after) = submission.call_and_return_args(
        "preprocess", images, labels, kind="cnn")
    # No free points: leaving the inputs alone counts only for a function that returns (x, y).
    _check_pair(result, "cnn", len(images))
    assert images_after.dtype == images.dtype and np.array_equal(images_after, images), (
        "preprocess(): the images passed in were modified; expected them unchanged — compute "
        "x = images.astype('float32') / 255 instead of dividing in place"
    )
    assert np.array_equal(labels_after, labels), (
        "preprocess(): the labels passed in were modified; expected them unchanged"
    )


def test_preprocess_unknown_kind(submission, sample):
    images, labels = sample
    try:
        submission.call("preprocess", images, labels, kind="transformer")
    except StudentException as exc:
        assert "ValueError" in str(exc), (
            f"preprocess(kind='transformer'): expected a ValueError, found {exc}"
        )
        return
    raise AssertionError(
        "preprocess(kind='transformer'): expected a ValueError for an unknown kind, found no "
        "error — raise ValueError(f\"unknown kind {kind!r}\") after the known kinds"
    )


# -- the models -------------------------------------------------------------------------------
def test_mlp_architecture(submission):
    _check_architecture(submission, "mlp")


def test_mlp_parameter_count(submission):
    _check_parameter_count(submission, "mlp")


def test_mlp_compile(submission):
    _check_compile(submission, "mlp")


def test_mlp_accuracy(submission, profile, mnist, record_property):
    _check_accuracy(submission, "mlp", profile, mnist, record_property)


def test_cnn_architecture(submission):
    _check_architecture(submission, "cnn")


def test_cnn_parameter_count(submission):
    _check_parameter_count(submission, "cnn")


def test_cnn_compile(submission):
    _check_compile(submission, "cnn")


def test_cnn_accuracy(submission, profile, mnist, record_property):
    _check_accuracy(submission, "cnn", profile, mnist, record_property)


def test_lstm_architecture(submission):
    _check_architecture(submission, "lstm")


def test_lstm_parameter_count(submission):
    _check_parameter_count(submission, "lstm")


def test_lstm_compile(submission):
    _check_compile(submission, "lstm")


def test_lstm_accuracy(submission, profile, mnist, record_property):
    _check_accuracy(submission, "lstm", profile, mnist, record_property)


def test_gru_architecture(submission):
    _check_architecture(submission, "gru")
    _check_parameter_count(submission, "gru")


def test_gru_accuracy(submission, profile, mnist, record_property):
    _check_accuracy(submission, "gru", profile, mnist, record_property)
