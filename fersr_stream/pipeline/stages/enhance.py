"""Enhance: restore the faces that need it (see :mod:`fersr_stream.pipeline.reuse`), in batches across frames."""

from __future__ import annotations

from collections.abc import Sequence

from ...config import EnhanceConfig
from ...enhance import Enhancer
from ...types import Frame
from ..reuse import RestorePolicy
from ..stats import Stats
from .base import PerSource, Stage


class EnhanceStage(Stage):
    """Restores, or reuses a track's last restoration, face by face as :class:`RestorePolicy` decides (one policy per
    source: track ids are the source's); counts both in ``stats`` (restorations, reuses). For a source of stills
    (``stills[source]``) nothing is reused: the pictures are unrelated. One restorer call takes the faces of every
    frame of the batch, whatever their source.

    ``side``: the side of the crops it will read, for the warm-up (CUDA).
    """

    name = "enhance"

    def __init__(self, enhancer: Enhancer, config: EnhanceConfig, stats: Stats, side: int,
                 stills: Sequence[bool] = ()):
        self.enhancer, self.stats, self.side = enhancer, stats, side
        self.batch, self.max_wait = config.batch, config.max_wait
        self.policies = PerSource(lambda source: RestorePolicy(
            config.below, 0 if source < len(stills) and stills[source] else config.reuse_every, config.reuse_iou))

    def start(self) -> None:
        self.enhancer.warm_up(self.side)

    def process(self, frames: list[Frame]) -> list[Frame]:
        out, made, reused = RestorePolicy.apply_each(frames, self.policies, self.enhancer.enhance)
        self.stats.count("restorations", made)
        self.stats.count("reuses", reused)
        return out
