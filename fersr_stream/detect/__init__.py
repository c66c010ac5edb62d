"""Face detectors behind one interface (:class:`Detector`): ``detector.detect(frames) -> list[Faces]``.

Each backend lives in its own module, registered once in :data:`DETECTORS` and imported only when asked for, so a
stream that uses Haar never loads the torch-based detectors. A backend finds its weights in the cache, never
downloading them: a command calls :func:`fetch` first.
"""

from __future__ import annotations

from ..config import DetectConfig
from ..errors import ConfigError
from ..registry import Registry
from .base import Detector

DETECTORS = Registry("detector", {
    "haar": "fersr_stream.detect.haar:HaarDetector",
    "yunet": "fersr_stream.detect.yunet:YuNetDetector",
    "retinaface": "fersr_stream.detect.retinaface:RetinaFaceDetector",
    "mtcnn": "fersr_stream.detect.mtcnn:MTCNNDetector",
})


def create(config: DetectConfig, device=None) -> Detector:
    """Build the detector named by ``config.name`` for ``device``.

    Raises:
        ConfigError: an unknown detector name, or weights given to a detector that takes none.
        WeightsError: its weights are not cached (see :func:`fetch`) or not usable.
    """
    return _backend(config)(config, device)


def fetch(config: DetectConfig, quiet: bool = False) -> None:
    """Download the weights the detector named by ``config`` loads, unless they are cached (or it needs none).

    The step a command takes, once, before :func:`create` (the settings were checked when ``config`` was made, and
    the name is checked first, so a typo costs no download).

    Raises:
        ConfigError: as :func:`create`.
        WeightsError: weights of another detector, offline, or the download failed (the message says what fixes it).
    """
    backend = _backend(config)
    if backend.default_weights is not None:
        from ..weights import store

        store.ensure(str(config.weights or backend.default_weights), download=True, quiet=quiet,
                     arch=DETECTORS.check(config.name))


def _backend(config: DetectConfig) -> type[Detector]:
    """The class of ``config.name``'s backend, once the name and its weights setting are known to fit."""
    backend = DETECTORS.get(config.name)
    if config.weights and not backend.takes_weights:
        takers = [name for name in DETECTORS.names() if DETECTORS.get(name).takes_weights]
        raise ConfigError(f"detect.weights ({config.weights}) is for {', '.join(takers)}; "
                          f"{DETECTORS.check(config.name)} uses no weights file")
    return backend


__all__ = ["DETECTORS", "Detector", "create", "fetch"]
