"""Face detectors behind one interface: ``detector.detect(frames) -> list[Faces]``.

Each backend lives in its own module and is imported only when asked for, so a stream that uses Haar never
loads torch-based detectors. A backend class takes ``(config: DetectConfig, device)`` and finds its weights in the
cache, never downloading them: a command calls :func:`fetch` first.
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
        ConfigError: an unknown detector name.
        WeightsError: its weights are not cached (see :func:`fetch`) or not usable.
    """
    name, module = _backend(config)
    return getattr(module, DETECTORS[name][1])(config, device)


def fetch(config: DetectConfig, quiet: bool = False) -> None:
    """Download the weights the detector named by ``config`` loads, unless they are cached (or it needs none).

    The step a command takes, once, before :func:`create` (the settings were checked when ``config`` was made, and
    the name is checked first, so a typo costs no download).

    Raises:
        ConfigError: as :func:`create`.
        WeightsError: weights of another detector, offline, or the download failed (the message says what fixes it).
    """
    name, module = _backend(config)
    default = getattr(module, "DEFAULT_WEIGHTS", None)
    if default is not None:
        from ..weights import store

        store.ensure(str(config.weights or default), download=True, quiet=quiet, arch=name)


def _backend(config: DetectConfig):
    """``config.name``, normalised, and its backend module (the values' ranges are checked by DetectConfig)."""
    name = (config.name or "").strip().lower()
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {config.name!r}; choose one of: {', '.join(DETECTORS)}")
    if name == "haar" and config.weights:
        raise ConfigError(f"detect.weights ({config.weights}) is for yunet and retinaface; Haar uses OpenCV's own "
                          f"cascade (add --detector yunet or retinaface)")
    return name, importlib.import_module(f"{__name__}.{DETECTORS[name][0]}")


__all__ = ["DETECTORS", "Detector", "create", "fetch"]
