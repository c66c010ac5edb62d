"""The one place that picks the compute device and the per-device code paths.

On CPU, OpenCV's warps are several times faster than torch's grid sampling (``python -m fersr_stream.bench.choices``);
on CUDA frames stay on the GPU and torch is used.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .errors import ConfigError


def resolve(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cpu``; ``cuda`` / ``cuda:N`` (an error when absent)."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def uses_tensor_path(device: torch.device) -> bool:
    """Whether frames and crops stay torch tensors, warped and resized by torch ops (CUDA), rather than numpy
    arrays handled by OpenCV (CPU)."""
    return device.type == "cuda"


def batch_rows(n: int, most: int, device: torch.device) -> int:
    """Rows a network's batch of ``n`` is padded to: on CUDA the next power of two, at most ``most``; else ``n``.

    The restorers' rule (the classifier pads to its whole batch: ``Classifier.rows``). On a GPU a thread's first
    batch of every new shape is slow (cuDNN builds its plans), and a stream's batches come in every size up to the
    batch; padded, they come in a few.
    (``python -m fersr_stream.bench.gpu`` times first and later calls). On a CPU the padding would only be wasted
    work.
    """
    if device.type != "cuda" or n >= most:
        return n
    return min(1 << max(n - 1, 0).bit_length(), most)


def padded(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` with zero rows appended up to ``rows`` (``x`` itself when it has them)."""
    if len(x) >= rows:
        return x
    return torch.cat([x, x.new_zeros((rows - len(x), *x.shape[1:]))])


def spare_cores() -> int:
    """Threads a codec (decoder, encoder) gets in the stream: one per core beyond the two that the stages keep
    busy, at least one.

    On 2 cores a codec's own threads only take turns with the other stages for about the same CPU per frame
    (``python -m fersr_stream.bench.choices`` times x264 and H.264 decoding both ways, wall and CPU).
    """
    return max(1, (os.cpu_count() or 1) - 2)


@contextlib.contextmanager
def stream_threads(device: torch.device, heavy_model: bool):
    """Thread pools for a threaded stream on ``device``, restored afterwards (they are process-wide).

    The runner already runs its stages in parallel, so OpenCV works single-threaded (its own pool costs about a
    third more CPU per frame here), and on CPU torch does too unless a restoration network dominates the frame
    time (then it gets every core).
    """
    import cv2

    saved = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    if device.type == "cpu":
        torch.set_num_threads((os.cpu_count() or 1) if heavy_model else 1)
    try:
        yield
    finally:
        cv2.setNumThreads(saved[0])
        torch.set_num_threads(saved[1])
