"""Restoration cache: computed once, keyed by face and condition, atomic, shardable, deterministic LR."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from fersr_stream.config import DegradeConfig
from fersr_stream.enhance import BicubicEnhancer
from training import config
from training.cache import CacheError, Condition, RestorationCache, face_keys, parse_shard, weights_sha256
from training.config import RestorerSpec, parse_restorer


@pytest.fixture()
def crops():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1, 8, 8, 3)).astype(np.float32)
    return np.stack([cv2.resize(base[0] + 20 * i, (32, 32), interpolation=cv2.INTER_CUBIC).clip(0, 255)
                     for i in range(6)]).astype(np.uint8)


BICUBIC = Condition(8, parse_restorer("bicubic"))


def test_warm_cache_makes_no_restorer_calls(tmp_path, crops):
    keys = face_keys(crops)
    cold = RestorationCache(tmp_path, DegradeConfig(), batch=4, progress=False)
    assert cold.fill(BICUBIC, crops, keys) == {"restored": 6, "cached": 0, "other_shards": 0}
    assert cold.calls == 2 and cold.restored == 6
    first = cold.load(BICUBIC, crops, keys)
    assert first.shape == crops.shape and first.dtype == np.uint8
    warm = RestorationCache(tmp_path, DegradeConfig(), batch=4, progress=False)
    assert warm.fill(BICUBIC, crops, keys) == {"restored": 0, "cached": 6, "other_shards": 0}
    assert warm.calls == 0
    np.testing.assert_array_equal(warm.load(BICUBIC, crops, keys), first)
    assert not list(tmp_path.rglob("*.tmp"))


def test_shards_split_the_work_and_incomplete_cache_is_an_error(tmp_path, crops):
    keys = face_keys(crops)
    cache = RestorationCache(tmp_path, DegradeConfig(), progress=False)
    a = cache.fill(BICUBIC, crops, keys, parse_shard("0/2"))
    assert a["restored"] + a["other_shards"] == 6
    if a["other_shards"]:
        with pytest.raises(CacheError, match="lacks"):
            cache.load(BICUBIC, crops, keys)
    b = cache.fill(BICUBIC, crops, keys, parse_shard("1/2"))
    assert a["restored"] + b["restored"] == 6
    cache.load(BICUBIC, crops, keys)
    for bad in ("2/2", "x", "1/0"):
        with pytest.raises(CacheError):
            parse_shard(bad)


def test_condition_keys_cover_degradation_restorer_and_weights(tmp_path, crops):
    cache = RestorationCache(tmp_path, DegradeConfig(), progress=False)
    key = lambda cond, c=cache: c.condition_key(cond, 32)[0]  # noqa: E731
    base = key(BICUBIC)
    assert key(Condition(16, BICUBIC.restorer)) != base
    other = RestorationCache(tmp_path, dataclasses.replace(DegradeConfig(), jpeg=50), progress=False)
    assert key(BICUBIC, other) != base
    assert cache.condition_key(BICUBIC, 64)[0] != base
    assert key(Condition(8, parse_restorer("codeformer@0.5"))) != key(Condition(8, parse_restorer("codeformer@0.7")))
    one, two = tmp_path / "w1.pth", tmp_path / "w2.pth"
    one.write_bytes(b"weights one")
    two.write_bytes(b"weights two")
    first, second = (weights_sha256(RestorerSpec("gfpgan", weights=str(path))) for path in (one, two))
    assert first != second
    from fersr_stream.weights import registry

    assert weights_sha256(RestorerSpec("gfpgan")) == registry.get("gfpgan.v1_4").sha256
    # one weights file, one cache folder, whatever it is called: restored once
    named = Condition(8, parse_restorer("gfpgan:gfpgan.v1_4"))
    assert key(named) == key(Condition(8, parse_restorer("gfpgan")))
    copy = tmp_path / "copy.pth"
    copy.write_bytes(b"weights one")
    assert key(Condition(8, parse_restorer(f"gfpgan:{one}"))) == key(Condition(8, parse_restorer(f"gfpgan:{copy}")))


def test_restorers_start_from_the_lr_image_and_bicubic_is_not_plain_lr(tmp_path, crops, monkeypatch):
    """LR is enlarged with the study's interpolation (bilinear); restorers get the width-px image itself."""
    keys = face_keys(crops)
    study_degrade = config.load(None).phases.degrade
    assert study_degrade.interpolation == "bilinear"
    cache = RestorationCache(tmp_path, study_degrade, batch=8, progress=False)
    small = cache.small(crops, keys, 8)
    assert small.shape == (6, 8, 8, 3)
    up = np.stack([cv2.resize(s, (32, 32), interpolation=cv2.INTER_LINEAR) for s in small])
    np.testing.assert_array_equal(cache.lr(crops, keys, 8), up)  # the same LR pixels, enlarged
    seen = []
    real = BicubicEnhancer.enhance

    def spy(self, faces):
        seen.append(faces.images.shape)
        return real(self, faces)

    monkeypatch.setattr(BicubicEnhancer, "enhance", spy)
    cache.fill(BICUBIC, crops, keys)
    assert seen == [(6, 8, 8, 3)]
    restored, lr = cache.load(BICUBIC, crops, keys), cache.lr(crops, keys, 8)
    assert restored.shape == crops.shape and np.abs(restored.astype(int) - lr).mean() > 0.5
    # the LR interpolation is not part of a restored face's identity: both configs share the cached entries
    bicubic_lr = RestorationCache(tmp_path, DegradeConfig(interpolation="bicubic"), progress=False)
    assert bicubic_lr.condition_key(BICUBIC, 32) == cache.condition_key(BICUBIC, 32)
    assert bicubic_lr.fill(BICUBIC, crops, keys)["cached"] == 6


def test_lr_faces_are_deterministic_per_face(tmp_path, crops):
    noisy = dataclasses.replace(DegradeConfig(), noise=5.0, jpeg=60)
    cache = RestorationCache(tmp_path, noisy, progress=False)
    keys = face_keys(crops)
    together = cache.lr(crops, keys, 8)
    alone = cache.lr(crops[3:4], keys[3:4], 8)
    np.testing.assert_array_equal(together[3:4], alone)
    assert not np.array_equal(together[0], crops[0])
    # restorers get the very pixels (same noise and JPEG draw) that LR enlarges
    up = [cv2.resize(s, (32, 32), interpolation=cv2.INTER_LINEAR) for s in cache.small(crops, keys, 8)]
    np.testing.assert_array_equal(np.stack(up), together)
    assert Condition().tag == "hr" and Condition(8).tag == "lr8" and BICUBIC.tag == "lr8-bicubic"
    np.testing.assert_array_equal(cache.load(Condition(), crops, keys), crops)
