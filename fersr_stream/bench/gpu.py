"""GPU-path benchmark: the official per-face restoration loop vs. the stream's batched stages, in one run.

    python -m fersr_stream.bench.gpu                                   # CUDA: 1080p, 1/4/16 faces, GFPGAN
    python -m fersr_stream.bench.gpu --faces 1,4 --frames 2 --size 256 # a CPU-sized run (a few minutes)

For each face count a synthetic clip (scikit-image's astronaut pasted at moving, breathing boxes) is encoded with
H.264, decoded with PyAV, and held in memory; then, with the same network object (random-init weights written in
the upstream file layout and loaded through ``enhance.create``) and the same classifier:

- loop: the official per-face loop, GFPGANer-style, one face at a time: detect, align (OpenCV warp), restore one
  face per forward in fp32 (as GFPGANer; on CUDA cuDNN's convolutions use TF32, torch's default), classify it,
  paste it back, then draw the boxes;
- ours: the stream's stages (``pipeline.stages.build``) on the device's path (the tensor path on CUDA), run
  serially in the stream's batches for per-stage times (the device is synchronised after every stage call so
  times land on the stage that queued the work), then the threaded runner over the same frames for throughput
  (counted from its first frame read, after the stages' warm-ups on their own threads).

Faces come from the clip's ground truth (``--detector truth``) unless ``--detector haar`` or ``mtcnn`` (the
stream's default, shipped weights, on the device's path): a random-init RetinaFace would report random faces, and a
CPU detector would make a GPU comparison measure the CPU. Detection is timed on its own too (Haar on the host frame;
MTCNN and a random-init RetinaFace on host frames and on device frames).
Then: a restoration batch-size sweep, fp16 autocast vs fp32 (time, and the max/mean pixel difference of the
restored crops; CUDA only), and decode fps of PyAV vs DALI (H.264 on the GPU; on the CPU DALI reads only VP8/VP9/
MJPEG, so both decoders read a VP9 copy of the clip there). Shared machines are noisy: ``--repeat`` runs each
measurement that many times and the median is reported. The first line names the device behind the numbers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from ..cli import Command
from .. import align, classify, detect, enhance, overlay
from .. import config as cfg
from .. import device as devices
from ..config import DetectConfig, EnhanceConfig
from ..crops import DeviceCrops, HostCrops
from ..detect import Detector
from ..testing import random_weights, synthetic
from ..errors import SourceError, WeightsError
from ..pipeline import stages as stage_builder
from ..pipeline.runner import Input, Policy, Runner, start_here
from ..pipeline.models import Models
from ..pipeline.stats import Stats
from ..types import Faces, Frame

CUDA_DEFAULTS = dict(faces="1,4,16", frames=30, size=1080, enhancer="gfpgan", full=True, batch=16,
                     sweep="1,2,4,8,16,32", repeat=3)
CPU_DEFAULTS = dict(faces="1,4", frames=2, size=256, enhancer="restoreformer", full=False, batch=4, sweep="1,2,4",
                    repeat=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, repeat: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls, each bracketed by a device sync."""
    times = []
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _Clock:
    """Seconds per named step, summed; the device is synchronised before a step's time is taken."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = device, defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        yield
        _sync(self.device)
        self.seconds[name] += time.perf_counter() - t0


class TruthDetector(Detector):
    """The clip's ground-truth boxes as detections (score 1, no landmarks), looked up by the frame's image."""

    def __init__(self, frames: list[Frame], boxes: np.ndarray):
        self._boxes = {id(f.image): boxes[f.index].astype(np.float32) for f in frames}

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        return [Faces(self._boxes[id(image)], np.ones(len(self._boxes[id(image)]), np.float32)) for image in images]


def make_frames(folder: Path, n_faces: int, n_frames: int, height: int, codec: str = "libx264"):
    """Encode a 16:9 clip ``height`` px high and decode it with PyAV: (path, frames, ground-truth boxes)."""
    from skimage import data

    from ..sources import open_source

    width = 2 * round(height * 16 / 9 / 2)
    face = np.ascontiguousarray(data.astronaut()[40:190, 150:300])
    side = min(height // 2, width // n_faces - 8)
    suffix = ".mp4" if codec == "libx264" else ".webm"
    path = folder / f"clip{n_faces}{suffix}"
    boxes = synthetic.write_clip(path, [face] * n_faces, n_frames=n_frames, width=width, height=height, fps=30,
                                 min_size=max(24, side // 2), max_size=side, codec=codec)
    with open_source(str(path)) as source:
        frames = list(source)
    return path, frames, boxes


def per_face_loop(frames: list[Frame], models: Models, margin: float, device: torch.device,
                  clock: _Clock) -> list[Frame]:
    """The GFPGANer-style loop: per frame detect, then per face align, restore (batch 1, fp32), classify, paste."""
    net = models.enhancer
    size = net.size
    out = []
    for frame in frames:
        image = frame.image
        with clock("detect"):
            faces = models.detector.detect([image])[0]
        probs = np.zeros((len(faces), 7), np.float32)
        for i in range(len(faces)):
            with clock("align"):
                affine = align.face_affines(faces.select([i]), size, margin)
                crop = cv2.warpAffine(image, affine[0], (size, size), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=align.BORDER_RGB)
            with clock("restore"), torch.inference_mode():
                x = torch.from_numpy(crop).to(device).permute(2, 0, 1)[None].float().div_(127.5).sub_(1.0)
                y = net.forward(x.contiguous()).float().clamp_(-1.0, 1.0)
                restored = ((y + 1.0) * 127.5).round_().to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
            with clock("classify"):
                probs[i] = models.classifier.classify(HostCrops(restored[None]))[0]
            with clock("paste"):
                image = align.paste_back(image, restored[None], affine)
        with clock("draw"):
            image = overlay.annotate(image, faces.replace(probs=probs))
        out.append(frame.replace(image=image, faces=faces.replace(probs=probs)))
    return out


def ours_serial(frames: list[Frame], config, models: Models, device: torch.device, clock: _Clock,
                warm: bool = False) -> list[Frame]:
    """The stream's stage functions in order over the clip, in their batches, timed per stage. ``warm``: first run
    the stages' warm-ups (their ``start`` hooks) on this thread, untimed; once per thread is enough."""
    built = stage_builder.build(config, models, sinks=[[]], stats=Stats(), stop=threading.Event(),
                                frame_size=frames[0].size)
    if warm:
        start_here(built)
    for stage in built:
        done = []
        for start in range(0, len(frames), stage.batch):
            with clock(stage.name):
                done += stage.process(frames[start:start + stage.batch])
        frames = done
    return frames


def ours_pipeline(frames: list[Frame], config, models: Models) -> Stats:
    """The threaded runner over the in-memory clip (files policy: no frame dropped); its ``fps`` counts from the
    first frame read, after the stages' warm-ups on their threads (``warm_up``)."""
    stats = Stats()
    built = stage_builder.build(config, models, sinks=[[]], stats=stats, stop=threading.Event(),
                                frame_size=frames[0].size)
    Runner([Input(frames, Policy.WAIT)], built, queue_size=config.source.queue_size, stats=stats).run()
    return stats


def _median_table(runs: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(run.get(name, 0.0) for run in runs) for name in runs[0]}


def _steps(seconds: dict[str, float], n_frames: int) -> str:
    return ", ".join(f"{name} {1000 * s / n_frames:.1f}" for name, s in seconds.items())


def compare(n_faces: int, args, models_for, folder: Path, device: torch.device):
    """Loop vs ours on one clip; prints a block and returns the clip (path, decoded frames, models)."""
    path, frames, boxes = make_frames(folder, n_faces, args["frames"], args["size"])
    models = models_for(frames, boxes)
    config = cfg.load(None, [f"enhance.name={args['enhancer']}", f"enhance.batch={args['batch']}",
                             "overlay.paste=true", "enhance.max_wait=0"])
    margin = config.align.margin
    if device.type == "cuda" or args["compile"]:
        # lazy CUDA initialisation, cuDNN's plans and the compile are not timed
        per_face_loop(frames[:1], models, margin, device, _Clock(device))
        ours_serial(frames[:2], config, models, device, _Clock(device), warm=True)
    loops, ours, pipes = [], [], []
    for _ in range(args["repeat"]):
        clock = _Clock(device)
        per_face_loop(frames, models, margin, device, clock)
        loops.append(dict(clock.seconds))
        clock = _Clock(device)
        done = ours_serial(frames, config, models, device, clock)
        ours.append(dict(clock.seconds))
        pipes.append(ours_pipeline(frames, config, models))
    loop, mine = _median_table(loops), _median_table(ours)
    n = len(frames)
    found = sum(len(f.faces) for f in done) / n
    loop_fps, serial_fps = n / sum(loop.values()), n / sum(mine.values())
    pipe_fps, warm = statistics.median(p.fps for p in pipes), statistics.median(p.warm_up for p in pipes)
    click.echo(f"\n{n_faces} face(s): {n} frames {frames[0].size[0]}x{frames[0].size[1]}, {found:.1f} faces/frame")
    click.echo(f"  loop  {loop_fps:8.2f} fps   ms/frame: {_steps(loop, n)}")
    warmed = f" (after its stages' {warm:.2f} s warm-up)" if warm else ""
    click.echo(f"  ours  {serial_fps:8.2f} fps serial, {pipe_fps:.2f} fps pipelined{warmed}   "
               f"ms/frame: {_steps(mine, n)}")
    click.echo(f"  ours / loop: {serial_fps / loop_fps:.2f}x serial, {pipe_fps / loop_fps:.2f}x pipelined")
    return path, frames, models


def batch_sweep(enhancer, crops: DeviceCrops, sizes: list[int], repeat: int, device: torch.device) -> None:
    """Faces per second of ``enhance`` at each batch size, on crops already on the device."""
    click.echo("\nrestoration batch sweep (crops on the device):")
    keep = enhancer.batch
    n = max(sizes)  # every batch size restores the same faces
    data = crops.select(torch.arange(n) % len(crops))
    for batch in sizes:
        enhancer.batch = batch
        if device.type == "cuda":
            enhancer.enhance(data.select(slice(0, batch)))  # cuDNN picks its algorithms per shape: not timed
        seconds = _median_seconds(lambda: enhancer.enhance(data), repeat, device)
        click.echo(f"  batch {batch:3d}: {n / seconds:8.2f} faces/s")
    enhancer.batch = keep


def fp16_vs_fp32(enhancer, crops: DeviceCrops, repeat: int, device: torch.device) -> None:
    """Time and pixel difference of fp16 autocast against fp32 on the same crops (CUDA only)."""
    if device.type != "cuda":
        click.echo("\nfp16 vs fp32: skipped (fp16 autocast is CUDA-only; the CPU runs fp32)")
        return
    keep, results = enhancer.fp16, {}
    for fp16 in (False, True):
        enhancer.fp16 = fp16
        out = enhancer.enhance(crops).images  # also the warm-up
        results[fp16] = (out, _median_seconds(lambda: enhancer.enhance(crops), repeat, device))
    enhancer.fp16 = keep
    diff = (results[True][0].int() - results[False][0].int()).abs().float()
    n = len(crops)
    click.echo(f"\nfp16 vs fp32 ({n} crops, batch {enhancer.batch}): fp32 {n / results[False][1]:.2f} faces/s, "
               f"fp16 {n / results[True][1]:.2f} faces/s ({results[False][1] / results[True][1]:.2f}x); "
               f"restored pixels differ by max {int(diff.max())}, mean {diff.mean():.3f} levels")


def time_detectors(frames: list[Frame], device: torch.device, repeat: int) -> None:
    """ms/frame of Haar (host frames), MTCNN and a random-init RetinaFace (host frames, and device frames)."""
    from ..detect.retinaface import RetinaFaceDetector, build_retinaface

    def per_frame(fn, inputs) -> float:
        fn(inputs[:1])

        def all_frames():
            for start in range(0, len(inputs), 4):  # the stream's detect batch
                fn(inputs[start:start + 4])

        return 1000 * _median_seconds(all_frames, repeat, device) / len(inputs)

    images = [f.image for f in frames]
    try:
        haar = detect.create(DetectConfig(name="haar"), device)
        lines = [f"haar {per_frame(haar.detect, images):.1f}"]
    except WeightsError as exc:  # OpenCV 5 (no cascades): time the rest
        lines = [f"haar unavailable ({exc})"]
    # a threshold nothing random reaches: the network and the decoding are timed, not NMS over random boxes
    networks = {"mtcnn": detect.create(DetectConfig(name="mtcnn"), device),
                "retinaface-r50": RetinaFaceDetector(DetectConfig(name="retinaface", score_threshold=0.99), device,
                                                     net=build_retinaface("resnet50"))}
    tensor_path = devices.uses_tensor_path(device)
    on_device = [torch.from_numpy(image).to(device).permute(2, 0, 1) for image in images] if tensor_path else []
    for name, network in networks.items():
        lines.append(f"{name} (host frames) {per_frame(network.detect, images):.1f}")
        if tensor_path:
            lines.append(f"{name} (device frames) {per_frame(network.detect_tensors, on_device):.1f}")
    click.echo(f"\ndetection at width {DetectConfig().detect_width}, ms/frame: " + ", ".join(lines))


def decode_fps(frames_path: Path, frames: list[Frame], folder: Path, device: torch.device, repeat: int) -> None:
    """PyAV vs DALI decode on one clip: H.264 when DALI decodes on the GPU, else a VP9 copy for both."""
    from ..sources import open_source

    gpu = device.type == "cuda"
    path = frames_path
    if not gpu:
        path = folder / "decode.webm"
        synthetic_vp9(path, frames)

    def measure(opener, count) -> str:
        """Median decode fps after opening, and the median time to open (DALI builds its pipeline there)."""
        opens, rates = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            source = opener()
            t1 = time.perf_counter()
            with source:
                n = count(source)
                _sync(device)
            opens.append(t1 - t0)
            rates.append(n / (time.perf_counter() - t1))
        return f"{statistics.median(rates):.1f} fps (open {1000 * statistics.median(opens):.0f} ms)"

    line = (f"\ndecode {path.suffix[1:]} {frames[0].size[0]}x{frames[0].size[1]}, {len(frames)} frames: PyAV "
            + measure(lambda: open_source(str(path)), lambda source: sum(1 for _ in source)))
    if importlib.util.find_spec("nvidia.dali") is None:
        click.echo(line + ", DALI not installed (pip install -e '.[dali]')")
        return
    from ..sources.dali import DaliSource

    try:
        dali = measure(lambda: DaliSource(path, device=str(device), sequence=8),
                       lambda source: sum(len(batch.indices) for batch in source.iter_tensors()))
    except SourceError as exc:
        click.echo(line + f", DALI unusable here: {exc}")
        return
    click.echo(line + f", DALI ({'GPU' if gpu else 'CPU'}) {dali}")


def synthetic_vp9(path: Path, frames: list[Frame]) -> None:
    """Re-encode decoded frames as VP9 (the codec DALI's CPU reader takes)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=30)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame.image, format="rgb24")))
        container.mux(stream.encode())


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"{props.name} ({device}, {props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}")
    return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()}), torch {torch.__version__}"


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected positive integers, got {text!r}")
    return values


@click.command("python -m fersr_stream.bench.gpu", cls=Command)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--faces", default=None, help="Face counts, comma-separated [CUDA 1,4,16; CPU 1,4].")
@click.option("--frames", type=int, default=None, help="Frames per clip [CUDA 30; CPU 2].")
@click.option("--size", type=int, default=None, help="Frame height in pixels, 16:9 [CUDA 1080; CPU 256].")
@click.option("--enhancer", type=click.Choice(["gfpgan", "codeformer", "restoreformer"]), default=None,
              help="Restoration network [CUDA gfpgan; CPU restoreformer].")
@click.option("--full/--small", default=None,
              help="Released network sizes, or narrow CodeFormer/RestoreFormer (GFPGAN is always full) "
                   "[CUDA full; CPU small].")
@click.option("--batch", type=int, default=None, help="Our restoration batch [CUDA 16; CPU 4].")
@click.option("--sweep", default=None, help="Batch sizes to sweep [CUDA 1,2,4,8,16,32; CPU 1,2,4].")
@click.option("--repeat", type=int, default=None, help="Repetitions per measurement (median) [CUDA 3; CPU 1].")
@click.option("--detector", type=click.Choice(["truth", "haar", "mtcnn"]), default="truth", show_default=True,
              help="Faces for both loops: the clip's ground truth, Haar on the host frame, or MTCNN.")
@click.option("--compile", "compiled", is_flag=True, help="torch.compile our restorer (enhance.compile).")
def main(device, faces, frames, size, enhancer, full, batch, sweep, repeat, detector, compiled):
    """Per-face loop vs. batched stream stages; batch sweep; fp16 vs fp32; PyAV vs DALI decode."""
    device = devices.resolve(device)
    given = dict(faces=faces, frames=frames, size=size, enhancer=enhancer, full=full, batch=batch, sweep=sweep,
                 repeat=repeat)
    defaults = CUDA_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    args = {k: defaults[k] if v is None else v for k, v in given.items()}
    args["compile"] = compiled
    counts, sweep_sizes = _ints(str(args["faces"])), _ints(str(args["sweep"]))
    click.echo(f"device: {describe(device)}")
    click.echo(f"settings: faces {args['faces']}, {args['frames']} frames, height {args['size']}, "
               f"{args['enhancer']} ({'full' if args['full'] or args['enhancer'] == 'gfpgan' else 'small'}, "
               f"random-init, upstream file layout), batch {args['batch']}, repeat {args['repeat']}, "
               f"detector {detector}, path {'tensor' if devices.uses_tensor_path(device) else 'host'}"
               f"{', compiled' if compiled else ''}")
    click.echo("ms/frame per step; loop = one face per fp32 forward (GFPGANer); ours = the stream's stages; on CUDA "
               "each padded batch shape ran once before the timing, as in the stream")
    with tempfile.TemporaryDirectory(prefix="fersr-bench-gpu-") as tmp:
        folder = Path(tmp)
        save = {"gfpgan": lambda p: random_weights.save_gfpgan(p),
                "codeformer": lambda p: random_weights.save_codeformer(p, full=args["full"]),
                "restoreformer": lambda p: random_weights.save_restoreformer(p, full=args["full"])}
        weights = save[args["enhancer"]](folder / f"{args['enhancer']}.pth")
        net = enhance.create(EnhanceConfig(name=args["enhancer"], weights=str(weights), batch=args["batch"],
                                           compile=compiled), device)
        classifier = classify.load(None, device)
        found = None if detector == "truth" else detect.create(DetectConfig(name=detector), device)

        def models_for(clip_frames, boxes) -> Models:
            return Models(found or TruthDetector(clip_frames, boxes), net, classifier)

        for n_faces in counts:
            path, frames, models = compare(n_faces, args, models_for, folder, device)
        crops = _crops(frames, models, device)  # the last clip's aligned crops, on the device
        batch_sweep(net, crops, sweep_sizes, args["repeat"], device)
        fp16_vs_fp32(net, crops.select(slice(0, max(sweep_sizes))), args["repeat"], device)
        time_detectors(frames, device, args["repeat"])
        decode_fps(path, frames, folder, device, args["repeat"])


def _crops(frames: list[Frame], models: Models, device: torch.device) -> DeviceCrops:
    """512 px aligned crops of every face of ``frames``, on ``device``."""
    found = models.detector.detect([f.image for f in frames])
    crops = [align.crop(f.image, align.face_affines(faces), 512) for f, faces in zip(frames, found) if len(faces)]
    return DeviceCrops(HostCrops(np.concatenate(crops)).tensor(device).contiguous())


if __name__ == "__main__":
    main()
