"""``grader doctor``: what this machine can do for grading, and how to fix what is missing.

One ``Name: value`` line per check, followed by ``  fix: ...`` lines for anything missing.
Exit status 0 when grading can run here (TensorFlow imports, MNIST is readable, the hidden
suites are found), 1 otherwise. Optional things (GPU, bubblewrap, chromium) never fail it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

TF_PIN = "tensorflow==2.21.*"
MNIST_DOWNLOAD = 'python -c "import keras; keras.datasets.mnist.load_data()"'


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)

    def add(self, name: str, value: str, *fixes: str) -> None:
        self.lines.append(f"{name}: {value}")
        self.lines.extend(f"  fix: {fix}" for fix in fixes)

    def detail(self, text: str) -> None:
        self.lines.append(f"  - {text}")


@contextlib.contextmanager
def _silenced_fd2() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: C++ libraries log there, around Python's stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _check_tensorflow(report: Report):  # -> the tensorflow module or None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _silenced_fd2():  # TensorFlow's C++ start-up lines (cuInit, CPU features)
            import tensorflow as tf
    except Exception as exc:  # noqa: BLE001 - any import failure means the same here
        report.add(
            "TensorFlow",
            f"MISSING ({type(exc).__name__}: {exc})",
            f"pip install '{TF_PIN}' (or install the grader: pip install .)",
        )
        report.blockers.append("TensorFlow does not import")
        return None
    report.add("TensorFlow", tf.__version__)
    try:
        import keras

        report.add("Keras", keras.__version__)
    except Exception as exc:  # noqa: BLE001
        report.add("Keras", f"MISSING ({type(exc).__name__}: {exc})", "pip install keras")
        report.blockers.append("Keras does not import")
    return tf


def _check_gpus(report: Report, tf) -> None:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        fixes = []
        if shutil.which("nvidia-smi"):
            fixes.append(
                "nvidia-smi is here but TensorFlow sees no GPU: install TensorFlow's CUDA build "
                f"(pip install '{TF_PIN.replace('tensorflow', 'tensorflow[and-cuda]')}') or use "
                "the GPU image (docker/Dockerfile) with `--gpus all`"
            )
        report.add("GPUs", "none (TensorFlow sees no GPU; models train on the CPU)", *fixes)
        return
    growth_env = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "").lower() == "true"
    growth = growth_env or all(tf.config.experimental.get_memory_growth(g) for g in gpus)
    growth_fix = (
        "export TF_FORCE_GPU_ALLOW_GROWTH=true so that several grading workers can share one "
        "GPU (the Docker image sets it)"
    )
    state = "on" if growth else "off"
    report.add("GPUs", f"{len(gpus)}, memory growth {state}", *(() if growth else (growth_fix,)))
    for gpu in gpus:
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except Exception:  # noqa: BLE001 - details are a nicety
            details = {}
        name = details.get("device_name", "unknown device")
        cc = details.get("compute_capability")
        cc_text = f", compute capability {cc[0]}.{cc[1]}" if cc else ""
        report.detail(f"{gpu.name.replace('/physical_device:', '')}: {name}{cc_text}")


def _check_isolation(report: Report) -> None:
    try:
        from grader.sandbox.isolation import detect_isolation
    except ImportError as exc:
        report.add("Isolation", f"unknown (the sandbox module is not available: {exc})")
        return
    from grader.errors import GraderError

    try:
        isolation = detect_isolation()
    except GraderError as exc:
        report.add("Isolation", f"NONE ({exc})", "apt-get install bubblewrap util-linux")
        report.blockers.append("no sandbox can run student code")
        return
    report.add("Isolation", isolation.level)
    for line in isolation.details:
        report.detail(line)


def _check_mnist(report: Report) -> None:
    from grader.data import find_mnist, keras_cache_path, load_mnist
    from grader.errors import DataUnavailable

    found = find_mnist()
    if found is None:
        report.add(
            "MNIST",
            f"MISSING (MNIST_NPZ is not set and there is nothing at {keras_cache_path()})",
            f"download it once with {MNIST_DOWNLOAD}",
            "or set MNIST_NPZ (or pass --mnist) to an .npz holding x_train, y_train, x_test, y_test",
        )
        report.blockers.append("MNIST is missing")
        return
    if not found.exists():
        report.add(
            "MNIST",
            f"MISSING (MNIST_NPZ is {found}, which does not exist)",
            "set MNIST_NPZ (or pass --mnist) to an existing .npz with x_train, y_train, x_test, "
            f"y_test, or unset it and download MNIST once with {MNIST_DOWNLOAD}",
        )
        report.blockers.append("MNIST is missing")
        return
    try:
        mnist = load_mnist(found)
    except (DataUnavailable, OSError, ValueError) as exc:
        report.add(
            "MNIST",
            f"UNUSABLE ({exc})",
            "point MNIST_NPZ (or --mnist) at a readable .npz in Keras' layout, or unset it and "
            f"download MNIST once with {MNIST_DOWNLOAD}",
        )
        report.blockers.append("MNIST is unusable")
        return
    origin = "MNIST_NPZ" if os.environ.get("MNIST_NPZ") else "Keras' cache"
    report.add(
        "MNIST",
        f"{found} (from {origin}): {len(mnist.x_train):,} training images, {len(mnist.x_test):,} test images",
    )
    if len(mnist.x_train) < 60_000:
        report.detail("enough for --profile quick; --profile full needs all 60,000 training images")


def _check_suites(report: Report) -> None:
    from grader.course import discover_assignments, find_course_root, hidden_suites_dir

    root = find_course_root()
    suites = hidden_suites_dir(root) if root else None
    present = list(discover_assignments(root)) if root else []
    if present:
        report.add("Hidden suites", f"{suites} ({', '.join(present)})")
        return
    report.add(
        "Hidden suites",
        f"MISSING (nothing readable at {suites})" if suites else
        "MISSING (no course folder: neither this folder nor its parents hold autograde_tests/ "
        "or nbgrader_config.py, and GRADER_COURSE_ROOT is not set)",
        "set GRADER_COURSE_ROOT to the course checkout (the folder holding autograde_tests/); "
        "students do not need them: `grader check` runs the public checks",
    )
    report.blockers.append("the hidden suites are not found")


def _tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else ""


def _check_tools(report: Report) -> None:
    bwrap = shutil.which("bwrap")
    if bwrap:
        version = _tool_version([bwrap, "--version"])
        report.add("bubblewrap", f"{bwrap} ({version})" if version else bwrap)
    else:
        report.add(
            "bubblewrap",
            "not found (the strongest sandbox level needs it)",
            "apt-get install bubblewrap",
        )
    chromium = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    if chromium:
        report.add("chromium", chromium)
    else:
        report.add(
            "chromium",
            "not found (optional: grading does not need it)",
            "apt-get install chromium, to look at feedback.html headlessly",
        )


def run_checks() -> Report:
    report = Report()
    report.add("Python", f"{platform.python_version()} ({sys.executable})")
    tf = _check_tensorflow(report)
    if tf is not None:
        _check_gpus(report, tf)
    _check_isolation(report)
    _check_mnist(report)
    _check_suites(report)
    _check_tools(report)
    return report


def main() -> int:
    report = run_checks()
    print("\n".join(report.lines))
    print()
    if report.blockers:
        print(f"Not ready to grade: {'; '.join(report.blockers)}.")
        return 1
    print("Ready to grade.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
