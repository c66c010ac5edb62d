"""OpenCV's Haar cascade: synthetic clips, pasted faces, scores, and its search near known faces (refine)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fersr_stream import detect
from fersr_stream.config import DetectConfig
from fersr_stream.detect.haar import weight_to_score
from fersr_stream.testing import synthetic

from .faces import decode, face_truth, iou, paste


@pytest.fixture(scope="module")
def haar():
    return detect.create(DetectConfig(name="haar"))


@pytest.mark.parametrize("n_faces, size, min_recall", [(1, (320, 240), 0.9), (2, (480, 240), 0.85)])
def test_haar_finds_clip_faces(haar, make_clip, n_faces, size, min_recall):
    path, pasted = make_clip(n_faces=n_faces, width=size[0], height=size[1], min_size=55, max_size=100)
    frames = decode(path)
    found = haar.detect(frames)
    assert len(found) == len(frames) == len(pasted)
    truth = face_truth(pasted.astype(np.float64))
    hits = false = 0
    for faces, boxes in zip(found, truth):
        assert faces.boxes.dtype == np.float32 and faces.scores.dtype == np.float32 and faces.landmarks is None
        assert ((faces.scores >= 0.6) & (faces.scores <= 1)).all()
        hits += sum(max((iou(b, t) for b in faces.boxes), default=0.0) > 0.5 for t in boxes)
        false += sum(max(iou(b, t) for t in boxes) <= 0.5 for b in faces.boxes)
    recall = hits / truth[..., 0].size
    assert recall >= min_recall, recall
    assert false == 0


def test_background_only_gives_no_faces(haar):
    found = haar.detect([synthetic.background(640, 480, 0.3)])
    assert len(found) == 1 and len(found[0]) == 0
    assert found[0].boxes.shape == (0, 4)


def test_faces_below_min_face_are_not_found(lfw_faces):
    frame = synthetic.background(640, 480, 0.0)
    for i, face in enumerate(lfw_faces[:48]):  # a grid of 25 px faces
        x, y = 20 + (i % 8) * 75, 20 + (i // 8) * 75
        frame[y:y + 25, x:x + 25] = face[:, :, None]
    full = dict(detect_width=640, scale_factor=1.1)  # 25 px faces would shrink below the cascade window
    tiny = detect.create(DetectConfig(name="haar", min_face=40, **full)).detect([frame])[0]
    assert len(tiny) == 0
    # the same frame does hold findable faces: only min_face hides them
    findable = detect.create(DetectConfig(name="haar", min_face=20, score_threshold=0.0, **full))
    assert len(findable.detect([frame])[0]) > 0


def test_odd_sized_frame(haar, astronaut_face):
    frame = paste(synthetic.background(321, 243, 1.0), astronaut_face, 101, 61, 150)
    faces = haar.detect([frame])[0]
    assert len(faces) == 1
    assert iou(faces.boxes[0], face_truth(np.array([101, 61, 251, 211], float))) > 0.7
    assert (faces.boxes[:, [0, 2]] <= 321).all() and (faces.boxes[:, [1, 3]] <= 243).all()
    assert len(haar.detect([np.zeros((11, 13, 3), np.uint8)])[0]) == 0  # smaller than the cascade window


def test_downscaled_detection_maps_back(astronaut_face):
    frame = paste(synthetic.background(1280, 960, 0.5), astronaut_face, 820, 500, 300)
    small = detect.create(DetectConfig(name="haar", detect_width=640)).detect([frame])[0]
    full = detect.create(DetectConfig(name="haar", detect_width=1280)).detect([frame])[0]
    assert len(small) == len(full) == 1
    assert iou(small.boxes[0], full.boxes[0]) > 0.8
    assert iou(small.boxes[0], face_truth(np.array([820, 500, 1120, 800], float))) > 0.7


def test_batch_of_frames(haar, astronaut):
    empty = synthetic.background(320, 240, 0.0)
    found = haar.detect([astronaut, empty, astronaut])
    assert [len(f) for f in found] == [1, 0, 1]
    np.testing.assert_allclose(found[0].boxes[0], [177, 66, 272, 161], atol=3)


def test_score_threshold_drops_weak_false_positives(astronaut):
    from skimage import data

    coins = cv2.cvtColor(data.coins(), cv2.COLOR_GRAY2RGB)  # round coins fool the cascade a few times
    fine = dict(detect_width=640, scale_factor=1.1)  # the finer pyramid scores real faces higher
    everything = detect.create(DetectConfig(name="haar", score_threshold=0.0, **fine)).detect([coins, astronaut])
    default = detect.create(DetectConfig(name="haar", **fine)).detect([coins, astronaut])
    assert len(default[0]) < len(everything[0])
    assert len(default[1]) == 1 and default[1].scores[0] > 0.9


def test_weight_to_score_is_a_monotone_squash():
    scores = weight_to_score(np.array([-10.0, 0.0, 2.0, 6.0, 40.0]))
    assert scores.dtype == np.float32 and np.all(np.diff(scores) > 0)
    assert scores[0] >= 0 and scores[-1] <= 1 and scores[2] == pytest.approx(0.5)


def test_bad_frame_is_a_bug(haar):
    with pytest.raises(ValueError, match="uint8"):
        haar.detect([np.zeros((10, 10, 3), np.float32)])


def test_refine_follows_a_moved_face(haar, astronaut_face):
    before = paste(synthetic.background(640, 480, 0.0), astronaut_face, 200, 150, 200)
    after = paste(synthetic.background(640, 480, 0.0), astronaut_face, 230, 140, 210)  # moved and grown
    known = haar.detect([before])[0]
    assert len(known) == 1
    (found,) = haar.refine([after], [known.boxes])
    assert len(found) == 1 and found.scores[0] >= 0.6
    assert iou(found.boxes[0], face_truth(np.array([230, 140, 440, 350], float))) > 0.7
    # the region is all it looks at: a face elsewhere in the frame is not found
    elsewhere = paste(synthetic.background(640, 480, 0.0), astronaut_face, 420, 260, 200)
    assert len(haar.refine([elsewhere], [known.boxes])[0]) == 0


def test_refine_edge_and_degenerate_boxes(haar, astronaut_face):
    frame = paste(synthetic.background(320, 240, 0.0), astronaut_face, 0, 0, 150)
    known = haar.detect([frame])[0]
    assert len(haar.refine([frame], [known.boxes])[0]) == 1  # the region is clipped at the frame's corner
    assert len(haar.refine([frame], [np.array([[400, 300, 420, 320]], np.float32)])[0]) == 0  # outside the frame
    assert len(haar.refine([frame], [np.array([[10, 10, 12, 12]], np.float32)])[0]) == 0  # below the window


def test_refine_merges_two_regions_that_find_one_face(haar, astronaut_face):
    frame = paste(synthetic.background(320, 240, 0.0), astronaut_face, 80, 40, 150)
    known = haar.detect([frame])[0].boxes
    (found,) = haar.refine([frame], [np.concatenate([known, known + 4])])
    assert len(found) == 1
