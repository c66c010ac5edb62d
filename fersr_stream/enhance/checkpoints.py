"""Restoration checkpoints -> torch modules, through spandrel's architecture detection.

The files are the upstream ones (GFPGANv1.3/1.4, CodeFormer v0.1, RestoreFormer): pickled dicts holding the state
dict under ``params_ema`` (or ``params``, ``state_dict``...). They are read with ``torch.load(weights_only=True)``
(never arbitrary unpickling) or safetensors, unwrapped here, and handed to spandrel, whose detected architecture
must be the one asked for. Every failure is one :class:`WeightsError` line naming the file and the architecture.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError, one_line, unreadable


# Where upstream training code nests the weights, most wanted first (the EMA weights are the ones released).
_WRAPPERS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net", "netG")


@functools.cache
def _spandrel_registry():
    """spandrel's main registry plus spandrel-extra-arches (CodeFormer), as a private copy.

    A copy, because ``spandrel_extra_arches.install()`` would change the process-wide registry for every user.
    """
    from spandrel import MAIN_REGISTRY
    from spandrel_extra_arches import EXTRA_REGISTRY

    registry = MAIN_REGISTRY.copy()
    registry.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    return registry


def read_state_dict(path: Path, arch_id: str) -> dict[str, torch.Tensor]:
    """The flat ``name -> tensor`` dict stored in a checkpoint file, unwrapped from its upstream layout.

    Raises:
        WeightsError: the file cannot be read as weights, or holds no state dict.
    """
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path), device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file can fail in the zip reader, the unpickler or torch
        raise WeightsError(f"cannot read {path} as a {arch_id} checkpoint: {unreadable(path, exc)}") from None
    state = raw
    if isinstance(state, dict):
        for key in _WRAPPERS:
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise WeightsError(f"{path} holds no state dict of tensors; expected a {arch_id} checkpoint")
    if all(k.startswith("module.") for k in state):  # saved from a DataParallel wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_network(restorer, weights: str | None = None) -> nn.Module:
    """Build ``restorer``'s network from its checkpoint, on CPU, in eval mode.

    Args:
        restorer: a :class:`~fersr_stream.enhance.restorers.RestorerEnhancer` class: its ``arch_id`` (spandrel's
            name, which the checkpoint must hold) and ``default_weights``.
        weights: registry name or file path; None = the restorer's default registry entry.

    Returns:
        The bare network (spandrel's ``ImageModelDescriptor.model``), which takes and returns [-1, 1] NCHW.

    Raises:
        WeightsError: missing weights (naming the `fersr-models download` fix), an unreadable file, or a
            checkpoint of another architecture.
    """
    from spandrel import ModelLoader, UnsupportedModelError

    from ..weights import registry, store

    arch_id, default = restorer.arch_id, restorer.default_weights
    path = Path(store.ensure(weights or default, arch=registry.arch(default)))
    state = read_state_dict(path, arch_id)
    try:
        with warnings.catch_warnings():  # spandrel's GFPGAN scripts a helper with torch.jit, which torch deprecates
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
            descriptor = ModelLoader(registry=_spandrel_registry()).load_from_state_dict(state)
    except UnsupportedModelError:
        raise WeightsError(f"{path} is not a {arch_id} checkpoint (no known architecture matches its "
                           f"keys)") from None
    except (RuntimeError, KeyError, ValueError, IndexError, AttributeError) as exc:
        # spandrel recognised some keys but the tensors do not fit (truncated or edited file)
        raise WeightsError(f"{path} is not a usable {arch_id} checkpoint: {one_line(exc)}") from None
    found = descriptor.architecture.id
    if found != arch_id:
        raise WeightsError(f"{path} holds a {found} network, expected {arch_id}; give a {arch_id} "
                           f"checkpoint (e.g. {default})")
    model = descriptor.model
    model.eval().requires_grad_(False)
    return model
