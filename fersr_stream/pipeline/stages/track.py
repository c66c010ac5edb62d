"""Track: give each face a track id, right after detection (restoration reuse and smoothing need them)."""

from __future__ import annotations

from ...config import TrackConfig
from ...track import Tracker
from ...types import Frame
from .base import Stage


class TrackStage(Stage):
    """One :class:`~fersr_stream.track.Tracker` over the video; for stills (unrelated pictures) a fresh one per
    picture, so each picture's faces are numbered from 0."""

    name = "track"

    def __init__(self, config: TrackConfig, stills: bool = False):
        self.config, self.stills = config, stills
        self.tracker = Tracker(config.iou, config.max_age)

    def process(self, frames: list[Frame]) -> list[Frame]:
        out = []
        for frame in frames:
            tracker = Tracker(self.config.iou, self.config.max_age) if self.stills else self.tracker
            out.append(frame.replace(faces=tracker.update(frame.faces)))
        return out
