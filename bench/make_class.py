"""A realistic class of N submissions, built from the sample notebooks.

    .venv/bin/python bench/make_class.py mnist 10 /tmp/class     # writes /tmp/class/submitted/...

The class cycles through ``tests/files/samples/<assignment>/``: the reference first, then each
realistic mistake, then the untouched stub, and again. Each notebook gets what real course
notebooks have on top of the answers: top-level cells where the student trains for 10 or more
epochs and plots the curves, outside any guard. ``grader grade`` drops those cells when it
extracts the answer code; ``nbgrader autograde`` executes them, as it executes everything.

The layout is nbgrader's, ``submitted/<student>/<assignment>/<assignment>.ipynb``, which both
graders read.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "files" / "samples"

# What students add at the end of the MNIST notebook: longer runs on a slice of the training
# images, with the learning curves plotted. Not guarded by NBGRADER_EXECUTION, as in many
# real submissions. Bounded: 2,000 images, 10 epochs, MLP and CNN.
MNIST_EXPERIMENT = [
    """\
## My experiments: ten epochs on 2,000 images

Does training longer help? The MLP and the CNN, ten epochs each, on a slice of the data.""",
    """\
experiment_epochs = 10
experiment_size = 2000

x_small, y_small = preprocess(train_images[:experiment_size], train_labels[:experiment_size], "mlp")
mlp_long = build_mlp()
mlp_long_history = mlp_long.fit(x_small, y_small, batch_size=128, epochs=experiment_epochs,
                                validation_split=0.1, verbose=0)
print("MLP, last epoch:", {k: round(v[-1], 4) for k, v in mlp_long_history.history.items()})""",
    """\
x_small_cnn, _ = preprocess(train_images[:experiment_size], train_labels[:experiment_size], "cnn")
cnn_long = build_cnn()
cnn_long_history = cnn_long.fit(x_small_cnn, y_small, batch_size=128, epochs=experiment_epochs,
                                validation_split=0.1, verbose=0)
print("CNN, last epoch:", {k: round(v[-1], 4) for k, v in cnn_long_history.history.items()})""",
    """\
figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for axis, (name, history) in zip(axes, [("MLP", mlp_long_history), ("CNN", cnn_long_history)]):
    axis.plot(history.history["accuracy"], "o-", label="training")
    axis.plot(history.history["val_accuracy"], "o-", label="validation")
    axis.set_title(f"{name}, {experiment_epochs} epochs on {experiment_size:,} images")
    axis.set_xlabel("epoch")
    axis.legend()
plt.show()""",
]

# What students add at the end of the backprop notebook: the network trained for 20 epochs on
# a small random data set, and the loss curve.
BACKPROP_EXPERIMENT = [
    """\
## My experiment: twenty epochs on a small data set

The same network, trained on 100 random input/target pairs for 20 epochs.""",
    """\
rng = np.random.default_rng(0)
inputs = rng.uniform(0.0, 1.0, size=(100, 2))
targets = np.stack([inputs[:, 0] * inputs[:, 1], 1.0 - inputs[:, 0] * inputs[:, 1]], axis=1)
epoch_errors = []
model_params = dict(params)
for epoch in range(20):
    total = 0.0
    for x_i, t_i in zip(inputs, targets):
        model_params, error_i = train_step(model_params, x_i, t_i, learning_rate)
        total += error_i
    epoch_errors.append(total / len(inputs))
print("mean error per epoch:", [round(e, 5) for e in epoch_errors])""",
    """\
plt.figure(figsize=(6, 4))
plt.plot(range(1, 21), epoch_errors, "o-")
plt.xlabel("epoch")
plt.ylabel("mean total error")
plt.title("20 epochs on 100 random pairs")
plt.show()""",
]

EXPERIMENTS = {"mnist": MNIST_EXPERIMENT, "backprop": BACKPROP_EXPERIMENT}


@dataclass(frozen=True)
class Member:
    student: str
    sample: str
    notebook: Path


def sample_names(assignment: str) -> list[str]:
    """Reference first, then the mistakes in the order build.py lists them, then the stub."""
    sys.path.insert(0, str(SAMPLES))
    try:
        from build import MISTAKES  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SAMPLES))
    mistakes = [m.name for m in MISTAKES if m.assignment == assignment]
    names = ["reference", *mistakes, "stub_untouched"]
    missing = [n for n in names if not (SAMPLES / assignment / f"{n}.ipynb").exists()]
    if missing:
        raise SystemExit(f"missing samples in {SAMPLES / assignment}: {', '.join(missing)} — "
                         "run tests/files/samples/build.py")
    return names


def with_experiments(notebook: nbformat.NotebookNode, assignment: str) -> nbformat.NotebookNode:
    """The notebook with the student's experiment cells added before the final check cell."""
    cells = []
    for index, source in enumerate(EXPERIMENTS[assignment]):
        make = nbformat.v4.new_markdown_cell if index == 0 else nbformat.v4.new_code_cell
        cell = make(source)
        cell["id"] = f"experiment-{index}"
        cells.append(cell)
    position = len(notebook.cells)
    for index, cell in enumerate(notebook.cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "check_your_work":
            position = index - 1 if index and notebook.cells[index - 1].cell_type == "markdown" \
                else index
            break
    notebook.cells[position:position] = cells
    return notebook


def make_class(assignment: str, size: int, root: Path) -> list[Member]:
    """Write ``size`` submissions under ``root/submitted``; return who got which sample."""
    names = sample_names(assignment)
    members = []
    for number in range(1, size + 1):
        sample = names[(number - 1) % len(names)]
        student = f"s{number:03d}_{sample}"
        notebook = nbformat.read(SAMPLES / assignment / f"{sample}.ipynb", as_version=4)
        path = root / "submitted" / student / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(with_experiments(notebook, assignment), path)
        members.append(Member(student, sample, path))
    return members


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment", choices=sorted(EXPERIMENTS))
    parser.add_argument("size", type=int)
    parser.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    members = make_class(args.assignment, args.size, args.root)
    print(f"wrote {len(members)} submissions under {args.root / 'submitted'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
