"""Simulated low resolution: shapes, loss of detail, determinism, presets and validation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

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
