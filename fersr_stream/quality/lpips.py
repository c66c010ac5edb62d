"""LPIPS v0.1 with AlexNet (Zhang et al., CVPR 2018): a learned perceptual distance, 0 for identical faces.

Both faces are scaled to [-1, 1], shifted and scaled per channel, and passed through AlexNet's five conv+ReLU
stages (torchvision's ImageNet weights, registry ``alexnet.imagenet``). Each stage's features are unit-normalised
over channels; their squared difference is weighted per channel by the learnt linear head (registry
``lpips.alex_v0_1``, the ``weights/v0.1/alex.pth`` of the ``lpips`` package), averaged over space and summed over
the stages. Faces smaller than :data:`MIN_SIDE` are enlarged (bilinear) first: AlexNet's pooling needs that much.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from ..weights import registry
from .base import Metric, to_unit_range

BACKBONE = "alexnet.imagenet"
HEAD = "lpips.alex_v0_1"
CHANNELS = (64, 192, 384, 256, 256)
TAPS = (1, 4, 7, 9, 11)  # indices of the ReLUs in AlexNet.features whose outputs LPIPS compares
MIN_SIDE = 32


class AlexNetFeatures(nn.Module):
    """AlexNet's convolutional part with torchvision's module indices (``features.N`` in its checkpoint)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                out.append(x)
        return out


class LPIPSNet(nn.Module):
    """The LPIPS network: (N, 3, H, W) in [-1, 1] twice -> (N,) distances."""

    def __init__(self):
        super().__init__()
        self.net = AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        pre = registry.get(HEAD).preprocessing  # LPIPS's per-channel shift and scale of [-1, 1] input
        self.register_buffer("shift", torch.tensor(pre.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(pre.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features(x), self.features(y))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five stages' features of (N, 3, H, W) input in [-1, 1], each unit-normalised over channels."""
        return [f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for f in self.net((x - self.shift) / self.scale)]

    def distance(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        """(N,) LPIPS of two :meth:`features` lists."""
        total = 0.0
        for lin, a, b in zip(self.lins, fx, fy):
            total = total + lin((a - b) ** 2).mean((2, 3))
        return total[:, 0]

    def load_files(self, backbone: str | Path, head: str | Path) -> LPIPSNet:
        """Load torchvision's AlexNet checkpoint (``features.*``; the classifier is ignored) and the LPIPS head
        (``lin<k>.model.1.weight``)."""
        body = _state(backbone)
        self.net.load_state_dict({k: v for k, v in body.items() if k.startswith("features.")})
        lins = _state(head)
        try:
            self.lins.load_state_dict({f"{k}.weight": lins[f"lin{k}.model.1.weight"] for k in range(len(CHANNELS))})
        except KeyError as exc:
            raise WeightsError(f"{head} is not an LPIPS v0.1 head (no {exc.args[0]})") from None
        return self.eval()


def _state(path: str | Path) -> dict[str, torch.Tensor]:
    # the lpips head was saved from a CUDA model in torch's legacy format: map it to the CPU
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state)


class LPIPS(Metric):
    """LPIPS v0.1 (AlexNet) distance of each face to its reference; lower is closer."""

    name = "lpips"
    weights = (BACKBONE, HEAD)
    higher_is_better = False

    def __init__(self, device="cpu", network: LPIPSNet | None = None):
        super().__init__(device)
        self.network = (network or LPIPSNet().eval()).to(self.device)

    @classmethod
    def load(cls, device="cpu") -> LPIPS:
        from ..weights import store

        return cls(device, LPIPSNet().load_files(store.ensure(BACKBONE), store.ensure(HEAD)))

    def reference(self, references):
        return self.network.features(_input(references))

    def score(self, faces, references):
        return self.network.distance(self.network.features(_input(faces)), references)


def _input(images: torch.Tensor) -> torch.Tensor:
    """0..255 -> [-1, 1], enlarged to :data:`MIN_SIDE` where smaller."""
    x = to_unit_range(images)
    if min(x.shape[-2:]) < MIN_SIDE:
        x = F.interpolate(x, size=(MIN_SIDE, MIN_SIDE), mode="bilinear", align_corners=False)
    return x
