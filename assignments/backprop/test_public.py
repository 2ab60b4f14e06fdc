"""Public checks for the backprop assignment: one check for every requirement the notebook
states, on the worked example. The hidden tests add random networks of the same kind, so
passing these does not guarantee full marks, but a requirement you miss shows up here first."""

import numpy as np

PARAMS = {"w1": 0.15, "w2": 0.20, "w3": 0.25, "w4": 0.30, "w5": 0.40, "w6": 0.45,
          "w7": 0.50, "w8": 0.55, "b1": 0.35, "b2": 0.60}
KEYS = list(PARAMS)
X = np.array([0.05, 0.10])
TARGET = np.array([0.01, 0.99])
# The worked example's gradients, exact to the last digit of a float64 (the chain rule gives
# them to about 1e-17; a finite-difference estimate is off by 1e-13 or more).
GRADIENTS = {"w1": 0.0004385677344743465, "w2": 0.000877135468948693,
             "w3": 0.0004977127352608599, "w4": 0.0009954254705217198,
             "w5": 0.08216704056423077, "w6": 0.08266762784753325,
             "w7": -0.02260254047747507, "w8": -0.022740242215978222,
             "b1": 0.018725609394704128, "b2": 0.10040032511200071}
AFTER_ONE_STEP = {"w1": 0.149780716, "w2": 0.19956143, "w3": 0.24975114, "w4": 0.29950229,
                  "w5": 0.35891648, "w6": 0.408666186, "w7": 0.511301270, "w8": 0.561370121}


def _numbers(value, what):
    assert isinstance(value, dict), f"{what}: expected a dict, found {type(value).__name__}"
    missing = [k for k in KEYS if k not in value]
    assert not missing, f"{what}: expected the keys w1..w8, b1, b2; missing {', '.join(missing)}"
    return {k: float(np.asarray(value[k])) for k in KEYS}


def test_sigmoid__at_zero(submission):
    value = submission.call("sigmoid", 0.0)
    assert isinstance(value, float) or (isinstance(value, np.ndarray) and value.shape == ()), (
        f"sigmoid(0.0): expected a number (a float or a 0-d array), found "
        f"{type(value).__name__} {getattr(value, 'shape', '')} — return float(...) for a "
        "scalar input")
    assert abs(float(value) - 0.5) < 1e-9, f"sigmoid(0.0): expected 0.5, found {value}"


def test_sigmoid__values_on_arrays(submission):
    z = np.array([-2.0, 0.0, 2.0])
    got = submission.call("sigmoid", z)
    assert isinstance(got, np.ndarray) and got.shape == z.shape, (
        f"sigmoid(array of shape (3,)): expected an array of shape (3,), found "
        f"{type(got).__name__} {getattr(got, 'shape', '')} — apply it elementwise with np.exp")
    assert np.allclose(got, [0.11920292, 0.5, 0.88079708], atol=1e-8), (
        f"sigmoid([-2, 0, 2]): expected [0.11920292, 0.5, 0.88079708], found {got.tolist()}")


def test_sigmoid__no_overflow_at_1000(submission):
    got = submission.call("sigmoid", np.array([-1000.0, 1000.0]))
    assert isinstance(got, np.ndarray) and np.allclose(got, [0.0, 1.0], atol=1e-12), (
        f"sigmoid([-1000, 1000]): expected [0.0, 1.0], found {got!r}")
    assert not submission.last_warnings, (
        f"sigmoid([-1000, 1000]): expected no warning, found {submission.last_warnings[0]} — "
        "np.exp(1000) overflows; use np.logaddexp(0, -z), or 0.5 * (1 + np.tanh(z / 2))")


def test_forward__worked_example(submission):
    out = submission.call("forward", PARAMS, X)
    assert isinstance(out, dict), f"forward(): expected a dict, found {type(out).__name__}"
    expected = {"out_h": [0.593269992, 0.596884378], "out_o": [0.75136507, 0.772928465],
                "net_h": [0.3775, 0.3925], "net_o": [1.10590597, 1.2249214]}
    for key, want in expected.items():
        value = out.get(key)
        assert isinstance(value, np.ndarray) and value.shape == (2,) \
            and value.dtype == np.float64, (
                f"forward()[{key!r}]: expected a float64 array of shape (2,), found "
                f"{type(value).__name__} {getattr(value, 'shape', '')} "
                f"{getattr(value, 'dtype', '')} — build it with np.array([...])")
        assert np.allclose(value, want, atol=1e-6), (
            f"forward()[{key!r}]: expected {want}, found {value.tolist()}")


def test_total_error__worked_example(submission):
    err = submission.call("total_error", np.array([0.75136507, 0.772928465]), TARGET)
    assert isinstance(err, float), (
        f"total_error(): expected a float, found {type(err).__name__} — return float(...)")
    assert abs(err - 0.298371109) < 1e-6, (
        f"total_error(): expected 0.298371109, found {err} — E_total = "
        "sum(0.5 * (target - out)**2), a sum, not a mean")


def test_backward__worked_example(submission):
    grads = _numbers(submission.call("backward", PARAMS, X, TARGET), "backward()")
    for key in KEYS:
        assert abs(grads[key] - GRADIENTS[key]) < 1e-6, (
            f"backward(): dE/d{key} expected {GRADIENTS[key]:.9f}, found {grads[key]:.9f}"
            + (" — b1 and b2 are each shared by two units: sum the error signals of both "
               "(dE/db2 = delta_o1 + delta_o2)" if key in ("b1", "b2") else ""))


def test_backward__chain_rule_not_finite_differences(submission):
    grads = _numbers(submission.call("backward", PARAMS, X, TARGET), "backward()")
    key = max(KEYS, key=lambda k: abs(grads[k] - GRADIENTS[k]))
    assert abs(grads[key] - GRADIENTS[key]) < 1e-6, (
        f"backward(): dE/d{key} is wrong (see the check 'backward: worked example'); fix the "
        "values first")
    assert abs(grads[key] - GRADIENTS[key]) <= 1e-15, (
        f"backward(): dE/d{key} is {grads[key]!r}, the chain rule gives {GRADIENTS[key]!r} "
        f"(off by {abs(grads[key] - GRADIENTS[key]):.1e}) — that is the error of a "
        "finite-difference estimate (or of float32); derive the gradients with the chain rule "
        "from one forward pass, in float64")


def test_update__new_dict_biases_included(submission):
    grads = {k: 1.0 for k in PARAMS}
    new, (params_after, _, _) = submission.call_and_return_args("update", PARAMS, grads, 0.5)
    new = _numbers(new, "update()")
    assert params_after == PARAMS, (
        "update(): the params passed in were changed; return a new dict instead")
    for key in KEYS:
        assert abs(new[key] - (PARAMS[key] - 0.5)) < 1e-9, (
            f"update(): new {key} expected {PARAMS[key] - 0.5}, found {new[key]} — every "
            "parameter, biases included, moves to p - lr * grad")


def test_train_step__worked_example(submission):
    result = submission.call("train_step", PARAMS, X, TARGET, 0.5)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"train_step(): expected a tuple (new_params, error_before_step), found "
        f"{type(result).__name__}")
    new, error = _numbers(result[0], "train_step()[0]"), float(np.asarray(result[1]))
    assert abs(error - 0.298371109) < 1e-6, (
        f"train_step(): error before the step expected 0.298371109, found {error}")
    for key, want in AFTER_ONE_STEP.items():
        assert abs(new[key] - want) < 1e-6, (
            f"train_step(): new {key} expected {want}, found {new[key]} — compute every "
            "gradient with the weights before the update")


def test_backward__numpy_only(submission):
    attempted = list(getattr(submission, "forbidden_imports", []))
    assert not attempted, (
        f"backward(): this exercise is NumPy only; the notebook imports {', '.join(attempted)} "
        "— remove that import and derive the gradients by hand with the chain rule")
    _numbers(submission.call("backward", PARAMS, X, TARGET), "backward()")
