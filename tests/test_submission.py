"""The sandboxed submission: the worker started early, the loading call's time limit, the
collector around the worker's imports, and the font list it is handed."""

from __future__ import annotations

import gc
import importlib
import json
import os
import time
from pathlib import Path

import nbformat
import pytest

from grader import codec
from grader._gc import imports_then_frozen
from grader.course import load_assignment
from grader.errors import CallTimeout
from grader.extract import extract_answer_code
from grader.sandbox import fonts
from grader.sandbox.isolation import Limits, detect_isolation
from grader.submission import SandboxSubmission

# A class body runs when the notebook is loaded: this one takes 1.5 s.
SLOW_LOAD = """
import time

class Slow:
    time.sleep(1.5)

def sigmoid(x):
    return 1 / (1 + 2.718281828459045 ** -x)
"""


def _submission(source: str, call_seconds: float,
                assignment: str = "backprop") -> SandboxSubmission:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    return SandboxSubmission(extract_answer_code(nb), load_assignment(assignment),
                             limits=Limits(call_seconds=call_seconds),
                             isolation=detect_isolation(None))


def test_a_load_slower_than_the_call_limit_times_out() -> None:
    submission = _submission(SLOW_LOAD, call_seconds=1.0)
    try:
        with pytest.raises(CallTimeout) as info:
            submission.call("sigmoid", 0.0)
    finally:
        submission.close()
    assert str(info.value) == ("sigmoid(): loading the notebook failed — loading the notebook: "
                               "did not finish within 1 s — look for an infinite loop, a blocking "
                               "call (input(), sleep, network) or a very slow computation")


def test_started_worker_loads_while_the_checker_is_busy() -> None:
    """start() returns at once; a reply that arrived while the checking process was busy past
    the call limit is the grader's delay, not the student's, and is read."""
    submission = _submission(SLOW_LOAD, call_seconds=3.0)
    try:
        began = time.monotonic()
        submission.start()
        submission.start()  # a second start changes nothing
        assert time.monotonic() - began < 1.0
        time.sleep(4.0)  # busy past the 3 s limit; the load finished meanwhile
        assert submission.call("sigmoid", 0.0) == 0.5
        assert submission.limits_hit == []
    finally:
        submission.close()


def test_start_without_answer_cells_starts_nothing() -> None:
    submission = _submission("# nothing here yet", call_seconds=3.0)
    try:
        submission.start()
        assert not submission._worker.running
        assert not submission.defines("sigmoid")
    finally:
        submission.close()


def test_a_reply_left_unread_is_never_taken_for_another_calls() -> None:
    """When the checking process's own limit interrupts it while it waits for a reply (an
    exception raised into it), that reply stays in the pipe: the next calls skip it and read
    their own, so no test ever sees another call's value."""
    submission = _submission("def sigmoid(x):\n    return 1 / (1 + 2.718281828459045 ** -x)\n"
                             "\ndef double(x):\n    return 2 * x\n", call_seconds=30.0)
    try:
        assert submission.call("double", 1.0) == 2.0
        submission._ids += 1  # the interrupted call: sent, its reply (8.0) never read
        blobs: list[bytes] = []
        submission._send({"op": "call", "id": submission._ids, "function": "double",
                          "args": codec.encode_args((4.0,), {}, blobs), "return_args": False},
                         "double()", blobs)
        assert submission.call("sigmoid", 0.0) == 0.5
        assert submission.call("double", 3.0) == 6.0
    finally:
        submission.close()


@pytest.mark.slow
def test_student_code_runs_with_the_collector_on_after_the_preload() -> None:
    """The worker imports Keras with the garbage collector off (grader/_gc.py); the student's
    code must run with it on, as in Jupyter, or its garbage cycles would pile up until a memory
    limit the student never meets at home."""
    submission = _submission(
        "import gc\n\ndef collector():\n    return [gc.isenabled(), gc.get_freeze_count() > 0]\n",
        call_seconds=60.0, assignment="mnist")
    try:
        assert submission.call("collector") == [True, True]
    finally:
        submission.close()


def test_imports_then_frozen_turns_the_collector_back_on_when_an_import_fails() -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        with pytest.raises(ModuleNotFoundError, match="No module named 'no_such_module_here'"):
            with imports_then_frozen():
                assert not gc.isenabled()
                importlib.import_module("no_such_module_here")
        assert gc.isenabled()
        assert gc.get_freeze_count() > frozen
    finally:
        gc.enable()
        gc.unfreeze()


FONT_PROBE = """
import glob
import logging
import os

def font_probe():
    folder = os.environ["MPLCONFIGDIR"]
    lists = [os.path.basename(p) for p in glob.glob(os.path.join(folder, "fontlist-v*.json"))]
    messages = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    log = logging.getLogger("matplotlib.font_manager")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    from matplotlib import font_manager
    found = font_manager.findfont("DejaVu Sans", fallback_to_default=False)
    return [lists == [f"fontlist-v{font_manager.FontManager.__version__}.json"],
            "GRADER_MPL_FONTLIST" in os.environ, messages, os.path.isfile(found)]
"""


def test_the_sandbox_reads_the_font_list_it_is_handed_instead_of_building_one() -> None:
    """Matplotlib logs "generated new fontManager" when it builds its list, and "Found a missing
    font file" when the list names a font the sandbox cannot open: neither may happen, the list
    must be in place before the student's first line, and its variable gone."""
    submission = _submission(FONT_PROBE, call_seconds=60.0)
    try:
        assert submission.call("font_probe") == [True, False, [], True]
    finally:
        submission.close()


def test_the_font_list_keeps_only_fonts_the_sandbox_can_read() -> None:
    every = json.loads(fonts.font_list(("/",)) or "{}")
    names = [entry["fname"] for entry in every["ttflist"] + every["afmlist"]]
    assert any(not os.path.isabs(name) for name in names)  # Matplotlib's own fonts

    system = json.loads(fonts.font_list(("/usr",)) or "{}")
    kept = [entry["fname"] for entry in system["ttflist"] + system["afmlist"]]
    assert all(not os.path.isabs(name) or name.startswith("/usr/") for name in kept)

    masked = json.loads(fonts.font_list(("/",), ("/usr",)) or "{}")
    left = [entry["fname"] for entry in masked["ttflist"] + masked["afmlist"]]
    assert left and all(not name.startswith("/usr/") for name in left)
    assert masked["_version"] == every["_version"]

    font, usr = "/usr/share/fonts/a.ttf", (Path("/usr"),)
    assert fonts._readable(font, usr, ())
    assert not fonts._readable(font, usr, (Path("/usr/share"),))  # in a hidden folder
    assert not fonts._readable(font, usr, (Path(font),))  # hidden itself
    assert not fonts._readable("/usr/../etc/a.ttf", usr, ())
    assert fonts._readable("/usr/share/fonts-other/a.ttf", usr, (Path("/usr/share/fonts"),))
    assert not fonts._readable("/opt/a.ttf", usr, ())
    assert not fonts._readable("../a.ttf", usr, ())


def test_install_writes_the_list_where_matplotlib_looks_and_takes_it_out_of_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv(fonts.VARIABLE, json.dumps({"_version": "3.11.0", "ttflist": []}))
    fonts.install()
    assert fonts.VARIABLE not in os.environ
    assert [p.name for p in (tmp_path / "mpl").iterdir()] == ["fontlist-v3.11.0.json"]

    for bad in ("not json", json.dumps({"_version": "../../escaped"}), json.dumps([1])):
        monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "bad"))
        monkeypatch.setenv(fonts.VARIABLE, bad)
        fonts.install()
        assert fonts.VARIABLE not in os.environ
        assert not (tmp_path / "bad").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mpl"]


def test_a_font_list_that_cannot_be_made_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The list is a shortcut: whatever goes wrong making it, the sandbox starts without it."""
    from matplotlib import font_manager

    def broken(data: object, filename: object) -> None:
        raise RuntimeError("broken font cache")

    monkeypatch.setattr(font_manager, "json_dump", broken)
    assert fonts.font_list.__wrapped__(("/usr",)) is None
