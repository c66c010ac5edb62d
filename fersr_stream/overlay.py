"""Drawing: ``annotate(image, faces) -> image`` with box, track id, emotion and confidence per face."""

from __future__ import annotations

import cv2
import numpy as np

from .classify.labels import Emotion
from .types import Faces

# One RGB colour per emotion, in Emotion order (colour-blind-friendly Okabe-Ito palette).
COLOURS = ((86, 180, 233), (213, 94, 0), (0, 158, 115), (240, 228, 66), (200, 200, 200), (0, 114, 178),
           (204, 121, 167))
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def label(faces: Faces, i: int) -> str:
    """``#id emotion 0.87`` (``R`` marks a restored face), or ``#id`` before classification."""
    head = f"#{faces.track_ids[i]}" if faces.track_ids[i] >= 0 else "face"
    if faces.probs is None:
        return head
    k = int(np.argmax(faces.probs[i]))
    mark = " R" if faces.restored is not None and faces.restored[i] else ""
    return f"{head} {Emotion(k).label} {faces.probs[i, k]:.2f}{mark}"


def annotate(image: np.ndarray, faces: Faces, inset: bool = False, copy: bool = True) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB with each face drawn: on a copy, or on ``image`` itself when ``copy`` is False.

    Args:
        inset: also draw each face's crop (``faces.crops``: degraded and/or restored) beside its box, so a viewer
            sees what the classifier saw.
        copy: False for a caller that owns ``image`` and no longer needs it clean (the stream's overlay stage:
            a fresh frame copy costs more in page faults than the drawing).
    """
    out = image.copy() if copy else image
    h, w = out.shape[:2]
    scale = max(0.4, min(1.0, h / 720))
    thickness = max(1, round(2 * scale))
    crops = faces.crops.host() if inset and faces.crops is not None else None
    for i in range(len(faces)):
        x1, y1, x2, y2 = (int(round(v)) for v in faces.boxes[i])
        colour = COLOURS[int(np.argmax(faces.probs[i]))] if faces.probs is not None else (255, 255, 255)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        text = label(faces, i)
        (tw, th), base = cv2.getTextSize(text, _FONT, 0.6 * scale, thickness)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(h - 1, y2 + th + 4)
        cv2.rectangle(out, (x1, ty - th - base), (min(w - 1, x1 + tw + 4), ty + base // 2), colour, -1)
        cv2.putText(out, text, (x1 + 2, ty - base // 2), _FONT, 0.6 * scale, (0, 0, 0), thickness, cv2.LINE_AA)
        if crops is not None:
            _draw_inset(out, crops[i], x2 + 4, y1, max(48, (y2 - y1) // 2), colour)
    return out


def _draw_inset(out: np.ndarray, crop: np.ndarray, x: int, y: int, side: int, colour) -> None:
    """Paste ``crop`` resized to ``side`` at (x, y), moved inside the frame; skipped when the frame is too small."""
    h, w = out.shape[:2]
    side = min(side, h, w)
    if side < 16:
        return
    x, y = min(max(0, x), w - side), min(max(0, y), h - side)
    out[y:y + side, x:x + side] = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    cv2.rectangle(out, (x, y), (x + side - 1, y + side - 1), colour, 1)
