"""Enhance: restore the faces that need it (see :mod:`fersr_stream.pipeline.reuse`), in batches across frames."""

from __future__ import annotations

from ...config import EnhanceConfig
from ...enhance import Enhancer
from ...types import Frame
from ..reuse import RestorePolicy
from ..stats import Stats
from .base import Stage


class EnhanceStage(Stage):
    """Restores, or reuses a track's last restoration, face by face as :class:`RestorePolicy` decides; counts
    both in ``stats`` (restorations, reuses). For stills nothing is reused: the pictures are unrelated.

    ``side``: the side of the crops it will read, for the warm-up (CUDA).
    """

    name = "enhance"

    def __init__(self, enhancer: Enhancer, config: EnhanceConfig, stats: Stats, side: int, stills: bool = False):
        self.enhancer, self.stats, self.side = enhancer, stats, side
        self.batch, self.max_wait = config.batch, config.max_wait
        self.policy = RestorePolicy(config.below, 0 if stills else config.reuse_every, config.reuse_iou)

    def start(self) -> None:
        self.enhancer.warm_up(self.side)

    def process(self, frames: list[Frame]) -> list[Frame]:
        out, made, reused = self.policy.apply(frames, self.enhancer.enhance)
        self.stats.count("restorations", made)
        self.stats.count("reuses", reused)
        return out
