"""``fersr-stream``: annotate faces and their emotions in a video, camera, stream, image or folder."""

from __future__ import annotations

import collections
import signal
import threading
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from .. import config as cfg
from .. import device as devices
from ..classify.labels import Emotion
from ..errors import ConfigError
from ..pipeline import stages as stage_builder
from ..pipeline.runner import Policy, Runner
from ..pipeline.stats import Stats
from . import Command, run_cli

EXAMPLES = """\b
Examples:
  fersr-stream --source samples/sample.mp4 --output out.mp4 --jsonl out.jsonl
  fersr-stream --source cam0 --show
  fersr-stream --source clip.mp4 --output out.mp4 --simulate-lr 16 --enhancer gfpgan --reuse-every 8
  fersr-stream --source photos/ --output annotated.png --inset
  fersr-stream --source rtsp://camera.local/live --jsonl faces.jsonl --set source.read_timeout=5

Outputs: --output's extension picks a video (.mp4 .mkv .mov .avi .webm) or images (.png .jpg); --jsonl writes one
line per frame; --show opens a window. Give at least one.
"""

# CLI flag -> config key; flags left unset keep the value from the defaults / --config file.
_FLAG_KEYS = {
    "source": "source.uri", "output": "output.video", "jsonl": "output.jsonl", "show": "output.show",
    "device": "device", "max_frames": "max_frames", "simulate_lr": "degrade.width",
    "detector": "detect.name", "detector_weights": "detect.weights",
    "enhancer": "enhance.name", "enhancer_weights": "enhance.weights", "fidelity": "enhance.fidelity",
    "enhance_below": "enhance.below", "reuse_every": "enhance.reuse_every",
    "classifier": "classify.weights", "smooth": "track.smooth", "inset": "overlay.inset", "paste": "overlay.paste",
}


def resolve_config(config_path: str | None, sets: tuple[str, ...], flags: dict) -> cfg.StreamConfig:
    """Defaults < YAML file < explicit flags < ``--set`` overrides."""
    values: dict = {}
    for name, value in flags.items():
        if value is None:
            continue
        *parents, leaf = _FLAG_KEYS[name].split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return cfg.load(None, sets, base=cfg.merge(cfg.load(config_path), values))


@click.command(cls=Command, epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--source", "-s", help="cam0 | camera index | /dev/videoN | video file | rtsp/http URL | image | folder.")
@click.option("--output", "-o", help="Annotated video (.mp4 .mkv .mov .avi .webm) or image (.png .jpg) to write.")
@click.option("--jsonl", help="Per-frame JSON lines to write (schema in README).")
@click.option("--show", is_flag=True, default=None, help="Show a live window (needs a display; q or Esc stops).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (configs/stream/*.yaml).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. track.smooth=0.8.")
@click.option("--device", help="auto | cpu | cuda | cuda:N  [default: auto]")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after this many frames.")
@click.option("--simulate-lr", type=click.IntRange(min=4), metavar="PX",
              help="Degrade each face as if it were PX pixels wide.")
@click.option("--detector", type=click.Choice(["haar", "yunet", "retinaface"]), help="Face detector [default: haar].")
@click.option("--detector-weights", metavar="NAME|PATH", help="Registry name or file for yunet/retinaface.")
@click.option("--enhancer", type=click.Choice(["none", "bicubic", "gfpgan", "codeformer", "restoreformer"]),
              help="Face restoration before classification [default: none]. CodeFormer is non-commercial.")
@click.option("--enhancer-weights", metavar="NAME|PATH", help="Registry name or checkpoint for the enhancer.")
@click.option("--fidelity", type=click.FloatRange(0, 1), help="CodeFormer fidelity weight w (0 quality .. 1 fidelity).")
@click.option("--enhance-below", type=click.IntRange(min=1), metavar="PX",
              help="Restore only faces narrower than PX source pixels.")
@click.option("--reuse-every", type=click.IntRange(min=0), metavar="K",
              help="A track reuses its last restored face for up to K frames.")
@click.option("--classifier", metavar="PATH", help="fersr classifier checkpoint [default: shipped mini-Xception].")
@click.option("--smooth", type=click.FloatRange(0, 1, max_open=True), help="Per-track EMA weight of the past (0 = off).")
@click.option("--inset", is_flag=True, default=None, help="Draw the processed face beside its box.")
@click.option("--paste", is_flag=True, default=None, help="Paste restored faces back into the frame.")
@click.option("--stats", is_flag=True, help="Print per-stage time and fps at the end.")
def stream(config_path, sets, stats, **flags):
    """Detect faces, optionally degrade and restore them, classify 7 emotions, track, and write the result."""
    config = resolve_config(config_path, sets, flags)
    summary = run(config)
    click.echo(summary.text(with_stats=stats), err=True)


class Summary:
    """Counts gathered while writing, printed as one screen at the end."""

    def __init__(self):
        self.frames = 0
        self.faces = 0
        self.tracks: set[int] = set()
        self.emotions: collections.Counter = collections.Counter()
        self.stats: Stats | None = None
        self.outputs: list[str] = []
        self.interrupted = False

    def write(self, frame) -> None:
        self.frames += 1
        self.faces += len(frame.faces)
        self.tracks.update(int(t) for t in frame.faces.track_ids if t >= 0)
        if frame.faces.probs is not None:
            self.emotions.update(Emotion(int(k)).label for k in np.argmax(frame.faces.probs, axis=1))

    def close(self) -> None:
        pass

    def text(self, with_stats: bool = False) -> str:
        lines = [f"{'stopped early: ' if self.interrupted else ''}{self.frames} frames, {self.faces} faces, "
                 f"{len(self.tracks)} tracks"]
        if self.emotions:
            total = sum(self.emotions.values())
            lines.append("emotions: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in self.emotions.most_common()))
        if self.stats is not None:
            s = self.stats
            lines.append(f"time: {s.wall:.1f} s, {s.fps:.1f} fps" + (f", {s.dropped} frames dropped" if s.dropped else "")
                         + "".join(f", {k} {v}" for k, v in sorted(s.counters.items())))
            if with_stats:
                lines.append(s.table())
        lines += [f"wrote {p}" for p in self.outputs]
        return "\n".join(lines)


class _Progress:
    """A tqdm bar advanced by the write stage (files with a known length; a counter otherwise)."""

    def __init__(self, total: int | None):
        self.bar = tqdm(total=total, unit="frame", disable=None, dynamic_ncols=True, leave=False)

    def write(self, frame) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run(config: cfg.StreamConfig) -> Summary:
    """Open everything (failing fast on bad input), run the pipeline, and finalize the outputs."""
    from .. import classify, detect, enhance, sinks, sources

    out = config.output
    if not config.source.uri:
        raise ConfigError("no source: give --source (cam0, a file, a URL, an image or a folder)")
    if not (out.video or out.jsonl or out.show):
        raise ConfigError("nothing to write: give --output, --jsonl or --show")
    device = devices.resolve(config.device)
    summary, opened = Summary(), []
    with sources.open_source(config.source.uri, config.source) as source:
        try:
            detector = detect.create(config.detect, device)
            enhancer = enhance.create(config.enhance, device) if config.enhance.name != "none" else None
            classifier = classify.load(config.classify.weights, device)
            for path in (out.video, out.jsonl):
                if path:
                    opened.append(sinks.open_sink(path, source.info, out))
                    summary.outputs.append(path)
            if out.show:
                opened.append(sinks.WindowSink())
            first = Path(out.video or out.jsonl) if (out.video or out.jsonl) else None
            if first is not None:
                cfg.save(config, first.with_name(first.stem + ".fersr.yaml"))
            progress = _Progress(config.max_frames or source.info.frame_count if not source.info.live else None)
            stats, stop = Stats(), threading.Event()
            stages = stage_builder.build(config, detector=detector, enhancer=enhancer, classifier=classifier,
                                         sinks=[*opened, summary, progress], stats=stats, stop=stop)
            runner = Runner(source, stages, policy=_policy(config.source.policy, source.info.live),
                            queue_size=config.source.queue_size, max_frames=config.max_frames, stats=stats,
                            stop_event=stop)
            with _stop_on_signals(runner, summary):
                runner.run()
            summary.stats = stats
        finally:
            for sink in opened:
                sink.close()
    return summary


def _policy(name: str, live: bool) -> Policy:
    if name == "auto":
        return Policy.DROP_OLDEST if live else Policy.WAIT
    try:
        return Policy(name)
    except ValueError:
        raise ConfigError(f"unknown source.policy {name!r}; use auto, wait or drop_oldest") from None


class _stop_on_signals:
    """SIGINT/SIGTERM stop the runner gracefully (outputs finalized); a second SIGINT interrupts at once."""

    def __init__(self, runner: Runner, summary: Summary):
        self.runner, self.summary, self.saved = runner, summary, {}

    def _handle(self, signum, _frame):
        if self.summary.interrupted and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.summary.interrupted = True
        self.runner.stop()

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False


def main(argv=None) -> None:
    run_cli(stream, "fersr-stream", argv)


if __name__ == "__main__":
    main()
