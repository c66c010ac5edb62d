"""OpenCV's ``cv2.resize`` as torch ops, for images that stay on the GPU (and for CPU tests of that path).

OpenCV maps an output pixel centre ``d`` to the input coordinate ``(d + 0.5) * in / out - 0.5`` and samples there
with a small separable kernel, repeating the edge pixels beyond the border. One axis of that is a fixed
(out, in) weight matrix, so a resize is two matrix products, ``Wy @ image @ Wx.T``: one code path for every
method and device, and the weights are OpenCV's own (``torch.nn.functional.interpolate``'s ``area`` mode is
adaptive pooling, which differs from ``INTER_AREA`` for non-integer factors, and it has no Lanczos).
OpenCV rounds uint8 results with fixed-point arithmetic, so rounded outputs agree within one level.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

METHODS = ("nearest", "bilinear", "bicubic", "area", "lanczos")
_AREA_LINEAR = "area-linear"  # INTER_AREA's weights when either axis is enlarged
_CUBIC_A = -0.75  # OpenCV's bicubic (Keys) parameter; PIL uses -0.5


def _cubic(t: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel at distances ``t`` (in input pixels)."""
    t = np.abs(t)
    a = _CUBIC_A
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _lanczos4(t: np.ndarray) -> np.ndarray:
    """Lanczos window of 4 lobes: sinc(t) sinc(t / 4) (normalised to sum 1 by the caller, as OpenCV does)."""
    return np.where(np.abs(t) < 4, np.sinc(t) * np.sinc(t / 4), 0.0)


@functools.lru_cache(maxsize=64)
def weights(n_in: int, n_out: int, method: str) -> np.ndarray:
    """(n_out, n_in) float64 matrix resampling one axis as ``cv2.resize`` does with ``method``.

    ``area`` averages the covered input pixels when shrinking (exact fractional coverage, like ``INTER_AREA``)
    and, when enlarging, uses OpenCV's area-aware linear weights (``area-linear``, which OpenCV applies to both
    axes as soon as either one is enlarged). Rows sum to 1.
    """
    if method not in (*METHODS, _AREA_LINEAR):
        raise ValueError(f"unknown resize method {method!r}; choose one of: {', '.join(METHODS)}")
    if n_in < 1 or n_out < 1:
        raise ValueError(f"resize: sizes must be >= 1, got {n_in} -> {n_out}")
    scale = n_in / n_out
    out = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    if method == "area" and n_out <= n_in:
        # output pixel j covers input [j * scale, (j + 1) * scale); weight = overlap / scale
        lo, hi = rows * scale, (rows + 1) * scale
        for j in range(n_out):
            first, last = int(math.floor(lo[j])), min(int(math.ceil(hi[j])), n_in)
            for i in range(first, last):
                out[j, i] = (min(hi[j], i + 1) - max(lo[j], i)) / scale
        return out
    if method == "nearest":
        out[rows, np.minimum(np.floor(rows * scale).astype(int), n_in - 1)] = 1.0
        return out
    if method in ("area", _AREA_LINEAR):  # OpenCV's INTER_AREA when enlarging: linear taps, area-derived fractions
        left = np.floor(rows * scale).astype(int)
        frac = (rows + 1) - (left + 1) / scale
        frac = np.where(frac <= 0, 0.0, frac - np.floor(frac))
        taps, coeffs = np.stack([left, left + 1], 1), np.stack([1 - frac, frac], 1)
    else:
        centre = (rows + 0.5) * scale - 0.5
        left = np.floor(centre).astype(int)
        frac = centre - left
        if method == "bilinear":
            taps, coeffs = np.stack([left, left + 1], 1), np.stack([1 - frac, frac], 1)
        else:
            reach = 2 if method == "bicubic" else 4
            offsets = np.arange(-reach + 1, reach + 1)  # taps left-1..left+2 (cubic), left-3..left+4 (lanczos)
            taps = left[:, None] + offsets
            distance = frac[:, None] - offsets
            coeffs = _cubic(distance) if method == "bicubic" else _lanczos4(distance)
            coeffs = coeffs / coeffs.sum(axis=1, keepdims=True)
    # edge pixels repeat beyond the border (OpenCV's BORDER_REPLICATE), so out-of-range taps fold onto them
    np.add.at(out, (np.repeat(rows, taps.shape[1]), np.clip(taps, 0, n_in - 1).ravel()), coeffs.ravel())
    return out


@functools.lru_cache(maxsize=64)
def _weights_on(n_in: int, n_out: int, method: str, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(weights(n_in, n_out, method)).to(device=device, dtype=torch.float32)


def resize(images: torch.Tensor, size: tuple[int, int], method: str) -> torch.Tensor:
    """Resize like ``cv2.resize(image, (w, h), interpolation=method)``, batched.

    Args:
        images: (..., H, W) any dtype (e.g. (N, 3, H, W) uint8 or float 0..255), on any device.
        size: (h, w) output height and width in pixels.
        method: nearest | bilinear | bicubic | area | lanczos (OpenCV's INTER_* of the same name).

    Returns:
        (..., h, w) float32, not rounded or clamped (bicubic and Lanczos overshoot a little, as in OpenCV
        before its saturation to uint8). ``images`` converted to float32 when the size already matches.
    """
    h, w = size
    x = images.float()
    if x.shape[-2:] == (h, w):
        return x
    if method not in METHODS:
        raise ValueError(f"unknown resize method {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "area" and (h > x.shape[-2] or w > x.shape[-1]):
        method = _AREA_LINEAR
    wy = _weights_on(x.shape[-2], h, method, x.device)
    wx = _weights_on(x.shape[-1], w, method, x.device)
    return torch.matmul(torch.matmul(wy, x), wx.T)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Round and saturate to uint8, as OpenCV stores 8-bit results."""
    return images.round().clamp_(0, 255).to(torch.uint8)
