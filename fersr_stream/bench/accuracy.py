"""Detection accuracy beside its speed: the stream's detect stage under each speed option, on synthetic scenes with
known faces and on real footage, against a reference, in one run.

    python -m fersr_stream.bench.accuracy                          # every option, every scene and fetched clip
    python -m fersr_stream.bench.accuracy --options default,haar --clips small,megamind --frames 90

- Truth: on the synthetic scenes (:mod:`fersr_stream.testing.scenes`) the faces' known boxes; on real footage
  (:mod:`fersr_stream.testing.footage`, fetched beforehand) the reference: MTCNN at full resolution on every frame.
  Reference faces narrower than ``--min-face`` (40 px) are not counted for recall, nor scenes' faces mostly outside
  the frame; a detection that matches them is not counted as unmatched either.
- Match: a detection and a true face are one face when the detection's centre lies inside the true box and their
  widths are within 2x of each other (detectors draw their boxes differently); one to one, best overlap first.
- recall: true faces matched / true faces; unmatched: detections matching no face / detections; late: the most
  frames any face waited, from its first counted frame to its first match (the first frame: 0 when found there);
  ms: the detect stage's wall time per frame, one thread, as in the stream.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from ..cli import Command
from .. import config as cfg
from ..detect import create
from ..pipeline.stages import DetectStage
from ..sources import open_source
from ..testing import footage, scenes
from ..track import iou_matrix
from ..types import Faces, Frame

# name -> --set overrides of the stream's defaults: the speed options whose recall cost is printed
OPTIONS = {
    "default": [],
    "haar": ["detect.name=haar", "detect.full_every=10", "detect.score_threshold=0.6", "detect.scale_factor=1.2"],
    "haar-whole": ["detect.name=haar", "detect.full_every=1", "detect.score_threshold=0.6",
                   "detect.scale_factor=1.2"],
    "mtcnn-whole": ["detect.name=mtcnn", "detect.full_every=1"],  # every frame searched whole
    "mtcnn-every4": ["detect.name=mtcnn", "detect.changed_only=false"],
}


@dataclasses.dataclass
class Score:
    """One option on one clip."""

    faces: int  # true faces counted
    found: int  # of them, matched
    detections: int
    unmatched: int
    late: int  # frames
    ms: float  # per frame

    @property
    def recall(self) -> float:
        return self.found / self.faces if self.faces else float("nan")

    @property
    def unmatched_share(self) -> float:
        return self.unmatched / self.detections if self.detections else 0.0


def match(found: np.ndarray, true: np.ndarray) -> list[tuple[int, int]]:
    """(detection, true face) index pairs, one to one: a detection's centre inside the true box and widths within
    2x of each other; the pairs that overlap most first."""
    if not len(found) or not len(true):
        return []
    centres = (found[:, None, :2] + found[:, None, 2:]) / 2
    inside = ((centres >= true[None, :, :2]) & (centres <= true[None, :, 2:])).all(axis=2)
    ratio = (found[:, None, 2] - found[:, None, 0]) / np.maximum(true[None, :, 2] - true[None, :, 0], 1e-6)
    overlap = np.where(inside & (ratio >= 0.5) & (ratio <= 2.0), iou_matrix(found, true) + 1e-6, 0.0)
    pairs, used_found, used_true = [], set(), set()
    for flat in np.argsort(-overlap, axis=None):
        i, j = np.unravel_index(flat, overlap.shape)
        if overlap[i, j] <= 0:
            break
        if i not in used_found and j not in used_true:
            pairs.append((int(i), int(j)))
            used_found.add(i)
            used_true.add(j)
    return pairs


def score(detected: list[Faces], truths: list[scenes.Truth], ms: float, min_face: float) -> Score:
    """How ``detected`` (per frame) fares against ``truths``: see the module notes."""
    faces = found = detections = unmatched = late = 0
    waiting: dict[int, int] = {}  # face id -> frames it has been counted without a match
    done: set[int] = set()
    for got, truth in zip(detected, truths):
        counted = truth.present & (truth.boxes[:, 2] - truth.boxes[:, 0] >= min_face)
        pairs = match(got.boxes, truth.boxes)
        matched_true = {j for _, j in pairs}
        faces += int(counted.sum())
        found += sum(1 for j in matched_true if counted[j])
        detections += len(got)
        unmatched += len(got) - len(pairs)
        for j in np.flatnonzero(counted):
            face = int(truth.ids[j])
            if face in done:
                continue
            if j in matched_true:
                late = max(late, waiting.get(face, 0))
                done.add(face)
            else:
                waiting[face] = waiting.get(face, 0) + 1
    late = max([late, *(n for face, n in waiting.items() if face not in done)])
    return Score(faces, found, detections, unmatched, late, ms)


def truths_from_boxes(boxes: np.ndarray) -> list[scenes.Truth]:
    """The truth of a clip whose faces' boxes are known, (frames, faces, 4) as
    :func:`fersr_stream.bench.stream.make_clip` returns them: every face present in every frame, its id its column,
    no landmarks."""
    n = boxes.shape[1]
    return [scenes.Truth(b.astype(np.float32), np.zeros((n, 5, 2), np.float32), np.arange(n), np.ones(n, bool))
            for b in boxes]


def faces_written(path: Path) -> list[Faces]:
    """The faces of each line of a JSON lines file, as the stream wrote them (boxes; score 1)."""
    out = []
    for line in Path(path).read_text().splitlines():
        boxes = [face["box"] for face in json.loads(line)["faces"]]
        out.append(Faces(np.array(boxes, np.float32).reshape(-1, 4), np.ones(len(boxes), np.float32)))
    return out


def run_option(frames: list[np.ndarray], sets: list[str]) -> tuple[list[Faces], float]:
    """The detect stage of a stream configured by ``sets`` over ``frames``, one frame a call as a live stream
    gives them: the faces per frame and the wall ms per frame (one torch and OpenCV thread, as in the stream)."""
    detect = cfg.load(None, ["device=cpu", *sets]).detect

    def fresh() -> DetectStage:
        return DetectStage(create(detect, "cpu"), detect.full_every, changed_only=detect.changed_only)

    fresh().process([Frame(0, frames[0])])  # first-call allocations, untimed; then a fresh stage
    stage = fresh()
    out, seconds = [], []
    for i, image in enumerate(frames):
        t0 = time.perf_counter()
        out.append(stage.process([Frame(i, image)])[0].faces)
        seconds.append(time.perf_counter() - t0)
    return out, 1000 * statistics.mean(seconds)


def reference(frames: list[np.ndarray]) -> list[scenes.Truth]:
    """MTCNN at full resolution on every frame (faces down to 20 px), as truths (ids link faces across frames)."""
    detector = create(cfg.DetectConfig(name="mtcnn", detect_width=100_000, min_face=20), "cpu")
    truths, last, next_id = [], (np.zeros((0, 4), np.float32), np.zeros(0, np.int64)), 0
    for image in frames:
        faces = detector.detect([image])[0]
        ids = np.full(len(faces), -1, np.int64)
        if len(faces) and len(last[0]):
            overlap = iou_matrix(faces.boxes, last[0])
            for i in range(len(faces)):
                if overlap[i].max() >= 0.3:
                    ids[i] = last[1][int(overlap[i].argmax())]
        for i in np.flatnonzero(ids < 0):
            ids[i], next_id = next_id, next_id + 1
        truths.append(scenes.Truth(faces.boxes, faces.landmarks, ids, np.ones(len(faces), bool)))
        last = (faces.boxes, ids)
    return truths


def clips(names: list[str], n_frames: int, folder: Path) -> dict[str, tuple[list[np.ndarray], list[scenes.Truth]]]:
    """Each named clip's decoded frames and truths: scenes rendered and encoded, real clips read (when fetched)."""
    out = {}
    for name in names:
        if name in scenes.SCENES:
            path = folder / f"{name}.mp4"
            truths = scenes.write(name, path, n_frames)
        else:
            path = footage.path(name)
            if path is None:
                click.echo(f"{name}: not fetched (python -m fersr_stream.testing.footage {name}); skipped", err=True)
                continue
            truths = None
        with open_source(str(path)) as source:
            frames = [frame.image for _, frame in zip(range(n_frames), source)]
        out[name] = (frames, truths if truths is not None else reference(frames))
    return out


@click.command("python -m fersr_stream.bench.accuracy", cls=Command)
@click.option("--options", default=",".join(OPTIONS), show_default=True,
              help="Speed options to compare (see OPTIONS), comma-separated.")
@click.option("--set", "extra", multiple=True, metavar="NAME=KEY=VALUE[,KEY=VALUE]",
              help="Another option: its name and --set overrides, e.g. mtcnn5=detect.name=mtcnn,detect.full_every=5.")
@click.option("--clips", "names", default=",".join(scenes.SCENES + tuple(c.name for c in footage.CLIPS)),
              show_default=True, help="Scenes and real clips, comma-separated.")
@click.option("--frames", default=90, show_default=True, help="Frames of each clip.")
@click.option("--min-face", default=40.0, show_default=True, help="True faces narrower than this are not counted.")
def main(options: str, extra: tuple[str, ...], names: str, frames: int, min_face: float) -> None:
    """Recall, unmatched detections, lateness and speed of each detect option on each clip."""
    unknown = [name for name in options.split(",") if name and name not in OPTIONS]
    if unknown:  # --set adds options of its own: they are not named here
        raise click.BadParameter(f"unknown {', '.join(unknown)}; known: {', '.join(OPTIONS)} (add others with "
                                 f"--set NAME=KEY=VALUE)", param_hint="--options")
    chosen = {name: OPTIONS[name] for name in options.split(",") if name}
    for item in extra:
        name, _, sets = item.partition("=")
        chosen[name] = sets.split(",")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="fersr-accuracy-") as tmp:
        data = clips([n for n in names.split(",") if n], frames, Path(tmp))
    click.echo(f"{'clip':<12} {'option':<14} {'recall':>7} {'unmatched':>10} {'late':>5} {'ms/frame':>9} "
               f"{'faces':>6}")
    for clip, (images, truths) in data.items():
        small = min_face if clip not in scenes.SCENES else 0.0  # scenes: every present face counts
        for option, sets in chosen.items():
            detected, ms = run_option(images, sets)
            s = score(detected, truths, ms, small)
            click.echo(f"{clip:<12} {option:<14} {s.recall:>7.3f} {s.unmatched_share:>10.3f} {s.late:>5d} "
                       f"{s.ms:>9.1f} {s.faces:>6d}")


if __name__ == "__main__":
    main()
