"""The records every dataset loader returns: labelled images plus the files it set aside, and why.

A loader never drops a file silently: each excluded, renamed or unusual file becomes an :class:`Issue` that
``fersr-train data`` prints and every run lists in its folder. Each dataset also says how its faces are framed
(which decides how :mod:`training.faces` crops them), which emotions its layout holds, and, through its samples,
which split protocols it supports (person ids, an official train/validation/test split).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fersr_stream.classify.labels import Emotion
from fersr_stream.errors import FersrError, SourceError
from fersr_stream.sources.images import read_image

NEAR_BLACK_MEAN = 20.0  # mean grey level (0..255) below which an image holds no usable face
# How the faces sit in a dataset's images (Dataset.framing), which decides how training.faces cuts them.
FRAMINGS = {"kdef": "KDEF's fixed studio framing (one box fits every image)",
            "portrait": "portraits or full frames with one face somewhere in them",
            "face": "already cropped (and often aligned) by the distributor"}
PARTS = ("train", "val", "test")  # an official split's parts


class DatasetError(FersrError):
    """A dataset folder that is missing, not of the expected shape, empty or too partial to study."""


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    Attributes:
        key: stable unique id (KDEF: the canonical name such as ``AF01AFS``; folders: the relative path).
        path: the file (for a table dataset such as FER2013's CSV, the table).
        label: its emotion.
        person: identity shared across that person's images (KDEF: gender + number, e.g. ``F01``), or None.
        session: KDEF session A/B, or None.
        angle: KDEF view FL/HL/S/HR/FR, or None.
        part: the dataset's official split this image belongs to (train | val | test), or None.
        row: for a table dataset, the image's index in :attr:`Dataset.table`.
    """

    key: str
    path: Path
    label: Emotion
    person: str | None = None
    session: str | None = None
    angle: str | None = None
    part: str | None = None
    row: int | None = None


@dataclass(frozen=True)
class Issue:
    """A file the loader changed or set aside. ``action``: excluded | renamed | kept."""

    file: str  # path relative to the dataset root
    action: str
    reason: str


def set_aside(issues) -> str:
    """Why a loader found nothing usable, to end its error: the commonest reasons the files were excluded, e.g.
    ``"; excluded: 14 corrupt (truncated JPEG)"`` (empty when nothing was excluded)."""
    reasons = collections.Counter(i.reason for i in issues if i.action == "excluded")
    if not reasons:
        return ""
    shown = [f"{n} {reason}" for reason, n in reasons.most_common(3)]
    more = sum(reasons.values()) - sum(n for _, n in reasons.most_common(3))
    return "; excluded: " + ", ".join(shown) + (f", {more} for other reasons (fersr-train data lists them)"
                                                 if more else "")


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset.

    Attributes:
        framing: one of :data:`FRAMINGS`.
        emotions: the emotions its layout holds (CK+48 has no neutral faces); each must have images.
        table: (R, H, W) uint8 grey images of a table dataset (FER2013's CSV), indexed by ``Sample.row``.
    """

    root: Path
    kind: str
    samples: tuple[Sample, ...]
    issues: tuple[Issue, ...]
    synthetic: bool = False  # drawn by training.synthetic (its marker file is beside the tree): never KDEF results
    framing: str = "kdef"
    emotions: tuple[Emotion, ...] = tuple(Emotion)
    table: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, sample: Sample) -> np.ndarray:
        """(H, W, 3) uint8 RGB pixels of ``sample``."""
        if sample.row is not None:
            return cv2.cvtColor(self.table[sample.row], cv2.COLOR_GRAY2RGB)
        return read_rgb(sample.path)

    @property
    def protocols(self) -> tuple[str, ...]:
        """The split protocols this dataset supports: ``subject`` where every image has a person, ``official``
        where every image has an official part, ``image`` always."""
        known = ["image"]
        if self.samples and all(s.person is not None for s in self.samples):
            known.insert(0, "subject")
        if self.samples and all(s.part is not None for s in self.samples):
            known.append("official")
        return tuple(known)

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 canonical emotion indices."""
        return np.array([int(s.label) for s in self.samples], np.int64)

    def counts(self) -> dict:
        """Images per emotion, and per official part, angle, session and person where known."""
        out = {"images": len(self.samples),
               "emotion": {e.code: 0 for e in Emotion}}
        for s in self.samples:
            out["emotion"][s.label.code] += 1
        for attr in ("part", "angle", "session", "person"):
            values = collections.Counter(getattr(s, attr) for s in self.samples if getattr(s, attr) is not None)
            if values:
                out[attr] = dict(sorted(values.items()))
        return out

    def summary(self) -> dict:
        """Counts plus every issue, for ``fersr-train data --json`` and the run folder."""
        return {"root": str(self.root), "kind": self.kind, "synthetic": self.synthetic, "framing": self.framing,
                "protocols": list(self.protocols), "counts": self.counts(), "issues": [vars(i) for i in self.issues]}

    def require_complete(self) -> None:
        """Raise DatasetError unless every emotion of the layout has images (a study of them needs each)."""
        if not self.samples:
            raise DatasetError(f"no usable images found in {self.root}{set_aside(self.issues)}")
        counts = self.counts()["emotion"]
        missing = [e.code for e in self.emotions if counts[e.code] == 0]
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
    return judge_pixels(small), _header_size(buf, small)


def judge_pixels(grey: np.ndarray) -> str | None:
    """Why a (H, W) uint8 grey image holds no usable face (near-black, or one flat grey level), or None."""
    mean = float(grey.mean())
    if mean < NEAR_BLACK_MEAN:
        return f"near-black (mean grey {mean:.1f}/255)"
    if int(grey.max()) == int(grey.min()):
        return f"blank (every pixel {int(grey.max())}/255)"
    return None


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
    """(H, W, 3) uint8 RGB (grey, 16-bit and alpha images converted); one that cannot be read is a DatasetError."""
    try:
        return read_image(path)
    except SourceError as exc:
        raise DatasetError(str(exc)) from None
