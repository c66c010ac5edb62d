"""Swapping a network's modules in place for equivalents that run better on a GPU (same parameters, same
``state_dict``)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def replace_modules(model: nn.Module, kind: type, make: Callable[[nn.Module], nn.Module]) -> int:
    """Replace every ``kind`` module inside ``model`` by ``make(module)``; returns how many were replaced."""
    found = [(name, module) for name, module in model.named_modules() if isinstance(module, kind)]
    for name, module in found:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, make(module))
    return len(found)
