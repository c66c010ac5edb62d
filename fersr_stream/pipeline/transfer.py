"""Host <-> device copies of the tensor path (frames on the GPU), kept to one each way per frame.

- Upload: a host frame is copied into pinned memory and sent to the GPU with ``non_blocking`` on a side CUDA
  stream, so the copy overlaps the compute already queued on the default stream, which then waits for it.
- Frames a DALI source decoded on the GPU are handed over as tensors and never uploaded
  (:meth:`fersr_stream.sources.base.Source.frames`).
- Download: the overlay's copy back goes into pinned buffers, asynchronously; a CUDA event recorded after the
  copies says when the host may read them, so several frames' copies are in flight while earlier ones are drawn.

On the CPU (tests force the tensor path there) a frame tensor is a view of the host array and nothing is copied,
so the same stage code runs without CUDA.
"""

from __future__ import annotations

import numpy as np
import torch

from ..types import Frame


class Pending:
    """Host copies on their way; :meth:`wait` returns them as numpy arrays once they have landed."""

    def __init__(self, hosts: list[torch.Tensor], event: torch.cuda.Event | None = None):
        self._hosts, self._event = hosts, event

    def wait(self) -> list[np.ndarray]:
        if self._event is not None:
            self._event.synchronize()
        # numpy views of the pinned buffers: they keep the buffers alive, and the caching host allocator does not
        # hand a buffer out again while a view is referenced
        return [host.numpy() for host in self._hosts]


class Transfers:
    """Uploads and downloads for one compute ``device``; see the module notes."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._side = torch.cuda.Stream(self.device) if self.cuda else None

    def upload(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """(H, W, 3) uint8 RGB host frames -> (3, H, W) uint8 tensors on the device (views, channels stay last in
        memory). Work queued on the current stream afterwards sees the copies complete."""
        if not self.cuda:
            return [torch.from_numpy(image).to(self.device).permute(2, 0, 1) for image in images]
        compute = torch.cuda.current_stream(self.device)
        out = []
        with torch.cuda.stream(self._side):
            for image in images:
                pinned = torch.from_numpy(np.ascontiguousarray(image)).pin_memory()
                out.append(pinned.to(self.device, non_blocking=True).permute(2, 0, 1))
        compute.wait_stream(self._side)
        for tensor in out:
            # allocated on the side stream but used on the compute stream: its memory must not be reused before
            # the compute stream is done with it
            tensor.record_stream(compute)
        return out

    def to_device(self, frames: list[Frame]) -> list[Frame]:
        """``frames`` each with its ``device_image``, uploading those that have none."""
        uploads = iter(self.upload([f.image for f in frames if f.device_image is None]))
        return [f if f.device_image is not None else f.replace(device_image=next(uploads)) for f in frames]

    def to_host(self, frames: list[Frame]) -> list[Frame]:
        """``frames`` each with its host ``image``, fetching those that were decoded on the device."""
        missing = [f for f in frames if f.image is None]
        fetched = iter(self.download([f.device_image.permute(1, 2, 0) for f in missing]).wait())
        return [f if f.image is not None else f.replace(image=next(fetched)) for f in frames]

    def download(self, tensors: list[torch.Tensor]) -> Pending:
        """Start copying ``tensors`` (any layout, e.g. a permuted (H, W, 3) view) to host memory in that shape."""
        if not self.cuda:
            return Pending([tensor.contiguous() for tensor in tensors])
        hosts = []
        for tensor in tensors:
            host = torch.empty(tuple(tensor.shape), dtype=tensor.dtype, pin_memory=True)
            host.copy_(tensor, non_blocking=True)
            hosts.append(host)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return Pending(hosts, event)
