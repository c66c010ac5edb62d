"""Face detectors behind one interface: ``detector.detect(frames) -> list[Faces]``.

Each backend lives in its own module and is imported only when asked for, so a stream that uses Haar never
loads torch-based detectors. A backend class takes ``(config: DetectConfig, device)``.
"""

from __future__ import annotations

import importlib

from ..config import DetectConfig
from ..errors import ConfigError
from .base import Detector

# name -> (module in this package, class in it)
DETECTORS: dict[str, tuple[str, str]] = {
    "haar": ("haar", "HaarDetector"),
    "yunet": ("yunet", "YuNetDetector"),
    "retinaface": ("retinaface", "RetinaFaceDetector"),
}


def create(config: DetectConfig, device=None) -> Detector:
    """Build the detector named by ``config.name`` (haar | yunet | retinaface) for ``device``.

    Raises:
        ConfigError: an unknown detector name or an out-of-range setting.
    """
    name = (config.name or "").strip().lower()
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {config.name!r}; choose one of: {', '.join(DETECTORS)}")
    if config.detect_width < 1:
        raise ConfigError(f"detect.detect_width must be at least 1 pixel, got {config.detect_width}")
    if config.min_face < 0:
        raise ConfigError(f"detect.min_face must be >= 0 pixels, got {config.min_face}")
    if config.full_every < 1:
        raise ConfigError(f"detect.full_every must be at least 1 frame, got {config.full_every}")
    if not 0.0 <= config.score_threshold <= 1.0:
        raise ConfigError(f"detect.score_threshold must be in [0, 1], got {config.score_threshold}")
    module_name, class_name = DETECTORS[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)(config, device)


__all__ = ["DETECTORS", "Detector", "create"]
