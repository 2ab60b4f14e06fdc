"""Pictures for the feedback page and the class report, as PNG ``data:`` URIs.

Every picture is drawn with Matplotlib's object API (no pyplot, no global figure state) under
Matplotlib's default style, at a fixed size and resolution, and saved without the
``Software`` metadata entry, so the same data always gives the same bytes.

The data comes from :attr:`grader.results.TestResult.figures`, one entry per kind:

``learning_curve``
    ``{"model": "cnn", "loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]}``
    (one value per epoch; the ``val_*`` lists may be absent)
``confusion_matrix``
    ``{"model": "cnn", "matrix": [[int] * 10] * 10}`` (rows: true digit, columns: predicted)
``gradients``
    ``{"student": {"w1": float, ..., "b2": float}, "expected": {...}, "network": "..."}``
    (``network`` names the network the gradients are of, e.g. ``"random network #1"``;
    without it, the worked example)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.style
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 100
_PNG_METADATA: dict[str, Any] = {"Software": None}
_BLUE = "#1f77b4"
_ORANGE = "#ff7f0e"
_GREEN = "#2ca02c"
_RED = "#d62728"


class FigureDataError(ValueError):
    """The data for a picture is not in the shape this module draws."""


@dataclass(frozen=True)
class Picture:
    """One rendered picture: what it shows and the PNG as a ``data:image/png;base64`` URI."""

    kind: str
    caption: str
    uri: str


def _to_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata=_PNG_METADATA)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(data: Mapping[str, Any], key: str, kind: str) -> list[float]:
    values = data.get(key)
    if not isinstance(values, list) or not values:
        raise FigureDataError(
            f"{kind}: expected a non-empty list of numbers under {key!r}, "
            f"found {type(values).__name__}"
        )
    out: list[float] = []
    for value in values:
        if not _is_number(value):
            raise FigureDataError(f"{kind}: {key!r} holds {value!r}, expected finite numbers")
        out.append(float(value))
    return out


def learning_curve(data: Mapping[str, Any]) -> Picture:
    """Loss and accuracy per epoch, training (and validation where present) side by side."""
    model = str(data.get("model", "model"))
    series = {key: _numbers(data, key, "learning_curve") for key in ("loss", "accuracy")}
    for key in ("val_loss", "val_accuracy"):
        if key in data:
            series[key] = _numbers(data, key, "learning_curve")
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(8, 3.2), dpi=DPI, layout="constrained")
        loss_ax, acc_ax = fig.subplots(1, 2)
        for ax, key, label in ((loss_ax, "loss", "loss"), (acc_ax, "accuracy", "accuracy")):
            epochs = range(1, len(series[key]) + 1)
            ax.plot(epochs, series[key], marker="o", color=_BLUE, label="training")
            if f"val_{key}" in series:
                val = series[f"val_{key}"]
                ax.plot(range(1, len(val) + 1), val, marker="s", color=_ORANGE, label="validation")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.set_xticks(list(epochs))
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(f"Learning curve of your {model} model under the grading recipe")
        uri = _to_uri(fig)
    epochs_run = len(series["loss"])
    caption = (
        f"Your {model} model trained by the grader ({epochs_run} epochs, fixed seed): "
        f"final training accuracy {series['accuracy'][-1]:.3f}."
    )
    return Picture("learning_curve", caption, uri)


def confusion_matrix(data: Mapping[str, Any]) -> Picture:
    """Counts of true digit (rows) against predicted digit (columns) on the grader's test images."""
    model = str(data.get("model", "model"))
    matrix = data.get("matrix")
    if (
        not isinstance(matrix, list)
        or not matrix
        or any(not isinstance(row, list) or len(row) != len(matrix) for row in matrix)
    ):
        raise FigureDataError("confusion_matrix: expected a square list of lists under 'matrix'")
    for row in matrix:
        for value in row:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FigureDataError(
                    f"confusion_matrix: 'matrix' holds {value!r}, expected counts (ints >= 0)"
                )
    size = len(matrix)
    total = sum(sum(row) for row in matrix)
    correct = sum(matrix[i][i] for i in range(size))
    peak = max(max(row) for row in matrix) or 1
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(5.6, 5), dpi=DPI, layout="constrained")
        ax = fig.subplots()
        image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=peak)
        for i in range(size):
            for j in range(size):
                value = matrix[i][j]
                if value:
                    ax.text(
                        j,
                        i,
                        str(value),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if value > peak / 2 else "black",
                    )
        ax.set_xticks(range(size))
        ax.set_yticks(range(size))
        ax.set_xlabel("predicted digit")
        ax.set_ylabel("true digit")
        ax.set_title(f"Confusion matrix of your {model} model")
        fig.colorbar(image, ax=ax, shrink=0.8)
        uri = _to_uri(fig)
    accuracy = correct / total if total else 0.0
    caption = (
        f"Your {model} model on the grader's test images: {correct:,} of {total:,} "
        f"correct ({accuracy:.1%}). Off-diagonal cells show which digits it confuses."
    )
    return Picture("confusion_matrix", caption, uri)


def gradients(data: Mapping[str, Any]) -> Picture:
    """The student's gradients next to the correct ones, one pair of bars per parameter."""
    student, expected = data.get("student"), data.get("expected")
    if not isinstance(student, Mapping) or not isinstance(expected, Mapping) or not expected:
        raise FigureDataError("gradients: expected dicts under 'student' and 'expected'")
    names = list(expected)
    for name in names:
        for side, values in (("student", student), ("expected", expected)):
            value = values.get(name)
            if value is not None and not _is_number(value):
                raise FigureDataError(
                    f"gradients: {side}[{name!r}] is {value!r}, expected a number"
                )
    missing = [name for name in names if student.get(name) is None]
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(8, 3.6), dpi=DPI, layout="constrained")
        ax = fig.subplots()
        width = 0.38
        positions = range(len(names))
        ax.bar(
            [p - width / 2 for p in positions],
            [float(student.get(n) or 0.0) for n in names],
            width,
            color=_BLUE,
            label="yours",
        )
        ax.bar(
            [p + width / 2 for p in positions],
            [float(expected[n]) for n in names],
            width,
            color=_GREEN,
            label="correct",
        )
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(list(positions), names)
        ax.set_ylabel("dE_total / dparam")
        ax.set_title("Your gradients next to the correct ones")
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
        uri = _to_uri(fig)
    wrong = [
        n
        for n in names
        if n not in missing
        and not math.isclose(float(student[n]), float(expected[n]), rel_tol=1e-4, abs_tol=1e-7)
    ]
    network = data.get("network")
    network = network if isinstance(network, str) and network else "the worked example"
    caption = f"Gradients on {network}."
    if wrong:
        caption += " Yours differ from the correct value for " + ", ".join(wrong) + "."
    if missing:
        caption += " Missing from your result: " + ", ".join(missing) + "."
    if not wrong and not missing:
        caption += " All of yours match."
    return Picture("gradients", caption, uri)


_DRAWERS: dict[str, Callable[[Mapping[str, Any]], Picture]] = {
    "learning_curve": learning_curve,
    "confusion_matrix": confusion_matrix,
    "gradients": gradients,
}

KINDS: tuple[str, ...] = tuple(_DRAWERS)
"""The figure kinds a test result may carry, in the order the feedback shows them."""


def draw(kind: str, data: Any) -> Picture:
    """Draw one entry of ``TestResult.figures``; :class:`FigureDataError` if it cannot be drawn.

    The same data always gives the same picture, so a picture is drawn once and then reused:
    students whose models share a training share its learning curve and confusion matrix. A
    process keeps :data:`REMEMBERED` of them; with a training cache, the pictures folder next
    to its entries keeps them for every checking process of the run (:func:`_stored`)."""
    drawer = _DRAWERS.get(kind)
    if drawer is None:
        raise FigureDataError(f"unknown picture kind {kind!r}; known: {', '.join(KINDS)}")
    if not isinstance(data, Mapping):
        raise FigureDataError(f"{kind}: expected a dict, found {type(data).__name__}")
    try:
        text = json.dumps(data)  # in its order: the order of keys is the order drawn
        plain = json.loads(text) == data
    except (TypeError, ValueError):
        plain = False
    if not plain:  # not JSON data exactly (tuples, NaN, keys that are not strings)
        return drawer(data)
    return _remembered(kind, text)


REMEMBERED = 64
"""Pictures kept per process (a few kilobytes each)."""


STORE_FORMAT = 1
LARGEST_STORED = 2 * 2**20
"""Bytes: a stored picture is a PNG of some tens of kilobytes, in base64, with its caption."""
_URI_PREFIX = "data:image/png;base64,"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@functools.lru_cache(maxsize=REMEMBERED)
def _remembered(kind: str, text: str) -> Picture:
    folder = _store_folder()
    if folder is None:
        return _DRAWERS[kind](json.loads(text))
    return _stored(folder, kind, text)


def _store_folder() -> Path | None:
    """``pictures`` in the training cache's folder (:mod:`grader.training_cache`), written and
    read only by checking processes, never seen by a sandbox; None without a cache."""
    from grader.training_cache import TrainingCache

    cache = TrainingCache.from_environment()
    return cache.folder / "pictures" if cache is not None else None


@functools.cache
def _drawing_digest() -> str:
    """What a picture's bytes depend on besides its data: this module's code, Matplotlib's
    version and the resolution."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(f"\0{matplotlib.__version__}\0{DPI}".encode())
    return digest.hexdigest()


def _stored(folder: Path, kind: str, text: str) -> Picture:
    """The picture of ``kind`` for the JSON ``text``, read from ``folder`` where another
    process drew it, else drawn and stored there (atomically: two processes that draw the same
    picture at once store the same bytes). An entry that is unreadable, oversized, malformed or
    stored for other data is drawn again and replaced."""
    from grader._fsutil import atomic_write_text, read_regular_file

    key = json.dumps([STORE_FORMAT, kind, text, _drawing_digest()])
    path = folder / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
    try:
        found = _picture_from(kind, key, json.loads(read_regular_file(path, LARGEST_STORED)))
    except (OSError, ValueError):  # UnicodeDecodeError and TooLarge among them
        found = None
    if found is not None:
        return found
    picture = _DRAWERS[kind](json.loads(text))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, "caption": picture.caption,
                                            "uri": picture.uri}))
    except OSError:
        pass  # a full disk or a read-only folder: the next process draws it again
    return picture


def _picture_from(kind: str, key: str, stored: Any) -> Picture | None:
    """A stored picture, checked: the key it was stored for, a caption, and a PNG."""
    if not isinstance(stored, dict) or set(stored) != {"key", "caption", "uri"} \
            or stored["key"] != key or not isinstance(stored["caption"], str) \
            or not isinstance(stored["uri"], str) or not stored["uri"].startswith(_URI_PREFIX):
        return None
    try:
        png = base64.b64decode(stored["uri"][len(_URI_PREFIX):], validate=True)
    except ValueError:  # binascii.Error: not base64
        return None
    if not png.startswith(_PNG_SIGNATURE):
        return None
    return Picture(kind, stored["caption"], stored["uri"])


def score_histogram(labels: Sequence[str], counts: Sequence[int]) -> Picture:
    """Number of submissions per score band (labels such as ``"90–100%"``)."""
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(8, 3.4), dpi=DPI, layout="constrained")
        ax = fig.subplots()
        bars = ax.bar(range(len(counts)), counts, color=_BLUE)
        ax.bar_label(bars, labels=[str(c) if c else "" for c in counts])
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_xlabel("score (share of the points available)")
        ax.set_ylabel("submissions")
        ax.set_ylim(0, max([*counts, 1]) * 1.15)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("Score distribution")
        uri = _to_uri(fig)
    return Picture("score_histogram", "Submissions per score band.", uri)


def pass_rates(rates: Sequence[tuple[str, float]]) -> Picture:
    """Horizontal bars: the share of submissions passing each test, in the order given."""
    height = 1.2 + 0.32 * max(len(rates), 1)
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(9, height), dpi=DPI, layout="constrained")
        ax = fig.subplots()
        names = [name for name, _ in rates]
        values = [100 * rate for _, rate in rates]
        colors = [_RED if v < 50 else _ORANGE if v < 80 else _GREEN for v in values]
        bars = ax.barh(range(len(rates)), values, color=colors)
        ax.bar_label(bars, labels=[f"{v:.0f}%" for v in values], padding=2, fontsize=8)
        ax.set_yticks(range(len(rates)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 110)
        ax.set_xlabel("submissions passing (%)")
        ax.set_title("Pass rate per test, most failed first")
        uri = _to_uri(fig)
    return Picture("pass_rates", "Share of submissions passing each test.", uri)
