"""A cache of training outcomes: each distinct model of a class trains once.

The grading recipe (:mod:`grader.training`) is deterministic: the same architecture, compile
settings, profile, seed, data, library versions and device give the same accuracy, history and
confusion matrix. So its outcome is stored under a key that holds everything that can change it,
and a model already trained under the same key is not trained again: in the same run (most
students build the prescribed model), and across runs and resubmissions when the folder is a
user cache.

The key (:func:`training_key`) is a canonical JSON form of

- the architecture of the recipe's fresh copy (after its sanitising and compile): the whole
  Keras configuration, with the names of the model and its layers, and the references of
  inbound nodes to them, replaced by their positions, so that ``dense_7`` and ``hidden`` are
  one layer; every other setting stays in (dtype policies, initialisers, regularisers,
  constraints, seeds, activations, units);
- the optimizer as the recipe compiled it (its full configuration, its name aside) and the rest
  of the compile configuration (loss, metrics, ``jit_compile``...);
- the model kind (the recipe's preprocessing), every field of the profile, and the seed;
- a SHA-256 of the data arrays (bytes, shape and dtype; computed once per array per process);
- the TensorFlow, Keras, NumPy and Python versions, Keras' global settings, the device (GPU
  name and compute capability, or the CPU model and the threads TensorFlow may use), the
  CUDA/cuDNN build, and a hash of the recipe's own source, so that a changed recipe never
  reads an old outcome;
- :data:`FORMAT_VERSION`.

A model that the key cannot describe for sure (a subclassed model, a layer from outside Keras,
a setting that is not plain JSON) gets no key and is trained as usual.

Storage: one JSON file per key in a folder, named by the SHA-256 of the key and holding the key
itself and the :class:`~grader.training.TrainingOutcome` (never a pickle). Files are written
atomically and read with a size bound; an entry that is unreadable, oversized, malformed or
stored for another key is ignored, trained again and overwritten. The folder is
``GRADER_TRAINING_CACHE`` (the runner sets it to ``OUT/.cache/training``, or a user cache
folder); with the variable unset, or ``GRADER_NO_CACHE=1`` (``--no-cache``), nothing is cached.
Only the checking process, which runs no student code, reads and writes it: the folder is under
``--out`` or a user folder, and the sandbox that runs student code never sees either, so no
submission can write an outcome.

On a hit the stored outcome comes back as it was trained, ``seconds`` included (what that
training took); the notes are the caller's own (:func:`through_cache`'s caller keeps those of
its fresh copy: a frozen model and the same model untouched share a key, not their notes).
Ray tasks receive the driver's ``GRADER_*`` settings: a cache folder that every node mounts is
shared across the cluster.

Concurrency: processes that need the same key take an exclusive ``flock`` on ``<sha>.lock``
(:meth:`TrainingCache.claim`); the first trains and stores, the others wait and then read the
stored outcome. A waiting process trains meanwhile a model that a later test of its own
submission needs (:func:`grader.training.train_ahead`), under that key's lock. A lock held
past :data:`CLAIM_WAIT_SECONDS`, or a file system without ``flock``, lets the waiting process
train as well: both store the same outcome, atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import platform
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grader._fsutil import atomic_write_text, read_regular_file
from grader.data import Dataset
from grader.profiles import Profile
from grader.training import TrainingOutcome

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent graders may train the same model twice
    fcntl = None  # type: ignore[assignment]

FORMAT_VERSION = 1
CACHE_ENV = "GRADER_TRAINING_CACHE"
NO_CACHE_ENV = "GRADER_NO_CACHE"
LARGEST_ENTRY = 4 * 2**20
"""Bytes: an entry holds a key (the model's configuration) and an outcome, far below this."""
CLAIM_WAIT_SECONDS = 900.0
"""How long a process waits for another one training the same key before it trains too."""
RECIPE_SOURCES = ("training.py", "training_cache.py", "data.py", "profiles.py")
"""The modules of :mod:`grader` whose source is part of every key."""
_POSITION = "__position__"
"""Marks a name replaced by its position: a dict can never equal a name, which is a string."""


@dataclass(frozen=True)
class TrainingKey:
    canonical: str
    """The key as canonical JSON (sorted keys, no spaces)."""
    digest: str
    """SHA-256 of :attr:`canonical`, hex: the entry's file name."""


@dataclass
class CacheStats:
    """What the cache did in this process (the benchmark counts distinct trainings with it)."""

    hits: int = 0
    misses: int = 0
    unkeyed: int = 0
    """Models the key cannot describe for sure, trained without the cache."""
    ahead: int = 0
    """Models trained while waiting for another process, for a later test
    (:func:`grader.training.train_ahead`); each is read back by its own test, a hit."""


STATS = CacheStats()


class _NotCanonical(Exception):
    """A value the key cannot hold exactly."""


# --- The key ----------------------------------------------------------------------------------


def _layer_token(position: int) -> dict[str, int]:
    return {_POSITION: position}


def _map_reference(value: Any, names: dict[str, dict[str, int]]) -> Any:
    """``value`` with every ``[name, node, tensor]`` reference to a layer of ``names`` mapped."""
    if isinstance(value, list):
        if len(value) == 3 and isinstance(value[0], str) and value[0] in names \
                and all(isinstance(v, int) for v in value[1:]):
            return [names[value[0]], *value[1:]]
        return [_map_reference(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _map_reference(v, names) for k, v in value.items()}
    return value


def _map_history(value: Any, names: dict[str, dict[str, int]]) -> Any:
    """Inbound nodes with the layer of every ``keras_history`` replaced by its position."""
    if isinstance(value, list):
        return [_map_history(v, names) for v in value]
    if isinstance(value, dict):
        out = {k: _map_history(v, names) for k, v in value.items()}
        history = value.get("keras_history")
        if isinstance(history, list) and history and isinstance(history[0], str) \
                and history[0] in names:
            out["keras_history"] = [names[history[0]], *history[1:]]
        return out
    return value


def _normalise_names(config: dict[str, Any]) -> dict[str, Any]:
    """A model's configuration with its layers' names (and references to them) by position.

    Only the places Keras puts a name are touched: each entry of ``layers`` (its ``name`` and
    its configuration's ``name``), the inner layer of a wrapper (``layer``, ``cell``...), the
    ``keras_history`` of inbound nodes, and ``input_layers``/``output_layers``. Nested models
    are normalised the same way, each with its own positions.
    """
    out = dict(config)
    entries = config.get("layers")
    if not isinstance(entries, list):
        return out
    names: dict[str, dict[str, int]] = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        inner = entry.get("config")
        name = inner.get("name") if isinstance(inner, dict) else entry.get("name")
        if isinstance(name, str):
            names.setdefault(name, _layer_token(position))
    renamed = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            renamed.append(entry)
            continue
        entry = dict(entry)
        token = _layer_token(position)
        if "name" in entry:
            entry["name"] = token
        inner = entry.get("config")
        if isinstance(inner, dict):
            inner = _normalise_names(inner) if isinstance(inner.get("layers"), list) \
                else dict(inner)
            if "name" in inner:
                inner["name"] = token
            for key in ("layer", "backward_layer", "forward_layer", "cell"):
                wrapped = inner.get(key)
                if isinstance(wrapped, dict) and isinstance(wrapped.get("config"), dict) \
                        and "name" in wrapped["config"]:
                    inner[key] = {**wrapped, "config": {**wrapped["config"], "name": key}}
            entry["config"] = inner
        if "inbound_nodes" in entry:
            entry["inbound_nodes"] = _map_history(entry["inbound_nodes"], names)
        renamed.append(entry)
    out["layers"] = renamed
    for key in ("input_layers", "output_layers"):
        if key in out:
            out[key] = _map_reference(out[key], names)
    return out


def _plain(value: Any) -> Any:
    """``value`` as JSON data, exactly, or :class:`_NotCanonical`."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotCanonical(f"the number {value} in a configuration")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    raise _NotCanonical(f"{type(value).__name__} in a configuration")


def _is_keras_class(value: Any) -> bool:
    module = type(value).__module__
    return module == "keras" or module.startswith("keras.")


def _describable(model: Any) -> bool:
    """Whether the model's configuration is all there is to it: a Sequential or functional
    model of Keras' own layers (a subclassed model or layer has code the key cannot see)."""
    if not _is_keras_class(model) or type(model).__name__ not in ("Sequential", "Functional"):
        return False
    return all(_is_keras_class(layer) and (type(layer).__name__ in ("Sequential", "Functional")
                                           or not hasattr(layer, "layers"))
               for layer in model._flatten_layers(include_self=False, recursive=True))


_DIGESTS: dict[int, tuple[weakref.ref[np.ndarray], tuple[Any, ...], str]] = {}


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes; memoised per array object in this process
    (the grader never changes its data arrays in place)."""
    identity = (array.shape, array.dtype.str, array.strides,
                array.__array_interface__["data"][0])
    known = _DIGESTS.get(id(array))
    if known is not None and known[0]() is array and known[1] == identity:
        return known[2]
    digest = hashlib.sha256()
    digest.update(json.dumps([array.dtype.str, list(array.shape)]).encode())
    digest.update(np.ascontiguousarray(array).data.cast("B"))
    value = digest.hexdigest()
    _DIGESTS[id(array)] = (weakref.ref(array), identity, value)
    return value


def data_digest(data: Dataset) -> dict[str, str]:
    return {name: array_digest(getattr(data, name))
            for name in ("x_train", "y_train", "x_test", "y_test")}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Processor", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _source_digest() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in RECIPE_SOURCES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def _installation() -> dict[str, Any]:
    """What cannot change within a process: versions, hardware, the recipe's source."""
    import keras
    import tensorflow as tf

    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append({"name": str(details.get("device_name", "")),
                     "compute_capability": str(details.get("compute_capability", ""))})
    build = tf.sysconfig.get_build_info()
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "gpus": gpus,
        "cuda": str(build.get("cuda_version", "")),
        "cudnn": str(build.get("cudnn_version", "")),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus": len(affinity(0)) if affinity else os.cpu_count(),
        "recipe": _source_digest(),
    }


def environment() -> dict[str, Any]:
    """The libraries, settings and device that the outcome of a training depends on."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    return {
        **_installation(),
        "floatx": keras.config.floatx(),
        "dtype_policy": str(keras.config.dtype_policy().name),
        "image_data_format": keras.config.image_data_format(),
        "epsilon": keras.config.epsilon(),
        "op_determinism": bool(tf_config.is_op_determinism_enabled()),
        "threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                    tf.config.threading.get_inter_op_parallelism_threads()],
        "settings": {name: os.environ[name] for name in sorted(os.environ)
                     if name.startswith(("TF_", "XLA_", "CUDA_", "KERAS_"))
                     and name != "TF_CPP_MIN_LOG_LEVEL"},
    }


def training_key(clone: Any, *, model_kind: str, profile: Profile, data: Dataset
                 ) -> TrainingKey | None:
    """The key of training ``clone`` (the recipe's fresh, compiled copy) on ``data`` under
    ``profile``; None when the model cannot be described for sure (it then trains uncached)."""
    import keras

    if not _describable(clone):
        return None
    try:
        compile_config = dict(clone.get_compile_config() or {})
        optimizer = keras.optimizers.serialize(clone.optimizer)
        if isinstance(optimizer.get("config"), dict) and "name" in optimizer["config"]:
            # A label, like a layer's name (Keras numbers them: adam, adam_1...)
            optimizer = {**optimizer, "config": {**optimizer["config"], "name": "optimizer"}}
        compile_config["optimizer"] = optimizer
        key = {
            "format": FORMAT_VERSION,
            "architecture": {**_normalise_names(_plain(clone.get_config())), "name": "model"},
            "compile": _plain(compile_config),
            "model_kind": model_kind,
            "profile": _plain(dataclasses.asdict(profile)),
            "seed": profile.seed,
            "data": data_digest(data),
            "environment": _plain(environment()),
        }
    except (_NotCanonical, NotImplementedError, TypeError, ValueError):
        return None
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return TrainingKey(canonical, hashlib.sha256(canonical.encode()).hexdigest())


# --- The store --------------------------------------------------------------------------------


def _outcome_from(value: Any) -> TrainingOutcome | None:
    """A stored outcome, validated field by field; None if anything is off."""
    if not isinstance(value, dict) or set(value) != {f.name for f in
                                                     dataclasses.fields(TrainingOutcome)}:
        return None
    accuracy, seconds = value["accuracy"], value["seconds"]
    history, confusion, notes = value["history"], value["confusion"], value["notes"]
    numbers_ok = all(isinstance(v, float) for v in (accuracy, seconds))
    history_ok = isinstance(history, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(x, float) for x in v)
        for k, v in history.items())
    confusion_ok = isinstance(confusion, list) and all(
        isinstance(row, list) and all(type(x) is int for x in row) for row in confusion)
    notes_ok = isinstance(notes, list) and all(isinstance(n, str) for n in notes)
    if not (numbers_ok and history_ok and confusion_ok and notes_ok):
        return None
    return TrainingOutcome(accuracy=accuracy, seconds=seconds, history=history,
                           confusion=confusion, notes=notes)


class TrainingCache:
    """Training outcomes stored as JSON files in ``folder``, one per key."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def from_environment(cls) -> TrainingCache | None:
        """The cache ``GRADER_TRAINING_CACHE`` names; None when unset or ``GRADER_NO_CACHE=1``."""
        if os.environ.get(NO_CACHE_ENV, "") not in ("", "0"):
            return None
        folder = os.environ.get(CACHE_ENV, "")
        return cls(Path(folder)) if folder else None

    def entry_path(self, key: TrainingKey) -> Path:
        return self.folder / f"{key.digest}.json"

    def get(self, key: TrainingKey) -> TrainingOutcome | None:
        """The stored outcome of ``key``; None if there is none or it cannot be trusted."""
        try:
            raw = read_regular_file(self.entry_path(key), LARGEST_ENTRY)
            stored = json.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):  # NotRegularFile, TooLarge among them
            return None
        if not isinstance(stored, dict) or stored.get("format") != FORMAT_VERSION \
                or stored.get("key") != key.canonical:
            return None
        return _outcome_from(stored.get("outcome"))

    def put(self, key: TrainingKey, outcome: TrainingOutcome) -> None:
        """Store ``outcome`` under ``key``, replacing whatever entry was there."""
        value = {
            "accuracy": float(outcome.accuracy),
            "seconds": float(outcome.seconds),
            "history": {str(k): [float(v) for v in values]
                        for k, values in outcome.history.items()},
            "confusion": [[int(v) for v in row] for row in outcome.confusion],
            "notes": [str(n) for n in outcome.notes],
        }
        text = json.dumps({"format": FORMAT_VERSION, "key": key.canonical, "outcome": value},
                          sort_keys=True)
        atomic_write_text(self.entry_path(key), text)  # replaces a link, never writes through

    @contextlib.contextmanager
    def claim(self, key: TrainingKey, wait: float = CLAIM_WAIT_SECONDS,
              meanwhile: Callable[[], bool] | None = None) -> Iterator[bool]:
        """Hold the lock of ``key`` while the body runs; yields whether it was taken (False:
        no ``flock`` here, or another process held it for ``wait`` seconds). While another
        process holds it, ``meanwhile()`` is called until it returns False (it does other
        work, and says whether it did any)."""
        if fcntl is None:
            yield False
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / f"{key.digest}.lock",
                         os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError:
            yield False
            return
        taken = False
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    taken = True
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        break
                    if meanwhile is not None and meanwhile():
                        continue
                    meanwhile = None  # nothing more to do meanwhile: just wait
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                except OSError:  # a file system without flock
                    break
            yield taken
        finally:
            if taken:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def fill(self, key: TrainingKey, train: Callable[[], TrainingOutcome]) -> bool:
        """Store ``train()``'s outcome under ``key`` only if no process holds the key and no
        entry stores it; returns whether it trained (never waits)."""
        with self.claim(key, wait=0) as taken:
            if not taken or self.get(key) is not None:
                return False
            outcome = train()
            try:
                self.put(key, outcome)
            except OSError:
                pass  # a full disk or a read-only folder costs the later test a training
            return True

    def through(self, key: TrainingKey, train: Callable[[], TrainingOutcome],
                meanwhile: Callable[[], bool] | None = None) -> TrainingOutcome:
        """The stored outcome of ``key``, or ``train()``'s, stored (``meanwhile``: see
        :meth:`claim`)."""
        with self.claim(key, meanwhile=meanwhile):
            found = self.get(key)
            if found is not None:
                STATS.hits += 1
                return found
            STATS.misses += 1
            outcome = train()
            try:
                self.put(key, outcome)
            except OSError:
                pass  # a full disk or a read-only folder costs the next grader a training
            return outcome


def through_cache(clone: Any, *, model_kind: str, profile: Profile, data: Dataset,
                  train: Callable[[], TrainingOutcome],
                  meanwhile: Callable[[], bool] | None = None) -> TrainingOutcome:
    """``train()``'s outcome, or the stored one when the environment names a cache that holds
    the key of training ``clone`` (the recipe's fresh, compiled copy) on ``data`` (whole: the
    profile's slice is in the key) under ``profile``."""
    cache = TrainingCache.from_environment()
    if cache is None:
        return train()
    key = training_key(clone, model_kind=model_kind, profile=profile, data=data)
    if key is None:
        STATS.unkeyed += 1
        return train()
    return cache.through(key, train, meanwhile)
