"""One stream run: open the source and outputs (failing fast on bad input), load the models, run the stages on
the runner's threads, and finalize every output however the run ends."""

from __future__ import annotations

import collections
import dataclasses
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import config as cfg
from .. import degrade
from .. import device as devices
from ..classify.labels import Emotion
from ..errors import ConfigError, SinkError
from . import stages as stage_builder
from .runner import Policy, Runner
from .stats import Stats


class Summary:
    """Counts gathered while writing, printed as one screen at the end."""

    def __init__(self):
        self.frames = 0
        self.faces = 0
        self.tracks: set[int] = set()
        self.emotions: collections.Counter = collections.Counter()
        self.stats: Stats | None = None
        self.outputs: list[str] = []
        self.stopped_by: int | None = None  # the signal (SIGINT, SIGTERM) that stopped the run early

    @property
    def interrupted(self) -> bool:
        return self.stopped_by is not None

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
            shares = (f"{k} {100 * v / total:.0f}%" for k, v in self.emotions.most_common())
            lines.append("emotions: " + ", ".join(shares))
        if self.stats is not None:
            s = self.stats
            dropped = f", {s.dropped} frames dropped" if s.dropped else ""
            warm = f" after a {s.warm_up:.1f} s warm-up" if s.warm_up else ""
            lines.append(f"time: {s.wall:.1f} s{warm}, {s.fps:.1f} fps{dropped}"
                         + "".join(f", {k} {v}" for k, v in sorted(s.counters.items())))
            if with_stats:
                lines.append(s.table())
        if self.frames:
            lines += [f"wrote {p}" for p in self.outputs]
        elif self.outputs:  # the sinks open their files with the first frame
            lines.append("nothing written: no frame reached the outputs (files there are left as they were)")
        return "\n".join(lines)


class _Progress:
    """A tqdm bar advanced by the write stage (files with a known length; a counter otherwise)."""

    def __init__(self, total: int | None):
        self.bar = tqdm(total=total, unit="frame", disable=None, dynamic_ncols=True, leave=False)

    def write(self, frame) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


@dataclass
class Models:
    detector: object
    enhancer: object | None  # None when enhance.name is "none"
    classifier: object


def load_models(config: cfg.StreamConfig, device) -> Models:
    """Detector, enhancer and classifier. Weights the run needs and the cache lacks are downloaded here, once the
    settings are checked and before anything is built (constructors never download)."""
    from .. import classify, detect, enhance

    detect.fetch(config.detect)
    enhance.fetch(config.enhance)
    return Models(detect.create(config.detect, device),
                  enhance.create(config.enhance, device) if config.enhance.name != "none" else None,
                  classify.load(config.classify.weights, device, batch=config.classify.batch))


def run(config: cfg.StreamConfig, models: Models | None = None) -> Summary:
    """Open everything (failing fast on bad input), run the pipeline, and finalize the outputs.

    ``models``: already loaded (benchmarks give theirs); None loads them from ``config``.
    """
    from .. import sinks, sources

    out = config.output
    if not config.source.uri:
        raise ConfigError("no source: give --source (cam0, a file, a URL, an image or a folder)")
    if not (out.video or out.jsonl or out.show):
        raise ConfigError("nothing to write: give --output, --jsonl or --show")
    paths = check_outputs(config)  # a bad output fails before anything is opened, and nothing is touched
    degrade.validate(config.degrade)
    device = devices.resolve(config.device)
    summary, opened = Summary(), []
    with sources.open_source(config.source.uri, config.source, device=str(device)) as source:
        try:
            policy = _policy(config.source.policy, source.info.live)
            models = models or load_models(config, device)
            if out.show:  # the one sink that can fail for want of a display: before any file is opened
                opened.append(sinks.WindowSink())
            first = Path(out.video or out.jsonl) if (out.video or out.jsonl) else None
            if first is not None:  # saved with the first frame, before the outputs replace anything
                opened.append(sinks.RunConfigSink(_portable(config), first.with_name(first.stem + ".fersr.yaml")))
            for path in paths:  # each sink takes its output's lock; files are replaced with the first frame
                opened.append(sinks.open_sink(path, source.info, out))
                summary.outputs.append(path)
            total = None if source.info.live else source.info.frame_count
            if total is not None and config.max_frames is not None:
                total = min(total, config.max_frames)
            progress = _Progress(total)
            stats, stop = Stats(), threading.Event()
            stages = stage_builder.build(config, models, sinks=[*opened, summary, progress], stats=stats, stop=stop,
                                        stills=source.info.stills, frame_size=(source.info.width, source.info.height))
            # a GPU-decoding source hands frames over as tensors on the tensor path (see stages.source_frames)
            frames = stage_builder.source_frames(source, models)
            runner = Runner(frames, stages, policy=policy,
                            queue_size=config.source.queue_size, max_frames=config.max_frames, stats=stats,
                            stop_event=stop)
            heavy = config.enhance.name not in ("none", "bicubic")
            with _stop_on_signals(runner, summary), devices.stream_threads(device, heavy_model=heavy):
                runner.run()
            summary.stats = stats
        finally:
            for sink in opened:
                sink.close()
    return summary


def check_outputs(config: cfg.StreamConfig) -> list[str]:
    """The output files of a run, once each is known to be writable and of its option's kind (so the two never
    share a path), and neither would replace the source; touches nothing.

    Raises:
        SinkError: one line naming the option and the path.
    """
    from .. import sinks

    out, source = config.output, Path(config.source.uri).expanduser()
    if out.video and Path(out.video).suffix.lower() == ".jsonl":
        raise SinkError(f"--output (output.video) takes a video or an image, got {out.video}; JSON lines go to "
                        f"--jsonl")
    if out.jsonl and Path(out.jsonl).suffix.lower() != ".jsonl":
        raise SinkError(f"--jsonl (output.jsonl) takes a .jsonl file, got {out.jsonl}; videos and images go to "
                        f"--output")
    paths = [p for p in (out.video, out.jsonl) if p]
    for path in paths:
        sinks.check_output(path)
        target = Path(path).expanduser()
        if _same_file(target, source):
            raise SinkError(f"{path} is the source; write the output to another file")
        if source.is_dir() and target.suffix.lower() in sinks.IMAGE_EXTENSIONS and \
                _same_file(target.parent, source):
            raise SinkError(f"{path} is in the source folder {source}, where it could replace an input "
                            f"picture; write the images elsewhere")
    return paths


def _portable(config: cfg.StreamConfig) -> cfg.StreamConfig:
    """``config`` with its local paths made absolute, so the saved copy repeats the run from any folder."""
    from ..weights import registry

    def absolute(value: str | None) -> str | None:  # registry names and camera names stay as they are
        local = value and value not in registry.REGISTRY and Path(value).expanduser().exists()
        return str(Path(value).expanduser().resolve()) if local else value

    def absolute_output(value: str | None) -> str | None:
        return str(Path(value).expanduser().resolve()) if value else value

    return dataclasses.replace(
        config,
        source=dataclasses.replace(config.source, uri=absolute(config.source.uri)),
        detect=dataclasses.replace(config.detect, weights=absolute(config.detect.weights)),
        enhance=dataclasses.replace(config.enhance, weights=absolute(config.enhance.weights)),
        classify=dataclasses.replace(config.classify, weights=absolute(config.classify.weights)),
        output=dataclasses.replace(config.output, video=absolute_output(config.output.video),
                                   jsonl=absolute_output(config.output.jsonl)))


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file or folder (existing or not)."""
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _policy(name: str, live: bool) -> Policy:
    if name == "auto":
        return Policy.DROP_OLDEST if live else Policy.WAIT
    try:
        return Policy(name)
    except ValueError:
        raise ConfigError(f"unknown source.policy {name!r}; use auto, wait or drop_oldest") from None


class _stop_on_signals:
    """SIGINT/SIGTERM stop the runner gracefully (outputs finalized). Signals after the first are noted and the stop
    goes on: cutting the finalization short would spoil the outputs, and leaving while the stage threads still run
    native code aborts the process (C++ "terminate called without an active exception"). A kill -9 still leaves
    the video playable up to about its last second."""

    def __init__(self, runner: Runner, summary: Summary):
        self.runner, self.summary, self.saved = runner, summary, {}

    def _handle(self, signum, _frame):
        if self.summary.interrupted:
            print("fersr-stream: stopping: finishing the outputs first", file=sys.stderr, flush=True)
            return
        self.summary.stopped_by = signum
        self.runner.stop()

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False
