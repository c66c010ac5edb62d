"""Detect-and-follow for video: the whole frame is searched every ``every`` frames, and in between only the
regions around the faces found last.

Consecutive frames of a video hold their faces in nearly the same place, so a detector that can search near known
faces (:meth:`Detector.refine`: MTCNN runs its last network, O-Net, on them; Haar searches a region around each)
follows them for a fraction of a whole-frame search, and gives their landmarks every frame. A face that enters the
picture is found at the next whole-frame search, at most ``every - 1`` frames late; a new shot (the picture changes
at once: a cut, the first frame after a black one) is searched whole at once. A known face that is not found
(by a whole-frame search or near its last place: a missed detection, a turn of the head) is looked for at its last
place for up to ``every`` more frames, so a detector that misses a face now and then does not lose it. Stills
(images, folders) are unrelated to each other and always get the whole-frame search.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..track import iou_matrix
from ..types import Faces
from .base import SAME_FACE, Detector, distinct, join

_FOUND_AGAIN = 0.3  # a face found near a known one overlaps its last box at least this much (IoU)
_THUMBNAIL = (32, 18)  # (width, height) of the gray thumbnails compared to tell a new shot
_NEW_SHOT = 12.0  # their mean absolute difference (0..255) from the frame before, above which the shot is new


class FollowingDetector(Detector):
    """Wraps a detector that :attr:`~Detector.follows` (see module docstring); reads the frames its detector reads.

    Frames must come in order, from one video, through one thread.
    """

    follows = False

    def __init__(self, detector: Detector, every: int):
        self.detector, self.every = detector, every
        self.reads_tensors = detector.reads_tensors
        self._count = 0
        self._regions = np.zeros((0, 4), np.float32)  # where the faces were last seen, source pixels
        self._misses = np.zeros(0, np.int64)  # frames since each region's face was last found
        self._thumbnail: np.ndarray | None = None  # of the frame before

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        return [self._detect_one(image, self.detector.detect, self.detector.refine) for image in images]

    def detect_tensors(self, frames: list) -> list[Faces]:
        return [self._detect_one(frame, self.detector.detect_tensors, self.detector.refine_tensors)
                for frame in frames]

    def warm_up(self, frame_size: tuple[int, int], batches: int) -> None:
        self.detector.warm_up(frame_size, batches)

    def _detect_one(self, frame, search, refine) -> Faces:
        thumbnail = _thumbnail(frame)
        if self._thumbnail is not None and np.abs(thumbnail - self._thumbnail).mean() > _NEW_SHOT:
            self._count = 0  # a new shot: search it whole now, and count from here
        self._thumbnail = thumbnail
        whole = self._count % self.every == 0
        self._count += 1
        faces = search([frame])[0] if whole else None
        # known faces the whole-frame search did not find again are looked for where they were
        lost = np.ones(len(self._regions), bool)
        if faces is not None and len(faces) and len(self._regions):
            lost = iou_matrix(self._regions, faces.boxes).max(axis=1) < SAME_FACE
        regions, misses = self._regions[lost], self._misses[lost]
        hit = np.zeros(len(regions), bool)
        if len(regions):
            near = refine([frame], [regions])[0]
            if len(near):
                hit = iou_matrix(regions, near.boxes).max(axis=1) >= _FOUND_AGAIN
                faces = near if faces is None else distinct(join([faces, near]))
        faces = Faces.empty() if faces is None else faces
        # a region whose face was not found stays where it was, for up to ``every`` frames
        waiting = ~hit & (misses + 1 < self.every)
        missed, missed_count = regions[waiting], misses[waiting] + 1
        if len(missed) and len(faces):
            apart = iou_matrix(missed, faces.boxes).max(axis=1) < SAME_FACE
            missed, missed_count = missed[apart], missed_count[apart]
        self._regions = np.concatenate([faces.boxes, missed])
        self._misses = np.concatenate([np.zeros(len(faces), np.int64), missed_count])
        return faces


def _thumbnail(frame) -> np.ndarray:
    """(18, 32) float32 gray thumbnail of an (H, W, 3) uint8 frame or a (3, H, W) uint8 tensor, from every 8th
    pixel (a thumbnail averages far more than that away)."""
    if isinstance(frame, torch.Tensor):
        small = torch.nn.functional.adaptive_avg_pool2d(frame[:, ::8, ::8].float().mean(0, keepdim=True),
                                                        _THUMBNAIL[::-1])
        return small[0].cpu().numpy()
    sparse = np.ascontiguousarray(frame[::8, ::8])
    return cv2.resize(sparse, _THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.float32).mean(axis=2)


def following(detector: Detector, every: int, stills: bool) -> Detector:
    """``detector`` made to follow faces between whole-frame searches, when it can and the frames are a video."""
    if every > 1 and not stills and detector.follows:
        return FollowingDetector(detector, every)
    return detector
