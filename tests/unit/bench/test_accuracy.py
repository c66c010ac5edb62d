"""Detection accuracy (bench/accuracy.py): the matching and scoring rules, and the stream's default detection held
to its recall on synthetic scenes of real faces, so that a later speed-up cannot quietly lose faces."""

from __future__ import annotations

import numpy as np
import pytest

from fersr_stream.bench import accuracy
from fersr_stream.testing import scenes
from fersr_stream.types import Faces


def truth(boxes, ids=None, present=None) -> scenes.Truth:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return scenes.Truth(boxes, np.zeros((n, 5, 2), np.float32), np.arange(n) if ids is None else np.asarray(ids),
                        np.ones(n, bool) if present is None else np.asarray(present))


def found(*boxes) -> Faces:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Faces(b, np.ones(len(b), np.float32))


def test_a_match_needs_the_centre_inside_and_a_similar_width_and_is_one_to_one():
    true = np.array([[0, 0, 100, 100], [200, 0, 260, 60]], np.float32)
    assert accuracy.match(found([10, 10, 90, 90]).boxes, true) == [(0, 0)]
    assert accuracy.match(found([90, 90, 190, 190]).boxes, true) == []  # centre outside
    assert accuracy.match(found([40, 40, 60, 60]).boxes, true) == []  # a fifth of the width
    both = accuracy.match(found([5, 5, 95, 95], [10, 10, 90, 90]).boxes, true)
    assert both == [(0, 0)]  # one detection per face: the better overlap


def test_score_counts_recall_unmatched_and_how_late_a_face_was_found():
    truths = [truth([[0, 0, 100, 100]])] * 4
    detected = [found(), found(), found([0, 0, 100, 100], [300, 300, 340, 340]), found([0, 0, 100, 100])]
    s = accuracy.score(detected, truths, ms=1.0, min_face=0)
    assert (s.faces, s.found, s.detections, s.unmatched, s.late) == (4, 2, 3, 1, 2)
    assert s.recall == 0.5 and s.unmatched_share == pytest.approx(1 / 3)
    small = accuracy.score(detected, truths, ms=1.0, min_face=150)  # faces narrower than min_face do not count
    assert small.faces == 0 and small.detections == 3
    outside = accuracy.score([found()], [truth([[0, 0, 10, 10]], present=[False])], ms=1.0, min_face=0)
    assert outside.faces == 0 and outside.late == 0


def test_known_boxes_become_truths_and_written_json_lines_score_against_them(tmp_path):
    boxes = np.array([[[0, 0, 100, 100], [200, 0, 260, 60]], [[10, 0, 110, 100], [210, 0, 270, 60]]])
    truths = accuracy.truths_from_boxes(boxes)
    assert len(truths) == 2 and truths[1].ids.tolist() == [0, 1] and truths[1].present.all()
    assert truths[1].boxes.dtype == np.float32 and truths[1].landmarks.shape == (2, 5, 2)
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"frame": 0, "faces": [{"box": [0, 0, 100, 100]}]}\n{"frame": 1, "faces": []}\n')
    written = accuracy.faces_written(jsonl)
    assert [len(f) for f in written] == [1, 0] and written[1].boxes.shape == (0, 4)
    assert accuracy.score(written, truths, 0.0, 0.0).recall == 0.25


def test_scenes_carry_their_faces_truth(tmp_path):
    truths = scenes.write("entering", tmp_path / "entering.mp4", n_frames=30)
    assert len(truths) == 30 and (tmp_path / "entering.mp4").stat().st_size > 0
    first, last = truths[0], truths[-1]
    assert not first.present.any() and last.present.any()  # the faces come into the picture
    for t in truths:
        inside = (t.landmarks >= t.boxes[:, None, :2]) & (t.landmarks <= t.boxes[:, None, 2:])
        assert inside.all()


@pytest.mark.parametrize("scene, min_recall, max_late", [("several", 0.97, 0), ("small", 0.95, 3),
                                                         ("entering", 0.95, 3), ("hidden", 0.8, None)])
def test_the_default_detection_keeps_its_recall(tmp_path, scene, min_recall, max_late):
    """The stream's default detect stage (MTCNN, whole frame every 4th frame, followed in between) on scenes of
    real faces: it found 1.00, 1.00, 1.00 and 0.84 of these faces when this test was written; the floors leave a
    margin for noise, not for a detector that loses faces. Faces are found in the first frame, and entering faces
    within 3 frames (a face a bar hides half of may be missed for longer)."""
    frames, truths = accuracy.clips([scene], 60, tmp_path)[scene]
    detected, _ = accuracy.run_option(frames, [])
    s = accuracy.score(detected, truths, ms=0.0, min_face=0)
    assert s.recall >= min_recall, s
    assert s.unmatched_share <= 0.03, s
    assert max_late is None or s.late <= max_late, s


def test_an_unknown_option_is_one_line_naming_the_known_ones():
    from click.testing import CliRunner

    result = CliRunner().invoke(accuracy.main, ["--options", "default,w640"])
    assert result.exit_code == 2 and "unknown w640; known: default, haar" in result.output
