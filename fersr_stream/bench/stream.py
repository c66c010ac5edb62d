"""Stream benchmark: each stage's fps alone, the pipeline's fps, and their ratio, measured in one run.

    python -m fersr_stream.bench                      # 1280x720 clip, one face, no restoration
    python -m fersr_stream.bench --faces 4 --enhancer bicubic --simulate-lr 16
    python -m fersr_stream.bench --known-faces       # the clip's true boxes instead of detection
    python -m fersr_stream.bench --clip megamind     # a real clip (python -m fersr_stream.testing.footage)

A clip with moving faces (scikit-image's astronaut, from the ``test`` extra) is generated in a temporary folder.
"Alone" means the stage's own function run serially over every frame (decode: iterating the source; write:
encoding to a video file), with the same batching as in the pipeline. The pipeline is the real ``fersr-stream``
run (threads, queues, sinks) on the same clip and config. Timings on a shared machine are noisy: each repeat
measures the stages alone and then the pipeline, the medians over repeats are reported (and the pipeline's min),
and each ratio is the median of the repeats' own ratios.

The pipeline cannot beat its slowest stage, nor the CPU-bound limit (cores / the stages' summed CPU time per
frame): where the stages' costs are balanced, the second is the lower one, and the ratio pipeline / slowest stage
is capped below 1 by it; the benchmark prints that cap and the ratio pipeline / CPU-bound limit.

Where the slowest stage's time goes inside the pipeline is printed too, from its thread's wall and CPU time: on a
core, runnable but waiting for one (inside its function, off the CPU), and waiting for frames (before the first
one, then starved); and its CPU per frame against alone (caches and memory shared with the busy stages).
The ratio is about the first share divided by that factor. The CPU-bound limit is printed a second time from the
stages' CPU inside the pipeline: the gap between it and the pipeline is what the threads and queues themselves cost.

Accuracy beside speed: every pipeline run also writes its JSON lines, and the faces in them are scored against the
clip's truth (:mod:`fersr_stream.bench.accuracy`): recall, unmatched detections, and the most frames a face waited
to be found. The synthetic clip's truth is where its faces were pasted; a real clip's (``--clip``) is MTCNN at full
resolution on every frame, counting faces of 40 px and more.

``--known-faces`` hands every stage the clip's ground-truth boxes instead of detecting (the detect stage then
costs next to nothing), both alone and in the pipeline: it shows what the rest of the pipeline reaches around the
slowest stage when detection is free.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import click
import numpy as np

from ..cli import Command
from .. import config as cfg
from .. import device as devices
from ..detect import Detector
from ..pipeline import session
from ..pipeline import stages as stage_builder
from ..pipeline.models import load_models
from ..pipeline.runner import run_serially, start_here
from ..pipeline.stats import Stats
from ..sources import open_source
from ..testing import footage, scenes, synthetic
from ..types import Faces
from . import accuracy


def make_clip(path: Path, n_frames: int, width: int, height: int, n_faces: int) -> np.ndarray:
    """Write the benchmark's clip; returns its ground-truth boxes, (n_frames, n_faces, 4)."""
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("the benchmark needs scikit-image: pip install -e '.[test]'") from None
    face = np.ascontiguousarray(data.astronaut()[40:190, 150:300])
    size = min(height // 2, width // max(n_faces, 1) - 8)
    return synthetic.write_clip(path, [face] * n_faces, n_frames=n_frames, width=width, height=height, fps=30,
                                min_size=max(48, size // 2), max_size=size)


class KnownFaces(Detector):
    """A detector that returns the clip's ground-truth boxes (score 1), one frame after another from the first:
    a fresh one for every pass over the clip, fed from one thread. ``boxes``: per frame, (K, 4)."""

    def __init__(self, boxes):
        self._boxes = iter([np.asarray(b, np.float32) for b in boxes])

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        boxes = [next(self._boxes) for _ in images]
        return [Faces(b, np.ones(len(b), np.float32)) for b in boxes]


def stage_alone(config: cfg.StreamConfig, models, out: Path) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per frame of each stage run alone, serially, over the whole clip.

    CPU time counts every thread of the process (OpenCV, x264 and torch run their own), so the sum over stages
    divided by the number of cores bounds what the threaded pipeline can reach.
    """
    from .. import sinks, sources

    times: dict[str, tuple[float, float]] = {}
    with sources.open_source(config.source.uri[0], config.source, device=config.device) as source:
        t0, c0 = time.perf_counter(), time.process_time()
        frames = list(source)
        times["decode"] = ((time.perf_counter() - t0) / len(frames), (time.process_time() - c0) / len(frames))
        sink = sinks.open_sink(str(out), source.info, config.output)
    built = stage_builder.build(config, models, sinks=[[sink]], stats=Stats(), stop=threading.Event())
    start_here(built)  # warm-ups (CUDA) are not timed, as in the pipeline
    for stage in built:
        t0, c0 = time.perf_counter(), time.process_time()
        done = run_serially([stage], frames)
        stage.close()
        times[stage.name] = ((time.perf_counter() - t0) / len(frames), (time.process_time() - c0) / len(frames))
        frames = done
    return times


@click.command("python -m fersr_stream.bench", cls=Command)
@click.option("--frames", default=300, show_default=True,
              help="Clip length; the pipeline's fill (time to its first frame out) is paid once per run.")
@click.option("--width", default=1280, show_default=True)
@click.option("--height", default=720, show_default=True)
@click.option("--faces", "n_faces", default=1, show_default=True)
@click.option("--enhancer", default="none", show_default=True)
@click.option("--simulate-lr", type=int, default=None)
@click.option("--device", default="cpu", show_default=True)
@click.option("--repeat", default=3, show_default=True, help="Repetitions of each measurement.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config overrides, as for fersr-stream.")
@click.option("--known-faces", is_flag=True,
              help="Give the stages the clip's true boxes instead of detecting (detection then costs ~nothing).")
@click.option("--clip", "clip_name", type=click.Choice([c.name for c in footage.CLIPS]),
              help="A real clip instead of the synthetic one (fetch it first: python -m fersr_stream.testing.footage).")
def main(frames, width, height, n_faces, enhancer, simulate_lr, device, repeat, sets, known_faces, clip_name):
    """Measure stage-alone fps, pipeline fps and the ratio pipeline / slowest stage, and the pipeline's recall."""
    with tempfile.TemporaryDirectory(prefix="fersr-bench-") as tmp:
        tmp = Path(tmp)
        clip, truths = _clip(tmp, clip_name, frames, width, height, n_faces)
        config = cfg.load(None, [f"source.uri={clip}", f"output.video={tmp / 'out.mp4'}",
                                 f"output.jsonl={tmp / 'out.jsonl'}", f"enhance.name={enhancer}",
                                 f"degrade.width={simulate_lr if simulate_lr else 'null'}", f"device={device}",
                                 f"max_frames={frames}", *sets])
        models = load_models(config, devices.resolve(config.device))

        def fresh():  # known faces are handed out in order, so each pass over the clip gets its own
            return dataclasses.replace(models, detector=KnownFaces([t.boxes for t in truths])) if known_faces \
                else models

        runs = measure(config, fresh, repeat, tmp / "alone.mp4", truths)
    described = clip_name or f"synthetic, {n_faces} face(s)"
    click.echo(f"clip: {described}, {len(truths)} frames, enhancer {enhancer}, simulate-lr {simulate_lr}, "
               f"device {device}, {repeat} repeats (median), {os.cpu_count()} cores"
               f"{', known faces (no detection)' if known_faces else ''}")
    report(runs)


def _clip(folder: Path, name: str | None, frames: int, width: int, height: int, n_faces: int):
    """(path, truths) of the clip: the synthetic one written into ``folder`` (its faces' pasted boxes), or a fetched
    real clip, whose truths are the reference detector's (that takes a while)."""
    if name is None:
        path = folder / "clip.mp4"
        return path, accuracy.truths_from_boxes(make_clip(path, frames, width, height, n_faces))
    path = footage.path(name)
    if path is None:
        raise click.UsageError(f"{name} is not fetched: python -m fersr_stream.testing.footage {name}")
    with open_source(str(path)) as source:
        images = [frame.image for _, frame in zip(range(frames), source)]
    return path, accuracy.reference(images)


@dataclasses.dataclass
class Runs:
    """Per repeat: each stage's (wall, CPU) s/frame alone; the pipeline's fps, fill, (wall, per-stage stats) and
    the accuracy of the faces it wrote."""

    alone: list[dict[str, tuple[float, float]]] = dataclasses.field(default_factory=list)
    pipeline: list[float] = dataclasses.field(default_factory=list)
    fills: list[float] = dataclasses.field(default_factory=list)
    inside: list[tuple[float, dict]] = dataclasses.field(default_factory=list)
    scores: list[accuracy.Score] = dataclasses.field(default_factory=list)


def measure(config: cfg.StreamConfig, models, repeat: int, alone_out: Path, truths: list[scenes.Truth]) -> Runs:
    """Each repeat measures the stages alone and then the pipeline, so a ratio compares measurements taken a few
    seconds apart (a shared host's speed drifts over minutes); the stages alone run with the thread settings the
    stream gives them, so the two compare. ``models()`` gives the models for one pass over the clip; the faces the
    pipeline wrote (its JSON lines) are scored against ``truths``."""
    runs = Runs()
    heavy = config.enhance.name not in ("none", "bicubic")
    for _ in range(repeat):
        with devices.stream_threads(devices.resolve(config.device), heavy_model=heavy):
            runs.alone.append(stage_alone(config, models(), alone_out))
        stats = session.run(config, models()).stats
        runs.pipeline.append(stats.fps)
        runs.fills.append(stats.fill)
        runs.inside.append((stats.wall, stats.stages))
        runs.scores.append(accuracy.score(accuracy.faces_written(config.output.jsonl), truths, 0.0, 40.0))
    return runs


def report(runs: Runs) -> None:
    """Print the stages' table, the pipeline against the slowest stage and the CPU-bound limit, and where the
    slowest stage's time goes inside the pipeline."""
    alone, pipeline, inside, cores = runs.alone, runs.pipeline, runs.inside, os.cpu_count()
    per_stage = {name: statistics.median(run[name][0] for run in alone) for name in alone[0]}
    cpu = {name: statistics.median(run[name][1] for run in alone) for name in alone[0]}
    in_pipeline = {name: statistics.median(s[name].cpu / s[name].items for _, s in inside) for name in per_stage}
    click.echo(f"{'stage':<10} {'ms/frame':>9} {'fps alone':>10} {'cpu ms/frame':>13} {'in pipeline':>12}")
    for name, seconds in per_stage.items():
        click.echo(f"{name:<10} {1000 * seconds:>9.2f} {1 / seconds:>10.1f} {1000 * cpu[name]:>13.2f} "
                   f"{1000 * in_pipeline[name]:>12.2f}")
    slowest = max(per_stage, key=per_stage.get)
    slowest_fps = 1 / per_stage[slowest]
    limit = cores / sum(cpu.values())
    # per repeat: the pipeline against the slowest stage and the CPU-bound limit measured just before it
    ratios = [fps * max(wall for wall, _ in run.values()) for fps, run in zip(pipeline, alone)]
    cpu_ratios = [fps * sum(c for _, c in run.values()) / cores for fps, run in zip(pipeline, alone)]
    click.echo(f"serial sum of stages: {1 / sum(per_stage.values()):.1f} fps; "
               f"CPU-bound limit on {cores} cores: {limit:.1f} fps")
    click.echo(f"pipeline: median {statistics.median(pipeline):.1f} fps, min {min(pipeline):.1f} fps over "
               f"{len(pipeline)} runs (first frame out after {1000 * statistics.median(runs.fills):.0f} ms, included)")
    click.echo(f"ratio pipeline / slowest stage ({slowest}, {slowest_fps:.1f} fps): {statistics.median(ratios):.2f} "
               f"(at most {min(1.0, limit / slowest_fps):.2f} here: the CPU-bound limit / the slowest stage); "
               f"per repeat: {' '.join(f'{r:.2f}' for r in ratios)}")
    click.echo(f"ratio pipeline / CPU-bound limit: median {statistics.median(cpu_ratios):.2f}")
    # the same limit from the CPU the stages took inside the pipeline (more than alone: caches, memory and cores
    # are shared, batches are smaller): what is left between it and the pipeline is the runner's own cost
    inside_ratios = [fps * sum(s.cpu / s.items for s in stages.values()) / cores
                     for fps, (_, stages) in zip(pipeline, inside)]
    click.echo(f"CPU-bound limit from the stages' CPU inside the pipeline: {cores / sum(in_pipeline.values()):.1f} "
               f"fps; pipeline / it: median {statistics.median(inside_ratios):.2f}")
    shares = [time_shares(wall, stages[slowest]) for wall, stages in inside]
    on_cpu, waiting_core, waiting_frames = (statistics.median(s[i] for s in shares) for i in range(3))
    click.echo(f"{slowest} in the pipeline (median): on a core {100 * on_cpu:.1f} % of the wall, waiting for a core "
               f"{100 * waiting_core:.1f} %, waiting for frames {100 * waiting_frames:.1f} %; "
               f"CPU per frame {in_pipeline[slowest] / cpu[slowest]:.2f}x alone")
    s = runs.scores[-1]
    click.echo(f"faces the pipeline wrote: recall {s.recall:.3f} of {s.faces} true faces, unmatched "
               f"{s.unmatched_share:.3f} of {s.detections} detections, found at most {s.late} frames late")


def time_shares(wall: float, stage) -> tuple[float, float, float]:
    """Shares of the pipeline's wall time: ``stage`` on a core, runnable but waiting for one, waiting for frames."""
    return stage.cpu / wall, (stage.busy - stage.cpu) / wall, 1 - stage.busy / wall


if __name__ == "__main__":
    main()
