"""Hidden tests: preprocessing and the MLP, CNN, LSTM and GRU models on MNIST.

Models come back from the student's code as `.keras` files loaded with safe_mode=True. The
accuracy tests train a fresh, seeded copy of each model with the grading recipe
(grader.training) on images the student's code never sees labels of.
"""

from __future__ import annotations

import numpy as np
import pytest

from grader.errors import StudentException
from grader.training import train_and_evaluate

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


def _layers(model):
    return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]


def _settings(layer, wanted):
    config = layer.get_config()
    out = {}
    for key in wanted:
        value = config.get(key)
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def _describe(name, settings):
    inner = ", ".join(f"{k}={v!r}" for k, v in settings.items())
    return f"{name}({inner})"


def _build(submission, kind):
    function = MODELS[kind][0]
    model = submission.call(function)
    assert hasattr(model, "layers") and hasattr(model, "count_params"), (
        f"{function}(): expected a compiled keras model, found {type(model).__name__}"
    )
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
    layers = _layers(model)
    for index, (name, wanted, _) in enumerate(reference):
        where = f"layer {index + 1}"
        assert index < len(layers), (
            f"{function}(): {where} expected {_describe(name, wanted)}, found no more layers — "
            f"the reference has {len(reference)} layers, yours has {len(layers)}"
        )
        layer = layers[index]
        found = _settings(layer, wanted)
        assert type(layer).__name__ == name and found == wanted, (
            f"{function}(): {where} expected {_describe(name, wanted)}, found "
            f"{_describe(type(layer).__name__, found)}"
        )
    assert len(layers) == len(reference), (
        f"{function}(): expected {len(reference)} layers, found {len(layers)} — remove "
        + ", ".join(type(extra).__name__ for extra in layers[len(reference):])
    )


def _check_parameter_count(submission, kind):
    function, reference, _, expected = MODELS[kind]
    model = _build(submission, kind)
    found = model.count_params()
    if found == expected:
        return
    hint = ""
    layers = _layers(model)
    seen: dict[str, int] = {}
    for index, (name, wanted, params) in enumerate(reference):
        seen[name] = seen.get(name, 0) + 1
        if index >= len(layers):
            break
        layer = layers[index]
        if type(layer).__name__ == name and layer.count_params() != params:
            what = ", ".join(f"{k}={v!r}" for k, v in wanted.items() if k != "activation")
            hint = (f" — the {ORDINALS[seen[name] - 1]} {name} layer has {params:,} parameters "
                    f"({what}) in the reference; yours has {layer.count_params():,} "
                    f"({_describe(name, _settings(layer, wanted))})")
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


def _check_accuracy(submission, kind, profile, mnist, record_property):
    function = MODELS[kind][0]
    model = _build(submission, kind)
    outcome = train_and_evaluate(model, kind, profile, mnist)
    record_property("figure:learning_curve", {"model": kind, **outcome.history})
    record_property("figure:confusion_matrix", {"model": kind, "matrix": outcome.confusion})
    threshold = profile.thresholds[kind]
    epochs = profile.epochs[kind]
    record_property("note", f"test accuracy {outcome.accuracy:.4f} (at least {threshold} "
                            "needed)")
    assert outcome.accuracy >= threshold, (
        f"{function}(): test accuracy {outcome.accuracy:.4f} after the grading recipe "
        f"({epochs} epochs, batch {profile.batch_size}, fresh seeded weights, profile "
        f"{profile.name!r}), expected at least {threshold} — check the layers, activations "
        "and optimizer against the notebook's instructions; the learning curve below shows "
        "how training went"
    )


# -- preprocess -------------------------------------------------------------------------------
EXPECTED_X_SHAPE = {"mlp": (784,), "cnn": (28, 28, 1), "rnn": (28, 28)}


@pytest.fixture
def sample(mnist):
    return mnist.x_train[:64].copy(), mnist.y_train[:64].astype("int64")


def _preprocess(submission, images, labels, kind):
    result = submission.call("preprocess", images, labels, kind=kind)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"preprocess(kind={kind!r}): expected a tuple (x, y), found {type(result).__name__}"
    )
    x, y = result
    for name, value in (("x", x), ("y", y)):
        assert isinstance(value, np.ndarray), (
            f"preprocess(kind={kind!r}): {name} should be a NumPy array, found "
            f"{type(value).__name__}"
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
    _, (images_after, labels_after) = submission.call_and_return_args(
        "preprocess", images, labels, kind="cnn")
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
