"""Synthetic clips with faces at known positions, for tests, benchmarks and the bundled sample.

Faces are pasted (as given, RGB uint8) onto a smooth moving background; each face follows its own path and
changes size, and the pasted rectangle of every face in every frame is returned as ground truth.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def background(width: int, height: int, t: float) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a soft diagonal gradient that drifts with time ``t`` in seconds."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    phase = 0.15 * math.sin(t)
    r = 90 + 60 * (x + phase)
    g = 100 + 50 * y + 0 * x
    b = 130 + 40 * (1 - x) * y
    return np.clip(np.stack(np.broadcast_arrays(r, g, b), axis=-1), 0, 255).astype(np.uint8)


def face_boxes(n_faces: int, n_frames: int, width: int, height: int,
               min_size: int, max_size: int) -> np.ndarray:
    """(n_frames, n_faces, 4) int boxes x1, y1, x2, y2: each face drifts across its own band and breathes in size."""
    boxes = np.zeros((n_frames, n_faces, 4), np.int64)
    band = width / max(n_faces, 1)
    for f in range(n_frames):
        u = f / max(n_frames - 1, 1)
        for k in range(n_faces):
            size = int(round(min_size + (max_size - min_size) * (0.5 + 0.5 * math.sin(2 * math.pi * u + k))))
            size = min(size, int(band) - 4, height - 4)
            cx = band * k + band / 2 + (band / 2 - size / 2 - 2) * math.sin(2 * math.pi * u * 0.5 + k) * 0.8
            cy = height / 2 + (height / 2 - size / 2 - 2) * math.cos(2 * math.pi * u + 2 * k) * 0.6
            x1, y1 = int(round(cx - size / 2)), int(round(cy - size / 2))
            boxes[f, k] = (x1, y1, x1 + size, y1 + size)
    return boxes


def render(faces: list[np.ndarray], boxes: np.ndarray, width: int, height: int, fps: float):
    """Yield (H, W, 3) uint8 RGB frames with ``faces[k]`` resized into ``boxes[f, k]``."""
    for f in range(len(boxes)):
        frame = background(width, height, f / fps)
        for k, face in enumerate(faces):
            x1, y1, x2, y2 = boxes[f, k]
            frame[y1:y2, x1:x2] = cv2.resize(face, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
        yield frame


def write_clip(path: str | Path, faces: list[np.ndarray], n_frames: int = 30, width: int = 320,
               height: int = 240, fps: int = 10, min_size: int = 60, max_size: int = 110,
               audio: bool = False, codec: str = "libx264", crf: int = 20, rotation: int = 0) -> np.ndarray:
    """Encode a clip and return its ground truth boxes, (n_frames, n_faces, 4) int64.

    Args:
        faces: RGB uint8 face images (square, tight around the face), one per moving face.
        width, height: the size of the clip as shown (upright).
        audio: also write a 440 Hz mono AAC track of the same duration.
        rotation: store the frames turned this many degrees clockwise (a multiple of 90) with a display matrix
            that turns them back counterclockwise, as phones do; the boxes are those of the upright frames.
    """
    boxes = face_boxes(len(faces), n_frames, width, height, min_size, max_size)
    turns = rotation // 90 % 4
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = (height, width) if turns % 2 else (width, height)
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        if turns:
            stream.set_display_rotation(90 * turns)
        astream = container.add_stream("aac", rate=16000, layout="mono") if audio else None
        for image in render(faces, boxes, width, height, fps):
            stored = np.ascontiguousarray(np.rot90(image, -turns))
            for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if astream is not None:
            _write_tone(container, astream, seconds=n_frames / fps)
    return boxes


def _write_tone(container, stream, seconds: float, hz: float = 440.0) -> None:
    rate, chunk = stream.rate, 1024
    total = int(seconds * rate)
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        t = (np.arange(start, start + n) / rate).astype(np.float32)
        samples = (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
