"""Detect: find the faces of each frame (and, on the tensor path, put the frame on the compute device first)."""

from __future__ import annotations

from ...detect.base import Detector
from ...detect.follow import following
from ...types import Frame
from ..transfer import Transfers
from .base import Stage

BATCH = 4  # most frames the detect stage takes at once


class DetectStage(Stage):
    """Runs the detector on batches of frames.

    Args:
        detector: the detector; on video it follows faces between whole-frame searches when it can (see
            :mod:`fersr_stream.detect.follow`).
        full_every: whole-frame search every this many frames (video).
        stills: the frames are unrelated pictures: each is searched whole.
        transfers: on the tensor path, what puts host frames on the device (None on the host path). A detector
            that :attr:`~Detector.reads_tensors` then reads the device frames; another gets host frames, fetched
            from the device once for a frame decoded there, and the overlay draws on that copy.
        frame_size: (width, height) of every frame where known: the device detector's warm-up needs it.
    """

    name = "detect"
    batch = BATCH

    def __init__(self, detector: Detector, full_every: int = 1, stills: bool = False,
                 transfers: Transfers | None = None, frame_size: tuple[int, int] | None = None):
        self.detector = following(detector, full_every, stills)
        self.transfers = transfers
        self.frame_size = None if stills else frame_size

    def start(self) -> None:
        if self.transfers is not None and self.frame_size is not None:
            self.detector.warm_up(self.frame_size, BATCH)

    def process(self, frames: list[Frame]) -> list[Frame]:
        if self.transfers is not None:
            frames = self.transfers.to_device(frames)
            if self.detector.reads_tensors:
                found = self.detector.detect_tensors([f.device_image for f in frames])
                return [f.replace(faces=faces) for f, faces in zip(frames, found)]
            frames = self.transfers.to_host(frames)
        found = self.detector.detect([f.image for f in frames])
        return [f.replace(faces=faces) for f, faces in zip(frames, found)]
