"""OpenCV's resize as torch ops (fersr_stream/resize.py): the same weights, so the same pixels within a level."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fersr_stream import resize

CV2 = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
       "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("method", sorted(CV2))
@pytest.mark.parametrize("size", [(16, 16), (11, 29), (80, 120), (100, 30)])
def test_resize_matches_opencv(astronaut, method, size):
    image = cv2.resize(astronaut, (53, 37), interpolation=cv2.INTER_AREA)
    ours = resize.to_uint8(resize.resize(nchw(image[None]), size, method))
    ref = cv2.resize(image, size[::-1], interpolation=CV2[method])
    diff = np.abs(nhwc(ours)[0].astype(int) - ref)
    assert diff.max() <= 1 and diff.mean() < 0.2  # OpenCV rounds some uint8 results in fixed point


def test_resize_area_shrink_is_exact_average():
    image = torch.arange(36, dtype=torch.float32).reshape(1, 1, 6, 6)
    out = resize.resize(image, (2, 3), "area")
    assert torch.equal(out, torch.nn.functional.avg_pool2d(image, (3, 2)))
    assert resize.weights(5, 3, "area").sum(axis=1) == pytest.approx(np.ones(3))


def test_resize_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown resize method 'cubic'"):
        resize.resize(torch.zeros(1, 1, 4, 4), (2, 2), "cubic")
