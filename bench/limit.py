"""The limit: the work the hidden suites require, done directly in one process, no grader around it.

    .venv/bin/python bench/limit.py mnist       # prints one JSON object

mnist: the reference models (the solution notebook's own ``build_*`` code) trained and evaluated
with the grading recipe, ``grader.training.train_and_evaluate``, under the ``quick`` profile,
one after the other. The suites' other checks (shapes, layers, parameter counts, compile
settings) cost milliseconds next to that.

backprop: no training; the arithmetic of the hidden checks on the reference functions (the
worked example, random networks, central finite differences of every parameter).

Run in a fresh process so that its peak memory is its own.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "files"))

from _nbbuild import solutions  # type: ignore[import-not-found]  # noqa: E402


def reference_namespace(assignment: str, preamble: str) -> dict[str, Any]:
    """The solution notebook's answer cells, executed after ``preamble``."""
    namespace: dict[str, Any] = {}
    exec(preamble, namespace)  # noqa: S102 - our own reference solution
    for source in solutions(assignment).values():
        exec(source, namespace)  # noqa: S102
    return namespace


def mnist_limit() -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from grader.course import load_assignment
    from grader.data import load_dataset
    from grader.profiles import MODEL_KINDS, get_profile
    from grader.training import train_and_evaluate

    namespace = reference_namespace(
        "mnist", "import numpy as np\nimport keras\nfrom keras import layers\nnum_classes = 10\n")
    assignment = load_assignment("mnist")
    profile = get_profile("quick", assignment)
    data = load_dataset(assignment, "mnist")
    models: dict[str, Any] = {}
    total = 0.0
    for kind in MODEL_KINDS:
        model = namespace[f"build_{kind}"]()
        started = time.perf_counter()
        outcome = train_and_evaluate(model, kind, profile, data)
        seconds = time.perf_counter() - started
        total += seconds
        models[kind] = {"seconds": round(seconds, 3), "fit_seconds": round(outcome.seconds, 3),
                        "accuracy": round(outcome.accuracy, 4)}
    return {"assignment": "mnist", "profile": profile.name, "seconds": round(total, 3),
            "models": models}


def backprop_limit() -> dict[str, Any]:
    import numpy as np

    ns = reference_namespace("backprop", "import numpy as np\n")
    keys = [f"w{k}" for k in range(1, 9)] + ["b1", "b2"]

    def numeric_gradient(params: dict[str, float], x: Any, target: Any) -> dict[str, float]:
        grads = {}
        for key in keys:
            up, down = dict(params), dict(params)
            up[key] += 1e-6
            down[key] -= 1e-6
            grads[key] = (ns["total_error"](ns["forward"](up, x)["out_o"], target)
                          - ns["total_error"](ns["forward"](down, x)["out_o"], target)) / 2e-6
        return grads

    started = time.perf_counter()
    worked = ({"w1": 0.15, "w2": 0.20, "w3": 0.25, "w4": 0.30, "w5": 0.40, "w6": 0.45,
               "w7": 0.50, "w8": 0.55, "b1": 0.35, "b2": 0.60},
              np.array([0.05, 0.10]), np.array([0.01, 0.99]))
    cases = [worked]
    for seed in range(20):
        rng = np.random.default_rng(seed)
        cases.append(({k: float(v) for k, v in zip(keys, rng.normal(0, 1, 10), strict=True)},
                      rng.uniform(0, 1, 2), rng.uniform(0, 1, 2)))
    for params, x, target in cases:
        ns["sigmoid"](np.array([-1000.0, 0.0, 1000.0]))
        ns["forward"](params, x)
        grads = ns["backward"](params, x, target)
        expected = numeric_gradient(params, x, target)
        assert all(abs(grads[k] - expected[k]) < 1e-6 for k in keys)
        ns["update"](params, grads, 0.5)
        ns["train_step"](params, x, target, 0.5)
    return {"assignment": "backprop", "profile": "quick",
            "seconds": round(time.perf_counter() - started, 6), "models": {}}


def main(argv: list[str] | None = None) -> int:
    assignment = (argv if argv is not None else sys.argv[1:])[0]
    result = mnist_limit() if assignment == "mnist" else backprop_limit()
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
