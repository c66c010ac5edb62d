"""GFPGAN's bilinear x2 and x1/2 resampling (``align_corners=False``) in a form that is fast on small feature maps.

PyTorch's CUDA kernel for ``F.interpolate(..., mode="bilinear")`` runs one thread per output pixel, and each thread
loops over batch x channels. On GFPGAN's deep, small feature maps most of the GPU then idles: doubling a deep 4 x 4
map can take longer than doubling a shallow 256 x 256 one with as many values, and the network's 42 resamplings
took a large share of its GPU time.

The same results come from a few whole-tensor operations:

- x1/2 with ``align_corners=False`` samples exactly between pixel pairs: a 2x2 average (``avg_pool2d``);
- x2 puts every output pixel a quarter of a pixel from its nearest input pixel, so along each axis it is 3/4 of
  that pixel plus 1/4 of the neighbour on its side, the edge pixel standing in for the one past the edge.

They win on small maps and lose on large ones, where the kernel is efficient and these write intermediate tensors,
so :func:`bilinear` picks by the map's size (:data:`UP_MAX_PIXELS`, :data:`DOWN_MAX_PIXELS`). GFPGAN fp16 on an
H200, faces/s with F.interpolate only / with this rule (medians of two alternating rounds): 154 / 208 at batch 16,
142 / 154 at batch 4; at batch 1, 44 / 38, but batch-1 figures swung between 38 and 75 across that session's runs
(``bench_gpu``'s sweep gave 75 with this rule), so no difference is established there. Thresholds of 32x32 or
128x128 pixels gave 202 and 192 at batch 16; the replacement on every map, 170.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .swap import replace_modules

UP_MAX_PIXELS = 64 * 64  # x2 inputs up to this many pixels (h * w) are doubled here, larger ones by F.interpolate
DOWN_MAX_PIXELS = 256 * 256  # likewise for x1/2 (even sides only)


def _double(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` twice as long along ``dim`` (2 or 3), as bilinear interpolation with ``align_corners=False``."""
    n = x.shape[dim]
    before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)  # each pixel's neighbour before it
    after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)  # and after it
    return torch.stack([torch.lerp(x, before, 0.25), torch.lerp(x, after, 0.25)], dim + 1).flatten(dim, dim + 1)


def bilinear(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)`` for ``scale`` 2 or 0.5 on an
    (N, C, H, W) tensor: the same values (within float rounding), in the same dtype and memory format."""
    pixels = x.shape[-2] * x.shape[-1]
    if scale == 2 and pixels <= UP_MAX_PIXELS:
        out = _double(_double(x, 2), 3)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    if scale == 0.5 and pixels <= DOWN_MAX_PIXELS and x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0:
        return F.avg_pool2d(x, 2)
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


class ResampledResBlock(nn.Module):
    """spandrel's GFPGAN U-Net ``ResBlock`` (gfpganv1_clean_arch) resampling with :func:`bilinear`; owns the same
    ``conv1``, ``conv2`` and ``skip`` modules, so the ``state_dict`` is unchanged."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.conv1, self.conv2, self.skip = block.conv1, block.conv2, block.skip
        self.scale_factor = block.scale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu_(self.conv1(x), negative_slope=0.2)
        out = F.leaky_relu_(self.conv2(bilinear(out, self.scale_factor)), negative_slope=0.2)
        return out + self.skip(bilinear(x, self.scale_factor))


def resample_resblocks(model: nn.Module) -> int:
    """Replace, in place, every spandrel GFPGAN ``ResBlock`` inside ``model`` by a :class:`ResampledResBlock` on the
    same modules; returns how many were replaced."""
    from spandrel.architectures.GFPGAN.__arch.gfpganv1_clean_arch import ResBlock

    return replace_modules(model, ResBlock, ResampledResBlock)
