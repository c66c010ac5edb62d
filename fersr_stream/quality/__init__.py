"""Restoration quality: how close a restored (or plain LR) face is to its HR face.

Each metric a user can type (``quality.metrics`` in a study) is registered once in :data:`METRICS`; the network
metrics name the registry weights they need (:attr:`Metric.weights`) and load them with :meth:`Metric.load`, never
downloading (a command calls :func:`fetch` first).

- ``psnr``, ``ssim``: pixel fidelity (:mod:`.pixels`), higher is closer.
- ``lpips``: LPIPS v0.1 with AlexNet (:mod:`.lpips`), a learned perceptual distance, lower is closer.
- ``identity``: cosine similarity of FaceNet embeddings (InceptionResnetV1 trained on VGGFace2, :mod:`.identity`),
  higher means the restored face still looks like the same person.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Metric

METRICS = Registry("quality metric", {
    "psnr": "fersr_stream.quality.pixels:PSNR",
    "ssim": "fersr_stream.quality.pixels:SSIM",
    "lpips": "fersr_stream.quality.lpips:LPIPS",
    "identity": "fersr_stream.quality.identity:Identity",
})


def missing(names: tuple[str, ...]) -> dict[str, list[str]]:
    """metric -> the registry weights it needs that are not cached (only metrics that lack some)."""
    from ..weights import store

    out = {}
    for name in names:
        absent = [w for w in METRICS.get(name).weights if not store.path(w).is_file()]
        if absent:
            out[name] = absent
    return out


def fetch(names: tuple[str, ...], quiet: bool = False) -> None:
    """Download (and verify) the weights the metrics ``names`` need, unless they are cached."""
    from ..weights import store

    for name in names:
        for weights in METRICS.get(name).weights:
            store.ensure(weights, download=True, quiet=quiet)


__all__ = ["METRICS", "Metric", "fetch", "missing"]
