"""The records that flow through the stream (fersr_stream/types.py): validated, with messages that say why."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fersr_stream.crops import DeviceCrops, HostCrops
from fersr_stream.types import Faces, Frame


def test_faces_check_every_field_against_the_number_of_boxes():
    with pytest.raises(ValueError, match=r"scores: expected shape \(2,\) float32, got \(3,\) float32"):
        Faces(np.zeros((2, 4), np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"landmarks: expected shape \(1, 5, 2\) float32, got \(1, 5, 2\) float64"):
        Faces(np.zeros((1, 4), np.float32), np.ones(1, np.float32), np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match="crops: expected 2 crops, got 1"):
        Faces(np.zeros((2, 4), np.float32), np.ones(2, np.float32), crops=HostCrops(np.zeros((1, 8, 8, 3), np.uint8)))
    faces = Faces(np.zeros((2, 4), np.float32), np.ones(2, np.float32))
    assert faces.track_ids.tolist() == [-1, -1] and len(Faces.empty()) == 0


@pytest.mark.parametrize("kind", ["host", "device"])
def test_selecting_faces_selects_their_crops(kind):
    images = np.arange(2, dtype=np.uint8).reshape(2, 1, 1, 1) * np.ones((2, 8, 8, 3), np.uint8)
    crops = HostCrops(images) if kind == "host" else DeviceCrops(torch.from_numpy(images).permute(0, 3, 1, 2))
    boxes = np.array([[0, 0, 10, 10], [5, 5, 30, 30]], np.float32)
    faces = Faces(boxes, np.ones(2, np.float32), probs=np.eye(2, 7, dtype=np.float32), crops=crops)
    kept = faces.select(np.array([False, True]))
    assert kept.boxes.tolist() == [[5, 5, 30, 30]] and kept.probs.argmax(1).tolist() == [1]
    assert kept.crops.host()[:, 0, 0, 0].tolist() == [1] and type(kept.crops) is type(crops)
    assert faces.widths.tolist() == [10, 25]


def test_frames_hold_host_or_device_pixels_of_one_size():
    pixels = torch.zeros((3, 4, 5), dtype=torch.uint8)
    frame = Frame(0, None, device_image=pixels)
    assert frame.size == (5, 4) and frame.time is None
    with pytest.raises(ValueError, match=r"device_image: expected shape \(3, 4, 6\) torch.uint8"):
        Frame(0, np.zeros((4, 6, 3), np.uint8), device_image=pixels)
    with pytest.raises(ValueError, match="image: expected"):
        Frame(0, None)
    assert Frame(3, np.zeros((2, 2, 3), np.uint8), pts=6, time_base=0.5).time == 3.0
