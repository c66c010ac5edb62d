"""Archive annotation on a local Ray (``fersr-stream --executor ray``): files per hour and frames per second with
1 and 2 workers (how it scales on this machine), beside plain runs of the same files one after another, with the
faces each file's JSON lines hold scored against the clips' truth (recall) and whether they equal the plain run's
byte for byte.

    python -m fersr_stream.bench.archive                        # 4 clips of 60 frames at 1280x720, CPU
    python -m fersr_stream.bench.archive --clips 8 --frames 150 --workers 1,2,4 --device cuda

The clips are the stream benchmark's (one face moving over a background), of two lengths so that the largest
go first. The plain runs load the networks once and run each file in turn in this process; a Ray run's time is
the whole of :func:`fersr_stream.archive.driver.run` on a local Ray started beforehand (so it includes starting
the workers and each loading its networks, as a user's run does, but not starting Ray).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import click

from ..cli import Command
from .. import config as cfg
from .. import device as devices
from ..archive import checks, connect
from . import accuracy
from .stream import make_clip


def make_archive(folder: Path, count: int, frames: int, width: int, height: int) -> dict[str, list]:
    """``count`` clips in ``folder``, every other one half as long; each one's truth by name."""
    folder.mkdir(parents=True, exist_ok=True)
    lengths = [frames if i % 2 == 0 else max(2, frames // 2) for i in range(count)]
    return {f"clip{i}": accuracy.truths_from_boxes(make_clip(folder / f"clip{i}.mp4", n, width, height, 1))
            for i, n in enumerate(lengths)}


def _config(folder: Path, out: Path, device: str, sets: tuple[str, ...]) -> cfg.StreamConfig:
    out.mkdir(parents=True, exist_ok=True)
    return cfg.load(None, [f"source.uri={folder}", f"output.jsonl={out / '{name}.jsonl'}", f"device={device}",
                           *sets])


def plain(folder: Path, out: Path, device: str, sets: tuple[str, ...]) -> float:
    """Seconds to annotate every file in turn without Ray, the networks loaded once (counted)."""
    from ..pipeline import models, session

    start = time.perf_counter()
    config = _config(folder, out, device, sets)
    loaded = models.load_models(config, devices.resolve(config.device))
    for plan in session.per_source(config).values():
        session.run(plan, loaded)
    return time.perf_counter() - start


def on_ray(folder: Path, out: Path, device: str, sets: tuple[str, ...], workers: int) -> float:
    """Seconds of one archive run with ``workers`` workers (Ray already started)."""
    from ..archive import driver

    start = time.perf_counter()
    outcome = driver.run(_config(folder, out, device, sets), workers=workers)
    if outcome.failed:
        raise click.ClickException(f"the archive run failed: {outcome.text()}")
    return time.perf_counter() - start


def score(out: Path, reference: Path, truths: dict[str, list]) -> tuple[int, float, int]:
    """Frames written, the lowest recall over the files, and how many files' JSON lines equal the reference's."""
    frames, recalls, same = 0, [], 0
    for name, truth in truths.items():
        written = accuracy.faces_written(out / f"{name}.jsonl")
        frames += len(written)
        recalls.append(accuracy.score(written, truth, 0.0, 40.0).recall)
        same += (out / f"{name}.jsonl").read_bytes() == (reference / f"{name}.jsonl").read_bytes()
    return frames, min(recalls), same


def _row(label: str, times: list[float], files: int, frames: int, recall: float, same: int,
         base: float | None) -> str:
    """One row: seconds min/median over the repeats; files/h, frames/s and the speed-up from the median."""
    seconds = statistics.median(times)
    ratio = f"{base / seconds:>8.2f}" if base else f"{'':>8}"
    spread = f"{min(times):.1f}/{seconds:.1f}"
    return (f"{label:<16} {spread:>11} {files * 3600 / seconds:>8.0f} {frames / seconds:>8.2f} {ratio} "
            f"{recall:>7.3f} {same:>4}/{files}")


@click.command("python -m fersr_stream.bench.archive", cls=Command)
@click.option("--clips", default=4, show_default=True, help="Files in the archive.")
@click.option("--frames", default=60, show_default=True, help="Frames of the longer clips (the others: half).")
@click.option("--width", default=1280, show_default=True)
@click.option("--height", default=720, show_default=True)
@click.option("--workers", "counts", default="1,2", show_default=True, help="Numbers of Ray workers, comma-separated.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(min=1), help="Runs of each row.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config overrides, as for fersr-stream.")
def main(clips: int, frames: int, width: int, height: int, counts: str, device: str, repeat: int,
         sets: tuple[str, ...]) -> None:
    """Files/hour and frames/s of archive runs with 1, 2... Ray workers against plain runs, with recall."""
    checks.require_ray()
    import ray

    try:
        numbers = [int(c) for c in counts.split(",") if c.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {counts!r}", param_hint="--workers") from None
    with tempfile.TemporaryDirectory(prefix="fersr-bench-archive-") as tmp:
        tmp = Path(tmp)
        truths = make_archive(tmp / "archive", clips, frames, width, height)
        click.echo(f"archive: {clips} clips of {frames} and {max(2, frames // 2)} frames at {width}x{height}, one "
                   f"face each; device {device}; {os.cpu_count()} cores; times include loading the networks "
                   f"(once for plain, once per worker for Ray); seconds min/median of {repeat}, the rest from the "
                   f"median; speed-up: against the first Ray row")
        click.echo(f"{'run':<16} {'seconds':>11} {'files/h':>8} {'frames/s':>8} {'speed-up':>8} {'recall':>7} "
                   f"{'JSONL = plain':>13}")
        reference = tmp / "plain0"
        times = [plain(tmp / "archive", tmp / f"plain{r}", device, sets) for r in range(repeat)]
        click.echo(_row("plain, 1 process", times, clips, *score(reference, reference, truths), None))
        connect.init(None, num_cpus=os.cpu_count())
        try:
            base = None
            for n in numbers:  # each repeat in a folder of its own: a rerun into the same one would skip every file
                times = [on_ray(tmp / "archive", tmp / f"ray{n}-{r}", device, sets, n) for r in range(repeat)]
                base = base or statistics.median(times)
                click.echo(_row(f"ray, {n} worker{'s' if n > 1 else ''}", times, clips,
                                *score(tmp / f"ray{n}-0", reference, truths), base))
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
