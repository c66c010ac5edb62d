"""Which faces are restored, and which reuse their track's last restoration (pipeline/reuse.py)."""

import numpy as np
import pytest
import torch

from fersr_stream.crops import DeviceCrops, HostCrops
from fersr_stream.pipeline.reuse import RestorePolicy
from fersr_stream.types import Faces, Frame


class CountingEnhancer:
    """Adds 1 to every pixel so restored crops are recognisable; counts faces restored."""

    def __init__(self):
        self.calls, self.faces = 0, 0

    def __call__(self, crops):
        self.calls += 1
        self.faces += len(crops)
        return crops.like(crops.tensor(torch.device("cpu")) + 1)


def frame(index, boxes, ids, value=10, kind=HostCrops):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    images = np.full((len(b), 8, 8, 3), value, np.uint8)
    crops = HostCrops(images) if kind is HostCrops else DeviceCrops(torch.from_numpy(images).permute(0, 3, 1, 2))
    faces = Faces(b, np.ones(len(b), np.float32), crops=crops, track_ids=np.array(ids, np.int64))
    return Frame(index, np.zeros((100, 100, 3), np.uint8), faces=faces)


def pixels(frame) -> np.ndarray:
    return frame.faces.crops.host()


@pytest.mark.parametrize("kind", [HostCrops, DeviceCrops])
def test_every_face_restored_without_reuse_in_one_batched_call(kind):
    enh = CountingEnhancer()
    frames = [frame(i, [[0, 0, 20, 20], [50, 50, 70, 70]], [0, 1], kind=kind) for i in range(3)]
    out, made, reused = RestorePolicy().apply(frames, enh)
    assert (made, reused, enh.calls, enh.faces) == (6, 0, 1, 6)
    assert all(f.faces.restored.all() and (pixels(f) == 11).all() and type(f.faces.crops) is kind for f in out)


@pytest.mark.parametrize("kind", [HostCrops, DeviceCrops])
def test_reuse_within_and_across_batches_until_k_or_movement(kind):
    enh, policy = CountingEnhancer(), RestorePolicy(reuse_every=3, reuse_iou=0.7)
    box = [0, 0, 20, 20]
    _, made, reused = policy.apply([frame(0, [box], [0], kind=kind), frame(1, [box], [0], kind=kind)], enh)
    assert (made, reused) == (1, 1)
    out, made, reused = policy.apply([frame(2, [box], [0], value=50, kind=kind), frame(3, [box], [0], kind=kind)],
                                     enh)
    assert (made, reused) == (1, 1)  # frame 3 is 3 frames after the restoration at 0: restore again
    assert (pixels(out[0]) == 11).all()  # reused crop comes from frame 0, not the new pixels
    _, made, reused = policy.apply([frame(4, [[10, 10, 30, 30]], [0], kind=kind)], enh)  # moved: IoU < 0.7
    assert (made, reused) == (1, 0)


def test_below_threshold_keeps_large_faces_unrestored():
    enh = CountingEnhancer()
    out, made, _ = RestorePolicy(below=30).apply([frame(0, [[0, 0, 20, 20], [0, 0, 40, 40]], [0, 1])], enh)
    assert made == 1
    assert out[0].faces.restored.tolist() == [True, False]
    assert (pixels(out[0])[1] == 10).all()


def test_frames_without_faces():
    enh = CountingEnhancer()
    out, made, reused = RestorePolicy().apply([Frame(0, np.zeros((4, 4, 3), np.uint8))], enh)
    assert (made, reused, enh.calls) == (0, 0, 0) and len(out[0].faces) == 0


def test_restorers_start_from_the_low_resolution_image_when_there_is_one():
    seen = []

    def enhance(crops):
        seen.append(crops.images.shape)
        return HostCrops(np.full((len(crops), 16, 16, 3), 200, np.uint8))  # restorers answer at their own side

    f = frame(0, [[0, 0, 20, 20]], [0])
    images = f.faces.crops.images
    f = f.replace(faces=f.faces.replace(crops=HostCrops(images, np.zeros((1, 2, 2, 3), np.uint8))))
    out, made, _ = RestorePolicy().apply([f], enhance)
    assert seen == [(1, 2, 2, 3)] and made == 1
    assert (pixels(out[0]) == 200).all() and pixels(out[0]).shape == (1, 8, 8, 3)  # back at the frame's side
