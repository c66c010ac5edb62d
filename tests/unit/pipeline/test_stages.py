"""The stages (pipeline/stages/): each built and run alone, then the chain on the tensor path against the host path."""

from __future__ import annotations

import dataclasses
import importlib.util
import threading

import numpy as np
import pytest
import torch

from fersr_stream import classify
from fersr_stream import config as cfg
from fersr_stream.bench.gpu import TruthDetector
from fersr_stream.crops import HostCrops
from fersr_stream.detect import Detector
from fersr_stream.detect.follow import FollowingDetector
from fersr_stream.enhance import BicubicEnhancer
from fersr_stream.pipeline import stages
from fersr_stream.pipeline.models import Models, load_models
from fersr_stream.pipeline.runner import Input, Runner, run_serially
from fersr_stream.pipeline.stats import Stats
from fersr_stream.pipeline.transfer import Transfers
from fersr_stream.sinks import Sink
from fersr_stream.sources import open_source
from fersr_stream.testing import synthetic
from fersr_stream.types import Faces, Frame

BOX = np.array([[177, 66, 272, 161]], np.float32)  # the astronaut's face in her 512 px picture


class Recorder(Detector):
    """Finds :data:`BOX` in every frame and remembers what it was given."""

    def __init__(self, reads_tensors: bool = False):
        self.reads_tensors, self.seen = reads_tensors, []

    def detect(self, images):
        self.seen.append(("host", len(images)))
        return [Faces(BOX, np.ones(1, np.float32)) for _ in images]

    def detect_tensors(self, frames):
        self.seen.append(("device", len(frames)))
        return [Faces(BOX, np.ones(1, np.float32)) for _ in frames]


class Written(Sink):
    def __init__(self, stop_after: int | None = None):
        self.frames, self.closed, self.stop_after = [], 0, stop_after

    def write(self, frame):
        self.frames.append(frame)
        self.wants_stop = self.stop_after is not None and len(self.frames) >= self.stop_after

    def close(self):
        self.closed += 1


@pytest.fixture(scope="module")
def classifier():
    return classify.load(None, "cpu")


def test_build_lists_the_stages_in_order_and_the_enhancer_only_when_there_is_one(classifier):
    config = cfg.load(None, [])
    models = Models(Recorder(), None, classifier)
    built = stages.build(config, models, sinks=[[]], stats=Stats(), stop=threading.Event())
    assert [s.name for s in built] == ["detect", "track", "crop", "classify", "smooth", "overlay", "write"]
    with_enhancer = stages.build(config, dataclasses.replace(models, enhancer=BicubicEnhancer()), sinks=[[]],
                                 stats=Stats(), stop=threading.Event())
    assert [s.name for s in with_enhancer][3] == "enhance"
    assert built[0].followers[0] is built[0].detector  # following (as Haar does) needs a detector that follows


def test_the_detect_stage_follows_faces_in_video_only(classifier):
    class Follows(Recorder):
        follows = True

    stage = stages.DetectStage(Follows(), full_every=5, stills=[False, True])
    assert isinstance(stage.followers[0], FollowingDetector)  # a video
    assert stage.followers[1] is stage.detector  # a folder of pictures: each searched whole
    assert stage.followers[0] is not stages.DetectStage(Follows(), full_every=5).followers[0]  # one per source
    assert stages.DetectStage(Follows(), full_every=1).followers[0] is not None
    assert not isinstance(stages.DetectStage(Follows(), full_every=1).followers[0], FollowingDetector)


@pytest.mark.parametrize("reads_tensors", [False, True])
def test_on_the_tensor_path_the_detect_stage_uploads_frames_and_gives_each_detector_its_kind(astronaut,
                                                                                           reads_tensors):
    detector = Recorder(reads_tensors)
    stage = stages.DetectStage(detector, transfers=Transfers("cpu"))
    decoded_there = Frame(1, None, device_image=torch.from_numpy(astronaut).permute(2, 0, 1))
    out = stage.process([Frame(0, astronaut), decoded_there])
    assert detector.seen == [("device" if reads_tensors else "host", 2)]
    assert all(f.device_image is not None and len(f.faces) == 1 for f in out)
    # a host detector had the device-decoded frame fetched once: the overlay draws on that copy
    assert (out[1].image is not None) is not reads_tensors
    assert stages.DetectStage(Recorder()).process([Frame(0, astronaut)])[0].device_image is None  # host path


def test_tracks_carry_over_in_video_and_start_afresh_for_each_still():
    faces = Faces(BOX, np.ones(1, np.float32))
    frames = [Frame(i, np.zeros((8, 8, 3), np.uint8), faces=faces.replace(boxes=BOX + 200 * i)) for i in range(3)]
    video = run_serially([stages.TrackStage(cfg.TrackConfig())], frames)
    stills = run_serially([stages.TrackStage(cfg.TrackConfig(), stills=[True])], frames)
    assert [f.faces.track_ids.tolist() for f in video] == [[0], [1], [2]]  # the boxes moved far: new faces
    assert [f.faces.track_ids.tolist() for f in stills] == [[0], [0], [0]]


def test_smoothing_averages_a_track_over_time_but_never_across_stills():
    probs = [np.eye(7, dtype=np.float32)[[k]] for k in (3, 0)]
    faces = [Faces(BOX, np.ones(1, np.float32), track_ids=np.zeros(1, np.int64), probs=p) for p in probs]
    frames = [Frame(i, np.zeros((8, 8, 3), np.uint8), faces=f) for i, f in enumerate(faces)]
    video = run_serially([stages.SmoothStage(cfg.TrackConfig(smooth=0.5))], frames)
    stills = run_serially([stages.SmoothStage(cfg.TrackConfig(smooth=0.5), stills=[True])], frames)
    assert video[1].faces.probs[0, 3] == pytest.approx(0.5) and stills[1].faces.probs[0, 3] == 0


def test_the_enhance_stage_restores_or_reuses_and_counts_both(astronaut):
    stats, config = Stats(), cfg.EnhanceConfig(name="bicubic", reuse_every=3)
    chain = [stages.TrackStage(cfg.TrackConfig()), stages.CropStage(64, cfg.AlignConfig(), cfg.DegradeConfig()),
             stages.EnhanceStage(BicubicEnhancer(128), config, stats, side=64)]
    faces = Faces(BOX, np.ones(1, np.float32))
    out = run_serially(chain, [Frame(i, astronaut, faces=faces) for i in range(4)])
    assert stats.counters == {"restorations": 2, "reuses": 2}  # frames 0 and 3 restored, 1 and 2 reused
    assert all(f.faces.restored.tolist() == [True] and f.faces.crops.side == 64 for f in out)
    stats = Stats()
    stills = stages.EnhanceStage(BicubicEnhancer(128), config, stats, side=64, stills=[True])
    run_serially(chain[:2] + [stills], [Frame(i, astronaut, faces=faces) for i in range(4)])
    assert stats.counters == {"restorations": 4, "reuses": 0}  # unrelated pictures reuse nothing


@pytest.mark.parametrize("tensor_path", [False, True])
def test_a_frame_without_faces_comes_out_of_classify_the_same_whatever_its_batch(astronaut, classifier,
                                                                                tensor_path):
    side = 320
    crop = stages.CropStage(side, cfg.AlignConfig(), cfg.DegradeConfig())
    device_image = (lambda image: torch.from_numpy(image).permute(2, 0, 1)) if tensor_path else (lambda image: None)
    face = Frame(0, astronaut, faces=Faces(BOX, np.ones(1, np.float32)), device_image=device_image(astronaut))
    blank = Frame(1, np.zeros_like(astronaut), device_image=device_image(np.zeros_like(astronaut)))
    face, blank = run_serially([crop], [face, blank])
    stage = stages.ClassifyStage(classifier, cfg.ClassifyConfig(), side)
    together, alone = stage.process([face, blank]), stage.process([blank])
    assert together[0].faces.probs.shape == (1, 7) and together[0].faces.probs.argmax() == 3  # happy
    assert together[1].faces.probs is None and alone[0].faces.probs is None


def test_the_write_stage_writes_in_order_stops_when_a_sink_asks_and_closes_every_sink():
    sinks, stop, shared = [Written(), Written(stop_after=2)], threading.Event(), Written()
    stage = stages.WriteStage([[sinks[0]], [sinks[1]]], stop, [shared])
    stage.process([Frame(i, np.zeros((2, 2, 3), np.uint8), source=i % 2) for i in range(4)])
    assert [f.index for f in sinks[0].frames] == [0, 2] and [f.index for f in sinks[1].frames] == [1, 3]
    assert [f.index for f in shared.frames] == [0, 1, 2, 3] and stop.is_set()
    stage.close()
    assert [s.closed for s in (*sinks, shared)] == [1, 1, 1]


def test_start_runs_each_network_s_warm_up_with_the_crop_side(classifier, monkeypatch):
    calls = []
    monkeypatch.setattr(classifier, "warm_up", lambda side: calls.append(("classify", side)))
    enhancer = BicubicEnhancer()
    monkeypatch.setattr(enhancer, "warm_up", lambda side: calls.append(("enhance", side)))
    detector = Recorder()
    monkeypatch.setattr(detector, "warm_up", lambda size, batches: calls.append(("detect", size, batches)))
    models = Models(detector, enhancer, classifier)
    config = cfg.load(None, ["enhance.name=bicubic"])
    for tensor_path in (False, True):
        built = stages.build(config, models, sinks=[[]], stats=Stats(), stop=threading.Event(),
                             tensor_path=tensor_path, frame_size=(64, 48))
        for stage in built:
            stage.start()
    # the detector warms up on the tensor path only (its device frames), with every batch size it will see
    assert calls == [("enhance", 512), ("classify", 512),
                     ("detect", (64, 48), 4), ("enhance", 512), ("classify", 512)]


# --- the whole chain: forced tensor path vs host path --------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut_face, classifier):
    """(path, decoded frames, models finding the clip's true boxes) of a 4-frame clip with two faces.

    The faces come from the ground truth because OpenCV's multi-threaded Haar cascade may list the same faces in
    another order from run to run, and the tracker's ids follow that order.
    """
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    boxes = synthetic.write_clip(path, [astronaut_face] * 2, n_frames=4, width=320, height=240, fps=10,
                                 min_size=70, max_size=100)
    with open_source(str(path)) as source:
        frames = list(source)
    return path, frames, Models(TruthDetector(frames, boxes), BicubicEnhancer(512), classifier)


def _run_serially(config, models, frames, tensor_path):
    built = stages.build(config, models, sinks=[[]], stats=Stats(), stop=threading.Event(), tensor_path=tensor_path)
    return run_serially(built, frames)


def test_forced_tensor_path_matches_the_host_path(clip):
    path, frames, models = clip
    config = cfg.load(None, [f"source.uri={path}", "enhance.name=bicubic", "degrade.width=40", "degrade.blur=0.5",
                             "overlay.inset=true", "overlay.paste=true", "align.size=128",
                             "enhance.reuse_every=2", "device=cpu"])
    host = _run_serially(config, models, frames, tensor_path=False)
    tensors = _run_serially(config, models, frames, tensor_path=True)
    assert sum(len(f.faces) for f in host) == 8
    for a, b in zip(host, tensors):
        np.testing.assert_array_equal(b.faces.boxes, a.faces.boxes)
        np.testing.assert_array_equal(b.faces.track_ids, a.faces.track_ids)
        np.testing.assert_array_equal(b.faces.restored, a.faces.restored)
        np.testing.assert_allclose(b.faces.probs, a.faces.probs, atol=0.02)
        np.testing.assert_array_equal(b.faces.probs.argmax(axis=1), a.faces.probs.argmax(axis=1))
        # the overlay brought the crops it draws to the host, and let go of the device tensors
        assert b.device_image is None and isinstance(b.faces.crops, HostCrops)
        assert b.faces.crops.images.shape == a.faces.crops.images.shape == (len(a.faces), 128, 128, 3)
        # torch's grid sampling (align.crop_torch) vs OpenCV's warp (which quantises its weights), then the same
        # degradation (JPEG is left out here: it turns a level's difference into several at some pixels, and the
        # near-uniform probabilities of such a blurred face would follow; test_degrade covers it)
        assert np.abs(b.faces.crops.images.astype(int) - a.faces.crops.images).mean() < 0.3
        # the drawn frames: pasted faces and insets as close as the crops; labels may differ in the last digit
        assert (np.abs(b.image.astype(int) - a.image) > 8).any(axis=2).mean() < 0.005


def test_tensor_path_without_drawn_crops_copies_none_back(clip):
    path, frames, models = clip
    config = cfg.load(None, [f"source.uri={path}", "enhance.name=none", "device=cpu"])
    out = _run_serially(config, dataclasses.replace(models, enhancer=None), frames, tensor_path=True)
    assert all(f.faces.crops is None and f.faces.probs is not None for f in out)
    assert stages.on_device(models) is False  # the CPU's own rule keeps the host path


needs_dali = pytest.mark.skipif(importlib.util.find_spec("nvidia.dali") is None,
                                reason="NVIDIA DALI is not installed (pip install -e '.[dali]')")


@needs_dali
def test_decoder_tensors_run_the_stream_without_host_frames(make_clip):
    """DALI (on the CPU here: VP9) hands frames over as tensors: image None until the overlay copies it back."""
    from fersr_stream.sources.dali import DaliSource

    path, _ = make_clip("clip.webm", n_faces=1, n_frames=5, width=240, height=180, fps=10, min_size=80,
                        max_size=100, codec="libvpx-vp9")
    # Haar reads host frames on both paths, so the two give the same boxes (test_mtcnn compares MTCNN's paths)
    config = cfg.load(None, [f"source.uri={path}", "enhance.name=bicubic", "degrade.width=20", "device=cpu",
                             "detect.name=haar", "detect.full_every=10"])
    models = load_models(config, torch.device("cpu"))
    with DaliSource(path, device="cpu", sequence=4) as source:
        first = next(source.frames(on_device=True))
        assert first.image is None and first.device_image.shape == (3, 180, 240)
    results = {}
    for tensor_path in (False, True):
        sink, stats = Written(), Stats()
        built = stages.build(config, models, sinks=[[sink]], stats=stats, stop=threading.Event(),
                             tensor_path=tensor_path)
        with DaliSource(path, device="cpu", sequence=4) as source:
            Runner([Input(source.frames(tensor_path))], built, stats=stats).run()
        results[tensor_path] = sink.frames
    host, tensors = results[False], results[True]
    assert [f.index for f in tensors] == [f.index for f in host] == list(range(5))
    for a, b in zip(host, tensors):
        assert isinstance(b.image, np.ndarray) and b.image.shape == (180, 240, 3) and b.device_image is None
        np.testing.assert_array_equal(b.faces.boxes, a.faces.boxes)
        if len(a.faces):
            np.testing.assert_allclose(b.faces.probs, a.faces.probs, atol=0.02)
        else:
            assert a.faces.probs is None and b.faces.probs is None
        assert np.abs(b.image.astype(int) - a.image).mean() < 0.2


def test_sources_hand_over_host_frames_unless_they_decode_on_the_device(clip):
    with open_source(str(clip[0])) as source:
        frames = list(source.frames(on_device=True))
    assert len(frames) == 4 and all(f.device_image is None and f.image is not None for f in frames)
