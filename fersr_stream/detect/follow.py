"""Detect-and-follow for video: the whole frame is searched every ``every`` frames, and in between only the
regions around the faces found last.

Consecutive frames of a video hold their faces in nearly the same place, so a detector that can search near a
known face (:meth:`HaarDetector.detect_near`) follows it for a fraction of a whole-frame search (Haar on a 720p
frame: ~18 ms whole, ~2-4 ms per face followed). A face that enters the picture is found at the next whole-frame
search, at most ``every - 1`` frames late. A known face that is not found (by a whole-frame search or near its
last place: a missed detection, a turn of the head) is looked for at its last place for up to ``every`` more
frames, so a detector that misses a face now and then does not lose it. Stills (images, folders) are unrelated to
each other and always get the whole-frame search.
"""

from __future__ import annotations

import numpy as np

from ..track import iou_matrix
from ..types import Faces
from .base import Detector

_SAME_FACE = 0.5  # two boxes overlapping this much (IoU) are one face found from two regions


class FollowingDetector(Detector):
    """Wraps a detector that :attr:`~Detector.follows` (see module docstring).

    Frames must come in order, from one video, through one thread.
    """

    def __init__(self, detector: Detector, every: int):
        self.detector, self.every = detector, every
        self._count = 0
        self._regions = np.zeros((0, 4), np.float32)  # where the faces were last seen, source pixels
        self._misses = np.zeros(0, np.int64)  # frames since each region's face was last found

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        return [self._detect_one(image) for image in images]

    def _detect_one(self, image: np.ndarray) -> Faces:
        whole = self._count % self.every == 0
        self._count += 1
        faces = self.detector.detect([image])[0] if whole else Faces.empty()
        # known faces the whole-frame search did not find again are looked for where they were
        lost = np.ones(len(self._regions), bool)
        if len(faces) and len(self._regions):
            lost = iou_matrix(self._regions, faces.boxes).max(axis=1) < _SAME_FACE
        regions, misses = self._regions[lost], self._misses[lost]
        found = [self.detector.detect_near(image, box) for box in regions]
        hit = np.array([len(f) > 0 for f in found], bool)
        if hit.any():
            best = [f.select(np.argmax(f.scores, keepdims=True)) for f in found if len(f)]  # one face a region
            boxes = np.concatenate([faces.boxes, *(b.boxes for b in best)])
            scores = np.concatenate([faces.scores, *(b.scores for b in best)])
            keep = _distinct(boxes, scores)
            faces = Faces(boxes[keep], scores[keep])
        # a region whose face was not found stays where it was, for up to ``every`` frames
        waiting = ~hit & (misses + 1 < self.every)
        missed, missed_count = regions[waiting], misses[waiting] + 1
        if len(missed) and len(faces):
            apart = iou_matrix(missed, faces.boxes).max(axis=1) < _SAME_FACE
            missed, missed_count = missed[apart], missed_count[apart]
        self._regions = np.concatenate([faces.boxes, missed])
        self._misses = np.concatenate([np.zeros(len(faces), np.int64), missed_count])
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


def following(detector: Detector, every: int, stills: bool) -> Detector:
    """``detector`` made to follow faces between whole-frame searches, when it can and the frames are a video."""
    if every > 1 and not stills and detector.follows:
        return FollowingDetector(detector, every)
    return detector
