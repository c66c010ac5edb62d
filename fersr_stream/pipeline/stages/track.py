"""Track: give each face a track id, right after detection (restoration reuse and smoothing need them), and filter
each track's landmarks so its aligned crops do not jitter."""

from __future__ import annotations

from ...config import TrackConfig
from ...track import LandmarkFilter, Tracker
from ...types import Frame
from .base import Stage


class TrackStage(Stage):
    """One :class:`~fersr_stream.track.Tracker` and :class:`~fersr_stream.track.LandmarkFilter` over the video; for
    stills (unrelated pictures) a fresh tracker per picture, so each picture's faces are numbered from 0, and no
    filter."""

    name = "track"

    def __init__(self, config: TrackConfig, stills: bool = False):
        self.config, self.stills = config, stills
        self.tracker = Tracker(config.iou, config.max_age)
        cutoff = 0.0 if stills else config.landmarks_cutoff
        self.landmarks = LandmarkFilter(cutoff, config.landmarks_beta, config.max_age)

    def process(self, frames: list[Frame]) -> list[Frame]:
        out = []
        for frame in frames:
            tracker = Tracker(self.config.iou, self.config.max_age) if self.stills else self.tracker
            faces = self.landmarks.update(tracker.update(frame.faces), _seconds(frame))
            out.append(frame.replace(faces=faces))
        return out


def _seconds(frame: Frame) -> float:
    """The frame's time, or its index at 30 frames a second where the source gives no timestamps."""
    time = frame.time
    return frame.index / 30.0 if time is None else time
