"""GFPGAN's modulated convolutions in a form that batches on a GPU.

spandrel's StyleGAN2 ``ModulatedConv2d`` scales the *weights* by each sample's style and runs one grouped
convolution with ``groups=batch`` (the batch folded into channels with ``view``). cuDNN has no good kernels for
such grouped convolutions, so throughput barely grows with the batch (``python -m fersr_stream.bench.gpu``'s batch
sweep shows it), and the ``view`` rules out channels_last activations.

Scaling the *input* channels instead is the same function (StyleGAN2's ``fused_modconv=False``): with
``s = modulation(style)`` and the shared weight ``W``,

    conv(x, W * s) = conv(x * s, W)
    demodulation: out[b, o] /= sqrt(sum_{i,k,k} (W[o, i] * s[b, i])^2 + eps)
                             = sqrt(((W^2).sum(k, k) @ s[b]^2)[o] + eps)

so one ordinary batched convolution with ``W`` does the work, in the memory format of ``x``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resample import bilinear
from .swap import replace_modules


class BatchedModulatedConv2d(nn.Module):
    """spandrel's ``ModulatedConv2d`` (stylegan2_clean_arch) computed by scaling the input; owns the same
    ``modulation`` Linear and ``weight`` Parameter objects, so the state_dict is unchanged."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.weight = conv.weight  # (1, c_out, c_in, k, k)
        self.modulation = conv.modulation
        self.demodulate = conv.demodulate
        self.sample_mode = conv.sample_mode
        self.eps = conv.eps
        self.padding = conv.padding

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.modulation(style)  # (b, c_in)
        weight = self.weight[0]  # (c_out, c_in, k, k)
        x = x * s[:, :, None, None]
        if self.sample_mode == "upsample":
            x = bilinear(x, 2)
        elif self.sample_mode == "downsample":
            x = bilinear(x, 0.5)
        out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # in the weight's dtype (float32 under autocast) as the original; a matmul would run in float16 there
            energy = (weight.square().sum([2, 3]) * s.to(weight.dtype).square()[:, None]).sum(2)  # (b, c_out)
            out = out * torch.rsqrt(energy + self.eps).to(out.dtype)[:, :, None, None]
        return out

    def extra_repr(self) -> str:
        c_out, c_in, k, _ = self.weight.shape[1:]
        return f"{c_in}, {c_out}, kernel_size={k}, demodulate={self.demodulate}, sample_mode={self.sample_mode}"


def batch_modulated_convs(model: nn.Module) -> int:
    """Replace, in place, every spandrel GFPGAN ``ModulatedConv2d`` inside ``model`` by a
    :class:`BatchedModulatedConv2d` on the same parameters; returns how many were replaced."""
    from spandrel.architectures.GFPGAN.__arch.stylegan2_clean_arch import ModulatedConv2d

    return replace_modules(model, ModulatedConv2d, BatchedModulatedConv2d)
