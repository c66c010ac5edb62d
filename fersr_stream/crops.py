"""A batch of face crops that knows where it lives: :class:`HostCrops` (numpy, OpenCV) or :class:`DeviceCrops`
(torch tensors on the compute device).

Every stage that touches pixels (cut, degrade, enhance, classify, overlay) is written once against this interface;
the two kinds carry the difference. On a CPU OpenCV's warps and resizes are several times faster than torch's, so
host frames are cut into host crops; frames on a GPU are cut into device crops and stay there until the overlay.
Both kinds round to uint8 after the same steps, so their pixels agree within a level or two.

Layouts: host images are (N, S, S, 3) uint8 RGB arrays; device images are (N, 3, S, S) uint8 RGB tensors. Networks
read either through :meth:`CropBatch.tensor` ((N, 3, S, S) uint8 on their device) and hand their output back
through :meth:`CropBatch.like`, which returns it in the batch's own kind.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from . import align, degrade
from . import resize as _resize
from .config import DegradeConfig

if TYPE_CHECKING:
    from .types import Frame

# cv2's flags for the methods CropBatch.resize takes (the torch kind uses fersr_stream.resize's OpenCV weights)
_CV2 = {"area": cv2.INTER_AREA, "bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR}


class Noise:
    """The noise source of one stream's degradation: a numpy generator for host crops and one torch generator per
    device for device crops, all seeded with ``seed``, so a run repeats exactly and every frame gets new noise."""

    def __init__(self, seed: int):
        self.seed = seed
        self.numpy = np.random.default_rng(seed)
        self._torch: dict[torch.device, torch.Generator] = {}

    def torch(self, device: torch.device) -> torch.Generator:
        if device not in self._torch:
            self._torch[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._torch[device]


class CropBatch(abc.ABC):
    """Square RGB uint8 face crops, plus the simulated low-resolution images they were made from, if any.

    Attributes:
        images: the crops (what the classifier reads), in the kind's layout (see the module notes).
        lowres: the low-resolution images (N, h, w) in the same kind and layout, or None; restorers start from
            these rather than from their enlargement, as in the study.
    """

    def __init__(self, images, lowres=None):
        self.images, self.lowres = images, lowres
        self._check()
        if lowres is not None and len(lowres) != len(images):
            raise ValueError(f"crops: {len(images)} images but {len(lowres)} low-resolution images")

    @abc.abstractmethod
    def _check(self) -> None:
        """Raise ValueError (expected vs. actual) unless ``images`` has the kind's layout."""

    def __len__(self) -> int:
        return len(self.images)

    @property
    @abc.abstractmethod
    def side(self) -> int:
        """S, the crops' side in pixels."""

    @abc.abstractmethod
    def degrade(self, config: DegradeConfig, noise: Noise) -> CropBatch:
        """The crops made low-resolution (``config.width`` px wide) and enlarged back to their side, with the
        low-resolution images kept as ``lowres``."""

    def restorable(self) -> CropBatch:
        """What a restorer starts from: the low-resolution images when there are, else the crops."""
        return self if self.lowres is None else type(self)(self.lowres)

    @abc.abstractmethod
    def centre(self, fraction: float) -> CropBatch:
        """The centred ``fraction`` of each side (at least one pixel; as timm's ``crop_pct``)."""

    @abc.abstractmethod
    def resize(self, side: int | None, method: str) -> CropBatch:
        """The crops at ``side`` px with ``method`` (area | bicubic | bilinear, OpenCV's weights); the batch itself
        when it already has that side or ``side`` is None."""

    @abc.abstractmethod
    def tensor(self, device: torch.device) -> torch.Tensor:
        """(N, 3, S, S) uint8 RGB on ``device``: what a network reads."""

    @abc.abstractmethod
    def like(self, images: torch.Tensor) -> CropBatch:
        """A network's (N, 3, S', S') uint8 output as a batch of this kind (no ``lowres``)."""

    @abc.abstractmethod
    def host(self) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB numpy (a blocking copy for device crops)."""

    def select(self, keep) -> CropBatch:
        """The crops picked by a boolean mask, an index array or a slice."""
        lowres = None if self.lowres is None else self._index(self.lowres, keep)
        return type(self)(self._index(self.images, keep), lowres)

    @staticmethod
    @abc.abstractmethod
    def _index(images, keep):
        """``images`` indexed by ``keep`` (mask, indices or slice), keeping the first axis."""

    @classmethod
    @abc.abstractmethod
    def _join(cls, parts: list):
        """The image stacks ``parts`` (of this kind) joined along the first axis."""


def cat(batches: list[CropBatch]) -> CropBatch:
    """One batch of the crops of ``batches`` (all of one kind and side) in order; ``lowres`` is kept only when every
    batch has it."""
    kind = type(batches[0])
    lowres = None
    if all(b.lowres is not None for b in batches):
        lowres = kind._join([b.lowres for b in batches])
    return kind(kind._join([b.images for b in batches]), lowres)


def cut(frame: Frame, affines: np.ndarray, size: int) -> CropBatch:
    """One aligned ``size`` px crop per affine (frame -> crop, OpenCV convention): device crops when the frame is
    on a device (``frame.device_image``), else host crops."""
    if frame.device_image is not None:
        return DeviceCrops.cut(frame.device_image, affines, size)
    return HostCrops(align.crop(frame.image, affines, size))


class HostCrops(CropBatch):
    """Crops as an (N, S, S, 3) uint8 RGB numpy array, worked on with OpenCV."""

    def _check(self) -> None:
        images = self.images
        ok = (isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1] == images.shape[2]
              and images.shape[3] == 3 and images.dtype == np.uint8)
        if not ok:
            got = f"{images.shape} {images.dtype}" if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"crops: expected (N, S, S, 3) uint8 RGB arrays, got {got}")

    @property
    def side(self) -> int:
        return self.images.shape[1]

    def degrade(self, config: DegradeConfig, noise: Noise) -> HostCrops:
        lowres = degrade.downsample(self.images, config.width, config, noise.numpy)
        return HostCrops(degrade.enlarge(lowres, self.images.shape[1:3], config), lowres)

    def centre(self, fraction: float) -> HostCrops:
        rows, cols = _centre(self.side, fraction)
        return HostCrops(self.images[:, rows, cols])

    def resize(self, side: int | None, method: str) -> HostCrops:
        if side is None or side == self.side:
            return self
        out = np.empty((len(self), side, side, 3), np.uint8)
        for i, image in enumerate(self.images):
            out[i] = cv2.resize(image, (side, side), interpolation=_CV2[method])
        return HostCrops(out)

    def tensor(self, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images)).to(device).permute(0, 3, 1, 2)

    def like(self, images: torch.Tensor) -> HostCrops:
        return HostCrops(np.ascontiguousarray(images.permute(0, 2, 3, 1).cpu().numpy()))

    def host(self) -> np.ndarray:
        return self.images

    @staticmethod
    def _index(images, keep):
        return images[keep]

    @classmethod
    def _join(cls, parts: list):
        return np.concatenate(parts)


class DeviceCrops(CropBatch):
    """Crops as an (N, 3, S, S) uint8 RGB torch tensor on the compute device, worked on with torch ops."""

    def _check(self) -> None:
        images = self.images
        ok = (isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[1] == 3
              and images.shape[2] == images.shape[3] and images.dtype == torch.uint8)
        if not ok:
            got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, torch.Tensor) else \
                type(images).__name__
            raise ValueError(f"crops: expected (N, 3, S, S) uint8 RGB tensors, got {got}")

    @classmethod
    def cut(cls, frame: torch.Tensor, affines: np.ndarray, size: int) -> DeviceCrops:
        """Crops of a (3, H, W) uint8 frame tensor, cut on its device (see :func:`fersr_stream.align.crop_torch`)."""
        if not len(affines):
            return cls(torch.zeros((0, 3, size, size), dtype=torch.uint8, device=frame.device))
        return cls(_resize.to_uint8(align.crop_torch(frame, affines, size)))  # stored as uint8, as host crops are

    @property
    def side(self) -> int:
        return self.images.shape[2]

    def degrade(self, config: DegradeConfig, noise: Noise) -> DeviceCrops:
        lowres = degrade.downsample_torch(self.images, config, noise.torch(self.images.device))
        return DeviceCrops(degrade.enlarge_torch(lowres, (self.side, self.side), config), lowres)

    def centre(self, fraction: float) -> DeviceCrops:
        rows, cols = _centre(self.side, fraction)
        return DeviceCrops(self.images[:, :, rows, cols])

    def resize(self, side: int | None, method: str) -> DeviceCrops:
        if side is None or side == self.side:
            return self
        return DeviceCrops(_resize.to_uint8(_resize.resize(self.images, (side, side), method)))

    def tensor(self, device: torch.device) -> torch.Tensor:
        return self.images.to(device)

    def like(self, images: torch.Tensor) -> DeviceCrops:
        return DeviceCrops(images)

    def host(self) -> np.ndarray:
        return self.images.permute(0, 2, 3, 1).cpu().numpy()

    @staticmethod
    def _index(images, keep):
        return images[keep] if isinstance(keep, slice) else images[torch.as_tensor(keep)]

    @classmethod
    def _join(cls, parts: list):
        return torch.cat(parts)


def _centre(side: int, fraction: float) -> tuple[slice, slice]:
    """Rows and columns of the centred ``fraction`` of a ``side`` x ``side`` crop."""
    kept = max(round(side * fraction), 1)
    first = (side - kept) // 2
    return slice(first, first + kept), slice(first, first + kept)
