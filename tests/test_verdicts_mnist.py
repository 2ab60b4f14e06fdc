"""Verdicts a student can trust, mnist: architectures judged by function, not spelling;
messages that name the cause; the accuracy test's message; the correct variants graded once."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.conftest import ROOT, SAMPLES, function_points, mnist_npz, run_grader

keras = pytest.importorskip("keras")
layers = keras.layers

sys.path.insert(0, str(SAMPLES))
from build import MISTAKES, VARIANTS  # noqa: E402

MNIST_VARIANTS = [v.name for v in VARIANTS if v.assignment == "mnist"]


def _suite():
    spec = importlib.util.spec_from_file_location(
        "hidden_mnist_suite", ROOT / "autograde_tests" / "mnist" / "test_mnist.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


suite = _suite()


class Returns:
    """A submission whose functions return the given in-process models."""

    def __init__(self, **models):
        self.models = models

    def call(self, function, *args, **kwargs):
        return self.models[function]()


def _compiled(model):
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def mlp_activation_layers():
    return _compiled(keras.Sequential([
        keras.Input(shape=(784,)), layers.Dense(128), layers.Activation("relu"),
        layers.Dropout(0.2), layers.Dense(10), layers.Activation("softmax")]))


def mlp_relu_softmax_layers_input_shape():
    return _compiled(keras.Sequential([
        layers.Dense(128, input_shape=(784,)), layers.ReLU(), layers.Dropout(0.2),
        layers.Dense(10), layers.Softmax()]))


def mlp_functional_callables():
    inputs = keras.Input(shape=(784,))
    hidden = layers.Dropout(0.2)(layers.Dense(128, activation=keras.activations.relu)(inputs))
    outputs = layers.Dense(10, activation=keras.activations.softmax)(hidden)
    return _compiled(keras.Model(inputs, outputs))


def mlp_loop():
    model = keras.Sequential([keras.Input(shape=(784,))])
    for layer in (layers.Dense(128), layers.Activation(keras.activations.relu),
                  layers.Dropout(0.2), layers.Dense(10, activation="softmax")):
        model.add(layer)
    return _compiled(model)


def cnn_activation_layers():
    model = keras.Sequential([keras.Input(shape=(28, 28, 1))])
    for filters in (16, 36):
        model.add(layers.Conv2D(filters, (5, 5), padding="same"))
        model.add(layers.ReLU())
        model.add(layers.MaxPooling2D((2, 2)))
    for layer in (layers.Dropout(0.25), layers.Flatten(), layers.Dense(128),
                  layers.Activation("relu"), layers.Dropout(0.5), layers.Dense(10),
                  layers.Softmax()):
        model.add(layer)
    return _compiled(model)


def mlp_without_dropout():
    return _compiled(keras.Sequential([
        keras.Input(shape=(784,)), layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax")]))


def mlp_relu_twice():
    return _compiled(keras.Sequential([
        keras.Input(shape=(784,)), layers.Dense(128, activation="relu"), layers.ReLU(),
        layers.Dropout(0.2), layers.Dense(10, activation="softmax")]))


@pytest.mark.parametrize("build", [mlp_activation_layers, mlp_relu_softmax_layers_input_shape,
                                   mlp_functional_callables, mlp_loop])
def test_the_same_mlp_in_any_spelling_passes(build):
    submission = Returns(build_mlp=build)
    suite._check_architecture(submission, "mlp")
    suite._check_parameter_count(submission, "mlp")


def test_the_same_cnn_with_activation_layers_passes():
    submission = Returns(build_cnn=cnn_activation_layers)
    suite._check_architecture(submission, "cnn")
    suite._check_parameter_count(submission, "cnn")


def test_a_missing_dropout_is_named():
    with pytest.raises(AssertionError) as failed:
        suite._check_architecture(Returns(build_mlp=mlp_without_dropout), "mlp")
    assert str(failed.value) == (
        "build_mlp(): layer 2 expected Dropout(rate=0.2), found Dense(units=10, "
        "activation='softmax') — the Dropout(rate=0.2) layer is missing; add it after "
        "Dense(units=128, activation='relu')")


def test_an_activation_layer_after_an_activation_is_an_extra_layer():
    with pytest.raises(AssertionError) as failed:
        suite._check_architecture(Returns(build_mlp=mlp_relu_twice), "mlp")
    assert str(failed.value) == (
        "build_mlp(): layer 2 expected Dropout(rate=0.2), found ReLU() after "
        "Dense(units=128, activation='relu'), which already has an activation — remove the "
        "ReLU layer")


class _Profile:
    name = "quick"
    thresholds = {"mlp": 0.99}
    epochs = {"mlp": 5}
    batch_size = 128
    seed = 0


def test_the_accuracy_message_says_how_far_below_and_what_the_reference_reaches(monkeypatch):
    from grader.training import TrainingOutcome

    monkeypatch.setattr(suite, "train_and_evaluate",
                        lambda *args: TrainingOutcome(accuracy=0.9512, seconds=1.0))
    with pytest.raises(AssertionError) as failed:
        suite._check_accuracy(Returns(build_mlp=mlp_loop), "mlp", _Profile(), None,
                              lambda *args: None)
    reference = suite.REFERENCE_ACCURACY["quick"]["mlp"]
    assert str(failed.value).startswith(
        "build_mlp(): test accuracy 0.9512 after the grading recipe (5 epochs, batch 128, fresh "
        f"seeded weights, profile 'quick'), expected at least 0.99: 0.0388 below the threshold; "
        f"the reference model reaches about {reference} — ")


def test_a_sparse_loss_reads_as_the_cause_in_the_accuracy_test():
    def sparse():
        model = mlp_loop()
        model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
        return model

    with pytest.raises(AssertionError) as failed:
        suite._check_accuracy(Returns(build_mlp=sparse), "mlp", _Profile(), None,
                              lambda *args: None)
    assert str(failed.value).startswith(
        "build_mlp(): the model is compiled with loss 'sparse_categorical_crossentropy', which "
        "expects integer labels")


# -- the correct variants through `grader grade`, graded once -----------------------------
@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist-variants")
    for name in MNIST_VARIANTS:
        (folder / f"{name}.ipynb").write_text((SAMPLES / "mnist" / f"{name}.ipynb").read_text())
    out = tmp_path_factory.mktemp("mnist-variants-out")
    proc = run_grader("grade", str(folder), "--assignment", "mnist", "--out", str(out),
                      "--quiet", env={"MNIST_NPZ": mnist_npz()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("variant", MNIST_VARIANTS)
def test_keras_models_in_other_styles_score_full_marks(graded, variant):
    points = function_points(graded, variant)
    assert all(got == avail for got, avail in points.values()), points
    data = json.loads((graded / variant / "results.json").read_text())
    assert data["score"] == 29 and "including 2 of 2 bonus points" in data["output"]


@pytest.mark.slow
def test_brought_frozen_weights_are_reset_with_a_note(graded):
    data = json.loads((graded / "style_pretrained_loop_callables" / "result.full.json")
                      .read_text())
    (accuracy,) = [t for t in data["tests"]
                   if t["name"] == "build_mlp: accuracy after the grading recipe"]
    assert "to train the architecture alone the recipe changed:" in accuracy["message"]
    assert "is frozen (trainable=False); the recipe trains every layer" in accuracy["message"]
    assert "kernel_initializer=Constant(...) carries weights" in accuracy["message"]


@pytest.mark.slow
@pytest.mark.parametrize("sample", ["gru_left_out", "stub_untouched"])
def test_public_checks_skip_an_unwritten_bonus(sample):
    proc = run_grader("check", str(SAMPLES / "mnist" / f"{sample}.ipynb"))
    assert "FAIL build_gru" not in proc.stdout, proc.stdout[-3000:]
    if sample == "gru_left_out":
        assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.slow
def test_public_checks_flag_every_required_mnist_mistake():
    """``grader check`` flags each mnist mistake except leaving out the optional bonus."""
    required = [m.name for m in MISTAKES if m.assignment == "mnist" and m.loses != ("build_gru",)]
    missed = [name for name in required
              if run_grader("check", str(SAMPLES / "mnist" / f"{name}.ipynb"),
                            timeout=600).returncode == 0]
    assert not missed, f"grader check passes these mistakes: {missed}"


@pytest.mark.slow
def test_run_all_reaches_the_end_with_the_bonus_left_as_the_stub(monkeypatch):
    """The reference with build_gru as released (the stub) runs every cell: the GRU's check,
    training and comparison cells skip it and the check cell runs the public checks."""
    import nbformat
    from build import reference
    from nbclient import NotebookClient

    released = nbformat.read(ROOT / "assignments" / "mnist" / "mnist.ipynb", as_version=4)
    (stub,) = [c.source for c in released.cells
               if c.metadata.get("nbgrader", {}).get("grade_id") == "build_gru"]
    nb = reference("mnist")
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "build_gru":
            cell.source = stub
    monkeypatch.setenv("MNIST_NPZ", mnist_npz())
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")  # the notebook's own training skipped
    folder = ROOT / "assignments" / "mnist"  # where a student runs it: the checks beside it
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "build_gru() is not written yet: the bonus is optional, so this check is skipped" \
        in outputs
    assert "public checks passed" in outputs, outputs[-2000:]
