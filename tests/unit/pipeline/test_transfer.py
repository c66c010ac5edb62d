"""Host <-> device copies of the tensor path (pipeline/transfer.py), on the CPU: views, and the same pixels back."""

from __future__ import annotations

import numpy as np
import torch

from fersr_stream.pipeline.transfer import Transfers
from fersr_stream.types import Frame


def test_transfers_on_the_cpu_share_memory_and_return_host_arrays():
    transfers = Transfers("cpu")
    image = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    (uploaded,) = transfers.upload([image])
    assert uploaded.shape == (3, 6, 8) and uploaded.data_ptr() == torch.from_numpy(image).data_ptr()
    back, crops = transfers.download([uploaded.permute(1, 2, 0), uploaded[None].permute(0, 2, 3, 1)]).wait()
    assert isinstance(back, np.ndarray) and np.array_equal(back, image) and crops.shape == (1, 6, 8, 3)


def test_frames_move_to_the_device_and_back_once_each():
    transfers = Transfers("cpu")
    image = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    decoded_there = Frame(1, None, device_image=torch.from_numpy(image.copy()).permute(2, 0, 1))
    on_device = transfers.to_device([Frame(0, image), decoded_there])
    assert on_device[1] is decoded_there and torch.equal(on_device[0].device_image, decoded_there.device_image)
    on_host = transfers.to_host(on_device)
    assert on_host[0] is on_device[0] and np.array_equal(on_host[1].image, image)
