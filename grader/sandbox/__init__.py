"""Running student code confined: isolation levels (:mod:`grader.sandbox.isolation`)."""

from grader.sandbox.isolation import (
    LEVELS,
    Isolation,
    Limits,
    detect_isolation,
    exit_signal,
    kill_sandbox,
    python_runtime_paths,
    spawn_sandboxed,
)

__all__ = [
    "LEVELS",
    "Isolation",
    "Limits",
    "detect_isolation",
    "exit_signal",
    "kill_sandbox",
    "python_runtime_paths",
    "spawn_sandboxed",
]
