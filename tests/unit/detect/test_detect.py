"""Face detection: Haar on synthetic clips and pasted faces, the YuNet code path on a hand-built ONNX net."""

from __future__ import annotations

import warnings

import av
import cv2
import numpy as np
import pytest
import torch

import fersr_stream.weights
from fersr_stream import detect
from fersr_stream.config import DetectConfig
from fersr_stream.detect import Detector
from fersr_stream.detect.base import to_faces
from fersr_stream.detect.follow import FollowingDetector, following
from fersr_stream.detect.haar import weight_to_score
from fersr_stream.errors import ConfigError, WeightsError
from fersr_stream.testing import synthetic
from fersr_stream.types import Faces

# Where the face sits inside the ``astronaut_face`` fixture (a 150 px crop): Haar finds it 95 px wide at (27, 26).
FACE_IN_CROP = np.array([27, 26, 122, 121]) / 150.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def face_truth(pasted: np.ndarray) -> np.ndarray:
    """(..., 4) face boxes from the pasted-crop rectangles the synthetic clip reports."""
    x1, y1 = pasted[..., 0:1], pasted[..., 1:2]
    side = pasted[..., 2:3] - x1
    return np.concatenate([x1, y1, x1, y1], axis=-1) + side * FACE_IN_CROP


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def paste(frame: np.ndarray, face: np.ndarray, x: int, y: int, side: int) -> np.ndarray:
    frame[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return frame


@pytest.fixture(scope="module")
def haar():
    return detect.create(DetectConfig(name="haar"))


# ---- factory -------------------------------------------------------------------------------------------------------

def test_unknown_detector_names_the_valid_ones():
    with pytest.raises(ConfigError, match="haar, yunet, retinaface, mtcnn") as info:
        detect.create(DetectConfig(name="dlib"))
    assert "\n" not in str(info.value)


def test_haar_without_cascades_is_a_one_line_error(monkeypatch):
    # OpenCV 5 has no CascadeClassifier (seen on a GPU machine whose image brings opencv-python-headless 5.0)
    monkeypatch.delattr(cv2, "CascadeClassifier")
    monkeypatch.setattr(cv2, "__version__", "5.0.0")
    with pytest.raises(WeightsError, match=r"OpenCV 5\.0\.0.*opencv-python>=4\.9,<5.*--detector yunet") as info:
        detect.create(DetectConfig(name="haar"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [{"detect_width": 0}, {"score_threshold": 1.5}, {"min_face": -1}])
def test_out_of_range_settings(bad):
    with pytest.raises(ConfigError):
        detect.create(DetectConfig(**bad))


# ---- Haar ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_faces, size, min_recall", [(1, (320, 240), 0.9), (2, (480, 240), 0.85)])
def test_haar_finds_clip_faces(haar, make_clip, n_faces, size, min_recall):
    path, pasted = make_clip(n_faces=n_faces, width=size[0], height=size[1], min_size=55, max_size=100)
    frames = decode(path)
    found = haar.detect(frames)
    assert len(found) == len(frames) == len(pasted)
    truth = face_truth(pasted.astype(np.float64))
    hits = false = 0
    for faces, boxes in zip(found, truth):
        assert faces.boxes.dtype == np.float32 and faces.scores.dtype == np.float32 and faces.landmarks is None
        assert ((faces.scores >= 0.6) & (faces.scores <= 1)).all()
        hits += sum(max((iou(b, t) for b in faces.boxes), default=0.0) > 0.5 for t in boxes)
        false += sum(max(iou(b, t) for t in boxes) <= 0.5 for b in faces.boxes)
    recall = hits / truth[..., 0].size
    assert recall >= min_recall, recall
    assert false == 0


def test_background_only_gives_no_faces(haar):
    found = haar.detect([synthetic.background(640, 480, 0.3)])
    assert len(found) == 1 and len(found[0]) == 0
    assert found[0].boxes.shape == (0, 4)


def test_faces_below_min_face_are_not_found(lfw_faces):
    frame = synthetic.background(640, 480, 0.0)
    for i, face in enumerate(lfw_faces[:48]):  # a grid of 25 px faces
        x, y = 20 + (i % 8) * 75, 20 + (i // 8) * 75
        frame[y:y + 25, x:x + 25] = face[:, :, None]
    full = dict(detect_width=640, scale_factor=1.1)  # 25 px faces would shrink below the cascade window
    tiny = detect.create(DetectConfig(min_face=40, **full)).detect([frame])[0]
    assert len(tiny) == 0
    # the same frame does hold findable faces: only min_face hides them
    assert len(detect.create(DetectConfig(min_face=20, score_threshold=0.0, **full)).detect([frame])[0]) > 0


def test_odd_sized_frame(haar, astronaut_face):
    frame = paste(synthetic.background(321, 243, 1.0), astronaut_face, 101, 61, 150)
    faces = haar.detect([frame])[0]
    assert len(faces) == 1
    assert iou(faces.boxes[0], face_truth(np.array([101, 61, 251, 211], float))) > 0.7
    assert (faces.boxes[:, [0, 2]] <= 321).all() and (faces.boxes[:, [1, 3]] <= 243).all()
    assert len(haar.detect([np.zeros((11, 13, 3), np.uint8)])[0]) == 0  # smaller than the cascade window


def test_downscaled_detection_maps_back(astronaut_face):
    frame = paste(synthetic.background(1280, 960, 0.5), astronaut_face, 820, 500, 300)
    small = detect.create(DetectConfig(detect_width=640)).detect([frame])[0]
    full = detect.create(DetectConfig(detect_width=1280)).detect([frame])[0]
    assert len(small) == len(full) == 1
    assert iou(small.boxes[0], full.boxes[0]) > 0.8
    assert iou(small.boxes[0], face_truth(np.array([820, 500, 1120, 800], float))) > 0.7


def test_batch_of_frames(haar, astronaut):
    empty = synthetic.background(320, 240, 0.0)
    found = haar.detect([astronaut, empty, astronaut])
    assert [len(f) for f in found] == [1, 0, 1]
    np.testing.assert_allclose(found[0].boxes[0], [177, 66, 272, 161], atol=3)


def test_score_threshold_drops_weak_false_positives(astronaut):
    from skimage import data

    coins = cv2.cvtColor(data.coins(), cv2.COLOR_GRAY2RGB)  # round coins fool the cascade a few times
    fine = dict(detect_width=640, scale_factor=1.1)  # the finer pyramid scores real faces higher
    everything = detect.create(DetectConfig(score_threshold=0.0, **fine)).detect([coins, astronaut])
    default = detect.create(DetectConfig(**fine)).detect([coins, astronaut])
    assert len(default[0]) < len(everything[0])
    assert len(default[1]) == 1 and default[1].scores[0] > 0.9


def test_weight_to_score_is_a_monotone_squash():
    scores = weight_to_score(np.array([-10.0, 0.0, 2.0, 6.0, 40.0]))
    assert scores.dtype == np.float32 and np.all(np.diff(scores) > 0)
    assert scores[0] >= 0 and scores[-1] <= 1 and scores[2] == pytest.approx(0.5)


def test_bad_frame_is_a_bug(haar):
    with pytest.raises(ValueError, match="uint8"):
        haar.detect([np.zeros((10, 10, 3), np.float32)])


def test_to_faces_clips_and_filters():
    boxes = np.array([[-10, -5, 30, 50], [90, 90, 130, 140], [10, 10, 14, 14], [200, 200, 260, 260]], np.float32)
    faces = to_faces(boxes / 2, np.array([0.9, 0.8, 0.7, 0.6]), None, 0.5, (100, 120, 3), min_face=10)
    # the tiny box is below min_face, the last lies outside the frame
    np.testing.assert_array_equal(faces.boxes, [[0, 0, 30, 50], [90, 90, 120, 100]])
    np.testing.assert_allclose(faces.scores, [0.9, 0.8])


# ---- following faces between whole-frame searches (Haar) -----------------------------------------------------------

class Spy:
    """Counts whole-frame and region searches of a real detector."""

    def __init__(self, detector):
        self.detector, self.whole, self.near = detector, 0, 0

    def detect(self, images):
        self.whole += len(images)
        return self.detector.detect(images)

    def detect_near(self, image, box):
        self.near += 1
        return self.detector.detect_near(image, box)


def test_detect_near_follows_a_moved_face(haar, astronaut_face):
    before = paste(synthetic.background(640, 480, 0.0), astronaut_face, 200, 150, 200)
    after = paste(synthetic.background(640, 480, 0.0), astronaut_face, 230, 140, 210)  # moved and grown
    known = haar.detect([before])[0]
    assert len(known) == 1
    found = haar.detect_near(after, known.boxes[0])
    assert len(found) == 1 and found.scores[0] >= 0.6
    assert iou(found.boxes[0], face_truth(np.array([230, 140, 440, 350], float))) > 0.7
    # the region is all it looks at: a face elsewhere in the frame is not found
    elsewhere = paste(synthetic.background(640, 480, 0.0), astronaut_face, 420, 260, 200)
    assert len(haar.detect_near(elsewhere, known.boxes[0])) == 0


def test_detect_near_edge_and_degenerate_boxes(haar, astronaut_face):
    frame = paste(synthetic.background(320, 240, 0.0), astronaut_face, 0, 0, 150)
    known = haar.detect([frame])[0]
    assert len(haar.detect_near(frame, known.boxes[0])) == 1  # the region is clipped at the frame's corner
    assert len(haar.detect_near(frame, np.array([400, 300, 420, 320], np.float32))) == 0  # outside the frame
    assert len(haar.detect_near(frame, np.array([10, 10, 12, 12], np.float32))) == 0  # below the window


def test_following_a_clip_matches_whole_frame_search_for_a_fraction_of_the_searches(haar, make_clip):
    path, pasted = make_clip(n_faces=2, width=480, height=240, n_frames=30, min_size=90, max_size=110)
    frames = decode(path)
    truth = face_truth(pasted.astype(np.float64))
    spy = Spy(haar)
    followed = FollowingDetector(spy, every=5).detect(frames)
    whole = haar.detect(frames)
    assert spy.whole == 6  # frames 0, 5, 10, 15, 20, 25

    def recall(found):
        return np.mean([max((iou(b, t) for b in f.boxes), default=0.0) > 0.5 for f, ts in zip(found, truth)
                        for t in ts])

    assert recall(whole) >= 0.9
    assert recall(followed) >= recall(whole) - 0.05
    for faces, boxes in zip(followed, truth):  # no false positives, no face twice
        assert all(max(iou(b, t) for t in boxes) > 0.5 for b in faces.boxes)
        assert len(faces) <= 2


def test_a_face_that_enters_is_found_at_the_next_whole_frame_search(haar, astronaut_face):
    empty = synthetic.background(320, 240, 0.0)
    frames = [empty.copy() for _ in range(3)] + [paste(empty.copy(), astronaut_face, 80, 40, 150) for _ in range(5)]
    found = FollowingDetector(haar, every=4).detect(frames)
    assert [len(f) for f in found] == [0, 0, 0, 0, 1, 1, 1, 1]


class Flaky:
    """A detector whose region search misses on chosen calls."""

    def __init__(self, box, misses):
        self.box, self.misses, self.calls = np.asarray(box, np.float32), set(misses), 0

    def detect(self, images):
        return [Faces(self.box[None], np.array([0.9], np.float32)) for _ in images]

    def detect_near(self, image, box):
        self.calls += 1
        if self.calls in self.misses:
            return Faces.empty()
        return Faces(box[None] + 1, np.array([0.8], np.float32))  # the face drifts one pixel a frame


def test_a_missed_face_is_searched_for_again_where_it_was():
    flaky = Flaky([10, 10, 60, 60], misses={2})
    found = FollowingDetector(flaky, every=10).detect([np.zeros((100, 100, 3), np.uint8)] * 4)
    assert [len(f) for f in found] == [1, 1, 0, 1]
    np.testing.assert_array_equal(found[3].boxes, [[12, 12, 62, 62]])  # from the last place it was seen


def test_a_face_the_whole_frame_search_misses_is_still_followed_then_given_up():
    class WholeMisses(Flaky):
        def detect(self, images):  # the whole-frame search finds the face only the first time
            self.wholes = getattr(self, "wholes", 0) + 1
            return super().detect(images) if self.wholes == 1 else [Faces.empty() for _ in images]

    followed = WholeMisses([10, 10, 60, 60], misses=())
    found = FollowingDetector(followed, every=3).detect([np.zeros((100, 100, 3), np.uint8)] * 5)
    assert [len(f) for f in found] == [1, 1, 1, 1, 1]  # frame 3 is a whole-frame search that missed it

    lost = WholeMisses([10, 10, 60, 60], misses=range(1, 100))  # the region search never finds it either
    found = FollowingDetector(lost, every=3).detect([np.zeros((100, 100, 3), np.uint8)] * 8)
    assert [len(f) for f in found] == [1, 0, 0, 0, 0, 0, 0, 0]
    assert lost.calls == 3  # searched for at its last place for 3 frames, then given up


def test_two_regions_that_find_one_face_report_it_once():
    class Twice(Flaky):
        def detect(self, images):  # two overlapping boxes on one face, as a whole-frame search never gives
            return [Faces(np.array([[10, 10, 60, 60], [12, 11, 61, 62]], np.float32), np.array([0.9, 0.7], np.float32))]

    found = FollowingDetector(Twice([0, 0, 1, 1], misses=()), every=10).detect([np.zeros((100, 100, 3), np.uint8)] * 2)
    assert len(found[1]) == 1 and found[1].scores[0] == pytest.approx(0.8)


def test_following_only_where_it_applies(haar):
    assert isinstance(following(haar, 10, stills=False), FollowingDetector)
    assert following(haar, 10, stills=True) is haar  # unrelated pictures: every one searched whole
    assert following(haar, 1, stills=False) is haar
    class Whole(Detector):  # a detector that cannot search near a face
        def detect(self, images):
            return []

    no_regions = Whole()
    assert following(no_regions, 10, stills=False) is no_regions


def test_full_every_must_be_positive():
    with pytest.raises(ConfigError, match="full_every"):
        detect.create(DetectConfig(full_every=0))


# ---- YuNet ---------------------------------------------------------------------------------------------------------

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


def test_onnx_that_is_not_yunet(tmp_path):
    path = tmp_path / "conv.onnx"
    export(torch.nn.Conv2d(3, 2, 3, padding=1), path, ["out"])
    with pytest.raises(WeightsError, match="not a YuNet") as info:
        detect.create(DetectConfig(name="yunet", weights=str(path)))
    assert "\n" not in str(info.value)
