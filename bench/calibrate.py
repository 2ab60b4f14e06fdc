"""Calibrate the mnist accuracy thresholds: correct models over many seeds, broken ones too.

    export MNIST_NPZ=/path/to/mnist.npz
    nice -n 15 .venv/bin/python bench/calibrate.py                      # 20 seeds, all models
    .venv/bin/python bench/calibrate.py --models mlp cnn --seeds 20 --broken-seeds 3
    .venv/bin/python bench/calibrate.py --summarize calibration.jsonl   # table from saved runs

Each run trains a model with the grading recipe (``grader.training.train_and_evaluate``) under
a profile whose seed is the run's seed, changing nothing else. The correct models are the
solution notebook's own ``build_*`` functions; the broken ones are plausible mistakes on top of
them: a wrong optimizer (plain SGD at its default learning rate), a wrong learning rate (adam at
1.0), a linear output layer (no softmax), and missing normalisation (the model trained on raw
0-255 pixels: the recipe scales the inputs itself, so this one only shows what a student's own
run without scaling would reach).

Every run is appended as one JSON line to ``--out`` as soon as it finishes, so a calibration
cut short still leaves its results. The table printed at the end gives, per model, the correct
distribution (worst, median, best), the best broken run, and the threshold this rule derives:

    threshold = worst correct run - margin, rounded down to 0.005

with the margin (``--margin``, default 0.03) covering other TensorFlow versions, GPU numerics
and valid variations of the architecture. The table says whether that threshold stays above
the best broken run by at least the margin too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "files"))

BROKEN = ("sgd_default_lr", "adam_lr_1", "linear_output", "unscaled_inputs")
UNDER_THE_RECIPE = BROKEN[:3]
"""The broken variants a submission can bring to the recipe (it scales the inputs itself)."""
PREAMBLE = "import numpy as np\nimport keras\nfrom keras import layers\nnum_classes = 10\n"


def reference_builders() -> dict[str, Any]:
    from _nbbuild import solutions  # type: ignore[import-not-found]

    namespace: dict[str, Any] = {}
    exec(PREAMBLE, namespace)  # noqa: S102 - our own reference solution
    for source in solutions("mnist").values():
        exec(source, namespace)  # noqa: S102
    return {kind: namespace[f"build_{kind}"] for kind in ("mlp", "cnn", "lstm", "gru")}


def broken_model(build: Any, variant: str) -> Any:
    """The reference model with one plausible mistake."""
    import keras

    model = build()
    if variant == "sgd_default_lr":
        model.compile(optimizer=keras.optimizers.SGD(), loss="categorical_crossentropy",
                      metrics=["accuracy"])
    elif variant == "adam_lr_1":
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=1.0),
                      loss="categorical_crossentropy", metrics=["accuracy"])
    elif variant == "linear_output":
        config = model.get_config()
        config["layers"][-1]["config"]["activation"] = "linear"
        rebuilt = type(model).from_config(config)
        rebuilt.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        model = rebuilt
    return model


def run_one(kind: str, variant: str, seed: int, builders: dict[str, Any], data: Any,
            profile: Any) -> dict[str, Any]:
    from grader import training

    seeded = replace(profile, seed=seed)
    model = builders[kind]() if variant == "correct" else broken_model(builders[kind], variant)
    original = training.reference_inputs
    if variant == "unscaled_inputs":
        def unscaled(images: Any, labels: Any, input_kind: str) -> Any:
            x, y = original(images, labels, input_kind)
            return x * 255.0, y

        training.reference_inputs = unscaled  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        outcome = training.train_and_evaluate(model, kind, seeded, data)
    finally:
        training.reference_inputs = original  # type: ignore[assignment]
    return {"model": kind, "variant": variant, "seed": seed, "profile": profile.name,
            "accuracy": round(outcome.accuracy, 4),
            "seconds": round(time.perf_counter() - started, 1)}


def threshold_for(worst: float, margin: float) -> float:
    return math.floor((worst - margin) * 200 + 1e-9) / 200


def summarize(runs: list[dict[str, Any]], margin: float, current: dict[str, float]) -> str:
    lines = [
        f"margin {margin}: threshold = worst correct run - margin, rounded down to 0.005",
        "",
        "| model | correct runs | worst | median | best | best broken under the recipe | "
        "threshold | current | clear of broken |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("mlp", "cnn", "lstm", "gru"):
        correct = sorted(r["accuracy"] for r in runs
                         if r["model"] == kind and r["variant"] == "correct")
        broken = [r for r in runs if r["model"] == kind and r["variant"] in UNDER_THE_RECIPE]
        if not correct:
            continue
        threshold = threshold_for(correct[0], margin)
        best_broken = max(broken, key=lambda r: r["accuracy"], default=None)
        broken_text = (f"{best_broken['accuracy']:.4f} ({best_broken['variant']})"
                       if best_broken else "not run")
        clear = ("yes" if best_broken is None or threshold - best_broken["accuracy"] >= margin
                 else "NO")
        lines.append(
            f"| {kind.upper()} | {len(correct)} | {correct[0]:.4f} | "
            f"{statistics.median(correct):.4f} | {correct[-1]:.4f} | {broken_text} | "
            f"{threshold:.3f} | {current.get(kind, float('nan'))} | {clear} |")
    lines += ["", "broken runs (model, variant: accuracies over seeds):"]
    for kind in ("mlp", "cnn", "lstm", "gru"):
        for variant in BROKEN:
            values = [r["accuracy"] for r in runs if r["model"] == kind and r["variant"] == variant]
            if values:
                lines.append(f"  {kind} {variant}: " + ", ".join(f"{v:.4f}" for v in values))
    lines += ["", "correct runs (model: accuracies by seed):"]
    for kind in ("mlp", "cnn", "lstm", "gru"):
        pairs = sorted((r["seed"], r["accuracy"]) for r in runs
                       if r["model"] == kind and r["variant"] == "correct")
        if pairs:
            lines.append(f"  {kind}: " + ", ".join(f"{s}:{a:.4f}" for s, a in pairs))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn", "lstm", "gru"])
    parser.add_argument("--seeds", type=int, default=20, help="correct runs per model")
    parser.add_argument("--broken-seeds", type=int, default=2, help="runs per broken variant")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--margin", type=float, default=0.03)
    parser.add_argument("--broken", nargs="*", default=list(BROKEN), choices=BROKEN,
                        help="the broken variants to run")
    parser.add_argument("--resume", action="store_true",
                        help="skip the runs already in --out (same model, variant and seed)")
    parser.add_argument("--out", type=Path, default=Path("bench/output/calibration.jsonl"))
    parser.add_argument("--summarize", type=Path, help="print the table of saved runs and stop")
    args = parser.parse_args(argv)
    from grader.course import load_assignment
    from grader.profiles import get_profile

    profile = get_profile(args.profile, load_assignment("mnist"))
    if args.summarize:
        runs = [json.loads(line) for line in args.summarize.read_text().splitlines() if line]
        print(summarize(runs, args.margin, profile.thresholds))
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from grader.course import load_assignment
    from grader.data import load_dataset
    from grader.training import device_description

    data = load_dataset(load_assignment("mnist"), "mnist")
    builders = reference_builders()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"device {device_description()}, profile {profile.name}, data {data.source}",
          flush=True)
    runs: list[dict[str, Any]] = []
    if args.resume and args.out.exists():
        runs = [json.loads(line) for line in args.out.read_text().splitlines() if line]
    done = {(r["model"], r["variant"], r["seed"]) for r in runs}
    with args.out.open("a") as sink:
        for kind in args.models:
            plan = [("correct", seed) for seed in range(args.seeds)]
            plan += [(variant, seed) for variant in args.broken
                     for seed in range(args.broken_seeds)]
            for variant, seed in plan:
                if (kind, variant, seed) in done:
                    continue
                run = run_one(kind, variant, seed, builders, data, profile)
                runs.append(run)
                sink.write(json.dumps(run) + "\n")
                sink.flush()
                print(json.dumps(run), flush=True)
    print(summarize(runs, args.margin, profile.thresholds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
