"""Many sources in one process: aggregate throughput with 1, 2, 4 and 8 sources sharing the stages (and the
networks' batches), against the same sources each in a process of its own, in one run; with each source's recall.

    python -m fersr_stream.bench.sources                         # the 720p bench clip, 1/2/4/8 sources, CPU
    python -m fersr_stream.bench.sources --counts 1,4,16 --device cuda --frames 300

Each source is a copy of the stream benchmark's clip (:func:`fersr_stream.bench.stream.make_clip`), read as a file
(every frame). "shared" is one ``fersr-stream`` run over all of them; "separate" starts one ``fersr-stream``
process per source at once, as a user without multi-source support would (each loads its own networks, and on a
GPU each runs its own small batches). Throughput is frames (and faces) written per second from the first frame
written to the end of the last run (so after the models loaded and warmed up), and, apart, per second of the whole
runs, start-up included. The faces each source's
JSON lines hold are scored against the clip's truth (recall, the lowest over the sources: a source must not lose
faces to its neighbours).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from ..cli import Command
from ..testing import scenes
from . import accuracy
from .stream import make_clip


def _command(sources: list[Path], out: Path, device: str, sets: tuple[str, ...]) -> list[str]:
    args = [sys.executable, "-m", "fersr_stream.cli.stream", "--device", device, "--jsonl", str(out / "{name}.jsonl")]
    for source in sources:
        args += ["--source", str(source)]
    for item in sets:
        args += ["--set", item]
    return args


def run(sources: list[Path], out: Path, device: str, sets: tuple[str, ...], shared: bool) -> tuple[float, float]:
    """(seconds from the first frame written to the end of the last run, seconds from start to that end): one
    process over all ``sources``, or one process each, all started at once. A source's first frame written is
    when its JSON lines file appears (the sinks make their files with the first frame)."""
    out.mkdir(parents=True, exist_ok=True)
    groups = [sources] if shared else [[s] for s in sources]
    targets = [out / f"{s.stem}.jsonl" for s in sources]
    # each process's messages go to a file: a pipe that nobody reads while it runs fills up and stops the process
    logs = [out / f"stderr-{i}.txt" for i in range(len(groups))]
    t0 = time.perf_counter()
    procs = []
    for group, log in zip(groups, logs):
        with log.open("w") as err:
            procs.append(subprocess.Popen(_command(group, out, device, sets), stdout=subprocess.DEVNULL, stderr=err))
    first = None
    while any(p.poll() is None for p in procs):
        if first is None and any(t.exists() for t in targets):
            first = time.perf_counter()
        time.sleep(0.005)
    end = time.perf_counter()
    for proc, log in zip(procs, logs):
        err = log.read_text()
        if proc.returncode != 0:
            raise click.ClickException(f"fersr-stream failed: {err.strip().splitlines()[-1] if err.strip() else ''}")
    return end - (first or end), end - t0


def measure(clip: Path, truths: list[scenes.Truth], count: int, folder: Path, device: str,
            sets: tuple[str, ...]) -> dict[str, tuple[float, float, float, float]]:
    """Per mode (shared, separate): frames/s and faces/s of the pipelines, frames/s start-up included, and the
    lowest recall of the ``count`` sources."""
    sources = []
    for i in range(count):  # copies under their own names, as a camera per room would be
        link = folder / f"cam{i}{clip.suffix}"
        link.symlink_to(clip)
        sources.append(link)
    results = {}
    for mode in ("shared", "separate"):
        out = folder / mode
        seconds, whole = run(sources, out, device, sets, mode == "shared")
        written = [accuracy.faces_written(out / f"cam{i}.jsonl") for i in range(count)]
        frames = sum(len(w) for w in written)
        faces = sum(len(f) for w in written for f in w)
        recall = min(accuracy.score(w, truths, 0.0, 40.0).recall for w in written)
        results[mode] = (frames / seconds, faces / seconds, frames / whole, recall)
    for link in sources:
        link.unlink()
    return results


@click.command("python -m fersr_stream.bench.sources", cls=Command)
@click.option("--counts", default="1,2,4,8", show_default=True, help="Numbers of sources, comma-separated.")
@click.option("--frames", default=150, show_default=True, help="Frames of the clip each source reads.")
@click.option("--width", default=1280, show_default=True)
@click.option("--height", default=720, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config overrides, as for fersr-stream.")
def main(counts: str, frames: int, width: int, height: int, device: str, sets: tuple[str, ...]) -> None:
    """Aggregate fps and faces/s of N sources in one process against N processes, and each source's recall."""
    try:
        numbers = [int(c) for c in counts.split(",") if c.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {counts!r}", param_hint="--counts") from None
    click.echo(f"clip: {frames} frames {width}x{height}, one face; device {device}; {os.cpu_count()} cores; fps: "
               f"frames written per second of the pipelines (start-up: of the whole runs, models loaded once shared, "
               f"once per process separate)")
    click.echo(f"{'sources':>7}  {'shared fps':>10} {'faces/s':>8} {'start-up':>8} {'recall':>7}  "
               f"{'separate fps':>12} {'faces/s':>8} {'start-up':>8} {'recall':>7}  {'shared / separate':>17}")
    with tempfile.TemporaryDirectory(prefix="fersr-bench-sources-") as tmp:
        tmp = Path(tmp)
        clip = tmp / "clip.mp4"
        truths = accuracy.truths_from_boxes(make_clip(clip, frames, width, height, 1))
        for n in numbers:
            folder = tmp / f"n{n}"
            folder.mkdir()
            r = measure(clip, truths, n, folder, device, sets)
            (fps, faces, whole, recall), (fps2, faces2, whole2, recall2) = r["shared"], r["separate"]
            click.echo(f"{n:>7}  {fps:>10.1f} {faces:>8.1f} {whole:>8.1f} {recall:>7.3f}  {fps2:>12.1f} "
                       f"{faces2:>8.1f} {whole2:>8.1f} {recall2:>7.3f}  {fps / fps2:>17.2f}")


if __name__ == "__main__":
    main()
