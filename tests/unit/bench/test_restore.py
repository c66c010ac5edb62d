"""The restoration benchmark's pieces: the scene both loops get, our stage chain's counts, the fallback loop, the
table; and (slow, where the official gfpgan imports) the real GFPGANer loop on the same faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fersr_stream import align
from fersr_stream.bench import restore as bench_restore
from fersr_stream.config import EnhanceConfig
from fersr_stream.enhance.restorers import GFPGANEnhancer
from fersr_stream.testing import random_weights as rc

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scene():
    return bench_restore.make_scene(n_frames=4, n_faces=2, width=320, height=180)


@pytest.fixture(scope="module")
def enhancer():
    # a narrow GFPGANv1Clean: the same enhancer class, much faster than the released size
    return GFPGANEnhancer(rc.gfpgan_network(narrow=0.0625), EnhanceConfig(name="gfpgan", batch=4), CPU)


def cut(frame, size: int) -> np.ndarray:
    """The frame's faces aligned by their landmarks, as the stream cuts them."""
    return align.crop(frame.image, align.face_affines(frame.faces, size), size)


def test_scene_landmarks_sit_on_the_pasted_faces(scene):
    assert len(scene) == 4 and scene[0].image.shape == (180, 320, 3)
    for frame in scene:
        faces = frame.faces
        assert len(faces) == 2 and faces.landmarks.shape == (2, 5, 2)
        inside = (faces.landmarks >= faces.boxes[:, None, :2]) & (faces.landmarks <= faces.boxes[:, None, 2:])
        assert inside.all()
        # aligned with these landmarks, every face lands on the same spot: the crops of one frame agree
        crops = cut(frame, 128).astype(int)
        assert np.abs(crops[0] - crops[1]).mean() < 12
    # the eyes (dark) in the aligned crop sit where FFHQ puts them, the cheek below them is brighter
    crop = cut(scene[0], 512)[0].astype(float).mean(axis=2)
    eye = crop[235:245, 188:198].mean()
    cheek = crop[285:295, 188:198].mean()
    assert eye < cheek - 30, (eye, cheek)


def test_scene_moves_at_video_speed(scene):
    # a short clip is the start of a 150-frame motion, not a whole size cycle squeezed into 4 frames
    sizes = np.array([f.faces.widths for f in scene])
    assert np.abs(np.diff(sizes, axis=0)).max() <= 6
    assert (sizes[-1] != sizes[0]).any()


def test_ours_restores_every_face_then_reuses(scene, enhancer):
    every = bench_restore.run_ours(bench_restore.our_config(0, 4), enhancer, scene)
    assert (every.restored, every.restorations, every.reuses) == (8, 8, 0)
    reuse = bench_restore.run_ours(bench_restore.our_config(8, 4), enhancer, scene)
    assert (reuse.restored, reuse.restorations, reuse.reuses) == (8, 2, 6)
    assert reuse.mode == "ours, --reuse-every 8" and every.seconds > 0


def test_fallback_loop_restores_one_face_at_a_time(scene, enhancer):
    calls = []

    def spy(x, **kwargs):  # the bare network, recording each forward's batch and noise setting
        calls.append((x.shape[0], kwargs.get("randomize_noise")))
        return enhancer.model(x, **kwargs)

    result = bench_restore.run_official_style(spy, scene[:2], CPU)
    assert calls == [(1, True)] * 4  # 2 frames x 2 faces, one fresh-noise forward each
    assert (result.restored, result.restorations, result.reuses) == (4, 4, 0)


def test_table_reports_speed_up_against_the_baseline():
    results = {"base": [bench_restore.Result("base", 10.0, 20, 20, 0)],
               "fast": [bench_restore.Result("fast", 2.0, 20, 5, 15), bench_restore.Result("fast", 4.0, 20, 5, 15)]}
    rows = bench_restore.table(results, "base").splitlines()
    assert rows[1].split()[-1] == "1.00x"
    fast = rows[2].split()
    assert fast[-1] == "3.33x"  # median 3 s
    assert fast[4:6] == ["3.00", "2.00"]  # median and min seconds
    assert fast[6] == "0.150"  # s/face


@pytest.mark.slow
@pytest.mark.skipif(not bench_restore.official_available(), reason="official gfpgan not importable")
def test_official_gfpganer_restores_the_same_faces(tmp_path):
    # the released sizes (GFPGANer builds them): ~350 MB of files and a few seconds per face
    frames = bench_restore.make_scene(n_frames=1, n_faces=1, width=200, height=200)
    weights = rc.save_gfpgan(tmp_path / "GFPGANv1.4.pth")
    restorer = bench_restore.load_official(weights, tmp_path, CPU)
    result = bench_restore.run_official(restorer, frames)
    assert (result.restored, result.restorations) == (1, 1)
    # its own alignment (LMEDS fit) of the given landmarks cuts the crop ours (least squares) cuts
    theirs = restorer.face_helper.cropped_faces[0][:, :, ::-1].astype(int)
    ours = cut(frames[0], 512)[0].astype(int)
    assert np.abs(theirs - ours).mean() < 1
