"""The only values that cross the sandbox boundary, and how.

A value travels as a *message*: one JSON line, then the raw bytes of the blobs it refers to.
Numbers, strings, booleans, None, lists, tuples and str-keyed dicts are JSON; NumPy arrays and
scalars are blobs in the ``.npy`` format (numeric or boolean dtype, exact ``ndarray``, read back
with ``allow_pickle=False`` after their header has been checked against their size); Keras
models are blobs in the ``.keras`` format, loaded with ``safe_mode=True`` only after the archive
(member count, declared sizes), its ``config.json`` (size, Lambda layers, classes outside
Keras) and the parameter count the config declares have been checked. Anything else is refused
with a message. Nothing is ever unpickled, and nothing of a message is ever a path: the
checking process never opens a file the sandbox could have written.

Every input is bounded before it is parsed or built: the JSON line, the number and total size
of the blobs of a message, each array, each model, and the bytes decoded per message, counting
a blob once per reference to it.

Arrays round-trip exactly: shape (0-d included), dtype and byte order, memory order (C or
Fortran), and every value (±0.0, NaN, ±inf). NumPy scalars come back as NumPy scalars of the
same dtype.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from grader.errors import RefusedValue

MAX_DEPTH = 20
"""How deeply lists, tuples and dicts may nest."""
MAX_ITEMS = 100_000
"""Items of one list, tuple or dict."""
MAX_LINE_BYTES = 16 * 2**20
"""The JSON line of one message."""
MAX_BLOBS = 4096
"""Blobs (arrays, scalars, models) one message may carry."""
MAX_ARRAY_BYTES = 256 * 2**20
"""One array, as ``.npy``."""
MAX_MODEL_BYTES = 200 * 2**20
"""One ``.keras`` archive, as sent."""
MAX_MESSAGE_BYTES = 512 * 2**20
"""The blobs of one message together."""
MAX_DECODED_BYTES = 512 * 2**20
"""What decoding one message may build, counting a blob once per reference to it."""
MAX_MODEL_MEMBERS = 16
"""Files inside a ``.keras`` archive (Keras writes three)."""
MAX_MODEL_UNPACKED_BYTES = 256 * 2**20
"""The declared uncompressed size of all the files of a ``.keras`` archive."""
MAX_CONFIG_BYTES = 4 * 2**20
"""A ``.keras`` archive's ``config.json``, uncompressed."""
DEFAULT_MAX_MODEL_PARAMS = 5_000_000
"""Parameters a model may declare unless the assignment says otherwise (``max_model_params``)."""
ARRAY_KINDS = "biuf"  # bool, signed, unsigned, float


def _describe(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB"


# ---------------------------------------------------------------------------------------------
# Encoding (the side that sends: the worker for values, the checker for arguments)


def encode(value: Any, what: str, *, blobs: list[bytes], keras_model_type: type | None = None,
           scratch: Path | None = None) -> Any:
    """Turn ``value`` into JSON, appending its arrays and models to ``blobs`` (which may already
    hold other blobs of the same message). Models are saved through ``scratch``, the sender's
    own folder. Raises :class:`RefusedValue` for anything that may not cross."""

    def add(data: bytes) -> int:
        blobs.append(data)
        return len(blobs) - 1

    def room(size: int) -> None:
        used = sum(len(b) for b in blobs)
        if len(blobs) >= MAX_BLOBS:
            raise RefusedValue(f"{what} holds more than {MAX_BLOBS:,} arrays; expected fewer, "
                               "larger arrays")
        if used + size > MAX_MESSAGE_BYTES:
            raise RefusedValue(
                f"{what} holds {_mb(used + size)} of arrays in all; the grader accepts at most "
                f"{_mb(MAX_MESSAGE_BYTES)} per value — return each array once, and only what "
                "the function is asked for")

    def array_blob(array: np.ndarray) -> int:
        if array.nbytes > MAX_ARRAY_BYTES:
            raise RefusedValue(f"{what} is an array of {_mb(array.nbytes)}; the grader accepts "
                               f"arrays up to {_mb(MAX_ARRAY_BYTES)}")
        room(array.nbytes)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return add(buffer.getvalue())

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
            return {"__scalar__": array_blob(np.asarray(obj))}
        if cls is np.ndarray:
            if obj.dtype.kind not in ARRAY_KINDS or obj.dtype.fields is not None:
                raise RefusedValue(
                    f"{what} contains an array of dtype {obj.dtype}; expected numbers "
                    "(float, int or bool), not Python objects"
                )
            return {"__ndarray__": array_blob(obj)}
        if cls in (list, tuple):
            if len(obj) > MAX_ITEMS:
                raise RefusedValue(f"{what} holds {len(obj):,} items; expected at most {MAX_ITEMS:,}")
            items = [walk(item, depth + 1) for item in obj]
            return {"__tuple__": items} if cls is tuple else items
        if cls is dict:
            if not all(type(k) is str for k in obj):
                raise RefusedValue(f"{what} is a dict with non-string keys; expected string keys")
            if len(obj) > MAX_ITEMS:
                raise RefusedValue(f"{what} holds {len(obj):,} items; expected at most {MAX_ITEMS:,}")
            return {"__dict__": {k: walk(v, depth + 1) for k, v in obj.items()}}
        if keras_model_type is not None and isinstance(obj, keras_model_type):
            return {"__keras__": add(_save_model(obj, what, scratch, room))}
        if isinstance(obj, np.ndarray):
            raise RefusedValue(
                f"{what} is an ndarray subclass ({_describe(obj)}); expected a plain numpy.ndarray"
            )
        raise RefusedValue(
            f"{what} is a {_describe(obj)}; expected numbers, strings, lists, tuples, dicts, "
            "NumPy arrays or a Keras model"
        )

    return walk(value, 0)


def _save_model(model: Any, what: str, scratch: Path | None,
                room: Callable[[int], None]) -> bytes:
    folder = tempfile.mkdtemp(prefix="model-", dir=scratch)
    path = Path(folder) / "model.keras"
    try:
        try:
            model.save(path)
            with open(path, "rb") as handle:
                data = handle.read(MAX_MODEL_BYTES + 1)
        except Exception as exc:  # noqa: BLE001 - any save failure is the student's model
            raise RefusedValue(
                f"{what} is a Keras model that cannot be saved in the .keras format "
                f"({type(exc).__name__}: {str(exc)[:300]}); build it from keras.layers only"
            ) from None
        if len(data) > MAX_MODEL_BYTES:
            raise RefusedValue(f"{what}: the saved model is larger than {_mb(MAX_MODEL_BYTES)}; "
                               "the models of this course are far smaller — check the layer sizes")
        room(len(data))
        return data
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def encode_args(args: tuple[Any, ...], kwargs: dict[str, Any], blobs: list[bytes]) -> Any:
    """Arguments the checker sends (numbers, arrays, dicts): same encoding, no models."""
    return encode([list(args), kwargs], "an argument", blobs=blobs)


# ---------------------------------------------------------------------------------------------
# Decoding (the side that receives: the checker for values, the worker for arguments)


def _array_from_npy(data: bytes, what: str) -> np.ndarray:
    """Parse a ``.npy`` blob, checking its header (dtype, and a size that matches the data)
    before anything is allocated."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as exc:
        raise RefusedValue(f"{what}: array data refused ({exc})") from None
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise RefusedValue(f"{what}: expected a numeric array, found dtype {dtype}")
    if any(type(n) is not int or n < 0 for n in shape):
        raise RefusedValue(f"{what}: array data refused (bad shape)")
    count = math.prod(shape)
    if count * dtype.itemsize != len(data) - stream.tell():
        raise RefusedValue(f"{what}: array data refused (its size does not match its shape)")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
    array = flat.reshape(shape, order="F" if fortran else "C").copy(order="F" if fortran else "C")
    if type(array) is not np.ndarray:  # pragma: no cover - frombuffer returns plain arrays
        raise RefusedValue(f"{what}: expected a plain array")
    return array


ModelLoader = Callable[[bytes, str], Any]

_BLOB_TAGS = ("__ndarray__", "__scalar__", "__keras__")


def _check_references(tree: Any, blobs: Sequence[bytes], what: str) -> None:
    """Before anything is decoded: the bytes the tree would decode, a blob counted once per
    reference to it, must stay within :data:`MAX_DECODED_BYTES`."""
    total = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH + 2:
            raise RefusedValue(f"{what} is nested too deeply")
        if type(node) is list:
            stack += [(item, depth + 1) for item in node]
        elif type(node) is dict:
            if len(node) == 1 and next(iter(node)) in _BLOB_TAGS:
                index = next(iter(node.values()))
                if type(index) is int and 0 <= index < len(blobs):
                    total += len(blobs[index])
            else:
                stack += [(item, depth + 1) for item in node.values()]
        if total > MAX_DECODED_BYTES:
            raise RefusedValue(
                f"{what} refers to more than {_mb(MAX_DECODED_BYTES)} of array data in all "
                "(the same array counts once per place it appears); return each array once")


def decode(tree: Any, blobs: Sequence[bytes], what: str,
           load_model: ModelLoader | None = None) -> Any:
    """Rebuild a value from its encoding, validating every node. ``load_model`` turns a
    ``.keras`` blob into a model (None: models are refused). At most
    :data:`MAX_DECODED_BYTES` are decoded, counting a blob once per reference to it."""
    _check_references(tree, blobs, what)
    items = [0]

    def blob(index: Any) -> bytes:
        if type(index) is not int or not 0 <= index < len(blobs):
            raise RefusedValue(f"{what}: malformed reply from the sandbox")
        return blobs[index]

    def walk(node: Any, depth: int) -> Any:
        if depth > MAX_DEPTH + 1:
            raise RefusedValue(f"{what} is nested too deeply")
        items[0] += 1
        if items[0] > 4 * MAX_ITEMS:
            raise RefusedValue(f"{what} holds too many items; expected at most {MAX_ITEMS:,}")
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
                return _array_from_npy(blob(payload), what)
            if tag == "__scalar__":
                array = _array_from_npy(blob(payload), what)
                if array.shape != ():
                    raise RefusedValue(f"{what}: malformed scalar")
                return array[()]
            if tag == "__keras__" and load_model is not None:
                return load_model(blob(payload), what)
        raise RefusedValue(f"{what}: malformed reply from the sandbox")

    return walk(tree, 0)


# ---------------------------------------------------------------------------------------------
# Models


def _check_archive(archive: zipfile.ZipFile, what: str) -> dict[str, Any]:
    """Bound the archive before anything reads it; return its parsed ``config.json``."""
    members = archive.infolist()
    if len(members) > MAX_MODEL_MEMBERS:
        raise RefusedValue(f"{what}: the saved model holds {len(members)} files; a .keras file "
                           f"holds at most {MAX_MODEL_MEMBERS}")
    unpacked = sum(member.file_size for member in members)
    if unpacked > MAX_MODEL_UNPACKED_BYTES:
        raise RefusedValue(
            f"{what}: the saved model unpacks to {_mb(unpacked)}; the grader accepts at most "
            f"{_mb(MAX_MODEL_UNPACKED_BYTES)} — the models of this course are far smaller")
    try:
        member = archive.getinfo("config.json")
    except KeyError:
        raise RefusedValue(f"{what}: not a valid .keras file (no config.json)") from None
    if member.file_size > MAX_CONFIG_BYTES:
        raise RefusedValue(f"{what}: the saved model's config.json is {_mb(member.file_size)}; "
                           f"the grader accepts at most {_mb(MAX_CONFIG_BYTES)}")
    with archive.open(member) as handle:
        text = handle.read(MAX_CONFIG_BYTES + 1)
    if len(text) > MAX_CONFIG_BYTES:
        raise RefusedValue(f"{what}: the saved model's config.json is larger than "
                           f"{_mb(MAX_CONFIG_BYTES)}")
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RefusedValue(f"{what}: not a valid .keras file ({str(exc)[:200]})") from None
    if not isinstance(config, dict):
        raise RefusedValue(f"{what}: not a valid .keras file (config.json is not an object)")
    return config


def _check_classes(config: dict[str, Any], what: str) -> None:
    """Refuse Lambda layers and classes from outside Keras before anything deserializes."""

    def walk(node: Any, depth: int) -> None:
        if depth > 200:
            raise RefusedValue(f"{what}: the saved model's config is nested too deeply")
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
                walk(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                walk(value, depth + 1)

    walk(config, 0)


def _ints(value: Any) -> list[int]:
    """A shape or kernel size from a config: positive ints only (None and others dropped)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _product(values: list[int]) -> int:
    """The product of Python ints (exact, never overflowing); 1 for none."""
    result = 1
    for value in values:
        result *= value
    return result


def _input_shape(layer: dict[str, Any]) -> list[int | None] | None:
    """The input shape (without the batch axis) a layer's config records, if any."""
    build = layer.get("build_config")
    shape = build.get("input_shape") if isinstance(build, dict) else None
    raw = layer.get("config")
    config: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if shape is None:
        shape = config.get("batch_shape") or config.get("batch_input_shape")
    if isinstance(shape, list) and shape and all(isinstance(s, list) for s in shape):
        shape = shape[0]  # several inputs: the first one
    if not isinstance(shape, list) or not shape:
        return None
    return [s if isinstance(s, int) and not isinstance(s, bool) else None for s in shape[1:]]


_SHAPE_KEEPING = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise",
                  "GaussianDropout", "Activation", "ReLU", "Softmax", "LeakyReLU", "ELU",
                  "PReLU", "BatchNormalization", "LayerNormalization", "Rescaling",
                  "Normalization", "InputLayer", "ActivityRegularization", "Masking"}


def estimate_parameters(config: Any) -> int:
    """The number of parameters a saved model's config declares, estimated from the config
    alone (nothing is built). Where a layer's input size is not recorded (a model saved before
    it was built) the estimate assumes an input as wide as the layer itself, so that an
    unbuilt ``Dense(1_000_000)`` counts as the 10^12 parameters it could become."""
    total = 0
    shape: list[int | None] | None = None

    def width(dims: list[int | None] | None, fallback: int) -> int:
        if dims and dims[-1]:
            return int(dims[-1])
        return max(fallback, 1)

    def visit(layer: Any, depth: int) -> None:
        nonlocal total, shape
        if depth > 20 or not isinstance(layer, dict):
            return
        cls = layer.get("class_name")
        raw = layer.get("config")
        config: dict[str, Any] = raw if isinstance(raw, dict) else {}
        recorded = _input_shape(layer)
        if recorded is not None:
            shape = recorded
        inner = config.get("layers")
        if isinstance(inner, list):  # a model nested in a model
            for sub in inner:
                visit(sub, depth + 1)
            return
        wrapped = config.get("layer")
        if cls in ("Bidirectional", "TimeDistributed") and isinstance(wrapped, dict):
            before = total
            visit({**wrapped, "build_config": layer.get("build_config")}, depth + 1)
            if cls == "Bidirectional":
                total += total - before
            return
        units = _ints(config.get("units"))
        filters = _ints(config.get("filters"))
        if cls == "Dense" and units:
            total += (width(shape, units[0]) + 1) * units[0]
            shape = [*(shape or [None])[:-1], units[0]]
        elif cls in ("LSTM", "GRU", "SimpleRNN") and units:
            gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[cls]
            n = units[0]
            biases = 2 if cls == "GRU" else 1  # Keras' GRU keeps two (reset_after)
            total += gates * n * (n + width(shape, n) + biases)
            shape = [*(shape or [None, None])[:-1], n] if config.get("return_sequences") else [n]
        elif cls and str(cls).startswith("Conv") and filters:
            sizes = _ints(config.get("kernel_size")) or [1]
            total += (_product(sizes) * width(shape, filters[0]) + 1) * filters[0]
            strides = _ints(config.get("strides")) or [1]
            same = config.get("padding") == "same"
            spatial: list[int | None] = []
            for i, d in enumerate((shape or [None, None])[:-1]):
                k, step = sizes[min(i, len(sizes) - 1)], max(strides[min(i, len(strides) - 1)], 1)
                spatial.append(None if d is None else -(-d // step) if same
                               else max((d - k) // step + 1, 0))
            shape = [*spatial, filters[0]]
        elif cls == "Embedding":
            total += _product(_ints(config.get("input_dim")) + _ints(config.get("output_dim")))
            shape = None
        elif cls == "Flatten":
            shape = [_product([d or 0 for d in shape])] if shape and all(shape) else None
        elif cls in _SHAPE_KEEPING:
            pass
        elif cls and "Pooling" in str(cls) and shape:
            if "Global" in str(cls):
                shape = [shape[-1]]
            else:
                pool = _ints(config.get("pool_size")) or [2]
                spatial = [d // pool[min(i, len(pool) - 1)] if d else None
                           for i, d in enumerate(shape[:-1])]
                shape = [*spatial, shape[-1]]
        elif cls == "Reshape":
            shape = list(_ints(config.get("target_shape"))) or None
        else:
            shape = None

    visit(config, 0)
    return total


def load_model_safely(data: bytes, what: str, *,
                      max_params: int = DEFAULT_MAX_MODEL_PARAMS) -> Any:
    """Load a ``.keras`` blob from the sandbox: bounded, checked, then ``safe_mode=True``."""
    import keras

    if len(data) > MAX_MODEL_BYTES:
        raise RefusedValue(f"{what}: the saved model is larger than {_mb(MAX_MODEL_BYTES)}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            config = _check_archive(archive, what)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise RefusedValue(f"{what}: not a valid .keras file ({str(exc)[:200]})") from None
    _check_classes(config, what)
    declared = estimate_parameters(config)
    if declared > max_params:
        raise RefusedValue(
            f"{what} declares about {declared:,} parameters; this assignment's models have at "
            f"most {max_params:,} — check the units, filters and kernel sizes of its layers")
    with tempfile.TemporaryDirectory(prefix=f"grader-model-{os.getpid()}-") as private:
        copy = Path(private) / "model.keras"
        copy.write_bytes(data)
        try:
            return keras.models.load_model(copy, safe_mode=True, compile=True)
        except Exception as exc:  # noqa: BLE001 - every load failure is reported the same way
            raise RefusedValue(
                f"{what} could not be loaded safely from its .keras file ({type(exc).__name__}: "
                f"{str(exc)[:300]}); build the model from keras.layers only"
            ) from None


# ---------------------------------------------------------------------------------------------
# Messages on a stream


def dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


def frame(payload: dict[str, Any], blobs: Sequence[bytes]) -> list[bytes]:
    """A message as the chunks to write: the JSON line (naming the blob sizes), then the blobs."""
    header = {**payload, "blobs": [len(b) for b in blobs]}
    return [dumps(header).encode() + b"\n", *blobs]


def blob_sizes(header: dict[str, Any], what: str) -> list[int]:
    """The blob sizes a message's JSON line announces, refused when out of bounds."""
    sizes = header.get("blobs", [])
    if type(sizes) is not list or not all(type(s) is int and s >= 0 for s in sizes):
        raise RefusedValue(f"{what}: malformed reply from the sandbox")
    if len(sizes) > MAX_BLOBS or sum(sizes) > MAX_MESSAGE_BYTES:
        raise RefusedValue(
            f"{what}: the reply carries {len(sizes):,} arrays and {_mb(sum(sizes))} in all; the "
            f"grader accepts at most {MAX_BLOBS:,} arrays and {_mb(MAX_MESSAGE_BYTES)} per value")
    return sizes


def write_message(stream: BinaryIO, payload: dict[str, Any], blobs: Sequence[bytes] = ()) -> None:
    for chunk in frame(payload, blobs):
        stream.write(chunk)
    stream.flush()


def read_message(stream: BinaryIO, what: str) -> tuple[dict[str, Any], list[bytes]] | None:
    """One message from a blocking stream (the worker's side), or None at the end."""
    line = stream.readline(MAX_LINE_BYTES + 1)
    if not line:
        return None
    if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
        raise RefusedValue(f"{what}: the message is larger than {_mb(MAX_LINE_BYTES)}")
    header = json.loads(line)
    if not isinstance(header, dict):
        raise RefusedValue(f"{what}: malformed message")
    blobs = []
    for size in blob_sizes(header, what):
        data = stream.read(size)
        if data is None or len(data) != size:
            raise RefusedValue(f"{what}: the message ended early")
        blobs.append(data)
    return header, blobs
