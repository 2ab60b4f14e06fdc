"""The grading recipe trains the architecture alone: weights a submission brings, frozen layers
and data-carrying initialisers change nothing, and what cannot be trained is refused with a
message."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from tests.conftest import mnist_npz

keras = pytest.importorskip("keras")
layers = keras.layers

from grader.training import ModelRefused, fresh_copy, train_and_evaluate  # noqa: E402


def _mlp(**dense):
    model = keras.Sequential([keras.Input(shape=(784,)),
                              layers.Dense(128, activation="relu", **dense),
                              layers.Dropout(0.2), layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def _weights(model):
    return [np.asarray(w) for w in model.get_weights()]


def test_an_untouched_model_is_rebuilt_as_before():
    notes: list[str] = []
    first = _weights(fresh_copy(_mlp(), seed=3, notes=notes))
    second = _weights(fresh_copy(_mlp(), seed=3))
    assert notes == []
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("brought", [
    {"trainable": False},
    {"kernel_initializer": keras.initializers.Constant(0.5)},
    {"kernel_initializer": keras.initializers.Constant(np.full((784, 128), 0.01, "float32")),
     "bias_initializer": keras.initializers.Constant(np.ones(128, "float32")),
     "trainable": False},
    {"kernel_initializer": keras.initializers.GlorotUniform(seed=123)},
], ids=["frozen", "constant", "constant_arrays_frozen", "seeded_initializer"])
def test_brought_weights_are_redrawn_and_every_layer_trains(brought):
    notes: list[str] = []
    clone = fresh_copy(_mlp(**brought), seed=0, notes=notes)
    untouched = fresh_copy(_mlp(), seed=0)
    assert all(np.array_equal(a, b)
               for a, b in zip(_weights(clone), _weights(untouched), strict=True))
    assert all(layer.trainable for layer in clone.layers)
    if brought.get("trainable") is False:
        assert any("frozen (trainable=False); the recipe trains every layer" in n for n in notes)
    if "Constant" in repr(brought):
        assert any("kernel_initializer=Constant(...) carries weights; the recipe draws fresh "
                   "ones with the layer's default (glorot_uniform)" in n for n in notes), notes


def test_a_layer_carrying_data_is_refused():
    model = keras.Sequential([keras.Input(shape=(784,)),
                              layers.Normalization(mean=np.full(784, 0.1), variance=np.ones(784)),
                              layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    with pytest.raises(ModelRefused) as refused:
        fresh_copy(model, seed=0)
    assert "carries data in its configuration (mean); the grading recipe trains the " \
           "architecture alone from fresh weights" in str(refused.value)


def test_a_sparse_loss_is_refused_with_the_fix():
    model = _mlp()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    with pytest.raises(ModelRefused) as refused:
        fresh_copy(model, seed=0)
    assert str(refused.value) == (
        "the model is compiled with loss 'sparse_categorical_crossentropy', which expects integer "
        "labels, but the grading recipe trains on one-hot labels of shape (N, 10), as "
        "preprocess() returns them — compile with loss='categorical_crossentropy'")


@pytest.fixture(scope="module")
def small():
    """Real MNIST and a one-epoch recipe on 2,000 images: enough to compare two runs."""
    from grader.course import load_assignment
    from grader.data import load_dataset
    from grader.profiles import get_profile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    assignment = load_assignment("mnist")
    profile = get_profile("quick", assignment)
    data = load_dataset(assignment, "mnist", mnist_npz())
    return data, replace(profile, train_size=2_000, epochs={"mlp": 1})


def test_a_model_pretrained_in_any_way_scores_what_the_architecture_scores(small):
    data, profile = small
    untouched = train_and_evaluate(_mlp(), "mlp", profile, data)
    # Trained on the test set itself, then frozen and its weights written into Constant
    # initialisers: everything a submission could bring.
    cheat = _mlp()
    x_test = data.x_test.reshape(-1, 784).astype("float32") / 255
    cheat.fit(x_test, np.eye(10, dtype="float32")[data.y_test], epochs=1, verbose=0)
    kernel, bias = cheat.layers[0].get_weights()
    brought = _mlp(trainable=False, kernel_initializer=keras.initializers.Constant(kernel),
                   bias_initializer=keras.initializers.Constant(bias))
    cheat.trainable = False
    for model in (cheat, brought):
        outcome = train_and_evaluate(model, "mlp", profile, data)
        assert outcome.accuracy == untouched.accuracy
        assert outcome.history == untouched.history
        assert outcome.notes


def test_the_recipe_trains_on_keras_own_batches_without_tf_data_autotuning():
    """``unautotuned_batches`` gives ``fit`` and ``predict`` the batches Keras makes of arrays
    (the same seeded shuffle, the partial last batch, the same number of steps), so a training
    is the same to the bit; only tf.data's autotuning, whose thread made each epoch's end wait,
    is off."""
    import tensorflow as tf

    from grader.training import unautotuned_batches

    rng = np.random.default_rng(0)
    x = rng.random((250, 784), dtype=np.float32)  # 7 full batches of 32 and one of 26
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 250)]

    def trained(feed):
        keras.utils.set_random_seed(5)
        model = _mlp()
        history = model.fit(**feed(x, y, batch_size=32, shuffle=True), epochs=3, verbose=0)
        return history.history, model.predict(**feed(x, batch_size=64), verbose=0)

    def arrays(x, y=None, *, batch_size, shuffle=False):
        return {"x": x, "batch_size": batch_size,
                **({"y": y, "shuffle": shuffle} if y is not None else {})}

    fed = unautotuned_batches(x, y, batch_size=32, shuffle=True)
    assert isinstance(fed["x"], tf.data.Dataset)
    assert fed["x"].options().autotune.enabled is False
    assert int(fed["x"].cardinality()) == 8

    ours, keras_own = trained(unautotuned_batches), trained(arrays)
    assert ours[0] == keras_own[0]
    assert len(ours[0]["loss"]) == 3
    np.testing.assert_array_equal(ours[1], keras_own[1])
