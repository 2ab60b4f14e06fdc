"""Public checks for the losses_optimizers assignment: one per requirement the notebook states,
on the notebook's worked numbers. Passing them does not guarantee full marks; the hidden tests
compare every function with Keras on random inputs."""

import math

import numpy as np

LOGITS = np.array([[2.0, 1.0, 0.1]])
Y_TRUE = np.array([[1.0, 0.0, 0.0]])
PROBABILITIES = [[0.659001, 0.242433, 0.098566]]
PARAM = np.array([1.0, -2.0])
GRAD = np.array([0.5, -1.0])


def _is_float(value):
    return isinstance(value, (float, np.floating)) or (
        isinstance(value, np.ndarray) and value.shape == ())


def _shape(value):
    return getattr(value, "shape", type(value).__name__)


def test_softmax__worked_example(submission):
    got = submission.call("softmax", LOGITS)
    assert isinstance(got, np.ndarray) and got.shape == (1, 3), (
        f"softmax(): expected an array of shape (1, 3), found {_shape(got)}")
    assert np.allclose(got, PROBABILITIES, atol=1e-6), (
        f"softmax([[2, 1, 0.1]]): expected {PROBABILITIES}, found {np.round(got, 6).tolist()}")


def test_softmax__rows_sum_to_one(submission):
    got = submission.call("softmax", np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    assert np.allclose(np.sum(got, axis=-1), 1.0), (
        f"softmax(): expected each row to sum to 1, found row sums {np.sum(got, axis=-1)} — "
        "normalise along the last axis (axis=-1, keepdims=True)")


def test_softmax__vector_stays_a_vector(submission):
    got = submission.call("softmax", np.array([1.0, 2.0]))
    assert isinstance(got, np.ndarray) and got.shape == (2,), (
        f"softmax(a vector of 2): expected shape (2,), found {_shape(got)}")


def test_softmax__logits_of_1000(submission):
    got = submission.call("softmax", np.array([[1000.0, -1000.0, 0.0]]))
    assert np.allclose(got, [[1.0, 0.0, 0.0]]) and not submission.last_warnings, (
        f"softmax([[1000, -1000, 0]]): expected [[1, 0, 0]] without a warning, found {got} "
        f"{submission.last_warnings} — subtract each row's maximum before np.exp")


def test_softmax__logits_not_changed(submission):
    _, (after,) = submission.call_and_return_args("softmax", LOGITS)
    assert np.array_equal(after, LOGITS), "softmax(): the logits passed in were changed"


def test_cross_entropy__worked_example(submission):
    got = submission.call("cross_entropy", Y_TRUE, np.array(PROBABILITIES))
    assert _is_float(got) and abs(float(got) - 0.417030) < 1e-5, (
        f"cross_entropy(): expected the float 0.417030, found {got!r}")


def test_cross_entropy__mean_over_the_batch(submission):
    got = submission.call("cross_entropy", np.array([[1.0, 0.0], [0.0, 1.0]]),
                          np.array([[0.5, 0.5], [0.2, 0.8]]))
    want = (-math.log(0.5) - math.log(0.8)) / 2
    assert abs(float(got) - want) < 1e-9, (
        f"cross_entropy() of two examples: expected {want:.6f} (the mean of their losses), "
        f"found {got}")


def test_cross_entropy__probability_of_zero_clipped(submission):
    y_pred = np.array([[1.0, 0.0, 0.0]])
    got, (_, pred_after) = submission.call_and_return_args(
        "cross_entropy", np.array([[0.0, 1.0, 0.0]]), y_pred)
    assert abs(float(got) - 16.118096) < 1e-5, (
        f"cross_entropy() with a probability of 0: expected -log(1e-7) = 16.118096, found {got}"
        " — np.clip(y_pred, 1e-7, 1 - 1e-7) before the log")
    assert np.array_equal(pred_after, y_pred), "cross_entropy(): the y_pred passed in was changed"


def test_cross_entropy_from_logits__worked_example(submission):
    got = submission.call("cross_entropy_from_logits", Y_TRUE, LOGITS)
    assert _is_float(got) and abs(float(got) - 0.417030) < 1e-5, (
        f"cross_entropy_from_logits(): expected the float 0.417030, found {got!r}")


def test_cross_entropy_from_logits__logits_of_1000(submission):
    got = submission.call("cross_entropy_from_logits", np.array([[0.0, 1.0, 0.0]]),
                          np.array([[1000.0, -1000.0, 0.0]]))
    assert abs(float(got) - 2000.0) < 1e-6 and not submission.last_warnings, (
        f"cross_entropy_from_logits() on logits of ±1000: expected 2000.0 without a warning, "
        f"found {got} {submission.last_warnings} — use logits - max - log(sum(exp(logits - max)))")


def test_mse__worked_example(submission):
    got = submission.call("mse", np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]))
    assert _is_float(got) and abs(float(got) - 0.25) < 1e-12, (
        f"mse(): expected the float 0.25, found {got!r}")


def test_cross_entropy_from_logits_grad__worked_example(submission):
    got = submission.call("cross_entropy_from_logits_grad", Y_TRUE, LOGITS)
    want = [[-0.340999, 0.242433, 0.098566]]
    assert isinstance(got, np.ndarray) and got.shape == (1, 3) and np.allclose(got, want,
                                                                                atol=1e-6), (
        f"cross_entropy_from_logits_grad(): expected {want}, found {got}")


def test_cross_entropy_from_logits_grad__divided_by_the_batch(submission):
    labels, logits = np.eye(3)[[0, 2]], np.array([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0]])
    got = submission.call("cross_entropy_from_logits_grad", labels, logits)
    want = [[-0.1705, 0.121217, 0.049283], [0.166667, 0.166667, -0.333333]]
    assert np.allclose(got, want, atol=1e-6), (
        f"cross_entropy_from_logits_grad() on 2 examples: expected {want}, found "
        f"{np.round(got, 6).tolist()} — (softmax(logits) - y_true) / batch_size")


def test_cross_entropy_from_logits_grad__logits_of_1000(submission):
    got = submission.call("cross_entropy_from_logits_grad", np.array([[0.0, 1.0, 0.0]]),
                          np.array([[1000.0, -1000.0, 0.0]]))
    assert np.allclose(got, [[1.0, -1.0, 0.0]]) and not submission.last_warnings, (
        f"cross_entropy_from_logits_grad() on logits of ±1000: expected [[1, -1, 0]] without a "
        f"warning, found {got} {submission.last_warnings}")


def test_mse_grad__worked_example(submission):
    got = submission.call("mse_grad", np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]))
    assert np.allclose(got, [[-0.5, 0.5]]), f"mse_grad(): expected [[-0.5, 0.5]], found {got}"


def test_sgd_step__worked_example(submission):
    got, (param_after, _, _) = submission.call_and_return_args("sgd_step", PARAM, GRAD, 0.1)
    assert np.allclose(got, [0.95, -1.9]), f"sgd_step(): expected [0.95, -1.9], found {got}"
    assert np.array_equal(param_after, PARAM), "sgd_step(): the param passed in was changed"


def test_momentum_step__worked_example(submission):
    velocity = np.array([-0.1, 0.2])
    got, (_, _, velocity_after, _) = submission.call_and_return_args(
        "momentum_step", PARAM, GRAD, velocity, 0.1)
    assert isinstance(got, (tuple, list)) and len(got) == 2, (
        f"momentum_step(): expected (new_param, new_velocity), found {type(got).__name__}")
    assert np.allclose(got[1], [-0.14, 0.28]) and np.allclose(got[0], [0.86, -1.72]), (
        f"momentum_step(): expected ([0.86, -1.72], [-0.14, 0.28]), found {got} — "
        "velocity = momentum * velocity - lr * grad; param + velocity")
    assert np.array_equal(velocity_after, velocity), (
        "momentum_step(): the velocity passed in was changed")


def test_adam_step__two_steps(submission):
    zeros = np.zeros(2)
    got, (_, _, m_after, v_after, _, _) = submission.call_and_return_args(
        "adam_step", PARAM, GRAD, zeros, zeros, 1, 0.1)
    assert isinstance(got, (tuple, list)) and len(got) == 3, (
        f"adam_step(): expected (new_param, new_m, new_v), found {type(got).__name__}")
    assert np.allclose(got[1], [0.05, -0.1]) and np.allclose(got[2], [0.00025, 0.001]), (
        f"adam_step() at t=1: expected m [0.05, -0.1] and v [0.00025, 0.001], found {got[1]} "
        f"and {got[2]}")
    assert np.allclose(got[0], [0.9, -1.9], atol=1e-6), (
        f"adam_step() at t=1: expected [0.9, -1.9], found {got[0]} — check the bias correction")
    assert np.array_equal(m_after, zeros) and np.array_equal(v_after, zeros), (
        "adam_step(): the m or v passed in was changed")
    second = submission.call("adam_step", got[0], GRAD, got[1], got[2], 2, 0.1)
    assert np.allclose(second[0], [0.8, -1.8], atol=1e-6), (
        f"adam_step() at t=2: expected [0.8, -1.8], found {second[0]}")


def test_adam_step__betas_by_keyword(submission):
    got = submission.call("adam_step", PARAM, GRAD, np.zeros(2), np.zeros(2), 1, 0.1,
                          beta1=0.5, beta2=0.9)
    assert np.allclose(got[1], [0.25, -0.5]) and np.allclose(got[0], [0.9, -1.9], atol=1e-6), (
        f"adam_step(beta1=0.5, beta2=0.9): expected m [0.25, -0.5] and param [0.9, -1.9], found "
        f"{got[1]} and {got[0]} — use the beta1, beta2 passed in")
