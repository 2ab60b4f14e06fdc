"""Hidden tests: losses, their gradients and optimiser steps written in NumPy.

Every expected value comes from Keras (``keras.ops``, ``keras.losses``, ``keras.optimizers``)
or TensorFlow's own gradients, computed here in the checking process on fresh random cases;
the student's code runs in the sandbox, where Keras and TensorFlow cannot be imported.
"""

from __future__ import annotations

import math
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

EPSILON = 1e-7
TOL = 1e-9
#: The training run: full-batch softmax regression on the first TRAIN_IMAGES MNIST images.
TRAIN_IMAGES = 500
TRAIN_STEPS = 30
TRAIN_LR = 0.01
#: How far the student's final loss may be from Keras' (see docs/course.md for the choice).
TRAIN_TOLERANCE = 1e-3
STABLE_SOFTMAX = ("subtract each row's maximum before np.exp, so that no exponent is positive "
                  "(np.exp(1000) overflows to inf, and inf / inf is nan)")


# -- cases and the Keras side ---------------------------------------------------------------
def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _logits(seed: int, shape: tuple[int, ...] = (6, 5), scale: float = 3.0) -> np.ndarray:
    return _rng(seed).normal(0.0, scale, size=shape)


def _one_hot(seed: int, batch: int = 6, classes: int = 5) -> np.ndarray:
    return np.eye(classes)[_rng(seed).integers(0, classes, size=batch)]


def _numpy(tensor) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(tensor), dtype=np.float64)


def _keras_softmax(logits: np.ndarray) -> np.ndarray:
    return _numpy(keras.ops.softmax(tf.constant(logits, dtype=tf.float64), axis=-1))


def _keras_cross_entropy(y_true: np.ndarray, y_pred: np.ndarray, from_logits: bool) -> float:
    per_example = keras.losses.categorical_crossentropy(
        tf.constant(y_true, dtype=tf.float64), tf.constant(y_pred, dtype=tf.float64),
        from_logits=from_logits)
    return float(np.mean(_numpy(per_example)))


def _keras_mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    per_example = keras.losses.mean_squared_error(tf.constant(y_true, dtype=tf.float64),
                                                  tf.constant(y_pred, dtype=tf.float64))
    return float(np.mean(_numpy(per_example)))


def _tf_gradient(loss, y_true: np.ndarray, wrt: np.ndarray) -> np.ndarray:
    """d mean-loss / d ``wrt``, by TensorFlow's automatic differentiation."""
    variable = tf.Variable(wrt, dtype=tf.float64)
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(loss(tf.constant(y_true, dtype=tf.float64), variable))
    return _numpy(tape.gradient(value, variable))


def _keras_steps(optimizer: keras.optimizers.Optimizer, param: np.ndarray,
                 grads: list[np.ndarray]) -> list[np.ndarray]:
    """The parameter after each of Keras' optimiser steps on ``grads``, in float64."""
    variable = keras.Variable(param, dtype="float64")
    after = []
    for grad in grads:
        optimizer.apply_gradients([(tf.constant(grad, dtype=tf.float64), variable)])
        after.append(_numpy(variable))
    return after


# -- what came back -------------------------------------------------------------------------
def _as_float(value, what: str) -> float:
    assert isinstance(value, (int, float, np.floating, np.integer)) or (
        isinstance(value, np.ndarray) and value.shape == ()
    ), (f"{what}: expected a single number (float), found {type(value).__name__} "
        f"{getattr(value, 'shape', '')} — average over the batch to one number, e.g. "
        "float(np.mean(per_example))")
    return float(value)


def _as_array(value, shape: tuple[int, ...], what: str, hint: str = "") -> np.ndarray:
    assert isinstance(value, np.ndarray), (
        f"{what}: expected a NumPy array of shape {shape}, found {type(value).__name__}")
    assert value.shape == shape, (
        f"{what}: expected shape {shape}, found {value.shape} — keep the input's shape")
    assert np.all(np.isfinite(value)), (
        f"{what}: expected finite numbers, found nan or inf at "
        f"{np.argwhere(~np.isfinite(value))[0].tolist()}" + (f" — {hint}" if hint else ""))
    return value.astype(np.float64)


def _as_tuple(value, size: int, what: str, names: str) -> tuple:
    assert isinstance(value, (tuple, list)) and len(value) == size, (
        f"{what}: expected a tuple ({names}), found {type(value).__name__}"
        + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else ""))
    return tuple(value)


def _round(array: np.ndarray) -> list:
    return np.round(np.asarray(array, dtype=np.float64), 6).tolist()


def _no_warnings(submission, what: str, hint: str) -> None:
    assert not submission.last_warnings, (
        f"{what}: expected no warning, found {submission.last_warnings[0]} — {hint}")


# -- softmax --------------------------------------------------------------------------------
def test_softmax_values(submission):
    for seed in range(3):
        logits = _logits(100 + seed)
        got = _as_array(submission.call("softmax", logits), logits.shape, "softmax(logits)")
        want = _keras_softmax(logits)
        assert np.allclose(got, want, atol=TOL), (
            f"softmax() on a random batch of shape {logits.shape}: row 0 expected "
            f"{_round(want[0])}, found {_round(got[0])} — exponentiate, then divide each row by "
            "its own sum (axis=-1, keepdims=True)")


def test_softmax_shapes(submission):
    vector = _logits(110, shape=(7,))
    got = _as_array(submission.call("softmax", vector), (7,), "softmax(a vector of 7 logits)")
    assert math.isclose(float(got.sum()), 1.0, abs_tol=1e-9), (
        f"softmax(a vector of 7 logits): expected values summing to 1, found a sum of "
        f"{got.sum():.6f} — normalise along the last axis")
    batch = _logits(111, shape=(4, 9))
    got = _as_array(submission.call("softmax", batch), (4, 9), "softmax(a batch of shape (4, 9))")
    sums = got.sum(axis=-1)
    assert np.allclose(sums, 1.0, atol=1e-9), (
        f"softmax(a batch of shape (4, 9)): expected every row to sum to 1, found row sums "
        f"{_round(sums)} — normalise each row (axis=-1), not each column or the whole array")


def test_softmax_extremes(submission):
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, 0.0]])
    got = submission.call("softmax", logits)
    want = _keras_softmax(logits)
    got = _as_array(got, logits.shape, "softmax() on logits of ±1000", STABLE_SOFTMAX)
    assert np.allclose(got, want, atol=TOL), (
        f"softmax() on logits of ±1000: expected {_round(want)}, found {_round(got)}")
    _no_warnings(submission, "softmax() on logits of ±1000", STABLE_SOFTMAX)


def test_softmax_no_mutation(submission):
    logits = _logits(120)
    before = logits.copy()
    result, (logits_after,) = submission.call_and_return_args("softmax", logits)
    _as_array(result, logits.shape, "softmax(logits)")
    assert np.array_equal(logits_after, before), (
        "softmax(): the logits passed in were changed; expected them untouched — write "
        "shifted = logits - logits.max(...) instead of logits -= ... or np.exp(logits, out=logits)")


# -- cross_entropy --------------------------------------------------------------------------
def _probabilities(seed: int, batch: int = 6, classes: int = 5) -> np.ndarray:
    return _keras_softmax(_logits(seed, (batch, classes)))


def test_cross_entropy_values(submission):
    for seed in range(3):
        y_true, y_pred = _one_hot(200 + seed), _probabilities(210 + seed)
        got = _as_float(submission.call("cross_entropy", y_true, y_pred), "cross_entropy()")
        want = _keras_cross_entropy(y_true, y_pred, from_logits=False)
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=TOL), (
            f"cross_entropy() on a random batch of {len(y_true)}: expected {want:.9f}, found "
            f"{got:.9f} — sum -y_true * log(y_pred) over the classes, then average over the "
            "examples")


def test_cross_entropy_clipped(submission):
    y_true = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    y_pred = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    got = submission.call("cross_entropy", y_true, y_pred)
    want = _keras_cross_entropy(y_true, y_pred, from_logits=False)
    got = _as_float(got, "cross_entropy() with probabilities of exactly 0 and 1")
    assert math.isfinite(got) and math.isclose(got, want, rel_tol=1e-6), (
        f"cross_entropy() with probabilities of exactly 0 and 1: expected {want:.9f} (as "
        f"Keras, which clips to [1e-7, 1 - 1e-7]), found {got} — np.clip(y_pred, 1e-7, "
        "1 - 1e-7) before the log; log(0) is -inf")
    _no_warnings(submission, "cross_entropy() with a probability of 0",
                 "clip the probabilities before np.log")


def test_cross_entropy_no_mutation(submission):
    y_true = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    y_pred = np.array([[1.0, 0.0, 0.0], [0.7, 0.2, 0.1]])
    before = (y_true.copy(), y_pred.copy())
    result, (true_after, pred_after) = submission.call_and_return_args(
        "cross_entropy", y_true, y_pred)
    _as_float(result, "cross_entropy()")
    assert np.array_equal(pred_after, before[1]), (
        "cross_entropy(): the y_pred passed in was changed; expected it untouched — "
        "clipped = np.clip(y_pred, ...) makes a new array, np.clip(..., out=y_pred) does not")
    assert np.array_equal(true_after, before[0]), (
        "cross_entropy(): the y_true passed in was changed; leave it as is")


# -- cross_entropy_from_logits --------------------------------------------------------------
def test_cross_entropy_from_logits_values(submission):
    for seed in range(3):
        y_true, logits = _one_hot(300 + seed), _logits(310 + seed)
        got = _as_float(submission.call("cross_entropy_from_logits", y_true, logits),
                        "cross_entropy_from_logits()")
        want = _keras_cross_entropy(y_true, logits, from_logits=True)
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=TOL), (
            f"cross_entropy_from_logits() on a random batch of {len(y_true)}: expected "
            f"{want:.9f}, found {got:.9f} — the loss is the mean over examples of "
            "-sum(y_true * log_softmax(logits)), with log_softmax = logits - logsumexp(logits)")


def test_cross_entropy_from_logits_extremes(submission):
    y_true = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    logits = np.array([[1000.0, -1000.0, 0.0], [1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 1000.0]])
    got = submission.call("cross_entropy_from_logits", y_true, logits)
    want = _keras_cross_entropy(y_true, logits, from_logits=True)
    got = _as_float(got, "cross_entropy_from_logits() on logits of ±1000")
    assert math.isfinite(got) and math.isclose(got, want, rel_tol=1e-9), (
        f"cross_entropy_from_logits() on logits of ±1000: expected {want:.6f}, found {got} — "
        "compute log-softmax directly, logits - max - log(sum(exp(logits - max))); "
        "log(softmax(logits)) takes the log of 0")
    _no_warnings(submission, "cross_entropy_from_logits() on logits of ±1000",
                 "subtract each row's maximum before np.exp and never take the log of a "
                 "probability")


# -- mse ------------------------------------------------------------------------------------
def test_mse_values(submission):
    for seed in range(3):
        rng = _rng(400 + seed)
        y_true, y_pred = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
        got = _as_float(submission.call("mse", y_true, y_pred), "mse()")
        want = _keras_mse(y_true, y_pred)
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=TOL), (
            f"mse() on a random batch of shape {y_true.shape}: expected {want:.9f}, found "
            f"{got:.9f} — the mean of (y_pred - y_true)**2 over every entry")


# -- the gradients --------------------------------------------------------------------------
def _ce_logits(y_true, logits):
    return keras.losses.categorical_crossentropy(y_true, logits, from_logits=True)


def test_cross_entropy_from_logits_grad_values(submission):
    for seed in range(3):
        y_true, logits = _one_hot(500 + seed, batch=5 + seed, classes=4), _logits(510 + seed, (5 + seed, 4))
        got = _as_array(submission.call("cross_entropy_from_logits_grad", y_true, logits),
                        logits.shape, "cross_entropy_from_logits_grad()")
        want = _tf_gradient(_ce_logits, y_true, logits)
        assert np.allclose(got, want, atol=1e-9), (
            f"cross_entropy_from_logits_grad() on a batch of {len(y_true)}: row 0 expected "
            f"{_round(want[0])}, found {_round(got[0])} — the gradient of the batch mean is "
            "(softmax(logits) - y_true) / batch_size")


def test_cross_entropy_from_logits_grad_extremes(submission):
    y_true = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]])
    got = submission.call("cross_entropy_from_logits_grad", y_true, logits)
    want = _tf_gradient(_ce_logits, y_true, logits)
    got = _as_array(got, logits.shape, "cross_entropy_from_logits_grad() on logits of ±1000",
                    f"use a stable softmax: {STABLE_SOFTMAX}")
    assert np.allclose(got, want, atol=1e-9), (
        f"cross_entropy_from_logits_grad() on logits of ±1000: expected {_round(want)}, found "
        f"{_round(got)}")
    _no_warnings(submission, "cross_entropy_from_logits_grad() on logits of ±1000",
                 "use your stable softmax (each row's maximum subtracted before np.exp)")


def test_mse_grad_values(submission):
    for seed, shape in enumerate([(6, 4), (3, 7), (8, 1)]):
        rng = _rng(600 + seed)
        y_true, y_pred = rng.normal(size=shape), rng.normal(size=shape)
        got = _as_array(submission.call("mse_grad", y_true, y_pred), shape, "mse_grad()")
        want = _tf_gradient(keras.losses.mean_squared_error, y_true, y_pred)
        assert np.allclose(got, want, atol=1e-12), (
            f"mse_grad() on a batch of shape {shape}: row 0 expected {_round(want[0])}, found "
            f"{_round(got[0])} — d mean((y_pred - y_true)**2) / d y_pred is "
            "2 * (y_pred - y_true) / y_pred.size")


# -- sgd_step -------------------------------------------------------------------------------
def _param_and_grads(seed: int, steps: int, shape: tuple[int, ...] = (4, 3)):
    rng = _rng(seed)
    return rng.normal(size=shape), [rng.normal(size=shape) for _ in range(steps)]


def test_sgd_step_values(submission):
    for seed, lr in ((700, 0.1), (701, 0.01)):
        param, (grad,) = _param_and_grads(seed, 1)
        (want,) = _keras_steps(keras.optimizers.SGD(learning_rate=lr), param, [grad])
        got = _as_array(submission.call("sgd_step", param, grad, lr), param.shape,
                        f"sgd_step(lr={lr})")
        assert np.allclose(got, want, atol=1e-12), (
            f"sgd_step(lr={lr}): row 0 expected {_round(want[0])}, found {_round(got[0])} — "
            "one step moves against the gradient: param - lr * grad")


def test_sgd_step_no_mutation(submission):
    param, (grad,) = _param_and_grads(710, 1)
    before = (param.copy(), grad.copy())
    result, (param_after, grad_after, _) = submission.call_and_return_args(
        "sgd_step", param, grad, 0.1)
    _as_array(result, param.shape, "sgd_step()")
    assert np.array_equal(param_after, before[0]), (
        "sgd_step(): the param passed in was changed; expected it untouched — return "
        "param - lr * grad instead of param -= lr * grad")
    assert np.array_equal(grad_after, before[1]), (
        "sgd_step(): the grad passed in was changed; leave it as is")


# -- momentum_step --------------------------------------------------------------------------
def test_momentum_step_values(submission):
    for seed, lr, momentum in ((800, 0.1, 0.9), (801, 0.05, 0.5)):
        param, grads = _param_and_grads(seed, 5)
        kwargs = {} if momentum == 0.9 else {"momentum": momentum}
        keras_params = _keras_steps(keras.optimizers.SGD(learning_rate=lr, momentum=momentum),
                                    param, grads)
        label = f"momentum_step(lr={lr}, momentum={momentum})"
        current, velocity, previous = param, np.zeros_like(param), param
        for step, (grad, want) in enumerate(zip(grads, keras_params, strict=True), start=1):
            result = _as_tuple(submission.call("momentum_step", current, grad, velocity, lr,
                                               **kwargs), 2, label, "new_param, new_velocity")
            current = _as_array(result[0], param.shape, f"{label}[0]")
            velocity = _as_array(result[1], param.shape, f"{label}[1]")
            assert np.allclose(current, want, atol=1e-10), (
                f"{label}, step {step} of 5 from a zero velocity: param row 0 expected "
                f"{_round(want[0])}, found {_round(current[0])} — velocity = momentum * velocity "
                "- lr * grad, then param + velocity (the velocity points downhill)")
            assert np.allclose(velocity, want - previous, atol=1e-10), (
                f"{label}, step {step} of 5: new_velocity row 0 expected "
                f"{_round((want - previous)[0])} (new_param - param), found {_round(velocity[0])}"
                " — return the velocity you added to the parameter")
            previous = want


def test_momentum_step_no_mutation(submission):
    param, (grad,) = _param_and_grads(810, 1)
    velocity = _rng(811).normal(size=param.shape)
    before = (param.copy(), grad.copy(), velocity.copy())
    result, (param_after, grad_after, velocity_after, _) = submission.call_and_return_args(
        "momentum_step", param, grad, velocity, 0.1)
    result = _as_tuple(result, 2, "momentum_step()", "new_param, new_velocity")
    _as_array(result[0], param.shape, "momentum_step()[0]")
    _as_array(result[1], param.shape, "momentum_step()[1]")
    changed = [name for name, after, was in (("param", param_after, before[0]),
                                             ("grad", grad_after, before[1]),
                                             ("velocity", velocity_after, before[2]))
               if not np.array_equal(after, was)]
    assert not changed, (
        f"momentum_step(): the {' and '.join(changed)} passed in changed; expected the inputs "
        "untouched — compute new arrays (new_velocity = momentum * velocity - lr * grad) and "
        "return them")


# -- adam_step ------------------------------------------------------------------------------
def test_adam_step_values(submission):
    cases = ((900, 0.01, {}), (901, 0.1, {"beta1": 0.8, "beta2": 0.99}))
    for seed, lr, betas in cases:
        beta1, beta2 = betas.get("beta1", 0.9), betas.get("beta2", 0.999)
        param, grads = _param_and_grads(seed, 5)
        optimizer = keras.optimizers.Adam(learning_rate=lr, beta_1=beta1, beta_2=beta2,
                                          epsilon=EPSILON)
        keras_params = _keras_steps(optimizer, param, grads)
        label = f"adam_step(lr={lr}, beta1={beta1}, beta2={beta2})"
        current, m, v = param, np.zeros_like(param), np.zeros_like(param)
        want_m, want_v = np.zeros_like(param), np.zeros_like(param)
        for t, (grad, want) in enumerate(zip(grads, keras_params, strict=True), start=1):
            result = _as_tuple(submission.call("adam_step", current, grad, m, v, t, lr, **betas),
                               3, label, "new_param, new_m, new_v")
            current = _as_array(result[0], param.shape, f"{label}[0]")
            m = _as_array(result[1], param.shape, f"{label}[1]")
            v = _as_array(result[2], param.shape, f"{label}[2]")
            want_m = beta1 * want_m + (1 - beta1) * grad
            want_v = beta2 * want_v + (1 - beta2) * grad**2
            assert np.allclose(m, want_m, atol=1e-12) and np.allclose(v, want_v, atol=1e-12), (
                f"{label}, step t={t}: the moments returned differ from m = beta1 * m + "
                "(1 - beta1) * grad and v = beta2 * v + (1 - beta2) * grad**2 (row 0 of m: "
                f"expected {_round(want_m[0])}, found {_round(m[0])}; of v: expected "
                f"{_round(want_v[0])}, found {_round(v[0])}) — return the moments before bias "
                "correction")
            # Keras adds epsilon to sqrt(v) before the bias correction, the paper after it;
            # the two differ by far less than this tolerance.
            assert np.allclose(current, want, rtol=0, atol=1e-4 * lr), (
                f"{label}, step t={t} of 5 from zero moments: param row 0 expected "
                f"{_round(want[0])}, found {_round(current[0])} — divide m by (1 - beta1**t) and "
                "v by (1 - beta2**t) before the step param - lr * m_hat / (sqrt(v_hat) + epsilon)")


def test_adam_step_no_mutation(submission):
    param, (grad,) = _param_and_grads(910, 1)
    rng = _rng(911)
    m, v = rng.normal(size=param.shape), rng.uniform(0.1, 1.0, size=param.shape)
    before = (param.copy(), grad.copy(), m.copy(), v.copy())
    result, (param_after, grad_after, m_after, v_after, _, _) = (
        submission.call_and_return_args("adam_step", param, grad, m, v, 3, 0.01))
    result = _as_tuple(result, 3, "adam_step()", "new_param, new_m, new_v")
    for index in range(3):
        _as_array(result[index], param.shape, f"adam_step()[{index}]")
    changed = [name for name, after, was in (("param", param_after, before[0]),
                                             ("grad", grad_after, before[1]),
                                             ("m", m_after, before[2]), ("v", v_after, before[3]))
               if not np.array_equal(after, was)]
    assert not changed, (
        f"adam_step(): the {' and '.join(changed)} passed in changed; expected the inputs "
        "untouched — compute new arrays (new_m = beta1 * m + (1 - beta1) * grad) instead of "
        "updating m, v or param in place (m *= ..., param -= ...)")


def _regression_data(mnist) -> tuple[np.ndarray, np.ndarray]:
    images = mnist.x_train[:TRAIN_IMAGES].reshape(TRAIN_IMAGES, -1).astype(np.float64) / 255.0
    return images, np.eye(10)[mnist.y_train[:TRAIN_IMAGES]]


def _initial_weights() -> tuple[np.ndarray, np.ndarray]:
    return _rng(1000).normal(0.0, 0.01, size=(784, 10)), np.zeros(10)


def _loss_and_grads(x, y, weights, bias):
    """The checker's own softmax regression: mean cross-entropy and its gradients."""
    logits = x @ weights + bias
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    delta = (np.exp(log_probs) - y) / len(x)
    return float(-np.mean(np.sum(y * log_probs, axis=1))), x.T @ delta, delta.sum(axis=0)


def _keras_training_losses(x, y) -> list[float]:
    weights, bias = _initial_weights()
    variables = [keras.Variable(weights, dtype="float64"), keras.Variable(bias, dtype="float64")]
    optimizer = keras.optimizers.Adam(learning_rate=TRAIN_LR, epsilon=EPSILON)
    x_t, y_t = tf.constant(x), tf.constant(y)

    def loss():
        logits = tf.matmul(x_t, variables[0]) + variables[1]
        return tf.reduce_mean(keras.losses.categorical_crossentropy(y_t, logits,
                                                                    from_logits=True))

    losses = []
    for _ in range(TRAIN_STEPS):
        with tf.GradientTape() as tape:
            value = loss()
        losses.append(float(value))
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables, strict=True))
    losses.append(float(loss()))
    return losses


def test_adam_step_training(submission, mnist, record_property):
    x, y = _regression_data(mnist)
    want = _keras_training_losses(x, y)
    weights, bias = _initial_weights()
    state = {"weights": (np.zeros_like(weights), np.zeros_like(weights)),
             "bias": (np.zeros_like(bias), np.zeros_like(bias))}
    losses = []
    for t in range(1, TRAIN_STEPS + 1):
        loss, grad_w, grad_b = _loss_and_grads(x, y, weights, bias)
        losses.append(loss)
        new = {}
        for name, param, grad in (("weights", weights, grad_w), ("bias", bias, grad_b)):
            m, v = state[name]
            result = _as_tuple(submission.call("adam_step", param, grad, m, v, t, TRAIN_LR), 3,
                               "adam_step()", "new_param, new_m, new_v")
            arrays = [_as_array(r, param.shape, f"adam_step() on the {name}") for r in result]
            new[name], state[name] = arrays[0], (arrays[1], arrays[2])
        weights, bias = new["weights"], new["bias"]
    losses.append(_loss_and_grads(x, y, weights, bias)[0])
    gap = losses[-1] - want[-1]
    assert abs(gap) <= TRAIN_TOLERANCE, (
        f"adam_step(): {TRAIN_STEPS} full-batch steps (lr={TRAIN_LR}) of softmax regression on "
        f"{TRAIN_IMAGES} MNIST images reach a loss of {losses[-1]:.4f}; keras.optimizers.Adam "
        f"reaches {want[-1]:.4f} (tolerance ±{TRAIN_TOLERANCE}) — check the bias correction, "
        "that t counts steps from 1, and the order of beta1 and beta2")
    record_property("note", f"final loss {losses[-1]:.4f}, Keras' Adam {want[-1]:.4f}")
