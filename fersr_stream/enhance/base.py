"""What every enhancer shares: the interface and the two baselines (none, bicubic).

An enhancer maps aligned face crops to restored crops, on the host or on the compute device as the crops are
(:class:`fersr_stream.crops.CropBatch`): ``enhance(crops)`` returns ``size`` x ``size`` crops of the same kind,
or the input unchanged where ``size`` is None.
"""

from __future__ import annotations

import abc

import torch

from ..config import EnhanceConfig
from ..crops import CropBatch


class Enhancer(abc.ABC):
    """A face restorer, built as ``cls.build(config, device)``.

    Attributes:
        size: output side in pixels (None = the input's side kept).
        device: where it computes.
        default_weights: the registry entry its network loads when ``config.weights`` is unset (None: no network).
    """

    size: int | None = None
    default_weights: str | None = None

    def __init__(self, device: torch.device | None = None):
        self.device = device if device is not None else torch.device("cpu")

    @classmethod
    def build(cls, config: EnhanceConfig, device: torch.device) -> Enhancer:
        """The enhancer ``config`` describes, on ``device`` (its weights, if any, already cached)."""
        return cls(device)

    @abc.abstractmethod
    def enhance(self, crops: CropBatch) -> CropBatch:
        """Restored crops (N may be 0), of the input's kind."""

    def warm_up(self, side: int) -> None:
        """Run once on the enhance stage's thread before the stream (on CUDA: cuDNN's per-thread plans for the
        batches of ``side`` px crops it will see). Nothing by default (no network)."""


def enlarge_or_shrink(crops: CropBatch, size: int) -> CropBatch:
    """``crops`` at ``size`` px: bicubic when enlarging, area averaging when shrinking (bicubic without a low-pass
    filter aliases)."""
    return crops.resize(size, "bicubic" if size > crops.side else "area")


class IdentityEnhancer(Enhancer):
    """``none``: crops pass through unchanged (the classifier sees the degraded face)."""

    def enhance(self, crops: CropBatch) -> CropBatch:
        return crops


class BicubicEnhancer(Enhancer):
    """``bicubic``: the no-network baseline, crops resized to ``size`` (identity when already that size)."""

    def __init__(self, size: int = 512, device: torch.device | None = None):
        super().__init__(device)
        self.size = size

    @classmethod
    def build(cls, config: EnhanceConfig, device: torch.device) -> Enhancer:
        from .restorers import SIZE  # the networks' side, so the baseline's crops match theirs

        return cls(SIZE, device)

    def enhance(self, crops: CropBatch) -> CropBatch:
        return enlarge_or_shrink(crops, self.size)
