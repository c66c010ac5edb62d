"""Restoration benchmark: the official per-frame GFPGANer loop vs. the stream's restoration, in one run.

    python -m fersr_stream.bench.restore                       # 3 faces x 8 frames at 640x360
    python -m fersr_stream.bench.restore --frames 16 --faces 2 --repeat 3

The official baseline needs the ``reference`` extra (``pip install -e '.[reference]'``).

Both loops get the same frames (scikit-image's astronaut pasted at moving, breathing boxes), the same weights (a
random-init file in the GFPGANv1.4 layout, loaded by each side its own way) and the same five landmarks per face.
Landmarks are handed over, not detected: a random-init RetinaFace would report random faces, so the official
helper's detection step is replaced by one that installs the given landmarks, and detection is timed in neither
loop.

Timed, per mode, over the whole clip:

- official: ``gfpgan.GFPGANer(upscale=1).enhance(frame_bgr)`` per frame -- its own alignment (LMEDS similarity +
  warp), one GFPGAN forward per face (fresh noise each call, as upstream), and its paste-back, which runs ParseNet
  (facexlib's, random-init, same cost as the released one) on every restored face for the blending mask. Its
  RetinaFace and ParseNet files are written, random-init, where facexlib looks for them, so nothing is downloaded.
  When gfpgan is not installed, a GFPGANer-style loop stands in: one face at a time through the same network
  object, each pasted back with our feathered mask (no ParseNet, so the official cost is understated).
- ours: the stream's own stages (:mod:`fersr_stream.pipeline.stages`): track, crop (FFHQ alignment), enhance
  (``RestorePolicy`` + the batched, seeded GFPGAN enhancer) and overlay (feathered paste-back + box drawing), run
  serially over the clip in the stream's batches -- first restoring every face in every frame, then with
  ``--reuse-every``.

Timings on a shared machine are noisy: ``--repeat`` runs the modes in rounds and reports the median and min.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from ..cli import Command
from .. import align
from ..testing import reference, synthetic
from .. import config as cfg
from ..pipeline.stages import CropStage, EnhanceStage, OverlayStage, TrackStage
from ..pipeline.runner import run_serially, start_here
from ..pipeline.stats import Stats
from ..types import Faces, Frame

# The five landmarks (subject's right eye, left eye, nose tip, right and left mouth corners; x, y pixels) of the
# astronaut's face in scikit-image's astronaut()[40:190, 150:300], read off the image by hand.
FACE_SLICE = (slice(40, 190), slice(150, 300))
FACE_LANDMARKS = np.array([[53.0, 61.0], [96.0, 63.0], [73.0, 84.0], [55.0, 103.0], [94.0, 103.0]], np.float32)
# Faces follow synthetic.face_boxes' paths as in a 150-frame clip (5 s at 30 fps: a size cycle 90 -> 180 -> 90
# px), whatever --frames is, so a short clip moves at video speed rather than squeezing a whole cycle into it.
MOTION_FRAMES = 150
CPU = torch.device("cpu")  # the target; on CUDA the stages take the tensor path, not measured here


@dataclass
class Result:
    """One timed pass of one mode. ``restored``: faces that left with a restored face (made or reused)."""

    mode: str
    seconds: float
    restored: int
    restorations: int
    reuses: int


def make_scene(n_frames: int, n_faces: int, width: int, height: int) -> list[Frame]:
    """Frames with their faces already known: boxes and landmarks (the same ones both loops get).

    Returns:
        ``n_frames`` frames of (height, width, 3) uint8 RGB, each with ``faces`` holding (n_faces, 4) boxes and
        (n_faces, 5, 2) landmarks in frame pixels.
    """
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("the benchmark needs scikit-image: pip install -e '.[test]'") from None
    face = np.ascontiguousarray(data.astronaut()[FACE_SLICE])
    size = min(height // 2, width // max(n_faces, 1) - 8)
    boxes = synthetic.face_boxes(n_faces, max(n_frames, MOTION_FRAMES), width, height, max(48, size // 2),
                                 size)[:n_frames]
    frames = []
    for index, (image, frame_boxes) in enumerate(zip(synthetic.render([face] * n_faces, boxes, width, height, 30),
                                                     boxes)):
        frame_boxes = frame_boxes.astype(np.float32)
        scale = (frame_boxes[:, 2] - frame_boxes[:, 0]) / face.shape[1]  # render() resizes the face into the box
        # pixel centres: crop pixel c lands at (c + 0.5) * scale - 0.5 past the box's corner
        landmarks = (FACE_LANDMARKS[None] + 0.5) * scale[:, None, None] - 0.5 + frame_boxes[:, None, :2]
        faces = Faces(frame_boxes, np.ones(n_faces, np.float32), landmarks=landmarks.astype(np.float32))
        frames.append(Frame(index, image, faces=faces))
    return frames


# --- the official loop ---------------------------------------------------------------------------------------------


def official_available() -> bool:
    """Whether the official ``gfpgan`` stack (with basicsr and facexlib) is installed: the ``reference`` extra."""
    return reference.installed()


def load_official(weights: Path, workdir: Path, device: torch.device):
    """``gfpgan.GFPGANer`` on ``weights``, with upscale 1 (the stream pastes at source size) and no background
    upsampler.

    GFPGANer's helper loads facexlib's RetinaFace-ResNet50 and ParseNet from ``gfpgan/weights`` under the working
    directory, downloading them when absent; random-init files in their released layouts are written there first
    (in ``workdir``), so nothing is fetched.
    """
    GFPGANer = reference.load("gfpgan").GFPGANer
    from facexlib.parsing.parsenet import ParseNet

    from ..detect.retinaface import build_retinaface

    folder = workdir / "gfpgan" / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(build_retinaface("resnet50").state_dict(), folder / "detection_Resnet50_Final.pth")
        torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), folder / "parsing_parsenet.pth")
    with contextlib.chdir(workdir):
        return GFPGANer(model_path=str(weights), upscale=1, arch="clean", channel_multiplier=2, bg_upsampler=None,
                        device=device)


def _given_landmarks(helper, faces: Faces, **_) -> int:
    """Stands in for ``FaceRestoreHelper.get_face_landmarks_5``: installs ``faces``' landmarks as its detections."""
    for box, score, landmarks in zip(faces.boxes, faces.scores, faces.landmarks):
        helper.all_landmarks_5.append(landmarks.astype(np.float64))
        helper.det_faces.append(np.append(box, score).astype(np.float64))
    return len(faces)


def run_official(restorer, frames: list[Frame]) -> Result:
    """``restorer.enhance(frame_bgr)`` on every frame (detection replaced by the frame's known landmarks)."""
    helper = restorer.face_helper
    restored = 0
    t0 = time.perf_counter()
    for frame in frames:
        helper.get_face_landmarks_5 = functools.partial(_given_landmarks, helper, frame.faces)
        _, faces, _ = restorer.enhance(cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), paste_back=True)
        restored += len(faces)
    seconds = time.perf_counter() - t0
    return Result("official GFPGANer", seconds, restored, restored, 0)


def run_official_style(model: torch.nn.Module, frames: list[Frame], device: torch.device) -> Result:
    """The fallback: GFPGANer's shape (align, restore one face at a time with fresh noise, paste each back) on
    ``model``, the bare network our enhancer holds; our feathered mask replaces ParseNet's."""
    restored = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for frame in frames:
            affines = align.face_affines(frame.faces, 512)
            image = frame.image
            for crop, affine in zip(align.crop(frame.image, affines, 512), affines):
                x = torch.from_numpy(crop).to(device).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
                y, _ = model(x.contiguous(), return_rgb=False, randomize_noise=True)
                face = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
                image = align.paste_back(image, face[None], affine[None])
                restored += 1
    seconds = time.perf_counter() - t0
    return Result("GFPGANer-style loop (fallback)", seconds, restored, restored, 0)


# --- ours ----------------------------------------------------------------------------------------------------------


def run_ours(config: cfg.StreamConfig, enhancer, frames: list[Frame]) -> Result:
    """The stream's track, crop, enhance and overlay stages, run serially over ``frames`` in their batches."""
    stats, side = Stats(), config.align.size
    chain = [TrackStage(config.track), CropStage(side, config.align, config.degrade),
             EnhanceStage(enhancer, config.enhance, stats, side), OverlayStage(config.overlay)]
    start_here(chain)  # warm-ups (CUDA) are not timed, as in the stream
    t0 = time.perf_counter()
    frames = run_serially(chain, frames)
    seconds = time.perf_counter() - t0
    restored = sum(int(f.faces.restored.sum()) for f in frames)
    k = config.enhance.reuse_every
    mode = f"ours, --reuse-every {k}" if k else "ours, every face"
    return Result(mode, seconds, restored, stats.counters.get("restorations", 0), stats.counters.get("reuses", 0))


def our_config(reuse_every: int, batch: int) -> cfg.StreamConfig:
    """The stream config ``fersr-stream --enhancer gfpgan --paste --reuse-every K`` would resolve to."""
    return cfg.load(None, ["enhance.name=gfpgan", f"enhance.reuse_every={reuse_every}", f"enhance.batch={batch}",
                           "overlay.paste=true"])


# --- report --------------------------------------------------------------------------------------------------------


def table(results: dict[str, list[Result]], baseline: str) -> str:
    """One row per mode: counts, median and min seconds, s/face, faces/s and speed-up vs ``baseline`` (medians)."""
    base = statistics.median(r.seconds for r in results[baseline])
    rows = [f"{'mode':<32} {'faces':>6} {'restorations':>12} {'reuses':>6} {'median s':>9} {'min s':>8} "
            f"{'s/face':>7} {'faces/s':>8} {'speed-up':>8}"]
    for mode, runs in results.items():
        seconds = statistics.median(r.seconds for r in runs)
        last = runs[-1]
        rows.append(f"{mode:<32} {last.restored:>6} {last.restorations:>12} {last.reuses:>6} {seconds:>9.2f} "
                    f"{min(r.seconds for r in runs):>8.2f} {seconds / max(last.restored, 1):>7.3f} "
                    f"{last.restored / seconds:>8.3f} {base / seconds:>7.2f}x")
    return "\n".join(rows)


@click.command("python -m fersr_stream.bench.restore", cls=Command)
@click.option("--frames", "n_frames", default=8, show_default=True, help="Frames in the clip.")
@click.option("--faces", "n_faces", default=3, show_default=True, help="Faces per frame.")
@click.option("--width", default=640, show_default=True)
@click.option("--height", default=360, show_default=True)
@click.option("--reuse-every", default=8, show_default=True, help="K for the reuse mode.")
@click.option("--batch", default=8, show_default=True, help="enhance.batch: faces per forward, frames per call.")
@click.option("--repeat", default=1, show_default=True, help="Rounds of all modes (median and min reported).")
def main(n_frames, n_faces, width, height, reuse_every, batch, repeat):
    """Time the official per-frame GFPGANer loop against the stream's restoration on the same clip and weights."""
    from .. import enhance
    from ..config import EnhanceConfig
    from ..testing import random_weights

    if min(n_frames, n_faces, repeat, batch) < 1 or reuse_every < 1:
        raise click.BadParameter("--frames, --faces, --repeat, --batch and --reuse-every must be at least 1")
    frames = make_scene(n_frames, n_faces, width, height)
    official = official_available()
    with tempfile.TemporaryDirectory(prefix="fersr-bench-restore-") as tmp:
        tmp = Path(tmp)
        weights = random_weights.save_gfpgan(tmp / "GFPGANv1.4.pth", seed=0)
        enhancer = enhance.create(EnhanceConfig(name="gfpgan", weights=str(weights), batch=batch), CPU)
        restorer = load_official(weights, tmp, CPU) if official else None
    configs = [our_config(0, batch), our_config(reuse_every, batch)]

    # one untimed face each, so first-call allocations count in neither loop
    first = frames[0].replace(faces=frames[0].faces.select(np.arange(1)))
    if official:
        run_official(restorer, [first])
        baseline = "official GFPGANer"
    else:
        run_official_style(enhancer.model, [first], CPU)
        baseline = "GFPGANer-style loop (fallback)"
    run_ours(configs[0], enhancer, [first])

    results: dict[str, list[Result]] = {}
    for _ in range(repeat):
        runs = [run_official(restorer, frames) if official else run_official_style(enhancer.model, frames, CPU)]
        runs += [run_ours(config, enhancer, frames) for config in configs]
        for result in runs:
            results.setdefault(result.mode, []).append(result)

    click.echo(f"clip: {n_frames} frames {width}x{height}, {n_faces} faces ({n_frames * n_faces} face-frames); "
               f"weights: random-init GFPGANv1.4 layout; CPU, {torch.get_num_threads()} torch threads, "
               f"{platform.machine()} {platform.processor() or ''}; {repeat} round(s)".replace(" ;", ";"))
    if official:
        from importlib.metadata import version

        click.echo(f"official: gfpgan {version('gfpgan')} GFPGANer(upscale=1).enhance per frame, given landmarks, "
                   f"ParseNet paste-back (detection not timed)")
    else:
        click.echo("official: gfpgan NOT installed -- baseline is a GFPGANer-style loop on the same network "
                   "(one face at a time, feathered paste-back, no ParseNet: understates the official cost)")
    click.echo(f"ours: stream stages track, crop, enhance, overlay; enhance.batch {batch} (frames per call; "
               f"{enhancer.batch} face(s) per forward here); paste-back on")
    click.echo(table(results, baseline))
    medians = {mode: statistics.median(r.seconds for r in runs) for mode, runs in results.items()}
    base = medians[baseline]
    every, reuse = (medians[mode] for mode in list(medians)[1:])
    verdict = {True: "met", False: "NOT met"}
    click.echo(f"targets: every face >= 2x: {base / every:.2f}x ({verdict[base / every >= 2]}); "
               f"--reuse-every {reuse_every} >= 10x: {base / reuse:.2f}x ({verdict[base / reuse >= 10]})")


if __name__ == "__main__":
    main()
