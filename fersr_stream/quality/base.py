"""The interface every quality metric implements."""

from __future__ import annotations

import numpy as np
import torch


class Metric:
    """Scores faces against their references, one number per face.

    Attributes:
        name: the name registered in :data:`fersr_stream.quality.METRICS`.
        weights: registry names of the weights :meth:`load` reads (none for pixel metrics).
        higher_is_better: True for similarities (PSNR, SSIM, identity), False for distances (LPIPS).
    """

    name = ""
    weights: tuple[str, ...] = ()
    higher_is_better = True

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    @classmethod
    def load(cls, device: torch.device | str = "cpu") -> Metric:
        """The metric with its registry weights loaded from the cache (no download: a missing file is a
        WeightsError naming the command that fetches it)."""
        return cls(device)

    def __call__(self, faces: np.ndarray, references: np.ndarray) -> np.ndarray:
        """(N,) float64 scores of (N, S, S, 3) uint8 RGB ``faces`` against ``references`` of the same shape."""
        if faces.shape != references.shape:
            raise ValueError(f"{self.name}: expected two (N, S, S, 3) batches of one shape, got {faces.shape} and "
                             f"{references.shape}")
        return self.compare(faces, self.prepare(references))

    def prepare(self, references: np.ndarray):
        """What the metric keeps of (N, S, S, 3) uint8 RGB references (their embeddings, say), so that several
        batches of faces can be compared with them at the cost of one pass over the references."""
        _check(self.name, references)
        with torch.inference_mode():
            return self.reference(_tensor(references, self.device))

    def compare(self, faces: np.ndarray, prepared) -> np.ndarray:
        """(N,) float64 scores of (N, S, S, 3) uint8 RGB ``faces`` against :meth:`prepare`'s references."""
        _check(self.name, faces)
        if not len(faces):
            return np.zeros(0)
        with torch.inference_mode():
            return self.score(_tensor(faces, self.device), prepared).double().cpu().numpy()

    def reference(self, references: torch.Tensor):
        """What :meth:`score` needs of (N, 3, S, S) references with values 0..255 (default: the pixels)."""
        return references

    def score(self, faces: torch.Tensor, references) -> torch.Tensor:
        """(N,) scores of (N, 3, S, S) float faces with values 0..255 against :meth:`reference`'s output."""
        raise NotImplementedError


def _check(name: str, images: np.ndarray) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{name}: expected (N, S, S, 3) uint8 RGB faces, got {images.shape} {images.dtype}")


def _tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float64 on ``device`` (float32 on devices without float64 speed)."""
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).to(dtype)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """0..255 -> [-1, 1] float32, the range LPIPS and FaceNet-style networks take."""
    return (images.float() / 127.5) - 1.0
