"""Detect: find the faces of each frame (and, on the tensor path, put the frame on the compute device first)."""

from __future__ import annotations

from collections.abc import Sequence

from ...detect.base import Detector
from ...detect.follow import following
from ...types import Faces, Frame
from ..transfer import Transfers
from .base import PerSource, Stage

BATCH = 4  # most frames the detect stage takes at once


class DetectStage(Stage):
    """Runs the detector on batches of frames.

    Args:
        detector: the detector; on video it follows faces between whole-frame searches when it can (see
            :mod:`fersr_stream.detect.follow`), one follower per source.
        full_every: a search every this many frames (video).
        changed_only: a search looks only where the picture changed, where the detector can (video; see
            :mod:`fersr_stream.detect.follow`).
        stills: per source, whether its frames are unrelated pictures, each searched whole (default: none are).
        transfers: on the tensor path, what puts host frames on the device (None on the host path). A detector
            that :attr:`~Detector.reads_tensors` then reads the device frames; another gets host frames, fetched
            from the device once for a frame decoded there, and the overlay draws on that copy.
        frame_size: (width, height) of every frame where known: the device detector's warm-up needs it.
    """

    name = "detect"
    batch = BATCH

    def __init__(self, detector: Detector, full_every: int = 1, stills: Sequence[bool] = (),
                 transfers: Transfers | None = None, frame_size: tuple[int, int] | None = None,
                 changed_only: bool = False):
        self.detector, self.transfers, self.frame_size = detector, transfers, frame_size
        self.followers = PerSource(lambda source: following(
            detector, full_every, source < len(stills) and stills[source], changed_only))

    def start(self) -> None:
        if self.transfers is not None and self.frame_size is not None:
            self.detector.warm_up(self.frame_size, BATCH)

    def process(self, frames: list[Frame]) -> list[Frame]:
        tensors = self.transfers is not None and self.detector.reads_tensors
        if self.transfers is not None:
            frames = self.transfers.to_device(frames)
            if not tensors:
                frames = self.transfers.to_host(frames)
        found: list[Faces | None] = [None] * len(frames)
        whole = [i for i, f in enumerate(frames) if self.followers[f.source] is self.detector]
        # frames searched whole go through the detector as one batch, whatever their source
        for i, faces in zip(whole, self._search([frames[i] for i in whole], tensors, self.detector)):
            found[i] = faces
        for i, frame in enumerate(frames):  # followed frames one at a time, in order, each with its source's state
            if found[i] is None:
                found[i] = self._search([frame], tensors, self.followers[frame.source])[0]
        return [f.replace(faces=faces) for f, faces in zip(frames, found)]

    @staticmethod
    def _search(frames: list[Frame], tensors: bool, detector: Detector) -> list[Faces]:
        if not frames:
            return []
        if tensors:
            return detector.detect_tensors([f.device_image for f in frames])
        return detector.detect([f.image for f in frames])
