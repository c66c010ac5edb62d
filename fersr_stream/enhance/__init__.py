"""Face restoration behind one interface: ``enhancer.enhance(crops) -> crops``.

Crops are (N, S, S, 3) uint8 RGB aligned faces (N may be 0). ``none`` returns them unchanged; ``bicubic`` (the
baseline) and the networks return (N, 512, 512, 3) uint8 RGB. Networks (gfpgan, codeformer, restoreformer) load
their weights in :func:`create`, from a registry name or a file, never downloading them: a command calls
:func:`fetch` first.
"""

from __future__ import annotations

import torch

from .. import device as _device
from ..config import EnhanceConfig
from ..errors import ConfigError
from .base import BicubicEnhancer, Enhancer, IdentityEnhancer
from .checkpoints import ARCHITECTURES, load_network
from .restorers import RESTORERS, SIZE, RestorerEnhancer

NAMES = ("none", "bicubic", *ARCHITECTURES)


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
    name = _checked(config)
    device = device if isinstance(device, torch.device) else _device.resolve(device or "auto")
    if name == "none":
        return IdentityEnhancer(device)
    if name == "bicubic":
        return BicubicEnhancer(SIZE, device)
    return RESTORERS[name](load_network(name, config.weights), config, device)


def fetch(config: EnhanceConfig, quiet: bool = False) -> None:
    """Download the network weights ``config`` names, unless they are cached (or it names no network).

    The step a command takes, once, before :func:`create`; the name is checked first.

    Raises:
        ConfigError: as :func:`create`.
        WeightsError: weights of another network, offline, or the download failed (the message says what fixes it).
    """
    name = _checked(config)
    if name in ARCHITECTURES:
        from ..weights import store

        store.ensure(config.weights or ARCHITECTURES[name].default_weights, download=True, quiet=quiet, arch=name)


def _checked(config: EnhanceConfig) -> str:
    """The enhancer's name, checked (the values' ranges are checked by EnhanceConfig itself)."""
    name = (config.name or "").strip().lower()
    if name not in NAMES:
        raise ConfigError(f"unknown enhancer {config.name!r}; choose one of: {', '.join(NAMES)}")
    return name


__all__ = ["NAMES", "BicubicEnhancer", "Enhancer", "IdentityEnhancer", "RestorerEnhancer", "create", "fetch"]
