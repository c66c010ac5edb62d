"""MTCNN on CUDA: frames, pyramid and crops on the GPU (host frames uploaded once), against the CPU.

Skipped without CUDA (see conftest.py); tests/unit/detect/test_mtcnn.py runs the tensor path on the CPU.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from fersr_stream.config import DetectConfig
from fersr_stream.detect.mtcnn import MTCNNDetector

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def assert_same_faces(want, got):
    for a, b in zip(want, got, strict=True):
        assert len(a) == len(b)
        order = np.abs(a.boxes[:, None] - b.boxes[None]).max(axis=2).argmin(axis=1)
        np.testing.assert_allclose(a.boxes, b.boxes[order], atol=1.0)
        np.testing.assert_allclose(a.landmarks, b.landmarks[order], atol=1.0)


def test_mtcnn_on_cuda_finds_what_the_cpu_finds(astronaut):
    config = DetectConfig(name="mtcnn", detect_width=480, min_face=20, score_threshold=0.7)
    gpu, cpu = MTCNNDetector(config, CUDA), MTCNNDetector(config, CPU)
    frames = [cv2.resize(astronaut, (800, 800), interpolation=cv2.INTER_LINEAR), astronaut]
    on_device = [torch.from_numpy(f).permute(2, 0, 1).to(CUDA) for f in frames]
    want = cpu.detect(frames)
    assert [len(f) for f in want] == [1, 1]
    assert_same_faces(want, gpu.detect(frames))
    assert_same_faces(want, gpu.detect_tensors(on_device))

    boxes = [f.boxes for f in want]
    refined = cpu.refine(frames, boxes)
    assert_same_faces(refined, gpu.refine(frames, boxes))
    assert_same_faces(refined, gpu.refine_tensors(on_device, boxes))
