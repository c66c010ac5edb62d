"""Synthetic scenes of real face photos with known boxes and landmarks, for detection accuracy tests and benchmarks.

Each face is a real photo (scikit-image's astronaut and cameraman, matplotlib's Grace Hopper, LFW faces) whose box
and 5 landmarks come from MTCNN on the photo itself at full resolution; each frame places it with an affine map
(position, size, roll, a horizontal squash standing in for a turn of the head) onto a slowly drifting texture,
and an occluder may cover part of it. The same maps carry the box and landmarks into the frame: the truth.

Scenes (:data:`SCENES`): ``several`` faces at once, ``small`` faces 20-40 px wide, faces ``entering`` and leaving
the picture, faces ``turning`` (roll and squash), and faces partly ``hidden``. All need the ``test`` extra
(scikit-image, matplotlib).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

PRESENT = 0.75  # a face counts once this share of its box is inside the frame


@dataclass(frozen=True)
class Photo:
    """A face photo (RGB uint8, the face with a margin around it) and its face box and landmarks in its pixels."""

    image: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray


@dataclass(frozen=True)
class Pose:
    """Where one face is in one frame: its box centre (px), box width (px), roll (degrees), horizontal squash
    (1 = frontal), and the occluded share of its box from the right (0 = none)."""

    x: float
    y: float
    width: float
    roll: float = 0.0
    squash: float = 1.0
    hidden: float = 0.0


@dataclass(frozen=True)
class Truth:
    """The faces of one frame: boxes (N, 4), landmarks (N, 5, 2), face ids (N,) and whether each is present
    (:data:`PRESENT` of its box inside the frame)."""

    boxes: np.ndarray
    landmarks: np.ndarray
    ids: np.ndarray
    present: np.ndarray


@functools.cache
def photos() -> tuple[Photo, ...]:
    """The real face photos, each found by MTCNN at full resolution (their boxes and landmarks are its answer)."""
    import matplotlib.cbook
    from skimage import data

    from ..config import DetectConfig
    from ..detect import create

    hopper = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))[..., ::-1]
    lfw = (data.lfw_subset()[[0, 3, 11, 25]] * 255).round().astype(np.uint8)
    sources = [data.astronaut(), np.ascontiguousarray(hopper), np.repeat(data.camera()[..., None], 3, axis=2)]
    for face in lfw:  # 25 px crops: enlarged on grey, so that there is room around the face
        canvas = np.full((200, 200, 3), 128, np.uint8)
        canvas[50:150, 50:150] = cv2.resize(np.repeat(face[..., None], 3, axis=2), (100, 100),
                                            interpolation=cv2.INTER_CUBIC)
        sources.append(canvas)
    detector = create(DetectConfig(name="mtcnn", detect_width=10_000, min_face=20), "cpu")
    out = []
    for image in sources:
        faces = detector.detect([np.ascontiguousarray(image)])[0]
        best = int(np.argmax(faces.widths))
        box, landmarks = faces.boxes[best], faces.landmarks[best]
        out.append(_around(image, box, landmarks))
    return tuple(out)


def _around(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> Photo:
    """The photo cut to its face box plus half a width on every side (grey where the photo ends)."""
    side = float(box[2] - box[0])
    x0, y0 = int(box[0] - side / 2), int(box[1] - side / 2)
    w, h = int(side * 2), int(box[3] - box[1] + side)
    cut = cv2.copyMakeBorder(image, h, h, w, w, cv2.BORDER_CONSTANT, value=(128, 128, 128))[y0 + h:y0 + 2 * h,
                                                                                             x0 + w:x0 + 2 * w]
    shift = np.array([x0, y0], np.float32)
    return Photo(np.ascontiguousarray(cut), box - np.tile(shift, 2), landmarks - shift)


def place(photo: Photo, pose: Pose) -> np.ndarray:
    """(2, 3) affine from the photo's pixels to the frame's for ``pose``: the face box's centre to (x, y), its
    width to ``width``, rolled, squashed horizontally."""
    scale = pose.width / float(photo.box[2] - photo.box[0])
    centre = (photo.box[:2] + photo.box[2:]) / 2
    a = math.radians(pose.roll)
    rotate = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    linear = rotate @ np.diag([scale * pose.squash, scale])
    return np.concatenate([linear, (np.array([pose.x, pose.y]) - linear @ centre)[:, None]], axis=1)


def _mapped(photo: Photo, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face box (axis-aligned around its mapped corners) and landmarks in frame pixels."""
    x1, y1, x2, y2 = photo.box
    corners = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]]) @ affine[:, :2].T + affine[:, 2]
    box = np.concatenate([corners.min(axis=0), corners.max(axis=0)]).astype(np.float32)
    return box, (photo.landmarks @ affine[:, :2].T + affine[:, 2]).astype(np.float32)


def background(width: int, height: int, t: float) -> np.ndarray:
    """(H, W, 3) uint8: scikit-image's brick texture, tinted and drifting with time ``t`` (seconds)."""
    texture = _texture(width + 64, height + 64)
    dx, dy = int(16 + 16 * math.sin(t)), int(16 + 16 * math.cos(0.7 * t))
    gray = texture[dy:dy + height, dx:dx + width].astype(np.float32)
    tint = np.array([1.0, 0.92, 0.8], np.float32)
    return np.clip(gray[..., None] * tint * 0.8 + 30, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _texture(width: int, height: int) -> np.ndarray:
    """scikit-image's brick texture tiled to ``width`` x ``height``."""
    from skimage import data

    tile = data.brick()
    reps = (height // tile.shape[0] + 1, width // tile.shape[1] + 1)
    return np.tile(tile, reps)[:height, :width]


def render(faces: list[tuple[Photo, Callable[[float], Pose]]], width: int, height: int, n_frames: int,
           fps: float) -> Iterator[tuple[np.ndarray, Truth]]:
    """Yield each frame (H, W, 3) uint8 RGB and its truth; ``faces`` pairs a photo with its pose over time."""
    for f in range(n_frames):
        t = f / fps
        frame = background(width, height, t)
        boxes, landmarks, present = [], [], []
        for photo, pose_at in faces:
            pose = pose_at(t)
            affine = place(photo, pose)
            warped = cv2.warpAffine(photo.image, affine, (width, height), flags=cv2.INTER_AREA,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            mask = cv2.warpAffine(np.ones(photo.image.shape[:2], np.uint8), affine, (width, height),
                                  flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            frame[mask > 0] = warped[mask > 0]
            box, points = _mapped(photo, affine)
            if pose.hidden > 0:  # a dark bar over the right part of the face box
                x0 = int(box[2] - pose.hidden * (box[2] - box[0]))
                frame[max(0, int(box[1])):max(0, int(box[3])), max(0, x0):max(0, int(box[2]))] = (40, 45, 50)
            boxes.append(box)
            landmarks.append(points)
            present.append(_inside(box, width, height) >= PRESENT)
        ids = np.arange(len(faces))
        yield frame, Truth(np.array(boxes, np.float32).reshape(-1, 4), np.array(landmarks, np.float32).reshape(
            -1, 5, 2), ids, np.array(present, bool))


def _inside(box: np.ndarray, width: int, height: int) -> float:
    """The share of ``box`` inside a ``width`` x ``height`` frame."""
    x1, y1, x2, y2 = box
    area = max((x2 - x1) * (y2 - y1), 1e-6)
    inner = max(0.0, min(x2, width) - max(x1, 0)) * max(0.0, min(y2, height) - max(y1, 0))
    return inner / area


def _drift(x0: float, y0: float, ax: float, ay: float, width: tuple[float, float], phase: float, **extra):
    """A pose over time: wandering around (x0, y0) by (ax, ay) px, breathing between the two widths."""
    def pose(t: float) -> Pose:
        w = width[0] + (width[1] - width[0]) * (0.5 + 0.5 * math.sin(0.9 * t + phase))
        values = {k: v(t) if callable(v) else v for k, v in extra.items()}
        return Pose(x0 + ax * math.sin(0.6 * t + phase), y0 + ay * math.cos(0.5 * t + 2 * phase), w, **values)
    return pose


def _slide(y: float, width: float, speed: float, start: float, frame_width: int):
    """A face crossing the frame from the left edge (speed > 0) or the right (< 0), entering at ``start`` s."""
    def pose(t: float) -> Pose:
        travelled = speed * (t - start)
        x = -width + travelled if speed > 0 else frame_width + width + travelled
        return Pose(x, y, width)
    return pose


def scene(name: str) -> tuple[list[tuple[Photo, Callable[[float], Pose]]], int, int]:
    """The faces (photo and pose over time), width and height of scene ``name`` (see :data:`SCENES`)."""
    p = photos()
    if name == "several":
        return [(p[k], _drift(120 + 240 * k, 200 + 60 * (k % 2), 50, 60, (70, 130), k)) for k in range(4)], 960, 540
    if name == "small":  # a low-resolution clip, searched at its own resolution by default
        return [(p[k], _drift(50 + 76 * k, 90 + 90 * (k % 2), 20, 25, (20, 40), 0.7 * k)) for k in range(6)], \
            480, 270
    if name == "entering":
        return [(p[0], _slide(150, 90, 300, 0.2, 640)), (p[1], _slide(260, 80, -260, 0.6, 640))], 640, 360
    if name == "turning":
        def roll(k):
            return lambda t: 35 * math.sin(1.3 * t + k)

        def squash(k):
            return lambda t: 0.8 + 0.2 * math.cos(1.7 * t + k)
        return [(p[k], _drift(110 + 210 * k, 180, 30, 40, (80, 110), k, roll=roll(k), squash=squash(k)))
                for k in range(3)], 640, 360
    if name == "hidden":
        def share(k):
            return lambda t: 0.25 + 0.15 * math.sin(t + k)
        return [(p[k], _drift(110 + 210 * k, 180, 30, 40, (85, 100), k, hidden=share(k))) for k in range(3)], \
            640, 360
    raise ValueError(f"unknown scene {name!r}; choose one of: {', '.join(SCENES)}")


SCENES = ("several", "small", "entering", "turning", "hidden")


def write(name: str, path: str | Path, n_frames: int = 60, fps: int = 30) -> list[Truth]:
    """Encode scene ``name`` as an H.264 clip at ``path``; returns each frame's truth."""
    faces, width, height = scene(name)
    truths = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        stream.codec_context.time_base = Fraction(1, fps)
        for frame, truth in render(faces, width, height, n_frames, fps):
            truths.append(truth)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return truths
