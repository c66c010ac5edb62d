"""One writer per output file: a lock taken before anything is written there, held until the sink is closed.

Two runs writing one file would interleave their bytes (a video that does not play, JSON lines of both runs), so
the second is refused in one line before it touches anything. The lock is on ``.NAME.lock`` beside the file the
output path resolves to (a symbolic link and its target share one lock) rather than on the output itself, because
on Windows a lock keeps others from writing the locked bytes, FFmpeg's writes included. The operating system
drops it when its holder exits or is killed; the holder removes the file when done (after a kill it stays behind,
and the next run takes it over).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .. import filelock
from ..errors import SinkError


class OutputLock:
    """Hold the lock of ``output`` from construction until :meth:`release`.

    Raises:
        SinkError: another process holds it (the message names its pid when it can be read), or the lock file
            cannot be made beside the output.
    """

    def __init__(self, output: str | Path):
        target = Path(os.path.realpath(output))
        self.path = target.with_name(f".{target.name}.lock")
        try:
            handle = filelock.acquire(self.path, wait=False)
        except OSError as exc:
            raise SinkError(f"cannot write output: {output} (its lock file {self.path} cannot be made: "
                            f"{exc.strerror or exc})") from None
        if handle is None:
            raise SinkError(f"{output} is being written by another process{_holder(self.path)}; wait for it to end "
                            f"or write elsewhere")
        with contextlib.suppress(OSError):  # the pid only makes the message of a refused run clearer (a full disk)
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n".encode())
        self._handle = handle

    def release(self) -> None:
        """Remove the lock file and let go of it; safe to call more than once."""
        handle, self._handle = self._handle, None
        if handle is not None:
            filelock.release(handle, self.path)


def _holder(path: Path) -> str:
    """`` (pid N)`` from the lock file the holder wrote, or nothing where it cannot be read (Windows locks it)."""
    try:
        with open(path, "rb") as f:
            pid = f.read(32).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
