"""Still images as a source: one image file, or a folder of images in natural name order.

Frames get ``pts = index`` and ``time_base = 1 / fps`` (``fps`` from the source config), so the outputs of an
image run have a timeline like any video. Grayscale, alpha and 16-bit images become RGB uint8.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..errors import SourceError
from ..types import Frame
from .base import Source, SourceInfo

log = logging.getLogger("fersr")

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


def is_image_path(path: str | Path) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB.

    Gray becomes three equal channels, alpha is dropped, 16-bit is scaled to 8-bit and float images are read
    as [0, 1]. EXIF orientation is applied.

    Raises:
        SourceError: the file cannot be read or is not an image OpenCV can decode.
    """
    try:
        # np.fromfile + imdecode rather than imread: imread cannot open non-ASCII paths on Windows.
        data = np.fromfile(str(path), np.uint8)
    except OSError as exc:
        raise SourceError(f"cannot read image {path}: {exc.strerror or exc}") from None
    # IMREAD_COLOR converts gray and drops alpha; ANYDEPTH keeps 16-bit and float so they are scaled, not cut.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) if data.size else None
    if image is None:
        raise SourceError(f"cannot decode image: {path}")
    if image.dtype == np.uint16:
        image = np.round(image / 257.0).astype(np.uint8)
    elif image.dtype.kind == "f":
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise SourceError(f"unsupported pixel type {image.dtype} in image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _natural_key(path: Path) -> list:
    """Sort key putting frame2.png before frame10.png (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", path.name.lower())
    return [int(p) if i % 2 else p for i, p in enumerate(parts)]


def list_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, in natural name order (frame2 before frame10)."""
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_path(p)), key=_natural_key)


class ImageSource(Source):
    """One image file or the images of a folder, as frames at ``fps``.

    In a folder, images may differ in size (``info`` gives the first one's) and unreadable ones are skipped with
    a warning; ``info.frame_count`` counts the image files, so it is an upper bound when some are skipped.

    Args:
        path: an image file or a folder holding images.
        fps: frame rate given to the frames (pts = index, time_base = 1 / fps).

    Raises:
        SourceError: an unreadable single image, a folder with no images, or none that decode.
    """

    def __init__(self, path: str | Path, fps: float):
        path = Path(path)
        if not fps > 0:
            raise SourceError(f"source fps must be > 0 for image sources, got {fps}")
        self._folder = path.is_dir()
        self._paths = list_images(path) if self._folder else [path]
        if not self._paths:
            raise SourceError(f"no images in folder: {path} (looked for {' '.join(IMAGE_EXTENSIONS)})")
        first = self._first_readable(path)
        rate = Fraction(fps).limit_denominator(1001)
        self.info = SourceInfo(width=first.shape[1], height=first.shape[0], fps=float(rate), time_base=1 / rate,
                               frame_count=len(self._paths), live=False, path=None, has_audio=False,
                               stills=True)

    def _first_readable(self, path: Path) -> np.ndarray:
        for candidate in self._paths:
            try:
                return read_image(candidate)
            except SourceError:
                if not self._folder:
                    raise
        raise SourceError(f"no readable images in folder: {path} ({len(self._paths)} image files, none decode)")

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for path in self._paths:
            try:
                image = read_image(path)
            except SourceError as exc:
                log.warning("skipped (%s)", exc)
                continue
            yield Frame(index=index, image=image, pts=index, time_base=self.info.time_base, name=path.name)
            index += 1

    def close(self) -> None:
        """Nothing stays open between frames; present for the :class:`Source` interface."""
