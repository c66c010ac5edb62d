"""Annotated images out, for image and folder sources.

The first frame is written to ``path`` itself; later frames go next to it as ``<stem>_000001<ext>``,
``<stem>_000002<ext>`` ... numbered by write order (frame 2 of the run -> ``_000001``).
"""

from __future__ import annotations

from pathlib import Path

import cv2

from ..errors import SinkError
from ..sources.images import IMAGE_EXTENSIONS
from ..types import Frame
from .base import Sink, check_writable
from .lock import OutputLock


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
        self._count = 0

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
        """Each image is complete once written: only the lock is let go."""
        self._lock.release()
