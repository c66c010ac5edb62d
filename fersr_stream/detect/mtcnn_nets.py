"""MTCNN's three networks (Zhang et al., IEEE SPL 2016) and their weights file.

P-Net proposes face boxes from 12x12 windows; R-Net re-scores them from 24x24 crops; O-Net from 48x48 crops, with
5 landmarks. Parameter names are those of facenet-pytorch 2.6.0 (MIT), whose weights ship converted to
``data/mtcnn.safetensors`` (keys ``pnet.*``, ``rnet.*``, ``onet.*``; see ``convert_mtcnn.py`` and NOTICE). They
came from the authors' Caffe models through TensorFlow, so R-Net's and O-Net's dense layers read the conv features
in (width, height, channel) order. Inputs are RGB ``(x - 127.5) / 128``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError, unreadable

SHIPPED_WEIGHTS = Path(__file__).parent / "data" / "mtcnn.safetensors"
NETS = ("pnet", "rnet", "onet")


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, W * H * C): the order in which the converted dense layers read their input."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """Proposal net, fully convolutional: (B, 3, H, W) normalised -> box offsets (B, h, w, 4) and face
    probabilities (B, h, w), one per 12x12 window at stride 2 (h = ceil((H - 2) / 2) - 4)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not-face logits
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        # the two 1x1 heads as one product over the channels (a 1x1 conv is torch's slow path on a CPU)
        weight = torch.cat([self.conv4_1.weight, self.conv4_2.weight]).flatten(1)
        out = F.linear(x.permute(0, 2, 3, 1), weight, torch.cat([self.conv4_1.bias, self.conv4_2.bias]))
        return out[..., 2:], out[..., :2].softmax(dim=-1)[..., 1]


class RNet(nn.Module):
    """Refinement net: (N, 3, 24, 24) normalised crops -> box offsets (N, 4) and face probabilities (N,)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_whc(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), self.dense5_1(x).softmax(dim=1)[:, 1]


class ONet(nn.Module):
    """Output net: (N, 3, 48, 48) normalised crops -> box offsets (N, 4), landmarks (N, 10: five x then five y,
    as fractions of the crop) and face probabilities (N,)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), self.dense6_1(x).softmax(dim=1)[:, 1]


class MTCNN(nn.Module):
    """The three networks; state dict keys ``pnet.*``, ``rnet.*``, ``onet.*`` (the shipped file's layout)."""

    def __init__(self):
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, or of a torch file holding a plain state dict (read weights-only).

    Raises:
        WeightsError: a missing or unreadable file, or one that holds something besides named tensors.
    """
    if not path.is_file():
        raise WeightsError(f"MTCNN weights not found: {path} (the shipped weights are used when detect.weights "
                           f"is left out)")
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: an 8-byte header length, then the JSON header; anything else is left to torch (its zip
    # archives, legacy pickles, and whatever else a file may be, which it refuses)
    torch_file = head[8:9] != b"{"
    try:
        if torch_file:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            from safetensors.torch import load_file

            state = load_file(str(path))
    except Exception as exc:  # any reader failure means the file is not usable weights
        kind = "torch" if torch_file else "safetensors"
        raise WeightsError(f"cannot read {path} as MTCNN weights ({kind}): {unreadable(path, exc)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no state dict of tensors; expected MTCNN weights")
    return state


def load_mtcnn(weights: str | Path | None = None) -> MTCNN:
    """The three networks from ``weights`` (a safetensors or torch file in the shipped layout; None = shipped).

    Raises:
        WeightsError: an unreadable file, or one of another network (the message names the first key or shape
            that does not fit).
    """
    path = Path(weights) if weights else SHIPPED_WEIGHTS
    state = read_state_dict(path)
    net = MTCNN()
    want = net.state_dict()
    if not any(key.split(".", 1)[0] in NETS for key in state):
        hint = (" (a single facenet-pytorch net? convert the three with python -m fersr_stream.detect.convert_mtcnn)"
                if "conv1.weight" in state else "")
        raise WeightsError(f"{path} is not MTCNN weights: no pnet./rnet./onet. keys{hint}")
    for key, tensor in want.items():
        if key not in state:
            raise WeightsError(f"{path} is not usable MTCNN weights: {key} is missing")
        if state[key].shape != tensor.shape:
            raise WeightsError(f"{path} is not usable MTCNN weights: {key} has shape {tuple(state[key].shape)}, "
                               f"expected {tuple(tensor.shape)}")
    extra = sorted(set(state) - set(want))
    if extra:
        raise WeightsError(f"{path} is not usable MTCNN weights: unexpected key {extra[0]}")
    net.load_state_dict(state)
    return net.eval()
