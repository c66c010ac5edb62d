"""Alignment: template fit, box crops, paste-back, and the torch (CUDA) path checked against OpenCV on CPU."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import pytest
import torch

from fersr_stream import align
from fersr_stream.types import Faces


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def faces_with(landmarks: np.ndarray | None, boxes: np.ndarray) -> Faces:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    lms = None if landmarks is None else np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
    return Faces(boxes, np.ones(len(boxes), np.float32), lms)


class Cut(NamedTuple):
    crops: np.ndarray
    affines: np.ndarray


def cut(image: np.ndarray, faces: Faces, size: int = 512, margin: float = 0.25) -> Cut:
    """The crops the stream cuts for ``faces``: their affines (landmarks, else boxes) applied with OpenCV."""
    affines = align.face_affines(faces, size, margin)
    return Cut(align.crop(image, affines, size), affines)


def similarity(angle_deg: float, scale: float, shift) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), shift[0]],
                     [scale * np.sin(a), scale * np.cos(a), shift[1]]])


def test_template_landmarks_give_identity():
    affine = align.estimate_affines(align.template(512)[None], 512)[0]
    np.testing.assert_allclose(affine, np.eye(2, 3), atol=1e-4)
    small = align.estimate_affines(align.template(256)[None], 256)[0]
    np.testing.assert_allclose(small, np.eye(2, 3), atol=1e-4)


def test_template_order_is_subject_right_eye_first():
    t = align.template(512)
    assert t[0, 0] < t[1, 0]  # subject's right eye is on the image's left
    assert t[3, 0] < t[4, 0] and t[2, 1] < t[3, 1]


def test_estimate_recovers_known_similarity():
    # landmarks = inverse of a known frame->crop similarity applied to the template
    truth = np.stack([similarity(12, 0.4, (30, -20)), similarity(-40, 2.5, (-100, 60))])
    lms = []
    for m in truth:
        inv = cv2.invertAffineTransform(m)
        lms.append(align.template(512) @ inv[:, :2].T + inv[:, 2])
    got = align.estimate_affines(np.stack(lms), 512)
    np.testing.assert_allclose(got, truth, atol=1e-3)


def test_mirrored_landmarks_do_not_reflect():
    mirrored = align.template(512).copy()
    mirrored[:, 0] = 511 - mirrored[:, 0]
    affine = align.estimate_affines(mirrored[None], 512)[0]
    assert np.linalg.det(affine[:, :2]) > 0


def test_degenerate_landmarks_fall_back_to_box():
    faces = faces_with(np.full((5, 2), 50.0), [[20, 20, 80, 80]])
    assert np.isnan(align.estimate_affines(faces.landmarks, 128)).all()
    np.testing.assert_allclose(align.face_affines(faces, 128, 0.25), align.box_affines(faces.boxes, 128, 0.25))


def test_box_crop_is_square_and_centred():
    image = np.zeros((200, 300, 3), np.uint8)
    image[60:140, 100:180] = 255  # an 80x80 white block: the "face"
    faces = faces_with(None, [[100, 60, 180, 140]])
    out = cut(image, faces, size=64, margin=0.5)  # side 160 -> scale 0.4, block is 32 px in the middle
    assert out.crops.shape == (1, 64, 64, 3) and out.affines.shape == (1, 2, 3)
    np.testing.assert_allclose(out.affines[0, :, :2], 0.4 * np.eye(2), atol=1e-6)
    # pixel centres are integers: the box centre (139.5, 99.5) lands on the crop centre (31.5, 31.5)
    np.testing.assert_allclose(out.affines[0] @ [139.5, 99.5, 1.0], [31.5, 31.5], atol=1e-5)
    white = out.crops[0, :, :, 0] > 127
    ys, xs = np.nonzero(white)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (16, 47, 16, 47)
    # a box that is not square gives a square crop from its longer side
    tall = align.box_affines(np.array([[0, 0, 40, 100]], np.float32), 100, 0.0)[0]
    assert tall[0, 0] == pytest.approx(1.0) and tall[0, 2] == pytest.approx(30.0)


def test_box_crop_outside_frame_is_grey():
    image = np.zeros((100, 100, 3), np.uint8)
    out = cut(image, faces_with(None, [[0, 0, 40, 40]]), size=32, margin=0.5)
    assert tuple(out.crops[0, 0, 0]) == align.BORDER_RGB


def test_zero_faces(astronaut):
    out = cut(astronaut, Faces.empty(), size=128)
    assert out.crops.shape == (0, 128, 128, 3) and out.affines.shape == (0, 2, 3)
    assert np.array_equal(align.paste_back(astronaut, out.crops, out.affines), astronaut)


def test_landmark_crop_puts_landmarks_on_template(astronaut):
    # landmarks from a known similarity: the crop must put them where the template says
    m = similarity(8, 0.35, (-20, 10))
    inv = cv2.invertAffineTransform(m)
    lms = align.template(512) @ inv[:, :2].T + inv[:, 2]
    faces = faces_with(lms, [[150, 40, 300, 190]])
    out = cut(astronaut, faces, size=512)
    mapped = lms @ out.affines[0, :, :2].T + out.affines[0, :, 2]
    np.testing.assert_allclose(mapped, align.template(512), atol=1e-2)


def test_crop_then_paste_back_reproduces_frame(astronaut):
    faces = faces_with(None, [[177, 67, 270, 160], [20, 300, 120, 400]])
    out = cut(astronaut, faces, size=256, margin=0.25)
    pasted = align.paste_back(astronaut, out.crops, out.affines, feather=0.1)
    assert pasted is not astronaut and pasted.shape == astronaut.shape
    x1, y1, x2, y2 = 177, 67, 270, 160
    assert psnr(pasted[y1:y2, x1:x2], astronaut[y1:y2, x1:x2]) > 35
    assert psnr(pasted, astronaut) > 35


def test_paste_back_changes_only_the_face_region(astronaut):
    faces = faces_with(None, [[200, 200, 300, 300]])
    out = cut(astronaut, faces, size=128, margin=0.0)
    black = np.zeros_like(out.crops)
    pasted = align.paste_back(astronaut, black, out.affines, feather=0.2)
    inner = pasted[225:275, 225:275]
    assert inner.max() <= 2  # the eroded, feathered mask is fully on in the middle
    outside = np.ones(astronaut.shape[:2], bool)
    outside[199:302, 199:302] = False
    assert np.array_equal(pasted[outside], astronaut[outside])
    # the edge is soft: some pixels near the box border are neither the frame nor black
    edge = pasted[200:300, 201].astype(int)
    assert np.any((edge > 2) & (np.abs(edge - astronaut[200:300, 201]) > 2))


def test_paste_back_of_resized_crops(astronaut):
    faces = faces_with(None, [[177, 67, 270, 160]])
    out = cut(astronaut, faces, size=128, margin=0.25)
    bigger = np.stack([cv2.resize(c, (256, 256), interpolation=cv2.INTER_CUBIC) for c in out.crops])
    pasted = align.paste_back(astronaut, bigger, out.affines, crop_size=128)
    assert psnr(pasted[67:160, 177:270], astronaut[67:160, 177:270]) > 30


def test_paste_back_at_frame_edge(astronaut):
    faces = faces_with(None, [[-30, -30, 60, 60]])
    out = cut(astronaut, faces, size=64)
    pasted = align.paste_back(astronaut, out.crops, out.affines)
    assert pasted.shape == astronaut.shape
    assert psnr(pasted[:60, :60], astronaut[:60, :60]) > 25


def test_a_face_past_the_frame_edge_is_pasted_up_to_that_edge():
    frame = np.zeros((200, 300, 3), np.uint8)
    out = cut(frame, faces_with(None, [[20, 50, 120, 150]]), size=128, margin=0.25)  # crop: x -5..145
    pasted = align.paste_back(frame, np.full_like(out.crops, 255), out.affines, feather=0.2)[:, :, 0].astype(int)
    assert (pasted[100, :60] >= 254).all()  # the face goes on past the left edge: no fade there
    assert 0 < pasted[100, 135] < 200 and pasted[100, 147] == 0  # its right edge, inside the frame, fades
    assert 0 < pasted[35, 60] < 200  # and so does its top edge


@pytest.mark.parametrize("with_landmarks", [False, True])
def test_torch_crop_matches_opencv(astronaut, with_landmarks):
    m = similarity(15, 0.9, (-60, 40))
    inv = cv2.invertAffineTransform(m)
    lms = (align.template(512) @ inv[:, :2].T + inv[:, 2])[None] if with_landmarks else None
    # the second box runs past the frame, so the grey fill is compared too
    boxes = np.array([[150, 40, 300, 190], [440, 400, 560, 520]], np.float32)
    if lms is not None:
        lms = np.concatenate([lms, lms + 30])
    faces = faces_with(lms, boxes)
    ref = cut(astronaut, faces, size=128)
    frame = torch.from_numpy(astronaut).permute(2, 0, 1)
    got = align.crop_torch(frame, ref.affines, 128)
    assert got.shape == (2, 3, 128, 128) and got.dtype == torch.float32
    diff = np.abs(got.permute(0, 2, 3, 1).numpy() - ref.crops.astype(np.float32))
    assert diff.mean() < 0.5, diff.mean()
    assert np.percentile(diff, 99.9) < 3.0
    # one frame per face gives the same as a shared frame
    per_face = align.crop_torch(frame[None].expand(2, -1, -1, -1), ref.affines, 128)
    torch.testing.assert_close(per_face, got)
