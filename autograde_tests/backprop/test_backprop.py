"""Hidden tests: manual backpropagation on the 2-2-2 sigmoid network.

Every expected value is computed here, by the checking process, from the network's
definition: the worked example's numbers are checked, and so are random networks, against a
forward pass of our own, central finite differences of it and the exact chain-rule gradient
(never the student's code).

Chain rule, not finite differences: a finite-difference estimate of a gradient is off by its
truncation and rounding error, at best about 1e-13 here (a five-point stencil at its best
step), while the chain rule in float64 is exact to about 1e-17. ``backward`` must match the
exact gradient to CHAIN_RULE_TOL = 1e-15 on the worked example and ten random networks: a
deterministic, timing-free test that no finite-difference scheme passes and every chain-rule
implementation does (``bench`` and docs/course.md record the measured margins).
"""

from __future__ import annotations

import math

import numpy as np

KEYS = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "b1", "b2"]
EXAMPLE_PARAMS = {"w1": 0.15, "w2": 0.20, "w3": 0.25, "w4": 0.30, "w5": 0.40, "w6": 0.45,
                  "w7": 0.50, "w8": 0.55, "b1": 0.35, "b2": 0.60}
EXAMPLE_X = np.array([0.05, 0.10])
EXAMPLE_TARGET = np.array([0.01, 0.99])
TOL = 1e-6
CHAIN_RULE_TOL = 1e-15


# -- the checker's own network ------------------------------------------------------------
def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


def _forward(p, x):
    net_h = np.array([p["w1"] * x[0] + p["w2"] * x[1] + p["b1"],
                      p["w3"] * x[0] + p["w4"] * x[1] + p["b1"]])
    out_h = _sigmoid(net_h)
    net_o = np.array([p["w5"] * out_h[0] + p["w6"] * out_h[1] + p["b2"],
                      p["w7"] * out_h[0] + p["w8"] * out_h[1] + p["b2"]])
    return {"net_h": net_h, "out_h": out_h, "net_o": net_o, "out_o": _sigmoid(net_o)}


def _error(p, x, target):
    return float(np.sum(0.5 * (target - _forward(p, x)["out_o"]) ** 2))


def _numeric_gradient(p, x, target, eps=1e-6):
    grads = {}
    for key in KEYS:
        up, down = dict(p), dict(p)
        up[key] += eps
        down[key] -= eps
        grads[key] = (_error(up, x, target) - _error(down, x, target)) / (2 * eps)
    return grads


def _exact_gradient(p, x, target):
    """dE_total/dparam by the chain rule, in float64: exact to about 1e-17."""
    values = _forward(p, x)
    h, o = values["out_h"], values["out_o"]
    delta_o = (o - target) * o * (1.0 - o)
    delta_h = np.array([delta_o[0] * p["w5"] + delta_o[1] * p["w7"],
                        delta_o[0] * p["w6"] + delta_o[1] * p["w8"]]) * h * (1.0 - h)
    return {"w1": delta_h[0] * x[0], "w2": delta_h[0] * x[1], "w3": delta_h[1] * x[0],
            "w4": delta_h[1] * x[1], "w5": delta_o[0] * h[0], "w6": delta_o[0] * h[1],
            "w7": delta_o[1] * h[0], "w8": delta_o[1] * h[1], "b1": delta_h[0] + delta_h[1],
            "b2": delta_o[0] + delta_o[1]}


def _random_case(seed):
    rng = np.random.default_rng(seed)
    params = {k: float(v) for k, v in zip(KEYS, rng.uniform(-1.0, 1.0, size=10), strict=True)}
    return params, rng.uniform(0, 1, size=2), rng.uniform(0.05, 0.95, size=2)


def _as_float(value, what):
    assert isinstance(value, (int, float, np.floating, np.integer)) or (
        isinstance(value, np.ndarray) and value.shape == ()
    ), f"{what}: expected a number (float), found {type(value).__name__}"
    return float(value)


def _check_dict_of_numbers(value, keys, what):
    assert isinstance(value, dict), f"{what}: expected a dict, found {type(value).__name__}"
    missing = [k for k in keys if k not in value]
    assert not missing, (f"{what}: expected the keys {', '.join(keys)}; missing "
                         f"{', '.join(missing)}")
    return {k: _as_float(value[k], f"{what}[{k!r}]") for k in keys}


def _worst(got, expected):
    key = max(expected, key=lambda k: abs(got[k] - expected[k]))
    return key, got[key], expected[key]


# -- sigmoid --------------------------------------------------------------------------------
def test_sigmoid_values(submission):
    z = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    got = submission.call("sigmoid", z)
    assert isinstance(got, np.ndarray) and got.shape == z.shape, (
        f"sigmoid(array of shape {z.shape}): expected an array of the same shape, found "
        f"{type(got).__name__} {getattr(got, 'shape', '')} — apply the function elementwise "
        "with np.exp, not math.exp"
    )
    assert np.allclose(got, _sigmoid(z), atol=TOL), (
        f"sigmoid({z.tolist()}): expected {np.round(_sigmoid(z), 6).tolist()}, found "
        f"{np.round(got, 6).tolist()} — the logistic function is 1 / (1 + exp(-z))"
    )
    scalar = _as_float(submission.call("sigmoid", 0.5), "sigmoid(0.5)")
    assert math.isclose(scalar, float(_sigmoid(0.5)), abs_tol=TOL), (
        f"sigmoid(0.5): expected {float(_sigmoid(0.5)):.6f}, found {scalar:.6f}"
    )


def test_sigmoid_extremes(submission):
    z = np.array([-1000.0, 1000.0])
    got = submission.call("sigmoid", z)
    assert isinstance(got, np.ndarray) and np.all(np.isfinite(got)), (
        f"sigmoid([-1000, 1000]): expected finite values [0, 1], found {got!r}"
    )
    assert np.allclose(got, [0.0, 1.0], atol=1e-12), (
        f"sigmoid([-1000, 1000]): expected [0.0, 1.0], found {got.tolist()} — for large |z|, "
        "compute exp of a non-positive number only (e.g. 0.5 * (1 + tanh(z / 2)))"
    )
    assert not submission.last_warnings, (
        f"sigmoid([-1000, 1000]): expected no warning, found {submission.last_warnings[0]} — "
        "np.exp(1000) overflows; use np.exp only on -|z|, or 0.5 * (1 + np.tanh(z / 2))"
    )


# -- forward --------------------------------------------------------------------------------
def _check_forward(submission, params, x):
    got = submission.call("forward", params, x)
    assert isinstance(got, dict), f"forward(): expected a dict, found {type(got).__name__}"
    expected = _forward(params, x)
    for key, want in expected.items():
        assert key in got, f"forward(): the returned dict has no {key!r}; expected keys " \
                           f"{', '.join(expected)}"
        value = got[key]
        assert isinstance(value, np.ndarray) and value.shape == (2,), (
            f"forward()[{key!r}]: expected a float64 array of shape (2,), found "
            f"{type(value).__name__} {getattr(value, 'shape', '')}"
        )
        assert value.dtype == np.float64, (
            f"forward()[{key!r}]: expected dtype float64, found {value.dtype}"
        )
        assert np.allclose(value, want, atol=TOL), (
            f"forward()[{key!r}]: expected {np.round(want, 6).tolist()}, found "
            f"{np.round(value, 6).tolist()} — net_h uses w1..w4 and b1, net_o uses w5..w8 and b2 "
            "applied to out_h"
        )


def test_forward_worked_example(submission):
    _check_forward(submission, EXAMPLE_PARAMS, EXAMPLE_X)


def test_forward_random_networks(submission):
    for seed in range(5):
        params, x, _ = _random_case(100 + seed)
        _check_forward(submission, params, x)


# -- total_error ----------------------------------------------------------------------------
def test_total_error_values(submission):
    out = _forward(EXAMPLE_PARAMS, EXAMPLE_X)["out_o"]
    cases = [(out, EXAMPLE_TARGET)]
    rng = np.random.default_rng(7)
    cases += [(rng.uniform(0, 1, 2), rng.uniform(0, 1, 2)) for _ in range(3)]
    for out_o, target in cases:
        expected = float(np.sum(0.5 * (target - out_o) ** 2))
        got = _as_float(submission.call("total_error", out_o, target), "total_error()")
        assert math.isclose(got, expected, abs_tol=TOL), (
            f"total_error({np.round(out_o, 4).tolist()}, {np.round(target, 4).tolist()}): "
            f"expected {expected:.9f}, found {got:.9f} — E_total = sum(0.5 * (target - out)**2)"
        )


# -- backward -------------------------------------------------------------------------------
def _check_backward(submission, params, x, target, label):
    got = _check_dict_of_numbers(submission.call("backward", params, x, target), KEYS,
                                 "backward()")
    expected = _numeric_gradient(params, x, target)
    key, found, want = _worst(got, expected)
    assert abs(found - want) < 1e-6, (
        f"backward() on {label}: dE/d{key} expected {want:.9f}, found {found:.9f} — "
        + _backward_hint(key, got, expected)
    )
    return got, expected


def _backward_hint(key, got, expected):
    """The likely cause of a wrong gradient, from which keys are wrong and how."""
    wrong = {k for k in KEYS if abs(got[k] - expected[k]) >= 1e-6}
    if wrong and all(abs(got[k] + expected[k]) < 1e-6 for k in wrong):
        return ("every wrong gradient has the opposite sign: dE/dout_o is (out_o - target), "
                "not (target - out_o)")
    if wrong <= {"b1", "b2"}:
        return ("b1 and b2 are each shared by two units: dE/db2 = delta_o1 + delta_o2 and "
                "dE/db1 = delta_h1 + delta_h2 (sum over both units)")
    return ("apply the chain rule through the output sigmoid (out * (1 - out)) and, for w1..w4 "
            "and b1, sum the error flowing back from both outputs; b1 and b2 are shared by two "
            "units each")


def test_backward_worked_example(submission, record_property):
    got, expected = _check_backward(submission, EXAMPLE_PARAMS, EXAMPLE_X, EXAMPLE_TARGET,
                                    "the worked example")
    record_property("figure:gradients", {"student": got, "expected": expected,
                                         "network": "the worked example"})


def test_backward_random_networks(submission, record_property):
    for seed in range(5):
        params, x, target = _random_case(200 + seed)
        label = f"random network #{seed + 1}"
        try:
            _check_backward(submission, params, x, target, label)
        except AssertionError:
            raw = submission.call("backward", params, x, target)
            if isinstance(raw, dict) and all(k in raw for k in KEYS):
                record_property("figure:gradients", {
                    "student": {k: float(np.asarray(raw[k])) for k in KEYS},
                    "expected": _numeric_gradient(params, x, target), "network": label})
            raise


def test_backward_chain_rule(submission):
    cases = [(EXAMPLE_PARAMS, EXAMPLE_X, EXAMPLE_TARGET, "the worked example")]
    cases += [(*_random_case(500 + seed), f"random network #{seed + 1}") for seed in range(10)]
    for params, x, target, label in cases:
        got, _ = _check_backward(submission, params, x, target, label)
        exact = _exact_gradient(params, x, target)
        key, found, want = _worst(got, exact)
        assert abs(found - want) <= CHAIN_RULE_TOL, (
            f"backward() on {label}: dE/d{key} is {float(found)!r}, the exact chain-rule "
            f"value is {float(want)!r} (off by {abs(found - want):.1e}, more than the "
            f"{CHAIN_RULE_TOL:g} a chain-rule computation in float64 stays within) — a "
            "finite-difference estimate, rounded or copied numbers, or float32 arithmetic are "
            "this far off; derive each gradient with the chain rule from one forward pass, in "
            "float64, instead of calling forward() with nudged weights"
        )


def test_backward_no_autodiff(submission):
    attempted = submission.forbidden_imports
    assert not attempted, (
        f"backward(): this exercise is NumPy only; the notebook imports {', '.join(attempted)} "
        "— remove that import and derive the gradients by hand with the chain rule"
    )
    # No free points: the import rule counts only for a backward that returns gradients.
    _check_dict_of_numbers(submission.call("backward", EXAMPLE_PARAMS, EXAMPLE_X,
                                           EXAMPLE_TARGET), KEYS, "backward()")


# -- update ---------------------------------------------------------------------------------
def _grads_for(seed):
    rng = np.random.default_rng(seed)
    return {k: float(v) for k, v in zip(KEYS, rng.normal(size=10), strict=True)}


def test_update_values(submission):
    params, _, _ = _random_case(300)
    grads = _grads_for(301)
    for lr in (0.5, 0.1):
        got = _check_dict_of_numbers(submission.call("update", params, grads, lr), KEYS,
                                     f"update(lr={lr})")
        expected = {k: params[k] - lr * grads[k] for k in KEYS}
        key, found, want = _worst(got, expected)
        assert abs(found - want) < 1e-9, (
            f"update(lr={lr}): new {key} expected {want:.9f}, found {found:.9f} — every "
            "parameter, biases included, moves to p - lr * grad"
        )


def test_update_no_mutation(submission):
    params, _, _ = _random_case(310)
    grads = _grads_for(311)
    before = dict(params)
    result, (params_after, grads_after, _) = submission.call_and_return_args(
        "update", params, grads, 0.5)
    # No free points: leaving the inputs alone counts only for an update that returns params.
    _check_dict_of_numbers(result, KEYS, "update()")
    assert params_after == before, (
        "update(): the params dict passed in was changed; expected it untouched — build and "
        "return a new dict (e.g. {k: params[k] - lr * grads[k] for k in params})"
    )
    assert grads_after == grads, "update(): the grads dict passed in was changed; leave it as is"


# -- train_step -----------------------------------------------------------------------------
def _check_train_step(submission, params, x, target, lr, label):
    result = submission.call("train_step", params, x, target, lr)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"train_step() on {label}: expected a tuple (new_params, error_before_step), found "
        f"{type(result).__name__}"
    )
    new_params = _check_dict_of_numbers(result[0], KEYS, "train_step()[0]")
    error = _as_float(result[1], "train_step()[1]")
    want_error = _error(params, x, target)
    if not math.isclose(error, want_error, abs_tol=TOL):
        after = _error({k: new_params[k] for k in KEYS}, x, target)
        cause = _callee_cause(submission, "total_error", params, x, target, lr) or (
            "; that is the error AFTER the step — compute the error before updating"
            if math.isclose(error, after, abs_tol=TOL) else
            " — return total_error(forward(params, x)['out_o'], target) with the params passed in")
        raise AssertionError(
            f"train_step() on {label}: expected the error BEFORE the step, {want_error:.9f}; "
            f"found {error:.9f}{cause}")
    grads = _numeric_gradient(params, x, target)
    expected = {k: params[k] - lr * grads[k] for k in KEYS}
    key, found, want = _worst(new_params, expected)
    if abs(found - want) >= 1e-6:
        cause = (_callee_cause(submission, "backward", params, x, target, lr)
                 or _callee_cause(submission, "update", params, x, target, lr)
                 or " — compute every gradient with the weights before the update, then update "
                    "all of them at once")
        raise AssertionError(
            f"train_step() on {label}: new {key} expected {want:.9f}, found {found:.9f}{cause}")


def _callee_cause(submission, callee, params, x, target, lr):
    """`` — ...`` naming ``callee`` when the student's own ``callee`` is wrong on this case,
    so that train_step's message points at the function at fault; "" when it is right."""
    try:
        if callee == "backward":
            got = submission.call("backward", params, x, target)
            grads = {k: float(np.asarray(got[k])) for k in KEYS}
            ok = all(abs(grads[k] - v) < 1e-6
                     for k, v in _numeric_gradient(params, x, target).items())
        elif callee == "update":
            grads = _numeric_gradient(params, x, target)
            got = submission.call("update", params, grads, lr)
            ok = all(abs(float(np.asarray(got[k])) - (params[k] - lr * grads[k])) < 1e-9
                     for k in KEYS)
        else:
            out = _forward(params, x)["out_o"]
            got = submission.call("total_error", out, target)
            ok = math.isclose(float(np.asarray(got)), float(np.sum(0.5 * (target - out) ** 2)),
                              abs_tol=TOL)
    except Exception:  # noqa: BLE001 - any failure of the callee is the cause
        ok = False
    if ok:
        return ""
    return (f" — train_step's result is wrong because {callee}() is: it returns wrong values "
            f"for these inputs (see the {callee} tests); fix {callee}() and train_step will "
            "follow")


def test_train_step_worked_example(submission):
    _check_train_step(submission, EXAMPLE_PARAMS, EXAMPLE_X, EXAMPLE_TARGET, 0.5,
                      "the worked example")


def test_train_step_random_networks(submission):
    for seed in range(3):
        params, x, target = _random_case(400 + seed)
        _check_train_step(submission, params, x, target, 0.25, f"random network #{seed + 1}")
