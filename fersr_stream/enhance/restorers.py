"""Batched face restoration networks: GFPGAN, CodeFormer, RestoreFormer.

The upstream inference scripts restore one face at a time; here every call runs chunks of ``batch`` faces on CUDA
(on a CPU batches run slower per face, so there the chunks are single faces).
Crops (a :class:`~fersr_stream.crops.CropBatch`, on the host or the device) are resized to 512 when their side
differs, and reach the network as float [-1, 1] NCHW; its [-1, 1] output is clamped and rounded back to uint8
exactly as upstream's ``tensor2img`` does, and returned in the crops' own kind, so host and device crops give the
same pixels for the same 512-px crops. spandrel's descriptor call assumes [0, 1] images, so the bare module is
called instead, with the keyword each architecture expects. On CUDA the forward runs under fp16 autocast (and
channels_last where the network allows); on CPU in fp32. ``enhance.compile`` wraps the network in
``torch.compile`` (worth it on CUDA for long runs; the first batches pay the compile).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..config import EnhanceConfig
from ..crops import CropBatch, DeviceCrops
from ..device import batch_rows, padded
from .base import Enhancer, enlarge_or_shrink
from .checkpoints import load_network
from .modconv import batch_modulated_convs
from .resample import resample_resblocks

SIZE = 512  # the side all three networks were trained on (CodeFormer's 16 x 16 token grid assumes it)


class RestorerEnhancer(Enhancer):
    """The shared batching loop; subclasses say how to call their network.

    Args:
        model: the bare network (from :func:`fersr_stream.enhance.checkpoints.load_network`), on any device.
        config: ``batch`` (faces per forward), and what the subclass reads (``fidelity``, ``seed``).
        device: where to compute.

    Attributes:
        arch_id: spandrel's name of the architecture, which a checkpoint must hold.
    """

    size = SIZE
    arch_id = ""
    channels_last = True  # whether the network tolerates channels_last activations

    def __init__(self, model: nn.Module, config: EnhanceConfig, device: torch.device):
        super().__init__(torch.device(device))
        self.config = config
        self._cuda = self.device.type == "cuda"
        # On a CPU a batch only adds memory traffic (a face costs more in pairs or fours than alone there), so
        # ``batch`` faces still arrive per call but run one per forward.
        self.batch = max(1, int(config.batch)) if self._cuda else 1
        self.fp16 = self._cuda  # fp16 autocast, CUDA only; the GPU benchmark turns it off to measure fp32
        model = model.eval().requires_grad_(False).to(self.device)
        if self._cuda and self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if config.compile:
            model = _compiled(model)
        self.model = model

    @classmethod
    def build(cls, config: EnhanceConfig, device: torch.device) -> Enhancer:
        return cls(load_network(cls, config.weights), config, device)

    def enhance(self, crops: CropBatch) -> CropBatch:
        """Restored 512 px crops of ``crops`` (N may be 0), of the input's kind.

        Crops of another side are resized first (bicubic up, area down), on the host or the device as they are.
        """
        crops = enlarge_or_shrink(crops, self.size)
        if len(crops) == 0:
            return crops
        chunks = [self._run(crops.select(slice(start, start + self.batch)).tensor(self.device))
                  for start in range(0, len(crops), self.batch)]
        return crops.like(torch.cat(chunks))

    def warm_up(self, side: int) -> None:
        """On CUDA, one padded batch of each size the stream will run (see :meth:`rows`) of ``side`` px crops."""
        if self.device.type != "cuda":
            return
        for n in sorted({self.rows(n) for n in range(1, self.batch + 1)}):
            self.enhance(DeviceCrops(torch.zeros((n, 3, side, side), dtype=torch.uint8, device=self.device)))

    def rows(self, n: int) -> int:
        """Rows a chunk of ``n`` faces runs as: on CUDA the next power of two (``device.batch_rows``), else ``n``.

        A face restores the same, within a level, in any batch (``tests/unit/enhance/test_enhance.py``), so the
        padding rows change only the shape.
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

    arch_id = "GFPGAN"
    default_weights = "gfpgan.v1_4"
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

    arch_id = "CodeFormer"
    default_weights = "codeformer.v0_1"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # spandrel's CodeFormer names upstream's ``w`` ``weight``; an unknown keyword would be silently ignored
        image, _ = self.model(x, weight=float(self.config.fidelity))
        return image


class RestoreFormerEnhancer(RestorerEnhancer):
    """RestoreFormer (VQ autoencoder with multi-head cross attention; no noise injection, deterministic)."""

    arch_id = "RestoreFormer"
    default_weights = "restoreformer.v1"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image, _ = self.model(x)
        return image
