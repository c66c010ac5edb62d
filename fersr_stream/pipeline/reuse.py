"""Which faces to restore: restoration costs ~100-200x classification, so restore only what needs it.

- ``below``: only faces narrower than this many source pixels are restored (larger ones are classified as cropped);
- ``reuse_every``: a track reuses its last restored crop for up to K frames while its box stays put (IoU with the box
  it was restored at >= ``reuse_iou``), instead of restoring again.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..track import iou_matrix
from ..types import Frame


@dataclass
class _Entry:
    box: np.ndarray
    frame: int
    crop: np.ndarray | None  # None while its restoration is pending in the current batch
    slot: int  # index into the pending list while crop is None


class RestorePolicy:
    def __init__(self, below: int | None = None, reuse_every: int = 0, reuse_iou: float = 0.7):
        self.below, self.reuse_every, self.reuse_iou = below, reuse_every, reuse_iou
        self._tracks: dict[int, _Entry] = {}

    def apply(self, frames: list[Frame], enhance) -> tuple[list[Frame], int, int]:
        """Restore the faces of ``frames`` (in order) that need it with one batched ``enhance`` call.

        Returns:
            the frames with ``faces.processed`` and ``faces.restored`` set, the number of restorations made and
            the number of restorations reused.
        """
        pending: list[np.ndarray] = []
        plans = []  # per frame: list of ("keep" | "new" | "reuse", slot-or-crop)
        reused = 0
        for frame in frames:
            faces, plan = frame.faces, []
            for i in range(len(faces)):
                if self.below is not None and faces.widths[i] >= self.below:
                    plan.append(("keep", None))
                    continue
                tid = int(faces.track_ids[i])
                entry = self._tracks.get(tid) if tid >= 0 and self.reuse_every > 0 else None
                if entry is not None and frame.index - entry.frame < self.reuse_every and \
                        iou_matrix(faces.boxes[i:i + 1], entry.box[None])[0, 0] >= self.reuse_iou:
                    plan.append(("reuse", entry))
                    reused += 1
                    continue
                pending.append(faces.processed[i])
                if tid >= 0 and self.reuse_every > 0:
                    self._tracks[tid] = _Entry(faces.boxes[i].copy(), frame.index, None, len(pending) - 1)
                plan.append(("new", len(pending) - 1))
            plans.append(plan)
        restored = enhance(np.stack(pending)) if pending else None
        for entry in self._tracks.values():
            if entry.crop is None:
                entry.crop = restored[entry.slot]
        out = []
        for frame, plan in zip(frames, plans):
            faces = frame.faces
            if not plan:
                out.append(frame.replace(faces=faces.replace(restored=np.zeros(0, bool))))
                continue
            crops, flags = [], []
            for i, (kind, ref) in enumerate(plan):
                if kind == "keep":
                    crops.append(faces.processed[i])
                elif kind == "new":
                    crops.append(restored[ref])
                else:
                    crops.append(ref.crop if ref.crop is not None else restored[ref.slot])
                flags.append(kind != "keep")
            processed = np.stack([_fit(c, faces.processed.shape[1:3]) for c in crops])
            out.append(frame.replace(faces=faces.replace(processed=processed, restored=np.array(flags))))
        self._forget(frames[-1].index if frames else 0)
        return out, len(pending), reused

    def _forget(self, now: int) -> None:
        self._tracks = {t: e for t, e in self._tracks.items() if now - e.frame < max(self.reuse_every, 1)}


def _fit(crop: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crops keep one size inside a Faces record; restorers may return another (e.g. 512 from 128)."""
    if crop.shape[:2] == shape:
        return crop
    return cv2.resize(crop, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
