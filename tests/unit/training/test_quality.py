"""The study's restoration quality: config, weights missing (skip / stop / download), gains, the figure, the report."""

from __future__ import annotations

import dataclasses
import json

import cv2
import pytest

from fersr_stream.errors import ConfigError, WeightsError
from fersr_stream.testing import random_weights
from fersr_stream.weights import registry, store
from training import config as tconfig
from training import quality
from training.quality import QualityConfig

WRITERS = {"alexnet.imagenet": random_weights.save_alexnet, "lpips.alex_v0_1": random_weights.save_lpips_head,
           "inception_resnet_v1.vggface2": random_weights.save_inception_resnet_v1}


@pytest.fixture(scope="session")
def metric_mirror(tmp_path_factory):
    """A folder holding random-weight files under the registry's file names (written once per session)."""
    mirror = tmp_path_factory.mktemp("metric-mirror")
    for name, save in WRITERS.items():
        save(mirror / registry.get(name).filename)
    return mirror


def publish(mirror, monkeypatch, home):
    """Serve the mirror's files as the metric weights: registry entries carry their hashes; FERSR_HOME is empty."""
    for name in WRITERS:
        path = mirror / registry.get(name).filename
        fake = dataclasses.replace(registry.get(name), sha256=store.sha256_file(path), size=path.stat().st_size)
        monkeypatch.setitem(registry.REGISTRY, name, fake)
    monkeypatch.setenv("FERSR_WEIGHTS_MIRROR", mirror.as_uri())
    monkeypatch.setenv("FERSR_HOME", str(home))
    monkeypatch.delenv("FERSR_OFFLINE", raising=False)


def test_quality_config_is_validated():
    assert tconfig.load(None, []).quality == QualityConfig(("psnr", "ssim", "lpips", "identity"), "skip")
    assert tconfig.load(None, ["quality.metrics=[ssim]", "quality.missing=stop"]).quality.metrics == ("ssim",)
    for bad, words in (("quality.metrics=[fid]", "unknown value 'fid'"), ("quality.missing=ask", "quality.missing"),
                       ("quality.metrics=[ssim, ssim]", "twice"), ("quality.batch=0", "quality.batch")):
        with pytest.raises(ConfigError, match=words):
            tconfig.load(None, [bad])


def test_missing_weights_skip_stop_or_download(tmp_path, monkeypatch, metric_mirror):
    publish(metric_mirror, monkeypatch, tmp_path / "home")
    command = "fersr-models download alexnet.imagenet inception_resnet_v1.vggface2 lpips.alex_v0_1"
    metrics, skipped = quality.ready(QualityConfig())
    assert metrics == ("psnr", "ssim") and skipped == {"lpips": ["alexnet.imagenet", "lpips.alex_v0_1"],
                                                       "identity": ["inception_resnet_v1.vggface2"]}
    assert quality.download_command(skipped) == command
    with pytest.raises(WeightsError, match=f"`{command}` adds them"):
        quality.ready(QualityConfig(missing="stop"))
    assert quality.ready(QualityConfig(metrics=("ssim",), missing="stop")) == (("ssim",), {})
    assert not (tmp_path / "home").exists()  # neither skip nor stop downloads
    assert quality.ready(QualityConfig(missing="download"), quiet=True) == (QualityConfig().metrics, {})
    assert all(store.path(name).is_file() for name in WRITERS)
    from fersr_stream.quality import METRICS

    assert METRICS.get("lpips").load().network.lins[0].weight.sum() > 0  # the cached files load


def _quality_rows():
    rows = []
    for width, restorer, psnr in ((8, "none", 20.0), (8, "bicubic", 21.0), (8, "gfpgan", 23.0),
                                  (16, "none", 24.0), (16, "bicubic", 25.0), (16, "gfpgan", 27.0)):
        rows.append({"width": width, "restorer": restorer, "test": f"lr{width}-{restorer}", "faces": 10,
                     "psnr_mean": psnr, "psnr_std": 1.0, "ssim_mean": psnr / 40, "ssim_std": 0.01})
    return rows


def _summary():
    acc = {(8, "none"): 0.3, (8, "bicubic"): 0.35, (8, "gfpgan"): 0.5, (16, "none"): 0.6, (16, "bicubic"): 0.61,
           (16, "gfpgan"): 0.62}
    rows = [{"model": "resnet18", "arm": "hr", "width": w, "restorer": r, "mean": a} for (w, r), a in acc.items()]
    rows.append({"model": "resnet18", "arm": "hr", "width": None, "restorer": "hr", "mean": 0.9})
    rows.append({"model": "resnet18", "arm": "lr", "width": 8, "restorer": "none", "mean": 0.45})  # not a gain
    return rows


def test_gains_and_spearman():
    points = quality.gains(_summary())
    assert [(p["width"], p["restorer"], round(p["gain"], 3)) for p in points] == \
        [(8, "bicubic", 0.05), (8, "gfpgan", 0.2), (16, "bicubic", 0.01), (16, "gfpgan", 0.02)]
    assert quality.spearman([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.4]) == pytest.approx(0.8)
    assert quality.spearman([1, 2], [1, 2]) is None and quality.spearman([1, 1, 1], [1, 2, 3]) is None


def test_section_table_and_figure(tmp_path):
    quality._write_csv(tmp_path / "quality.csv", _quality_rows())
    (tmp_path / "quality.json").write_text(json.dumps({
        "metrics": ["psnr", "ssim"], "faces": 10, "folds": [0],
        "skipped": {"identity": ["inception_resnet_v1.vggface2"]},
        "command": "fersr-models download inception_resnet_v1.vggface2"}))
    text = quality.section(tmp_path, _summary())
    assert "| 8 px | gfpgan | 10 | 23.00 ± 1.00 | 0.575 ± 0.010 |" in text
    # gains 0.05, 0.2, 0.01, 0.02 at PSNR 21, 23, 25, 27: ranks (3, 4, 1, 2) vs (1, 2, 3, 4)
    assert "Spearman ρ psnr -0.60, ssim -0.60" in text
    assert "Not measured: identity" in text and "`fersr-models download inception_resnet_v1.vggface2`" in text
    image = cv2.imread(str(tmp_path / "figures" / "gain_vs_quality.png"))
    assert image is not None and image.shape[1] > image.shape[0]  # two panels side by side
    assert quality.section(tmp_path / "elsewhere", _summary()) == ""  # a run without quality.csv
