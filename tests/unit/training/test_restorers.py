"""The study's restoration step with random-init restoration networks saved in the upstream file layouts.

Real weights cannot be downloaded here, so the networks are random: the tests check the plumbing (the study's
restorer spec reaches the stream's enhancer, faces are restored once and cached, a warm cache builds no network
and makes no call), not the quality of a restoration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fersr_stream.enhance import restorers
from fersr_stream.testing import random_weights
from training import config as tconfig
from training import phases, synthetic
from training.cache import CacheError, Condition, RestorationCache, in_shard

SMOKE = tconfig.installed()["smoke"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A synthetic KDEF tree of four people; with the frontal view of session A that is 28 images."""
    out = tmp_path_factory.mktemp("synth")
    synthetic.write(out, 4, width=112)
    return out


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The smoke config sets one torch thread; give later tests their threads back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_study_config(out: Path, data_root: Path, restorers: list[str], *extra: str) -> tconfig.StudyConfig:
    """The smoke config cut to a 3-fold study of 28 frontal faces, testing one fold of one person at 8 px (without
    the alignment ablation, which would restore every face twice)."""
    sets = [f"out={out}", f"data.root={data_root}", "data.angles=[S]", "data.sessions=[A]", "protocol.folds=3",
            "phases.widths=[8]", "report.example_widths=[8]", "train.epochs=1",
            f"phases.restorers=[{', '.join(repr(r) for r in restorers)}]", "ablation.align=[]", *extra]
    folds = phases.Study(tconfig.load(SMOKE, sets), progress=False)
    folds.prepare()
    smallest = min(folds.folds, key=lambda f: len(f.test)).index
    return tconfig.load(SMOKE, [*sets, f"protocol.only_folds=[{smallest}]"])


def test_study_restores_through_random_init_networks_once(tmp_path, data_root, monkeypatch):
    """RestoreFormer from a file in its upstream layout, GFPGAN as a narrow in-memory network (spandrel only
    loads GFPGAN files at the released 349 MB size; the slow test below loads one), both through the study."""
    rf_file = random_weights.save_restoreformer(tmp_path / "RestoreFormer.pth")
    gfpgan_file = tmp_path / "GFPGANv1.4-narrow.pth"
    gfpgan_file.write_bytes(b"stands for the narrow network below; its sha256 keys the cache")
    real_load = restorers.load_network
    built = []

    def load_network(restorer, weights):
        built.append(restorer.arch_id)
        if restorer is restorers.GFPGANEnhancer:
            assert weights == str(gfpgan_file)
            return random_weights.gfpgan_network(narrow=0.0625)
        return real_load(restorer, weights)

    monkeypatch.setattr(restorers, "load_network", load_network)
    config = tiny_study_config(tmp_path / "runs", data_root, [f"restoreformer:{rf_file}", f"gfpgan:{gfpgan_file}"],
                               "cache.batch=4")
    shard = (1, 3)  # a third of the fold's 7 faces: a network restores ~1-2 s per face on a free CPU core
    cold = phases.Study(config, progress=False)
    cold.prepare()
    counts = cold.restore_all(shard)
    fold = cold.folds[config.protocol.only_folds[0]]
    mine = [i for i in cold.faceset.index(fold.test) if in_shard(cold.keys[i], shard)]
    assert 1 <= len(mine) < 7
    assert sorted(built) == ["GFPGAN", "RestoreFormer"]
    assert [c["restored"] for c in counts.values()] == [len(mine)] * 2
    assert cold.cache.restored == 2 * len(mine) and cold.cache.calls == 2 * -(-len(mine) // 4)  # batches of 4

    crops, keys = np.asarray(cold.faceset.crops[mine]), [cold.keys[i] for i in mine]
    lr = cold.cache.lr(crops, keys, 8)
    for spec in cold.restorers:
        restored = cold.cache.load(Condition(8, spec), crops, keys)
        assert restored.shape == lr.shape == (len(mine), 64, 64, 3) and restored.dtype == np.uint8
        assert np.abs(restored.astype(int) - lr).mean() > 5  # a random network's output, not the LR face
    files = sorted((tmp_path / "runs" / "cache" / "restored").glob("lr8-*/*/*.png"))
    assert len(files) == 2 * len(mine) and not list((tmp_path / "runs" / "cache").rglob("*.tmp"))

    built.clear()
    warm = phases.Study(config, progress=False)
    warm.prepare()
    counts = warm.restore_all(shard)
    assert [c["cached"] for c in counts.values()] == [len(mine)] * 2 and warm.cache.calls == 0
    assert built == []  # a warm cache does not even load a network


def test_shards_fill_disjoint_parts_and_a_partial_cache_stops_the_run(tmp_path, data_root):
    config = tiny_study_config(tmp_path / "runs", data_root, ["bicubic"])
    parts = []
    for i in range(2):
        study = phases.Study(config, progress=False)
        study.prepare()
        parts.append(study.restore_all((i, 2))["lr8-bicubic"])
        if i == 0:
            fold = study.folds[config.protocol.only_folds[0]]
            with pytest.raises(CacheError, match="fill every shard"):
                study.split(fold.test, study.conditions()[-1])
    assert parts[0]["restored"] + parts[1]["restored"] == 7
    assert parts[0]["restored"] == parts[1]["other_shards"]
    study = phases.Study(config, progress=False)
    study.prepare()
    assert study.restore_all()["lr8-bicubic"] == {"restored": 0, "cached": 7, "other_shards": 0}


@pytest.mark.slow
def test_full_size_gfpgan_and_codeformer_files_through_the_study(tmp_path, data_root):
    """The released-size GFPGAN file and a CodeFormer file (random weights), loaded by spandrel from disk, restore
    the study's faces of one shard; CodeFormer's fidelity is part of the cache key."""
    gfpgan = random_weights.save_gfpgan(tmp_path / "GFPGANv1.4.pth")
    codeformer = random_weights.save_codeformer(tmp_path / "codeformer.pth")
    restorers = [f"gfpgan:{gfpgan}", f"codeformer@0.5:{codeformer}", f"codeformer@1.0:{codeformer}"]
    config = tiny_study_config(tmp_path / "runs", data_root, restorers)
    study = phases.Study(config, progress=False)
    study.prepare()
    counts = study.restore_all((0, 4))  # a quarter of the 7 faces keeps this to a few minutes on 2 cores
    restored = [c["restored"] for c in counts.values()]
    assert restored[0] >= 1 and restored == [restored[0]] * 3
    fold = study.folds[config.protocol.only_folds[0]]
    mine = [i for i in study.faceset.index(fold.test) if in_shard(study.keys[i], (0, 4))]
    crops, keys = np.asarray(study.faceset.crops[mine]), [study.keys[i] for i in mine]
    faces = [study.cache.load(Condition(8, spec), crops, keys) for spec in study.restorers]
    assert not np.array_equal(faces[1], faces[2])  # fidelity 0.5 vs 1.0: different restorations
    warm = RestorationCache(config.cache_dir, config.phases.degrade, progress=False)
    for spec in study.restorers:
        assert warm.fill(Condition(8, spec), crops, keys)["cached"] == len(keys)
    assert warm.calls == 0
