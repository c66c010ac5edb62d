"""The stream's small implementation choices, each timed against its alternative in one run, on this machine.

    python -m fersr_stream.bench.choices              # 5 rounds, 60-frame clip, 200 faces beside a busy thread
    python -m fersr_stream.bench.choices --quick      # one round, smaller inputs (what the test runs)

Comments in the stream give the reason for a choice and point here instead of quoting timings that go stale.
Every row times two ways of doing one thing on the same input: a 1280x720 frame with scikit-image's astronaut
pasted on gravel, face crops cut from it with :mod:`fersr_stream.align`, and a libx264 clip of such frames. The
two are interleaved (ours, other; then other, ours; ...) so that drift on a shared machine hits both; each round
runs a function several times and keeps the mean per call; the table gives the median over rounds (and the min),
the ratio alternative / ours (the median of the rounds' own ratios: above 1, ours is faster) and, where the two
can give different results, how far apart they are. OpenCV and torch run on one thread, as in the stream
(:func:`fersr_stream.device.stream_threads`), except where a row says otherwise.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import threading
import time
from dataclasses import dataclass, field

import av
import click
import cv2
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from ..cli import Command
from .. import align, classify
from .. import config as cfg
from .. import device as devices
from ..classify.checkpoint import load_checkpoint
from ..crops import HostCrops
from ..detect.base import shrink
from ..detect.haar import HaarDetector
from ..pipeline.stages import crop_side
from ..sources.pyav import to_rgb
from .restore import FACE_LANDMARKS, FACE_SLICE

WIDTH, HEIGHT = 1280, 720
DETECT_WIDTH = 480  # the detectors' default detect_width: 720p -> 480 px is a factor of 2.67, not a whole one
CPU = torch.device("cpu")


@dataclass
class Row:
    """One choice: per-round ms of ours and of the alternative, and how far apart their results are."""

    choice: str
    ours: list[float]
    other: list[float]
    apart: dict[str, float] = field(default_factory=dict)
    unit: str = ""

    @property
    def ratio(self) -> float:
        """Median over rounds of alternative / ours."""
        return statistics.median(b / a for a, b in zip(self.ours, self.other))


@dataclass(frozen=True)
class Budget:
    """How much to measure: rounds, frames in the clip, faces beside the busy thread, and calls per round."""

    repeat: int = 5
    clip_frames: int = 60
    busy_faces: int = 200
    quick: bool = False

    def calls(self, n: int) -> int:
        """Calls of a function per round (a tenth when quick): enough that one round is not timer noise."""
        return max(1, n // 10) if self.quick else n


# --- inputs --------------------------------------------------------------------------------------------------------


def scene(shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 720p RGB frame: astronaut() pasted on tinted gravel; ``shift`` px moves the picture right and the gravel
    left (frames of a clip). Returns the frame and the face's (5, 2) landmarks in frame pixels."""
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("the benchmark needs scikit-image: pip install -e '.[test]'") from None
    gravel = data.gravel()
    tile = np.tile(gravel, (-(-HEIGHT // gravel.shape[0]), -(-WIDTH // gravel.shape[1]) + 1))
    tile = tile[:HEIGHT, shift % gravel.shape[1]:][:, :WIDTH]
    frame = (tile[..., None] * np.array([1.0, 0.9, 0.75], np.float32)).astype(np.uint8)
    x, y = 560 + shift, 120
    frame[y:y + 512, x:x + 512] = data.astronaut()
    corner = np.array([FACE_SLICE[1].start + x, FACE_SLICE[0].start + y], np.float32)
    return frame, FACE_LANDMARKS + corner


def face_crops(frame: np.ndarray, landmarks: np.ndarray, side: int, n: int = 1) -> np.ndarray:
    """(n, side, side, 3) uint8: the face cut as the stream cuts it (FFHQ alignment), ``n`` times."""
    return np.repeat(align.crop(frame, align.estimate_affines(landmarks[None], side), side), n, axis=0)


def yuv_frames(n: int) -> list[av.VideoFrame]:
    """``n`` moving 720p frames as yuv420p VideoFrames with pts, ready for an encoder."""
    frames = []
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(cv2.cvtColor(scene(2 * i)[0], cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        frame.pts = i
        frames.append(frame)
    return frames


def encode(frames: list[av.VideoFrame], threads: int) -> bytes:
    """An MP4 of ``frames``: libx264 veryfast crf 23 (the sink's defaults), ``threads`` (0 = x264's own choice)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        stream.codec_context.thread_count = threads
        for frame in frames:
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


def decode(clip: bytes, threads: int, auto: bool = False) -> list[av.VideoFrame]:
    """Every frame of an encoded clip; ``auto``: FFmpeg's frame and slice threads (``thread_type="AUTO"``)."""
    with av.open(io.BytesIO(clip)) as container:
        stream = container.streams.video[0]
        if auto:
            stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        return list(container.decode(stream))


# --- measuring -----------------------------------------------------------------------------------------------------


def clock(fn, calls: int) -> tuple[float, float]:
    """(wall ms, CPU ms of the whole process) per call of ``fn``, over ``calls`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - wall) * 1e3 / calls, (time.process_time() - cpu) * 1e3 / calls


def compare(ours, other, budget: Budget, calls: int) -> tuple[np.ndarray, np.ndarray]:
    """(rounds, 2) wall and CPU ms per call of ``ours`` and of ``other``, interleaved, after one untimed call
    each (first-call allocations and caches count in neither)."""
    ours(), other()
    times = ([], [])
    for i in range(budget.repeat):
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            times[k].append(clock((ours, other)[k], calls))
    return np.array(times[0]), np.array(times[1])


def levels(a, b) -> dict[str, float]:
    """Mean and max absolute difference of two arrays of pixel levels (or probabilities)."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return {"mean": float(diff.mean()), "max": float(diff.max())}


def row(choice: str, ours: np.ndarray, other: np.ndarray, column: int = 0, scale: float = 1.0,
        gaps: dict[str, float] | None = None, unit: str = "") -> Row:
    """A Row from :func:`compare`'s times: ``column`` 0 wall, 1 CPU, times ``scale`` (e.g. frames per call)."""
    return Row(choice, list(ours[:, column] * scale), list(other[:, column] * scale), gaps or {}, unit)


# --- the choices ---------------------------------------------------------------------------------------------------


def shrink_row(frame: np.ndarray, budget: Budget) -> Row:
    """detect.base.shrink (whole-factor block mean, then bilinear) vs one INTER_AREA resize, gray 720p -> 480 px."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    size = (DETECT_WIDTH, round(HEIGHT * DETECT_WIDTH / WIDTH))
    ours, other = compare(lambda: shrink(gray, size), lambda: cv2.resize(gray, size, interpolation=cv2.INTER_AREA),
                          budget, budget.calls(20))
    gaps = levels(shrink(gray, size), cv2.resize(gray, size, interpolation=cv2.INTER_AREA))
    return row("shrink vs INTER_AREA, gray 720p -> 480 px", ours, other, gaps=gaps, unit="levels")


def crop_row(frame: np.ndarray, landmarks: np.ndarray, budget: Budget) -> Row:
    """align.crop (cv2.warpAffine) vs align.crop_torch (grid sampling) on the CPU: one 512 px crop, one thread."""
    affines = align.estimate_affines(landmarks[None], 512)
    tensor = torch.from_numpy(frame).permute(2, 0, 1)  # a frame already a tensor, as crop_torch gets it
    ours, other = compare(lambda: align.crop(frame, affines, 512), lambda: align.crop_torch(tensor, affines, 512),
                          budget, budget.calls(5))
    theirs = align.crop_torch(tensor, affines, 512).round().clamp(0, 255).permute(0, 2, 3, 1).numpy()
    return row("crop: cv2 warp vs torch grid_sample, 512 px", ours, other,
               gaps=levels(align.crop(frame, affines, 512), theirs), unit="levels")


def swscale_rgb(frame: av.VideoFrame) -> np.ndarray:
    """``frame.to_ndarray(format="rgb24")`` as on a frame seen for the first time: every decoded frame gets its own
    reformatter (a new SwsContext), with PyAV's default swscale threads (0: FFmpeg's choice)."""
    return VideoReformatter().reformat(frame, format="rgb24").to_ndarray()


def to_rgb_rows(clip: bytes, budget: Budget) -> list[Row]:
    """sources.pyav.to_rgb (OpenCV I420 -> RGB) vs PyAV's swscale rgb24, one decoded 720p H.264 frame."""
    frame = decode(clip, threads=1)[0]
    assert frame.format.name == "yuv420p", frame.format.name  # to_rgb's OpenCV path, the one measured
    ours, other = compare(lambda: to_rgb(frame), lambda: swscale_rgb(frame), budget, budget.calls(20))
    gaps = levels(to_rgb(frame), swscale_rgb(frame))
    return [row("decoded frame -> RGB, to_rgb vs swscale: wall", ours, other, gaps=gaps, unit="levels"),
            row("decoded frame -> RGB, to_rgb vs swscale: CPU", ours, other, 1)]


def to_yuv_rows(frame: np.ndarray, budget: Budget) -> list[Row]:
    """The sink's RGB -> yuv420p VideoFrame (OpenCV, wrapped without a copy) vs swscale's (a new frame, so a new
    SwsContext, each time, as in a stream); and the wrap alone, from_numpy_buffer vs from_ndarray, for a 720p
    I420 array."""
    def opencv():
        return av.VideoFrame.from_numpy_buffer(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420), format="yuv420p")

    def swscale():
        return av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")

    ours, other = compare(opencv, swscale, budget, budget.calls(20))
    gaps = levels(opencv().to_ndarray(), swscale().to_ndarray())
    rows = [row("RGB -> yuv420p frame, cv2 I420 vs swscale: wall", ours, other, gaps=gaps, unit="levels"),
            row("RGB -> yuv420p frame, cv2 I420 vs swscale: CPU", ours, other, 1)]
    yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
    ours, other = compare(lambda: av.VideoFrame.from_numpy_buffer(yuv, format="yuv420p"),
                          lambda: av.VideoFrame.from_ndarray(yuv, format="yuv420p"), budget, budget.calls(200))
    same = levels(av.VideoFrame.from_numpy_buffer(yuv, format="yuv420p").to_ndarray(),
                  av.VideoFrame.from_ndarray(yuv, format="yuv420p").to_ndarray())
    return rows + [row("I420 -> VideoFrame, from_numpy_buffer vs from_ndarray", ours, other, gaps=same,
                       unit="levels")]


def codec_rows(frames: list[av.VideoFrame], clip: bytes, budget: Budget) -> list[Row]:
    """libx264 (veryfast, crf 23) with 1 thread vs its own count, and H.264 decoding with 1 thread vs AUTO with 2:
    per frame, wall and CPU (on 2 cores shared with the other stages the CPU is what counts)."""
    n = len(frames)
    ours, other = compare(lambda: encode(frames, 1), lambda: encode(frames, 0), budget, 1)
    size = {"size": 100 * (len(encode(frames, 0)) / len(encode(frames, 1)) - 1)}
    what = f"x264 encode {n} frames, 1 vs auto threads"
    rows = [row(f"{what}: wall/frame", ours, other, 0, 1 / n, gaps=size, unit="%"),
            row(f"{what}: CPU/frame", ours, other, 1, 1 / n)]
    ours, other = compare(lambda: decode(clip, 1), lambda: decode(clip, 2, auto=True), budget, 1)
    same = levels(np.stack([f.to_ndarray() for f in decode(clip, 1)]),
                  np.stack([f.to_ndarray() for f in decode(clip, 2, auto=True)]))
    what = f"H.264 decode {n} frames, 1 vs AUTO 2 threads"
    return rows + [row(f"{what}: wall/frame", ours, other, 0, 1 / n, gaps=same, unit="levels"),
                   row(f"{what}: CPU/frame", ours, other, 1, 1 / n)]


def classifier_rows(classifier: classify.Classifier, crops: np.ndarray, budget: Budget) -> list[Row]:
    """The shipped classifier per face: 4 faces in one call vs one face a call; and its fused network in
    channels-last vs contiguous memory, on one face's (1, 1, 64, 64) input."""
    four, one = HostCrops(crops[:4]), HostCrops(crops[:1])
    ours, other = compare(lambda: classifier.classify(four), lambda: classifier.classify(one), budget,
                          budget.calls(10))
    batch = row("classify per face: 4 a call vs 1 a call", ours / 4, other,
                gaps=levels(classifier.classify(four)[0], classifier.classify(one)[0]), unit="prob.")
    x = classifier.preprocess(one)
    last, plain = (load_checkpoint(classify.DEFAULT_WEIGHTS)[0].fuse_batchnorm() for _ in range(2))
    last = last.to(memory_format=torch.channels_last)
    x_last, x_plain = x.contiguous(memory_format=torch.channels_last), x.contiguous()
    with torch.inference_mode():
        ours, other = compare(lambda: last(x_last), lambda: plain(x_plain), budget, budget.calls(10))
        gaps = levels(torch.softmax(last(x_last), 1), torch.softmax(plain(x_plain), 1))
    return [batch, row("fused net, 1 face: channels_last vs contiguous", ours, other, gaps=gaps, unit="prob.")]


def _spin(stop: threading.Event) -> None:
    """Pure Python busy work (what the stream's other stages do between their C calls), until ``stop``."""
    n = 0
    while not stop.is_set():
        n += 1


@contextlib.contextmanager
def busy_python():
    """Another thread spinning in Python for the duration."""
    stop = threading.Event()
    thread = threading.Thread(target=_spin, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def traced_rows(classifier: classify.Classifier, crops: np.ndarray, budget: Budget) -> list[Row]:
    """Faces one at a time through the traced graph (``classifier.probabilities``) vs the eager
    ``classify.Probabilities`` module around the same network: alone, and beside a busy Python thread."""
    p = classifier.preprocessing
    x = HostCrops(crops[:1]).centre(p.crop).resize(p.size, "area").tensor(CPU)
    eager, traced = classify.Probabilities(classifier.model, p), classifier.probabilities
    n = budget.busy_faces
    rows = []
    with torch.inference_mode(), torch.jit.optimized_execution(False):  # as Classifier.classify runs it
        gaps = levels(traced(x).numpy(), eager(x).numpy())
        for where, context in (("alone", contextlib.nullcontext), ("beside a busy thread", busy_python)):
            with context():
                ours, other = compare(lambda: traced(x), lambda: eager(x), budget, n)
            rows.append(row(f"{n} faces traced vs eager, {where}", ours, other, scale=n, gaps=gaps, unit="prob."))
    return rows


def haar_row(frame: np.ndarray, landmarks: np.ndarray, budget: Budget) -> Row:
    """Haar's whole-frame search vs ``refine`` around the face it found; how far apart their boxes are."""
    detector = HaarDetector(cfg.DetectConfig())
    whole = detector.detect([frame])[0]
    nose = landmarks[2]
    found = [b for b in whole.boxes if b[0] <= nose[0] <= b[2] and b[1] <= nose[1] <= b[3]]
    if not found:
        raise RuntimeError("the Haar detector missed the astronaut's face in the benchmark frame")
    box = found[0]
    ours, other = compare(lambda: detector.refine([frame], [box[None]]), lambda: detector.detect([frame]), budget,
                          budget.calls(5))
    near = detector.refine([frame], [box[None]])[0].boxes
    corner = float(np.abs(near - box).max(axis=1).min()) if len(near) else float("inf")
    return row("Haar: refine near the face vs whole frame", ours, other, gaps={"corner": corner}, unit="px")


# --- report --------------------------------------------------------------------------------------------------------


def machine() -> str:
    """Cores, CPU model (/proc/cpuinfo where there is one), load, library versions and threads."""
    model = "CPU model unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"machine: {os.cpu_count()} cores, {model}, load {load} (1/5/15 min); torch {torch.__version__} "
            f"({torch.get_num_threads()} threads by default), OpenCV {cv2.__version__}, PyAV {av.__version__}")


def _ms(values: list[float]) -> str:
    """Median (min) in ms, with about three significant digits."""
    def fmt(v: float) -> str:
        return f"{v:.{max(0, 2 - int(np.floor(np.log10(max(abs(v), 1e-9)))))}f}"

    return f"{fmt(statistics.median(values))} ({fmt(min(values))})"


def _apart(r: Row) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in r.apart.items()) + (f" {r.unit}" if r.apart and r.unit else "")


def table(rows: list[Row]) -> str:
    """``choice | ours ms | alternative ms | ratio | results apart``, one line per row, columns aligned."""
    cells = [("choice", "ours ms", "alternative ms", "ratio", "results apart")]
    cells += [(r.choice, _ms(r.ours), _ms(r.other), f"{r.ratio:.2f}x", _apart(r)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = [" | ".join(c[i].ljust(widths[i]) if i in (0, 4) else c[i].rjust(widths[i]) for i in range(5)).rstrip(" |")
             for c in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def run(budget: Budget) -> list[Row]:
    """Every row, choice by choice: the detectors' shrink, the crop, decoded and encoded frames' conversions,
    codec threads, the classifier, Haar near a known face."""
    frame, landmarks = scene()
    frames = yuv_frames(budget.clip_frames)
    clip = encode(frames, threads=1)
    with devices.stream_threads(CPU, heavy_model=False):
        classifier = classify.load(None, CPU)
        crops = face_crops(frame, landmarks, crop_side(cfg.load(None, []), classifier.preprocessing), 4)
        return [shrink_row(frame, budget), crop_row(frame, landmarks, budget), *to_rgb_rows(clip, budget),
                *to_yuv_rows(frame, budget), *codec_rows(frames, clip, budget),
                *classifier_rows(classifier, crops, budget), *traced_rows(classifier, crops, budget),
                haar_row(frame, landmarks, budget)]


@click.command("python -m fersr_stream.bench.choices", cls=Command)
@click.option("--repeat", default=5, show_default=True, help="Rounds per comparison (median and min reported).")
@click.option("--quick", is_flag=True, help="One round, a 10-frame clip, 10 faces beside the busy thread.")
def main(repeat: int, quick: bool):
    """Time each of the stream's implementation choices against its alternative, in one run."""
    if repeat < 1:
        raise click.BadParameter("must be at least 1", param_hint="--repeat")
    budget = Budget(repeat=1, clip_frames=10, busy_faces=10, quick=True) if quick else Budget(repeat=repeat)
    click.echo(machine())
    click.echo(f"{budget.repeat} round(s), the two interleaved; ms: median (min) over rounds, per call unless the "
               f"row says per frame, per face or for N faces; ratio: alternative / ours (> 1: ours faster); OpenCV "
               f"and torch on 1 thread, as in the stream")
    click.echo(table(run(budget)))


if __name__ == "__main__":
    main()
