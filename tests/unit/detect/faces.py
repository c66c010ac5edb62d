"""Helpers the detection tests share: where the astronaut's face sits in the pasted crop, and frames to detect on."""

from __future__ import annotations

import av
import cv2
import numpy as np

# Where the face sits inside the ``astronaut_face`` fixture (a 150 px crop): Haar finds it 95 px wide at (27, 26).
FACE_IN_CROP = np.array([27, 26, 122, 121]) / 150.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def face_truth(pasted: np.ndarray) -> np.ndarray:
    """(..., 4) face boxes from the pasted-crop rectangles the synthetic clip reports."""
    x1, y1 = pasted[..., 0:1], pasted[..., 1:2]
    side = pasted[..., 2:3] - x1
    return np.concatenate([x1, y1, x1, y1], axis=-1) + side * FACE_IN_CROP


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def paste(frame: np.ndarray, face: np.ndarray, x: int, y: int, side: int) -> np.ndarray:
    frame[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return frame
