"""The sandbox boundary: only plain data and safely loaded Keras models cross it."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from grader.codec import decode, encode
from grader.errors import RefusedValue


def _roundtrip(value, tmp_path):
    return decode(json.loads(json.dumps(encode(value, tmp_path, "the value f() returned"))),
                  tmp_path, "the value f() returned")


def test_plain_values_round_trip(tmp_path):
    value = {"a": 1, "b": [1.5, float("inf"), None, True, "s"], "c": (1, 2),
             "x": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(0.25)}
    back = _roundtrip(value, tmp_path)
    assert back["a"] == 1 and back["b"][1] == float("inf") and back["c"] == (1, 2)
    assert back["x"].dtype == np.float32 and np.array_equal(back["x"], value["x"])
    assert back["s"] == 0.25 and back["s"].dtype == np.float64


class _EqualsEverything:
    def __eq__(self, other):
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
])
def test_unsafe_values_are_refused(tmp_path, value, message):
    with pytest.raises(RefusedValue) as info:
        encode(value, tmp_path, "the value f() returned")
    assert str(info.value) == message


def test_pickled_array_file_is_never_unpickled(tmp_path):
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RefusedValue) as info:
        decode({"__ndarray__": "evil.npy"}, tmp_path, "the value f() returned")
    assert "array file refused" in str(info.value)


def test_reply_cannot_point_outside_the_scratch_folder(tmp_path):
    with pytest.raises(RefusedValue) as info:
        decode({"__ndarray__": "../../etc/passwd"}, tmp_path, "the value f() returned")
    assert str(info.value) == "the value f() returned: malformed reply from the sandbox"


def _keras_file(tmp_path, config):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    return path


def test_lambda_layer_is_refused_before_loading(tmp_path):
    from grader.codec import load_model_safely

    path = _keras_file(tmp_path, {"class_name": "Sequential", "module": "keras", "config": {
        "layers": [{"class_name": "Lambda", "module": "keras.layers", "config": {}}]}})
    with pytest.raises(RefusedValue) as info:
        load_model_safely(path, "build_cnn()")
    assert str(info.value) == (
        "build_cnn() contains a Lambda layer, which the grader refuses to load because loading "
        "it would run arbitrary code; use the built-in keras.layers instead")


def test_custom_class_is_refused_before_loading(tmp_path):
    from grader.codec import load_model_safely

    path = _keras_file(tmp_path, {"class_name": "Sequential", "module": "keras", "config": {
        "layers": [{"class_name": "Evil", "module": "__main__", "config": {}}]}})
    with pytest.raises(RefusedValue) as info:
        load_model_safely(path, "build_cnn()")
    assert str(info.value) == (
        "build_cnn() uses the class Evil from module '__main__'; the grader loads only Keras' "
        "own layers, models, optimizers and losses — no custom classes")
