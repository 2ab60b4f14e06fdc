"""The only values that cross the sandbox boundary, and how.

Numbers, strings, booleans, None, lists, tuples and str-keyed dicts travel as JSON; NumPy
arrays as plain ``.npy`` files (numeric or boolean dtype, exact ``ndarray``, loaded with
``allow_pickle=False``); Keras models as ``.keras`` files loaded with ``safe_mode=True`` after
their config has been checked for Lambda layers and classes outside Keras. Anything else is
refused with a message. Nothing is ever unpickled.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from grader.errors import RefusedValue

MAX_DEPTH = 20
MAX_ITEMS = 100_000
MAX_MODEL_BYTES = 200 * 2**20
ARRAY_KINDS = "biuf"  # bool, signed, unsigned, float


def _describe(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def encode(
    value: Any, directory: Path, what: str, *, prefix: str = "value",
    keras_model_type: type | None = None,
) -> Any:
    """Turn ``value`` into JSON, writing arrays and models into ``directory`` (worker side)."""
    counter = [0]

    def next_path(suffix: str) -> Path:
        counter[0] += 1
        return directory / f"{prefix}-{counter[0]}{suffix}"

    def walk(obj: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise RefusedValue(f"{what} is nested deeper than {MAX_DEPTH} levels")
        cls = type(obj)
        if obj is None or cls in (bool, str, int):
            return obj
        if cls is float:
            return obj if math.isfinite(obj) else {"__float__": repr(obj)}
        if isinstance(obj, np.generic) and cls.__module__ == "numpy":
            if obj.dtype.kind not in ARRAY_KINDS:
                raise RefusedValue(f"{what} contains a NumPy {obj.dtype} scalar; expected a number")
            path = next_path(".npy")
            np.save(path, np.asarray(obj), allow_pickle=False)
            return {"__scalar__": path.name}
        if cls is np.ndarray:
            if obj.dtype.kind not in ARRAY_KINDS or obj.dtype.fields is not None:
                raise RefusedValue(
                    f"{what} contains an array of dtype {obj.dtype}; expected numbers "
                    "(float, int or bool), not Python objects"
                )
            path = next_path(".npy")
            if obj.nbytes > MAX_ARRAY_BYTES:
                raise RefusedValue(f"{what} is an array of {obj.nbytes / 2**20:.0f} MB; the grader "
                                   f"accepts arrays up to {MAX_ARRAY_BYTES // 2**20} MB")
            try:
                np.save(path, np.ascontiguousarray(obj), allow_pickle=False)
            except OSError as exc:
                raise RefusedValue(f"{what} could not be written: the sandbox's file size limit "
                                   f"was reached ({exc})") from None
            return {"__ndarray__": path.name}
        if cls in (list, tuple):
            if len(obj) > MAX_ITEMS:
                raise RefusedValue(f"{what} holds {len(obj):,} items; expected at most {MAX_ITEMS:,}")
            items = [walk(item, depth + 1) for item in obj]
            return {"__tuple__": items} if cls is tuple else items
        if cls is dict:
            if not all(type(k) is str for k in obj):
                raise RefusedValue(f"{what} is a dict with non-string keys; expected string keys")
            return {"__dict__": {k: walk(v, depth + 1) for k, v in obj.items()}}
        if keras_model_type is not None and isinstance(obj, keras_model_type):
            path = next_path(".keras")
            try:
                model: Any = obj
                model.save(path)
            except Exception as exc:  # noqa: BLE001 - any save failure is the student's model
                raise RefusedValue(
                    f"{what} is a Keras model that cannot be saved in the .keras format "
                    f"({type(exc).__name__}: {exc}); build it from keras.layers only"
                ) from None
            return {"__keras__": path.name}
        if isinstance(obj, np.ndarray):
            raise RefusedValue(
                f"{what} is an ndarray subclass ({_describe(obj)}); expected a plain numpy.ndarray"
            )
        raise RefusedValue(
            f"{what} is a {_describe(obj)}; expected numbers, strings, lists, tuples, dicts, "
            "NumPy arrays or a Keras model"
        )

    return walk(value, 0)


MAX_ARRAY_BYTES = 512 * 2**20


def _open_reply_file(path: Path, what: str, limit: int) -> bytes:
    """Read a file the sandbox wrote, refusing links, FIFOs, devices and oversized files.

    The sandbox controls the scratch folder: without these checks a symlink could make the
    checker read (and echo back) a host file, and a FIFO could block it forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise RefusedValue(f"{what}: the reply names a file that cannot be opened safely "
                           f"({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RefusedValue(f"{what}: the reply names something that is not a regular file")
        if info.st_size > limit:
            raise RefusedValue(f"{what} is {info.st_size / 2**20:.0f} MB; the grader accepts at "
                               f"most {limit // 2**20} MB")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(limit + 1)
    finally:
        os.close(fd)


def _check_keras_config(path: Path, what: str) -> None:
    """Refuse Lambda layers and classes from outside Keras before anything deserializes."""
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise RefusedValue(f"{what}: the saved model is larger than {MAX_MODEL_BYTES // 2**20} MB")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise RefusedValue(f"{what}: not a valid .keras file ({exc})") from None

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            cls, module = node.get("class_name"), node.get("module")
            if cls == "Lambda":
                raise RefusedValue(
                    f"{what} contains a Lambda layer, which the grader refuses to load because "
                    "loading it would run arbitrary code; use the built-in keras.layers instead"
                )
            if isinstance(module, str) and isinstance(cls, str) and not (
                module == "keras" or module.startswith("keras.")
            ):
                raise RefusedValue(
                    f"{what} uses the class {cls} from module {module!r}; the grader loads only "
                    "Keras' own layers, models, optimizers and losses — no custom classes"
                )
            if node.get("registered_name") and str(node["registered_name"]).count(">"):
                raise RefusedValue(
                    f"{what} uses the custom registered object {node['registered_name']!r}; "
                    "use Keras' built-in classes only"
                )
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)


def load_model_safely(path: Path, what: str) -> Any:
    import keras

    data = _open_reply_file(path, what, MAX_MODEL_BYTES)
    with tempfile.TemporaryDirectory(prefix="grader-model-") as private:
        copy = Path(private) / "model.keras"
        copy.write_bytes(data)
        return _load_private_model(keras, copy, what)


def _load_private_model(keras: Any, path: Path, what: str) -> Any:
    _check_keras_config(path, what)
    try:
        return keras.models.load_model(path, safe_mode=True, compile=True)
    except Exception as exc:  # noqa: BLE001 - every load failure is reported the same way
        raise RefusedValue(
            f"{what} could not be loaded safely from its .keras file ({type(exc).__name__}: "
            f"{str(exc)[:300]}); build the model from keras.layers only"
        ) from None


def _load_array(path: Path, what: str) -> np.ndarray:
    data = _open_reply_file(path, what, MAX_ARRAY_BYTES)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise RefusedValue(f"{what}: array file refused ({exc})") from None
    if type(array) is not np.ndarray or array.dtype.kind not in ARRAY_KINDS:
        raise RefusedValue(f"{what}: expected a numeric array, found dtype {array.dtype}")
    return array


def decode(tree: Any, directory: Path, what: str, load_model: Callable[[Path, str], Any] | None
           = load_model_safely) -> Any:
    """Rebuild a value from its encoding (checking side), validating every node."""

    def resolve(name: Any) -> Path:
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise RefusedValue(f"{what}: malformed reply from the sandbox")
        return directory / name

    def walk(node: Any, depth: int) -> Any:
        if depth > MAX_DEPTH + 1:
            raise RefusedValue(f"{what} is nested too deeply")
        if node is None or type(node) in (bool, str, int, float):
            return node
        if type(node) is list:
            return [walk(item, depth + 1) for item in node]
        if type(node) is dict and len(node) == 1:
            (tag, payload), = node.items()
            if tag == "__float__" and payload in ("nan", "inf", "-inf"):
                return float(payload)
            if tag == "__tuple__" and type(payload) is list:
                return tuple(walk(item, depth + 1) for item in payload)
            if tag == "__dict__" and type(payload) is dict:
                return {str(k): walk(v, depth + 1) for k, v in payload.items()}
            if tag == "__ndarray__":
                return _load_array(resolve(payload), what)
            if tag == "__scalar__":
                array = _load_array(resolve(payload), what)
                if array.shape != ():
                    raise RefusedValue(f"{what}: malformed scalar")
                return array[()]
            if tag == "__keras__" and load_model is not None:
                return load_model(resolve(payload), what)
        raise RefusedValue(f"{what}: malformed reply from the sandbox")

    return walk(tree, 0)


def encode_args(
    args: tuple[Any, ...], kwargs: dict[str, Any], directory: Path, prefix: str
) -> Any:
    """Arguments the checker sends (numbers, arrays, dicts): same encoding, no models."""
    return encode([list(args), kwargs], directory, "an argument", prefix=prefix)


def dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))
