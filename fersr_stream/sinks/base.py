"""What every sink is: ``write(frame)`` then ``close()`` (idempotent, finalizes the output); a context manager.

A file sink checks its path and takes the output's lock (:mod:`.lock`) when it is made, and opens the file with the
first frame: until then an earlier file there is left as it was, so a run that fails before its first frame (or
decodes none) replaces nothing.
"""

from __future__ import annotations

import abc
import os
import shlex
from pathlib import Path

from ..errors import SinkError
from ..types import Frame


class Sink(abc.ABC):
    """Takes annotated frames (``frame.image`` RGB uint8, ``frame.faces`` the results) in order.

    Attributes:
        wants_stop: True once the sink asks the run to end (a window closed with q or Esc).
    """

    wants_stop = False

    @abc.abstractmethod
    def write(self, frame: Frame) -> None:
        """Add one frame to the output."""

    @abc.abstractmethod
    def close(self) -> None:
        """Finalize the output so it is complete and readable; safe to call more than once."""

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_writable(path: str | Path) -> Path:
    """Return ``path`` as a Path if a file can be created or replaced there, else raise :class:`SinkError`."""
    path = Path(path)
    parent = path.parent
    if not parent.exists():
        raise SinkError(f"cannot write output: {path} (directory {parent} does not exist; make it first: "
                        f"mkdir -p {shlex.quote(str(parent))})")
    if not parent.is_dir():
        raise SinkError(f"cannot write output: {path} ({parent} is not a directory)")
    if path.is_dir():
        raise SinkError(f"cannot write output: {path} (is a directory)")
    if path.is_symlink() and not path.exists():  # writing would make a file wherever the link points
        raise SinkError(f"cannot write output: {path} (a symbolic link to {os.readlink(path)}, which does not "
                        f"exist)")
    # opening for append is the real test (permission bits are no proof: root passes them where the file system
    # refuses, as in /proc or on a read-only mount); it changes nothing in a file that exists and removes one it made
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise SinkError(f"cannot write output: {path} ({exc.strerror or exc})") from None
    if not existed:
        path.unlink()
    return path
