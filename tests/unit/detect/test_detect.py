"""Detectors behind one interface: the registry, the settings every detector checks, and the shared helpers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fersr_stream import detect
from fersr_stream.config import DetectConfig
from fersr_stream.detect.base import distinct, join, to_faces
from fersr_stream.errors import ConfigError, WeightsError
from fersr_stream.types import Faces


def test_unknown_detector_names_the_valid_ones():
    with pytest.raises(ConfigError, match="haar, yunet, retinaface, mtcnn") as info:
        detect.create(DetectConfig(name="dlib"))
    assert "\n" not in str(info.value)


def test_haar_without_cascades_is_a_one_line_error(monkeypatch):
    # OpenCV 5 has no CascadeClassifier (seen on a GPU machine whose image brings opencv-python-headless 5.0)
    monkeypatch.delattr(cv2, "CascadeClassifier")
    monkeypatch.setattr(cv2, "__version__", "5.0.0")
    with pytest.raises(WeightsError, match=r"OpenCV 5\.0\.0.*opencv-python>=4\.9,<5.*--detector yunet") as info:
        detect.create(DetectConfig(name="haar"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [{"detect_width": 0}, {"score_threshold": 1.5}, {"min_face": -1}, {"full_every": 0}])
def test_out_of_range_settings(bad):
    with pytest.raises(ConfigError):
        detect.create(DetectConfig(**bad))


def test_to_faces_clips_and_filters():
    boxes = np.array([[-10, -5, 30, 50], [90, 90, 130, 140], [10, 10, 14, 14], [200, 200, 260, 260]], np.float32)
    faces = to_faces(boxes / 2, np.array([0.9, 0.8, 0.7, 0.6]), None, 0.5, (100, 120, 3), min_face=10)
    # the tiny box is below min_face, the last lies outside the frame
    np.testing.assert_array_equal(faces.boxes, [[0, 0, 30, 50], [90, 90, 120, 100]])
    np.testing.assert_allclose(faces.scores, [0.9, 0.8])


def test_join_keeps_landmarks_only_where_every_part_has_them_and_distinct_merges_overlaps():
    points = np.zeros((1, 5, 2), np.float32)
    a = Faces(np.array([[0, 0, 10, 10]], np.float32), np.array([0.9], np.float32), points)
    b = Faces(np.array([[1, 0, 11, 10], [50, 50, 60, 60]], np.float32), np.array([0.95, 0.5], np.float32),
              np.ones((2, 5, 2), np.float32))
    both = join([a, b])
    assert len(both) == 3 and both.landmarks.shape == (3, 5, 2)
    assert join([a, Faces(b.boxes, b.scores)]).landmarks is None and len(join([])) == 0
    kept = distinct(both)  # the first two are one face (IoU 0.82): the better scored stays, order kept
    assert kept.boxes.tolist() == [[1, 0, 11, 10], [50, 50, 60, 60]] and kept.landmarks[0, 0, 0] == 1


def test_every_detector_is_registered_once_with_its_weights_and_abilities():
    assert detect.DETECTORS.names() == ("haar", "yunet", "retinaface", "mtcnn")
    mtcnn = detect.DETECTORS.get("mtcnn")
    assert mtcnn.default_weights is None and mtcnn.follows and mtcnn.reads_tensors  # shipped, follows, on a GPU
    assert detect.DETECTORS.get("haar").follows and not detect.DETECTORS.get("haar").takes_weights
    assert detect.DETECTORS.get("yunet").default_weights == "yunet.2023mar"
    assert DetectConfig().name == "mtcnn" and DetectConfig().score_threshold is None
