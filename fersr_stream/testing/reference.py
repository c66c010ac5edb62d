"""The official GFPGAN stack (gfpgan, basicsr, facexlib), importable beside today's torchvision.

Only the parity test (tests/unit/test_parity.py) and the restoration benchmark's baseline (bench_restore) use the
official code, which the ``reference`` extra installs; the stream never imports it.

Why this module exists: gfpgan requires the distribution ``basicsr``, and basicsr 1.4.2 (its last release) runs
``from torchvision.transforms.functional_tensor import rgb_to_grayscale`` when imported. torchvision made that module
private in 0.15 and removed it in 0.17, so ``import basicsr`` -- and with it ``import gfpgan`` -- fails. :func:`load`
imports a module of the stack with a stand-in for that one module in ``sys.modules``, holding the public
``torchvision.transforms.functional.rgb_to_grayscale`` (the same computation on tensors; basicsr only uses it to
synthesise training degradations, never when restoring), and takes the stand-in out again once the import is done,
so the rest of the process never sees it. Where torchvision still has the module, nothing is patched. The same
import also runs ``np.seterr(divide='ignore', invalid='ignore')`` (basicsr's degradations module), which would
silence numpy's warnings for the whole process, the rest of a test session included: :func:`load` puts numpy's
error handling back as it was.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

import numpy as np

PACKAGES = ("gfpgan", "basicsr", "facexlib")
REMOVED = "torchvision.transforms.functional_tensor"


def installed() -> bool:
    """Whether the reference's packages are installed (found, not imported: :func:`load` may still fail)."""
    return all(importlib.util.find_spec(package) is not None for package in PACKAGES)


def load(name: str = "gfpgan") -> ModuleType:
    """Import module ``name`` of the official stack, standing in for the torchvision module basicsr imports and
    keeping numpy's error handling as it was.

    Importing ``gfpgan`` imports basicsr whole (its ``__init__`` imports every subpackage), so after
    ``load("gfpgan")`` any gfpgan or basicsr module imports as usual.

    Raises:
        ImportError: the stack is not installed (``pip install -e '.[reference]'``) or does not import.
    """
    stand_in = None
    if REMOVED not in sys.modules and importlib.util.find_spec(REMOVED) is None:
        from torchvision.transforms.functional import rgb_to_grayscale

        stand_in = ModuleType(REMOVED, f"Stand-in for the module torchvision removed in 0.17 ({__name__}).")
        stand_in.rgb_to_grayscale = rgb_to_grayscale
        sys.modules[REMOVED] = stand_in
    numpy_errors = np.geterr()
    try:
        return importlib.import_module(name)
    finally:
        np.seterr(**numpy_errors)
        if stand_in is not None and sys.modules.get(REMOVED) is stand_in:
            del sys.modules[REMOVED]
