"""The stream benchmark runs end to end on a tiny clip and reports every number the issue asks for."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from fersr_stream.bench import stream as bench
from fersr_stream.pipeline.models import load_models
from fersr_stream.detect.mtcnn import MTCNNDetector


def test_bench_reports_stages_pipeline_and_ratios():
    result = CliRunner().invoke(bench.main, ["--frames", "8", "--width", "320", "--height", "240", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    alone = {}
    for stage in ("decode", "detect", "track", "crop", "classify", "smooth", "overlay", "write"):
        row = re.search(rf"^{stage}((?:\s+[\d.]+){{4}})$", result.output, re.M)  # alone: ms, fps, cpu; in pipeline
        assert row, stage
        alone[stage] = float(row.group(1).split()[1])
    limit = float(re.search(r"CPU-bound limit on \d+ cores: ([\d.]+) fps", result.output).group(1))
    fps = float(re.search(r"pipeline: median ([\d.]+) fps, min [\d.]+ fps over 1 runs \(first frame out after \d+ ms",
                          result.output).group(1))
    cap = re.search(r"ratio pipeline / slowest stage \((\w+), ([\d.]+) fps\): ([\d.]+) \(at most ([\d.]+) here.*"
                    r"per repeat: ([\d.]+)$", result.output, re.M)
    slowest, slowest_fps, ratio, at_most, only = cap.groups()
    # the report's arithmetic, from its own printed numbers (each rounded to the digits shown)
    assert slowest == min(alone, key=alone.get) and abs(float(slowest_fps) - alone[slowest]) < 0.1
    assert abs(float(ratio) - fps / float(slowest_fps)) < 0.01 and ratio == only
    assert abs(float(at_most) - min(1.0, limit / float(slowest_fps))) < 0.01
    assert re.search(r"ratio pipeline / CPU-bound limit: median [\d.]+", result.output)
    assert re.search(r"^CPU-bound limit from the stages' CPU inside the pipeline: [\d.]+ fps; "
                     r"pipeline / it: median [\d.]+$", result.output, re.M)
    assert re.search(r"^(\w+) in the pipeline \(median\): on a core [\d.]+ % of the wall, waiting for a core "
                     r"-?[\d.]+ %, waiting for frames [\d.]+ %; CPU per frame [\d.]+x alone$", result.output, re.M)


def test_time_shares_split_the_wall_into_on_a_core_waiting_for_one_and_starved():
    stage = type("StageStats", (), {"busy": 0.6, "cpu": 0.4})()
    assert bench.time_shares(2.0, stage) == pytest.approx((0.2, 0.1, 0.7))


def test_known_faces_hand_out_the_clip_boxes_frame_after_frame():
    boxes = np.arange(3 * 2 * 4, dtype=np.int64).reshape(3, 2, 4)
    known = bench.KnownFaces(boxes)
    image = np.zeros((8, 8, 3), np.uint8)
    first, second = known.detect([image, image])
    third, = known.detect([image])
    for faces, truth in zip((first, second, third), boxes):
        assert faces.boxes.dtype == np.float32 and np.array_equal(faces.boxes, truth)
        assert np.array_equal(faces.scores, [1, 1])


def test_bench_with_known_faces_skips_detection(monkeypatch):
    def detecting(*args):
        raise AssertionError("the detector ran")

    for method in ("detect", "detect_tensors", "refine", "refine_tensors"):  # the default detector's
        monkeypatch.setattr(MTCNNDetector, method, detecting)
    result = CliRunner().invoke(bench.main, ["--frames", "6", "--width", "320", "--height", "240", "--repeat", "1",
                                             "--known-faces"])
    assert result.exit_code == 0, result.output
    assert "known faces (no detection)" in result.output
    assert re.search(r"^detect(\s+[\d.]+){4}$", result.output, re.M)


def test_stages_alone_run_their_warm_ups_untimed(monkeypatch, tmp_path):
    import time

    from fersr_stream import classify
    from fersr_stream import config as cfg
    from fersr_stream import device as devices

    warmed = []

    def slow_warm_up(self, side):  # a CUDA warm-up stands in here: one second, once
        warmed.append(side)
        time.sleep(1.0)

    monkeypatch.setattr(classify.Classifier, "warm_up", slow_warm_up)
    clip = tmp_path / "clip.mp4"
    bench.make_clip(clip, 4, 320, 240, 1)
    config = cfg.load(None, [f"source.uri={clip}", "device=cpu"])
    times = bench.stage_alone(config, load_models(config, devices.resolve("cpu")), tmp_path / "out.mp4")
    assert warmed == [320]
    assert times["classify"][0] < 0.1  # seconds a frame: the second of warm-up would be 0.25
