"""Face restoration behind one interface (:class:`Enhancer`): ``enhancer.enhance(crops) -> crops``.

Crops are :class:`fersr_stream.crops.CropBatch` objects of aligned faces (on the host or the compute device).
``none`` returns them unchanged; ``bicubic`` (the baseline) and the networks return 512 px crops. Each enhancer is
registered once in :data:`ENHANCERS`; networks (gfpgan, codeformer, restoreformer) load their weights in
:func:`create`, from a registry name or a file, never downloading them: a command calls :func:`fetch` first.
"""

from __future__ import annotations

import torch

from .. import device as _device
from ..config import EnhanceConfig
from ..registry import Registry
from .base import BicubicEnhancer, Enhancer, IdentityEnhancer

ENHANCERS = Registry("enhancer", {
    "none": "fersr_stream.enhance.base:IdentityEnhancer",
    "bicubic": "fersr_stream.enhance.base:BicubicEnhancer",
    "gfpgan": "fersr_stream.enhance.restorers:GFPGANEnhancer",
    "codeformer": "fersr_stream.enhance.restorers:CodeFormerEnhancer",
    "restoreformer": "fersr_stream.enhance.restorers:RestoreFormerEnhancer",
})


def create(config: EnhanceConfig, device: torch.device | str | None = None) -> Enhancer:
    """Build the enhancer named by ``config.name``, loading its network (if any) onto ``device``.

    Args:
        config: ``name``, ``weights`` (registry name or path; None = the default entry), ``batch``,
            ``fidelity`` (CodeFormer), ``seed`` (GFPGAN noise).
        device: a torch device or name; None = ``auto``.

    Raises:
        ConfigError: an unknown name.
        WeightsError: weights that are not cached (see :func:`fetch`), unreadable, or of another architecture.
    """
    device = device if isinstance(device, torch.device) else _device.resolve(device or "auto")
    return ENHANCERS.get(config.name).build(config, device)


def fetch(config: EnhanceConfig, quiet: bool = False) -> None:
    """Download the network weights ``config`` names, unless they are cached (or it names no network).

    The step a command takes, once, before :func:`create`; the name is checked first.

    Raises:
        ConfigError: as :func:`create`.
        WeightsError: weights of another network, offline, or the download failed (the message says what fixes it).
    """
    enhancer = ENHANCERS.get(config.name)
    if enhancer.default_weights is not None:
        from ..weights import store

        store.ensure(config.weights or enhancer.default_weights, download=True, quiet=quiet,
                     arch=ENHANCERS.check(config.name))


def networks() -> tuple[str, ...]:
    """The enhancers that run a restoration network (the ones with weights)."""
    return tuple(name for name in ENHANCERS.names() if ENHANCERS.get(name).default_weights is not None)


__all__ = ["ENHANCERS", "BicubicEnhancer", "Enhancer", "IdentityEnhancer", "create", "fetch", "networks"]
