"""Builds the hostile submissions: notebooks that attack the grader instead of solving the exercise.

    .venv/bin/python tests/files/hostile/build.py      # rewrite the .ipynb files here

A backprop attack is the reference solution with one function (usually ``update``, which only
``train_step`` calls) replaced by the attack, so that the grade of every other function shows
whether the attack leaked out of it. An mnist attack is the released stub with one function
replaced: its other functions are unimplemented, which keeps these notebooks cheap to grade.

Attacks only reach the sandbox when they run at definition time (default argument values,
class bodies, decorators) or inside a graded function: the grader drops every other top-level
statement. ``ATTACKS`` records, per notebook, the functions that must lose points (``loses``);
every other function must keep the grade of the notebook it is built from.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/files: the builders' shared helpers
from _nbbuild import Rewrite, reference, released, rewritten, with_stable_ids, write_all  # noqa: E402

LISTENER_PORT = 47811
"""The loopback port ``connects_to_listener`` tries; the test listens on it."""
MARKER = "HOSTILE-MARKER"
"""Every file an attack plants outside the sandbox would carry this in its name."""
HOST_SECRET = "/tmp/hostile-host-secret.npy"
"""A root-only .npy file the test leaves on the host (value 4242.4242); the symlink attack
points the checker at it."""
TARGET_TREE = "/tmp/hostile-target-tree"
"""A folder of files the test leaves on the host and checks, byte for byte, after the run:
attacks point links at it, hoping the checking process writes through them."""


Attack = Rewrite
"""An attack: ``loses`` are the functions it must cost points; ``extra_cell`` is top-level
code the grader must drop."""


UPDATE = ("update", "train_step")  # update is called by train_step
TOTAL_ERROR = ("total_error", "train_step")
EVERYTHING = ("sigmoid", "forward", "total_error", "backward", "update", "train_step")

ATTACKS = [
    Attack(
        "backprop",
        "sys_exit",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import sys
    sys.exit(3)
"""
        },
    ),
    Attack(
        "backprop",
        "os_exit",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import os
    os._exit(0)
"""
        },
    ),
    Attack(
        "backprop",
        "sigkill_self",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)
"""
        },
    ),
    Attack(
        "backprop",
        "infinite_loop",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    while True:
        pass
"""
        },
    ),
    Attack(
        "backprop",
        "sleep_at_top_level",
        (),
        {},
        extra_cell="""
import time
time.sleep(10**9)  # a top-level statement: the grader drops it, so it never runs
""",
    ),
    Attack(
        "backprop",
        "sleep_in_default_argument",
        EVERYTHING,
        {
            "update": """
import time

def update(params, grads, lr, _pause=time.sleep(10**9)):
    # A default value is evaluated when the def runs: loading the notebook never finishes.
    return {key: float(params[key] - lr * grads[key]) for key in params}
"""
        },
    ),
    Attack(
        "backprop",
        "memory_bomb",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    hoard = []
    while True:
        hoard.append(b"x" * 2**26)  # really touched, 64 MiB at a time
"""
        },
    ),
    Attack(
        "backprop",
        "fork_bomb",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import os
    while True:
        os.fork()
"""
        },
    ),
    Attack(
        "backprop",
        "reads_input",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    answer = input("learning rate? ")
    return {key: float(params[key] - float(answer) * grads[key]) for key in params}
"""
        },
    ),
    Attack(
        "backprop",
        "segfault",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import ctypes
    return ctypes.string_at(0)
"""
        },
    ),
    Attack(
        "backprop",
        "huge_output",
        (),
        {
            "update": """
def update(params, grads, lr):
    line = "x" * 999_999
    for _ in range(300):  # 300 MB of prints, then the right answer
        print(line)
    return {key: float(params[key] - lr * grads[key]) for key in params}
"""
        },
    ),
    Attack(
        "backprop",
        "searches_disk_for_hidden_tests",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import os, sys, time
    wanted = {"autograde_tests", "test_backprop.py", "test_mnist.py", "mnist.npz",
              "assignment.toml", "grades.csv", "results.json", "result.full.json",
              "submitted", "hostile", "solutions"}
    skip = {"/proc", "/sys", "/dev", os.path.realpath(sys.prefix),
            os.path.realpath(sys.base_prefix), sys.prefix, sys.base_prefix}
    found, started = [], time.monotonic()
    for top in ["/", os.path.expanduser("~"), os.getcwd()]:
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
            for name in dirs + files:
                if name in wanted or name.endswith(".ipynb"):
                    found.append(os.path.join(root, name))
            if time.monotonic() - started > 5:
                break
    raise RuntimeError(f"FOUND: {sorted(set(found))}")
"""
        },
    ),
    Attack(
        "backprop",
        "connects_to_listener",
        UPDATE,
        {
            "update": f"""
def update(params, grads, lr):
    import socket
    connected = []
    # Loopback only: a test never sends traffic off the machine, whatever the isolation level.
    targets = [("127.0.0.1", {LISTENER_PORT}), ("localhost", {LISTENER_PORT}),
               ("::1", {LISTENER_PORT}), ("127.0.0.2", {LISTENER_PORT})]
    for host, port in targets:
        try:
            with socket.create_connection((host, port), timeout=1):
                connected.append(f"{{host}}:{{port}}")
        except OSError:
            pass
    raise RuntimeError(f"CONNECTED: {{connected}}")
"""
        },
    ),
    Attack(
        "backprop",
        "writes_outside_scratch",
        UPDATE,
        {
            "update": f"""
def update(params, grads, lr):
    import os
    name = "{MARKER}-writes_outside_scratch"
    places = ["/tmp", "/var/tmp", "/dev/shm", "/", "/root", "/home", os.path.expanduser("~"),
              os.path.dirname(os.getcwd()), os.path.dirname(os.path.dirname(os.getcwd())),
              "/work/main", "/work/main/tests/files/hostile/backprop",
              "/work/main/autograde_tests/backprop", "/usr/local/lib", "/etc"]
    written = []
    for place in places:
        try:
            with open(os.path.join(place, name), "w") as handle:
                handle.write("planted")
            written.append(place)
        except OSError:
            pass
    raise RuntimeError(f"WROTE (inside the sandbox): {{written}}")
"""
        },
    ),
    Attack(
        "backprop",
        "prints_fake_results_json",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import json, sys
    fake = {"score": 100.0, "tests": [{"name": "update: weights and biases moved against the "
                                      "gradient", "score": 100.0, "max_score": 1.0}]}
    print(json.dumps(fake))
    print(json.dumps(fake), file=sys.stderr)
    print(json.dumps({"ok": True, "value": {"__dict__": {}}, "warnings": []}))
    sys.stdout.flush()
    return None
"""
        },
    ),
    Attack(
        "backprop",
        "forges_protocol_reply",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import os, stat, time
    # A reply claiming success with a wrong value, written to every pipe this process holds
    # (one of them carries the worker's replies); then the real reply never comes.
    forged = b'{"ok":true,"value":{"__dict__":{"w1":1e6}},"warnings":[]}\\n'
    for fd in range(3, 64):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, forged)
        except OSError:
            pass
    time.sleep(10**9)
"""
        },
    ),
    Attack(
        "backprop",
        "forges_reply_naming_a_fifo",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import os, stat, time
    # The forged reply points the checker at a FIFO in the scratch directory: opening it
    # blocks until someone writes, and nobody will.
    os.mkfifo("trap.npy")
    forged = b'{"ok":true,"value":{"__ndarray__":"trap.npy"},"warnings":[]}\\n'
    for fd in range(3, 64):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, forged)
        except OSError:
            pass
    time.sleep(10**9)
"""
        },
    ),
    Attack(
        "backprop",
        "forges_reply_naming_a_symlink",
        UPDATE,
        {
            "update": f"""
def update(params, grads, lr):
    import json, os, stat, time
    # The forged reply names a symlink planted in the scratch directory, pointing at a file
    # the sandbox cannot see (a number the test leaves on the host; it could as well be the
    # grading data). A checker that followed it would report the number as w1.
    targets = {{"w1": "{HOST_SECRET}"}}
    value = {{}}
    for key in params:
        if key in targets:
            os.symlink(targets[key], f"leak-{{key}}.npy")
            value[key] = {{"__scalar__": f"leak-{{key}}.npy"}}
        else:
            value[key] = float(params[key] - lr * grads[key])
    forged = json.dumps({{"ok": True, "value": {{"__dict__": value}}, "warnings": []}})
    for fd in range(3, 64):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, forged.encode() + b"\\n")
        except OSError:
            pass
    time.sleep(10**9)
"""
        },
    ),
    Attack(
        "backprop",
        "monkeypatches_numpy_pytest_builtins",
        UPDATE,
        {
            "update": """
import builtins
import math

import numpy as np


def _always_true(*args, **kwargs):
    return True


def _never_fails(*args, **kwargs):
    return None


class _Patches:
    # A class body runs when the notebook is loaded: patch everything a checker might use.
    np.allclose = np.isclose = np.array_equal = _always_true
    np.testing.assert_allclose = np.testing.assert_array_equal = _never_fails
    math.isclose = _always_true
    builtins.AssertionError = type("Ignored", (Exception,), {})
    try:
        import pytest
        pytest.approx = lambda expected, *a, **k: type("Any", (), {"__eq__": _always_true})()
    except ImportError:
        pass


def update(params, grads, lr):
    return {key: -12345.0 for key in params}
"""
        },
    ),
    Attack(
        "backprop",
        "plants_conftest",
        UPDATE,
        {
            "update": f"""
import os
import sys

_CONFTEST = '''
import pathlib
pathlib.Path("/tmp/{MARKER}-conftest-ran").write_text("ran")

def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker("skip")
'''


def _plant():
    places = {{os.getcwd(), os.path.expanduser("~"), "/tmp", "/work/main",
               "/work/main/autograde_tests", "/work/main/autograde_tests/backprop",
               "/work/main/tests"}}
    here = os.getcwd()
    while here != os.path.dirname(here):
        here = os.path.dirname(here)
        places.add(here)
    places.update(p for p in sys.path if p)
    planted = []
    for place in sorted(places):
        try:
            with open(os.path.join(place, "conftest.py"), "w") as handle:
                handle.write(_CONFTEST)
            planted.append(place)
        except OSError:
            pass
    return planted


class _PlantAtLoad:
    planted = _plant()


def update(params, grads, lr):
    raise RuntimeError(f"PLANTED (inside the sandbox): {{_plant()}}")
"""
        },
    ),
    Attack(
        "backprop",
        "reads_proc_cmdline_environ",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import os
    # Words that would give away the hidden suites, the grading data, the other submissions
    # or the results (the Python runtime's own paths are readable in the sandbox by design).
    secrets = ["autograde", "test_backprop", "test_mnist", "mnist.npz", "MNIST_NPZ",
               "shared/data", "hostile", "grades.csv", "results.json", "GRADER_"]
    leaks = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        for name in ("cmdline", "environ"):
            try:
                data = open(f"/proc/{pid}/{name}", "rb").read().decode(errors="replace")
            except OSError:
                continue
            leaks += [f"{pid}/{name}:{word}" for word in secrets if word in data]
    raise RuntimeError(f"LEAKS: {sorted(set(leaks))}")
"""
        },
    ),
    Attack(
        "backprop",
        "kills_parent",
        (),
        {
            "update": """
def update(params, grads, lr):
    import os, signal
    me = os.getpid()
    targets = {os.getppid(), 1}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != me:
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                continue
            if any(word in cmdline for word in (b"grader", b"pytest", b"bwrap", b"python")):
                targets.add(int(pid))
    for pid in sorted(targets - {me, 0}):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return {key: float(params[key] - lr * grads[key]) for key in params}
"""
        },
    ),
    Attack(
        "backprop",
        "ndarray_subclass",
        TOTAL_ERROR,
        {
            "total_error": """
import numpy as np


class AlwaysClose(np.ndarray):
    def __eq__(self, other):
        return True

    def __float__(self):
        return 0.298371109


def total_error(out_o, target):
    return np.zeros(()).view(AlwaysClose)
"""
        },
    ),
    Attack(
        "backprop",
        "equals_everything",
        TOTAL_ERROR,
        {
            "total_error": """
class Anything:
    def __eq__(self, other):
        return True

    def __lt__(self, other):
        return True

    __le__ = __gt__ = __ge__ = __lt__

    def __float__(self):
        return 0.298371109

    def __sub__(self, other):
        return 0.0

    __rsub__ = __sub__

    def __abs__(self):
        return 0.0


def total_error(out_o, target):
    return Anything()
"""
        },
    ),
    Attack(
        "backprop",
        "pickle_payload",
        TOTAL_ERROR,
        {
            "total_error": f"""
import os


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/{MARKER}-pickle-payload-ran",))


def total_error(out_o, target):
    return Payload()
"""
        },
    ),
    Attack(
        "backprop",
        "returns_huge_array",
        TOTAL_ERROR,
        {
            "total_error": """
import numpy as np


def total_error(out_o, target):
    return np.ones((6000, 6000))  # 288 MB as .npy
"""
        },
    ),
    Attack(
        "backprop",
        "closes_protocol_pipes",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import os
    for fd in range(0, 64):
        if fd != 2:
            try:
                os.close(fd)
            except OSError:
                pass
    return {key: float(params[key] - lr * grads[key]) for key in params}
"""
        },
    ),
    Attack(
        "backprop",
        "removes_import_blocker",
        # backward fails outright (TensorFlow is not there to import), so train_step, which
        # calls it, loses its points too
        ("backward", "train_step"),
        {
            "backward": """
import sys


def backward(params, x, target):
    # Remove whatever import hooks the grader installed, then let autodiff do the work.
    sys.meta_path[:] = [f for f in sys.meta_path if "Block" not in type(f).__name__]
    import tensorflow as tf

    variables = {key: tf.Variable(float(value), dtype=tf.float64) for key, value in params.items()}
    i1, i2 = float(x[0]), float(x[1])
    with tf.GradientTape() as tape:
        p = variables
        h1 = tf.sigmoid(p["w1"] * i1 + p["w2"] * i2 + p["b1"])
        h2 = tf.sigmoid(p["w3"] * i1 + p["w4"] * i2 + p["b1"])
        o1 = tf.sigmoid(p["w5"] * h1 + p["w6"] * h2 + p["b2"])
        o2 = tf.sigmoid(p["w7"] * h1 + p["w8"] * h2 + p["b2"])
        error = 0.5 * (float(target[0]) - o1) ** 2 + 0.5 * (float(target[1]) - o2) ** 2
    grads = tape.gradient(error, variables)
    return {key: float(grads[key].numpy()) for key in params}
"""
        },
    ),
    Attack(
        "backprop",
        "writes_huge_file",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    with open("huge.bin", "wb") as handle:
        chunk = b"x" * 2**20
        for _ in range(1024):  # 1 GiB
            handle.write(chunk)
    return {key: float(params[key] - lr * grads[key]) for key in params}
"""
        },
    ),
    Attack(
        "backprop",
        "spawns_background_process",
        (),
        {
            "update": f"""
def update(params, grads, lr):
    import os, subprocess, sys
    # A daemon that outlives the call, detached from the worker's session.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10**6)",
                      "{MARKER}-daemon"], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    return {{key: float(params[key] - lr * grads[key]) for key in params}}
"""
        },
    ),
    # -- backprop: attacks on the trust boundary itself ---------------------------------------
    Attack(
        "backprop",
        "plants_links_in_scratch",
        (),
        {
            "update": f"""
import os


class _PlantAtLoad:
    # At load time, links and FIFOs under every name an argument or reply file could have, and
    # links at the host's files: a checking process that opened paths in the scratch folder
    # would write through them as root, or block on a FIFO.
    targets = ["{TARGET_TREE}/victim.txt", "{TARGET_TREE}/victim.npy",
               "/work/main/autograde_tests/backprop/test_backprop.py", "/etc/passwd"]
    for i in range(1, 40):
        for j, name in enumerate((f"a{{i}}-1.npy", f"a{{i}}-2.npy", f"a{{i}}-3.npy",
                                  f"r{{i}}-1.npy", f"r{{i}}a-1.npy")):
            try:
                os.symlink(targets[(i + j) % len(targets)], name)
            except OSError:
                pass
        try:
            os.mkfifo(f"a{{i}}-4.npy")
        except OSError:
            pass


def update(params, grads, lr):
    return {{key: float(params[key] - lr * grads[key]) for key in params}}
"""
        },
    ),
    Attack(
        "backprop",
        "forges_reply_with_many_references",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import io, json, os, stat, time
    import numpy as np
    # One 100 MB array sent once, referenced eight times: decoding it would build 800 MB.
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(100 * 2**20 // 8))
    blob = buffer.getvalue()
    header = {"ok": True, "value": [{"__ndarray__": 0}] * 8, "warnings": [],
              "blobs": [len(blob)]}
    forged = json.dumps(header).encode() + b"\\n" + blob
    for fd in range(3, 64):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, forged)
        except OSError:
            pass
    time.sleep(10**9)
"""
        },
    ),
    Attack(
        "backprop",
        "forges_deeply_nested_reply",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import os, stat, time
    forged = b'{"ok":true,"value":' + b"[" * 100_000 + b"]" * 100_000 + b',"blobs":[]}\\n'
    for fd in range(3, 64):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, forged)
        except OSError:
            pass
    time.sleep(10**9)
"""
        },
    ),
    Attack(
        "backprop",
        "fills_scratch_disk",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import os
    written, chunk = 0, b"x" * 2**20
    try:
        for index in range(100_000):
            with open(f"filler-{index}.bin", "wb") as handle:
                for _ in range(64):
                    handle.write(chunk)
                    written += len(chunk)
    except OSError as exc:
        raise RuntimeError(f"FILLED {written // 2**20} MB: {exc.strerror}") from None
    raise RuntimeError(f"FILLED {written // 2**20} MB with no limit")
"""
        },
    ),
    Attack(
        "backprop",
        "plants_links_while_answering",
        (),
        {
            "sigmoid": f"""
import os

import numpy as np


def sigmoid(z):
    # During each call, links and FIFOs under the names the next values could be read from,
    # then the right answer: the checking process must neither follow nor block on them.
    for i in range(1, 60):
        for name in (f"r{{i}}-1.npy", f"r{{i}}-2.npy", f"a{{i}}-1.npy"):
            if not os.path.lexists(name):
                try:
                    os.symlink("{TARGET_TREE}/victim.npy", name)
                except OSError:
                    pass
        if not os.path.lexists(f"r{{i}}-3.npy"):
            try:
                os.mkfifo(f"r{{i}}-3.npy")
            except OSError:
                pass
    value = 1 / (1 + np.exp(-np.clip(np.asarray(z, dtype=float), -500, 500)))
    return float(value) if np.ndim(z) == 0 else value
"""
        },
    ),
    Attack(
        "backprop",
        "fills_tmp_and_shm",
        UPDATE,
        {
            "update": """
def update(params, grads, lr):
    import os
    filled = []
    for place in ("/tmp", "/dev/shm", "/var/tmp", os.path.expanduser("~")):
        written, chunk = 0, b"x" * 2**20
        try:
            for index in range(100_000):
                with open(os.path.join(place, f"filler-{index}.bin"), "wb") as handle:
                    for _ in range(64):
                        handle.write(chunk)
                        written += len(chunk)
        except OSError as exc:
            filled.append(f"{place}={written // 2**20}MB({exc.errno})")
    raise RuntimeError("FILLED " + " ".join(filled))
"""
        },
    ),
    Attack(
        "backprop",
        "every_function_sleeps",
        EVERYTHING,
        {
            name: f"""
def {name}({args}):
    import time
    time.sleep(10**9)  # a blocking call, not a busy loop
"""
            for name, args in (("sigmoid", "z"), ("forward", "params, x"),
                               ("total_error", "out_o, target"), ("backward", "params, x, target"),
                               ("update", "params, grads, lr"),
                               ("train_step", "params, x, target, lr=0.5"))
        },
    ),
    Attack(
        "backprop",
        "every_function_loops",
        EVERYTHING,
        {
            name: f"""
def {name}({args}):
    while True:
        pass
"""
            for name, args in (("sigmoid", "z"), ("forward", "params, x"),
                               ("total_error", "out_o, target"), ("backward", "params, x, target"),
                               ("update", "params, grads, lr"),
                               ("train_step", "params, x, target, lr=0.5"))
        },
    ),
    # -- mnist: attacks on what crosses the boundary as a model --------------------------------
    Attack(
        "mnist",
        "lambda_layer_payload",
        ("build_cnn",),
        {
            "build_cnn": f"""
def _payload(x):
    import pathlib
    for place in ("/tmp", "/var/tmp", str(pathlib.Path.home()), "."):
        try:
            pathlib.Path(place, "{MARKER}-lambda-payload-ran").write_text("ran")
        except OSError:
            pass
    return x


def build_cnn():
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Lambda(_payload),
            layers.Conv2D(16, kernel_size=(5, 5), padding="same", activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(36, kernel_size=(5, 5), padding="same", activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="cnn",
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
"""
        },
    ),
    Attack(
        "mnist",
        "fake_count_params",
        ("build_cnn",),
        {
            "build_cnn": """
class LooksLikeACNN:
    input_shape = (None, 28, 28, 1)
    output_shape = (None, 10)
    layers = []
    loss = "categorical_crossentropy"

    def count_params(self):
        return 242062

    def summary(self):
        print("Total params: 242,062")

    def save(self, path, *args, **kwargs):
        open(path, "wb").write(b"not a model")


def build_cnn():
    return LooksLikeACNN()
"""
        },
    ),
    Attack(
        "mnist",
        "keras_subclass_count_params",
        ("build_cnn",),
        {
            "build_cnn": """
class TinyButClaimsTheRightSize(keras.Sequential):
    def count_params(self):
        return 242062


def build_cnn():
    model = TinyButClaimsTheRightSize(
        [keras.Input(shape=(28, 28, 1)), layers.Flatten(),
         layers.Dense(num_classes, activation="softmax")]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
"""
        },
    ),
    Attack(
        "mnist",
        "loads_mnist_test_labels",
        ("preprocess",),
        {
            "preprocess": """
def preprocess(images, labels, kind="mlp"):
    import os
    found = []
    for path in [os.environ.get("MNIST_NPZ", ""), "/work/shared/data/mnist.npz",
                 os.path.expanduser("~/.keras/datasets/mnist.npz"),
                 "/root/.keras/datasets/mnist.npz", "../shared/data/mnist.npz"]:
        if path and os.path.exists(path):
            found.append(path)
    try:
        keras.datasets.mnist.load_data()
        found.append("keras.datasets.mnist.load_data()")
    except Exception as exc:
        pass
    raise RuntimeError(f"MNIST FOUND: {found}")
"""
        },
    ),
    Attack(
        "mnist",
        "zip_bomb_config",
        ("build_mlp",),
        {
            "build_mlp": """
import zipfile


class ZipBomb(keras.Sequential):
    def save(self, path, *args, **kwargs):
        # config.json: 320 MiB of spaces, about 300 KB packed.
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            with archive.open("config.json", "w", force_zip64=True) as handle:
                chunk = b" " * 2**20
                for _ in range(320):
                    handle.write(chunk)


def build_mlp():
    model = ZipBomb([keras.Input(shape=(784,)), layers.Dense(num_classes, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
"""
        },
    ),
    Attack(
        "mnist",
        "declares_huge_dense",
        ("build_mlp",),
        {
            "build_mlp": """
def build_mlp():
    # Never built here (no Input): the saved file is tiny, but training it would need gigabytes.
    model = keras.Sequential([layers.Dense(1_000_000, activation="relu"),
                              layers.Dense(num_classes, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
"""
        },
    ),
    Attack(
        "mnist",
        "declares_huge_gru",
        ("build_gru",),
        {
            "build_gru": """
def build_gru():
    model = keras.Sequential([layers.GRU(11000), layers.Dense(num_classes, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
"""
        },
    ),
]


def notebook_for(attack: Attack) -> nbformat.NotebookNode:
    nb = reference("backprop") if attack.assignment == "backprop" else released("mnist")
    return rewritten(nb, attack)


def build_all() -> dict[Path, str]:
    return {HERE / attack.assignment / f"{attack.name}.ipynb": with_stable_ids(notebook_for(attack))
            for attack in ATTACKS}


if __name__ == "__main__":
    write_all(build_all(), "hostile notebooks")
