import numpy as np
import pytest

from fersr_stream.track import Smoother, Tracker, iou_matrix
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
