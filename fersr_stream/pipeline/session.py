"""One stream run: open the source and outputs (failing fast on bad input), load the models, run the stages on
the runner's threads, and finalize every output however the run ends. A live source (camera, network stream) opens
once the models are loaded, so that its frames do not pile up meanwhile; the runner starts reading it once the
stages have warmed up."""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from pathlib import Path

from .. import config as cfg
from .. import degrade
from .. import device as devices
from ..errors import ConfigError, SinkError
from ..sinks.progress import ProgressSink
from . import stages as stage_builder
from .models import Models, load_models
from .runner import Policy, Runner
from .stats import Stats
from .summary import Summary


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
    if sources.is_live(config.source.uri):  # a file opens first: opening checks it before the slow load
        models = models or load_models(config, device)
    with sources.open_source(config.source.uri, config.source, device=str(device)) as source:
        summary.outages = source.outages
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
            summary.stats = _run_pipeline(config, models, source, policy, [*opened, summary], summary)
        finally:
            for sink in opened:
                sink.close()
    return summary


def _run_pipeline(config: cfg.StreamConfig, models: Models, source, policy: Policy, sinks: list,
                  summary: Summary) -> Stats:
    """Build the stages over ``source`` and run them on the runner's threads until the end, a stop or an error."""
    info = source.info
    total = None if info.live else info.frame_count
    if total is not None and config.max_frames is not None:
        total = min(total, config.max_frames)
    stats, stop = Stats(), threading.Event()
    stages = stage_builder.build(config, models, sinks=[*sinks, ProgressSink(total)], stats=stats, stop=stop,
                                 stills=info.stills, frame_size=(info.width, info.height))
    runner = Runner(source.frames(stage_builder.on_device(models), stop=stop), stages,
                    policy=policy, queue_size=config.source.queue_size,
                    max_frames=config.max_frames, stats=stats, stop_event=stop)
    heavy = config.enhance.name not in ("none", "bicubic")
    with _stop_on_signals(runner, summary), devices.stream_threads(models.classifier.device, heavy_model=heavy):
        runner.run()
    return stats


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
