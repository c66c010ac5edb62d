"""Output files that keep what was written: opened (an earlier file replaced) only by their first write, written
whole, synced to disk about once a second, and cut back to their last whole record (a JSON line, a muxed packet)
when a write fails, so a power cut loses about a second and a full disk leaves no half record at the end."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from pathlib import Path

SYNC_EVERY_S = 1.0
"""Seconds between syncs of an output to the disk (what a power cut may lose)."""


class OutputFile:
    """A file for a sink to write, and for FFmpeg to write through PyAV (it has what PyAV's file objects need).

    Every write goes to the file whole or raises: the operating system may take part of one when the disk fills,
    which FFmpeg's own file writer would miss. Call :meth:`whole` after each whole record, :meth:`cut` after a
    failed one, and :meth:`close` at the end; each may raise the OSError of a failing disk.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = str(path)  # PyAV picks the container format by the name's extension
        self.closed = False
        # a named pipe (a reader taking the JSON lines as they come) can neither seek, be cut nor be synced
        self._regular = not self.path.exists() or stat.S_ISREG(self.path.stat().st_mode)
        self._fd: int | None = None
        self._end = 0  # where the last whole record ended
        self._synced: float | None = None

    @property
    def opened(self) -> bool:
        """Whether the first write has made the file (replacing an earlier one)."""
        return self._fd is not None

    def _file(self) -> int:
        if self._fd is None:
            if self.closed:
                raise ValueError(f"{self.path} is closed")
            # O_BINARY: Windows would otherwise write every "\n" as "\r\n"
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)
        return self._fd

    def write(self, data) -> int:
        view = memoryview(data)
        fd = self._file()
        while view:
            view = view[os.write(fd, view):]
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._file(), offset, whence)

    def tell(self) -> int:
        return os.lseek(self._file(), 0, os.SEEK_CUR)

    def seekable(self) -> bool:
        return self._regular

    def writable(self) -> bool:
        return True

    def whole(self) -> None:
        """Note that the file holds whole records up to its end, and sync it when :data:`SYNC_EVERY_S` has passed
        since the last sync (the first sync also syncs its folder, so that a new file's name survives too)."""
        if self._fd is None or not self._regular:
            return
        self._end = os.fstat(self._fd).st_size  # the size, not the position: AVI goes back to fill in its headers
        now = time.monotonic()
        if self._synced is None or now - self._synced >= SYNC_EVERY_S:
            os.fsync(self._fd)
            if self._synced is None:
                _sync_folder(self.path.parent)
            self._synced = now

    @property
    def whole_bytes(self) -> int:
        """How much of the file is whole records (what :meth:`cut` keeps)."""
        return self._end

    def cut(self) -> None:
        """Cut the file back to the end of its last whole record (shrinking a file needs no free space)."""
        if self._fd is not None and self._regular:
            os.ftruncate(self._fd, self._end)

    def close(self, sync: bool = True) -> None:
        """Sync the file (unless ``sync`` is off) and close it; safe to call more than once."""
        fd, self._fd, self.closed = self._fd, None, True
        if fd is None:
            return
        try:
            if sync and self._regular:
                os.fsync(fd)
        finally:
            os.close(fd)


def _sync_folder(folder: Path) -> None:
    # Windows cannot open a folder (and keeps a new file's name with the file): there is nothing to do there
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
