"""Detect-and-follow for video: the whole frame is searched every ``every`` frames, and in between only the
regions around the faces found last.

Consecutive frames of a video hold their faces in nearly the same place, so a detector that can search near a
known face (:meth:`HaarDetector.detect_near`) follows it for a fraction of a whole-frame search (Haar on a 720p
frame: ~18 ms whole, ~2-4 ms per face followed). A face that enters the picture is found at the next whole-frame
search, at most ``every - 1`` frames late. A face that is not found near its last place (a missed detection, a
turn of the head) is looked for at that place again until the next whole-frame search, so one miss does not
lose it. Stills (images, folders) are unrelated to each other and always get the whole-frame search.
"""

from __future__ import annotations

import numpy as np

from ..track import iou_matrix
from ..types import Faces

_SAME_FACE = 0.5  # two boxes overlapping this much (IoU) are one face found from two regions


class FollowingDetector:
    """Wraps a detector with ``detect_near(image, box) -> Faces`` (see module docstring).

    Frames must come in order, from one video, through one thread.
    """

    def __init__(self, detector, every: int):
        self.detector, self.every = detector, every
        self._count = 0
        self._regions = np.zeros((0, 4), np.float32)  # where the faces were last seen, source pixels

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        return [self._detect_one(image) for image in images]

    def _detect_one(self, image: np.ndarray) -> Faces:
        whole = self._count % self.every == 0
        self._count += 1
        if whole:
            faces = self.detector.detect([image])[0]
            self._regions = faces.boxes
            return faces
        found = [self.detector.detect_near(image, box) for box in self._regions]
        # each region holds one face: its best-scoring box, else the region stays where it was
        best = [int(np.argmax(f.scores)) if len(f) else -1 for f in found]
        boxes = np.array([f.boxes[i] for f, i in zip(found, best) if i >= 0], np.float32).reshape(-1, 4)
        scores = np.array([f.scores[i] for f, i in zip(found, best) if i >= 0], np.float32)
        keep = _distinct(boxes, scores)
        faces = Faces(boxes[keep], scores[keep])
        missed = np.array([box for box, i in zip(self._regions, best) if i < 0], np.float32).reshape(-1, 4)
        if len(missed) and len(faces):
            missed = missed[iou_matrix(missed, faces.boxes).max(axis=1) < _SAME_FACE]
        self._regions = np.concatenate([faces.boxes, missed])
        return faces


def _distinct(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the boxes left after dropping those that overlap a better-scoring one by :data:`_SAME_FACE`
    or more (greedy non-maximum suppression), in their original order."""
    overlap = iou_matrix(boxes, boxes)
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(overlap[i, j] < _SAME_FACE for j in keep):
            keep.append(int(i))
    return np.array(sorted(keep), np.int64)


def following(detector, every: int, stills: bool):
    """``detector`` made to follow faces between whole-frame searches, when it can and the frames are a video."""
    if every > 1 and not stills and hasattr(detector, "detect_near"):
        return FollowingDetector(detector, every)
    return detector
