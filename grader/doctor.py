"""``grader doctor``: what this machine can do for grading, and how to fix what is missing.

One ``Name: value`` line per check, followed by ``  fix: ...`` lines for anything missing.
Exit status 0 when grading can run here (TensorFlow imports, the hidden suites are found, and
each data file their assignments declare under ``[data.<key>]`` is readable), 1 otherwise.
Optional things (GPU, bubblewrap, chromium) never fail it.
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
from pathlib import Path

from grader.course import Assignment, DataFile
from grader.errors import ConfigurationError

TF_PIN = "tensorflow==2.21.*"


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


@dataclass
class _DataNeed:
    """One declared data file, and the assignments that declare it the same way."""

    spec: DataFile
    assignments: list[Assignment] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"Data {self.spec.key} (for {', '.join(a.name for a in self.assignments)})"


def _data_needs(assignments: list[Assignment]) -> list[_DataNeed]:
    needs: dict[tuple[str, str, str], _DataNeed] = {}
    for assignment in assignments:
        for spec in assignment.data:
            need = needs.setdefault((spec.key, spec.env, spec.keras_cache), _DataNeed(spec))
            need.assignments.append(assignment)
    return list(needs.values())


def _where_to_put(spec: DataFile) -> list[str]:
    """The fixes for a missing file: each place the grader looks for it."""
    what = f" ({spec.description})" if spec.description else ""
    fixes = []
    if spec.env:
        fixes.append(f"set {spec.env} to the file{what}, or pass --data {spec.key}=PATH to "
                     "`grader grade`")
    else:
        fixes.append(f"pass --data {spec.key}=PATH to `grader grade`{what}")
    if spec.cache_path is not None:
        fixes.append(f"or place it at {spec.cache_path} (where Keras' datasets download to; "
                     "KERAS_HOME moves it)")
    return fixes


def _npz_contents(path: Path, keys: tuple[str, ...]) -> tuple[dict[str, int], str]:
    """The length of each array of an ``.npz``, or {} and what is wrong with it."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            lengths = {name: len(npz[name]) if npz[name].ndim else 1 for name in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        return {}, f"{path} is not a readable .npz: {type(exc).__name__}: {exc}"
    missing = [k for k in keys if k not in lengths]
    if missing:
        return {}, f"{path}: expected the arrays {', '.join(keys)}, missing {', '.join(missing)}"
    return lengths, ""


def _check_data_file(report: Report, need: _DataNeed) -> None:
    from grader.profiles import get_profile, profile_names

    spec = need.spec
    found = spec.find()
    if found is None:
        where = f"{spec.env} is not set and " if spec.env else ""
        nowhere = (f"{where}there is nothing at {spec.cache_path}" if spec.cache_path else
                   f"{where}no other place is declared" if spec.env else "no place is declared")
        report.add(need.label, f"MISSING ({nowhere})", *_where_to_put(spec))
        report.blockers.append(f"data file {spec.key!r} is missing")
        return
    if not found.is_file():
        report.add(need.label, f"MISSING ({spec.env} is {found}, which is not a file)",
                   f"set {spec.env} to an existing file"
                   + (f" ({spec.description})" if spec.description else "")
                   + (f", or unset it and place the file at {spec.cache_path}"
                      if spec.cache_path else ""))
        report.blockers.append(f"data file {spec.key!r} is missing")
        return
    origin = (spec.env if spec.env and os.environ.get(spec.env) else "Keras' cache")
    if found.suffix != ".npz":
        report.add(need.label, f"{found} (from {origin})")
        return
    lengths, problem = _npz_contents(found, spec.keys)
    if problem:
        report.add(need.label, f"UNUSABLE ({problem})",
                   f"point {spec.env or '--data ' + spec.key} at a readable .npz"
                   + (f" ({spec.description})" if spec.description else ""))
        report.blockers.append(f"data file {spec.key!r} is unusable")
        return
    arrays = ", ".join(f"{name} {n:,}" for name, n in lengths.items())
    report.add(need.label, f"{found} (from {origin}): {arrays}")
    training = lengths.get("x_train")
    if training is None:
        return
    for assignment in need.assignments:
        for name in profile_names(assignment):
            profile = get_profile(name, assignment)
            wanted = (profile.train_size if profile.train_size is not None
                      else profile.full_train_size)
            if wanted and training < wanted:
                report.detail(f"too small for --profile {name} of {assignment.name}: it trains "
                              f"on {wanted:,} examples, the file holds {training:,}")


def _check_data(report: Report) -> None:
    """Each data file the course's assignments declare (``[data.<key>]`` in their toml)."""
    from grader.course import discover_assignments, find_course_root, load_assignment

    root = find_course_root()
    if root is None:
        return  # _check_suites says how to name the course
    assignments = []
    for name in discover_assignments(root):
        try:
            assignments.append(load_assignment(name, root))
        except ConfigurationError as exc:
            report.add(f"Assignment {name}", f"UNREADABLE ({exc})",
                       f"fix {root / 'autograde_tests' / name / 'assignment.toml'}")
            report.blockers.append(f"assignment {name!r} cannot be read")
    needs = _data_needs(assignments)
    if assignments and not needs:
        report.add("Data", "none declared (no assignment reads a data file)")
    for need in needs:
        _check_data_file(report, need)


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
    _check_data(report)
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
