"""What detectors built on a torch network share: frames of one size go through the network as one batch, whether
they come as host arrays or (the GPU path) as tensors already on the device."""

from __future__ import annotations

import abc

import numpy as np
import torch

from .. import resize as _resize
from ..types import Faces
from .base import Detector, check_image, shrunk_size


class NetworkDetector(Detector):
    """A :class:`Detector` whose network runs on ``self.device``.

    A subclass says how a group of same-size frames becomes the network's input (:meth:`_prepare` for host frames,
    :meth:`_prepare_tensors` for a device batch, each also giving the scale from source pixels to the input) and
    what the network finds in it (:meth:`_detect_batch`). Where ``self._on_gpu``, host frames are uploaded once and
    take the device path.
    """

    reads_tensors = True
    device: torch.device
    _on_gpu: bool

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        """One Faces per RGB uint8 (H, W, 3) frame: boxes (clipped) and landmarks in source pixels, scores above
        ``score_threshold``, best first."""
        for image in images:
            check_image(image)
        if self._on_gpu:  # one upload each, then the device path
            return self.detect_tensors([torch.from_numpy(image).to(self.device).permute(2, 0, 1) for image in images])
        return self._grouped(images, lambda image: image.shape, self._prepare)

    def detect_tensors(self, frames: list[torch.Tensor]) -> list[Faces]:
        """:meth:`detect` for (3, H, W) uint8 RGB tensors (the GPU path): shrunk and searched on the detector's
        device; only boxes, scores and landmarks come back to the host."""
        for frame in frames:
            check_tensor(frame)
        return self._grouped(frames, lambda frame: (frame.shape[1], frame.shape[2], 3),
                             lambda same: self._prepare_tensors(torch.stack([f.to(self.device) for f in same])))

    def warm_up(self, frame_size: tuple[int, int], batches: int) -> None:
        """On CUDA, one batch of each of 1..``batches`` blank frames of ``frame_size`` (width, height)."""
        if self.device.type != "cuda":
            return
        frame = torch.zeros((3, frame_size[1], frame_size[0]), dtype=torch.uint8, device=self.device)
        for n in range(1, batches + 1):
            self.detect_tensors([frame] * n)

    def _grouped(self, images: list, shape_of, prepare) -> list[Faces]:
        """Frames of equal shape as one batch each; ``prepare`` turns a group into the network's input and scale."""
        results: list[Faces | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(tuple(shape_of(image)), []).append(i)
        for shape, indices in groups.items():
            batch, scale = prepare([images[i] for i in indices])
            for i, faces in zip(indices, self._detect_batch(batch, scale, shape)):
                results[i] = faces
        return results

    @abc.abstractmethod
    def _prepare(self, images: list[np.ndarray]) -> tuple[torch.Tensor, float]:
        """Same-size host frames -> the network's input on the device, and the scale from source pixels to it."""

    @abc.abstractmethod
    def _prepare_tensors(self, frames: torch.Tensor) -> tuple[torch.Tensor, float]:
        """:meth:`_prepare` for a (B, 3, H, W) uint8 batch already on the device."""

    @abc.abstractmethod
    def _detect_batch(self, batch: torch.Tensor, scale: float, shape: tuple[int, ...]) -> list[Faces]:
        """One Faces per frame of a prepared batch, in source pixels of frames of ``shape`` (H, W, 3)."""


def check_tensor(frame) -> None:
    """Raise ValueError unless ``frame`` is a (3, H, W) uint8 RGB frame tensor."""
    if not (isinstance(frame, torch.Tensor) and frame.ndim == 3 and frame.shape[0] == 3
            and frame.dtype == torch.uint8):
        got = f"{tuple(frame.shape)} {frame.dtype}" if isinstance(frame, torch.Tensor) else type(frame).__name__
        raise ValueError(f"detect_tensors: expected a (3, H, W) uint8 RGB frame tensor, got {got}")


def downscale_tensors(frames: torch.Tensor, width: int) -> tuple[torch.Tensor, float]:
    """:func:`~fersr_stream.detect.base.downscale` for a (B, 3, H, W) uint8 batch on its device, by the same rule
    and with OpenCV's ``INTER_AREA`` weights, rounded as its uint8 output is, so both paths see the same pixels.
    Returns the batch (itself where no shrinking is needed) and the scale."""
    scale, size = shrunk_size(*frames.shape[-2:], width)
    if scale == 1.0:
        return frames, 1.0
    return _resize.to_uint8(_resize.resize(frames, size, "area")), scale
