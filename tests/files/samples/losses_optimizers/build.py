"""Builds the losses_optimizers sample submissions from the course's own notebooks.

    .venv/bin/python tests/files/samples/losses_optimizers/build.py      # rewrite the samples

``reference.ipynb`` is the released notebook with every answer cell filled with the reference
solution; ``stub_untouched.ipynb`` is the release as is; every other sample is the reference
with one realistic mistake, named for it. ``MISTAKES`` also records which functions must lose
points (the function at fault, and the functions that call it by design) — the tests read it.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/files: the builders' shared helpers
from _nbbuild import Rewrite, reference, released, rewritten, with_stable_ids, write_all  # noqa: E402

ASSIGNMENT = "losses_optimizers"


Mistake = functools.partial(Rewrite, ASSIGNMENT)
"""A mistake in this assignment: ``Mistake(name, loses, replace, extra_cell="")``."""


MISTAKES = [
    Mistake(
        "softmax_without_max_subtraction",
        ("softmax", "cross_entropy_from_logits_grad"),
        {
            "softmax": """
def softmax(logits):
    exp = np.exp(np.asarray(logits, dtype=np.float64))
    return exp / np.sum(exp, axis=-1, keepdims=True)
"""
        },
    ),
    Mistake(
        "softmax_over_wrong_axis",
        ("softmax", "cross_entropy_from_logits_grad"),
        {
            "softmax": """
def softmax(logits):
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return exp / np.sum(exp, axis=0, keepdims=True)     # sums each column, not each row
"""
        },
    ),
    Mistake(
        "softmax_shifts_in_place",
        ("softmax",),
        {
            "softmax": """
def softmax(logits):
    logits = np.asarray(logits, dtype=np.float64)      # no copy: still the caller's array
    logits -= np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / np.sum(exp, axis=-1, keepdims=True)
"""
        },
    ),
    Mistake(
        "softmax_uses_keras_ops",
        ("softmax", "cross_entropy_from_logits_grad"),
        {
            "softmax": """
def softmax(logits):
    return np.asarray(ops.softmax(logits, axis=-1), dtype=np.float64)
"""
        },
        extra_cell="""
from keras import ops   # the library's softmax is surely right
""",
    ),
    Mistake(
        "cross_entropy_log_of_zero",
        ("cross_entropy",),
        {
            "cross_entropy": """
def cross_entropy(y_true, y_pred, epsilon=1e-7):
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return float(np.mean(-np.sum(y_true * np.log(y_pred), axis=-1)))
"""
        },
    ),
    Mistake(
        "cross_entropy_mean_over_classes",
        ("cross_entropy",),
        {
            "cross_entropy": """
def cross_entropy(y_true, y_pred, epsilon=1e-7):
    y_true = np.asarray(y_true, dtype=np.float64)
    probabilities = np.clip(np.asarray(y_pred, dtype=np.float64), epsilon, 1.0 - epsilon)
    return float(np.mean(-y_true * np.log(probabilities)))   # averages over the classes too
"""
        },
    ),
    Mistake(
        "cross_entropy_clips_in_place",
        ("cross_entropy",),
        {
            "cross_entropy": """
def cross_entropy(y_true, y_pred, epsilon=1e-7):
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    np.clip(y_pred, epsilon, 1.0 - epsilon, out=y_pred)    # changes the caller's array
    return float(np.mean(-np.sum(y_true * np.log(y_pred), axis=-1)))
"""
        },
    ),
    Mistake(
        "cross_entropy_from_logits_via_log_softmax",
        ("cross_entropy_from_logits",),
        {
            "cross_entropy_from_logits": """
def cross_entropy_from_logits(y_true, logits):
    y_true = np.asarray(y_true, dtype=np.float64)
    return float(np.mean(-np.sum(y_true * np.log(softmax(logits)), axis=-1)))
"""
        },
    ),
    Mistake(
        "mse_sums_over_classes",
        ("mse",),
        {
            "mse": """
def mse(y_true, y_pred):
    squared = (np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)) ** 2
    return float(np.mean(np.sum(squared, axis=-1)))
"""
        },
    ),
    Mistake(
        "cross_entropy_grad_not_divided_by_batch",
        ("cross_entropy_from_logits_grad",),
        {
            "cross_entropy_from_logits_grad": """
def cross_entropy_from_logits_grad(y_true, logits):
    return softmax(logits) - np.asarray(y_true, dtype=np.float64)
"""
        },
    ),
    Mistake(
        "mse_grad_without_factor_two",
        ("mse_grad",),
        {
            "mse_grad": """
def mse_grad(y_true, y_pred):
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return (y_pred - np.asarray(y_true, dtype=np.float64)) / y_pred.size
"""
        },
    ),
    Mistake(
        "sgd_step_adds_gradient",
        ("sgd_step",),
        {
            "sgd_step": """
def sgd_step(param, grad, lr):
    return np.asarray(param, dtype=np.float64) + lr * np.asarray(grad, dtype=np.float64)
"""
        },
    ),
    Mistake(
        "sgd_step_updates_in_place",
        ("sgd_step",),
        {
            "sgd_step": """
def sgd_step(param, grad, lr):
    param -= lr * grad
    return param
"""
        },
    ),
    Mistake(
        "momentum_wrong_sign",
        ("momentum_step",),
        {
            "momentum_step": """
def momentum_step(param, grad, velocity, lr, momentum=0.9):
    new_velocity = momentum * np.asarray(velocity, dtype=np.float64) + lr * np.asarray(grad)
    return np.asarray(param, dtype=np.float64) + new_velocity, new_velocity
"""
        },
    ),
    Mistake(
        "adam_without_bias_correction",
        ("adam_step",),
        {
            "adam_step": """
def adam_step(param, grad, m, v, t, lr=0.001, beta1=0.9, beta2=0.999, epsilon=1e-7):
    grad = np.asarray(grad, dtype=np.float64)
    new_m = beta1 * np.asarray(m, dtype=np.float64) + (1.0 - beta1) * grad
    new_v = beta2 * np.asarray(v, dtype=np.float64) + (1.0 - beta2) * grad**2
    new_param = np.asarray(param, dtype=np.float64) - lr * new_m / (np.sqrt(new_v) + epsilon)
    return new_param, new_m, new_v
"""
        },
    ),
    Mistake(
        "adam_updates_moments_in_place",
        ("adam_step",),
        {
            "adam_step": """
def adam_step(param, grad, m, v, t, lr=0.001, beta1=0.9, beta2=0.999, epsilon=1e-7):
    m *= beta1
    m += (1.0 - beta1) * grad
    v *= beta2
    v += (1.0 - beta2) * grad**2
    m_hat = m / (1.0 - beta1**t)
    v_hat = v / (1.0 - beta2**t)
    return param - lr * m_hat / (np.sqrt(v_hat) + epsilon), m, v
"""
        },
    ),
]

def with_mistake(mistake: Rewrite) -> nbformat.NotebookNode:
    """The reference with the answer cells named in ``mistake.replace`` swapped."""
    return rewritten(reference(ASSIGNMENT), mistake)


def build_all() -> dict[Path, str]:
    """Every sample's path and text."""
    notebooks = {HERE / "stub_untouched.ipynb": released(ASSIGNMENT),
                 HERE / "reference.ipynb": reference(ASSIGNMENT)}
    notebooks.update({HERE / f"{m.name}.ipynb": with_mistake(m) for m in MISTAKES})
    return {path: with_stable_ids(nb) for path, nb in notebooks.items()}


if __name__ == "__main__":
    write_all(build_all(), "samples")
