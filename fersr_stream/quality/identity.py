"""Identity similarity: cosine of FaceNet embeddings of a face and its reference (1 = same embedding).

The network is Inception-ResNet-v1 as facenet-pytorch ships it (a PyTorch port of David Sandberg's FaceNet,
trained on VGGFace2; MIT), written here with the same module names so that its checkpoint
``20180402-114759-vggface2.pt`` (registry ``inception_resnet_v1.vggface2``, a plain state dict) loads as is.
Input: RGB faces resized to 160 x 160, scaled as facenet-pytorch's ``fixed_image_standardization``
((x - 127.5) / 128 on 0..255); output: 512-d L2-normalised embeddings. The study's crops carry a margin around the
face (``faces.margin``), wider than MTCNN's default crops the network was trained on; both faces of a pair are cut
the same way, so the similarity compares like with like.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .base import Metric

WEIGHTS = "inception_resnet_v1.vggface2"
SIDE = 160
CLASSES = 8631  # VGGFace2 identities: the checkpoint's classifier (unused for embeddings)


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (TensorFlow's eps 0.001) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001, momentum=0.1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def _chain(*specs) -> nn.Sequential:
    """BasicConv2d layers from (cin, cout, kernel, stride, padding) tuples."""
    return nn.Sequential(*(BasicConv2d(*spec) for spec in specs))


class _Residual(nn.Module):
    """Inception-ResNet block: parallel branches, concatenated, projected by a 1x1 conv, scaled, added, ReLU."""

    def __init__(self, width: int, branches: list[nn.Module], joined: int, scale: float, relu: bool = True):
        super().__init__()
        self.scale = scale
        for i, branch in enumerate(branches):
            setattr(self, f"branch{i}", branch)
        self.n = len(branches)
        self.conv2d = nn.Conv2d(joined, width, 1)
        if relu:  # the last block has none (and no such module in the checkpoint)
            self.relu = nn.ReLU()

    def forward(self, x):
        out = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.n)], 1)
        out = self.conv2d(out) * self.scale + x
        return self.relu(out) if hasattr(self, "relu") else out


def block35(scale: float = 0.17) -> _Residual:
    return _Residual(256, [BasicConv2d(256, 32, 1),
                           _chain((256, 32, 1), (32, 32, 3, 1, 1)),
                           _chain((256, 32, 1), (32, 32, 3, 1, 1), (32, 32, 3, 1, 1))], 96, scale)


def block17(scale: float = 0.10) -> _Residual:
    return _Residual(896, [BasicConv2d(896, 128, 1),
                           _chain((896, 128, 1), (128, 128, (1, 7), 1, (0, 3)), (128, 128, (7, 1), 1, (3, 0)))],
                     256, scale)


def block8(scale: float = 0.20, relu: bool = True) -> _Residual:
    return _Residual(1792, [BasicConv2d(1792, 192, 1),
                            _chain((1792, 192, 1), (192, 192, (1, 3), 1, (0, 1)), (192, 192, (3, 1), 1, (1, 0)))],
                     384, scale, relu)


class _Mixed(nn.Module):
    """Reduction block: parallel branches (the last a max-pool), concatenated."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        for i, branch in enumerate(branches):
            setattr(self, f"branch{i}", branch)
        self.n = len(branches)

    def forward(self, x):
        return torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.n)], 1)


class InceptionResnetV1(nn.Module):
    """(N, 3, 160, 160) standardised RGB -> (N, 512) unit embeddings."""

    def __init__(self, classes: int | None = CLASSES):
        super().__init__()
        self.conv2d_1a = BasicConv2d(3, 32, 3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, 3)
        self.conv2d_2b = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3)
        self.conv2d_4b = BasicConv2d(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*(block35() for _ in range(5)))
        self.mixed_6a = _Mixed([BasicConv2d(256, 384, 3, stride=2),
                                _chain((256, 192, 1), (192, 192, 3, 1, 1), (192, 256, 3, 2)), nn.MaxPool2d(3, 2)])
        self.repeat_2 = nn.Sequential(*(block17() for _ in range(10)))
        self.mixed_7a = _Mixed([_chain((896, 256, 1), (256, 384, 3, 2)), _chain((896, 256, 1), (256, 256, 3, 2)),
                                _chain((896, 256, 1), (256, 256, 3, 1, 1), (256, 256, 3, 2)), nn.MaxPool2d(3, 2)])
        self.repeat_3 = nn.Sequential(*(block8() for _ in range(5)))
        self.block8 = block8(1.0, relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.last_linear = nn.Linear(1792, 512, bias=False)
        self.last_bn = nn.BatchNorm1d(512, eps=0.001, momentum=0.1)
        if classes:  # kept so that the checkpoint loads strictly; embeddings do not use it
            self.logits = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
                     "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8", "avgpool_1a"):
            x = getattr(self, name)(x)
        x = self.last_bn(self.last_linear(x.flatten(1)))
        return F.normalize(x, p=2, dim=1)

    def load_file(self, path: str | Path) -> InceptionResnetV1:
        """Load facenet-pytorch's checkpoint layout (a state dict with the classifier ``logits.*``)."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return self.eval()


def standardise(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) 0..255 -> (N, 3, 160, 160) float32, (x - 127.5) / 128, resized with antialiasing."""
    x = images.float()
    if x.shape[-2:] != (SIDE, SIDE):
        x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False, antialias=True)
    return (x - 127.5) / 128.0


class Identity(Metric):
    """Cosine similarity of each face's embedding to its reference's; higher keeps identity better."""

    name = "identity"
    weights = (WEIGHTS,)

    def __init__(self, device="cpu", network: InceptionResnetV1 | None = None):
        super().__init__(device)
        self.network = (network or InceptionResnetV1().eval()).to(self.device)

    @classmethod
    def load(cls, device="cpu") -> Identity:
        from ..weights import store

        return cls(device, InceptionResnetV1().load_file(store.ensure(WEIGHTS)))

    def reference(self, references):
        return self.network(standardise(references))

    def score(self, faces, references):
        return (self.network(standardise(faces)) * references).sum(1)  # unit embeddings: the dot is the cosine
