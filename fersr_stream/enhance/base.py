"""What every enhancer shares: the interface, the crop check, and the two baselines (none, bicubic).

An enhancer maps aligned face crops to restored crops: ``enhance(crops)`` with crops (N, S, S, 3) uint8 RGB
(N may be 0) returns (N, size, size, 3) uint8 RGB, or the input unchanged where ``size`` is None.
``enhance_tensor(crops)`` is the same for (N, 3, S, S) uint8 torch tensors that stay on the device (the GPU path).
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
import torch

from .. import resize as _resize


class Enhancer(Protocol):
    """A face restorer. ``size``: output side in pixels (None = input size kept); ``device``: where it computes."""

    name: str
    size: int | None
    device: torch.device

    def enhance(self, crops: np.ndarray) -> np.ndarray:
        ...

    def enhance_tensor(self, crops: torch.Tensor) -> torch.Tensor:
        ...


def check_crops(crops: np.ndarray) -> None:
    """Raise ValueError unless ``crops`` is (N, S, S, 3) uint8: square RGB crops, N >= 0."""
    ok = (isinstance(crops, np.ndarray) and crops.ndim == 4 and crops.shape[1] == crops.shape[2]
          and crops.shape[3] == 3 and crops.dtype == np.uint8)
    if not ok:
        got = f"{crops.shape} {crops.dtype}" if isinstance(crops, np.ndarray) else type(crops).__name__
        raise ValueError(f"enhance: expected (N, S, S, 3) uint8 RGB crops, got {got}")


def check_crops_tensor(crops: torch.Tensor) -> None:
    """Raise ValueError unless ``crops`` is an (N, 3, S, S) uint8 torch tensor, N >= 0."""
    ok = (isinstance(crops, torch.Tensor) and crops.ndim == 4 and crops.shape[1] == 3
          and crops.shape[2] == crops.shape[3] and crops.dtype == torch.uint8)
    if not ok:
        got = f"{tuple(crops.shape)} {crops.dtype}" if isinstance(crops, torch.Tensor) else type(crops).__name__
        raise ValueError(f"enhance_tensor: expected (N, 3, S, S) uint8 RGB crops, got {got}")


def resize_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, size, size, 3) uint8: bicubic when enlarging, area averaging when shrinking.

    Returns ``crops`` itself when S == size. Shrinking uses area averaging because bicubic without a low-pass
    filter aliases.
    """
    if crops.shape[1] == size:
        return crops
    interpolation = cv2.INTER_CUBIC if size > crops.shape[1] else cv2.INTER_AREA
    out = np.empty((len(crops), size, size, 3), np.uint8)
    for i, crop in enumerate(crops):
        out[i] = cv2.resize(crop, (size, size), interpolation=interpolation)
    return out


def resize_crops_tensor(crops: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`resize_crops` for (N, 3, S, S) uint8 tensors, on their device (OpenCV's weights, see ``resize``)."""
    if crops.shape[2] == size:
        return crops
    method = "bicubic" if size > crops.shape[2] else "area"
    return _resize.to_uint8(_resize.resize(crops, (size, size), method))


class IdentityEnhancer:
    """``none``: crops pass through unchanged (the classifier sees the degraded face)."""

    name = "none"
    size = None

    def __init__(self, device: torch.device | None = None):
        self.device = device if device is not None else torch.device("cpu")

    def enhance(self, crops: np.ndarray) -> np.ndarray:
        check_crops(crops)
        return crops

    def enhance_tensor(self, crops: torch.Tensor) -> torch.Tensor:
        check_crops_tensor(crops)
        return crops


class BicubicEnhancer:
    """``bicubic``: the no-network baseline, crops resized to ``size`` (identity when already that size)."""

    name = "bicubic"

    def __init__(self, size: int = 512, device: torch.device | None = None):
        self.size = size
        self.device = device if device is not None else torch.device("cpu")

    def enhance(self, crops: np.ndarray) -> np.ndarray:
        check_crops(crops)
        return resize_crops(crops, self.size)

    def enhance_tensor(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) uint8 -> (N, 3, size, size) uint8 on the crops' device."""
        check_crops_tensor(crops)
        return resize_crops_tensor(crops, self.size)
