"""Running student code confined.

:mod:`grader.sandbox.isolation` confines a process (isolation levels, limits, the sandbox's
root); :mod:`grader.sandbox.worker` runs inside the sandbox and answers calls;
:mod:`grader.sandbox.client` is the checking process's end of the worker's pipes;
:mod:`grader.sandbox.protocol` is what both ends share. Where bubblewrap runs as root, workers
are forked from a template sandbox that imported the assignment's libraries once
(:mod:`grader.sandbox.template` inside it, :mod:`grader.sandbox.forking` the checking
process's end).
"""

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
