"""Builds the sample submissions from the course's own notebooks.

    .venv/bin/python tests/files/samples/build.py      # rewrite the .ipynb files here

``reference.ipynb`` is the released notebook with every answer cell filled with the reference
solution; ``stub_untouched.ipynb`` is the release as is; every other sample is the reference
with one realistic mistake, named for it. ``MISTAKES`` also records which functions must lose
points (the function at fault, and the functions that call it by design) — the tests read it.
``VARIANTS`` are correct answers written in other styles than the reference (np.where and tanh
sigmoids, a vectorised backward, top-level helpers; Keras models with input_shape=, Input, the
functional API, activation layers, callable activations, loops, brought frozen weights): each
must score full marks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/files: the builders' shared helpers
# replace_answers and reference are also what tests/test_verdicts.py builds its notebooks with.
from _nbbuild import (  # noqa: E402, F401
    Rewrite,
    reference,
    released,
    replace_answers,
    rewritten,
    with_stable_ids,
    write_all,
)

Mistake = Rewrite


MISTAKES = [
    Mistake(
        "backprop",
        "sigmoid_overflows",
        ("sigmoid",),
        {
            "sigmoid": """
def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))
"""
        },
    ),
    Mistake(
        "backprop",
        "forward_returns_lists",
        ("forward",),
        {
            "forward": """
def forward(params, x):
    i1, i2 = x
    net_h = [params["w1"] * i1 + params["w2"] * i2 + params["b1"],
             params["w3"] * i1 + params["w4"] * i2 + params["b1"]]
    out_h = [sigmoid(v) for v in net_h]
    net_o = [params["w5"] * out_h[0] + params["w6"] * out_h[1] + params["b2"],
             params["w7"] * out_h[0] + params["w8"] * out_h[1] + params["b2"]]
    out_o = [sigmoid(v) for v in net_o]
    return {"net_h": net_h, "out_h": out_h, "net_o": net_o, "out_o": np.array(out_o)}
"""
        },
    ),
    Mistake(
        "backprop",
        "total_error_uses_mean",
        ("total_error", "train_step"),
        {
            "total_error": """
def total_error(out_o, target):
    return float(np.mean(0.5 * (np.asarray(target) - np.asarray(out_o)) ** 2))
"""
        },
    ),
    Mistake(
        "backprop",
        "backward_wrong_sign",
        ("backward", "train_step"),
        {
            "backward": """
def backward(params, x, target):
    i1, i2 = np.asarray(x, dtype=np.float64)
    values = forward(params, x)
    out_h, out_o = values["out_h"], values["out_o"]
    h1, h2 = out_h
    delta_o = (np.asarray(target) - out_o) * out_o * (1.0 - out_o)   # sign flipped
    delta_h1 = (delta_o[0] * params["w5"] + delta_o[1] * params["w7"]) * h1 * (1.0 - h1)
    delta_h2 = (delta_o[0] * params["w6"] + delta_o[1] * params["w8"]) * h2 * (1.0 - h2)
    return {"w1": delta_h1 * i1, "w2": delta_h1 * i2, "w3": delta_h2 * i1, "w4": delta_h2 * i2,
            "w5": delta_o[0] * h1, "w6": delta_o[0] * h2, "w7": delta_o[1] * h1,
            "w8": delta_o[1] * h2, "b1": delta_h1 + delta_h2, "b2": delta_o[0] + delta_o[1]}
"""
        },
    ),
    Mistake(
        "backprop",
        "backward_bias_not_shared",
        ("backward", "train_step"),
        {
            "backward": """
def backward(params, x, target):
    i1, i2 = np.asarray(x, dtype=np.float64)
    values = forward(params, x)
    out_h, out_o = values["out_h"], values["out_o"]
    h1, h2 = out_h
    delta_o = (out_o - np.asarray(target)) * out_o * (1.0 - out_o)
    delta_h1 = (delta_o[0] * params["w5"] + delta_o[1] * params["w7"]) * h1 * (1.0 - h1)
    delta_h2 = (delta_o[0] * params["w6"] + delta_o[1] * params["w8"]) * h2 * (1.0 - h2)
    return {"w1": delta_h1 * i1, "w2": delta_h1 * i2, "w3": delta_h2 * i1, "w4": delta_h2 * i2,
            "w5": delta_o[0] * h1, "w6": delta_o[0] * h2, "w7": delta_o[1] * h1,
            "w8": delta_o[1] * h2, "b1": delta_h1, "b2": delta_o[0]}   # only the first unit
"""
        },
    ),
    Mistake(
        "backprop",
        "backward_hardcoded_worked_example",
        ("backward", "train_step"),
        {
            "backward": """
def backward(params, x, target):
    # The numbers of the worked example, copied from the tutorial.
    return {"w1": 0.000438568, "w2": 0.000877135, "w3": 0.000497713, "w4": 0.000995425,
            "w5": 0.082167041, "w6": 0.082667628, "w7": -0.022602540, "w8": -0.022740242,
            "b1": 0.018725609, "b2": 0.100400325}
"""
        },
    ),
    Mistake(
        "backprop",
        "update_mutates_params",
        ("update",),
        {
            "update": """
def update(params, grads, lr):
    for key in params:
        params[key] = params[key] - lr * grads[key]
    return params
"""
        },
    ),
    Mistake(
        "backprop",
        "update_skips_biases",
        ("update", "train_step"),
        {
            "update": """
def update(params, grads, lr):
    new = dict(params)
    for key in ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"]:
        new[key] = params[key] - lr * grads[key]
    return new
"""
        },
    ),
    Mistake(
        "backprop",
        "train_step_uses_updated_weights",
        ("train_step",),
        {
            "train_step": """
def train_step(params, x, target, lr=0.5):
    error = total_error(forward(params, x)["out_o"], target)
    params = dict(params)
    grads = backward(params, x, target)
    for key in ["w5", "w6", "w7", "w8", "b2"]:      # output layer first ...
        params[key] -= lr * grads[key]
    grads = backward(params, x, target)             # ... then hidden gradients, too late
    for key in ["w1", "w2", "w3", "w4", "b1"]:
        params[key] -= lr * grads[key]
    return params, error
"""
        },
    ),
    Mistake(
        "backprop",
        "train_step_returns_error_after",
        ("train_step",),
        {
            "train_step": """
def train_step(params, x, target, lr=0.5):
    new_params = update(params, backward(params, x, target), lr)
    return new_params, total_error(forward(new_params, x)["out_o"], target)
"""
        },
    ),
    Mistake(
        "backprop",
        "imports_tensorflow",
        ("backward",),
        {},
        extra_cell="""
import tensorflow as tf   # to check my gradients with tf.GradientTape
""",
    ),
    Mistake(
        "mnist",
        "preprocess_labels_not_one_hot",
        ("preprocess",),
        {
            "preprocess": """
def preprocess(images, labels, kind="mlp"):
    shapes = {"mlp": (-1, 784), "cnn": (-1, 28, 28, 1), "rnn": (-1, 28, 28)}
    if kind not in shapes:
        raise ValueError(f"unknown kind {kind!r}")
    x = images.astype("float32").reshape(shapes[kind]) / 255.0
    return x, labels.astype("float32")
"""
        },
    ),
    Mistake(
        "mnist",
        "preprocess_not_scaled",
        ("preprocess",),
        {
            "preprocess": """
def preprocess(images, labels, kind="mlp"):
    shapes = {"mlp": (-1, 784), "cnn": (-1, 28, 28, 1), "rnn": (-1, 28, 28)}
    if kind not in shapes:
        raise ValueError(f"unknown kind {kind!r}")
    x = images.astype("float32").reshape(shapes[kind])
    return x, keras.utils.to_categorical(labels, 10).astype("float32")
"""
        },
    ),
    Mistake(
        "mnist",
        "preprocess_reshapes_in_place",
        ("preprocess",),
        {
            "preprocess": """
def preprocess(images, labels, kind="mlp"):
    shapes = {"mlp": (len(images), 784), "cnn": (len(images), 28, 28, 1),
              "rnn": (len(images), 28, 28)}
    if kind not in shapes:
        raise ValueError(f"unknown kind {kind!r}")
    images.shape = shapes[kind]          # changes the caller's array
    return images / np.float32(255.0), keras.utils.to_categorical(labels, 10).astype("float32")
"""
        },
    ),
    Mistake(
        "mnist",
        "mlp_dense_without_relu",
        ("build_mlp",),
        {
            "build_mlp": """
def build_mlp():
    model = keras.Sequential([keras.Input(shape=(784,)), layers.Dense(128), layers.Dropout(0.2),
                              layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
"""
        },
    ),
    Mistake(
        "mnist",
        "mlp_sparse_loss",
        ("build_mlp",),
        {
            "build_mlp": """
def build_mlp():
    model = keras.Sequential([keras.Input(shape=(784,)), layers.Dense(128, activation="relu"),
                              layers.Dropout(0.2), layers.Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam",
                  metrics=["accuracy"])
    return model
"""
        },
    ),
    Mistake(
        "mnist",
        "cnn_valid_padding",
        ("build_cnn",),
        {
            "build_cnn": """
def build_cnn():
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(16, kernel_size=(5, 5), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(36, kernel_size=(5, 5), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
"""
        },
    ),
    Mistake(
        "mnist",
        "cnn_32_filters",
        ("build_cnn",),
        {
            "build_cnn": """
def build_cnn():
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(16, kernel_size=(5, 5), padding="same", activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(32, kernel_size=(5, 5), padding="same", activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
"""
        },
    ),
    Mistake(
        "mnist",
        "lstm_returns_sequences",
        ("build_lstm",),
        {
            "build_lstm": """
def build_lstm():
    model = keras.Sequential([keras.Input(shape=(28, 28)),
                              layers.LSTM(128, return_sequences=True),
                              layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
"""
        },
    ),
    Mistake(
        "mnist",
        "gru_left_out",
        ("build_gru",),
        {
            "build_gru": """
# The bonus exercise is optional; I skipped it.
"""
        },
    ),
]

# Correct answers in other styles than the reference: each must score full marks.
VARIANTS = [
    Mistake(
        "backprop",
        "style_where_vectorised",
        (),
        {
            "sigmoid": """
def sigmoid(z):
    # Stable on both sides: exp is only ever taken of a non-positive number.
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
""",
            "forward": """
def forward(params, x):
    W1 = np.array([[params["w1"], params["w2"]], [params["w3"], params["w4"]]])
    W2 = np.array([[params["w5"], params["w6"]], [params["w7"], params["w8"]]])
    net_h = W1 @ np.asarray(x, dtype=np.float64) + params["b1"]
    out_h = sigmoid(net_h)
    net_o = W2 @ out_h + params["b2"]
    return {"net_h": net_h, "out_h": out_h, "net_o": net_o, "out_o": sigmoid(net_o)}
""",
            "backward": """
def backward(params, x, target):
    x = np.asarray(x, dtype=np.float64)
    W2 = np.array([[params["w5"], params["w6"]], [params["w7"], params["w8"]]])
    values = forward(params, x)
    out_h, out_o = values["out_h"], values["out_o"]
    delta_o = (out_o - np.asarray(target)) * out_o * (1.0 - out_o)
    delta_h = (W2.T @ delta_o) * out_h * (1.0 - out_h)
    dW1, dW2 = np.outer(delta_h, x), np.outer(delta_o, out_h)
    names = [["w1", "w2"], ["w3", "w4"]], [["w5", "w6"], ["w7", "w8"]]
    grads = {}
    for matrix, keys in zip((dW1, dW2), names):
        for row, row_keys in zip(matrix, keys):
            grads.update({key: float(value) for key, value in zip(row_keys, row)})
    grads["b1"], grads["b2"] = float(delta_h.sum()), float(delta_o.sum())
    return grads
""",
        },
    ),
    Mistake(
        "backprop",
        "style_tanh_top_level_helpers",
        (),
        {
            "sigmoid": """
HALF = 0.5
squash = lambda z: HALF * (1.0 + np.tanh(HALF * np.asarray(z, dtype=np.float64)))


def sigmoid(z):
    result = squash(z)
    return float(result) if np.ndim(result) == 0 else result
""",
            "backward": """
def output_delta(out, target):
    return (out - target) * out * (1.0 - out)


def backward(params, x, target):
    i1, i2 = np.asarray(x, dtype=np.float64)
    values = forward(params, x)
    h1, h2 = values["out_h"]
    d1, d2 = output_delta(values["out_o"], np.asarray(target, dtype=np.float64))
    dh1 = (d1 * params["w5"] + d2 * params["w7"]) * h1 * (1.0 - h1)
    dh2 = (d1 * params["w6"] + d2 * params["w8"]) * h2 * (1.0 - h2)
    return {"w1": dh1 * i1, "w2": dh1 * i2, "w3": dh2 * i1, "w4": dh2 * i2,
            "w5": d1 * h1, "w6": d1 * h2, "w7": d2 * h1, "w8": d2 * h2,
            "b1": dh1 + dh2, "b2": d1 + d2}
""",
        },
    ),
    Mistake(
        "mnist",
        "style_activation_layers_functional_loop",
        (),
        {
            "build_mlp": """
def build_mlp():
    # input_shape= on the first layer, activations as layers of their own.
    model = keras.Sequential()
    model.add(layers.Dense(128, input_shape=(784,)))
    model.add(layers.Activation("relu"))
    model.add(layers.Dropout(0.2))
    model.add(layers.Dense(10))
    model.add(layers.Activation("softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
""",
            "build_cnn": """
def build_cnn():
    # The functional API, with ReLU and Softmax layers.
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.ReLU()(layers.Conv2D(16, (5, 5), padding="same")(inputs))
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.ReLU()(layers.Conv2D(36, (5, 5), padding="same")(x))
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Flatten()(layers.Dropout(0.25)(x))
    x = layers.Dropout(0.5)(layers.ReLU()(layers.Dense(128)(x)))
    outputs = layers.Softmax()(layers.Dense(10)(x))
    model = keras.Model(inputs, outputs)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
""",
            "build_lstm": """
def build_lstm():
    model = keras.Sequential([keras.Input(shape=(28, 28)), layers.LSTM(128),
                              layers.Dense(10, activation=keras.activations.softmax)])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
""",
            "build_gru": """
def build_gru():
    model = keras.Sequential()
    for layer in [keras.Input(shape=(28, 28)), layers.GRU(128),
                  layers.Dense(10, activation="softmax")]:
        model.add(layer)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
""",
        },
    ),
    Mistake(
        "mnist",
        "style_pretrained_loop_callables",
        (),
        {
            "build_mlp": """
def build_mlp():
    # Brought weights and frozen layers: the grading recipe re-draws and trains them anyway.
    brought = np.random.default_rng(1).normal(0.0, 0.05, size=(784, 128)).astype("float32")
    model = keras.Sequential([
        keras.Input(shape=(784,)),
        layers.Dense(128, activation="relu", trainable=False,
                     kernel_initializer=keras.initializers.Constant(brought)),
        layers.Dropout(0.2),
        layers.Dense(10, activation="softmax", trainable=False,
                     kernel_initializer=keras.initializers.Constant(0.01)),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
""",
            "build_cnn": """
def build_cnn():
    model = keras.Sequential()
    model.add(keras.Input(shape=(28, 28, 1)))
    for filters in (16, 36):
        model.add(layers.Conv2D(filters, kernel_size=(5, 5), padding="same"))
        model.add(layers.Activation(keras.activations.relu))
        model.add(layers.MaxPooling2D(pool_size=(2, 2)))
    for layer in (layers.Dropout(0.25), layers.Flatten(),
                  layers.Dense(128, activation=keras.activations.relu), layers.Dropout(0.5),
                  layers.Dense(10), layers.Activation("softmax")):
        model.add(layer)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
""",
            "build_lstm": """
def build_lstm():
    inputs = keras.Input(shape=(28, 28))
    outputs = layers.Dense(10, activation=keras.activations.softmax)(layers.LSTM(128)(inputs))
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
""",
            "build_gru": """
def build_gru():
    model = keras.Sequential([layers.GRU(128, input_shape=(28, 28)), layers.Dense(10),
                              layers.Softmax()])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
""",
        },
    ),
]

def with_mistake(mistake: Rewrite) -> nbformat.NotebookNode:
    return rewritten(reference(mistake.assignment), mistake)


def build_all() -> dict[Path, str]:
    """Every sample's path and text."""
    notebooks: dict[Path, nbformat.NotebookNode] = {}
    for assignment in ("backprop", "mnist"):
        notebooks[HERE / assignment / "stub_untouched.ipynb"] = released(assignment)
        notebooks[HERE / assignment / "reference.ipynb"] = reference(assignment)
    for mistake in MISTAKES + VARIANTS:
        notebooks[HERE / mistake.assignment / f"{mistake.name}.ipynb"] = with_mistake(mistake)
    return {path: with_stable_ids(nb) for path, nb in notebooks.items()}


if __name__ == "__main__":
    write_all(build_all(), "samples")
