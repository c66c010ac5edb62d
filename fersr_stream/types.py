"""The record that flows through the stream: one ``Frame`` holding its ``Faces``.

Conventions (checked by the validators below, which say expected vs. actual):
- images are RGB uint8, HWC; BGR exists only at OpenCV calls;
- boxes are pixel coordinates ``x1, y1, x2, y2`` in the source frame;
- probabilities are indexed in :class:`fersr_stream.classify.labels.Emotion` order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from .crops import CropBatch

N_EMOTIONS = 7


def _check(name: str, array: np.ndarray | None, shape: tuple, dtype, n: int | None = None) -> None:
    """Raise ValueError naming the field when ``array`` does not match ``shape`` (None = any) and ``dtype``."""
    if array is None:
        return
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name}: expected numpy array, got {type(array).__name__}")
    want = tuple(n if s == "N" else s for s in shape)
    ok = array.ndim == len(want) and all(w is None or w == a for w, a in zip(want, array.shape))
    if not ok or array.dtype != dtype:
        pretty = tuple("*" if s is None else s for s in want)
        raise ValueError(f"{name}: expected shape {pretty} {np.dtype(dtype)}, got {array.shape} {array.dtype}")


def _check_tensor(name: str, tensor, shape: tuple) -> None:
    """Like :func:`_check` for an optional uint8 torch tensor (a frame on the compute device)."""
    if tensor is None:
        return
    import torch  # here, not at the top: records are built and read without touching torch

    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name}: expected a torch tensor, got {type(tensor).__name__}")
    ok = tensor.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, tensor.shape))
    if not ok or tensor.dtype != torch.uint8:
        pretty = tuple("*" if s is None else s for s in shape)
        raise ValueError(f"{name}: expected shape {pretty} torch.uint8, got {tuple(tensor.shape)} {tensor.dtype}")


@dataclass(frozen=True)
class Faces:
    """The faces of one frame; every array's first axis is the face index (N may be 0).

    Attributes:
        boxes: (N, 4) float32, ``x1, y1, x2, y2`` in source-frame pixels.
        scores: (N,) float32 detector confidence in [0, 1].
        landmarks: (N, 5, 2) float32 (eyes, nose, mouth corners; subject's right eye first) or None.
        affines: (N, 2, 3) float32 maps source-frame pixels to crop pixels, or None before alignment.
        track_ids: (N,) int64, -1 until the tracker assigns one.
        probs: (N, 7) float32 emotion probabilities (smoothed per track after tracking), or None.
        restored: (N,) bool, True where the enhancer ran (or was reused) for that face.
        crops: the N aligned crops as the classifier reads them (cut, then degraded and/or restored), on the host
            or on the compute device (:class:`fersr_stream.crops.CropBatch`), or None before cropping.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None
    affines: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    probs: np.ndarray | None = None
    restored: np.ndarray | None = None
    crops: CropBatch | None = None

    def __post_init__(self) -> None:
        n = len(self.boxes)
        _check("boxes", self.boxes, ("N", 4), np.float32, n)
        _check("scores", self.scores, ("N",), np.float32, n)
        _check("landmarks", self.landmarks, ("N", 5, 2), np.float32, n)
        _check("affines", self.affines, ("N", 2, 3), np.float32, n)
        _check("probs", self.probs, ("N", N_EMOTIONS), np.float32, n)
        _check("restored", self.restored, ("N",), np.bool_, n)
        if self.track_ids is None:
            object.__setattr__(self, "track_ids", np.full(n, -1, np.int64))
        _check("track_ids", self.track_ids, ("N",), np.int64, n)
        if self.crops is not None and len(self.crops) != n:
            raise ValueError(f"crops: expected {n} crops, got {len(self.crops)}")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> "Faces":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def replace(self, **changes) -> "Faces":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def select(self, keep: np.ndarray) -> "Faces":
        """The subset of faces given by a boolean mask or an index array."""
        changes = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        changes = {name: value[keep] for name, value in changes.items() if value is not None and name != "crops"}
        crops = None if self.crops is None else self.crops.select(keep)
        return dataclasses.replace(self, **changes, crops=crops)

    @property
    def widths(self) -> np.ndarray:
        """(N,) float32 box widths in source-frame pixels."""
        return self.boxes[:, 2] - self.boxes[:, 0]


@dataclass(frozen=True)
class Frame:
    """One decoded frame and what the stages found in it.

    Attributes:
        index: 0-based position in the source (decode order as presented).
        image: (H, W, 3) uint8 RGB; None only while ``device_image`` holds the frame (GPU decode), until the
            overlay copies it back.
        pts: presentation timestamp in ``time_base`` units, or None when the source has none.
        time_base: seconds per pts tick, or None.
        faces: the faces found so far (empty until detection).
        device_image: (3, H, W) uint8 RGB torch tensor on the compute device (the tensor path), or None.
        name: the picture's file name (image and folder sources), else None.
        source: the number of the source it came from, when a run reads several (0 for the first or only one).
    """

    index: int
    image: np.ndarray | None
    pts: int | None = None
    time_base: Fraction | None = None
    faces: Faces = field(default_factory=Faces.empty)
    device_image: torch.Tensor | None = None
    name: str | None = None
    source: int = 0

    def __post_init__(self) -> None:
        if self.image is None and self.device_image is None:
            raise ValueError("image: expected (H, W, 3) uint8 RGB (or a device_image), got None")
        _check("image", self.image, (None, None, 3), np.uint8)
        hw = (None, None) if self.image is None else self.image.shape[:2]
        _check_tensor("device_image", self.device_image, (3, *hw))

    @property
    def time(self) -> float | None:
        """Presentation time in seconds, or None."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        if self.image is None:
            return self.device_image.shape[2], self.device_image.shape[1]
        return self.image.shape[1], self.image.shape[0]

    def replace(self, **changes) -> "Frame":
        return dataclasses.replace(self, **changes)
