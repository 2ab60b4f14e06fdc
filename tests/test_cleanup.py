"""The sweeper of killed gradings' leftovers: only the grader's own entries, of dead processes,
owned by this user, older than a minute."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader._cleanup import owner_pid, remove_owned_by, sweep_stale

OLD = time.time() - 120


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _folder(tmp: Path, name: str, *, old: bool = True) -> Path:
    """A folder with a file and a read-only subfolder inside (as a sandbox may leave)."""
    path = tmp / name
    (path / "scratch-1").mkdir(parents=True)
    (path / "scratch-1" / "a.npy").write_bytes(b"x" * 10)
    os.chmod(path / "scratch-1", 0o500)
    if old:
        os.utime(path, (OLD, OLD))
    return path


def _file(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_text("{}")
    os.utime(path, (OLD, OLD))
    return path


def test_owner_pid_reads_only_the_grader_names() -> None:
    assert owner_pid("grader-ray-123-abcd") == 123
    assert owner_pid("grader-sbx-9-x") == 9
    assert owner_pid("grader-job-77-k.json") == 77
    assert owner_pid("grader-probe-5-x") == 5
    assert owner_pid("grader-fonts-6-y") == 6
    assert owner_pid("grader-model-7-z") == 7
    for other in ("grader-model-abc", "grader-ray-abc", "grader-ray-12", "tmpq.json", "rt9"):
        assert owner_pid(other) is None


def test_sweep_removes_only_stale_entries_of_dead_processes(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    stale = {_folder(tmp_path, f"grader-ray-{dead}-a1"), _folder(tmp_path, f"grader-sbx-{dead}-b2"),
             _file(tmp_path, f"grader-job-{dead}-c3.json"),
             # a checking process killed while probing the isolation level, writing the font
             # list or loading a model leaves these
             _folder(tmp_path, f"grader-probe-{dead}-j1"), _folder(tmp_path, f"grader-fonts-{dead}-k2"),
             _folder(tmp_path, f"grader-model-{dead}-l3")}
    kept = {_folder(tmp_path, f"grader-ray-{alive}-d4"),          # its process runs
            _folder(tmp_path, f"grader-sbx-{dead}-e5", old=False),  # just made
            _folder(tmp_path, "grader-model-f6"),                   # not a pid-named entry
            _file(tmp_path, f"grader-ray-{dead}-g7"),               # a file where a folder goes
            _folder(tmp_path, f"grader-job-{dead}-h8")}             # a folder where a file goes
    link = tmp_path / f"grader-ray-{dead}-i9"
    link.symlink_to(tmp_path / "grader-model-f6")
    kept.add(link)

    removed = sweep_stale(tmp_path)

    assert set(removed) == stale
    assert not any(os.path.lexists(p) for p in stale)
    assert all(os.path.lexists(p) for p in kept)
    assert (tmp_path / "grader-model-f6" / "scratch-1" / "a.npy").exists()  # link not followed
    assert sweep_stale(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder of another user needs root")
def test_sweep_keeps_other_users_folders(tmp_path: Path) -> None:
    other = _folder(tmp_path, f"grader-ray-{_dead_pid()}-a1")
    os.chown(other, 65534, 65534)
    os.utime(other, (OLD, OLD))
    assert sweep_stale(tmp_path) == []
    assert other.exists()


def test_remove_owned_by_takes_fresh_entries_of_ended_processes(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    fresh = _folder(tmp_path, f"grader-sbx-{dead}-a1", old=False)
    running = _folder(tmp_path, f"grader-sbx-{alive}-b2", old=False)
    other = _folder(tmp_path, f"grader-sbx-{_dead_pid()}-c3", old=False)
    assert remove_owned_by({dead, alive}, tmp_path) == [fresh]
    assert not fresh.exists() and running.exists() and other.exists()


def test_every_temporary_folder_of_a_grading_names_its_process(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """What a checking process makes in the temporary folder while it grades (probing the
    isolation level, writing the font list) carries its pid, so that the sweep can remove it
    when the process is killed there."""
    from grader.sandbox import fonts, isolation

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    made: list[str] = []
    real = __import__("tempfile").TemporaryDirectory

    def recording(*args, **kwargs):
        folder = real(*args, **kwargs)
        made.append(Path(folder.name).name)
        return folder

    monkeypatch.setattr("tempfile.TemporaryDirectory", recording)
    assert isolation._try_level.__wrapped__("rlimits") is None
    fonts.font_list.__wrapped__(("/usr/share/fonts",))
    assert len(made) == 2
    assert all(owner_pid(name) == os.getpid() for name in made), made


@pytest.mark.skipif(os.geteuid() != 0, reason="the scratch goes to uid 65534 only under root")
def test_a_probe_folder_stays_the_graders_for_the_sweep(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe gives its sandbox's scratch to uid 65534, but the pid-named folder around it
    stays the grader's: the sweep removes only this user's entries."""
    from grader.sandbox import isolation

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    owners: list[tuple[int | None, int, int]] = []
    real = isolation._give_to_nobody

    def giving(scratch: Path) -> None:
        real(scratch)
        (entry,) = tmp_path.iterdir()
        owners.append((owner_pid(entry.name), entry.stat().st_uid, scratch.stat().st_uid))

    mode = isolation._bubblewrap_mode()
    if not mode:
        pytest.skip("bubblewrap does not work here")
    monkeypatch.setattr(isolation, "_give_to_nobody", giving)
    assert isolation._try_level.__wrapped__("bubblewrap", mode) is None
    assert owners == [(os.getpid(), os.geteuid(), isolation.NOBODY)]
