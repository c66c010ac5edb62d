"""The stream benchmark runs end to end on a tiny clip and reports every number the issue asks for."""

from __future__ import annotations

import re

import numpy as np
from click.testing import CliRunner

from fersr_stream import bench


def test_bench_reports_stages_pipeline_and_ratios():
    result = CliRunner().invoke(bench.main, ["--frames", "8", "--width", "320", "--height", "240", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    for stage in ("decode", "detect", "track", "crop", "classify", "smooth", "overlay", "write"):
        assert re.search(rf"^{stage}(\s+[\d.]+){{4}}$", result.output, re.M), stage  # alone: ms, fps, cpu; in pipeline
    assert re.search(r"pipeline: median [\d.]+ fps, min [\d.]+ fps over 1 runs \(first frame out after \d+ ms",
                     result.output)
    cap = re.search(r"ratio pipeline / slowest stage \(\w+, [\d.]+ fps\): ([\d.]+) \(at most ([\d.]+) here.*"
                    r"per repeat: ([\d.]+)$", result.output, re.M)
    assert cap and 0 < float(cap.group(2)) <= 1
    assert cap.group(1) == cap.group(3)  # one repeat: its ratio is the median
    assert re.search(r"ratio pipeline / CPU-bound limit: median [\d.]+", result.output)
    assert re.search(r"^CPU-bound limit from the stages' CPU inside the pipeline: [\d.]+ fps; "
                     r"pipeline / it: median [\d.]+$", result.output, re.M)
    shares = re.search(r"^(\w+) in the pipeline \(median\): on a core ([\d.]+) % of the wall, waiting for a core "
                       r"(-?[\d.]+) %, waiting for frames ([\d.]+) %; CPU per frame [\d.]+x alone$",
                       result.output, re.M)
    assert shares, result.output
    on_core, waiting_core, waiting_frames = (float(shares.group(i)) for i in range(2, 5))
    assert abs(on_core + waiting_core + waiting_frames - 100) < 0.5 and on_core > 0 and waiting_frames > 0


def test_known_faces_hand_out_the_clip_boxes_frame_after_frame():
    boxes = np.arange(3 * 2 * 4, dtype=np.int64).reshape(3, 2, 4)
    known = bench.KnownFaces(boxes)
    image = np.zeros((8, 8, 3), np.uint8)
    first, second = known.detect([image, image])
    third, = known.detect([image])
    for faces, truth in zip((first, second, third), boxes):
        assert faces.boxes.dtype == np.float32 and np.array_equal(faces.boxes, truth)
        assert np.array_equal(faces.scores, [1, 1])


def test_bench_with_known_faces_skips_detection():
    result = CliRunner().invoke(bench.main, ["--frames", "6", "--width", "320", "--height", "240", "--repeat", "1",
                                             "--known-faces"])
    assert result.exit_code == 0, result.output
    assert "known faces (no detection)" in result.output
    assert re.search(r"^detect(\s+[\d.]+){4}$", result.output, re.M)
