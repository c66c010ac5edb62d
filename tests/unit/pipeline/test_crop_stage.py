"""The crop stage: how large the face crops are cut, and that it cuts host and device frames alike."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from fersr_stream import align, classify
from fersr_stream import config as cfg
from fersr_stream.crops import DeviceCrops, HostCrops
from fersr_stream.pipeline.runner import run_serially
from fersr_stream.pipeline.stages import CropStage, crop_side
from fersr_stream.types import Faces, Frame
from fersr_stream.weights.registry import Preprocessing

ASTRONAUT_FACE_BOX = (177, 66, 272, 161)  # where Haar finds her face in the 512 px picture


@pytest.fixture(scope="module")
def classifier():
    return classify.load(None, "cpu")


def test_crops_only_the_classifier_reads_are_cut_at_four_times_its_input(classifier):
    # the mini-Xception reads the centre 0.8 of a crop shrunk to 64 px: 320 px crops give it 256 px, 4x4 per pixel
    assert (classifier.preprocessing.size, classifier.preprocessing.crop) == (64, 0.8)
    assert crop_side(cfg.load(None, []), classifier.preprocessing) == 320
    assert crop_side(cfg.load(None, ["overlay.inset=true"]), classifier.preprocessing) == 320


@pytest.mark.parametrize("sets", [["enhance.name=bicubic"], ["enhance.name=gfpgan"], ["degrade.width=16"],
                                  ["overlay.paste=true"], ["align.size=640", "enhance.name=codeformer"]])
def test_crops_a_restorer_the_low_resolution_or_the_paste_reads_keep_align_size(classifier, sets):
    config = cfg.load(None, sets)
    assert crop_side(config, classifier.preprocessing) == config.align.size


def test_the_small_side_is_never_above_align_size_and_needs_a_fixed_input_size():
    config = cfg.load(None, [])
    assert crop_side(config, Preprocessing(size=224, crop=0.875)) == 512  # 1024 would be more than asked
    assert crop_side(cfg.load(None, ["align.size=128"]), Preprocessing(size=64, crop=0.8)) == 128
    assert crop_side(config, Preprocessing(size=48)) == 192
    assert crop_side(config, Preprocessing(size=None)) == 512


def test_the_small_crop_feeds_the_classifier_what_the_full_crop_does(astronaut, classifier):
    """The astronaut at random places and scales in a frame: the classifier's input from the 320 px crop is within
    a few levels of the one from the 512 px crop (a side whose centre crop is not a whole 4x the input, 256 or 384,
    is 2-3 levels off on average and up to 30), and the probabilities agree."""
    side = crop_side(cfg.load(None, []), classifier.preprocessing)
    p = classifier.preprocessing
    rng = np.random.default_rng(0)
    for _ in range(8):
        scale = rng.uniform(0.5, 2.5)
        picture = cv2.resize(astronaut, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frame = np.zeros((1400, 1400, 3), np.uint8)
        x, y = (int(v) for v in rng.integers(0, 1400 - np.array(picture.shape[1::-1])))
        frame[y:y + picture.shape[0], x:x + picture.shape[1]] = picture
        box = np.array([ASTRONAUT_FACE_BOX], np.float32) * scale + np.array([x, y, x, y], np.float32)
        faces = Faces(box + rng.uniform(-0.5, 0.5, (1, 4)).astype(np.float32), np.ones(1, np.float32))
        full, small = (HostCrops(align.crop(frame, align.face_affines(faces, s), s)) for s in (512, side))
        # what the classifier reads of each: its centre crop shrunk to its input side
        inputs = [crops.centre(p.crop).resize(p.size, "area").images.astype(int) for crops in (full, small)]
        apart = np.abs(inputs[0] - inputs[1])
        assert apart.mean() < 0.6 and apart.max() <= 8
        np.testing.assert_allclose(classifier.classify(small), classifier.classify(full), atol=0.01)


def test_the_crop_stage_cuts_host_and_device_frames_alike(astronaut):
    stage = CropStage(320, cfg.AlignConfig(), cfg.DegradeConfig())
    faces = Faces(np.array([ASTRONAUT_FACE_BOX], np.float32), np.ones(1, np.float32))
    host = Frame(0, astronaut, faces=faces)
    # on the tensor path the detect stage has uploaded the frame by now
    device = host.replace(device_image=torch.from_numpy(astronaut).permute(2, 0, 1))
    (on_host, on_device) = run_serially([stage], [host, device])
    assert isinstance(on_host.faces.crops, HostCrops) and isinstance(on_device.faces.crops, DeviceCrops)
    assert on_host.faces.crops.images.shape == (1, 320, 320, 3)
    apart = np.abs(on_device.faces.crops.host().astype(int) - on_host.faces.crops.images)
    assert apart.mean() < 0.5 and apart.max() <= 4  # OpenCV's fixed-point bilinear against torch's float one
    assert on_host.faces.affines.shape == (1, 2, 3) and on_host.faces.crops.lowres is None


def test_the_crop_stage_degrades_with_fresh_noise_on_every_frame_but_repeats_per_run(astronaut):
    config = cfg.DegradeConfig(width=16, noise=6.0)
    faces = Faces(np.array([ASTRONAUT_FACE_BOX], np.float32), np.ones(1, np.float32))
    frames = [Frame(i, astronaut, faces=faces) for i in range(2)]

    def run():
        return run_serially([CropStage(128, cfg.AlignConfig(), config)], frames)

    first, again = run(), run()
    lowres = [f.faces.crops.lowres for f in first]
    assert lowres[0].shape == (1, 16, 16, 3) and first[0].faces.crops.images.shape == (1, 128, 128, 3)
    assert not np.array_equal(lowres[0], lowres[1])  # the same face, new noise on the next frame
    assert all(np.array_equal(a.faces.crops.lowres, b.faces.crops.lowres) for a, b in zip(first, again))


def test_a_frame_without_faces_gets_an_empty_batch():
    (out,) = run_serially([CropStage(64, cfg.AlignConfig(), cfg.DegradeConfig(width=8))],
                          [Frame(0, np.zeros((40, 50, 3), np.uint8))])
    assert len(out.faces.crops) == 0 and out.faces.crops.lowres is None


def _study_input(astronaut, tmp_path, p: Preprocessing) -> np.ndarray:
    """What a classifier the study trained reads of the astronaut: ``training.faces`` cuts the face from a
    one-picture dataset (MTCNN, as the study's default), the classifier shrinks it to its input side."""
    from fersr_stream.classify.labels import Emotion
    from training import faces
    from training.config import FacesConfig
    from training.dataset import Dataset, Sample

    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    dataset = Dataset(tmp_path, "folders", (Sample("astronaut.png", path, Emotion.HAPPY),), (), framing="portrait")
    found = faces.crop_dataset(dataset, FacesConfig(size=224, align=p.align, margin=p.margin), tmp_path / "cache",
                               progress=False)
    assert found.cut == ("landmarks",) if p.align == "landmarks" else ("detector_box",)
    return HostCrops(np.asarray(found.crops)).centre(p.crop).resize(p.size, "area").images


def _stream_input(astronaut, p: Preprocessing) -> np.ndarray:
    """What the same classifier reads of the astronaut in the stream: detect, track and crop stages as
    :func:`fersr_stream.pipeline.stages.build` makes them for a classifier with preprocessing ``p``."""
    from fersr_stream import detect
    from fersr_stream.pipeline.stages import DetectStage, TrackStage

    config = cfg.load(None, [])
    assert config.detect.name == "mtcnn"
    stages = [DetectStage(detect.create(config.detect, torch.device("cpu")), config.detect.full_every),
              TrackStage(config.track), CropStage(crop_side(config, p), config.align, config.degrade, p)]
    (frame,) = run_serially(stages, [Frame(0, astronaut)])
    assert len(frame.faces) == 1 and frame.faces.landmarks is not None
    return frame.faces.crops.centre(p.crop).resize(p.size, "area").images


@pytest.mark.parametrize("align", ["landmarks", "box"])
def test_the_stream_gives_a_study_model_the_face_it_was_trained_on(astronaut, tmp_path, align):
    """A checkpoint the study wrote records the framing of its training faces (``Preprocessing.align`` and
    ``margin``); the stream's crop stage follows it, so the classifier reads the same face in both, within a grey
    level or two (the stream cuts a larger crop and shrinks it; the study cuts 224 px). Another framing is far off:
    the test can fail."""
    from training import engine

    p = dataclasses.replace(engine.preprocessing(112), align=align, margin=0.25)
    study = _study_input(astronaut, tmp_path, p).astype(int)
    stream = _stream_input(astronaut, p).astype(int)
    assert study.shape == stream.shape == (1, 112, 112, 3)
    assert np.abs(study - stream).mean() < 1.5
    # the other framing; a tighter one (a box margin of 0.15 for box crops, the centre 90 % for aligned crops,
    # whose margin is the template's)
    tighter = dataclasses.replace(p, margin=0.15) if align == "box" else dataclasses.replace(p, crop=0.9)
    for wrong in (dataclasses.replace(p, align="box" if align == "landmarks" else "landmarks"), tighter):
        off = np.abs(study - _stream_input(astronaut, wrong).astype(int)).mean()
        assert off > 8, (wrong, off)
