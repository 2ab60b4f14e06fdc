"""Ctrl-C is noticed even where Python drops the KeyboardInterrupt (a weakref callback)."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from grader import _interrupt


def test_a_dropped_ctrl_c_is_still_seen_by_the_next_check(capsys: pytest.CaptureFixture[str]):
    class Owner:
        pass

    import weakref

    hook = sys.unraisablehook
    with _interrupt.recorded():
        owner = Owner()
        # The interrupt arrives inside a weakref callback, where Python only prints it.
        kept = weakref.ref(owner, lambda _: os.kill(os.getpid(), signal.SIGINT))
        del owner
        assert kept() is None
        assert _interrupt.REQUESTED.is_set()
        with pytest.raises(KeyboardInterrupt):
            _interrupt.check()
    assert "Traceback" not in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "handler restored"
    assert sys.unraisablehook is hook


def test_without_ctrl_c_check_does_nothing():
    with _interrupt.recorded():
        _interrupt.check()


def test_ctrl_c_inside_a_deferred_block_is_raised_at_its_end():
    steps = []
    with _interrupt.recorded():
        with pytest.raises(KeyboardInterrupt):
            with _interrupt.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                steps.append("written")
                steps.append("counted")
        assert steps == ["written", "counted"]
