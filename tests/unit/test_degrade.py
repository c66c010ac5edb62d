"""Simulated low resolution: shapes, loss of detail, determinism, presets and validation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fersr_stream import degrade
from fersr_stream.config import DegradeConfig
from fersr_stream.errors import ConfigError


@pytest.fixture(scope="module")
def crops(astronaut) -> np.ndarray:
    """(2, 128, 128, 3) uint8: the astronaut's face and a shifted view of it."""
    face = cv2.resize(astronaut[40:190, 150:300], (128, 128), interpolation=cv2.INTER_AREA)
    return np.stack([face, np.roll(face, 17, axis=1)])


def high_freq_energy(images: np.ndarray) -> float:
    """Mean squared Laplacian of the grey images: large when there is fine detail."""
    total = 0.0
    for image in images:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        total += float((cv2.Laplacian(gray, cv2.CV_32F) ** 2).mean())
    return total / len(images)


def test_shape_and_dtype(crops):
    out = degrade.degrade(crops, DegradeConfig(width=16, blur=1.0, noise=3.0, jpeg=40))
    assert out.shape == crops.shape and out.dtype == np.uint8
    assert not np.array_equal(out, crops)


def test_small_width_loses_detail(crops):
    e8 = high_freq_energy(degrade.degrade(crops, DegradeConfig(width=8)))
    e64 = high_freq_energy(degrade.degrade(crops, DegradeConfig(width=64)))
    e_hr = high_freq_energy(crops)
    assert e8 < 0.2 * e64, (e8, e64)
    assert e64 < e_hr


def test_each_step_changes_the_image(crops):
    plain = degrade.downsample(crops, 32, DegradeConfig())
    for change in ({"blur": 1.5}, {"noise": 8.0}, {"jpeg": 10}):
        other = degrade.downsample(crops, 32, DegradeConfig(**change))
        assert np.abs(other.astype(int) - plain).mean() > 0.5, change


def test_downsample_size_keeps_aspect(crops):
    wide = np.ascontiguousarray(crops[:, :64, :])  # (2, 64, 128, 3)
    small = degrade.downsample(wide, 32, DegradeConfig(jpeg=80))
    assert small.shape == (2, 16, 32, 3)
    back = degrade.degrade(wide, DegradeConfig(width=32))
    assert back.shape == wide.shape


def test_downsample_matches_area_resize(crops):
    small = degrade.downsample(crops, 32)
    want = cv2.resize(crops[0], (32, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(small[0], want)


def test_seeded_determinism(crops):
    config = DegradeConfig(width=24, noise=6.0, jpeg=60, blur=0.7)
    a = degrade.degrade(crops, config, np.random.default_rng(5))
    b = degrade.degrade(crops, config, np.random.default_rng(5))
    c = degrade.degrade(crops, config, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # without an rng, config.seed decides
    np.testing.assert_array_equal(degrade.degrade(crops, config), degrade.degrade(crops, config))


def test_shared_rng_changes_noise_between_calls(crops):
    rng = np.random.default_rng(0)
    config = DegradeConfig(width=24, noise=6.0)
    assert not np.array_equal(degrade.degrade(crops, config, rng), degrade.degrade(crops, config, rng))


def test_width_none_is_identity(crops):
    assert degrade.degrade(crops, DegradeConfig(width=None, blur=2.0, noise=5.0)) is crops


def test_zero_crops():
    empty = np.zeros((0, 64, 64, 3), np.uint8)
    assert degrade.degrade(empty, DegradeConfig(width=8, jpeg=50)).shape == (0, 64, 64, 3)


@pytest.mark.parametrize("bad", [{"width": 0}, {"width": -3}, {"width": 16, "jpeg": 0}, {"width": 16, "jpeg": 101},
                                 {"width": 16, "interpolation": "cubicle"}, {"width": 16, "noise": -1.0}])
def test_invalid_settings(crops, bad):
    with pytest.raises(ConfigError) as info:
        degrade.degrade(crops, DegradeConfig(**bad))
    assert "\n" not in str(info.value)


def test_presets(crops):
    assert degrade.preset("resize", 16) == DegradeConfig(width=16)
    realistic = degrade.preset("blur-noise-jpeg", 16)
    assert realistic.width == 16 and realistic.blur > 0 and realistic.noise > 0 and realistic.jpeg is not None
    for name in degrade.PRESETS:
        assert degrade.degrade(crops, degrade.preset(name, 16)).shape == crops.shape


def test_unknown_preset_lists_known():
    with pytest.raises(ConfigError, match="resize.*blur-noise-jpeg"):
        degrade.preset("potato", 16)
    with pytest.raises(ConfigError):
        degrade.preset("resize", 0)


def test_bad_crops_are_a_bug():
    with pytest.raises(ValueError, match="uint8"):
        degrade.degrade(np.zeros((1, 8, 8, 3), np.float32), DegradeConfig(width=4))


# --- the torch twins (crops on a device), against the OpenCV path ----------------------------------------------------


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("preset", ["resize", "blur", "jpeg"])
@pytest.mark.parametrize("width", [16, 37])
def test_degrade_torch_agrees_with_degrade(crops, preset, width):
    config = degrade.preset(preset, width)
    ref = degrade.degrade(crops, config)
    ours = degrade.degrade_torch(nchw(crops), config)
    assert ours.dtype == torch.uint8 and ours.shape == nchw(crops).shape
    diff = np.abs(nhwc(ours).astype(int) - ref)
    # OpenCV rounds its uint8 blur and area shrink in fixed point: a level here and there, which enlarging
    # (and JPEG, where a level can flip a quantised coefficient) spreads to a few levels at a few pixels
    assert diff.max() <= 6 and diff.mean() < 0.25
    # and it is not a no-op: the degradation itself changed the crops far more than the two paths differ
    assert np.abs(ref.astype(int) - crops).mean() > 10 * max(diff.mean(), 0.1)


def test_degrade_torch_keeps_float_input_float(crops):
    config = degrade.preset("blur", 24)
    as_uint8 = degrade.degrade_torch(nchw(crops), config)
    as_float = degrade.degrade_torch(nchw(crops).float() + 0.2, config)  # rounded to the same uint8 first
    assert as_float.dtype == torch.float32 and torch.equal(as_float, as_uint8.float())
    unchanged = nchw(crops)
    assert degrade.degrade_torch(unchanged, DegradeConfig(width=None)) is unchanged


def test_degrade_torch_noise_has_the_asked_spread_and_follows_its_generator():
    grey = torch.full((2, 3, 64, 64), 128, dtype=torch.uint8)
    # width = crop width: the shrink is the identity, so only the noise changes the pixels
    config = DegradeConfig(width=64, noise=8.0, interpolation="bilinear")
    noisy = degrade.degrade_torch(grey, config, torch.Generator().manual_seed(1)).float() - 128
    assert noisy.std().item() == pytest.approx(8.0, rel=0.05) and abs(noisy.mean().item()) < 0.2
    again = degrade.degrade_torch(grey, config, torch.Generator().manual_seed(1))
    assert torch.equal(again.float() - 128, noisy)
    shared = torch.Generator().manual_seed(1)
    first, second = (degrade.degrade_torch(grey, config, shared) for _ in range(2))
    assert not torch.equal(first, second)  # one generator per stream: every frame gets new noise
    assert torch.equal(degrade.degrade_torch(grey, config), degrade.degrade_torch(grey, config))  # seeded default


def test_degrade_torch_rejects_bad_input(crops):
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\) RGB crops, got \(2, 128, 128, 3\)"):
        degrade.degrade_torch(torch.from_numpy(crops), degrade.preset("resize", 16))
