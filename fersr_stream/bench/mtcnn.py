"""MTCNN benchmark: fersr's detector against facenet-pytorch's on the same frame, speed and agreement side by side.

    python -m fersr_stream.bench.mtcnn                       # 1280x720, detect widths 480 and 640, 1 and 2 threads
    python -m fersr_stream.bench.mtcnn --widths 320 --threads 4 --repeat 30

The frame is 1280x720 with real faces of several sizes (scikit-image's astronaut and cameraman, matplotlib's
Grace Hopper, eight LFW faces enlarged; the ``test`` extra). Each line gives min / median ms over ``--repeat``
runs of: ``detect`` on one frame, per frame of a batch of four, ``detect_tensors`` on CPU tensors, and
facenet-pytorch's ``MTCNN.detect`` on the same shrunk frame with the same pyramid (when it is installed:
``pip install --no-deps facenet-pytorch==2.6.0``), the ratio of the medians, and the largest box or landmark
difference between the two in source pixels. ``refine`` is timed on the faces found, one face and all at once.
Timings on a shared machine are noisy; the ratio, measured in the same run, is the steadier number.
"""

from __future__ import annotations

import statistics
import time

import click
import cv2
import numpy as np
import torch

from ..cli import Command
from ..config import DetectConfig
from ..detect.base import downscale
from ..detect.mtcnn import CELL, FACTOR, PNET_THRESHOLD, RNET_THRESHOLD, MTCNNDetector


def make_frame() -> np.ndarray:
    """(720, 1280, 3) uint8 RGB: real photos and enlarged LFW faces on grey."""
    try:
        import matplotlib.cbook
        from skimage import data
    except ImportError:
        raise SystemExit("the benchmark needs scikit-image and matplotlib: pip install -e '.[test]'") from None
    frame = np.full((720, 1280, 3), 128, np.uint8)
    frame[:512, :512] = data.astronaut()
    frame[:512, 512:1024] = data.camera()[..., None]
    hopper = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    frame[:300, 1024:1280] = cv2.resize(cv2.cvtColor(hopper, cv2.COLOR_BGR2RGB), (256, 300),
                                        interpolation=cv2.INTER_AREA)
    faces = (data.lfw_subset()[:8] * 255).round().astype(np.uint8)
    x = 16
    for face, side in zip(faces, (60, 70, 80, 90, 100, 110, 120, 130)):
        y = 720 - 40 - side
        frame[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)[..., None]
        x += side + 24
    return frame


def timed(function, repeat: int) -> tuple[float, float]:
    """(min, median) milliseconds of ``repeat`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


def reference_faces(frame: np.ndarray, detect_width: int, min_face: int, threshold: float, repeat: int):
    """facenet-pytorch's MTCNN on the frame shrunk as fersr shrinks it: (boxes, landmarks) in source pixels and
    (min, median) ms, or None when it is not installed."""
    try:
        import facenet_pytorch
    except ImportError:
        return None
    small, scale = downscale(frame, detect_width)
    reference = facenet_pytorch.MTCNN(min_face_size=max(min_face * scale, CELL), factor=FACTOR, keep_all=True,
                                      thresholds=[PNET_THRESHOLD, RNET_THRESHOLD, threshold], select_largest=False)
    boxes, _, points = reference.detect(small, landmarks=True)
    times = timed(lambda: reference.detect(small, landmarks=True), repeat)
    if boxes is None:
        return np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), times
    return np.asarray(boxes, np.float32) / scale, np.asarray(points, np.float32) / scale, times


def largest_difference(faces, boxes: np.ndarray, landmarks: np.ndarray, shape: tuple[int, ...]) -> str:
    if len(faces) != len(boxes):
        return f"found {len(faces)} faces, facenet-pytorch {len(boxes)}"
    if not len(boxes):
        return "no faces"
    h, w = shape[:2]
    boxes = boxes.clip(0, [w, h, w, h])
    order = np.abs(boxes[:, None] - faces.boxes[None]).max(axis=2).argmin(axis=1)
    worst = max(np.abs(faces.boxes[order] - boxes).max(), np.abs(faces.landmarks[order] - landmarks).max())
    return f"{len(faces)} faces, largest difference {worst:.3f} px"


@click.command("python -m fersr_stream.bench.mtcnn", cls=Command)
@click.option("--widths", default="480,640", show_default=True, help="detect_width values, comma-separated.")
@click.option("--threads", default="1,2", show_default=True, help="torch thread counts, comma-separated.")
@click.option("--min-face", default=20, show_default=True, help="detect.min_face, source pixels.")
@click.option("--threshold", default=0.7, show_default=True, help="O-Net's score threshold.")
@click.option("--repeat", default=15, show_default=True, help="Timed runs per measurement.")
def main(widths: str, threads: str, min_face: int, threshold: float, repeat: int) -> None:
    """Time fersr's MTCNN on a 1280x720 frame of real faces, beside facenet-pytorch's."""
    frame = make_frame()
    tensor = torch.from_numpy(frame).permute(2, 0, 1)
    print(f"1280x720 frame, min_face {min_face} px, O-Net threshold {threshold}; times in ms, min / median")
    before = torch.get_num_threads()
    try:
        for count in (int(t) for t in threads.split(",")):
            run(frame, tensor, count, [int(w) for w in widths.split(",")], min_face, threshold, repeat)
    finally:
        torch.set_num_threads(before)


def run(frame: np.ndarray, tensor: torch.Tensor, count: int, widths: list[int], min_face: int, threshold: float,
        repeat: int) -> None:
    """Print the lines for ``count`` torch threads: detect at each width, then refine on the faces found at the
    last one."""
    torch.set_num_threads(count)
    for width in widths:
        detector = MTCNNDetector(DetectConfig(name="mtcnn", detect_width=width, min_face=min_face,
                                              score_threshold=threshold), "cpu")
        (faces,) = detector.detect([frame])
        ours = timed(lambda: detector.detect([frame]), repeat)
        batch = timed(lambda: detector.detect([frame] * 4), max(1, repeat // 4))
        tensors = timed(lambda: detector.detect_tensors([tensor]), max(1, repeat // 2))
        line = (f"threads {count} width {width}: detect {ours[0]:.1f} / {ours[1]:.1f}, "
                f"batch of 4 per frame {batch[0] / 4:.1f} / {batch[1] / 4:.1f}, "
                f"detect_tensors {tensors[0]:.1f} / {tensors[1]:.1f}")
        found = reference_faces(frame, width, min_face, threshold, max(1, repeat // 2))
        if found is None:
            line += "; facenet-pytorch not installed"
        else:
            boxes, landmarks, theirs = found
            line += (f"; facenet-pytorch {theirs[0]:.1f} / {theirs[1]:.1f} (ours / theirs "
                     f"{ours[1] / theirs[1]:.2f}); {largest_difference(faces, boxes, landmarks, frame.shape)}")
        print(line)
    boxes = faces.boxes
    if len(boxes):
        one = timed(lambda: detector.refine([frame], [boxes[:1]]), repeat)
        every = timed(lambda: detector.refine([frame], [boxes]), repeat)
        print(f"threads {count} refine: 1 face {one[0]:.2f} / {one[1]:.2f}; {len(boxes)} faces "
              f"{every[0]:.2f} / {every[1]:.2f}, per face {every[0] / len(boxes):.2f} / {every[1] / len(boxes):.2f}")


if __name__ == "__main__":
    main()
