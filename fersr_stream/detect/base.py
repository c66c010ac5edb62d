"""What every face detector shares: the interface, the downscale before detection, and mapping boxes back.

Detectors look at a copy of the frame shrunk to ``detect_width`` (never enlarged), because detection cost grows
with pixels while faces worth classifying are rarely tiny; results are mapped back to source pixels here so each
backend only reports what it saw in the small image.
"""

from __future__ import annotations

import abc

import cv2
import numpy as np

from ..config import DetectConfig
from ..track import iou_matrix
from ..types import Faces

SAME_FACE = 0.5  # two boxes overlapping this much (IoU) are one face found twice


class Detector(abc.ABC):
    """A face detector: RGB uint8 (H, W, 3) frames in, one :class:`Faces` per frame out (boxes in source pixels).

    Backends are built as ``cls(config: DetectConfig, device)`` and find their weights in the cache (a command
    calls :func:`fersr_stream.detect.fetch` first). The class attributes declare what a backend can do; the hooks
    below have defaults, so the stream asks the attributes rather than probing for methods.

    Attributes:
        default_weights: the registry entry fetched when ``config.weights`` is unset (None: nothing to fetch).
        takes_weights: whether ``config.weights`` means anything to it.
        reads_tensors: :meth:`detect_tensors` reads frames on the compute device (else the stream gives it host
            frames, fetched from the device once where they were decoded there).
        follows: :meth:`refine` searches around known faces for a fraction of a whole-frame search.
        searches_within: :meth:`detect_within` searches given parts of a frame as a whole-frame search would.
        default_threshold: the score a face needs where ``config.score_threshold`` is unset (scores are not
            comparable across detectors).
    """

    default_weights: str | None = None
    takes_weights: bool = True
    reads_tensors: bool = False
    follows: bool = False
    searches_within: bool = False
    default_threshold: float = 0.6
    config: DetectConfig

    @property
    def score_threshold(self) -> float:
        """The score a face needs: ``config.score_threshold``, else :attr:`default_threshold`."""
        given = self.config.score_threshold
        return self.default_threshold if given is None else given

    @abc.abstractmethod
    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        """One Faces per (H, W, 3) uint8 RGB frame."""

    def detect_tensors(self, frames: list) -> list[Faces]:
        """One Faces per (3, H, W) uint8 RGB frame tensor on the compute device (where :attr:`reads_tensors`)."""
        raise NotImplementedError(f"{type(self).__name__} reads host frames only")

    def refine(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[Faces]:
        """One Faces per frame: the faces found near its (K, 4) ``boxes`` (x1, y1, x2, y2 source pixels, where faces
        were last seen), where :attr:`follows`."""
        raise NotImplementedError(f"{type(self).__name__} cannot search near known faces")

    def refine_tensors(self, frames: list, boxes: list[np.ndarray]) -> list[Faces]:
        """:meth:`refine` for (3, H, W) uint8 RGB frame tensors, where :attr:`follows` and :attr:`reads_tensors`."""
        raise NotImplementedError(f"{type(self).__name__} cannot search near known faces on a device")

    def detect_within(self, images: list[np.ndarray], rects: list[np.ndarray]) -> list[Faces]:
        """One Faces per frame: the faces found inside its (K, 4) ``rects`` (x0, y0, x1, y1 source pixels), where
        :attr:`searches_within`."""
        raise NotImplementedError(f"{type(self).__name__} cannot search parts of a frame")

    def detect_within_tensors(self, frames: list, rects: list[np.ndarray]) -> list[Faces]:
        """:meth:`detect_within` for (3, H, W) uint8 RGB frame tensors, where :attr:`searches_within` and
        :attr:`reads_tensors`."""
        raise NotImplementedError(f"{type(self).__name__} cannot search parts of a frame on a device")

    def warm_up(self, frame_size: tuple[int, int], batches: int) -> None:
        """Run once on the detect stage's thread before the stream: on CUDA, one batch of each of 1..``batches``
        frames of ``frame_size`` (width, height), so cuDNN's per-thread plans are built before the first frame.
        Nothing by default (host detectors)."""


def check_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is an (H, W, 3) uint8 RGB frame."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"detect: expected an (H, W, 3) uint8 RGB frame, got {got}")


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Shrink ``image`` (H, W) or (H, W, C) to ``size`` (width, height) without aliasing, fast.

    Averages blocks of the largest whole factor that fits (OpenCV's ``INTER_AREA`` is a quick block mean for
    whole factors, but many times slower for others: ``python -m fersr_stream.bench.choices``), then interpolates
    bilinearly the rest of the way (less than 2x, where bilinear aliases only fine texture, a little).
    """
    h, w = image.shape[:2]
    factor = min(w // size[0], h // size[1])
    if factor >= 2:
        image = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def shrunk_size(height: int, width: int, target: int | None) -> tuple[float, tuple[int, int]]:
    """Every detector's shrinking rule: the scale ``small / source`` (<= 1) and the (h, w) of a ``height`` x
    ``width`` frame made ``target`` pixels wide, keeping aspect; never enlarged (nor for a ``target`` of None or
    <= 0)."""
    if target is None or target <= 0 or width <= target:
        return 1.0, (height, width)
    scale = target / width
    return scale, (max(1, round(height * scale)), target)


def downscale(image: np.ndarray, width: int, fast: bool = False) -> tuple[np.ndarray, float]:
    """Shrink ``image`` to ``width`` pixels wide (keeping aspect); never enlarge.

    ``fast`` uses :func:`shrink` instead of an exact ``INTER_AREA`` (which the torch detectors' GPU twins
    reproduce, so they keep it).

    Returns:
        the image to detect on (``image`` itself when no shrinking is needed) and the scale ``small / source``
        (<= 1) that maps source pixels to it.
    """
    scale, (h, w) = shrunk_size(*image.shape[:2], width)
    if scale == 1.0:
        return image, 1.0
    return (shrink(image, (w, h)) if fast else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)), scale


def to_faces(boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray | None, scale: float,
             frame_shape: tuple[int, ...], min_face: float = 0.0) -> Faces:
    """Map detections made on a downscaled frame back to source pixels and validate them.

    Args:
        boxes: (N, 4) x1, y1, x2, y2 in downscaled pixels.
        scores: (N,) in [0, 1].
        landmarks: (N, 5, 2) in downscaled pixels, or None.
        scale: downscaled / source size, as returned by :func:`downscale`.
        frame_shape: the source frame's shape; boxes are clipped to it.
        min_face: faces narrower than this many source pixels (before clipping) are dropped.

    Returns:
        Faces with float32 boxes clipped to the frame; boxes left with no area after clipping are dropped.
    """
    h, w = frame_shape[:2]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4) / np.float32(scale)
    big_enough = boxes[:, 2] - boxes[:, 0] >= min_face  # judged before clipping: a face half out is still big
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    scores = np.asarray(scores, np.float32).reshape(-1).clip(0.0, 1.0)
    if landmarks is not None:
        landmarks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2) / np.float32(scale)
    keep = big_enough & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Faces(boxes[keep], scores[keep], None if landmarks is None else landmarks[keep])


def join(parts: list[Faces]) -> Faces:
    """The faces of ``parts`` in order (one detector's: all have landmarks, or none)."""
    if not parts:
        return Faces.empty()
    landmarks = [p.landmarks for p in parts]
    return Faces(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]),
                 None if any(lm is None for lm in landmarks) else np.concatenate(landmarks))


def distinct(faces: Faces) -> Faces:
    """``faces`` without those that overlap a better-scoring one by :data:`SAME_FACE` or more (greedy non-maximum
    suppression), in their original order."""
    overlap = iou_matrix(faces.boxes, faces.boxes)
    keep: list[int] = []
    for i in np.argsort(-faces.scores, kind="stable"):
        if all(overlap[i, j] < SAME_FACE for j in keep):
            keep.append(int(i))
    return faces.select(np.array(sorted(keep), np.int64))
