"""Public checks for the backprop assignment: quick sanity checks a student runs before
submitting. Passing them does not guarantee full marks; the hidden tests check more."""

import numpy as np

PARAMS = {"w1": 0.15, "w2": 0.20, "w3": 0.25, "w4": 0.30, "w5": 0.40, "w6": 0.45,
          "w7": 0.50, "w8": 0.55, "b1": 0.35, "b2": 0.60}
X = np.array([0.05, 0.10])
TARGET = np.array([0.01, 0.99])


def test_sigmoid__at_zero(submission):
    value = submission.call("sigmoid", 0.0)
    assert abs(float(value) - 0.5) < 1e-9, f"sigmoid(0): expected 0.5, found {value}"


def test_forward__worked_example(submission):
    out = submission.call("forward", PARAMS, X)
    assert isinstance(out, dict) and "out_o" in out, (
        "forward(): expected a dict with keys net_h, out_h, net_o, out_o")
    assert np.allclose(out["out_o"], [0.75136507, 0.772928465], atol=1e-6), (
        f"forward(): out_o expected [0.75136507, 0.772928465], found {out['out_o']}")


def test_total_error__worked_example(submission):
    err = submission.call("total_error", np.array([0.75136507, 0.772928465]), TARGET)
    assert abs(float(err) - 0.298371109) < 1e-6, f"total_error(): expected 0.298371109, found {err}"


def test_backward__dw5(submission):
    grads = submission.call("backward", PARAMS, X, TARGET)
    assert isinstance(grads, dict) and "w5" in grads, "backward(): expected a dict with w1..b2"
    assert abs(float(grads["w5"]) - 0.082167041) < 1e-6, (
        f"backward(): dE/dw5 expected 0.082167041, found {grads['w5']}")


def test_update__returns_new_dict(submission):
    grads = {k: 1.0 for k in PARAMS}
    new, (params_after, _, _) = submission.call_and_return_args("update", PARAMS, grads, 0.5)
    assert params_after == PARAMS, "update(): the params passed in were changed"
    assert abs(float(new["w1"]) - (0.15 - 0.5)) < 1e-9, "update(): w1 should be w1 - lr * grad"


def test_train_step__worked_example(submission):
    new, error = submission.call("train_step", PARAMS, X, TARGET, 0.5)
    assert abs(float(error) - 0.298371109) < 1e-6, (
        f"train_step(): error before the step expected 0.298371109, found {error}")
    assert abs(float(new["w5"]) - 0.35891648) < 1e-6, (
        f"train_step(): new w5 expected 0.35891648, found {new['w5']}")
