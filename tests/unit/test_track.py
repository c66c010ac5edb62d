import numpy as np
import pytest

from fersr_stream.track import LandmarkFilter, Smoother, Tracker, iou_matrix
from fersr_stream.types import Faces


def faces(*boxes, probs=None, ids=None):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return Faces(b, np.ones(len(b), np.float32), probs=None if probs is None else np.array(probs, np.float32),
                 track_ids=None if ids is None else np.array(ids, np.int64))


def test_iou():
    m = iou_matrix(np.array([[0, 0, 10, 10]], np.float32), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]],
                                                                    np.float32))
    assert m.shape == (1, 3)
    np.testing.assert_allclose(m[0], [1.0, 50 / 150, 0.0], atol=1e-6)


def test_ids_are_stable_while_faces_move_and_new_faces_get_new_ids():
    tr = Tracker(iou=0.3, max_age=2)
    a = tr.update(faces([0, 0, 10, 10], [50, 50, 60, 60])).track_ids.tolist()
    b = tr.update(faces([52, 51, 62, 61], [1, 1, 11, 11])).track_ids.tolist()
    assert a == [0, 1] and b == [1, 0]
    c = tr.update(faces([100, 100, 110, 110])).track_ids.tolist()
    assert c == [2]


def test_lost_track_is_forgotten_after_max_age():
    tr = Tracker(iou=0.3, max_age=1)
    tr.update(faces([0, 0, 10, 10]))
    tr.update(Faces.empty())
    assert tr.update(faces([0, 0, 10, 10])).track_ids.tolist() == [0]  # age 1: still known
    tr.update(Faces.empty())
    tr.update(Faces.empty())
    assert tr.update(faces([0, 0, 10, 10])).track_ids.tolist() == [1]


def test_smoother_ema_per_track():
    sm = Smoother(alpha=0.5)
    p1 = np.eye(7, dtype=np.float32)[[3]]
    p2 = np.eye(7, dtype=np.float32)[[5]]
    sm.update(faces([0, 0, 1, 1], probs=p1, ids=[4]))
    out = sm.update(faces([0, 0, 1, 1], probs=p2, ids=[4])).probs
    np.testing.assert_allclose(out[0, [3, 5]], [0.5, 0.5])
    other = sm.update(faces([0, 0, 1, 1], probs=p2, ids=[9])).probs  # a new track starts from its own value
    np.testing.assert_allclose(other, p2)


def test_smoother_off_and_bad_alpha():
    p = np.eye(7, dtype=np.float32)[[1]]
    f = faces([0, 0, 1, 1], probs=p, ids=[0])
    assert Smoother(0.0).update(f) is f
    with pytest.raises(ValueError):
        Smoother(1.0)


def _with_landmarks(points, width=100.0, tid=0):
    box = np.array([[0, 0, width, width]], np.float32)
    return Faces(box, np.ones(1, np.float32), np.asarray(points, np.float32).reshape(1, 5, 2),
                 track_ids=np.array([tid], np.int64))


def test_landmark_filter_removes_the_jitter_of_a_still_face():
    rng = np.random.default_rng(0)
    base = rng.uniform(20, 80, (5, 2))
    noisy = [base + rng.normal(0, 2.0, (5, 2)) for _ in range(90)]
    flt = LandmarkFilter(cutoff=1.0, beta=5.0)
    out = np.stack([flt.update(_with_landmarks(p), t / 30).landmarks[0] for t, p in enumerate(noisy)])
    raw_jitter = np.abs(np.diff(np.stack(noisy)[30:], axis=0)).mean()
    assert np.abs(np.diff(out[30:], axis=0)).mean() < 0.35 * raw_jitter  # frame-to-frame movement mostly gone
    assert np.abs(out[30:].mean(axis=0) - base).max() < 1.0  # and no drift from where the face is


def test_landmark_filter_follows_a_moving_face_with_little_lag():
    flt = LandmarkFilter(cutoff=1.0, beta=5.0)
    base = np.tile([[30.0, 40.0]], (5, 1))
    lag = []
    for t in range(60):  # a face sliding at 1.5 face widths a second
        truth = base + [5.0 * t, 0.0]
        lag.append(abs(flt.update(_with_landmarks(truth), t / 30).landmarks[0, 0, 0] - truth[0, 0]))
    assert max(lag[20:]) < 10  # under a tenth of the 100 px face once it is moving
    still = LandmarkFilter(cutoff=1.0, beta=0.0)  # without the speed term it would trail far behind
    trail = [abs(still.update(_with_landmarks(base + [5.0 * t, 0.0]), t / 30).landmarks[0, 0, 0] - 5.0 * t - 30)
             for t in range(60)]
    assert max(trail[20:]) > 3 * max(lag[20:])


def test_landmark_filter_off_new_tracks_and_untracked_faces_pass_through():
    points = np.arange(10, dtype=np.float32).reshape(5, 2)
    assert LandmarkFilter(cutoff=0.0).update(_with_landmarks(points), 0.0).landmarks[0].tolist() == points.tolist()
    flt = LandmarkFilter()
    flt.update(_with_landmarks(points), 0.0)
    assert flt.update(_with_landmarks(points + 50, tid=1), 0.03).landmarks[0].tolist() == (points + 50).tolist()
    untracked = _with_landmarks(points + 9, tid=-1)
    assert flt.update(untracked, 0.06).landmarks[0].tolist() == (points + 9).tolist()
    no_points = faces([0, 0, 10, 10], ids=[0])
    assert flt.update(no_points, 0.1) is no_points
