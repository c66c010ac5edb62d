"""Which faces to restore: restoration costs ~100-200x classification, so restore only what needs it.

- ``below``: only faces narrower than this many source pixels are restored (larger ones are classified as cropped);
- ``reuse_every``: a track reuses its last restored crop for up to K frames while its box stays put (IoU with the box
  it was restored at >= ``reuse_iou``), instead of restoring again.

The crops are ``faces.processed`` arrays, or on the tensor path ``faces.device_processed`` tensors (see
:meth:`RestorePolicy.apply`); the policy is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .. import resize as _resize
from ..track import iou_matrix
from ..types import Frame


@dataclass
class _Entry:
    box: np.ndarray
    frame: int
    crop: np.ndarray | torch.Tensor | None  # None while its restoration is pending in the current batch
    slot: int  # index into the pending list while crop is None


class RestorePolicy:
    def __init__(self, below: int | None = None, reuse_every: int = 0, reuse_iou: float = 0.7):
        self.below, self.reuse_every, self.reuse_iou = below, reuse_every, reuse_iou
        self._tracks: dict[int, _Entry] = {}

    def apply(self, frames: list[Frame], enhance, on_device: bool = False) -> tuple[list[Frame], int, int]:
        """Restore the faces of ``frames`` (in order) that need it with one batched ``enhance`` call.

        Args:
            frames: frames whose faces carry their crops.
            enhance: crops in, restored crops out, batched: (N, S, S, 3) uint8 arrays, or with ``on_device``
                (N, 3, S, S) uint8 tensors.
            on_device: read and write ``faces.device_processed`` (tensors on the compute device) instead of
                ``faces.processed``.

        Returns:
            the frames with the crops and ``faces.restored`` set, the number of restorations made and the number
            of restorations reused.
        """
        field = "device_processed" if on_device else "processed"
        low_field = "device_lowres" if on_device else "lowres"  # restorers start from the small image if any
        stack = torch.stack if on_device else np.stack
        pending: list = []
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
                source = getattr(faces, low_field)
                pending.append((source if source is not None else getattr(faces, field))[i])
                if tid >= 0 and self.reuse_every > 0:
                    self._tracks[tid] = _Entry(faces.boxes[i].copy(), frame.index, None, len(pending) - 1)
                plan.append(("new", len(pending) - 1))
            plans.append(plan)
        restored = enhance(stack(pending)) if pending else None
        for entry in self._tracks.values():
            if entry.crop is None:
                entry.crop = restored[entry.slot]
        out = []
        for frame, plan in zip(frames, plans):
            faces = frame.faces
            if not plan:
                out.append(frame.replace(faces=faces.replace(restored=np.zeros(0, bool))))
                continue
            current = getattr(faces, field)
            crops, flags = [], []
            for i, (kind, ref) in enumerate(plan):
                if kind == "keep":
                    crops.append(current[i])
                elif kind == "new":
                    crops.append(restored[ref])
                else:
                    crops.append(ref.crop if ref.crop is not None else restored[ref.slot])
                flags.append(kind != "keep")
            size = tuple(current.shape[2:4] if on_device else current.shape[1:3])
            processed = stack([_fit(c, size) for c in crops])
            out.append(frame.replace(faces=faces.replace(**{field: processed}, restored=np.array(flags))))
        self._forget(frames[-1].index if frames else 0)
        return out, len(pending), reused

    def _forget(self, now: int) -> None:
        self._tracks = {t: e for t, e in self._tracks.items() if now - e.frame < max(self.reuse_every, 1)}


def _fit(crop: np.ndarray | torch.Tensor, shape: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Crops keep one size inside a Faces record; restorers may return another (e.g. 512 from 128).

    ``crop``: (S, S, 3) uint8 array, or (3, S, S) uint8 tensor shrunk on its device with the same weights.
    """
    if isinstance(crop, torch.Tensor):
        if tuple(crop.shape[1:]) == shape:
            return crop
        return _resize.to_uint8(_resize.resize(crop, shape, "area"))
    if crop.shape[:2] == shape:
        return crop
    return cv2.resize(crop, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
