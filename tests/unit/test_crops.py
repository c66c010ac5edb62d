"""Crop batches (fersr_stream/crops.py): the host and device kinds do the same things to the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fersr_stream import align, crops
from fersr_stream.config import DegradeConfig
from fersr_stream.crops import DeviceCrops, HostCrops, Noise
from fersr_stream.types import Faces, Frame

BOXES = np.array([[177, 66, 272, 161], [400, 380, 560, 540]], np.float32)  # the second runs past the frame


@pytest.fixture(scope="module")
def frame(astronaut) -> Frame:
    return Frame(0, astronaut, faces=Faces(BOXES, np.ones(2, np.float32)))


def both(frame: Frame, size: int = 96) -> tuple[HostCrops, DeviceCrops]:
    """The frame's faces cut on the host and, from its tensor, 'on the device' (the CPU here)."""
    affines = align.face_affines(frame.faces, size)
    on_device = frame.replace(device_image=torch.from_numpy(frame.image).permute(2, 0, 1))
    return crops.cut(frame, affines, size), crops.cut(on_device, affines, size)


def apart(host: HostCrops, device: DeviceCrops) -> np.ndarray:
    return np.abs(device.host().astype(int) - host.images)


def test_each_kind_checks_its_layout_and_says_what_it_got():
    with pytest.raises(ValueError, match=r"expected \(N, S, S, 3\) uint8 RGB arrays, got \(2, 3, 8, 8\) uint8"):
        HostCrops(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"arrays, got \(1, 8, 6, 3\)"):
        HostCrops(np.zeros((1, 8, 6, 3), np.uint8))  # not square
    with pytest.raises(ValueError, match=r"expected \(N, 3, S, S\) uint8 RGB tensors, got \(1, 8, 8, 3\) torch.uint8"):
        DeviceCrops(torch.zeros((1, 8, 8, 3), dtype=torch.uint8))
    with pytest.raises(ValueError, match="tensors, got .* torch.float32"):
        DeviceCrops(torch.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="2 images but 1 low-resolution"):
        HostCrops(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((1, 4, 4, 3), np.uint8))


def test_the_frame_says_where_its_crops_are_cut(frame):
    host, device = both(frame)
    assert isinstance(host, HostCrops) and isinstance(device, DeviceCrops)
    assert host.images.shape == (2, 96, 96, 3) and device.images.shape == (2, 3, 96, 96) and host.side == 96
    # torch's grid sampling vs OpenCV's fixed-point warp, GFPGAN's grey beyond the frame on both
    assert apart(host, device).mean() < 0.5 and apart(host, device).max() <= 4
    assert tuple(host.images[1, -1, -1]) == align.BORDER_RGB
    empty = crops.cut(frame.replace(device_image=torch.zeros((3, 512, 512), dtype=torch.uint8)),
                      np.zeros((0, 2, 3), np.float32), 64)
    assert empty.images.shape == (0, 3, 64, 64) and len(crops.cut(frame, np.zeros((0, 2, 3)), 64)) == 0


def test_degrade_keeps_the_low_resolution_images_on_both_kinds(frame):
    host, device = both(frame)
    config = DegradeConfig(width=24, blur=0.5)
    small_host, small_device = host.degrade(config, Noise(0)), device.degrade(config, Noise(0))
    assert small_host.lowres.shape == (2, 24, 24, 3) and small_device.lowres.shape == (2, 3, 24, 24)
    assert small_host.side == small_device.side == 96
    assert apart(small_host, small_device).mean() < 0.5
    assert np.abs(small_host.images.astype(int) - host.images).mean() > 3  # it did lose detail
    restorable = small_device.restorable()
    assert restorable.side == 24 and restorable.lowres is None and host.restorable() is host


def test_noise_is_seeded_per_device_and_new_on_every_call():
    noise = Noise(3)
    first = noise.torch(torch.device("cpu"))
    assert noise.torch(torch.device("cpu")) is first
    assert torch.equal(torch.randn(4, generator=first), torch.randn(4, generator=torch.Generator().manual_seed(3)))
    grey = HostCrops(np.full((1, 32, 32, 3), 128, np.uint8))
    config = DegradeConfig(width=32, noise=5.0)
    assert not np.array_equal(grey.degrade(config, noise).images, grey.degrade(config, noise).images)
    assert np.array_equal(grey.degrade(config, Noise(3)).images, grey.degrade(config, Noise(3)).images)


def test_centre_and_resize_agree_across_kinds(frame):
    host, device = both(frame, 128)
    for side, method in ((64, "area"), (200, "bicubic"), (51, "bilinear")):
        a, b = host.centre(0.8).resize(side, method), device.centre(0.8).resize(side, method)
        assert a.side == b.side == side
        assert apart(a, b).max() <= 5 and apart(a, b).mean() < 0.5
    assert host.centre(0.8).side == 102 and host.resize(128, "area") is host and host.resize(None, "area") is host


def test_select_and_cat_keep_images_and_low_resolution_together(frame):
    host, device = both(frame)
    for batch in (host.degrade(DegradeConfig(width=16), Noise(0)), device.degrade(DegradeConfig(width=16), Noise(0))):
        picks = [batch.select(np.array([False, True])), batch.select([1]), batch.select(slice(1, 2))]
        for picked in picks:
            assert len(picked) == 1 and np.array_equal(picked.host(), batch.host()[1:])
            assert np.array_equal(np.asarray(picked.lowres), np.asarray(batch.lowres[1:]))
        joined = crops.cat([batch.select([1]), batch.select([0])])
        assert np.array_equal(joined.host(), batch.host()[::-1]) and joined.lowres is not None
        assert crops.cat([batch.select([0]), type(batch)(batch.images[:1])]).lowres is None


def test_networks_read_tensors_and_answer_in_the_batch_s_own_kind(frame):
    host, device = both(frame)
    for batch in (host, device):
        x = batch.tensor(torch.device("cpu"))
        assert x.shape == (2, 3, 96, 96) and x.dtype == torch.uint8
        back = batch.like(255 - x)
        assert type(back) is type(batch) and np.array_equal(back.host(), 255 - batch.host())
