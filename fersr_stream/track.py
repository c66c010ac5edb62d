"""Tracking: stable ids from box overlap, and per-track exponential smoothing of emotion probabilities.

Ids are assigned right after detection (restoration reuse needs them); smoothing runs after classification.
"""

from __future__ import annotations

import numpy as np

from .types import Faces


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection-over-union of boxes ``a`` (N, 4) and ``b`` (M, 4), ``x1, y1, x2, y2``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return (inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)).astype(np.float32)


class Tracker:
    """Greedy IoU tracker: each face takes the free track it overlaps most (at least ``iou``), else a new id.

    A track that goes unmatched for more than ``max_age`` frames is forgotten.
    """

    def __init__(self, iou: float = 0.3, max_age: int = 10):
        self.iou, self.max_age = iou, max_age
        self._ids = np.zeros(0, np.int64)
        self._boxes = np.zeros((0, 4), np.float32)
        self._age = np.zeros(0, np.int64)
        self._next = 0

    def update(self, faces: Faces) -> Faces:
        """Return ``faces`` with ``track_ids`` set; advances the tracker by one frame."""
        overlap = iou_matrix(faces.boxes, self._boxes)
        ids = np.full(len(faces), -1, np.int64)
        matched = np.zeros(len(self._ids), bool)
        # Greedy on descending overlap: simple, and optimal enough for the few faces of a frame.
        for flat in np.argsort(-overlap, axis=None):
            i, j = np.unravel_index(flat, overlap.shape)
            if overlap[i, j] < self.iou:
                break
            if ids[i] < 0 and not matched[j]:
                ids[i], matched[j] = self._ids[j], True
        for i in np.flatnonzero(ids < 0):
            ids[i], self._next = self._next, self._next + 1
        keep = ~matched & (self._age + 1 <= self.max_age)
        self._ids = np.concatenate([ids, self._ids[keep]])
        self._boxes = np.concatenate([faces.boxes, self._boxes[keep]])
        self._age = np.concatenate([np.zeros(len(ids), np.int64), self._age[keep] + 1])
        return faces.replace(track_ids=ids)


class Smoother:
    """Per-track exponential moving average of probabilities: ``p = alpha * p_prev + (1 - alpha) * p_new``.

    ``alpha`` = 0 turns smoothing off. Tracks not seen for ``max_age`` updates are forgotten.
    """

    def __init__(self, alpha: float = 0.6, max_age: int = 10):
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"smoothing weight must be in [0, 1), got {alpha}")
        self.alpha, self.max_age = alpha, max_age
        self._state: dict[int, tuple[np.ndarray, int]] = {}
        self._tick = 0

    def update(self, faces: Faces) -> Faces:
        """Return ``faces`` with smoothed ``probs`` (unchanged when off or when probs is None)."""
        self._tick += 1
        if faces.probs is None or self.alpha == 0.0:
            return faces
        out = faces.probs.copy()
        for i, tid in enumerate(faces.track_ids.tolist()):
            if tid >= 0 and tid in self._state:
                out[i] = self.alpha * self._state[tid][0] + (1.0 - self.alpha) * out[i]
            if tid >= 0:
                self._state[tid] = (out[i], self._tick)
        self._state = {k: v for k, v in self._state.items() if self._tick - v[1] <= self.max_age}
        return faces.replace(probs=out)


class LandmarkFilter:
    """Per-track One Euro filter of the 5 landmarks (Casiez et al., CHI 2012): causal, so restored and classified
    crops stop jittering from frame to frame without waiting for later frames.

    An exponential average whose cutoff rises with speed: a still face is smoothed hard (jitter gone), a moving one
    lightly (little lag). Speeds are measured in face widths per second, so one setting fits every face size.

    Args:
        cutoff: the cutoff (Hz) of a still face's landmarks; 0 turns the filter off.
        beta: how much faster the cutoff rises per face width per second of motion.
        max_age: updates a track is kept while unseen.
    """

    _SPEED_CUTOFF = 1.0  # Hz: the speed estimate itself is smoothed this much (the paper's d_cutoff)

    def __init__(self, cutoff: float = 1.0, beta: float = 5.0, max_age: int = 10):
        self.cutoff, self.beta, self.max_age = cutoff, beta, max_age
        self._state: dict[int, tuple[np.ndarray, float, float, int]] = {}  # id -> (points, speed, time, tick)
        self._tick = 0

    def update(self, faces: Faces, time: float) -> Faces:
        """``faces`` with each tracked face's landmarks filtered (at ``time`` seconds); unchanged when off or
        without landmarks."""
        self._tick += 1
        if self.cutoff <= 0 or faces.landmarks is None:
            return faces
        out = faces.landmarks.copy()
        for i, tid in enumerate(faces.track_ids.tolist()):
            if tid < 0:
                continue
            if tid in self._state:
                out[i] = self._step(tid, out[i], float(faces.widths[i]), time)
            else:
                self._state[tid] = (out[i], 0.0, time, self._tick)
        self._state = {k: v for k, v in self._state.items() if self._tick - v[3] <= self.max_age}
        return faces.replace(landmarks=out)

    def _step(self, tid: int, points: np.ndarray, width: float, time: float) -> np.ndarray:
        previous, speed, then, _ = self._state[tid]
        dt = max(time - then, 1e-3)
        # the face's motion is what the points share (their mean shift); what they do not share is mostly jitter
        raw_speed = float(np.linalg.norm((points - previous).mean(axis=0))) / max(width, 1.0) / dt
        speed = speed + _alpha(self._SPEED_CUTOFF, dt) * (raw_speed - speed)
        smoothed = previous + _alpha(self.cutoff + self.beta * speed, dt) * (points - previous)
        self._state[tid] = (smoothed.astype(np.float32), speed, time, self._tick)
        return smoothed


def _alpha(cutoff: float, dt: float) -> float:
    """The weight of the new sample in an exponential average with ``cutoff`` (Hz) at steps of ``dt`` seconds."""
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)
