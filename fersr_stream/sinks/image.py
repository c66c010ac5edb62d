"""Annotated images out, for image and folder sources.

The first frame is written to ``path`` itself; later frames go next to it as ``<stem>_000001<ext>``,
``<stem>_000002<ext>`` ... numbered by write order (frame 2 of the run -> ``_000001``).
"""

from __future__ import annotations

import glob
import logging
import re
from pathlib import Path

import cv2

from ..errors import SinkError
from ..sources.images import IMAGE_EXTENSIONS
from ..types import Frame
from .base import Sink, check_writable
from .lock import OutputLock

log = logging.getLogger("fersr")


class ImageSink(Sink):
    """Write each frame as an image file (.png lossless; .jpg at OpenCV's default quality 95).

    Raises:
        SinkError: on construction, an unwritable path, not an image extension, or an output another process is
            writing (the first file's lock is held until :meth:`close`); on :meth:`write`, a file the disk refused.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise SinkError(f"not an image output: {path}; use one of {' '.join(IMAGE_EXTENSIONS)}")
        self._path = check_writable(path)
        self._lock = OutputLock(path)
        self._count, self._closed = 0, False

    def _target(self) -> Path:
        if self._count == 0:
            return self._path
        return self._path.with_name(f"{self._path.stem}_{self._count:06d}{self._path.suffix}")

    def write(self, frame: Frame) -> None:
        """Encode ``frame.image`` (RGB uint8) to the next file name."""
        target = self._target()
        ok, data = cv2.imencode(self._path.suffix, frame.image[..., ::-1])  # OpenCV encodes BGR
        if not ok:
            raise SinkError(f"cannot encode image {target}")
        try:
            data.tofile(str(target))  # tofile rather than imwrite: imwrite cannot open non-ASCII paths on Windows
        except OSError as exc:
            raise SinkError(f"cannot write {target}: {exc.strerror or exc}") from None
        self._count += 1

    def close(self) -> None:
        """Each image is complete once written: only the lock is let go, with a warning when numbered images
        beyond this run's last one are there (an earlier, longer run's: the sequence now mixes two runs)."""
        if self._closed:
            return
        self._closed = True
        try:
            numbered = re.compile(rf"{re.escape(self._path.stem)}_(\d{{6}}){re.escape(self._path.suffix)}")
            older = sorted(p.name for p in self._path.parent.glob(f"{glob.escape(self._path.stem)}_*")
                           if (m := numbered.fullmatch(p.name)) and int(m.group(1)) >= self._count)
            if self._count and older:
                log.warning("%s: %d image(s) from an earlier run remain after this run's %d (%s ...): delete them "
                            "or write to a new name", self._path, len(older), self._count, older[0])
        finally:
            self._lock.release()
