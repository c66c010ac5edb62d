"""Smooth: each track's emotion probabilities averaged over time, after classification."""

from __future__ import annotations

from collections.abc import Sequence

from ...config import TrackConfig
from ...track import Smoother
from ...types import Frame
from .base import PerSource, Stage


class SmoothStage(Stage):
    """An exponential moving average per track (:class:`~fersr_stream.track.Smoother`), one per source; off for
    a source of stills (``stills[source]``), which are unrelated pictures."""

    name = "smooth"

    def __init__(self, config: TrackConfig, stills: Sequence[bool] = ()):
        self.smoothers = PerSource(lambda source: Smoother(
            0.0 if source < len(stills) and stills[source] else config.smooth, config.max_age))

    def process(self, frames: list[Frame]) -> list[Frame]:
        return [f.replace(faces=self.smoothers[f.source].update(f.faces)) for f in frames]
