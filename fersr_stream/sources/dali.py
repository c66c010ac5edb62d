"""Video files decoded with NVIDIA DALI: on the GPU (NVDEC) when CUDA is there, else on the CPU.

Optional (``pip install -e '.[dali]'``); imported only when ``source.decoder=dali``. Files only: cameras and
network streams stay with PyAV.

Two ways to read the same decode:

- iterate the source: :class:`~fersr_stream.types.Frame` objects with numpy RGB images, like every other source
  (GPU decode then costs one device-to-host copy per batch of frames);
- :meth:`DaliSource.iter_tensors`: batches of uint8 (F, H, W, 3) RGB torch tensors that stay where DALI decoded
  them (CUDA or CPU), handed over through DLPack without a copy; :meth:`DaliSource.frames` hands the stream its
  frames that way on the tensor path, which keeps frames on the GPU.

DALI's CPU decoder reads VP8, VP9 and MJPEG only; the GPU decoder adds H.264, H.265, AV1 and MPEG-4. The codec is
checked before DALI starts, so an unsupported file is a one-line :class:`SourceError` rather than DALI's log.
:class:`SourceInfo` comes from a PyAV probe of the same file, so it is filled exactly as for the PyAV source.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
import torch

from .. import device as devices
from ..errors import SourceError
from ..types import Frame
from .base import Source
from .pyav import _TRUNCATION_MARGIN_S, open_file

log = logging.getLogger("fersr")

INSTALL_HINT = "source.decoder=dali needs NVIDIA DALI: pip install -e '.[dali]'"
# FFmpeg codec names DALI's experimental video reader decodes, per backend (DALI 2.x documentation)
CPU_CODECS = ("vp8", "vp9", "mjpeg")
GPU_CODECS = (*CPU_CODECS, "h264", "hevc", "av1", "mpeg4")
_READER = "reader"


class TensorBatch(NamedTuple):
    """Consecutive decoded frames of one DALI run.

    Attributes:
        indices: (F,) 0-based frame positions in the file.
        pts: (F,) presentation timestamps in the source's ``info.time_base`` units.
        images: (F, H, W, 3) uint8 RGB on the decode device; it stays valid while referenced.
    """

    indices: list[int]
    pts: list[int]
    images: torch.Tensor


def _import_dali():
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
    except ImportError:
        raise SourceError(INSTALL_HINT) from None
    return dali, fn


def _dali_reason(exc: Exception) -> str:
    """The line of a DALI error that names the problem (its messages wrap it in a pipeline traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if "encountered:" in lines:
        after = lines[lines.index("encountered:") + 1:]
        if after:
            return after[0]
    return lines[-1] if lines else type(exc).__name__


class DaliSource(Source):
    """Frames of a video file, decoded by DALI in runs of ``sequence`` frames.

    Args:
        path: a video file in a codec DALI decodes on ``device`` (see the module notes).
        device: auto (CUDA when available), cpu, cuda or cuda:N: where DALI decodes.
        sequence: frames decoded per DALI run (the batch size of :meth:`iter_tensors`).
        threads: DALI CPU worker threads; None = up to 4, bounded by the CPU count.

    Raises:
        SourceError: DALI is not installed, the file is not a readable video, or its codec is not one DALI
            decodes on that device.
    """

    def __init__(self, path: str | Path, device: str = "auto", sequence: int = 8, threads: int | None = None):
        if sequence < 1:
            raise ValueError(f"sequence must be >= 1, got {sequence}")
        dali, fn = _import_dali()
        self._label, self._pipe = str(path), None
        self.device = devices.resolve(device)
        with open_file(path) as probe:  # the same SourceInfo as the PyAV source, and PyAV's readability check
            self.info = probe.info
        with av.open(self._label) as container:
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            # DALI's timestamps count from the stream's start; PyAV's pts do not
            self._start = stream.start_time or 0
            # the header's duration, for the truncation check (as the PyAV source reads it)
            if stream.duration is not None and stream.time_base is not None:
                self._expected_s = float(stream.duration * stream.time_base)
            else:
                self._expected_s = container.duration / av.time_base if container.duration else None
        gpu = self.device.type == "cuda"
        if codec not in (GPU_CODECS if gpu else CPU_CODECS):
            if gpu or codec not in GPU_CODECS:
                raise SourceError(f"DALI cannot decode {codec} video ({self._label}); it reads "
                                  f"{', '.join(GPU_CODECS)}: use source.decoder=pyav")
            raise SourceError(f"DALI decodes {codec} ({self._label}) on the GPU only and CUDA is not in use; on "
                              f"the CPU it reads {', '.join(CPU_CODECS)}: use source.decoder=pyav")
        device_id = None  # DALI's CPU-only pipeline
        if gpu:
            device_id = self.device.index if self.device.index is not None else torch.cuda.current_device()
        # exec_dynamic: outputs are not recycled while referenced, so frames handed out stay valid
        pipe = dali.Pipeline(batch_size=1, num_threads=threads or max(1, min(4, os.cpu_count() or 1)),
                             device_id=device_id, exec_dynamic=True, prefetch_queue_depth=2)
        with pipe:
            # step = sequence: consecutive runs continue the decode; padded tail frames carry frame number -1
            video, numbers, seconds = fn.experimental.readers.video(
                device="gpu" if gpu else "cpu", filenames=[os.path.abspath(self._label)],
                sequence_length=sequence, step=sequence, pad_mode="constant", enable_frame_num="sequence",
                enable_timestamps=True, name=_READER)
            pipe.set_outputs(video, numbers, seconds)
        try:
            pipe.build()
        except RuntimeError as exc:
            raise SourceError(f"DALI cannot read {self._label}: {_dali_reason(exc)}") from None
        self._pipe = pipe
        self._runs = pipe.epoch_size(_READER)

    def iter_tensors(self) -> Iterator[TensorBatch]:
        """Yield the file's frames in order as :class:`TensorBatch` es on the decode device (no host copy).

        A file that fails mid-way yields what decoded and logs a warning, as the PyAV source does.
        """
        if self._pipe is None:
            raise ValueError(f"DaliSource({self._label}) is closed")
        time_base, done, first_pts, last_pts = self.info.time_base, 0, None, None
        for _ in range(self._runs):
            try:
                video, numbers, seconds = self._pipe.run()
            except RuntimeError as exc:
                log.warning("%s: DALI decoded %d frames, then failed (%s); stopping there", self._label, done,
                            _dali_reason(exc))
                return
            # the GPU reader returns its frame numbers and timestamps on the GPU too: they are tiny
            numbers = np.asarray(numbers.as_cpu()[0]).reshape(-1)
            seconds = np.asarray(seconds.as_cpu()[0]).reshape(-1)
            keep = numbers >= 0
            # padding only fills the tail of the last run, so the frames are a prefix: a view, no copy
            images = torch.from_dlpack(video[0])[:int(keep.sum())]
            pts = [self._start + round(float(s) / time_base) for s in seconds[keep]]
            if pts:
                done += len(pts)
                first_pts = pts[0] if first_pts is None else first_pts
                last_pts = pts[-1]
                yield TensorBatch(numbers[keep].tolist(), pts, images)
        if first_pts is None or not self._expected_s:
            return
        # DALI skips a truncated tail silently; say so, as the PyAV source does (same rule and margin)
        step = 1 / (self.info.fps * time_base)
        decoded = float((last_pts + step - first_pts) * time_base)
        if decoded < self._expected_s - max(_TRUNCATION_MARGIN_S, 2 / self.info.fps):
            log.warning("%s: DALI decoded %d frames (%.2f s of the %.2f s the header announces): the file is "
                        "truncated", self._label, done, decoded, self._expected_s)

    def __iter__(self) -> Iterator[Frame]:
        time_base = self.info.time_base
        for batch in self.iter_tensors():
            images = batch.images.cpu().numpy()  # a view on CPU; on CUDA the one host copy, per batch
            for index, pts, image in zip(batch.indices, batch.pts, images):
                yield Frame(index=index, image=image, pts=pts, time_base=time_base)

    def frames(self, on_device: bool, stop: threading.Event | None = None) -> Iterator[Frame]:
        """With ``on_device``, the frames as tensors where DALI decoded them: ``image`` None and ``device_image`` a
        (3, H, W) uint8 view of the decoded batch, with no host copy; else :meth:`__iter__`'s. (A file never waits
        between reads: ``stop`` is not needed.)"""
        if not on_device:
            yield from self
            return
        time_base = self.info.time_base
        for batch in self.iter_tensors():
            for index, pts, image in zip(batch.indices, batch.pts, batch.images):
                yield Frame(index=index, image=None, pts=pts, time_base=time_base, device_image=image.permute(2, 0, 1))

    def close(self) -> None:
        # DALI has no public close: dropping the last reference shuts the pipeline's threads down
        self._pipe = None
