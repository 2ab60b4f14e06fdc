"""Public checks for the mnist assignment: one check for every requirement the notebook states,
without training. The hidden tests add fresh data and train your models with a fixed recipe,
so passing these does not guarantee full marks, but a requirement you miss shows up here
first. Models are compared by function, not spelling: an Activation, ReLU or Softmax layer
right after a layer without an activation counts as that layer's activation."""

import numpy as np

from grader.errors import StudentException

SHAPES = {"mlp": (784,), "cnn": (28, 28, 1), "rnn": (28, 28)}
# Each model: its input shape, its layers (activation layers folded in) and its parameters.
MODELS = {
    "build_mlp": ((None, 784), ["Dense(relu)", "Dropout", "Dense(softmax)"], 101_770),
    "build_cnn": ((None, 28, 28, 1),
                  ["Conv2D(relu)", "MaxPooling2D", "Conv2D(relu)", "MaxPooling2D", "Dropout",
                   "Flatten", "Dense(relu)", "Dropout", "Dense(softmax)"], 242_062),
    "build_lstm": ((None, 28, 28), ["LSTM", "Dense(softmax)"], 81_674),
    "build_gru": ((None, 28, 28), ["GRU", "Dense(softmax)"], 61_962),
}


def _images(n=6):
    return (np.arange(n * 28 * 28) % 256).astype(np.uint8).reshape(n, 28, 28)


def _activation(value):
    if isinstance(value, dict):
        value = value.get("config") if isinstance(value.get("config"), str) else \
            (value.get("config") or {}).get("name", value.get("class_name"))
    return str(getattr(value, "__name__", value) or "linear").lower()


def _layers(model):
    """``["Dense(relu)", "Dropout", ...]``: Input layers left out, activation layers folded."""
    out = []
    for layer in model.layers:
        kind, config = type(layer).__name__, layer.get_config()
        folded = {"Activation": _activation(config.get("activation")), "ReLU": "relu",
                  "Softmax": "softmax"}.get(kind)
        if kind == "InputLayer":
            continue
        if folded and out and out[-1].endswith("(linear)"):
            out[-1] = out[-1].replace("(linear)", f"({folded})")
            continue
        out.append(f"{kind}({_activation(config['activation'])})" if "activation" in config
                   else kind)
    return [name.replace("LSTM(tanh)", "LSTM").replace("GRU(tanh)", "GRU") for name in out]


def _bonus_not_written(submission, function):
    """True for the optional bonus left out or left as the stub: its checks then pass."""
    if function != "build_gru":
        return False
    if not submission.defines(function):
        return True
    try:
        submission.call(function)
    except StudentException as exc:
        return "NotImplementedError" in str(exc)
    return False


def _model(submission, function):
    model = submission.call(function)
    assert hasattr(model, "layers"), (
        f"{function}(): expected a compiled keras model, found {type(model).__name__}")
    return model


def test_preprocess__shapes_and_dtypes(submission):
    images, labels = _images(), np.arange(6)
    for kind, shape in SHAPES.items():
        x, y = submission.call("preprocess", images, labels, kind=kind)
        assert x.shape == (6, *shape), (
            f"preprocess(kind={kind!r}): x has shape {x.shape}, expected {(6, *shape)}")
        assert x.dtype == np.float32 and y.dtype == np.float32, (
            f"preprocess(kind={kind!r}): x and y should be float32, found {x.dtype} and "
            f"{y.dtype} — use images.astype('float32') / 255")
        assert y.shape == (6, 10), (
            f"preprocess(kind={kind!r}): y has shape {y.shape}, expected (6, 10) — one-hot "
            "encode the labels with keras.utils.to_categorical(labels, 10)")


def test_preprocess__pixels_scaled_labels_one_hot(submission):
    images, labels = _images(), np.array([3, 0, 9, 1, 7, 5])
    x, y = submission.call("preprocess", images, labels, kind="mlp")
    assert np.allclose(x.reshape(images.shape), images / 255.0, atol=1e-6), (
        f"preprocess(): x should be the pixels divided by 255, in [0, 1]; found values from "
        f"{float(x.min()):.3f} to {float(x.max()):.3f}")
    assert np.array_equal(y, np.eye(10, dtype=np.float32)[labels]), (
        f"preprocess(): y should be one-hot; for label 3 expected a 1.0 in column 3, found "
        f"{np.asarray(y[0]).tolist()}")


def test_preprocess__inputs_not_modified(submission):
    images, labels = _images(), np.arange(6)
    result, (images_after, labels_after) = submission.call_and_return_args(
        "preprocess", images, labels, kind="cnn")
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"preprocess(): expected a tuple (x, y), found {type(result).__name__}")
    assert images_after.shape == images.shape and np.array_equal(images_after, images), (
        "preprocess(): the images passed in were modified — compute x = "
        "images.astype('float32') / 255 (a new array) instead of changing them in place")
    assert np.array_equal(labels_after, labels), "preprocess(): the labels passed in were modified"


def test_preprocess__unknown_kind_raises_value_error(submission):
    try:
        submission.call("preprocess", _images(), np.arange(6), kind="transformer")
    except StudentException as exc:
        assert "ValueError" in str(exc), (
            f"preprocess(kind='transformer'): expected a ValueError, found {exc}")
        return
    raise AssertionError("preprocess(kind='transformer'): expected a ValueError, found no error "
                         "— raise ValueError(f\"unknown kind {kind!r}\") after the known kinds")


def _check_layers(submission, function):
    if _bonus_not_written(submission, function):
        return
    input_shape, layers, _ = MODELS[function]
    model = _model(submission, function)
    assert tuple(model.inputs[0].shape) == input_shape, (
        f"{function}(): input shape {tuple(model.inputs[0].shape)}, expected {input_shape}")
    assert tuple(model.outputs[0].shape) == (None, 10), (
        f"{function}(): output shape {tuple(model.outputs[0].shape)}, expected (None, 10)"
        + (" — the recurrent layer must not return sequences"
           if function in ("build_lstm", "build_gru") else ""))
    found = _layers(model)
    assert found == layers, (
        f"{function}(): expected the layers {', '.join(layers)}; found {', '.join(found)}")


def _check_count(submission, function):
    if _bonus_not_written(submission, function):
        return
    count = MODELS[function][2]
    model = _model(submission, function)
    assert model.count_params() == count, (
        f"{function}(): expected {count:,} parameters, found {model.count_params():,} — compare "
        "model.summary() with the table in the notebook")


def _check_compile(submission, function):
    if _bonus_not_written(submission, function):
        return
    config = _model(submission, function).get_compile_config() or {}
    assert config.get("optimizer"), f"{function}(): the model is not compiled"
    loss = config.get("loss")
    name = loss if isinstance(loss, str) else (loss or {}).get("class_name", repr(loss))
    assert str(name).replace("_", "").lower() == "categoricalcrossentropy", (
        f"{function}(): loss {name!r}, expected 'categorical_crossentropy' — preprocess returns "
        "one-hot labels (sparse_categorical_crossentropy is for integer labels)")
    metrics = [m if isinstance(m, str) else m.get("class_name", "")
               for m in config.get("metrics") or []]
    assert any(str(m).lower() in ("accuracy", "acc", "categoricalaccuracy") for m in metrics), (
        f"{function}(): metrics {metrics}, expected metrics=['accuracy']")


def test_build_mlp__layers_and_parameter_count(submission):
    _check_layers(submission, "build_mlp")
    _check_count(submission, "build_mlp")


def test_build_mlp__compile_settings(submission):
    _check_compile(submission, "build_mlp")


def test_build_cnn__layers_and_parameter_count(submission):
    _check_layers(submission, "build_cnn")
    _check_count(submission, "build_cnn")


def test_build_cnn__compile_settings(submission):
    _check_compile(submission, "build_cnn")


def test_build_lstm__layers_and_parameter_count(submission):
    _check_layers(submission, "build_lstm")
    _check_count(submission, "build_lstm")


def test_build_lstm__compile_settings(submission):
    _check_compile(submission, "build_lstm")


def test_build_gru__layers_and_parameter_count(submission):
    _check_layers(submission, "build_gru")
    _check_count(submission, "build_gru")


def test_build_gru__compile_settings(submission):
    _check_compile(submission, "build_gru")
