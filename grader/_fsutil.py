"""Small filesystem helpers: writes that never leave a half-written file behind, and reads that
never follow a link or block on a special file."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class NotRegularFile(OSError):
    """A path that is a symbolic link, a folder or a special file (FIFO, device, socket)."""

    def __init__(self, path: Path, found: str) -> None:
        super().__init__(f"{path.name} is {found}")
        self.found = found
        """What the path is, in words: ``"a symbolic link"``, ``"a folder"``, ``"a FIFO"``..."""


class TooLarge(OSError):
    """A regular file over the size limit; read no further than the limit."""

    def __init__(self, path: Path, size: int, limit: int) -> None:
        super().__init__(f"{path.name} is {size} bytes, over {limit}")
        self.size = size
        self.limit = limit


_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, read only when it is a regular file of at most ``limit`` bytes.

    Opened with ``O_NOFOLLOW | O_NONBLOCK``: a symbolic link is refused without looking at its
    target, and a FIFO or device neither blocks nor streams. Raises :class:`NotRegularFile`,
    :class:`TooLarge` or the ``OSError`` of the open itself.
    """
    if not _NOFOLLOW and os.path.islink(path):  # Windows: no O_NOFOLLOW (and no FIFOs)
        raise NotRegularFile(path, "a symbolic link")
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise NotRegularFile(path, "a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO with no writer on some systems
            raise NotRegularFile(path, "a special file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(path, _kind(info.st_mode))
        if info.st_size > limit:
            raise TooLarge(path, info.st_size, limit)
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:  # the file grew while it was read
            raise TooLarge(path, len(data), limit)
        return data
    finally:
        os.close(fd)
