"""The stage chain's own rules (pipeline/stages.py): how large the face crops are cut."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from fersr_stream import align, classify
from fersr_stream import config as cfg
from fersr_stream.pipeline import session
from fersr_stream.pipeline import stages as stage_builder
from fersr_stream.pipeline.runner import run_serially
from fersr_stream.pipeline.stats import Stats
from fersr_stream.types import Faces, Frame
from fersr_stream.weights.registry import Preprocessing

ASTRONAUT_FACE_BOX = (177, 66, 272, 161)  # where Haar finds her face in the 512 px picture


@pytest.fixture(scope="module")
def classifier():
    return classify.load(None, "cpu")


def test_crops_only_the_classifier_reads_are_cut_at_four_times_its_input(classifier):
    # the mini-Xception reads the centre 0.8 of a crop shrunk to 64 px: 320 px crops give it 256 px, 4x4 per pixel
    assert (classifier.preprocessing.size, classifier.preprocessing.crop) == (64, 0.8)
    assert stage_builder.crop_side(cfg.load(None, []), classifier) == 320
    assert stage_builder.crop_side(cfg.load(None, ["overlay.inset=true"]), classifier) == 320


@pytest.mark.parametrize("sets", [["enhance.name=bicubic"], ["enhance.name=gfpgan"], ["degrade.width=16"],
                                  ["overlay.paste=true"], ["align.size=640", "enhance.name=codeformer"]])
def test_crops_a_restorer_the_low_resolution_or_the_paste_reads_keep_align_size(classifier, sets):
    config = cfg.load(None, sets)
    assert stage_builder.crop_side(config, classifier) == config.align.size


def test_the_small_side_is_never_above_align_size_and_needs_a_fixed_input_size():
    def network(**preprocessing):
        return SimpleNamespace(preprocessing=Preprocessing(**preprocessing))

    config = cfg.load(None, [])
    assert stage_builder.crop_side(config, network(size=224, crop=0.875)) == 512  # 1024 would be more than asked
    assert stage_builder.crop_side(cfg.load(None, ["align.size=128"]), network(size=64, crop=0.8)) == 128
    assert stage_builder.crop_side(config, network(size=48)) == 192
    assert stage_builder.crop_side(config, network(size=None)) == 512


def test_the_small_crop_feeds_the_classifier_what_the_full_crop_does(astronaut, classifier):
    """The astronaut at random places and scales in a frame: the classifier's input from the 320 px crop is within
    a few levels of the one from the 512 px crop (a side whose centre crop is not a whole 4x the input, 256 or 384,
    is 2-3 levels off on average and up to 30), and the probabilities agree."""
    side = stage_builder.crop_side(cfg.load(None, []), classifier)
    rng = np.random.default_rng(0)
    for _ in range(8):
        scale = rng.uniform(0.5, 2.5)
        picture = cv2.resize(astronaut, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frame = np.zeros((1400, 1400, 3), np.uint8)
        x, y = (int(v) for v in rng.integers(0, 1400 - np.array(picture.shape[1::-1])))
        frame[y:y + picture.shape[0], x:x + picture.shape[1]] = picture
        box = np.array([ASTRONAUT_FACE_BOX], np.float32) * scale + np.array([x, y, x, y], np.float32)
        faces = Faces(box + rng.uniform(-0.5, 0.5, (1, 4)).astype(np.float32), np.ones(1, np.float32))
        full, small = (align.crop(frame, faces, s).crops for s in (512, side))
        apart = (classifier._shrink(full).int() - classifier._shrink(small).int()).abs()
        assert apart.float().mean() < 0.6 and apart.max() <= 8
        np.testing.assert_allclose(classifier.classify(small), classifier.classify(full), atol=0.01)


def test_the_crop_stage_cuts_the_small_side(astronaut, classifier):
    config = cfg.load(None, ["device=cpu"])
    models = session.Models(detector=None, enhancer=None, classifier=classifier)
    faces = Faces(np.array([ASTRONAUT_FACE_BOX], np.float32), np.ones(1, np.float32))
    for tensor_path in (False, True):
        # on the tensor path the detect stage has uploaded the frame by now
        uploaded = torch.from_numpy(astronaut).permute(2, 0, 1) if tensor_path else None
        frame = Frame(0, astronaut, faces=faces, device_image=uploaded)
        built = stage_builder.build(config, models, sinks=[], stats=Stats(), stop=threading.Event(),
                                    tensor_path=tensor_path)
        crop = next(stage for stage in built if stage.name == "crop")
        (out,) = run_serially([crop], [frame])
        cut = out.faces.device_processed.permute(0, 2, 3, 1) if tensor_path else out.faces.processed
        assert tuple(cut.shape) == (1, 320, 320, 3)
