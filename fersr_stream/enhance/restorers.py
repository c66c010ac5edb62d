"""Batched face restoration networks: GFPGAN, CodeFormer, RestoreFormer.

The upstream inference scripts restore one face at a time; here every call runs chunks of ``batch`` faces on CUDA
(on a CPU batches run slower per face, so there the chunks are single faces).
Crops go in as (N, S, S, 3) uint8 RGB, are resized to 512 when S differs, and reach the network as float
[-1, 1] NCHW; its [-1, 1] output is clamped and rounded back to uint8 exactly as upstream's ``tensor2img`` does.
spandrel's descriptor call assumes [0, 1] images, so the bare module is called instead, with the keyword each
architecture expects. On CUDA the forward runs under fp16 autocast (and channels_last where the network allows);
on CPU in fp32. ``enhance_tensor`` takes (N, 3, S, S) uint8 tensors already on the device (the GPU path) through
the same forward, so both entry points give the same pixels for the same 512-px crops. ``enhance.compile``
wraps the network in ``torch.compile`` (worth it on CUDA for long runs; the first batches pay the compile).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ..config import EnhanceConfig
from ..device import batch_rows, padded
from .base import check_crops, check_crops_tensor, resize_crops, resize_crops_tensor
from .modconv import batch_modulated_convs
from .resample import resample_resblocks

SIZE = 512  # the side all three networks were trained on (CodeFormer's 16 x 16 token grid assumes it)


class RestorerEnhancer:
    """The shared batching loop; subclasses say how to call their network.

    Args:
        model: the bare network (from :func:`fersr_stream.enhance.checkpoints.load_network`), on any device.
        config: ``batch`` (faces per forward), and what the subclass reads (``fidelity``, ``seed``).
        device: where to compute.
    """

    name = "restorer"
    size = SIZE
    channels_last = True  # whether the network tolerates channels_last activations

    def __init__(self, model: nn.Module, config: EnhanceConfig, device: torch.device):
        self.config = config
        self.device = torch.device(device)
        self._cuda = self.device.type == "cuda"
        # On a CPU a batch only adds memory traffic: GFPGAN took 3.8-4.2 s a face one at a time here, 4.2-4.4 in
        # pairs and 4.5-4.7 in fours, so there ``batch`` faces still arrive per call but run one per forward.
        self.batch = max(1, int(config.batch)) if self._cuda else 1
        self.fp16 = self._cuda  # fp16 autocast, CUDA only; the GPU benchmark turns it off to measure fp32
        model = model.eval().requires_grad_(False).to(self.device)
        if self._cuda and self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if config.compile:
            model = _compiled(model)
        self.model = model

    def enhance(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB -> (N, 512, 512, 3) uint8 RGB restored faces (N may be 0)."""
        check_crops(crops)
        crops = resize_crops(crops, self.size)
        out = np.empty_like(crops)
        for start in range(0, len(crops), self.batch):
            chunk = torch.from_numpy(np.ascontiguousarray(crops[start:start + self.batch]))
            restored = self._run(chunk.to(self.device, non_blocking=True).permute(0, 3, 1, 2))
            out[start:start + len(chunk)] = restored.permute(0, 2, 3, 1).cpu().numpy()
        return out

    def enhance_tensor(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) uint8 RGB tensor -> (N, 3, 512, 512) uint8 RGB on ``device``, without a host round trip.

        Crops of another side are resized on the device as :meth:`enhance` resizes them on the host.
        """
        check_crops_tensor(crops)
        crops = resize_crops_tensor(crops.to(self.device), self.size)
        if len(crops) == 0:
            return crops
        return torch.cat([self._run(crops[start:start + self.batch]) for start in range(0, len(crops), self.batch)])

    def rows(self, n: int) -> int:
        """Rows a chunk of ``n`` faces runs as: on CUDA the next power of two (``device.batch_rows``), else ``n``.

        A face restores the same, within a level, in any batch (``tests/unit/test_enhance.py``), so the padding
        rows change only the shape.
        """
        return batch_rows(n, self.batch, self.device)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 512, 512) uint8 RGB on ``device`` -> the restored faces, the same shape and dtype."""
        n = len(x)
        autocast = (torch.autocast("cuda", dtype=torch.float16) if self._cuda and self.fp16
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            x = padded(x, self.rows(n)).float().div_(127.5).sub_(1.0)  # uint8 RGB -> [-1, 1]
            # a permuted NHWC batch keeps NHWC strides; networks that reshape activations with ``view`` need NCHW
            layout = torch.channels_last if self._cuda and self.channels_last else torch.contiguous_format
            y = self.forward(x.contiguous(memory_format=layout))[:n].float().clamp_(-1.0, 1.0)
            return ((y + 1.0) * 127.5).round_().to(torch.uint8)  # upstream's tensor2img rounding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 512, 512) float [-1, 1] -> (B, 3, 512, 512) float, roughly [-1, 1]."""
        raise NotImplementedError


def _compiled(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` without inductor's scatter-on-zeros rewrite (``scatter_upon_const_tensor``),
    which loses the dtype before torch 2.14 (2.14's rewrite casts back): RestoreFormer's codebook one-hot
    (``zeros(...).to(z).scatter_``) came out float32 under fp16 autocast and its matmul failed (torch 2.11, H200).
    Without the rewrite that one small scatter runs as written."""
    from torch._inductor import config as inductor

    rewrite = "optimize_scatter_upon_const_tensor"
    return torch.compile(model, options={rewrite: False} if hasattr(inductor, rewrite) else None)


def seed_noise(model: nn.Module, seed: int) -> None:
    """Refill a GFPGAN decoder's fixed noise maps from a generator seeded with ``seed`` (drawn on CPU, in layer
    order, so every device and every run gets the same maps)."""
    decoder = model.stylegan_decoder
    generator = torch.Generator().manual_seed(int(seed))
    for i in range(decoder.num_layers):
        buffer = getattr(decoder.noises, f"noise{i}")
        buffer.copy_(torch.randn(buffer.shape, generator=generator).to(buffer.device, buffer.dtype))


class GFPGANEnhancer(RestorerEnhancer):
    """GFPGAN v1.3/v1.4 (GFPGANv1Clean: U-Net encoder + StyleGAN2 decoder with SFT).

    Determinism: the StyleGAN2 decoder adds per-pixel Gaussian noise after every style conv, and upstream draws it
    afresh on every call, so a face's restoration would change with the call and with its batch neighbours. Here
    the decoder uses its fixed noise maps instead (``randomize_noise=False``), refilled from ``config.seed`` at
    construction. A map has batch size 1 and is broadcast, so every face in every batch sees the same noise: a face
    restores identically alone or in any batch (the study caches restorations; video does not flicker), at no
    per-call cost. The noise is one draw from the same N(0, 1) the network was trained with (upstream buffers are
    themselves an untrained random draw), and ``seed`` lets the study measure how much the draw matters.

    On CUDA, where faces run in batches, the decoder's modulated convolutions scale their input instead of their
    weights (:mod:`.modconv`: the same function, one batched convolution instead of a grouped one per face), and
    they and the encoder's blocks resample small feature maps without ``F.interpolate`` (:mod:`.resample`: the
    same values). On a CPU the faces run one at a time and the upstream form is kept, which is bit-exact with
    upstream.

    Not channels_last: the encoder flattens its features with ``view``, and the modulated weights are 5-D.
    """

    name = "gfpgan"
    channels_last = False

    def __init__(self, model: nn.Module, config: EnhanceConfig, device: torch.device):
        seed_noise(model, config.seed)
        if torch.device(device).type == "cuda":
            batch_modulated_convs(model)
            resample_resblocks(model)
        super().__init__(model, config, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image, _ = self.model(x, return_rgb=False, randomize_noise=False)
        return image


class CodeFormerEnhancer(RestorerEnhancer):
    """CodeFormer v0.1: the fidelity weight ``w`` = ``config.fidelity`` (0 = codebook prior only, sharper and
    less faithful; 1 = most faithful to the input). The network has no noise, so it is deterministic as is.
    """

    name = "codeformer"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # spandrel's CodeFormer names upstream's ``w`` ``weight``; an unknown keyword would be silently ignored
        image, _ = self.model(x, weight=float(self.config.fidelity))
        return image


class RestoreFormerEnhancer(RestorerEnhancer):
    """RestoreFormer (VQ autoencoder with multi-head cross attention; no noise injection, deterministic)."""

    name = "restoreformer"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image, _ = self.model(x)
        return image


RESTORERS: dict[str, type[RestorerEnhancer]] = {
    "gfpgan": GFPGANEnhancer,
    "codeformer": CodeFormerEnhancer,
    "restoreformer": RestoreFormerEnhancer,
}
