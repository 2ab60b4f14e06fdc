"""The training cache: one key per distinct training, whatever the layers are called; a
different setting anywhere is a different key; stored outcomes come back exactly, and an entry
that cannot be trusted is trained again."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import mnist_npz

keras = pytest.importorskip("keras")
layers = keras.layers

from grader.data import Dataset  # noqa: E402
from grader.profiles import Profile  # noqa: E402
from grader.training import TrainingOutcome, fresh_copy  # noqa: E402
from grader.training_cache import (  # noqa: E402
    CACHE_ENV,
    LARGEST_ENTRY,
    NO_CACHE_ENV,
    STATS,
    TrainingCache,
    TrainingKey,
    training_key,
)

PROFILE = Profile(name="quick", train_size=20, epochs={"mlp": 2}, batch_size=8,
                  thresholds={"mlp": 0.9}, seed=0)


def _data(x_train: np.ndarray | None = None) -> Dataset:
    # Key tests only: the arrays are hashed, never trained on.
    rng = np.random.default_rng(0)
    return Dataset(
        x_train=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8) if x_train is None
        else x_train,
        y_train=np.arange(40, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        y_test=np.arange(10, dtype=np.uint8), source="in memory")


DATA = _data()


def _mlp(units: int = 16, rate: float = 0.2, activation: str = "relu",
         initializer: str = "glorot_uniform", learning_rate: float = 0.001,
         names: tuple[str, str, str, str] | None = None) -> keras.Model:
    """A small MLP; ``names`` names its input, layers and model (else Keras numbers them)."""
    named = (lambda i: {"name": names[i]}) if names else (lambda i: {})
    model = keras.Sequential([
        keras.Input(shape=(784,), **named(0)),
        layers.Dense(units, activation=activation, kernel_initializer=initializer, **named(1)),
        layers.Dropout(rate, **named(2)),
        layers.Dense(10, activation="softmax"),
    ], **({"name": names[3]} if names else {}))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def _functional(names: tuple[str, str, str]) -> keras.Model:
    inputs = keras.Input(shape=(784,), name=names[0])
    hidden = layers.Dense(16, activation="relu", name=names[1])(inputs)
    outputs = layers.Dense(10, activation="softmax", name=names[2])(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def _key(model: keras.Model, profile: Profile = PROFILE, data: Dataset = DATA) -> TrainingKey:
    clone = fresh_copy(model, profile.seed)
    key = training_key(clone, model_kind="mlp", profile=profile, data=data)
    assert key is not None
    return key


def test_identical_models_with_different_layer_names_share_one_key():
    auto = _key(_mlp())
    again = _key(_mlp())  # Keras numbers these layers differently from the first ones
    named = _key(_mlp(names=("pixels", "hidden", "drop", "digits")))
    assert auto == again == named
    assert _key(_functional(("a", "b", "c"))) == _key(_functional(("x", "hidden", "out")))


def _compiled(model: keras.Model) -> keras.Model:
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def _written(style: str, units: int = 16) -> keras.Model:
    """``_mlp(units)`` (Adam's default rate is 0.001), written in one of several styles."""
    if style == "sequential_activation_layers":
        return _compiled(keras.Sequential([
            keras.Input(shape=(784,)), layers.Dense(units), layers.Activation("relu"),
            layers.Dropout(0.2), layers.Dense(10), layers.Activation(keras.activations.softmax),
        ]))
    if style == "sequential_relu_softmax_layers":
        return _compiled(keras.Sequential([
            keras.Input(shape=(784,)), layers.Dense(units), layers.ReLU(), layers.Dropout(0.2),
            layers.Dense(10), layers.Softmax(),
        ]))
    inputs = keras.Input(shape=(784,), name="pixels")
    if style == "functional":
        x = layers.Dropout(0.2)(layers.Dense(units, activation="relu", name="h")(inputs))
        outputs = layers.Dense(10, activation="softmax")(x)
    elif style == "functional_activation_layers":
        x = layers.Dropout(0.2)(layers.ReLU()(layers.Dense(units)(inputs)))
        outputs = layers.Softmax()(layers.Dense(10)(x))
    else:
        raise AssertionError(style)
    return _compiled(keras.Model(inputs, outputs, name="mine"))


STYLES = ("sequential_activation_layers", "sequential_relu_softmax_layers", "functional",
          "functional_activation_layers")


@pytest.mark.parametrize("style", STYLES)
def test_one_architecture_written_another_way_shares_the_key(style):
    """A functional chain is its Sequential, an activation layer after a Dense without one is
    that Dense's activation: the recipe trains the normal form, so they share one training."""
    assert _key(_written(style)) == _key(_mlp())


def _residual() -> keras.Model:
    inputs = keras.Input(shape=(784,))
    hidden = layers.Dense(16, activation="relu")(inputs)
    return _compiled(keras.Model(inputs, layers.Dense(10, activation="softmax")(
        layers.Concatenate()([hidden, layers.Dense(16)(inputs)]))))


def _seq(*middle: keras.layers.Layer) -> keras.Model:
    return _compiled(keras.Sequential([keras.Input(shape=(784,)), *middle,
                                       layers.Dense(10, activation="softmax")]))


@pytest.mark.parametrize("model", [
    lambda: _seq(layers.Dense(16, activation="relu"), layers.Activation("relu"),
                 layers.Dropout(0.2)),
    lambda: _seq(layers.Dense(16), layers.ReLU(max_value=6.0), layers.Dropout(0.2)),
    lambda: _seq(layers.Dense(16), layers.Activation("tanh"), layers.Dropout(0.2)),
    lambda: _seq(layers.Dense(16), layers.Dropout(0.2), layers.Activation("relu")),
    lambda: _seq(layers.Dense(16, activation="relu"), layers.Dropout(0.2), layers.Softmax(axis=0)),
    _residual,
], ids=["activation_after_an_activation", "relu_with_a_cap", "another_activation",
        "activation_after_dropout", "softmax_on_another_axis", "not_a_chain"])
def test_what_is_not_the_same_architecture_keeps_a_key_of_its_own(model):
    assert _key(model()) != _key(_mlp())


def test_the_normal_form_of_a_functional_chain_is_sequential_with_the_activations_folded():
    from grader.training import normal_form

    normal = normal_form(_written("functional_activation_layers"))
    assert type(normal).__name__ == "Sequential"
    assert [type(layer).__name__ for layer in normal.layers] == ["Dense", "Dropout", "Dense"]
    assert [getattr(layer, "activation", None).__name__ for layer in normal.layers
            if isinstance(layer, layers.Dense)] == ["relu", "softmax"]
    residual = _residual()
    assert normal_form(residual) is residual
    plain = _mlp()
    assert normal_form(plain) is plain


def _nested(names: str) -> keras.Model:
    body = keras.Sequential([layers.Dense(16, activation="relu", name=names[0]),
                             layers.Dropout(0.2, name=names[1])], name=names[2])
    inputs = keras.Input(shape=(784,), name=names[3])
    outputs = layers.Dense(10, activation="softmax", name=names[4])(body(inputs))
    model = keras.Model(inputs, outputs, name=names[5])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def test_a_nested_model_is_named_by_position_too():
    assert _key(_nested("abcdef")) == _key(_nested("fedcba"))


def test_a_functional_model_keeps_its_wiring_in_the_key():
    key = json.loads(_key(_residual()).canonical)
    entries = key["architecture"]["layers"]
    assert key["architecture"]["output_layers"] == [{"__position__": len(entries) - 1}, 0, 0]
    merged = next(e for e in entries if e["class_name"] == "Concatenate")
    sources = [arg["config"]["keras_history"] for arg in merged["inbound_nodes"][0]["args"][0]]
    assert sources == [[{"__position__": 1}, 0, 0], [{"__position__": 2}, 0, 0]]


@pytest.mark.parametrize("change", [
    {"rate": 0.3}, {"learning_rate": 0.01}, {"initializer": "he_normal"},
    {"activation": "tanh"}, {"units": 17},
], ids=["dropout_rate", "learning_rate", "initializer", "activation", "units"])
def test_a_model_that_differs_in_one_setting_has_another_key(change):
    assert _key(_mlp(**change)) != _key(_mlp())


@pytest.mark.parametrize("profile", [
    replace(PROFILE, seed=1), replace(PROFILE, epochs={"mlp": 3}),
    replace(PROFILE, batch_size=16), replace(PROFILE, train_size=30),
], ids=["seed", "epochs", "batch_size", "train_size"])
def test_another_profile_or_seed_has_another_key(profile):
    assert _key(_mlp(), profile=profile) != _key(_mlp())


def test_other_data_has_another_key():
    changed = DATA.x_train.copy()
    changed[17, 3, 5] ^= 1
    assert _key(_mlp(), data=_data(changed)) != _key(_mlp())
    assert _key(_mlp(), data=_data(DATA.x_train.astype(np.int16))) != _key(_mlp())


def test_another_model_kind_has_another_key():
    clone = fresh_copy(_mlp(), PROFILE.seed)
    keys = {training_key(clone, model_kind=kind, profile=PROFILE, data=DATA)
            for kind in ("mlp", "cnn")}
    assert len(keys) == 2


def test_a_subclassed_model_gets_no_key():
    class Custom(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = layers.Dense(10, activation="softmax")

        def call(self, inputs):
            return self.dense(inputs * 2.0)

    model = Custom()
    model.build((None, 784))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    assert training_key(model, model_kind="mlp", profile=PROFILE, data=DATA) is None


OUTCOME = TrainingOutcome(
    accuracy=0.9361, seconds=4.123456789,
    history={"loss": [0.1 + 0.2, 1 / 3, 2.5e-17], "accuracy": [0.5, 0.75, 0.9999999999999999]},
    confusion=[[980 if i == j else j for j in range(10)] for i in range(10)],
    notes=["layer 'dense' (Dense) is frozen (trainable=False); the recipe trains every layer"])


@pytest.fixture
def key() -> TrainingKey:
    return _key(_mlp())


def test_a_stored_outcome_comes_back_exactly(tmp_path, key):
    cache = TrainingCache(tmp_path)
    assert cache.get(key) is None
    cache.put(key, OUTCOME)
    assert cache.get(key) == OUTCOME
    assert TrainingCache(tmp_path).get(key) == OUTCOME
    assert [p.name for p in tmp_path.iterdir()] == [f"{key.digest}.json"]


def test_through_trains_once_per_key(tmp_path, key):
    cache = TrainingCache(tmp_path)
    trainings: list[int] = []

    def train() -> TrainingOutcome:
        trainings.append(1)
        return OUTCOME

    hits = STATS.hits
    assert cache.through(key, train) == OUTCOME
    assert cache.through(key, train) == OUTCOME
    assert len(trainings) == 1
    assert STATS.hits == hits + 1


@pytest.mark.parametrize("content", [
    b"{not json", b"\xff\xfe", b"[]", b'{"format": 1}',
    None,  # a valid entry for another key
    "oversized",
    "wrong_types",
], ids=["truncated", "not_utf8", "not_an_object", "no_outcome", "other_key", "oversized",
        "wrong_types"])
def test_an_entry_that_cannot_be_trusted_is_ignored_and_overwritten(tmp_path, key, content):
    cache = TrainingCache(tmp_path)
    path = cache.entry_path(key)
    if content is None:
        other = _key(_mlp(units=17))
        cache.put(other, OUTCOME)
        cache.entry_path(other).rename(path)
    elif content == "oversized":
        cache.put(key, OUTCOME)
        with path.open("ab") as handle:
            handle.write(b" " * LARGEST_ENTRY)
    elif content == "wrong_types":
        cache.put(key, OUTCOME)
        stored = json.loads(path.read_text())
        stored["outcome"]["confusion"][0][0] = 980.5
        path.write_text(json.dumps(stored))
    else:
        path.write_bytes(content)
    assert cache.get(key) is None
    assert cache.through(key, lambda: OUTCOME) == OUTCOME
    assert cache.get(key) == OUTCOME


def test_a_link_in_place_of_an_entry_is_not_followed(tmp_path, key):
    cache = TrainingCache(tmp_path / "cache")
    elsewhere = TrainingCache(tmp_path / "elsewhere")
    elsewhere.put(key, OUTCOME)
    cache.folder.mkdir()
    cache.entry_path(key).symlink_to(elsewhere.entry_path(key))
    assert cache.get(key) is None
    cache.put(key, replace(OUTCOME, accuracy=0.5))
    assert not cache.entry_path(key).is_symlink()
    assert elsewhere.get(key) == OUTCOME


def test_a_second_claim_on_a_key_waits_for_the_first(tmp_path, key):
    cache = TrainingCache(tmp_path)
    with cache.claim(key) as first:
        with cache.claim(key, wait=0.3) as second:
            assert (first, second) == (True, False)
    with cache.claim(key, wait=0.3) as again:
        assert again


def test_without_a_cache_folder_every_call_trains(tmp_path, monkeypatch, key):
    from grader.training_cache import through_cache

    monkeypatch.delenv(CACHE_ENV, raising=False)
    trainings: list[int] = []

    def train() -> TrainingOutcome:
        trainings.append(1)
        return OUTCOME

    clone = fresh_copy(_mlp(), PROFILE.seed)
    for _ in range(2):
        assert through_cache(clone, model_kind="mlp", profile=PROFILE, data=DATA,
                             train=train) == OUTCOME
    assert len(trainings) == 2
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    for _ in range(2):
        assert through_cache(clone, model_kind="mlp", profile=PROFILE, data=DATA,
                             train=train) == OUTCOME
    assert len(trainings) == 3
    assert [p.name for p in tmp_path.glob("*.json")] == [f"{key.digest}.json"]


@pytest.mark.parametrize(("env", "folder"), [
    ({}, None), ({CACHE_ENV: "CACHE"}, "CACHE"),
    ({CACHE_ENV: "CACHE", NO_CACHE_ENV: "1"}, None), ({CACHE_ENV: "CACHE", NO_CACHE_ENV: "0"},
                                                      "CACHE"),
], ids=["unset", "set", "no_cache", "no_cache_0"])
def test_the_environment_chooses_the_folder(monkeypatch, env, folder):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cache = TrainingCache.from_environment()
    assert (cache.folder if cache else None) == (Path(folder) if folder else None)


# --- With real training ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    """Real MNIST and the quick MLP recipe on 2,000 images, one epoch."""
    from grader.course import load_assignment
    from grader.data import load_dataset
    from grader.profiles import get_profile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    assignment = load_assignment("mnist")
    profile = get_profile("quick", assignment)
    data = load_dataset(assignment, "mnist", mnist_npz())
    return data, replace(profile, train_size=2_000, epochs={"mlp": 1})


@pytest.mark.slow
def test_a_cached_training_is_exactly_the_training(small, tmp_path, monkeypatch):
    from grader.training import train_and_evaluate

    data, profile = small
    fits: list[str] = []
    fit = keras.Model.fit

    def counted_fit(self, *args, **kwargs):
        fits.append(self.name)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", counted_fit)
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    uncached = train_and_evaluate(_mlp(units=128), "mlp", profile, data)
    renamed_uncached = train_and_evaluate(
        _mlp(units=128, names=("pixels", "hidden", "drop", "digits")), "mlp", profile, data)
    assert len(fits) == 2 and not list(tmp_path.iterdir())
    monkeypatch.delenv(NO_CACHE_ENV)
    stored = train_and_evaluate(_mlp(units=128), "mlp", profile, data)
    assert len(fits) == 3
    reused = train_and_evaluate(
        _mlp(units=128, names=("pixels", "hidden", "drop", "digits")), "mlp", profile, data)
    assert len(fits) == 3  # a cache hit: no training at all
    assert reused == stored

    def timeless(outcome: TrainingOutcome) -> TrainingOutcome:
        return replace(outcome, seconds=0.0)

    assert timeless(stored) == timeless(uncached) == timeless(renamed_uncached)


def _cnn(style: str) -> keras.Model:
    if style == "sequential":
        return _compiled(keras.Sequential([
            keras.Input(shape=(28, 28, 1)), layers.Conv2D(4, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(10, activation="softmax")]))
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.MaxPooling2D(2)(layers.ReLU()(layers.Conv2D(4, 5, padding="same")(inputs)))
    return _compiled(keras.Model(inputs, layers.Activation("softmax")(
        layers.Dense(10)(layers.Flatten()(x)))))


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "build", "normal"), [
    ("mlp", lambda: _written("functional_activation_layers", 128), lambda: _mlp(units=128)),
    ("mlp", lambda: _written("sequential_activation_layers", 128), lambda: _mlp(units=128)),
    ("cnn", lambda: _cnn("functional"), lambda: _cnn("sequential")),
], ids=["functional_relu_softmax_layers", "sequential_activation_layers", "functional_cnn"])
def test_the_normal_form_trains_exactly_as_the_model_as_written(small, kind, build, normal):
    """The evidence behind the normal form: trained as written (no normal form), a functional
    chain with activation layers gives bit for bit the outcome of its Sequential with the
    activations folded in, which is what the recipe trains for both."""
    from grader.training import _fit_and_evaluate, configure_determinism

    configure_determinism()
    data, profile = small
    profile = replace(profile, epochs={kind: 1})
    sliced = data.for_profile(profile)

    def trained(model: keras.Model, normalise: bool) -> TrainingOutcome:
        clone = fresh_copy(model, profile.seed, normalise=normalise)
        outcome = _fit_and_evaluate(clone, kind, profile, sliced, [])
        keras.backend.clear_session()
        return replace(outcome, seconds=0.0)

    as_written = trained(build(), normalise=False)
    assert as_written == trained(normal(), normalise=False)
    assert as_written == trained(build(), normalise=True)
    assert as_written.accuracy > 0.5, "trained"


@pytest.mark.slow
@pytest.mark.parametrize("other_stores", [True, False],
                         ids=["the_other_process_stores", "the_other_process_fails"])
def test_while_waiting_for_another_process_a_later_model_is_trained(small, tmp_path,
                                                                     monkeypatch, other_stores):
    """While another process holds the key of the model this test needs, the model a later test
    needs (told to train_ahead) is trained and stored meanwhile. Both outcomes are exactly the
    ones trained without the cache, also when the other process ends without storing and this
    one trains its model itself after the training meanwhile."""
    import fcntl
    import threading
    import time

    from grader.training import configure_determinism, train_ahead, train_and_evaluate

    configure_determinism()
    data, profile = small
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    alone = {units: replace(train_and_evaluate(_mlp(units=units), "mlp", profile, data),
                            seconds=0.0) for units in (128, 32)}
    monkeypatch.delenv(NO_CACHE_ENV)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    cache = TrainingCache(tmp_path)
    needed, later = _key(_mlp(units=128), profile, data), _key(_mlp(units=32), profile, data)
    held = os.open(tmp_path / f"{needed.digest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)  # another process trains the model this test needs

    def the_other_process() -> None:
        deadline = time.monotonic() + 120  # without a training meanwhile: the test fails
        while cache.get(later) is None and time.monotonic() < deadline:
            threading.Event().wait(0.05)
        if other_stores:
            cache.put(needed, OUTCOME)
        fcntl.flock(held, fcntl.LOCK_UN)
        os.close(held)

    other = threading.Thread(target=the_other_process, daemon=True)
    other.start()
    STATS.ahead = 0
    train_ahead(_mlp(units=32), "mlp", profile, data)
    got = train_and_evaluate(_mlp(units=128), "mlp", profile, data)
    other.join(timeout=60)
    assert STATS.ahead == 1
    assert replace(cache.get(later), notes=[], seconds=0.0) == alone[32]
    if other_stores:
        assert got == replace(OUTCOME, notes=[])  # read back, with this copy's notes (none)
    else:
        assert replace(got, seconds=0.0) == alone[128]


# -- through `grader grade`: the same results with and without the cache --------------------


def _comparable(path: Path) -> dict[str, object]:
    """A result.full.json without what only timing changes (seconds, per test and in figures)."""
    result = json.loads(path.read_text())
    kept = {k: v for k, v in result.items() if k not in ("seconds", "notebook", "student")}
    tests = []
    for test in result["tests"]:
        test = {k: v for k, v in test.items() if k != "seconds"}
        figures = test.get("figures") or {}
        test["figures"] = {name: {k: v for k, v in figure.items() if k != "seconds"}
                           if isinstance(figure, dict) else figure
                           for name, figure in figures.items()}
        tests.append(test)
    kept["tests"] = tests
    return kept


@pytest.mark.slow
def test_grading_with_the_cache_gives_the_results_of_grading_without_it(tmp_path):
    """Two students hand in the reference (one with its layers renamed): with the cache each
    distinct model trains once for the class, and each picture is drawn once; without it every
    model trains; every result and every picture is the same apart from timing. Each student
    gets a checking process of their own (GRADER_CHECKER_JOBS=1), so the second reads what the
    first stored."""
    import shutil

    from tests.conftest import SAMPLES, run_grader

    reference = SAMPLES / "mnist" / "reference.ipynb"
    submitted = tmp_path / "submitted"
    submitted.mkdir()
    shutil.copy(reference, submitted / "ada.ipynb")
    renamed = reference.read_text()
    for old, new in (('layers.Dense(128, activation=\\"relu\\")',
                      'layers.Dense(128, activation=\\"relu\\", name=\\"hidden\\")'),
                     ('name=\\"mlp\\"', 'name=\\"bobs_mlp\\"')):
        assert old in renamed, old
        renamed = renamed.replace(old, new)
    (submitted / "bob.ipynb").write_text(renamed)
    env = {"MNIST_NPZ": mnist_npz()}
    env.pop("GRADER_TRAINING_CACHE", None)
    cached, uncached = tmp_path / "cached", tmp_path / "uncached"
    done = run_grader("grade", str(submitted), "--assignment", "mnist", "--out", str(cached),
                      "--jobs", "1", "--quiet", env={**env, "GRADER_CHECKER_JOBS": "1"})
    assert done.returncode == 0, done.stderr
    entries = sorted((cached / ".cache" / "training").glob("*.json"))
    assert len(entries) == 4, "one training per distinct model (MLP, CNN, LSTM, GRU)"
    pictures = sorted((cached / ".cache" / "training" / "pictures").glob("*.json"))
    assert len(pictures) == 8, "a learning curve and a confusion matrix per distinct training"
    done = run_grader("grade", str(submitted / "ada.ipynb"), "--assignment", "mnist", "--out",
                      str(uncached), "--no-cache", "--quiet", env=env)
    assert done.returncode == 0, done.stderr
    assert not (uncached / ".cache").exists()
    baseline = _comparable(uncached / "ada" / "result.full.json")
    assert baseline["tests"], "graded"
    drawn = _pictures(uncached / "ada" / "feedback.html")
    assert len(drawn) == 8
    for student in ("ada", "bob"):
        assert _comparable(cached / student / "result.full.json") == baseline, student
        assert _pictures(cached / student / "feedback.html") == drawn, student


def _pictures(page: Path) -> list[str]:
    return re.findall(r'<img src="(data:image/png;base64,[^"]+)"', page.read_text())
