"""Face restoration behind one interface: ``enhancer.enhance(crops) -> crops``.

Crops are (N, S, S, 3) uint8 RGB aligned faces (N may be 0). ``none`` returns them unchanged; ``bicubic`` (the
baseline) and the networks return (N, 512, 512, 3) uint8 RGB. Networks (gfpgan, codeformer, restoreformer) load
their weights in :func:`create`, from a registry name or a file, never downloading in a constructor.
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
        ConfigError: an unknown name or an out-of-range setting.
        WeightsError: weights that are missing, unreadable, or of another architecture.
    """
    name = (config.name or "").strip().lower()
    if name not in NAMES:
        raise ConfigError(f"unknown enhancer {config.name!r}; choose one of: {', '.join(NAMES)}")
    if config.batch < 1:
        raise ConfigError(f"enhance.batch must be at least 1, got {config.batch}")
    if config.max_wait < 0:
        raise ConfigError(f"enhance.max_wait must be >= 0 seconds, got {config.max_wait}")
    if not 0.0 <= config.fidelity <= 1.0:
        raise ConfigError(f"enhance.fidelity must be in [0, 1], got {config.fidelity}")
    device = device if isinstance(device, torch.device) else _device.resolve(device or "auto")
    if name == "none":
        return IdentityEnhancer(device)
    if name == "bicubic":
        return BicubicEnhancer(SIZE, device)
    return RESTORERS[name](load_network(name, config.weights), config, device)


__all__ = ["NAMES", "BicubicEnhancer", "Enhancer", "IdentityEnhancer", "RestorerEnhancer", "create"]
