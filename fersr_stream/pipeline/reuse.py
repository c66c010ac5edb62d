"""Which faces to restore: restoration costs far more than classification, so restore only what needs it.

- ``below``: only faces narrower than this many source pixels are restored (larger ones are classified as cropped);
- ``reuse_every``: a track reuses its last restored crop for up to K frames while its box stays put (IoU with the box
  it was restored at >= ``reuse_iou``), instead of restoring again.

The crops are each face's :class:`~fersr_stream.crops.CropBatch` (host or device); the policy is the same for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import crops as _crops
from ..crops import CropBatch
from ..track import iou_matrix
from ..types import Frame


@dataclass
class _Entry:
    """A track's last restoration: its box and frame, and the restored crop (or its slot in the pending batch)."""

    box: np.ndarray
    frame: int
    slot: int
    crop: CropBatch | None = None  # one crop; None while its restoration is pending in the current batch


class RestorePolicy:
    def __init__(self, below: int | None = None, reuse_every: int = 0, reuse_iou: float = 0.7):
        self.below, self.reuse_every, self.reuse_iou = below, reuse_every, reuse_iou
        self._tracks: dict[int, _Entry] = {}

    def apply(self, frames: list[Frame], enhance) -> tuple[list[Frame], int, int]:
        """Restore the faces of ``frames`` (in order) that need it with one batched ``enhance`` call.

        Args:
            frames: frames whose faces carry their crops.
            enhance: crops in, restored crops out (``Enhancer.enhance``).

        Returns:
            the frames with their crops and ``faces.restored`` set, the number of restorations made and the number
            of restorations reused.
        """
        return self.apply_each(frames, {frame.source: self for frame in frames}, enhance)

    @staticmethod
    def apply_each(frames: list[Frame], policies: Mapping[int, RestorePolicy], enhance
                   ) -> tuple[list[Frame], int, int]:
        """:meth:`apply` where each frame follows its source's policy (``policies[frame.source]``: track ids are a
        source's own), still with one ``enhance`` call for the faces of every frame."""
        pending: list[CropBatch] = []  # one crop each, restored together below
        plans = [policies[frame.source]._plan(frame, pending) for frame in frames]
        restored = enhance(_crops.cat(pending)) if pending else None
        used = {id(p): p for p in (policies[frame.source] for frame in frames)}.values()
        for policy in used:
            for entry in policy._tracks.values():
                if entry.crop is None:
                    entry.crop = restored.select([entry.slot])
        out = [RestorePolicy._restored(frame, plan, restored) for frame, plan in zip(frames, plans)]
        for policy in used:
            last = [frame.index for frame in frames if policies[frame.source] is policy]
            policy._forget(last[-1])
        reused = sum(kind == "reuse" for plan in plans for kind, _ in plan)
        return out, len(pending), reused

    def _plan(self, frame: Frame, pending: list[CropBatch]) -> list[tuple[str, object]]:
        """Per face of ``frame``: ("keep", None), ("new", slot in ``pending``, where its crop is added) or ("reuse",
        the track's entry)."""
        faces, plan = frame.faces, []
        for i in range(len(faces)):
            if self.below is not None and faces.widths[i] >= self.below:
                plan.append(("keep", None))
                continue
            tid = int(faces.track_ids[i])
            tracked = tid >= 0 and self.reuse_every > 0
            entry = self._tracks.get(tid) if tracked else None
            if entry is not None and frame.index - entry.frame < self.reuse_every and \
                    iou_matrix(faces.boxes[i:i + 1], entry.box[None])[0, 0] >= self.reuse_iou:
                plan.append(("reuse", entry))
                continue
            pending.append(faces.crops.restorable().select([i]))  # restorers start from the small image if any
            if tracked:
                self._tracks[tid] = _Entry(faces.boxes[i].copy(), frame.index, len(pending) - 1)
            plan.append(("new", len(pending) - 1))
        return plan

    @staticmethod
    def _restored(frame: Frame, plan: list, restored: CropBatch | None) -> Frame:
        """``frame`` with each face's crop as planned, at the frame's crop side, and its ``restored`` flags."""
        faces = frame.faces
        if not plan:
            return frame.replace(faces=faces.replace(restored=np.zeros(0, bool)))
        picked = []
        for i, (kind, ref) in enumerate(plan):
            if kind == "keep":
                picked.append(faces.crops.select([i]))
            elif kind == "new":
                picked.append(restored.select([ref]))
            else:
                picked.append(ref.crop if ref.crop is not None else restored.select([ref.slot]))
        # restorers return their own side (e.g. 512 from 128); the crops of one record keep one side
        side = faces.crops.side
        crops = _crops.cat([crop.resize(side, "area") for crop in picked])
        return frame.replace(faces=faces.replace(crops=crops, restored=np.array([k != "keep" for k, _ in plan])))

    def _forget(self, now: int) -> None:
        self._tracks = {t: e for t, e in self._tracks.items() if now - e.frame < max(self.reuse_every, 1)}
