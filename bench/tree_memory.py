"""Run a command and report its process tree's peak memory, counted two ways.

    .venv/bin/python bench/tree_memory.py grader grade CLASS --assignment mnist --out OUT --jobs 2

Every half second it sums, over the command and all its descendants, the proportional set size
(PSS: a page shared by N processes counts 1/N in each) and the resident set size (RSS: a shared
page counts in full in each). Workers forked from a template sandbox share most of their pages
with it, so only PSS says how much memory the tree holds; ``bench/run.py`` reports summed RSS.
Prints one JSON object: the command's exit status and both peaks in MB. Reading another user's
PSS needs root (the sandboxes run as uid 65534); what cannot be read is left out and counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil

INTERVAL_SECONDS = 0.5


def _sample(top: psutil.Process) -> tuple[int, int, int]:
    """(PSS, RSS, processes left out) summed over ``top`` and its descendants now."""
    pss = rss = unreadable = 0
    try:
        members = [top, *top.children(recursive=True)]
    except psutil.Error:
        return 0, 0, 0
    for member in members:
        try:
            info = member.memory_full_info()
        except psutil.Error:
            unreadable += 1
            continue
        pss += info.pss
        rss += info.rss
    return pss, rss, unreadable


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: bench/tree_memory.py COMMAND [ARGUMENT...]", file=sys.stderr)
        return 2
    proc = subprocess.Popen(argv)
    top = psutil.Process(proc.pid)
    peak_pss = peak_rss = left_out = 0
    while proc.poll() is None:
        pss, rss, unreadable = _sample(top)
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        left_out = max(left_out, unreadable)
        time.sleep(INTERVAL_SECONDS)
    print(json.dumps({"returncode": proc.returncode,
                      "peak_tree_pss_mb": round(peak_pss / 2**20),
                      "peak_tree_rss_mb": round(peak_rss / 2**20),
                      "most_processes_left_out": left_out}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
