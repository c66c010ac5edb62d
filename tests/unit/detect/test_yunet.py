"""YuNet through OpenCV's FaceDetectorYN, on a hand-built ONNX net with a known answer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import fersr_stream.weights
from fersr_stream import detect
from fersr_stream.config import DetectConfig
from fersr_stream.errors import WeightsError


class FakeYuNet(torch.nn.Module):
    """Outputs shaped as ``cv2.FaceDetectorYN`` reads them, with a known answer.

    Per stride s in (8, 16, 32): cls_s, obj_s (1, cells, 1), bbox_s (1, cells, 4), kps_s (1, cells, 10), cells in
    row-major grid order. Only stride 32 fires: its score is the mean of the *first input channel* (blue, since
    OpenCV feeds BGR) over the cell, each box is its cell and the landmarks sit at fixed places in the cell.
    """

    NAMES = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    KPS = [0.3, 0.35, 0.7, 0.35, 0.5, 0.55, 0.35, 0.75, 0.65, 0.75]

    def __init__(self):
        super().__init__()
        self.register_buffer("bbox", torch.tensor([0.5, 0.5, 0.0, 0.0]))  # centre offsets, log size / stride
        self.register_buffer("kps", torch.tensor(self.KPS))

    def forward(self, x):
        out = {}
        for s in (8, 16, 32):
            score = torch.nn.functional.avg_pool2d(x[:, :1], s) / 255.0
            if s != 32:
                score = score * 0.0
            cells = score.flatten(2).transpose(1, 2)
            out[f"cls_{s}"] = out[f"obj_{s}"] = cells
            out[f"bbox_{s}"] = cells * 0.0 + self.bbox
            out[f"kps_{s}"] = cells * 0.0 + self.kps
        return tuple(out[name] for name in self.NAMES)


def export(module: torch.nn.Module, path, output_names) -> None:
    pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package (pip install onnx)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, (torch.zeros(1, 3, 64, 64),), str(path), dynamo=False, input_names=["input"],
                          output_names=output_names, dynamic_axes={"input": {2: "h", 3: "w"}}, opset_version=13)


@pytest.fixture(scope="module")
def fake_yunet(tmp_path_factory):
    path = tmp_path_factory.mktemp("yunet") / "fake_yunet.onnx"
    export(FakeYuNet().eval(), path, FakeYuNet.NAMES)
    return path


def blue_square_frame(x: int, y: int, side: int, rgb=(0, 0, 255)) -> np.ndarray:
    frame = np.zeros((960, 1280, 3), np.uint8)
    frame[y:y + side, x:x + side] = rgb
    return frame


def test_yunet_boxes_landmarks_and_scale(fake_yunet):
    detector = detect.create(DetectConfig(name="yunet", weights=str(fake_yunet), detect_width=640))
    # 64 px in the frame = one 32 px cell (column 4, row 3) of the half-size image YuNet sees
    faces = detector.detect([blue_square_frame(256, 192, 64)])[0]
    assert len(faces) == 1
    np.testing.assert_allclose(faces.boxes[0], [256, 192, 320, 256], atol=1e-3)
    assert faces.scores[0] == pytest.approx(1.0)
    want = np.array([256, 192]) + 64 * np.array(FakeYuNet.KPS).reshape(5, 2)
    np.testing.assert_allclose(faces.landmarks[0], want, atol=1e-3)
    assert faces.landmarks.dtype == np.float32


def test_yunet_gets_bgr_and_handles_frame_sizes(fake_yunet):
    detector = detect.create(DetectConfig(name="yunet", weights=str(fake_yunet), detect_width=640))
    red = blue_square_frame(256, 192, 64, rgb=(255, 0, 0))
    assert len(detector.detect([red])[0]) == 0  # the net reads the blue channel: RGB must become BGR
    odd = np.zeros((243, 321, 3), np.uint8)
    odd[64:96, 32:64] = (0, 0, 255)
    faces = detector.detect([odd, blue_square_frame(0, 0, 64)])
    np.testing.assert_allclose(faces[0].boxes, [[32, 64, 64, 96]], atol=1e-3)
    np.testing.assert_allclose(faces[1].boxes, [[0, 0, 64, 64]], atol=1e-3)


def test_yunet_min_face(fake_yunet):
    detector = detect.create(DetectConfig(name="yunet", weights=str(fake_yunet), detect_width=640, min_face=100))
    assert len(detector.detect([blue_square_frame(256, 192, 64)])[0]) == 0


def test_yunet_registry_name_goes_through_the_store(fake_yunet, monkeypatch):
    asked = []

    class Store:
        @staticmethod
        def ensure(name, download=False, quiet=False, arch=None):
            asked.append((name, download, arch))
            return fake_yunet

    monkeypatch.setattr(fersr_stream.weights, "store", Store, raising=False)
    detect.create(DetectConfig(name="yunet"))
    assert asked == [("yunet.2023mar", False, "yunet")]  # building looks in the cache only
    detect.fetch(DetectConfig(name="yunet"))
    assert asked[1:] == [("yunet.2023mar", True, "yunet")]  # the explicit step downloads


def test_yunet_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="not found") as info:
        detect.create(DetectConfig(name="yunet", weights=str(tmp_path / "nope.onnx")))
    assert "\n" not in str(info.value)


def test_yunet_corrupt_file(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf" * 50)
    with pytest.raises(WeightsError, match="cannot load YuNet model") as info:
        detect.create(DetectConfig(name="yunet", weights=str(bad)))
    assert "\n" not in str(info.value)
    assert "fersr-models download" not in str(info.value)  # the user's own file: downloading would not fix it


def test_onnx_that_is_not_yunet(tmp_path):
    path = tmp_path / "conv.onnx"
    export(torch.nn.Conv2d(3, 2, 3, padding=1), path, ["out"])
    with pytest.raises(WeightsError, match="not a YuNet") as info:
        detect.create(DetectConfig(name="yunet", weights=str(path)))
    assert "\n" not in str(info.value)
