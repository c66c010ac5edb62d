"""Track: give each face a track id, right after detection (restoration reuse and smoothing need them), and filter
each track's landmarks so its aligned crops do not jitter."""

from __future__ import annotations

from collections.abc import Sequence

from ...config import TrackConfig
from ...track import LandmarkFilter, Tracker
from ...types import Frame
from .base import PerSource, Stage


class TrackStage(Stage):
    """One :class:`~fersr_stream.track.Tracker` and :class:`~fersr_stream.track.LandmarkFilter` per source; for a
    source of stills (unrelated pictures: ``stills[source]``) a fresh tracker per picture, so each picture's faces
    are numbered from 0, and no filter."""

    name = "track"

    def __init__(self, config: TrackConfig, stills: Sequence[bool] = ()):
        self.config = config
        self.stills = lambda source: source < len(stills) and stills[source]
        self.trackers = PerSource(lambda source: Tracker(config.iou, config.max_age))
        self.filters = PerSource(lambda source: LandmarkFilter(
            0.0 if self.stills(source) else config.landmarks_cutoff, config.landmarks_beta, config.max_age))

    def process(self, frames: list[Frame]) -> list[Frame]:
        out = []
        for frame in frames:
            fresh = self.stills(frame.source)
            tracker = Tracker(self.config.iou, self.config.max_age) if fresh else self.trackers[frame.source]
            faces = self.filters[frame.source].update(tracker.update(frame.faces), _seconds(frame))
            out.append(frame.replace(faces=faces))
        return out


def _seconds(frame: Frame) -> float:
    """The frame's time, or its index at 30 frames a second where the source gives no timestamps."""
    time = frame.time
    return frame.index / 30.0 if time is None else time
