"""MTCNN: the shipped weights, the detector's paths (host, tensor, batched, refine), bad weights files, the
conversion from facenet-pytorch's wheel and parity with facenet-pytorch's own MTCNN on real photos.

The conversion test runs when facenet-pytorch's weights can be found, else it is skipped:
    pip download facenet-pytorch==2.6.0 --no-deps -d /tmp/facenetdl   (or set FERSR_FACENET_WHEEL to the wheel)
The parity test needs facenet-pytorch importable: pip install --no-deps facenet-pytorch==2.6.0
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file

from fersr_stream import detect
from fersr_stream.config import DetectConfig
from fersr_stream.detect import area
from fersr_stream.detect.mtcnn import MTCNNDetector, _min_overlap_nms, pyramid
from fersr_stream.detect.mtcnn_nets import MTCNN, SHIPPED_WEIGHTS, load_mtcnn
from fersr_stream.errors import WeightsError

CPU = torch.device("cpu")
FACENET_WHEEL = Path("/tmp/facenetdl/facenet_pytorch-2.6.0-py3-none-any.whl")
ASTRONAUT_BOX = np.array([181.1, 62.2, 267.7, 172.1], np.float32)  # what facenet-pytorch finds (min_face 20)


def config(**changes) -> DetectConfig:
    return DetectConfig(**{"name": "mtcnn", "detect_width": 4096, "min_face": 20, "score_threshold": 0.7,
                           **changes})


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector(config(), CPU)


@pytest.fixture(scope="module")
def lfw_canvases(lfw_faces) -> list[np.ndarray]:
    """Two (420, 700, 3) pictures, each with four 25 px LFW faces enlarged to 100-160 px on a plain grey."""
    canvases = []
    for ids, sides in (([0, 3, 7, 12], [100, 120, 140, 160]), ([20, 31, 45, 58], [160, 140, 120, 100])):
        canvas = np.full((420, 700, 3), 128, np.uint8)
        x = 20
        for i, side in zip(ids, sides):
            y = 20 + (i * 37) % (400 - side)
            canvas[y:y + side, x:x + side] = cv2.resize(lfw_faces[i], (side, side), interpolation=cv2.INTER_CUBIC)[
                ..., None]
            x += side + 20
        canvases.append(canvas)
    return canvases


def matched(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each box of ``a``, the index of the nearest box of ``b`` (by largest corner distance)."""
    return np.abs(a[:, None] - b[None]).max(axis=2).argmin(axis=1)


# --- networks, weights --------------------------------------------------------------------------------------------

def test_shipped_file_holds_the_three_nets_with_provenance():
    state = load_file(str(SHIPPED_WEIGHTS))
    want = MTCNN().state_dict()
    assert state.keys() == want.keys() and all(state[k].shape == want[k].shape for k in want)
    assert {k.split(".")[0] for k in state} == {"pnet", "rnet", "onet"}
    with safe_open(str(SHIPPED_WEIGHTS), "pt") as f:
        meta = f.metadata()
    assert meta["source"] == "facenet_pytorch-2.6.0-py3-none-any.whl" and meta["licence"] == "MIT"
    assert all(len(meta[f"{net}_sha256"]) == 64 for net in ("pnet", "rnet", "onet", "source"))


def test_network_output_shapes():
    net = MTCNN().eval()
    with torch.inference_mode():
        offsets, probs = net.pnet(torch.zeros(2, 3, 12, 18))
        assert offsets.shape == (2, 1, 4, 4) and probs.shape == (2, 1, 4)  # 12 px windows, 2 px apart
        offsets, probs = net.rnet(torch.zeros(5, 3, 24, 24))
        assert offsets.shape == (5, 4) and probs.shape == (5,)
        offsets, points, probs = net.onet(torch.zeros(5, 3, 48, 48))
        assert offsets.shape == (5, 4) and points.shape == (5, 10) and ((probs >= 0) & (probs <= 1)).all()


def test_pyramid_spans_min_face_to_the_whole_frame():
    levels = pyramid(270, 480, 20.0)
    assert levels[0] == (0.6, (163, 289))  # 12 / 20; the reference's size: int(270 * 0.6 + 1)
    assert min(levels[-1][1]) >= 12 and 270 * levels[-1][0] * 0.709 < 12
    assert pyramid(11, 400, 12.0) == []


def test_min_overlap_merge_drops_a_box_inside_a_better_one():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 50, 50], [200, 200, 250, 250]], np.float32)
    keep = _min_overlap_nms(boxes, np.array([0.9, 0.95, 0.7], np.float32), 0.7)
    assert keep.tolist() == [1, 2]  # IoU 0.17 would keep the outer box; it is mostly the inner one


# --- area sampling ------------------------------------------------------------------------------------------------

def test_area_sampling_is_torchs_area_interpolation():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    as_torch = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    table = area.host_integral(frames)
    assert torch.equal(table, area.integral(torch.from_numpy(frames)))
    for size in ((20, 30), (37, 53), (50, 71), (13, 60)):  # shrink, same, enlarge, mixed
        torch.testing.assert_close(area.resize(table, size), F.interpolate(as_torch, size=size, mode="area"))
    corners = torch.tensor([[0, 0, 53, 37], [5, 7, 25, 19], [40, 30, 47, 37]])
    owner = torch.tensor([1, 0, 1])
    got = area.crops(table, corners, owner, 24, gain=2.0, bias=-1.0)
    assert torch.equal(area.host_crops(list(frames), corners, owner, 24, gain=2.0, bias=-1.0), got)  # bit for bit
    for crop, (x0, y0, x1, y1), k in zip(got, corners.tolist(), owner.tolist()):
        want = F.interpolate(as_torch[k:k + 1, :, y0:y1, x0:x1], size=(24, 24), mode="area")[0] * 2 - 1
        torch.testing.assert_close(crop, want)


# --- detection ----------------------------------------------------------------------------------------------------

def test_finds_the_astronaut_with_landmarks_in_order(detector, astronaut):
    (faces,) = detector.detect([astronaut])
    assert len(faces) == 1
    assert faces.boxes.dtype == faces.scores.dtype == faces.landmarks.dtype == np.float32
    np.testing.assert_allclose(faces.boxes[0], ASTRONAUT_BOX, atol=1.0)
    assert 0.99 < faces.scores[0] <= 1.0
    (right_eye, left_eye, nose, mouth_right, mouth_left) = faces.landmarks[0]
    x1, y1, x2, y2 = faces.boxes[0]
    assert ((faces.landmarks[0] > [x1, y1]) & (faces.landmarks[0] < [x2, y2])).all()
    assert right_eye[0] < nose[0] < left_eye[0] and mouth_right[0] < mouth_left[0]  # the subject's right first
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_right[1], mouth_left[1])


def test_nothing_on_blank_or_textured_frames(detector):
    from skimage import data

    found = detector.detect([np.full((240, 320, 3), 90, np.uint8), data.brick()[..., None].repeat(3, 2),
                             data.coffee()])
    assert [len(f) for f in found] == [0, 0, 0]
    assert found[0].boxes.shape == (0, 4) and found[0].landmarks.shape == (0, 5, 2)


def test_detect_width_and_min_face_are_in_source_pixels(astronaut):
    doubled = astronaut.repeat(2, axis=0).repeat(2, axis=1)  # shrinks back to the astronaut exactly
    (faces,) = MTCNNDetector(config(detect_width=512, min_face=40), CPU).detect([doubled])
    (small,) = MTCNNDetector(config(), CPU).detect([astronaut])
    np.testing.assert_allclose(faces.boxes, small.boxes * 2, atol=1e-3)
    np.testing.assert_allclose(faces.landmarks, small.landmarks * 2, atol=1e-3)
    (none,) = MTCNNDetector(config(min_face=200), CPU).detect([astronaut])  # the face is ~87 px wide
    assert len(none) == 0


def test_batched_equals_one_by_one(detector, astronaut, lfw_canvases):
    frames = [astronaut, np.ascontiguousarray(astronaut[:, ::-1]), np.zeros((512, 512, 3), np.uint8),
              np.roll(astronaut, (40, -60), axis=(0, 1)), lfw_canvases[0]]  # two sizes: two batches
    together = detector.detect(frames)
    for frame, faces in zip(frames, together):
        (alone,) = detector.detect([frame])
        assert len(faces) == len(alone)
        np.testing.assert_allclose(faces.boxes, alone.boxes, atol=1e-3)
        np.testing.assert_allclose(faces.landmarks, alone.landmarks, atol=1e-3)
    assert [len(f) for f in together] == [1, 1, 0, 1, 4]


def test_tensor_path_equals_host_path(astronaut, lfw_canvases):
    shrinking = MTCNNDetector(config(detect_width=480), CPU)
    frames = [cv2.resize(astronaut, (800, 800), interpolation=cv2.INTER_LINEAR), lfw_canvases[1]]
    host = shrinking.detect(frames)
    tensors = shrinking.detect_tensors([torch.from_numpy(f).permute(2, 0, 1) for f in frames])
    assert [len(f) for f in host] == [len(f) for f in tensors] == [1, 4]
    for a, b in zip(host, tensors):
        order = matched(a.boxes, b.boxes)
        np.testing.assert_allclose(a.boxes, b.boxes[order], atol=1.0)
        np.testing.assert_allclose(a.landmarks, b.landmarks[order], atol=1.0)


def test_bad_frames_are_bugs(detector):
    with pytest.raises(ValueError, match="uint8"):
        detector.detect([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError, match=r"\(3, H, W\) uint8"):
        detector.detect_tensors([torch.zeros(10, 10, 3, dtype=torch.uint8)])


# --- refine -------------------------------------------------------------------------------------------------------

def test_refine_follows_a_moved_face_and_rejects_background(detector, astronaut):
    (found,) = detector.detect([astronaut])
    box = found.boxes[0]
    side = box[2] - box[0]
    moved = box + np.array([0.12, -0.08, 0.12, -0.08], np.float32) * side  # where it was, a frame ago
    grown = moved + np.array([-1, -1, 1, 1], np.float32) * 0.1 * side
    background = np.array([[10, 300, 110, 400]], np.float32)  # the lower left: suit and shuttle, no face
    blank = np.full((200, 300, 3), 128, np.uint8)
    refined, none, empty, on_blank = detector.refine(
        [astronaut, astronaut, astronaut, blank],
        [np.stack([moved, grown]), background, np.zeros((0, 4), np.float32), np.array([[50, 50, 150, 150]])])
    assert len(refined) == 1  # both boxes found the one face
    np.testing.assert_allclose(refined.boxes[0], box, atol=0.05 * side)
    np.testing.assert_allclose(refined.landmarks[0], found.landmarks[0], atol=0.03 * side)
    assert refined.scores[0] > 0.99
    assert len(none) == len(empty) == len(on_blank) == 0
    assert none.landmarks.shape == empty.landmarks.shape == (0, 5, 2)  # as detect gives them

    tensors = detector.refine_tensors([torch.from_numpy(astronaut).permute(2, 0, 1)], [np.stack([moved, grown])])
    np.testing.assert_allclose(tensors[0].boxes, refined.boxes, atol=1e-3)


def test_refine_on_detected_boxes_agrees_with_detect(detector, lfw_canvases):
    found = detector.detect(lfw_canvases)
    refined = detector.refine(lfw_canvases, [f.boxes for f in found])
    for a, b in zip(found, refined):
        assert len(a) == len(b) == 4
        order = matched(a.boxes, b.boxes)
        np.testing.assert_allclose(a.boxes, b.boxes[order], atol=0.06 * (a.widths.max()))


def test_refine_boxes_over_the_frame_edge(detector, astronaut):
    (found,) = detector.detect([astronaut])
    cut = np.ascontiguousarray(astronaut[:, 200:])  # the face now leaves the frame on the left
    box = found.boxes[0] - np.array([200, 0, 200, 0], np.float32)
    (faces,) = detector.refine([cut], [box[None]])
    (whole,) = detector.detect([cut])
    assert len(faces) == len(whole) == 1 and faces.boxes[0, 0] == 0  # clipped to the frame
    np.testing.assert_allclose(faces.boxes, whole.boxes, atol=3.0)


# --- searching parts of a frame ----------------------------------------------------------------------------------

def test_a_search_within_parts_finds_what_the_whole_frame_search_finds_there(lfw_canvases):
    shrinking = MTCNNDetector(config(detect_width=480), CPU)  # the parts are shrunk as the whole frame is
    canvas = lfw_canvases[0]
    (whole,) = shrinking.detect([canvas])
    assert len(whole) == 4
    everything = np.array([[0, 0, canvas.shape[1], canvas.shape[0]]], np.float32)
    (same,) = shrinking.detect_within([canvas], [everything])
    np.testing.assert_array_equal(same.boxes, whole.boxes)  # the whole frame as a part: the same search
    around = np.concatenate([whole.boxes[:2, :2] - 30, whole.boxes[:2, 2:] + 30], axis=1)  # the first two faces
    background = np.array([[0, 380, 200, 420]], np.float32)
    (two,) = shrinking.detect_within([canvas], [np.concatenate([around, background])])
    assert len(two) == 2
    order = matched(whole.boxes[:2], two.boxes)
    np.testing.assert_allclose(two.boxes[order], whole.boxes[:2], atol=0.05 * whole.widths.max())
    np.testing.assert_allclose(two.landmarks[order], whole.landmarks[:2], atol=0.05 * whole.widths.max())
    (on_device,) = shrinking.detect_within_tensors([torch.from_numpy(canvas).permute(2, 0, 1)], [around])
    np.testing.assert_allclose(on_device.boxes, two.boxes, atol=1.0)
    nothing, too_small = shrinking.detect_within([canvas, canvas], [np.zeros((0, 4)), np.array([[0, 0, 10, 10]])])
    assert len(nothing) == len(too_small) == 0 and nothing.landmarks.shape == (0, 5, 2)


# --- bad weights --------------------------------------------------------------------------------------------------

def test_a_torch_file_of_the_same_layout_loads(tmp_path):
    path = tmp_path / "mtcnn.pt"
    torch.save(load_file(str(SHIPPED_WEIGHTS)), path)
    net = load_mtcnn(path)
    for key, tensor in load_file(str(SHIPPED_WEIGHTS)).items():
        assert torch.equal(net.state_dict()[key], tensor)


def test_weights_of_another_network_or_corrupt_are_one_line_errors(tmp_path):
    from fersr_stream.detect.retinaface import build_retinaface

    retina = tmp_path / "detection_mobilenet0.25_Final.pth"
    torch.save(build_retinaface("mobilenet0_25").state_dict(), retina)
    pnet_only = tmp_path / "pnet.pt"
    torch.save(MTCNN().pnet.state_dict(), pnet_only)
    garbage = tmp_path / "random.safetensors"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(SHIPPED_WEIGHTS.read_bytes()[:100_000])
    reshaped = tmp_path / "reshaped.safetensors"
    state = load_file(str(SHIPPED_WEIGHTS))
    state["onet.dense5.weight"] = state["onet.dense5.weight"][:, :576].contiguous()
    from safetensors.torch import save_file

    save_file(state, str(reshaped))
    for path, message in ((retina, "is not MTCNN weights: no pnet./rnet./onet. keys"),
                          (pnet_only, "convert the three with python -m fersr_stream.detect.convert_mtcnn"),
                          (garbage, "cannot read"), (truncated, "cannot read"),
                          (reshaped, "onet.dense5.weight has shape (256, 576), expected (256, 1152)"),
                          (tmp_path / "absent.safetensors", "MTCNN weights not found")):
        with pytest.raises(WeightsError, match=re.escape(message)) as error:
            MTCNNDetector(config(weights=str(path)), CPU)
        assert "\n" not in str(error.value)


def test_the_stream_cli_turns_bad_weights_into_exit_2(make_clip, tmp_path):
    from fersr_stream.cli.stream import stream

    clip, _ = make_clip(n_frames=2)
    garbage = tmp_path / "mtcnn.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    result = CliRunner().invoke(stream, ["--source", str(clip), "--jsonl", str(tmp_path / "out.jsonl"),
                                         "--detector", "mtcnn", "--detector-weights", str(garbage)])
    assert result.exit_code == 2, result.output
    assert "cannot read" in result.output and len(result.output.strip().splitlines()) == 1


def test_the_factory_builds_it_and_fetch_downloads_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("FERSR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FERSR_OFFLINE", "1")
    for weights in (None, str(SHIPPED_WEIGHTS)):
        detect.fetch(DetectConfig(name="mtcnn", weights=weights))
        assert isinstance(detect.create(DetectConfig(name="mtcnn", weights=weights), "cpu"), MTCNNDetector)
    assert not (tmp_path / "home").exists()


# --- conversion ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def facenet_source() -> Path:
    """$FERSR_FACENET_WHEEL, else the wheel in /tmp/facenetdl, else an installed facenet_pytorch's data folder."""
    given = os.environ.get("FERSR_FACENET_WHEEL")
    if given or FACENET_WHEEL.is_file():
        return Path(given or FACENET_WHEEL)
    try:
        import facenet_pytorch
    except ImportError:
        pytest.skip(f"facenet-pytorch weights absent ({FACENET_WHEEL}); run `pip download facenet-pytorch==2.6.0 "
                    f"--no-deps -d /tmp/facenetdl` or set FERSR_FACENET_WHEEL")
    return Path(facenet_pytorch.__file__).parent / "data"


def test_conversion_reproduces_the_shipped_file(facenet_source, tmp_path):
    from fersr_stream.detect import convert_mtcnn

    out = tmp_path / "mtcnn.safetensors"
    result = CliRunner().invoke(convert_mtcnn.main, [str(facenet_source), str(out)])
    assert result.exit_code == 0, result.output
    want, got = load_file(str(SHIPPED_WEIGHTS)), load_file(str(out))
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    with safe_open(str(SHIPPED_WEIGHTS), "pt") as f, safe_open(str(out), "pt") as g:
        shipped, converted = f.metadata(), g.metadata()
    for net in ("pnet", "rnet", "onet"):
        assert converted[f"{net}_sha256"] == shipped[f"{net}_sha256"], net


def test_conversion_refuses_other_sources(tmp_path):
    from fersr_stream.detect import convert_mtcnn

    not_facenet = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(not_facenet, "w") as wheel:
        wheel.writestr("other/__init__.py", "")
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    nets = MTCNN()
    torch.save(nets.rnet.state_dict(), swapped / "pnet.pt")  # R-Net's weights under P-Net's name
    torch.save(nets.rnet.state_dict(), swapped / "rnet.pt")
    torch.save(nets.onet.state_dict(), swapped / "onet.pt")
    for source, message in ((not_facenet, "has no facenet_pytorch/data/pnet.pt"),
                            (swapped, "pnet.pt is not facenet-pytorch's pnet: keys differ"),
                            (tmp_path / "absent.whl", "MTCNN source not found")):
        result = CliRunner().invoke(convert_mtcnn.main, [str(source), str(tmp_path / "out.safetensors")])
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.safetensors").exists()


# --- parity with facenet-pytorch ----------------------------------------------------------------------------------

def one_thread(function, *args, **kwargs):
    """``function(*args, **kwargs)`` on one torch thread: the reference's many small per-candidate operations run
    several times slower with two threads on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return function(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


def real_photos(astronaut, lfw_canvases) -> dict[str, np.ndarray]:
    """Photos with faces that ship with the test dependencies (scikit-image, matplotlib)."""
    import matplotlib.cbook
    from skimage import data

    hopper = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return {"astronaut": astronaut, "camera": data.camera()[..., None].repeat(3, 2),
            "grace_hopper": cv2.cvtColor(hopper, cv2.COLOR_BGR2RGB), "lfw_a": lfw_canvases[0],
            "lfw_b": lfw_canvases[1]}


def test_parity_with_facenet_pytorch(detector, astronaut, lfw_canvases):
    facenet = pytest.importorskip("facenet_pytorch", reason="facenet-pytorch is not installed: "
                                  "pip install --no-deps facenet-pytorch==2.6.0")
    reference = facenet.MTCNN(min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709, keep_all=True,
                              select_largest=False, device=CPU)
    for name, photo in real_photos(astronaut, lfw_canvases).items():
        boxes, probs, points = one_thread(reference.detect, photo, landmarks=True)
        (faces,) = detector.detect([photo])
        assert boxes is not None and len(faces) == len(boxes), name
        h, w = photo.shape[:2]
        boxes = np.asarray(boxes, np.float32).clip(0, [w, h, w, h])  # ours are clipped to the frame
        order = matched(boxes, faces.boxes)
        np.testing.assert_allclose(faces.boxes[order], boxes, atol=1.0, err_msg=name)
        np.testing.assert_allclose(faces.landmarks[order], np.asarray(points, np.float32), atol=1.0, err_msg=name)
        np.testing.assert_allclose(faces.scores[order], np.asarray(probs, np.float32), atol=1e-3, err_msg=name)
