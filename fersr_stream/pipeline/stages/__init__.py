"""The stream's stages, one small class per step, and :func:`build`, which puts them in order:

``read -> detect -> track -> crop (align + degrade) -> enhance -> classify -> smooth -> overlay -> write``

Two paths, picked once by :func:`fersr_stream.device.uses_tensor_path` (tests may force the tensor path on the CPU):
on the host path (CPU) frames and crops are numpy arrays handled by OpenCV; on the tensor path (CUDA) each frame goes
to the GPU once, its crops are cut, degraded, restored and classified there, and the overlay copies back once per
frame. The crops carry the difference (:mod:`fersr_stream.crops`), so the stages are written once; only the detect
stage (upload) and the overlay stage (download) are given the transfers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch

from ...config import StreamConfig
from ...device import uses_tensor_path
from ...sinks.base import Sink
from ..models import Models
from ..stats import Stats
from ..transfer import Transfers
from .base import Stage
from .classify import ClassifyStage
from .crop import CropStage, crop_side
from .detect import DetectStage
from .enhance import EnhanceStage
from .overlay import OverlayStage
from .smooth import SmoothStage
from .track import TrackStage
from .write import WriteStage


def on_device(models: Models, tensor_path: bool | None = None) -> bool:
    """Whether the stages keep frames and crops as tensors: ``tensor_path`` when given, else the device's rule for
    the classifier's device (the compute device)."""
    return uses_tensor_path(torch.device(models.classifier.device)) if tensor_path is None else tensor_path


def build(config: StreamConfig, models: Models, *, sinks: Sequence[Sequence[Sink]], stats: Stats,
          stop: threading.Event, shared: Sequence[Sink] = (), tensor_path: bool | None = None,
          stills: Sequence[bool] = (), frame_size: tuple[int, int] | None = None) -> list[Stage]:
    """The stage list for the runner.

    Args:
        models: detector, enhancer (None when ``enhance.name`` is none) and classifier.
        sinks: per source, the sinks its frames are written to, in order by the last stage, which finalizes them.
        stats: counters (restorations, reuses).
        stop: the run's stop event (set by a sink that wants the run to end).
        shared: sinks every frame goes to, whatever its source (the summary, the progress bar).
        tensor_path: force the tensor path on or off (None: :func:`on_device`).
        stills: per source, whether its frames are unrelated pictures (images, folders): nothing carries over from
            one to the next.
        frame_size: (width, height) of every frame when known (the device detector's warm-up needs it).
    """
    transfers = Transfers(models.classifier.device) if on_device(models, tensor_path) else None
    side = crop_side(config, models.classifier.preprocessing)
    stages: list[Stage] = [
        DetectStage(models.detector, config.detect.full_every, stills, transfers, frame_size,
                    config.detect.changed_only),
        TrackStage(config.track, stills),
        CropStage(side, config.align, config.degrade, models.classifier.preprocessing),
    ]
    if models.enhancer is not None:
        stages.append(EnhanceStage(models.enhancer, config.enhance, stats, side, stills))
    return stages + [
        ClassifyStage(models.classifier, config.classify, side),
        SmoothStage(config.track, stills),
        OverlayStage(config.overlay, transfers),
        WriteStage(sinks, stop, shared),
    ]


__all__ = ["ClassifyStage", "CropStage", "DetectStage", "EnhanceStage", "OverlayStage", "SmoothStage", "Stage",
           "TrackStage", "WriteStage", "build", "crop_side", "on_device"]
