"""How each dataset's faces are cut (faces.crop): KDEF's box only for KDEF, already-cropped faces kept whole,
detection with its fallback counted, and the crop cache keyed by the choice."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fersr_stream import align
from fersr_stream.classify.labels import Emotion
from fersr_stream.errors import ConfigError
from training import faces, kdef, synthetic
from training.config import FacesConfig
from training.dataset import Dataset, Sample


def _dataset(tmp_path, images, framing):
    samples = []
    for i, image in enumerate(images):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), image)
        samples.append(Sample(key=path.name, path=path, label=Emotion(i % 7)))
    return Dataset(tmp_path, "folders", tuple(samples), (), framing=framing)


def test_auto_follows_the_framing_and_box_fits_kdef_only(tmp_path):
    auto = FacesConfig()
    for framing, mode in (("kdef", "detect"), ("portrait", "detect"), ("face", "none")):
        assert faces.crop_mode(auto, Dataset(tmp_path, "x", (), (), framing=framing)) == mode
    assert faces.crop_mode(FacesConfig(crop="box"), Dataset(tmp_path, "kdef", (), ())) == "box"
    with pytest.raises(ConfigError, match="faces.crop=box is KDEF's fixed face box, which does not fit fer2013"):
        faces.crop_mode(FacesConfig(crop="box"), Dataset(tmp_path, "fer2013", (), (), framing="face"))


def test_an_already_cropped_face_keeps_its_mouth(tmp_path, lfw_faces):
    """A 48 x 48 face is used whole: the crop is the image enlarged, bottom rows (the mouth) included."""
    face = cv2.resize(lfw_faces[3], (48, 48))
    wide = np.hstack([np.full((48, 16), 200, np.uint8), face, np.full((48, 16), 30, np.uint8)])  # 80 x 48
    ds = _dataset(tmp_path, [face, wide], "face")
    found = faces.crop_dataset(ds, FacesConfig(size=96), tmp_path / "cache", progress=False)
    assert found.mode == "none" and not found.detected.any()
    enlarged = cv2.resize(face, (96, 96), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    for crop in found.crops:  # the wide image gives its centred square: the same face
        assert crop.shape == (96, 96, 3) and np.abs(crop[..., 0] - enlarged).mean() < 3
    np.testing.assert_allclose(found.boxes, [[0, 0, 48, 48], [16, 0, 64, 48]])
    # KDEF's box, as every dataset got before, keeps only rows 27 % .. 63 % of the picture: no mouth
    box = faces.fixed_box(48, 48)
    assert box[3] < 0.7 * 48


def test_detect_counts_the_images_it_finds_no_face_in(tmp_path, astronaut_face):
    blank = np.full((150, 150, 3), 120, np.uint8)
    blank[::7] = 40  # stripes: an image, but no face
    ds = _dataset(tmp_path, [cv2.cvtColor(astronaut_face, cv2.COLOR_RGB2BGR), blank], "portrait")
    found = faces.crop_dataset(ds, FacesConfig(size=64), tmp_path / "cache", progress=False)
    assert found.mode == "detect" and found.detected.tolist() == [True, False]
    np.testing.assert_allclose(found.boxes[1], [0, 0, 150, 150])  # the no-face image gets its centred square
    assert found.boxes[0][2] - found.boxes[0][0] < 140  # the face's own box, not the image


def test_the_cache_is_keyed_by_the_crop_choice(tmp_path):
    ds = kdef.load(synthetic.write(tmp_path / "s", 2, width=48), angles=("S",), sessions=("A",))
    cache = tmp_path / "cache"
    box = faces.crop_dataset(ds, FacesConfig(crop="box", size=32), cache, progress=False)
    whole = faces.crop_dataset(ds, FacesConfig(crop="none", size=32), cache, progress=False)
    assert box.mode == "box" and whole.mode == "none" and not np.array_equal(box.crops, whole.crops)
    entries = sorted((cache / "faces").glob("*.json"))
    assert len(entries) == 2 and {json.loads(p.read_text())["mode"] for p in entries} == {"box", "none"}
    again = faces.crop_dataset(ds, FacesConfig(crop="box", size=32), cache, progress=False)  # read back
    assert np.array_equal(again.crops, box.crops) and len(list((cache / "faces").glob("*.npy"))) == 2


def test_detected_faces_are_aligned_by_their_landmarks_and_each_cut_recorded(tmp_path, astronaut):
    """MTCNN's landmarks put the astronaut's eyes on the FFHQ template (landmarks), or she gets a square around her
    box (faces.align=box); a picture without a face gets the centred square (fallback). Detections are cached
    once for both alignments."""
    blank = np.full((150, 150, 3), 120, np.uint8)
    blank[::7] = 40
    ds = _dataset(tmp_path, [cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR), blank], "portrait")
    aligned = faces.crop_dataset(ds, FacesConfig(size=128), tmp_path / "cache", progress=False)
    assert aligned.cut == ("landmarks", "fallback_box") and aligned.align == "landmarks"
    assert np.isfinite(aligned.landmarks[0]).all() and np.isnan(aligned.landmarks[1]).all()
    # her landmarks, carried into the crop by the affine it was cut with, land on the template
    affine = align.estimate_affines(aligned.landmarks[:1], 128)[0]
    moved = aligned.landmarks[0] @ affine[:, :2].T + affine[:, 2]
    assert np.abs(moved - align.template(128)).max() < 6
    boxed = faces.crop_dataset(ds, FacesConfig(size=128, align="box"), tmp_path / "cache", progress=False)
    assert boxed.cut == ("detector_box", "fallback_box")
    assert np.abs(boxed.crops[0].astype(int) - aligned.crops[0]).mean() > 10  # another framing of her face
    assert np.array_equal(boxed.crops[1], aligned.crops[1])
    assert len(list((tmp_path / "cache" / "faces").glob("detections-*.json"))) == 1
    rows = faces.by_view(aligned, ds)
    assert rows == [{"view": "all", "images": 2, "detected": 1, "landmarks": 1, "detector_box": 0,
                     "fallback_box": 1}]


def test_a_detector_without_landmarks_gives_box_cuts(tmp_path, astronaut):
    ds = _dataset(tmp_path, [cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR)], "portrait")
    found = faces.crop_dataset(ds, FacesConfig(size=64, detector="haar"), tmp_path / "cache", progress=False)
    assert found.detected.tolist() == [True] and found.cut == ("detector_box",)


def test_faces_are_counted_per_kdef_view(tmp_path):
    ds = kdef.load(synthetic.write(tmp_path / "s", 2, width=48), sessions=("A",))
    found = faces.crop_dataset(ds, FacesConfig(crop="box", size=32), tmp_path / "cache", progress=False)
    rows = faces.by_view(found, ds)
    assert [r["view"] for r in rows] == ["FL", "HL", "S", "HR", "FR", "all"]
    assert all(r["images"] == 14 and r["fallback_box"] == 14 and r["detected"] == 0 for r in rows[:-1])
    assert rows[-1]["images"] == 70


def test_a_shrinking_crop_is_averaged_not_aliased():
    """One-pixel stripes cut at 60 / 256 of their size: the plain bilinear cut turns them into coarse false
    stripes (aliasing); the anti-aliased cut averages them, within a few levels of OpenCV's area resize."""
    image = np.zeros((256, 256, 3), np.uint8)
    image[:, ::2] = 255
    affines = align.box_affines(np.array([[0, 0, 256, 256]], np.float32), 60, 0.0)
    assert align.shrink_factor(affines).tolist() == [5]  # cut at 300 px, averaged 5 x 5
    plain, smooth = align.crop(image, affines, 60)[0], align.crop(image, affines, 60, antialias=True)[0]
    area = cv2.resize(image, (60, 60), interpolation=cv2.INTER_AREA)
    assert plain.std() > 60 and smooth.std() < 10 and np.abs(smooth.astype(int) - area).max() <= 6
    enlarge = align.box_affines(np.array([[0, 0, 32, 32]], np.float32), 64, 0.0)
    assert align.shrink_factor(enlarge).tolist() == [1]
    assert np.array_equal(align.crop(image, enlarge, 64), align.crop(image, enlarge, 64, antialias=True))
