"""Which members of a benchmark class share a training: the training cache's key of every model
of every notebook, computed without training anything.

    MNIST_NPZ=/path/to/mnist.npz .venv/bin/python bench/class_keys.py 20

Runs each notebook's answer code (extracted as ``grader grade`` extracts it; these are the
benchmark's own notebooks, so no sandbox) in this process, builds each model, makes the grading
recipe's fresh copy and prints its key's digest next to the reference's. Style variants must
share every key with the reference; hyperparameter variants and mistakes in a model must not.
Prints JSON: per student, per model kind, the digest (or why there is none), and the number of
distinct keys against the number of trainings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from make_class import make_class  # noqa: E402

KINDS = {"mlp": "build_mlp", "cnn": "build_cnn", "lstm": "build_lstm", "gru": "build_gru"}


def keys(size: int) -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import nbformat

    from grader.course import load_assignment
    from grader.data import load_dataset
    from grader.extract import extract_answer_code
    from grader.profiles import get_profile
    from grader.training import ModelRefused, fresh_copy
    from grader.training_cache import training_key

    assignment = load_assignment("mnist")
    profile = get_profile("quick", assignment)
    data = load_dataset(assignment, "mnist")
    table: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="class-keys-") as scratch:
        for member in make_class("mnist", size, Path(scratch)):
            code = "\n".join(c.source for c in extract_answer_code(
                nbformat.read(member.notebook, as_version=4)).cells)
            namespace: dict[str, Any] = {}
            row = table.setdefault(member.student, {})
            try:
                exec(compile(code, member.student, "exec"), namespace)  # noqa: S102
            except Exception as exc:  # noqa: BLE001 - a stub or a mistake may fail here
                row.update({kind: f"no code: {type(exc).__name__}" for kind in KINDS})
                continue
            for kind, function in KINDS.items():
                try:
                    clone = fresh_copy(namespace[function](), profile.seed)
                    key = training_key(clone, model_kind=kind, profile=profile, data=data)
                    row[kind] = key.digest[:12] if key else "unkeyed"
                except (KeyError, ModelRefused, NotImplementedError) as exc:
                    row[kind] = f"not trained: {type(exc).__name__}"
                except Exception as exc:  # noqa: BLE001 - a mistake may fail to build
                    row[kind] = f"not built: {type(exc).__name__}"
                keras.backend.clear_session()
    digests = [d for row in table.values() for d in row.values() if " " not in d]
    return {"students": table, "trainings": len(digests), "distinct": len(set(digests))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("size", type=int, nargs="?", default=20)
    args = parser.parse_args(argv)
    print(json.dumps(keys(args.size), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
