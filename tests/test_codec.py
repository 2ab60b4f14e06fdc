"""The sandbox boundary: only plain data and safely loaded Keras models cross it, exactly and
within bounds."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from grader import codec
from grader.codec import decode, encode
from grader.errors import RefusedValue

WHAT = "the value f() returned"


def _roundtrip(value: Any) -> Any:
    """Encode, send as a framed message through a byte stream, read back and decode."""
    blobs: list[bytes] = []
    tree = encode(value, WHAT, blobs=blobs)
    stream = io.BytesIO(b"".join(codec.frame({"value": tree}, blobs)))
    message = codec.read_message(stream, WHAT)
    assert message is not None
    header, received = message
    return decode(header["value"], received, WHAT)


def test_plain_values_round_trip() -> None:
    value = {"a": 1, "b": [1.5, float("inf"), None, True, "s", -0.0], "c": (1, 2),
             "x": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(0.25)}
    back = _roundtrip(value)
    assert back["a"] == 1 and back["b"][1] == float("inf") and back["c"] == (1, 2)
    assert math.copysign(1.0, back["b"][5]) == -1.0
    assert back["x"].dtype == np.float32 and np.array_equal(back["x"], value["x"])
    assert back["s"] == 0.25 and type(back["s"]) is np.float64


# -- exact NumPy round-trip (property tests) --------------------------------------------------

DTYPES = st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(endianness="="),
                   hnp.unsigned_integer_dtypes(endianness="="),
                   hnp.floating_dtypes(endianness="="), hnp.floating_dtypes(endianness=">"))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit: type, shape, dtype (byte order included), memory order and every
    byte (±0.0 and NaN payloads included)."""
    return (type(b) is np.ndarray and a.shape == b.shape and a.dtype == b.dtype
            and a.dtype.str == b.dtype.str and a.tobytes(order="A") == b.tobytes(order="A")
            and a.flags.f_contiguous == b.flags.f_contiguous
            and a.flags.c_contiguous == b.flags.c_contiguous)


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
def test_arrays_round_trip_exactly(array: np.ndarray) -> None:
    back = _roundtrip(array)
    assert _same(array, back), (array, back)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(hnp.floating_dtypes(endianness="="), hnp.array_shapes(min_dims=2, max_dims=3,
                                                                          min_side=1, max_side=5)),
       st.sampled_from(["F", "strided", "transposed"]))
def test_fortran_and_non_contiguous_arrays_round_trip(array: np.ndarray, layout: str) -> None:
    view = {"F": np.asfortranarray(array), "strided": array[::2], "transposed": array.T}[layout]
    back = _roundtrip(view)
    assert back.shape == view.shape and back.dtype == view.dtype
    assert np.array_equal(back, view, equal_nan=True)
    assert np.asarray(back).tobytes() == np.ascontiguousarray(view).tobytes()
    if view.flags.f_contiguous and not view.flags.c_contiguous:
        assert back.flags.f_contiguous


@settings(max_examples=100, deadline=None)
@given(hnp.from_dtype(np.dtype(np.float64)) | hnp.from_dtype(np.dtype(np.float32))
       | hnp.from_dtype(np.dtype(np.int8)) | hnp.from_dtype(np.dtype(np.uint64))
       | hnp.from_dtype(np.dtype(np.bool_)))
def test_numpy_scalars_stay_numpy_scalars_of_their_dtype(scalar: np.generic) -> None:
    back = _roundtrip(scalar)
    assert type(back) is type(scalar)
    assert np.asarray(back).tobytes() == np.asarray(scalar).tobytes()


@pytest.mark.parametrize("value", [np.float64(-0.0), np.float32("nan"), np.float64("-inf")])
def test_special_floats_keep_their_bits(value: np.generic) -> None:
    back = _roundtrip(np.array([value, value], dtype=value.dtype))
    assert back.tobytes() == np.array([value, value], dtype=value.dtype).tobytes()


def test_zero_dimensional_arrays_stay_zero_dimensional() -> None:
    """What a stable sigmoid written with np.where returns for a float."""
    z = 3.0
    value = np.where(z >= 0, 1 / (1 + np.exp(-z)), np.exp(z) / (1 + np.exp(z)))
    back = _roundtrip(value)
    assert back.shape == () and type(back) is np.ndarray and back == value


def test_empty_arrays_keep_their_shape() -> None:
    back = _roundtrip(np.zeros((0, 3, 0), dtype=np.int16))
    assert back.shape == (0, 3, 0) and back.dtype == np.int16


# -- refusals --------------------------------------------------------------------------------


class _EqualsEverything:
    def __eq__(self, other: object) -> bool:
        return True


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize(("value", "message"), [
    (_EqualsEverything(), "the value f() returned is a test_codec._EqualsEverything; expected "
                          "numbers, strings, lists, tuples, dicts, NumPy arrays or a Keras model"),
    (np.zeros(3).view(_Sub), "the value f() returned is an ndarray subclass (test_codec._Sub); "
                             "expected a plain numpy.ndarray"),
    (np.array([object()]), "the value f() returned contains an array of dtype object; expected "
                           "numbers (float, int or bool), not Python objects"),
    ({1: 2}, "the value f() returned is a dict with non-string keys; expected string keys"),
    ([np.zeros(20 * 2**20)] * 4, "the value f() returned holds 640 MB of arrays in all; the "
     "grader accepts at most 512 MB per value — return each array once, and only what the "
     "function is asked for"),
])
def test_unsafe_values_are_refused(value: Any, message: str) -> None:
    with pytest.raises(RefusedValue) as info:
        encode(value, WHAT, blobs=[])
    assert str(info.value) == message


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_pickled_array_data_is_never_unpickled() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RefusedValue) as info:
        decode({"__ndarray__": 0}, [buffer.getvalue()], WHAT)
    assert str(info.value) == "the value f() returned: expected a numeric array, found dtype object"


def test_an_array_header_that_lies_about_its_size_is_refused_before_allocating() -> None:
    data = _npy(np.zeros(4))
    lying = data.replace(b"'shape': (4,)", b"'shape': (9,)")
    assert lying != data
    with pytest.raises(RefusedValue) as info:
        decode({"__ndarray__": 0}, [lying], WHAT)
    assert str(info.value) == ("the value f() returned: array data refused (its size does not "
                               "match its shape)")


def test_a_reply_cannot_name_a_path() -> None:
    with pytest.raises(RefusedValue) as info:
        decode({"__ndarray__": "../../etc/passwd"}, [], WHAT)
    assert str(info.value) == "the value f() returned: malformed reply from the sandbox"


def test_many_references_to_one_big_blob_are_refused_before_decoding() -> None:
    blob = _npy(np.zeros(100 * 2**20 // 8))  # 100 MB, sent once, referenced 8 times
    with pytest.raises(RefusedValue) as info:
        decode([{"__ndarray__": 0}] * 8, [blob], WHAT)
    assert str(info.value) == (
        "the value f() returned refers to more than 512 MB of array data in all (the same array "
        "counts once per place it appears); return each array once")


def test_a_header_announcing_too_much_data_is_refused() -> None:
    with pytest.raises(RefusedValue) as info:
        codec.blob_sizes({"blobs": [400 * 2**20, 400 * 2**20]}, WHAT)
    assert str(info.value) == (
        "the value f() returned: the reply carries 2 arrays and 800 MB in all; the grader accepts "
        "at most 4,096 arrays and 512 MB per value")


# -- models ----------------------------------------------------------------------------------


def _keras_bytes(config: Any, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", json.dumps(config))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _sequential(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"class_name": "Sequential", "module": "keras", "config": {"layers": list(layers)}}


def _layer(cls: str, **config: Any) -> dict[str, Any]:
    return {"class_name": cls, "module": "keras.layers", "config": config}


def test_lambda_layer_is_refused_before_loading() -> None:
    data = _keras_bytes(_sequential(_layer("Lambda")))
    with pytest.raises(RefusedValue) as info:
        codec.load_model_safely(data, "build_cnn()")
    assert str(info.value) == (
        "build_cnn() contains a Lambda layer, which the grader refuses to load because loading "
        "it would run arbitrary code; use the built-in keras.layers instead")


def test_custom_class_is_refused_before_loading() -> None:
    data = _keras_bytes(_sequential({"class_name": "Evil", "module": "__main__", "config": {}}))
    with pytest.raises(RefusedValue) as info:
        codec.load_model_safely(data, "build_cnn()")
    assert str(info.value) == (
        "build_cnn() uses the class Evil from module '__main__'; the grader loads only Keras' "
        "own layers, models, optimizers and losses — no custom classes")


def test_a_zip_bomb_config_is_refused_from_its_declared_size() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b" " * (300 * 2**20))  # 300 MB of spaces, 300 KB packed
    data = buffer.getvalue()
    assert len(data) < 2**20
    with pytest.raises(RefusedValue) as info:
        codec.load_model_safely(data, "build_mlp()")
    assert str(info.value) == (
        "build_mlp(): the saved model unpacks to 300 MB; the grader accepts at most 256 MB — "
        "the models of this course are far smaller")


def test_a_large_config_is_refused() -> None:
    data = _keras_bytes({"pad": "x" * (5 * 2**20)})
    with pytest.raises(RefusedValue) as info:
        codec.load_model_safely(data, "build_mlp()")
    assert str(info.value) == ("build_mlp(): the saved model's config.json is 5 MB; the grader "
                               "accepts at most 4 MB")


def test_an_archive_with_many_members_is_refused() -> None:
    data = _keras_bytes(_sequential(), {f"w{i}": b"" for i in range(20)})
    with pytest.raises(RefusedValue) as info:
        codec.load_model_safely(data, "build_mlp()")
    assert str(info.value) == ("build_mlp(): the saved model holds 21 files; a .keras file holds "
                               "at most 16")


def _input(*shape: int) -> dict[str, Any]:
    return {"class_name": "InputLayer", "module": "keras.layers",
            "config": {"batch_shape": [None, *shape]}}


@pytest.mark.parametrize(("config", "expected"), [
    # the course's reference models (SPEC): exact counts
    (_sequential(_input(784), _layer("Dense", units=128), _layer("Dropout", rate=0.2),
                 _layer("Dense", units=10)), 101_770),
    (_sequential(_input(28, 28, 1), _layer("Conv2D", filters=16, kernel_size=[5, 5], padding="same"),
                 _layer("MaxPooling2D", pool_size=[2, 2]),
                 _layer("Conv2D", filters=36, kernel_size=[5, 5], padding="same"),
                 _layer("MaxPooling2D", pool_size=[2, 2]), _layer("Dropout", rate=0.25),
                 _layer("Flatten"), _layer("Dense", units=128), _layer("Dropout", rate=0.5),
                 _layer("Dense", units=10)), 242_062),
    (_sequential(_input(28, 28), _layer("LSTM", units=128), _layer("Dense", units=10)), 81_674),
    (_sequential(_input(28, 28), _layer("GRU", units=128), _layer("Dense", units=10)), 61_962),
    # unbuilt: the input is assumed as wide as the layer
    (_sequential(_layer("Dense", units=1_000_000)), 1_000_001_000_000),
    (_sequential(_layer("GRU", units=11_000)), 3 * 11_000 * (11_000 + 11_000 + 2)),
])
def test_declared_parameters_are_estimated_from_the_config(config: Any, expected: int) -> None:
    assert codec.estimate_parameters(config) == expected


def test_a_model_declaring_too_many_parameters_is_refused_before_keras_sees_it() -> None:
    data = _keras_bytes(_sequential(_layer("Dense", units=1_000_000), _layer("Dense", units=10)))
    with pytest.raises(RefusedValue) as info:
        codec.load_model_safely(data, "build_mlp()", max_params=5_000_000)
    assert str(info.value) == (
        "build_mlp() declares about 1,000,011,000,010 parameters; this assignment's models have "
        "at most 5,000,000 — check the units, filters and kernel sizes of its layers")


def _reference_models(keras: Any) -> dict[str, Any]:
    layers = keras.layers
    return {
        "mlp": keras.Sequential([keras.Input((784,)), layers.Dense(128, activation="relu"),
                                 layers.Dropout(0.2), layers.Dense(10, activation="softmax")]),
        "cnn": keras.Sequential([
            keras.Input((28, 28, 1)), layers.Conv2D(16, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(), layers.Conv2D(36, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(), layers.Dropout(0.25), layers.Flatten(),
            layers.Dense(128, activation="relu"), layers.Dropout(0.5),
            layers.Dense(10, activation="softmax")]),
        "lstm": keras.Sequential([keras.Input((28, 28)), layers.LSTM(128),
                                  layers.Dense(10, activation="softmax")]),
        "gru": keras.Sequential([keras.Input((28, 28)), layers.GRU(128),
                                 layers.Dense(10, activation="softmax")]),
        "functional_mlp": keras.Model(*(lambda x: (x, layers.Dense(10)(layers.Dense(128)(x))))(
            keras.Input((784,)))),
    }


def test_real_keras_models_round_trip_and_their_size_is_estimated_exactly(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    for name, model in _reference_models(keras).items():
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        blobs: list[bytes] = []
        tree = encode(model, WHAT, blobs=blobs, keras_model_type=keras.Model, scratch=tmp_path)
        assert list(tmp_path.iterdir()) == [], "the model's file is removed once read"
        config = json.loads(zipfile.ZipFile(io.BytesIO(blobs[0])).read("config.json"))
        assert codec.estimate_parameters(config) == model.count_params(), name
        back = decode(tree, blobs, WHAT, load_model=codec.load_model_safely)
        assert back.count_params() == model.count_params(), name
