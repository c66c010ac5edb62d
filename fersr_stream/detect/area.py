"""Resampling by plain window means, read from a summed-area table: many resizes and crops in a few gathers.

Each output pixel is the mean of the whole input pixels in its window, rows ``floor(i * n / m)`` to
``ceil((i + 1) * n / m)`` for n input and m output pixels: torch's ``interpolate(mode="area")`` (adaptive average
pooling), which shrinks and enlarges alike. MTCNN's reference sizes its pyramid and crops this way, and its
regressions follow small input changes, so the same sampling is kept. With a summed-area table a window's sum is
four look-ups whatever its size, so every level of a pyramid, and the crops of all candidates of all frames, are
a few ``index_select`` calls on any device. Tables hold integer sums of uint8 pixels: the means are exact.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch


def integral(frames: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, H + 1, W + 1, C) summed-area table, int32 (int64 where sums could overflow)."""
    b, h, w, c = frames.shape
    dtype = torch.int32 if h * w * 255 < 2 ** 31 else torch.int64
    table = torch.zeros((b, h + 1, w + 1, c), dtype=dtype, device=frames.device)
    table[:, 1:, 1:] = frames.to(dtype).cumsum(1).cumsum(2)
    return table


def host_integral(frames: np.ndarray) -> torch.Tensor:
    """:func:`integral` of host frames (B, H, W, C) uint8, by OpenCV (many times faster than torch's on a CPU)."""
    if frames.shape[1] * frames.shape[2] * 255 >= 2 ** 31:
        return integral(torch.from_numpy(frames))
    return torch.from_numpy(np.stack([cv2.integral(f) for f in frames]))


def host_crops(frames: list[np.ndarray], corners: torch.Tensor, owner: torch.Tensor, side: int, gain: float = 1.0,
               bias: float = 0.0) -> torch.Tensor:
    """:func:`crops` of host frames (H, W, C) uint8, each from a summed-area table of its own window alone (by
    OpenCV): for a few crops of large frames (MTCNN following faces), cheaper than a table of whole frames or of
    a padded patch batch and torch's gathers (0.5 against 1.3 ms for one 350 px face here). The same sums, the same
    float32 arithmetic: the same values, bit for bit."""
    zero = torch.zeros(len(corners), dtype=torch.long)  # windows within each crop's own table
    y0, y1 = (i.numpy() for i in windows(zero, corners[:, 3] - corners[:, 1], side))
    x0, x1 = (i.numpy() for i in windows(zero, corners[:, 2] - corners[:, 0], side))
    out = np.empty((len(corners), side, side, frames[0].shape[2]), np.float32)
    for n, ((left, top, right, bottom), k) in enumerate(zip(corners.tolist(), owner.tolist())):
        window = frames[k][top:bottom, left:right]
        deep = cv2.CV_32S if window.shape[0] * window.shape[1] * 255 < 2 ** 31 else cv2.CV_64F
        table = cv2.integral(window, sdepth=deep)
        rows0, rows1 = table[y0[n]], table[y1[n]]
        sums = rows1[:, x1[n]] - rows0[:, x1[n]] - rows1[:, x0[n]] + rows0[:, x0[n]]
        area = ((y1[n] - y0[n])[:, None] * (x1[n] - x0[n])[None, :]).astype(np.float32)
        weight = np.reciprocal(area) * np.float32(gain)  # as torch divides a number by a tensor
        np.multiply(sums.astype(np.float32), weight[:, :, None], out=out[n])
    out += np.float32(bias)
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def windows(start: torch.Tensor, length: torch.Tensor, out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and past-the-end input index (..., out) of each output pixel's window over ``length`` (...) pixels
    from ``start`` (...)."""
    i = torch.arange(out, device=length.device)
    first = (i * length[..., None]) // out
    end = -((-(i + 1) * length[..., None]) // out)  # ceil division
    return start[..., None] + first, start[..., None] + end


@functools.lru_cache(maxsize=64)
def _resize_plan(height: int, width: int, size: tuple[int, int], gain: float, device: torch.device):
    """Row and column windows for one output size, and each output pixel's gain / window area. Cached: a video's
    frames are resized to the same sizes every time."""
    zero = torch.zeros((), dtype=torch.long, device=device)
    y0, y1 = windows(zero, torch.tensor(height, device=device), size[0])
    x0, x1 = windows(zero, torch.tensor(width, device=device), size[1])
    weight = gain / ((y1 - y0)[:, None] * (x1 - x0)[None, :]).float()
    return y0, y1, x0, x1, weight[..., None]


def resize(table: torch.Tensor, size: tuple[int, int], gain: float = 1.0, bias: float = 0.0) -> torch.Tensor:
    """The frames of ``table`` resized to ``size`` (h, w): (B, C, h, w) float ``mean * gain + bias``, channels-last
    in memory (the layout the table's is)."""
    y0, y1, x0, x1, weight = _resize_plan(table.shape[1] - 1, table.shape[2] - 1, tuple(size), gain, table.device)
    rows = table.index_select(1, y1) - table.index_select(1, y0)
    sums = rows.index_select(2, x1) - rows.index_select(2, x0)
    return sums.float().mul_(weight).add_(bias).permute(0, 3, 1, 2)


def crops(table: torch.Tensor, corners: torch.Tensor, owner: torch.Tensor, side: int, gain: float = 1.0,
          bias: float = 0.0) -> torch.Tensor:
    """Square crops, each window of whole pixels resized to ``side`` x ``side``.

    Args:
        table: (B, H + 1, W + 1, C) summed-area table.
        corners: (N, 4) int64 ``x0, y0, x1, y1``: first and past-the-end pixel, inside the frame, non-empty.
        owner: (N,) int64 index of each crop's frame in ``table``.

    Returns:
        (N, C, side, side) float ``mean * gain + bias``, channels-last in memory.
    """
    height, width, channels = table.shape[1:]
    y0, y1 = windows(corners[:, 1], corners[:, 3] - corners[:, 1], side)
    x0, x1 = windows(corners[:, 0], corners[:, 2] - corners[:, 0], side)
    flat = table.reshape(-1, channels)
    base = (owner * height * width)[:, None, None]

    def at(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        return flat.index_select(0, (base + ys[:, :, None] * width + xs[:, None, :]).flatten())

    sums = at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)
    weight = gain / ((y1 - y0)[:, :, None] * (x1 - x0)[:, None, :]).reshape(-1, 1).float()
    return sums.float().mul_(weight).add_(bias).view(-1, side, side, channels).permute(0, 3, 1, 2)
