"""RetinaFace: the released checkpoint layout loads, anchors and decoding, batched detection into valid Faces."""

from __future__ import annotations

import math

import cv2

import numpy as np
import pytest
import torch

from fersr_stream import detect
from fersr_stream.config import DetectConfig
from fersr_stream.detect.retinaface import (
    RetinaFaceDetector,
    build_retinaface,
    decode_boxes,
    decode_landmarks,
    load_retinaface,
    prior_boxes,
)
from fersr_stream.errors import WeightsError

CPU = torch.device("cpu")


def save_official(net, path, prefix: str = ""):
    """Save like the released files: a bare state dict, with DataParallel's ``module.`` prefix when given."""
    torch.save({prefix + k: v for k, v in net.state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    return build_retinaface("mobilenet0_25")


@pytest.fixture(scope="module")
def frame(astronaut) -> np.ndarray:
    """(240, 320, 3) uint8 RGB."""
    return np.ascontiguousarray(astronaut[100:340, 96:416])


@pytest.mark.parametrize("backbone, prefix, keys", [("mobilenet0.25", "", 300), ("resnet50", "module.", 456)])
def test_random_init_in_the_released_layout_loads_and_detects(tmp_path, frame, backbone, prefix, keys):
    torch.manual_seed(1)
    net = build_retinaface(backbone)
    state = net.state_dict()
    # facexlib's parameter names, which the released files use
    assert len(state) == keys
    assert "ClassHead.2.conv1x1.weight" in state and "ssh3.conv7x7_3.1.running_var" in state
    assert state["LandmarkHead.0.conv1x1.weight"].shape[0] == 20  # 2 anchors x 5 points x (x, y)
    path = save_official(net, tmp_path / "detection_Final.pth", prefix)

    loaded = load_retinaface(str(path))
    assert loaded.backbone == backbone
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, state[name])

    detector = RetinaFaceDetector(DetectConfig(name="retinaface", weights=str(path), score_threshold=0.3,
                                               min_face=0), CPU)
    (faces,) = detector.detect([frame])
    assert len(faces) > 0  # a random net scores ~0.5 everywhere
    assert faces.boxes.dtype == np.float32 and faces.landmarks.shape == (len(faces), 5, 2)
    assert faces.landmarks.dtype == np.float32
    assert (faces.scores > 0.3).all() and (np.diff(faces.scores) <= 0).all()
    assert (faces.boxes[:, [0, 1]] >= 0).all() and (faces.boxes[:, 2] <= 320).all() and (faces.boxes[:, 3] <= 240).all()


def test_the_factory_builds_it_from_a_file(tmp_path, mobilenet):
    path = save_official(mobilenet, tmp_path / "mnet.pth")
    detector = detect.create(DetectConfig(name="retinaface", weights=str(path)), "cpu")
    assert isinstance(detector, RetinaFaceDetector) and detector.net.backbone == "mobilenet0.25"


def test_bad_files_are_one_line_weights_errors(tmp_path, mobilenet):
    garbage = tmp_path / "detection_Resnet50_Final.pth"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(WeightsError, match=f"cannot read {garbage} as a RetinaFace checkpoint") as error:
        load_retinaface(str(garbage))
    assert "\n" not in str(error.value)

    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(WeightsError, match=f"{other} is not a RetinaFace checkpoint"):
        load_retinaface(str(other))

    state = mobilenet.state_dict()
    state.pop("BboxHead.1.conv1x1.bias")
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(WeightsError, match=f"{broken} is not a usable RetinaFace mobilenet0.25 checkpoint") \
            as error:
        load_retinaface(str(broken))
    assert "\n" not in str(error.value)


def test_missing_registry_weights_name_the_download_command(monkeypatch, tmp_path):
    monkeypatch.setenv("FERSR_HOME", str(tmp_path))
    monkeypatch.setenv("FERSR_OFFLINE", "1")
    with pytest.raises(WeightsError, match="fersr-models download retinaface.resnet50"):
        RetinaFaceDetector(DetectConfig(name="retinaface"), CPU)


def test_priors_follow_the_head_order():
    priors = prior_boxes(240, 320)
    # strides 8, 16, 32 -> 30x40, 15x20, 8x10 cells, 2 anchors each
    assert priors.shape == ((30 * 40 + 15 * 20 + 8 * 10) * 2, 4)
    # first cell of level 1: centre (4, 4) px, sides 16 and 32 px
    torch.testing.assert_close(priors[:2] * torch.tensor([320, 240, 320, 240]),
                               torch.tensor([[4.0, 4, 16, 16], [4, 4, 32, 32]]))
    # second cell sits one stride to the right (row-major)
    torch.testing.assert_close(priors[2, :2] * torch.tensor([320, 240]), torch.tensor([12.0, 4]))
    # last anchor: bottom-right cell of level 3, 512 px
    torch.testing.assert_close(priors[-1] * torch.tensor([320, 240, 320, 240]),
                               torch.tensor([9.5 * 32, 7.5 * 32, 512, 512]))


def test_decoding_inverts_the_box_encoding():
    priors = torch.tensor([[0.5, 0.5, 0.1, 0.2]])
    torch.testing.assert_close(decode_boxes(torch.zeros(1, 4), priors), torch.tensor([[0.45, 0.4, 0.55, 0.6]]))
    # centre offsets are in units of variance x prior size, size offsets are log-scale / variance
    offsets = torch.tensor([[1.0, -1.0, math.log(2) / 0.2, 0.0]])
    torch.testing.assert_close(decode_boxes(offsets, priors),
                               torch.tensor([[0.51 - 0.1, 0.48 - 0.1, 0.51 + 0.1, 0.48 + 0.1]]))
    points = decode_landmarks(torch.arange(10.0).view(1, 10), priors)
    assert points.shape == (1, 5, 2)
    torch.testing.assert_close(points[0, 4], torch.tensor([0.5 + 8 * 0.1 * 0.1, 0.5 + 9 * 0.1 * 0.2]))


def _constant_net(face_logit: float):
    """A mobilenet whose heads predict 'face' everywhere with zero offsets: detections are the priors."""
    torch.manual_seed(0)
    net = build_retinaface("mobilenet0.25")
    with torch.no_grad():
        for head in [*net.BboxHead, *net.LandmarkHead, *net.ClassHead]:
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.zero_()
        for head in net.ClassHead:
            head.conv1x1.bias[1::2] = face_logit  # per anchor: (background, face) logits
    return net


def test_detections_map_back_to_source_pixels(frame):
    net = _constant_net(3.0)
    big = np.ascontiguousarray(np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1))  # 480 x 640
    config = DetectConfig(name="retinaface", detect_width=320, score_threshold=0.5, min_face=0)
    detector = RetinaFaceDetector(config, CPU, net=net)
    small, large = detector.detect([frame, big])  # two sizes in one call: two batches, results in order
    assert len(small) > 0 and len(small) == len(large)
    np.testing.assert_allclose(large.boxes, small.boxes * 2, atol=1e-3)
    np.testing.assert_allclose(large.landmarks, small.landmarks * 2, atol=1e-3)
    np.testing.assert_allclose(small.scores, 1 / (1 + np.exp(-3.0)), rtol=1e-5)
    # zero offsets: every kept box is an anchor (clipped to the frame), landmarks at its centre
    inside = (small.boxes[:, 0] > 0) & (small.boxes[:, 1] > 0) & (small.boxes[:, 2] < 320) & (small.boxes[:, 3] < 240)
    widths = small.widths[inside]
    assert len(widths) and np.isin(widths.round(3), [16, 32, 64, 128]).all()
    centres = (small.boxes[inside, :2] + small.boxes[inside, 2:]) / 2
    np.testing.assert_allclose(small.landmarks[inside], np.repeat(centres[:, None], 5, axis=1), atol=1e-3)

    # min_face is in source pixels: on the 640-wide frame anchors of 16 small px are 32 source px wide
    bigger = RetinaFaceDetector(DetectConfig(name="retinaface", detect_width=320, score_threshold=0.5, min_face=40),
                                CPU, net=net).detect([big])[0]
    assert len(bigger) and (bigger.boxes[:, 2] - bigger.boxes[:, 0] >= 40 - 1e-3).all()

    none = RetinaFaceDetector(DetectConfig(name="retinaface", score_threshold=0.99), CPU, net=net).detect([frame])
    assert len(none[0]) == 0 and none[0].landmarks.shape == (0, 5, 2)


def test_a_batch_detects_what_single_frames_do(mobilenet, frame):
    detector = RetinaFaceDetector(DetectConfig(name="retinaface", score_threshold=0.3, min_face=0), CPU,
                                  net=mobilenet)
    flipped = np.ascontiguousarray(frame[:, ::-1])
    together = detector.detect([frame, flipped])
    for image, faces in zip([frame, flipped], together):
        (alone,) = detector.detect([image])
        assert len(alone) == len(faces)
        np.testing.assert_allclose(alone.boxes, faces.boxes, atol=1e-3)
        np.testing.assert_allclose(alone.scores, faces.scores, atol=1e-5)
    assert detector.detect([]) == []
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 RGB frame"):
        detector.detect([frame.astype(np.float32)])


def test_retinaface_on_frame_tensors_matches_host_frames(astronaut):
    torch.manual_seed(0)
    detector = RetinaFaceDetector(DetectConfig(name="retinaface", score_threshold=0.5, detect_width=240), "cpu",
                                  net=build_retinaface("mobilenet0.25"))
    frames = [cv2.resize(astronaut, (400, 300)), cv2.resize(astronaut[::-1], (400, 300)), astronaut[:200, :200]]
    ref = detector.detect(frames)
    ours = detector.detect_tensors([torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1) for f in frames])
    assert [len(f) for f in ours] == [len(f) for f in ref] and len(ref[0]) > 0
    for a, b in zip(ours, ref):  # the same OpenCV area weights on both sides: the same input pixels
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
    with pytest.raises(ValueError, match=r"expected a \(3, H, W\) uint8 RGB frame tensor"):
        detector.detect_tensors([torch.from_numpy(frames[0])])


def test_retinaface_warms_each_batch_of_device_frames_on_cuda_only(monkeypatch):
    detector = RetinaFaceDetector(DetectConfig(name="retinaface"), "cpu", net=build_retinaface("mobilenet0.25"))
    seen = []
    monkeypatch.setattr(detector, "detect_tensors", lambda frames: seen.append((len(frames), *frames[0].shape)))
    detector.warm_up((64, 48), 3)
    assert seen == []  # a CPU: nothing to warm
    monkeypatch.setattr(detector, "device", torch.device("cuda"))
    monkeypatch.setattr(torch, "zeros", lambda shape, **kw: torch.empty(shape, dtype=kw["dtype"]))  # no CUDA here
    detector.warm_up((64, 48), 3)
    assert seen == [(n, 3, 48, 64) for n in (1, 2, 3)]
