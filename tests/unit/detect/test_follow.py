"""Detect-and-follow (detect/follow.py): whole-frame searches every few frames and at new shots, known faces
refined in between, missed faces looked for again, then given up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fersr_stream import detect
from fersr_stream.config import DetectConfig
from fersr_stream.detect import Detector
from fersr_stream.detect.follow import WHOLE_EVERY, FollowingDetector, following
from fersr_stream.testing import synthetic
from fersr_stream.types import Faces

from .faces import decode, face_truth, iou, paste


@pytest.fixture(scope="module")
def haar():
    return detect.create(DetectConfig(name="haar"))


@pytest.fixture(scope="module")
def mtcnn():
    return detect.create(DetectConfig(name="mtcnn"), "cpu")


class Spy(Detector):
    """Counts the whole-frame searches and the faces refined of a real detector, and keeps the parts it was asked
    to search (one (K, 4) array a call)."""

    def __init__(self, detector):
        self.detector, self.whole, self.refined, self.parts = detector, 0, 0, []
        self.follows, self.reads_tensors = detector.follows, detector.reads_tensors
        self.searches_within = detector.searches_within

    def detect(self, images):
        self.whole += len(images)
        return self.detector.detect(images)

    def detect_within(self, images, rects):
        self.parts += rects
        return self.detector.detect_within(images, rects)

    def refine(self, images, boxes):
        self.refined += sum(len(b) for b in boxes)
        return self.detector.refine(images, boxes)


def recall(found, truth) -> float:
    return np.mean([max((iou(b, t) for b in f.boxes), default=0.0) > 0.5 for f, ts in zip(found, truth) for t in ts])


@pytest.mark.parametrize("name", ["haar", "mtcnn"])
def test_following_a_clip_matches_whole_frame_search_for_a_fraction_of_the_searches(request, make_clip, name):
    detector = request.getfixturevalue(name)
    path, pasted = make_clip(n_faces=2, width=480, height=240, n_frames=30, min_size=90, max_size=110)
    frames = decode(path)
    truth = face_truth(pasted.astype(np.float64))
    spy = Spy(detector)
    followed = FollowingDetector(spy, every=5).detect(frames)
    whole = detector.detect(frames)
    assert spy.whole == 6 and spy.refined > 40  # frames 0, 5, 10, 15, 20, 25 whole; both faces refined between
    assert recall(whole, truth) >= 0.9
    assert recall(followed, truth) >= recall(whole, truth) - 0.05
    for faces, boxes in zip(followed, truth):  # no false positives, no face twice
        assert all(max(iou(b, t) for t in boxes) > 0.3 for b in faces.boxes)
        assert len(faces) <= 2
    if name == "mtcnn":  # O-Net gives the landmarks of every frame, between the searches too
        assert all(f.landmarks is not None and f.landmarks.shape == (len(f), 5, 2) for f in followed)


def test_a_face_that_enters_is_found_at_the_next_whole_frame_search(haar, astronaut_face):
    empty = synthetic.background(320, 240, 0.0)
    # a small face: too little of the picture changes for a new shot
    frames = [empty.copy() for _ in range(3)] + [paste(empty.copy(), astronaut_face, 80, 40, 70) for _ in range(5)]
    found = FollowingDetector(haar, every=4).detect(frames)
    assert [len(f) for f in found] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_a_new_shot_is_searched_whole_at_once(haar, astronaut_face):
    black = np.zeros((240, 320, 3), np.uint8)
    shot = paste(synthetic.background(320, 240, 0.0), astronaut_face, 80, 40, 150)  # a cut from black
    spy = Spy(haar)
    found = FollowingDetector(spy, every=10).detect([black, black, shot, shot, shot])
    assert [len(f) for f in found] == [0, 0, 1, 1, 1] and spy.whole == 2  # frame 0, then the cut at frame 2
    moving = [paste(synthetic.background(320, 240, t / 10), astronaut_face, 80 + 3 * t, 40, 150) for t in range(5)]
    spy = Spy(haar)
    FollowingDetector(spy, every=10).detect(moving)
    assert spy.whole == 1  # the same shot: a face moving over a drifting background is not a cut


def test_changed_only_searches_where_the_picture_changed_and_the_whole_frame_at_times(mtcnn, astronaut_face):
    still_background = np.full((240, 320, 3), 90, np.uint8)
    still_background[:, 160:] = 150  # an edge that never moves
    frames = []
    for t in range(4 * WHOLE_EVERY + 1):
        frame = paste(still_background.copy(), astronaut_face, 20 + 2 * t, 60, 100)  # followed: moves 2 px a frame
        if t >= 9:
            paste(frame, astronaut_face, 200, 100, 100)  # appears at frame 9
        frames.append(frame)
    spy = Spy(mtcnn)
    found = FollowingDetector(spy, every=4, changed_only=True).detect(frames)
    # searches at frames 0 and 4 * WHOLE_EVERY (whole), at 4, 8, 12 ... between (changed parts)
    assert spy.whole == 2 and len(spy.parts) == WHOLE_EVERY - 1
    assert [len(p) for p in spy.parts[:2]] == [0, 0]  # only the face followed moved: nothing new to search
    (x0, y0, x1, y1), = spy.parts[2]  # at frame 12, the part where the second face appeared
    assert x0 <= 200 + 27 and y0 <= 100 + 26 and x1 >= 200 + 73 and y1 >= 100 + 73
    assert (x1 - x0) * (y1 - y0) < 0.4 * 320 * 240  # the face and 2 cells (32 px) about it
    assert [len(p) for p in spy.parts[3:]] == [0] * (WHOLE_EVERY - 4), spy.parts  # both followed: nothing new
    assert [len(f) for f in found] == [1] * 12 + [2] * (len(frames) - 12)  # found 3 frames after it came
    assert all(f.landmarks.shape == (len(f), 5, 2) for f in found)
    tensors = [torch.from_numpy(f).permute(2, 0, 1) for f in frames]
    on_device = FollowingDetector(mtcnn, every=4, changed_only=True).detect_tensors(tensors)
    for a, b in zip(on_device, found):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1.0)


def test_changed_only_searches_a_moving_picture_whole(mtcnn, astronaut_face):
    from fersr_stream.testing import scenes

    frames = [paste(scenes.background(320, 240, t / 2), astronaut_face, 80, 60, 100) for t in range(9)]
    spy = Spy(mtcnn)
    found = FollowingDetector(spy, every=4, changed_only=True).detect(frames)
    assert spy.whole == 3 and spy.parts == []  # the background pans: every change covers most of the frame
    assert [len(f) for f in found] == [1] * 9


class Flaky(Detector):
    """A detector whose search near known faces misses on chosen calls."""

    follows = True

    def __init__(self, box, misses):
        self.box, self.misses, self.calls = np.asarray(box, np.float32), set(misses), 0

    def detect(self, images):
        return [Faces(self.box[None], np.array([0.9], np.float32)) for _ in images]

    def refine(self, images, boxes):
        self.calls += 1
        if self.calls in self.misses:
            return [Faces.empty()]
        return [Faces(boxes[0] + 1, np.full(len(boxes[0]), 0.8, np.float32))]  # the face drifts a pixel a frame


def still(n: int) -> list[np.ndarray]:
    return [np.zeros((100, 100, 3), np.uint8)] * n


def test_a_missed_face_is_searched_for_again_where_it_was():
    flaky = Flaky([10, 10, 60, 60], misses={2})
    found = FollowingDetector(flaky, every=10).detect(still(4))
    assert [len(f) for f in found] == [1, 1, 0, 1]
    np.testing.assert_array_equal(found[3].boxes, [[12, 12, 62, 62]])  # from the last place it was seen


def test_a_face_the_whole_frame_search_misses_is_still_followed_then_given_up():
    class WholeMisses(Flaky):
        wholes = 0

        def detect(self, images):  # the whole-frame search finds the face only the first time
            self.wholes += 1
            return super().detect(images) if self.wholes == 1 else [Faces.empty() for _ in images]

    found = FollowingDetector(WholeMisses([10, 10, 60, 60], misses=()), every=3).detect(still(5))
    assert [len(f) for f in found] == [1, 1, 1, 1, 1]  # frame 3 is a whole-frame search that missed it

    lost = WholeMisses([10, 10, 60, 60], misses=range(1, 100))  # the search near it never finds it either
    found = FollowingDetector(lost, every=3).detect(still(8))
    assert [len(f) for f in found] == [1, 0, 0, 0, 0, 0, 0, 0]
    assert lost.calls == 3  # searched for at its last place for 3 frames, then given up


def test_a_face_found_both_ways_is_reported_once():
    class Twice(Flaky):
        def detect(self, images):  # the whole frame finds it where the search near it finds it too
            return [Faces(np.array([[12, 11, 61, 62]], np.float32), np.array([0.7], np.float32))]

    found = FollowingDetector(Twice([0, 0, 1, 1], misses=()), every=2).detect(still(3))
    assert len(found[2]) == 1


def test_following_reads_the_frames_its_detector_reads(mtcnn, astronaut):
    frame = torch.from_numpy(astronaut).permute(2, 0, 1)
    followed = following(mtcnn, 4, stills=False)
    assert isinstance(followed, FollowingDetector) and followed.reads_tensors
    on_device = followed.detect_tensors([frame] * 3)
    on_host = following(mtcnn, 4, stills=False).detect([astronaut] * 3)
    for a, b in zip(on_device, on_host):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1.0)


def test_following_only_where_it_applies(haar):
    assert isinstance(following(haar, 10, stills=False), FollowingDetector)
    assert following(haar, 10, stills=True) is haar  # unrelated pictures: every one searched whole
    assert following(haar, 1, stills=False) is haar

    class Whole(Detector):  # a detector that cannot search near a face
        def detect(self, images):
            return []

    no_regions = Whole()
    assert following(no_regions, 10, stills=False) is no_regions
    assert not following(haar, 10, stills=False, changed_only=True).changed_only  # Haar searches whole frames only
