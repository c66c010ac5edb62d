"""RetinaFace (Deng et al., CVPR 2020): faces, scores and 5 landmarks, batched across frames on the device.

The network is the one facexlib ships (and GFPGAN/CodeFormer align with): a MobileNet-0.25 or ResNet-50 backbone,
a 3-level feature pyramid (strides 8, 16, 32), SSH context modules, and per-level 1x1 heads predicting, for 2
anchors per cell, face/background logits, box offsets and landmark offsets. Modules and parameters carry
facexlib's names, so the released ``detection_Resnet50_Final.pth`` / ``detection_mobilenet0.25_Final.pth`` state
dicts load as they are (after dropping DataParallel's ``module.`` prefix).

Input: BGR pixels 0..255 minus the per-channel mean (104, 117, 123), unscaled. Landmarks come out as eye, eye,
nose tip, mouth corner, mouth corner with the image-left one of each pair first (the subject's right), the order
of :class:`Faces` landmarks and of the FFHQ template in ``align.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .. import device as _device
from ..config import DetectConfig
from ..errors import WeightsError, one_line, unreadable
from ..types import Faces
from .base import downscale, to_faces
from .network import NetworkDetector, downscale_tensors

DEFAULT_WEIGHTS = "retinaface.resnet50"
BACKBONES = ("mobilenet0.25", "resnet50")
MEAN_BGR = (104.0, 117.0, 123.0)
STEPS = (8, 16, 32)  # feature stride per pyramid level
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))  # square anchor sides in input pixels, per level
VARIANCES = (0.1, 0.2)  # the box encoding's scale for centre and log-size offsets
NMS_IOU = 0.4
PRE_NMS_TOP_K = 5000  # the reference test script's caps: bound NMS cost when the threshold is low
POST_NMS_TOP_K = 750


# --- network -------------------------------------------------------------------------------------------------------


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, slope: float | None = None) -> nn.Sequential:
    """Conv (no bias) + BatchNorm, then LeakyReLU(slope) unless ``slope`` is None. Keys: ``0.weight``, ``1.*``."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if slope is not None:
        layers.append(nn.LeakyReLU(slope, inplace=True))
    return nn.Sequential(*layers)


def _depthwise_separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """MobileNetV1 block: 3x3 depthwise then 1x1 pointwise, each with BatchNorm and LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.LeakyReLU(0.1, True),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1, True))


class MobileNetBody(nn.Module):
    """MobileNetV1 at width 0.25: (B, 3, H, W) -> features at strides 8, 16, 32 with 64, 128, 256 channels."""

    channels = (64, 128, 256)

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 3, 2, slope=0.1), _depthwise_separable(8, 16, 1), _depthwise_separable(16, 32, 2),
            _depthwise_separable(32, 32, 1), _depthwise_separable(32, 64, 2), _depthwise_separable(64, 64, 1))
        self.stage2 = nn.Sequential(_depthwise_separable(64, 128, 2),
                                    *[_depthwise_separable(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_depthwise_separable(128, 256, 2), _depthwise_separable(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return [c1, c2, self.stage3(c2)]


class ResNet50Body(nn.Module):
    """torchvision's ResNet-50 without its head: features at strides 8, 16, 32 (layer2..4)."""

    channels = (512, 1024, 2048)

    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet50(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c2 = self.layer2(x)
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


class FPN(nn.Module):
    """Top-down feature pyramid: 1x1 lateral convs, nearest upsampling, 3x3 merges; ``out`` channels per level."""

    def __init__(self, channels: tuple[int, int, int], out: int, slope: float):
        super().__init__()
        self.output1 = _conv_bn(channels[0], out, 1, slope=slope)
        self.output2 = _conv_bn(channels[1], out, 1, slope=slope)
        self.output3 = _conv_bn(channels[2], out, 1, slope=slope)
        self.merge1 = _conv_bn(out, out, 3, slope=slope)
        self.merge2 = _conv_bn(out, out, 3, slope=slope)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        p3 = self.output3(features[2])
        p2 = self.merge2(self.output2(features[1]) + F.interpolate(p3, size=features[1].shape[-2:], mode="nearest"))
        p1 = self.merge1(self.output1(features[0]) + F.interpolate(p2, size=features[0].shape[-2:], mode="nearest"))
        return [p1, p2, p3]


class SSH(nn.Module):
    """Single-stage headless context module: parallel 3x3, 5x5 and 7x7 receptive fields (as stacked 3x3 convs),
    concatenated to ``out`` channels (half, quarter, quarter)."""

    def __init__(self, cin: int, out: int, slope: float):
        super().__init__()
        self.conv3X3 = _conv_bn(cin, out // 2, 3)
        self.conv5X5_1 = _conv_bn(cin, out // 4, 3, slope=slope)
        self.conv5X5_2 = _conv_bn(out // 4, out // 4, 3)
        self.conv7X7_2 = _conv_bn(out // 4, out // 4, 3, slope=slope)
        self.conv7x7_3 = _conv_bn(out // 4, out // 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = self.conv5X5_1(x)
        branches = [self.conv3X3(x), self.conv5X5_2(shared), self.conv7x7_3(self.conv7X7_2(shared))]
        return F.relu(torch.cat(branches, dim=1))


class _Head(nn.Module):
    """1x1 conv predicting ``values`` numbers per anchor: (B, C, h, w) -> (B, h * w * anchors, values)."""

    def __init__(self, cin: int, values: int, anchors: int = 2):
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(cin, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels last, so rows run cell by cell (row-major) and anchor by anchor within a cell, as the priors do
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """The RetinaFace network for ``backbone`` mobilenet0.25 or resnet50 (random init; see :func:`load_retinaface`).

    ``forward``: (B, 3, H, W) mean-subtracted BGR -> box offsets (B, P, 4), face probabilities (B, P),
    landmark offsets (B, P, 10), for the P anchors of :func:`prior_boxes` (H, W).
    """

    def __init__(self, backbone: str = "resnet50"):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown RetinaFace backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}")
        self.backbone = backbone
        self.body = MobileNetBody() if backbone == "mobilenet0.25" else ResNet50Body()
        out = 64 if backbone == "mobilenet0.25" else 256
        slope = 0.1 if out <= 64 else 0.0  # the released models use leaky units only in the small variant
        self.fpn = FPN(self.body.channels, out, slope)
        self.ssh1, self.ssh2, self.ssh3 = SSH(out, out, slope), SSH(out, out, slope), SSH(out, out, slope)
        self.ClassHead = nn.ModuleList([_Head(out, 2) for _ in STEPS])
        self.BboxHead = nn.ModuleList([_Head(out, 4) for _ in STEPS])
        self.LandmarkHead = nn.ModuleList([_Head(out, 10) for _ in STEPS])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pyramid = self.fpn(self.body(x))
        features = [self.ssh1(pyramid[0]), self.ssh2(pyramid[1]), self.ssh3(pyramid[2])]
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return boxes, logits.float().softmax(dim=-1)[..., 1], landmarks


def build_retinaface(backbone: str = "resnet50") -> RetinaFace:
    """A random-init RetinaFace in eval mode; ``backbone``: mobilenet0.25 (also mobilenet0_25) or resnet50."""
    return RetinaFace(backbone.replace("mobilenet0_25", "mobilenet0.25")).eval()


def load_retinaface(weights: str | Path | None = None) -> RetinaFace:
    """RetinaFace from a registry name (``retinaface.resnet50``, ``retinaface.mobilenet0_25``) or a file path.

    The backbone is read from the state dict's keys, so any released file (or a path to one) works.

    Raises:
        WeightsError: missing weights (naming the `fersr-models download` fix), an unreadable file, or a state
            dict that is not RetinaFace's.
    """
    from ..weights import store  # imported late: haar users never need the weights machinery

    path = Path(store.ensure(str(weights or DEFAULT_WEIGHTS), arch="retinaface"))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip reader, unpickler or torch: any failure means the file is not usable weights
        raise WeightsError(f"cannot read {path} as a RetinaFace checkpoint: {unreadable(path, exc)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no state dict of tensors; expected a RetinaFace checkpoint")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    if "body.stage1.0.0.weight" in state:
        backbone = "mobilenet0.25"
    elif "body.layer1.0.conv1.weight" in state:
        backbone = "resnet50"
    else:
        raise WeightsError(f"{path} is not a RetinaFace checkpoint (no MobileNet-0.25 or ResNet-50 body keys)")
    net = RetinaFace(backbone)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} is not a usable RetinaFace {backbone} checkpoint: {one_line(exc)}") from None
    return net.eval()


# --- anchors and decoding ------------------------------------------------------------------------------------------


def prior_boxes(height: int, width: int) -> torch.Tensor:
    """(P, 4) anchors ``cx, cy, w, h`` as fractions of the input, in the order the heads emit them.

    Level by level (strides 8, 16, 32), cell by cell (row-major over the ceil(H / s) x ceil(W / s) grid), and the
    level's two anchor sizes per cell.
    """
    levels = []
    for step, sizes in zip(STEPS, ANCHOR_SIZES):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy, cx = torch.meshgrid((torch.arange(rows) + 0.5) * step / height,
                                (torch.arange(cols) + 0.5) * step / width, indexing="ij")
        centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2).expand(-1, len(sizes), 2)
        sides = torch.tensor([[s / width, s / height] for s in sizes]).expand(rows * cols, -1, -1)
        levels.append(torch.cat([centres, sides], dim=-1).reshape(-1, 4))
    return torch.cat(levels)


def decode_boxes(offsets: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """(..., P, 4) predicted offsets + (P, 4) priors -> (..., P, 4) boxes ``x1, y1, x2, y2`` as input fractions."""
    centre = priors[:, :2] + offsets[..., :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(offsets[..., 2:] * VARIANCES[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def decode_landmarks(offsets: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """(..., P, 10) predicted offsets + (P, 4) priors -> (..., P, 5, 2) landmark ``x, y`` as input fractions."""
    points = offsets.unflatten(-1, (5, 2))
    return priors[:, None, :2] + points * VARIANCES[0] * priors[:, None, 2:]


# --- detector ------------------------------------------------------------------------------------------------------


class RetinaFaceDetector(NetworkDetector):
    """RetinaFace on frames shrunk to ``config.detect_width``, batched across frames of the same size.

    Args:
        config: ``weights`` (registry name or path; None = ``retinaface.resnet50``), ``detect_width``,
            ``score_threshold``, ``min_face`` (source pixels).
        device: torch device or name (None = auto). On CUDA frames are resized on the GPU and the network runs
            under fp16 autocast; on CPU OpenCV resizes and the network runs in fp32.
        net: an already built network (tests); default: loaded from ``config.weights``.
    """

    default_weights = DEFAULT_WEIGHTS

    def __init__(self, config: DetectConfig, device: torch.device | str | None = None, net: RetinaFace | None = None):
        self.config = config
        self.device = device if isinstance(device, torch.device) else _device.resolve(device or "auto")
        self._on_gpu = _device.uses_tensor_path(self.device)
        net = net if net is not None else load_retinaface(config.weights)
        self.net = net.eval().requires_grad_(False).to(self.device)
        self._priors: dict[tuple[int, int], torch.Tensor] = {}
        self._mean = torch.tensor(MEAN_BGR, device=self.device).view(1, 3, 1, 1)

    def _detect_batch(self, batch: torch.Tensor, scale: float, shape: tuple[int, ...]) -> list[Faces]:
        height, width = batch.shape[-2:]
        autocast = torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda")
        with torch.inference_mode(), autocast:
            offsets, scores, landmark_offsets = self.net(batch)
        priors = self._prior_boxes(height, width)
        pixels = torch.tensor([width, height], dtype=torch.float32, device=self.device)
        boxes = decode_boxes(offsets.float(), priors) * pixels.repeat(2)
        landmarks = decode_landmarks(landmark_offsets.float(), priors) * pixels
        return [self._select(b, s, lm, scale, shape) for b, s, lm in zip(boxes, scores.float(), landmarks)]

    def _prepare(self, images: list[np.ndarray]) -> tuple[torch.Tensor, float]:
        """Same-size RGB frames -> (B, 3, h, w) mean-subtracted BGR float batch at detect width, and its scale."""
        small = [downscale(image, self.config.detect_width) for image in images]
        frames = torch.from_numpy(np.stack([s for s, _ in small])).permute(0, 3, 1, 2).float()
        return frames.flip(1).sub_(self._mean).contiguous(), small[0][1]  # RGB -> BGR, minus the training mean

    def _prepare_tensors(self, frames: torch.Tensor) -> tuple[torch.Tensor, float]:
        """:meth:`_prepare` for a (B, 3, H, W) uint8 batch on the device: the same shrink rule, on the device."""
        frames, scale = downscale_tensors(frames, self.config.detect_width)
        return frames.float().flip(1).sub_(self._mean).contiguous(), scale

    def _prior_boxes(self, height: int, width: int) -> torch.Tensor:
        key = (height, width)
        if key not in self._priors:
            self._priors[key] = prior_boxes(height, width).to(self.device)
        return self._priors[key]

    def _select(self, boxes: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor, scale: float,
                shape: tuple[int, ...]) -> Faces:
        """Threshold, keep the best ``PRE_NMS_TOP_K``, NMS, keep ``POST_NMS_TOP_K``, map to source pixels."""
        keep = torch.nonzero(scores > self.score_threshold).squeeze(1)
        keep = keep[scores[keep].argsort(descending=True)[:PRE_NMS_TOP_K]]
        keep = keep[torchvision.ops.nms(boxes[keep], scores[keep], NMS_IOU)[:POST_NMS_TOP_K]]
        return to_faces(boxes[keep].cpu().numpy(), scores[keep].cpu().numpy(), landmarks[keep].cpu().numpy(),
                        scale, shape, self.config.min_face)
