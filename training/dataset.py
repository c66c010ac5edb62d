"""The records every dataset loader returns: labelled image files plus the files it set aside, and why.

A loader never drops a file silently: each excluded, renamed or unusual file becomes an :class:`Issue` that
``fersr-train data`` prints and every run lists in its folder.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fersr_stream.classify.labels import Emotion
from fersr_stream.errors import FersrError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
NEAR_BLACK_MEAN = 20.0  # mean grey level (0..255) below which an image holds no usable face


class DatasetError(FersrError):
    """A dataset folder that is missing, not of the expected shape, empty or too partial to study."""


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    Attributes:
        key: stable unique id (KDEF: the canonical name such as ``AF01AFS``; folders: the relative path).
        path: the file.
        label: its emotion.
        person: identity shared across that person's images (KDEF: gender + number, e.g. ``F01``), or None.
        session: KDEF session A/B, or None.
        angle: KDEF view FL/HL/S/HR/FR, or None.
    """

    key: str
    path: Path
    label: Emotion
    person: str | None = None
    session: str | None = None
    angle: str | None = None


@dataclass(frozen=True)
class Issue:
    """A file the loader changed or set aside. ``action``: excluded | renamed | kept."""

    file: str  # path relative to the dataset root
    action: str
    reason: str


@dataclass(frozen=True)
class Dataset:
    root: Path
    kind: str
    samples: tuple[Sample, ...]
    issues: tuple[Issue, ...]
    synthetic: bool = False  # drawn by training.synthetic (its marker file is beside the tree): never KDEF results

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 canonical emotion indices."""
        return np.array([int(s.label) for s in self.samples], np.int64)

    def counts(self) -> dict:
        """Images per emotion, angle, session and person (the last three only where known)."""
        out = {"images": len(self.samples),
               "emotion": {e.code: 0 for e in Emotion}}
        for s in self.samples:
            out["emotion"][s.label.code] += 1
        for attr in ("angle", "session", "person"):
            values = collections.Counter(getattr(s, attr) for s in self.samples if getattr(s, attr) is not None)
            if values:
                out[attr] = dict(sorted(values.items()))
        return out

    def summary(self) -> dict:
        """Counts plus every issue, for ``fersr-train data --json`` and the run folder."""
        return {"root": str(self.root), "kind": self.kind, "synthetic": self.synthetic, "counts": self.counts(),
                "issues": [vars(i) for i in self.issues]}

    def require_complete(self) -> None:
        """Raise DatasetError unless every emotion has images (a 7-way study needs all seven)."""
        if not self.samples:
            raise DatasetError(f"no usable images found in {self.root}")
        missing = [code for code, n in self.counts()["emotion"].items() if n == 0]
        if missing:
            raise DatasetError(f"partial dataset in {self.root}: no images of {', '.join(missing)}")


def check_image(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """Check an image by content.

    Returns:
        (reason it is unusable or None, (height, width) of the full image or None when unreadable).
    """
    data = path.read_bytes()
    if path.suffix.lower() in (".jpg", ".jpeg") and not data.rstrip(b"\0")[-2:] == b"\xff\xd9":
        return "corrupt (truncated JPEG)", None
    buf = np.frombuffer(data, np.uint8)
    # A quarter-scale decode is enough to judge brightness and much faster than a full one.
    small = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_4) if buf.size else None
    if small is None:
        return "corrupt (cannot be decoded)", None
    height, width = _header_size(buf, small)
    mean = float(small.mean())
    if mean < NEAR_BLACK_MEAN:
        return f"near-black (mean grey {mean:.1f}/255)", (height, width)
    return None, (height, width)


def _header_size(buf: np.ndarray, small: np.ndarray) -> tuple[int, int]:
    """Full-resolution (height, width) without a full decode where the format allows it."""
    data = buf.tobytes()
    if data[:2] == b"\xff\xd8":  # JPEG: the SOFn segment carries the size
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                break
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
            i += 2 + length
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return (image.shape[0], image.shape[1]) if image is not None else (small.shape[0] * 4, small.shape[1] * 4)


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; a file that cannot be decoded is a DatasetError."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot decode image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS
