"""A realistic class of N submissions, built from the sample notebooks.

    .venv/bin/python bench/make_class.py mnist 10 /tmp/class     # writes /tmp/class/submitted/...

The mnist class is a realistic one (:data:`MNIST_CLASS`, 20 notebooks, then again): most
correct, in varied styles that build the reference's models (Sequential lists or ``.add()``
calls, the functional API, layer names, from-imports, ``input_shape=``, activation layers...),
some with other hyperparameters the assignment allows (optimizer, learning rate, initialiser),
realistic mistakes and untouched stubs. The style and hyperparameter variants are written here
(:data:`MNIST_VARIANTS`) from the reference solution the way ``tests/files/samples/build.py``
writes the samples. The backprop class cycles through ``tests/files/samples/backprop/``: the
reference first, then each realistic mistake, then the untouched stub, and again.

Each notebook gets what real course notebooks have on top of the answers: top-level cells where
the student trains for 10 or more epochs and plots the curves, outside any guard.
``grader grade`` drops those cells when it extracts the answer code; ``nbgrader autograde``
executes them, as it executes everything.

The layout is nbgrader's, ``submitted/<student>/<assignment>/<assignment>.ipynb``, which both
graders read.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "files" / "samples"

# What students add at the end of the MNIST notebook: longer runs on a slice of the training
# images, with the learning curves plotted. Not guarded by NBGRADER_EXECUTION, as in many
# real submissions. Bounded: 2,000 images, 10 epochs, MLP and CNN.
MNIST_EXPERIMENT = [
    """\
## My experiments: ten epochs on 2,000 images

Does training longer help? The MLP and the CNN, ten epochs each, on a slice of the data.""",
    """\
experiment_epochs = 10
experiment_size = 2000

x_small, y_small = preprocess(train_images[:experiment_size], train_labels[:experiment_size], "mlp")
mlp_long = build_mlp()
mlp_long_history = mlp_long.fit(x_small, y_small, batch_size=128, epochs=experiment_epochs,
                                validation_split=0.1, verbose=0)
print("MLP, last epoch:", {k: round(v[-1], 4) for k, v in mlp_long_history.history.items()})""",
    """\
x_small_cnn, _ = preprocess(train_images[:experiment_size], train_labels[:experiment_size], "cnn")
cnn_long = build_cnn()
cnn_long_history = cnn_long.fit(x_small_cnn, y_small, batch_size=128, epochs=experiment_epochs,
                                validation_split=0.1, verbose=0)
print("CNN, last epoch:", {k: round(v[-1], 4) for k, v in cnn_long_history.history.items()})""",
    """\
figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for axis, (name, history) in zip(axes, [("MLP", mlp_long_history), ("CNN", cnn_long_history)]):
    axis.plot(history.history["accuracy"], "o-", label="training")
    axis.plot(history.history["val_accuracy"], "o-", label="validation")
    axis.set_title(f"{name}, {experiment_epochs} epochs on {experiment_size:,} images")
    axis.set_xlabel("epoch")
    axis.legend()
plt.show()""",
]

# What students add at the end of the backprop notebook: the network trained for 20 epochs on
# a small random data set, and the loss curve.
BACKPROP_EXPERIMENT = [
    """\
## My experiment: twenty epochs on a small data set

The same network, trained on 100 random input/target pairs for 20 epochs.""",
    """\
rng = np.random.default_rng(0)
inputs = rng.uniform(0.0, 1.0, size=(100, 2))
targets = np.stack([inputs[:, 0] * inputs[:, 1], 1.0 - inputs[:, 0] * inputs[:, 1]], axis=1)
epoch_errors = []
model_params = dict(params)
for epoch in range(20):
    total = 0.0
    for x_i, t_i in zip(inputs, targets):
        model_params, error_i = train_step(model_params, x_i, t_i, learning_rate)
        total += error_i
    epoch_errors.append(total / len(inputs))
print("mean error per epoch:", [round(e, 5) for e in epoch_errors])""",
    """\
plt.figure(figsize=(6, 4))
plt.plot(range(1, 21), epoch_errors, "o-")
plt.xlabel("epoch")
plt.ylabel("mean total error")
plt.title("20 epochs on 100 random pairs")
plt.show()""",
]

EXPERIMENTS = {"mnist": MNIST_EXPERIMENT, "backprop": BACKPROP_EXPERIMENT}


@dataclass(frozen=True)
class Variant:
    """A submission the benchmark writes itself: the reference with some answer cells replaced."""

    name: str
    kind: str
    """"style" (the reference's models, written differently: it must score what the reference
    scores and share its trainings), "hyperparameters" (other models the assignment allows: full
    marks, trainings of their own) or "mistake"."""
    loses: tuple[str, ...]
    """Functions that must lose points; every other function keeps full points."""
    replace: dict[str, str]
    """Answer cell (grade id) -> its new source."""


_COMPILE = 'compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])'

# The mnist assignment prescribes every layer (class, units, filters, kernel, padding,
# activation, dropout rate), the input and output shapes, the parameter counts, the loss and an
# accuracy metric (autograde_tests/mnist/test_mnist.py); the optimizer, its learning rate, the
# initialisers and how the model is written are the student's. Style variants change only how
# the models are written, hyperparameter variants only what is free, and the benchmark's own
# mistake changes a prescribed dropout rate.
MNIST_VARIANTS = [
    Variant("style_sequential_add", "style", (), {
        "build_mlp": f"""
def build_mlp():
    # Built one layer at a time, with names of my own.
    net = keras.Sequential(name="my_mlp")
    net.add(keras.Input(shape=(784,)))
    net.add(layers.Dense(128, activation="relu", name="hidden"))
    net.add(layers.Dropout(0.2, name="drop"))
    net.add(layers.Dense(10, activation="softmax", name="digits"))
    net.{_COMPILE}
    return net
""",
        "build_cnn": f"""
def build_cnn():
    net = keras.Sequential(name="my_cnn")
    net.add(keras.Input(shape=(28, 28, 1)))
    net.add(layers.Conv2D(16, (5, 5), padding="same", activation="relu", name="conv_a"))
    net.add(layers.MaxPooling2D((2, 2), name="pool_a"))
    net.add(layers.Conv2D(36, (5, 5), padding="same", activation="relu", name="conv_b"))
    net.add(layers.MaxPooling2D((2, 2), name="pool_b"))
    net.add(layers.Dropout(0.25))
    net.add(layers.Flatten())
    net.add(layers.Dense(128, activation="relu", name="dense_hidden"))
    net.add(layers.Dropout(0.5))
    net.add(layers.Dense(10, activation="softmax", name="digits"))
    net.{_COMPILE}
    return net
""",
        "build_lstm": f"""
def build_lstm():
    net = keras.Sequential(name="my_lstm")
    net.add(keras.Input(shape=(28, 28)))
    net.add(layers.LSTM(128, name="memory"))
    net.add(layers.Dense(10, activation="softmax", name="digits"))
    net.{_COMPILE}
    return net
""",
        "build_gru": f"""
def build_gru():
    net = keras.Sequential(name="my_gru")
    net.add(keras.Input(shape=(28, 28)))
    net.add(layers.GRU(128, name="memory"))
    net.add(layers.Dense(10, activation="softmax", name="digits"))
    net.{_COMPILE}
    return net
""",
    }),
    Variant("style_functional_named", "style", (), {
        "build_mlp": f"""
def build_mlp():
    # The functional API.
    pixels = keras.Input(shape=(28 * 28,), name="pixels")
    hidden = layers.Dense(128, activation="relu", name="hidden")(pixels)
    hidden = layers.Dropout(0.2, name="dropout")(hidden)
    probabilities = layers.Dense(10, activation="softmax", name="probabilities")(hidden)
    model = keras.Model(inputs=pixels, outputs=probabilities, name="functional_mlp")
    model.{_COMPILE}
    return model
""",
        "build_cnn": f"""
def build_cnn():
    image = keras.Input(shape=(28, 28, 1), name="image")
    x = layers.Conv2D(16, kernel_size=5, padding="same", activation="relu", name="c1")(image)
    x = layers.MaxPooling2D(pool_size=2, name="p1")(x)
    x = layers.Conv2D(36, kernel_size=5, padding="same", activation="relu", name="c2")(x)
    x = layers.MaxPooling2D(pool_size=2, name="p2")(x)
    x = layers.Dropout(0.25, name="d1")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(128, activation="relu", name="fc")(x)
    x = layers.Dropout(0.5, name="d2")(x)
    out = layers.Dense(10, activation="softmax", name="out")(x)
    model = keras.Model(image, out, name="functional_cnn")
    model.{_COMPILE}
    return model
""",
        "build_lstm": f"""
def build_lstm():
    rows = keras.Input(shape=(28, 28), name="rows")
    out = layers.Dense(10, activation="softmax", name="out")(layers.LSTM(128, name="lstm")(rows))
    model = keras.Model(rows, out, name="functional_lstm")
    model.{_COMPILE}
    return model
""",
        "build_gru": f"""
def build_gru():
    rows = keras.Input(shape=(28, 28), name="rows")
    out = layers.Dense(10, activation="softmax", name="out")(layers.GRU(128, name="gru")(rows))
    model = keras.Model(rows, out, name="functional_gru")
    model.{_COMPILE}
    return model
""",
    }),
    Variant("style_from_imports_input_shape", "style", (), {
        "build_mlp": """
from keras import Sequential
from keras.layers import GRU, LSTM, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from keras.optimizers import Adam


def build_mlp():
    # input_shape= on the first layer instead of an Input; an optimizer object with the
    # default learning rate, which is what "adam" means.
    model = Sequential([Dense(128, activation="relu", input_shape=(784,)), Dropout(0.2),
                        Dense(10, activation="softmax")])
    model.compile(optimizer=Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    return model
""",
        "build_cnn": """
def build_cnn():
    model = Sequential([
        Conv2D(16, (5, 5), padding="same", activation="relu", input_shape=(28, 28, 1)),
        MaxPooling2D((2, 2)),
        Conv2D(36, (5, 5), padding="same", activation="relu"),
        MaxPooling2D((2, 2)),
        Dropout(0.25),
        Flatten(),
        Dense(128, activation="relu"),
        Dropout(0.5),
        Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=Adam(learning_rate=0.001), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model
""",
        "build_lstm": """
def build_lstm():
    model = Sequential([LSTM(128, input_shape=(28, 28)), Dense(10, activation="softmax")])
    model.compile(optimizer=Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    return model
""",
        "build_gru": """
def build_gru():
    model = Sequential([GRU(128, input_shape=(28, 28)), Dense(10, activation="softmax")])
    model.compile(optimizer=Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    return model
""",
    }),
    Variant("style_keywords_comments", "style", (), {
        "build_mlp": """
def build_mlp():
    # 784 inputs -> 128 hidden units -> 10 digits
    n_inputs, n_hidden, n_digits = 784, 128, 10
    mlp = keras.models.Sequential(layers=[
        keras.layers.InputLayer(shape=(n_inputs,)),
        keras.layers.Dense(units=n_hidden, activation=keras.activations.relu),
        keras.layers.Dropout(rate=0.2),
        keras.layers.Dense(units=n_digits, activation="softmax"),
    ])
    mlp.compile(metrics=["accuracy"], loss="categorical_crossentropy", optimizer="adam")
    return mlp
""",
        "build_cnn": """
def build_cnn():
    conv = dict(kernel_size=(5, 5), padding="same", activation="relu")
    cnn = keras.models.Sequential()
    cnn.add(keras.layers.InputLayer(shape=(28, 28, 1)))
    cnn.add(keras.layers.Conv2D(filters=16, **conv))
    cnn.add(keras.layers.MaxPooling2D(pool_size=(2, 2)))
    cnn.add(keras.layers.Conv2D(filters=36, **conv))
    cnn.add(keras.layers.MaxPooling2D(pool_size=(2, 2)))
    cnn.add(keras.layers.Dropout(rate=0.25))
    cnn.add(keras.layers.Flatten())
    cnn.add(keras.layers.Dense(units=128, activation="relu"))
    cnn.add(keras.layers.Dropout(rate=0.5))
    cnn.add(keras.layers.Dense(units=10, activation="softmax"))
    cnn.compile(metrics=["accuracy"], loss="categorical_crossentropy", optimizer="adam")
    return cnn
""",
    }),
    Variant("hyperparameters_learning_rate_initialiser", "hyperparameters", (), {
        "build_mlp": """
def build_mlp():
    # A larger learning rate than Adam's default: the optimizer is mine to choose.
    model = keras.Sequential([keras.Input(shape=(784,)), layers.Dense(128, activation="relu"),
                              layers.Dropout(0.2), layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy",
                  optimizer=keras.optimizers.Adam(learning_rate=0.002), metrics=["accuracy"])
    return model
""",
        "build_cnn": f"""
def build_cnn():
    # He initialisation for the ReLU layers.
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(16, (5, 5), padding="same", activation="relu",
                      kernel_initializer="he_normal"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(36, (5, 5), padding="same", activation="relu",
                      kernel_initializer="he_normal"),
        layers.MaxPooling2D((2, 2)),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu", kernel_initializer="he_normal"),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.{_COMPILE}
    return model
""",
    }),
    Variant("hyperparameters_rmsprop_gru_rate", "hyperparameters", (), {
        "build_mlp": """
def build_mlp():
    model = keras.Sequential([keras.Input(shape=(784,)), layers.Dense(128, activation="relu"),
                              layers.Dropout(0.2), layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    return model
""",
        "build_gru": """
def build_gru():
    model = keras.Sequential([keras.Input(shape=(28, 28)), layers.GRU(128),
                              layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy",
                  optimizer=keras.optimizers.Adam(learning_rate=0.003), metrics=["accuracy"])
    return model
""",
    }),
    Variant("mistake_mlp_dropout_0_3", "mistake", ("build_mlp",), {
        "build_mlp": f"""
def build_mlp():
    # More dropout regularises better, I read.
    model = keras.Sequential([keras.Input(shape=(784,)), layers.Dense(128, activation="relu"),
                              layers.Dropout(0.3), layers.Dense(10, activation="softmax")])
    model.{_COMPILE}
    return model
""",
    }),
]

BENCH_VARIANTS = {"mnist": MNIST_VARIANTS, "backprop": []}

# The realistic mnist class, in order (a class larger than this cycles): 11 correct (9 build the
# reference's models in 8 styles, 2 other allowed hyperparameters), 7 with mistakes (6 from
# tests/files/samples, one of the benchmark's own), 2 untouched stubs. Every prefix of five or
# more holds each kind, so a smaller class, or a subset graded by a slower run, is a fair sample.
MNIST_CLASS = [
    "reference",
    "style_sequential_add",
    "preprocess_labels_not_one_hot",
    "hyperparameters_learning_rate_initialiser",
    "stub_untouched",
    "style_functional_named",
    "style_from_imports_input_shape",
    "mlp_dense_without_relu",
    "style_activation_layers_functional_loop",
    "style_keywords_comments",
    "cnn_valid_padding",
    "hyperparameters_rmsprop_gru_rate",
    "style_pretrained_loop_callables",
    "mistake_mlp_dropout_0_3",
    "reference",
    "lstm_returns_sequences",
    "gru_left_out",
    "style_sequential_add",
    "preprocess_not_scaled",
    "stub_untouched",
]


@dataclass(frozen=True)
class Member:
    student: str
    sample: str
    notebook: Path
    kind: str = "reference"
    """"reference", "style", "hyperparameters", "mistake" or "stub"."""
    loses: tuple[str, ...] = ()
    """Functions that must lose points (a stub: every function)."""


def _samples_module() -> Any:
    sys.path.insert(0, str(SAMPLES))
    try:
        import build  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SAMPLES))
    return build


def functions(assignment: str) -> tuple[str, ...]:
    """The graded functions, from the hidden suite's assignment.toml."""
    config = tomllib.loads((ROOT / "autograde_tests" / assignment / "assignment.toml").read_text())
    return tuple(config["functions"])


def sample_names(assignment: str) -> list[str]:
    """The class's cycle: mnist's realistic class (:data:`MNIST_CLASS`); otherwise the
    reference first, then the mistakes in the order build.py lists them, then the stub."""
    build = _samples_module()
    if assignment == "mnist":
        names = list(MNIST_CLASS)
    else:
        mistakes = [m.name for m in build.MISTAKES if m.assignment == assignment]
        names = ["reference", *mistakes, "stub_untouched"]
    own = {v.name for v in BENCH_VARIANTS[assignment]}
    missing = sorted({n for n in names if n not in own
                      and not (SAMPLES / assignment / f"{n}.ipynb").exists()})
    if missing:
        raise SystemExit(f"missing samples in {SAMPLES / assignment}: {', '.join(missing)} — "
                         "run tests/files/samples/build.py")
    return names


def describe(assignment: str, sample: str) -> tuple[str, tuple[str, ...]]:
    """The kind of a sample and the functions it must lose points on."""
    build = _samples_module()
    if sample == "reference":
        return "reference", ()
    if sample == "stub_untouched":
        return "stub", functions(assignment)
    for variant in BENCH_VARIANTS[assignment]:
        if variant.name == sample:
            return variant.kind, variant.loses
    for mistake in build.MISTAKES:
        if mistake.assignment == assignment and mistake.name == sample:
            return "mistake", tuple(mistake.loses)
    for style in build.VARIANTS:
        if style.assignment == assignment and style.name == sample:
            return "style", ()
    raise SystemExit(f"unknown sample {sample!r} for {assignment}")


def sample_notebook(assignment: str, sample: str) -> nbformat.NotebookNode:
    """A sample notebook: a file of tests/files/samples, or one of :data:`BENCH_VARIANTS`,
    written from the reference the way build.py writes the samples."""
    for variant in BENCH_VARIANTS[assignment]:
        if variant.name == sample:
            build = _samples_module()
            notebook = build.replace_answers(build.reference(assignment), variant.replace, "",
                                             variant.name)
            for index, cell in enumerate(notebook.cells):
                cell["id"] = f"cell-{index}"
            return notebook
    return nbformat.read(SAMPLES / assignment / f"{sample}.ipynb", as_version=4)


def with_experiments(notebook: nbformat.NotebookNode, assignment: str) -> nbformat.NotebookNode:
    """The notebook with the student's experiment cells added before the final check cell."""
    cells = []
    for index, source in enumerate(EXPERIMENTS[assignment]):
        make = nbformat.v4.new_markdown_cell if index == 0 else nbformat.v4.new_code_cell
        cell = make(source)
        cell["id"] = f"experiment-{index}"
        cells.append(cell)
    position = len(notebook.cells)
    for index, cell in enumerate(notebook.cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "check_your_work":
            position = index - 1 if index and notebook.cells[index - 1].cell_type == "markdown" \
                else index
            break
    notebook.cells[position:position] = cells
    return notebook


def make_class(assignment: str, size: int, root: Path) -> list[Member]:
    """Write ``size`` submissions under ``root/submitted``; return who got which sample. The
    first ``k`` members of a class of any size are the class of size ``k``."""
    names = sample_names(assignment)
    members = []
    for number in range(1, size + 1):
        sample = names[(number - 1) % len(names)]
        student = f"s{number:03d}_{sample}"
        kind, loses = describe(assignment, sample)
        path = root / "submitted" / student / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(with_experiments(sample_notebook(assignment, sample), assignment), path)
        members.append(Member(student, sample, path, kind, loses))
    return members


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment", choices=sorted(EXPERIMENTS))
    parser.add_argument("size", type=int)
    parser.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    members = make_class(args.assignment, args.size, args.root)
    for member in members:
        print(f"{member.student:48s} {member.kind:16s} loses: {', '.join(member.loses) or '—'}")
    print(f"wrote {len(members)} submissions under {args.root / 'submitted'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
