"""Overlay: draw each face's box, track id, emotion and confidence (and optionally its crop, or the restored face
pasted back) on the frame."""

from __future__ import annotations

from ... import align, overlay
from ...config import OverlayConfig
from ...crops import HostCrops
from ...types import Frame
from ..transfer import Transfers
from .base import Stage


class OverlayStage(Stage):
    """Draws on the pipeline's own frames, in place.

    On the tensor path (``transfers`` given) this is the one place that copies back, once per frame: the frame
    when it was decoded on the device, and the crops where the inset or the paste-back draws them. It takes what is
    queued (up to 4 frames) and starts every frame's copy before drawing the first, so copies overlap the drawing;
    the device crops are dropped here, so their memory is free once the frame has been drawn.
    """

    name = "overlay"

    def __init__(self, config: OverlayConfig, transfers: Transfers | None = None):
        self.config, self.transfers = config, transfers
        self.batch = 4 if transfers is not None else 1

    def process(self, frames: list[Frame]) -> list[Frame]:
        if self.transfers is not None:
            frames = self._to_host(frames)
        return [self._draw(frame) for frame in frames]

    def _to_host(self, frames: list[Frame]) -> list[Frame]:
        wants_crops = self.config.inset or self.config.paste
        pending = []
        for frame in frames:
            fetch = [] if frame.image is not None else [frame.device_image.permute(1, 2, 0)]
            if wants_crops and len(frame.faces):
                fetch.append(frame.faces.crops.images.permute(0, 2, 3, 1))
            pending.append(self.transfers.download(fetch))
        out = []
        for frame, copies in zip(frames, pending):
            copies = copies.wait()
            image = frame.image if frame.image is not None else copies.pop(0)
            crops = HostCrops(copies.pop(0)) if copies else None
            out.append(frame.replace(image=image, device_image=None, faces=frame.faces.replace(crops=crops)))
        return out

    def _draw(self, frame: Frame) -> Frame:
        image, faces = frame.image, frame.faces
        if self.config.paste and faces.restored is not None and faces.restored.any():
            done = faces.select(faces.restored)
            image = align.paste_back(image, done.crops.host(), done.affines)
        return frame.replace(image=overlay.annotate(image, faces, inset=self.config.inset, copy=False))
