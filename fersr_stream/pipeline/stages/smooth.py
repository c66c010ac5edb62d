"""Smooth: each track's emotion probabilities averaged over time, after classification."""

from __future__ import annotations

from ...config import TrackConfig
from ...track import Smoother
from ...types import Frame
from .base import Stage


class SmoothStage(Stage):
    """An exponential moving average per track (:class:`~fersr_stream.track.Smoother`); off for stills, which are
    unrelated pictures."""

    name = "smooth"

    def __init__(self, config: TrackConfig, stills: bool = False):
        self.smoother = Smoother(0.0 if stills else config.smooth, config.max_age)

    def process(self, frames: list[Frame]) -> list[Frame]:
        return [f.replace(faces=self.smoother.update(f.faces)) for f in frames]
